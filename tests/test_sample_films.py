"""The bundled sample's test/ holds films of the official test split, which is for final reporting only: only
tests/test_shipped_model.py, which reports on it, may read it; other tests use `sample_films`. The guard of
tests/conftest.py (an audit hook, armed from collection on and disarmed only for those tests and the few marked
`lists_sample_test_films`, listed in MARKED) refuses any open of a film there, however the path is spelled, and any
change of the folder (a move, a removal, a new file, folder or link); a regex over the tests' text, which it
replaces, missed most spellings."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import pytest
from PIL import Image

from tests import conftest
from tests.conftest import SampleTestFilmRead

FILM = "IM-0001-0001.jpeg"  # one of the sample's test/NORMAL films


def _opened_at_collection() -> bool:
    """Whether this module, while it was collected, could open a sample test film (module-level code, as a
    parametrize list would)."""
    try:
        (conftest.SAMPLE / "test" / "NORMAL" / FILM).open("rb").close()
    except SampleTestFilmRead:
        conftest._guard["seen"] = []  # meant to trip the guard: not a read to stop the run for
        return False
    return True


OPENED_AT_COLLECTION = _opened_at_collection()


def refused(read: Callable[[], object]) -> list[str]:
    """What the guard refused while `read` ran, raised or caught on the way (a loader may skip a film it cannot
    open: the fixture then fails the test); forgotten after, so that this test, which means to trip it, is
    not failed for it."""
    try:
        read()
    except SampleTestFilmRead:
        pass
    seen, conftest._guard["seen"] = list(conftest._guard["seen"]), []  # type: ignore[call-overload]
    assert seen, "the guard refused nothing"
    return seen


def test_the_guard_is_armed_in_a_test() -> None:
    assert conftest._guard["armed"] is True
    assert os.environ[conftest.READ_GUARD] == conftest.SAMPLE_TEST  # for the processes it starts


@pytest.mark.parametrize("read", [
    lambda s: Image.open(s / "test" / "NORMAL" / FILM).load(),
    lambda s: Image.open(s / "test/NORMAL" / FILM),
    lambda s: Image.open(f"{s}/test/NORMAL/{FILM}"),
    lambda s: Image.open(os.path.join(s, "test", "NORMAL", FILM)),
    lambda s: open(str(s) + "/test/NORMAL/" + FILM, "rb"),
    lambda s: (s / "test" / "NORMAL" / FILM).read_bytes(),
    lambda s: [Image.open(film) for film in sorted(s.joinpath("test").rglob("*.jpeg"))],
    lambda s: [Image.open(film) for film in sorted((s / "test/NORMAL").iterdir())],
    lambda s: [Image.open(film) for film in s.glob("test/*/*")],
    lambda s: [open(os.path.join(top, name), "rb") for top, _, names in os.walk(s) if "test" in top for name in names],
], ids=["pathlib", "test/NORMAL", "f-string", "os.path.join", "str+", "read_bytes", "joinpath", "iterdir",
        "glob", "walk"])
def test_the_guard_refuses_every_spelling_of_the_sample_test_films(read: Callable[[Path], object],
                                                                   sample_dir: Path) -> None:
    assert all(conftest.under_sample_test(path) for path in refused(lambda: read(sample_dir)))


def test_the_guard_sees_through_a_symlink_to_the_sample(sample_dir: Path, tmp_path: Path) -> None:
    """docs/python-api.md's example was run on a symlink to ROOT/"sample": `data = "sample/chest_xray"`."""
    (tmp_path / "sample").symlink_to(sample_dir.parent, target_is_directory=True)
    assert refused(lambda: Image.open(tmp_path / "sample" / "chest_xray" / "test" / "PNEUMONIA" /
                                      sorted(os.listdir(sample_dir / "test" / "PNEUMONIA"))[0]))


@pytest.mark.parametrize("link", ["normal", "films", "film.jpeg"])
def test_the_guard_sees_through_a_symlink_to_a_class_folder_or_a_film(link: str, sample_dir: Path,
                                                                       tmp_path: Path) -> None:
    """Only a path naming NORMAL or PNEUMONIA was resolved: a link `normal/` (class folders are found whatever their
    case) or `films/` to test/NORMAL, or a link to a film, was read unseen."""
    target = sample_dir / "test" / "NORMAL"
    (tmp_path / link).symlink_to(target / FILM if link.endswith(".jpeg") else target)
    film = tmp_path / link if link.endswith(".jpeg") else tmp_path / link / FILM
    assert refused(lambda: Image.open(film)) == [str(film)]


def test_a_process_the_test_starts_is_refused_the_films_and_fails_the_test(sample_dir: Path, tmp_path: Path) -> None:
    """A process a test started (`python -m pneumoscan evaluate`, with the `PYTHONPATH=src` many tests give theirs)
    read the sample's test films unseen: the guard was this process's audit hook. tests/guard_site/sitecustomize.py
    refuses them there as well, through links, and the fixture fails the test on what it logged (read and forgotten
    here). The process only opens the films: no model is run, should the guard fail."""
    import subprocess
    import sys

    (tmp_path / "films").symlink_to(sample_dir / "test" / "PNEUMONIA")
    films = sorted(str(tmp_path / "films" / name) for name in os.listdir(tmp_path / "films"))
    code = ("import sys\nfor film in sys.argv[1:]:\n    try:\n        open(film, 'rb').close()\n"
            "    except PermissionError as err:\n        print(err.strerror)")
    env = {**os.environ, "PYTHONPATH": str(conftest.ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", code, *films], env=env, capture_output=True, text=True, timeout=60)
    assert conftest.read_by_processes() == films and len(films) == 30
    assert done.stdout.splitlines() == [f"a process a test started may not read or change {conftest.SAMPLE_TEST} "
                                        f"(official test split films, for final reporting only)"] * 30


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_process_is_guarded_whatever_its_pythonpath_lists_and_runs_the_sitecustomize_the_guard_shadows(
        where: str, sample_dir: Path, tmp_path: Path) -> None:
    """Python imports the first sitecustomize on its path only: tests/guard_site went last on a process's PYTHONPATH,
    so one that listed another sitecustomize's folder first (tests/training/test_resume.py gives
    `os.pathsep.join(sys.path)`, a stdlib folder holding a distribution's) ran unguarded, and a guarded one ran no
    other sitecustomize (a distribution's, coverage's subprocess hook)."""
    import subprocess
    import sys

    other = tmp_path / "other_site"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os\nos.environ['OTHER_SITECUSTOMIZE_RAN'] = '1'\n")
    paths = [str(other), str(conftest.ROOT / "src")]
    code = ("import os, sys\nprint(os.environ.get('OTHER_SITECUSTOMIZE_RAN'))\ntry:\n    open(sys.argv[1], 'rb')\n"
            "except PermissionError as err:\n    print('refused')\nelse:\n    print('read')")
    film = str(sample_dir / "test" / "NORMAL" / FILM)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths if where == "first" else paths[::-1])}
    done = subprocess.run([sys.executable, "-c", code, film], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["1", "refused"] and conftest.read_by_processes() == [film]
    assert conftest.guard_site_first(os.pathsep.join(["a", str(conftest.GUARD_SITE), "b"])) == os.pathsep.join(
        [str(conftest.GUARD_SITE), "a", "b"])


def test_a_second_copy_of_the_guard_on_the_path_is_skipped_and_the_real_sitecustomize_still_runs(
        sample_dir: Path, tmp_path: Path) -> None:
    """With two copies of tests/guard_site on a process's path (another worktree's, or one in a venv), each ran the
    other as the sitecustomize it shadows, forever: "Error in sitecustomize ... RecursionError", and the real one
    after them never ran."""
    import shutil
    import subprocess
    import sys

    shutil.copytree(conftest.GUARD_SITE, tmp_path / "guard_site", ignore=shutil.ignore_patterns("__pycache__"))
    other = tmp_path / "other_site"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os\nos.environ['OTHER_SITECUSTOMIZE_RAN'] = '1'\n")
    code = ("import os, sys\nprint(os.environ.get('OTHER_SITECUSTOMIZE_RAN'))\ntry:\n    open(sys.argv[1], 'rb')\n"
            "except PermissionError:\n    print('refused')")
    film = str(sample_dir / "test" / "NORMAL" / FILM)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "guard_site"), str(other)])}
    done = subprocess.run([sys.executable, "-c", code, film], env=env, capture_output=True, text=True, timeout=60)
    assert (done.stdout.splitlines(), done.stderr) == (["1", "refused"], "")
    assert conftest.read_by_processes() == [film]

def test_a_file_may_not_be_made_or_written_under_the_sample_test_folder(sample_dir: Path, tmp_path: Path) -> None:
    """A path under the sample's test/ to no file was let be: a test could make a film there (a new file of the
    official test split's folder). Opens that would write or make one are refused, in this process and in the ones
    it starts; reading a missing file there stays a FileNotFoundError."""
    import subprocess
    import sys

    (tmp_path / "link").symlink_to(sample_dir / "test" / "NORMAL")
    new = [sample_dir / "test" / "NORMAL" / "new.jpeg", tmp_path / "link" / "new.png", sample_dir / "test" / "x.txt"]
    for path in new:
        assert refused(lambda: path.write_bytes(b"film")) == [str(path)]
        assert refused(lambda: os.close(os.open(path, os.O_WRONLY | os.O_CREAT)))
    with pytest.raises(FileNotFoundError):
        open(sample_dir / "test" / "NORMAL" / "gone.jpeg", "rb")
    code = "import sys\ntry:\n    open(sys.argv[1], 'ab')\nexcept PermissionError:\n    print('refused')"
    done = subprocess.run([sys.executable, "-c", code, str(new[0])], capture_output=True, text=True, timeout=60)
    assert done.stdout == "refused\n" and conftest.read_by_processes() == [str(new[0])]
    assert not any(path.exists() for path in new)


def test_the_sample_test_folder_may_not_be_changed_by_a_move_a_removal_a_link_or_a_new_folder(
        sample_dir: Path, tmp_path: Path) -> None:
    """Only opens were refused: os.rename into test/, os.mkdir, os.remove of a film, shutil.rmtree, a link made there
    went through. Each is refused now, in this process and the ones it starts. Every call here would change nothing
    should the guard let it be (a missing path, a folder not empty, a film's own size, mode and times), but what it
    would make, removed after."""
    import shutil
    import subprocess
    import sys

    test, film = sample_dir / "test", sample_dir / "test" / "NORMAL" / FILM
    (tmp_path / "link").symlink_to(film)
    (tmp_path / "mine.jpeg").write_bytes(b"film")
    stat = film.stat()
    new = test / "NORMAL" / "new.jpeg"
    calls = {
        "rename in": lambda: os.rename(tmp_path / "mine.jpeg", new), "replace in": lambda: os.replace(tmp_path /
        "mine.jpeg", new), "rename out": lambda: os.rename(test / "gone.jpeg", tmp_path / "out.jpeg"),
        "rename the sample": lambda: os.rename(sample_dir, sample_dir), "mkdir": lambda: os.mkdir(test / "NEW"),
        "remove": lambda: os.remove(test / "NORMAL" / "gone.jpeg"), "unlink": lambda: os.unlink(test / "gone.jpeg"),
        "rmdir": lambda: os.rmdir(test), "rmdir the sample": lambda: os.rmdir(sample_dir),
        "rmtree": lambda: shutil.rmtree(test / "gone"), "link": lambda: os.link(tmp_path / "mine.jpeg", new),
        "symlink": lambda: os.symlink(tmp_path / "mine.jpeg", new),
        "truncate": lambda: os.truncate(tmp_path / "link", stat.st_size),
        "chmod": lambda: os.chmod(film, stat.st_mode), "utime": lambda: os.utime(film, ns=(
            stat.st_atime_ns, stat.st_mtime_ns)), "chown": lambda: os.chown(film, -1, -1)}
    try:
        let_be = [name for name, call in calls.items() if not refused_or_none(call)]
    finally:
        for made in (new, test / "NEW"):
            if os.path.lexists(made):
                os.rmdir(made) if made.is_dir() and not made.is_symlink() else os.unlink(made)
    assert let_be == []
    assert film.stat().st_mtime_ns == stat.st_mtime_ns and sorted(os.listdir(test)) == ["NORMAL", "PNEUMONIA"]
    os.remove(tmp_path / "link")  # a link to a film is no film: removing it is let be
    code = ("import os, shutil, sys\nfor call in (os.mkdir, os.remove, shutil.rmtree):\n    try:\n"
            "        call(sys.argv[1])\n    except PermissionError:\n        print('refused')")
    done = subprocess.run([sys.executable, "-c", code, str(test / "gone")], capture_output=True, text=True, timeout=60)
    assert done.stdout == "refused\n" * 3 and conftest.read_by_processes() == [str(test / "gone")] * 3


def test_a_symlink_to_a_sample_test_film_may_be_copied_and_changed_itself(sample_dir: Path, tmp_path: Path) -> None:
    """The guard followed a symlink named to os.utime, os.chmod, os.chown (whose audit events do not say whether the
    call follows it) and refused changing the link itself: copying a folder holding one with symlinks=True (copystat
    of the copied link) failed the test, as did os.utime(link, follow_symlinks=False) and os.lchown(link)."""
    import shutil

    film = sample_dir / "test" / "NORMAL" / FILM
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "link").symlink_to(film)
    before = film.stat()
    shutil.copytree(tmp_path / "src", tmp_path / "dst", symlinks=True)  # its errors in one shutil.Error
    assert os.readlink(tmp_path / "dst" / "link") == str(film)
    calls = {"utime": lambda: os.utime(tmp_path / "src" / "link", follow_symlinks=False),
             "lchown": lambda: os.lchown(tmp_path / "src" / "link", -1, -1)}
    assert [name for name, call in calls.items() if refused_or_none(call)] == []
    assert film.stat().st_mtime_ns == before.st_mtime_ns and film.stat().st_mode == before.st_mode


def refused_or_none(call: Callable[[], object]) -> bool:
    """Whether the guard refused `call` (forgotten after, as `refused`); an OSError it gives when let be is none."""
    try:
        call()
    except SampleTestFilmRead:
        pass
    except OSError:
        return False
    seen, conftest._guard["seen"] = list(conftest._guard["seen"]), []  # type: ignore[call-overload]
    return bool(seen)

def test_importing_the_conftest_outside_pytest_makes_no_file_and_leaves_the_environment_be(tmp_path: Path) -> None:
    """Scripts import write_dicom from tests.conftest: the import made a temp log (deleted only by pytest's
    unconfigure) and put the guard in the script's environment."""
    import subprocess
    import sys

    code = ("import os\nbefore = dict(os.environ)\nimport tests.conftest\nprint(dict(os.environ) == before, "
            "sorted(os.listdir(os.environ['TMPDIR'])))")
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": os.pathsep.join([str(conftest.ROOT),
                                                                                str(conftest.ROOT / "src")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout == "True []\n", done.stderr


def test_evaluate_on_the_sample_is_refused_before_a_film_is_read(sample_dir: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`main(["evaluate", "--data", str(sample_dir)])` scores the test split by default: it scored the sample's test
    films, in a test the regex did not see. Each film's open is refused, so no model sees one; the loader takes
    them for unreadable files, so only the fixture's check would fail such a test."""
    from pneumoscan.cli import main

    seen = refused(lambda: main(["evaluate", "--data", str(sample_dir)]))
    assert len(set(seen)) == 60 and all(conftest.under_sample_test(path) for path in seen)
    assert "no readable NORMAL or PNEUMONIA images in test/ (60 unreadable" in capsys.readouterr().err


def test_the_sample_train_films_and_the_sample_folder_itself_are_read(sample_dir: Path) -> None:
    film = sorted((sample_dir / "train" / "NORMAL").iterdir())[0]
    assert Image.open(film).size and sorted(os.listdir(sample_dir)) == ["test", "train"]
    assert conftest._guard["seen"] == [] and not conftest.under_sample_test(film)


@pytest.mark.lists_sample_test_films(reason="shows that a marked test may hash them")
def test_a_marked_test_may_hash_the_sample_test_films(sample_dir: Path) -> None:
    assert conftest._guard["armed"] is False and conftest.READ_GUARD not in os.environ
    assert len({film.read_bytes() for film in sample_dir.glob("test/*/*.jpeg")}) == 60


# Every use of the mark that lets a test open the sample's test/ films, by file: a new one is a decision to review
MARKED = {"tests/cli/test_cli.py": 1, "tests/test_packaging.py": 1, "tests/test_sample_films.py": 1}


def test_only_the_tests_listed_here_may_open_the_sample_test_films_or_touch_the_guard() -> None:
    """The mark takes any reason and the guard's state is a module's dict: without this list a new test could opt out,
    or switch the guard off, unseen."""
    tests = Path(conftest.__file__).parent
    texts = {path.relative_to(tests.parent).as_posix(): path.read_text(encoding="utf-8")
             for path in sorted(tests.rglob("*.py")) if path.name != "conftest.py"}
    marks = {name: text.count(f"mark.{conftest.LISTS_SAMPLE_TEST}") for name, text in texts.items()}
    assert {name: n for name, n in marks.items() if n} == MARKED
    assert [name for name, text in texts.items() if re.search(r"\b_guard\b", text)] == ["tests/test_sample_films.py"]


def test_a_film_opened_while_tests_are_collected_is_refused() -> None:
    """The guard was armed only while a test ran: a module that read the films at import, or a parametrize list
    built from them, passed."""
    assert OPENED_AT_COLLECTION is False


def test_the_marks_reason_may_be_its_argument_and_a_mark_without_one_stops_the_run() -> None:
    """The mark with its reason as its one argument, `("why")`, ended the run inside a test's
    protocol (no tests ran; INTERNALERROR under xdist); it is read as the reason, and a mark with none is refused
    when the tests are collected, naming the test."""
    from types import SimpleNamespace

    def item(mark: pytest.MarkDecorator | None, nodeid: str = "tests/x.py::t") -> SimpleNamespace:
        return SimpleNamespace(get_closest_marker=lambda _: mark.mark if mark else None, nodeid=nodeid,
                               path=Path("tests/x.py"))

    mark = getattr(pytest.mark, conftest.LISTS_SAMPLE_TEST)
    assert conftest.sample_test_reason(item(mark("why"))) == "why"
    assert conftest.sample_test_reason(item(mark(reason="why"))) == "why"
    assert conftest.sample_test_reason(item(None)) is None
    assert conftest.reads_sample_test(item(mark("why"))) and not conftest.reads_sample_test(item(None))
    with pytest.raises(pytest.UsageError, match="needs a reason.*tests/x.py::t"):
        conftest.pytest_collection_modifyitems(None, [item(mark())])  # type: ignore[arg-type, list-item]


def test_a_film_opened_and_caught_while_tests_are_collected_stops_the_run() -> None:
    """A module that read the films at import through a loader that skips unreadable films caught the guard's
    refusal, and the first test's run then forgot it: nothing failed. Collection now stops the run, naming them."""
    film = str(conftest.SAMPLE / "test" / "NORMAL" / FILM)
    conftest._guard["seen"] = [film, film]  # what the hook records when a refused open was caught at collection
    with pytest.raises(pytest.UsageError, match=f"collecting the tests read .*: {film}$"):
        conftest.pytest_collection_modifyitems(None, [])  # type: ignore[arg-type]
    assert conftest._guard["seen"] == []


def test_a_guard_log_removed_by_a_temp_clean_up_fails_no_test_and_a_later_refusal_is_still_seen() -> None:
    """A clean-up of the temp folder during a run (the log is a temp file) is no refusal and crashes no fixture; a
    process refused afterwards makes the log again, and is still seen."""
    os.unlink(conftest._log["path"])
    assert conftest.read_by_processes() == []
    with open(conftest._log["path"], "a", encoding="utf-8") as log:  # as the guard in a started process writes
        log.write("/somewhere/refused.jpeg\n")
    assert conftest.read_by_processes() == ["/somewhere/refused.jpeg"]
