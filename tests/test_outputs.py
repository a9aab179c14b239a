"""Output files: checked before the work, written atomically, failures named after the user's path."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

from pneumoscan.cli import main
from pneumoscan.errors import InputError
from pneumoscan.outputs import atomic_write, atomic_write_all, check_output, json_ready
from tests.conftest import disk_full


def test_check_output_refuses_folders_and_other_kinds(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a folder; give --out a file name such as"):
        check_output(tmp_path, (".html", ".htm"), "the report")
    with pytest.raises(InputError, match=r"x\.jpeg: the report is written as \.html; give --out a file name ending"):
        check_output(tmp_path / "x.jpeg", (".html", ".htm"), "the report")
    assert check_output(tmp_path / "r.HTM", (".html", ".htm"), "the report") == tmp_path / "r.HTM"


def test_atomic_write_replaces_whole_and_cleans_up_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    atomic_write(target, lambda tmp: tmp.write_text("first"))
    assert target.read_text() == "first"

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise disk_full()

    with pytest.raises(InputError, match=r"out\.txt: cannot be written \(No space left on device\)"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "first" and sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]

    def interrupted(tmp: Path) -> None:
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert target.read_text() == "first" and sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_atomic_write_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a rename was atomic: after a power loss the file could be there, renamed, but empty or torn."""
    import errno
    import os
    import stat

    target = tmp_path / "model.safetensors"
    synced: list[tuple[str, int, bool]] = []  # (file or folder, inode, whether PATH was in place yet)
    real = os.fsync

    def spy(fd: int) -> None:
        info = os.fstat(fd)
        synced.append(("folder" if stat.S_ISDIR(info.st_mode) else "file", info.st_ino, target.exists()))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write(target, lambda tmp: tmp.write_bytes(b"weights"))
    assert synced == [("file", target.stat().st_ino, False), ("folder", tmp_path.stat().st_ino, True)]

    def fsync_fails(code: int) -> None:
        def fsync(fd: int) -> None:
            if not stat.S_ISDIR(os.fstat(fd).st_mode) or code == errno.EINVAL:
                raise OSError(code, os.strerror(code))
        monkeypatch.setattr(os, "fsync", fsync)

    fsync_fails(errno.ENOSPC)  # the data did not reach the disk: a failed write, the old file kept
    with pytest.raises(InputError, match=r"model\.safetensors: cannot be written \(No space left on device\); "
                                         r"free disk space"):
        atomic_write(target, lambda tmp: tmp.write_bytes(b"new weights"))
    assert target.read_bytes() == b"weights" and [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]
    fsync_fails(errno.EINVAL)  # a file system that cannot sync, not a failed write
    atomic_write(target, lambda tmp: tmp.write_bytes(b"new weights"))
    assert target.read_bytes() == b"new weights"
    # a set of files too (a report and its figures): their journal is synced as the files are, or not at all
    pair = {tmp_path / "r.html": lambda tmp: tmp.write_bytes(b"page"),
            tmp_path / "r.csv": lambda tmp: tmp.write_bytes(b"t")}
    atomic_write_all(pair)
    assert (tmp_path / "r.html").read_bytes() == b"page" and (tmp_path / "r.csv").read_bytes() == b"t"


@pytest.mark.parametrize("argv, kind", [
    (["report", "{run}", "--out", "{out}", "--n-boot", "10"], ".html"),
    (["compare", "{run}", "--out", "{out}", "--n-boot", "10"], ".html"),
    (["export", "--model", "{run}", "--out", "{out}", "--images", "{image}"], ".onnx"),
    (["fit-guard", "--model", "{run}", "--data", "{data}", "--out", "{out}"], ".safetensors"),
    (["evaluate", "--model", "{run}", "--data", "{data}", "--n-boot", "10", "--json", "{out}"], ".json"),
    (["evaluate", "--model", "{run}", "--data", "{data}", "--n-boot", "10", "--predictions", "{out}"], ".csv"),
])
def test_outputs_never_overwrite_another_kind_of_file_or_litter_a_folder(
        argv: list[str], kind: str, tiny_run: Path, tiny_data: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    image = sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[0]
    xray = tmp_path / "patient.jpeg"
    xray.write_bytes(image.read_bytes())
    folder = tmp_path / "folder"
    folder.mkdir()
    for out, message in ((xray, f"written as {kind}"), (folder, "is a folder")):
        args = [a.format(run=tiny_run, data=tiny_data, out=out, image=image) for a in argv]
        assert main(args) == 2
        assert message in capsys.readouterr().err
    assert xray.read_bytes() == image.read_bytes()  # the X-ray is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "patient.jpeg"] and not any(folder.iterdir())


def test_an_unwritable_folder_is_found_before_the_work(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import tempfile

    locked = tmp_path / "locked"
    locked.mkdir()
    real = tempfile.TemporaryFile

    def refuse_in_locked(*args: object, **kwargs: object) -> object:
        if Path(str(kwargs.get("dir", ""))) == locked:  # as a read-only mount would (root ignores permission bits)
            raise PermissionError(13, "Permission denied")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse_in_locked)
    assert main(["set-threshold", "--model", str(tiny_run), "--data", str(tiny_data), "--split", "test",
                 "--out", str(tmp_path / "site"), "--json", str(locked / "t.json"), "--n-boot", "10"]) == 2
    assert f"{locked / 't.json'}: cannot be written (Permission denied)" in capsys.readouterr().err
    assert not (tmp_path / "site").exists()  # refused before the model copy was written


@pytest.mark.parametrize("argv, companion, message", [
    (["report", "{run}", "--out", "{out}", "--n-boot", "10"], "r_files", "keeps its figures in a folder"),
    (["compare", "{run}", "--out", "{out}", "--n-boot", "10"], "r_files", "keeps its figures in a folder"),
    (["compare", "{run}", "--out", "{out}", "--n-boot", "10"], "r.csv", "writes its table to a file"),
    (["compare", "{run}", "--out", "{out}", "--n-boot", "10"], "r.json", "writes its table to a file"),
])
def test_a_companion_of_the_wrong_kind_is_refused_before_the_work(
        argv: list[str], companion: str, message: str, tiny_run: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from pneumoscan.report import build, compare

    def no_scoring(*args: object, **kwargs: object) -> None:
        raise AssertionError("scored before the outputs were checked")

    for module in (build, compare):
        monkeypatch.setattr(module, "run_scores", no_scoring)
    in_the_way = tmp_path / companion
    if companion.endswith("_files"):
        in_the_way.write_text("notes")
    else:
        in_the_way.mkdir()
    assert main([a.format(run=tiny_run, out=tmp_path / "r.html") for a in argv]) == 2
    err = capsys.readouterr().err
    assert f"{in_the_way}: " in err and message in err and "r.html" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [companion]


def test_compare_replaces_its_own_tables_but_no_other_csv_or_json(tiny_run: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c.html"
    assert main(["compare", str(tiny_run), "--out", str(out), "--n-boot", "10"]) == 0
    assert main(["compare", str(tiny_run), "--out", str(out), "--n-boot", "10"]) == 0  # its own tables: replaced
    predictions = tmp_path / "val_predictions.csv"
    predictions.write_text("path,label,prob\na.png,0,0.1\n")
    assert main(["compare", str(tiny_run), "--out", str(tmp_path / "val_predictions.html"), "--n-boot", "10"]) == 2
    assert "exists and is not a comparison table" in capsys.readouterr().err
    assert predictions.read_text() == "path,label,prob\na.png,0,0.1\n"
    empty = tmp_path / "e.json"
    empty.write_text("[]")  # a list, but not one compare wrote (it always has a row)
    assert main(["compare", str(tiny_run), "--out", str(tmp_path / "e.html"), "--n-boot", "10"]) == 2
    assert "exists and is not a comparison table" in capsys.readouterr().err and empty.read_text() == "[]"
    assert main(["compare", str(tiny_run), str(tiny_run), "--out", str(out)]) == 2
    assert "given more than once" in capsys.readouterr().err


def test_compare_replaces_a_table_an_earlier_version_wrote(tiny_run: Path, tmp_path: Path) -> None:
    """A comparison written before the table had its input size and recipe columns was refused as 'not a comparison
    table', so re-running the same compare needed another --out or deleting the files by hand."""
    import csv
    import json

    earlier = ["run", "model", "params", "loss", "accuracy", "precision", "recall", "specificity", "f1", "roc_auc",
               "roc_auc_ci_low", "roc_auc_ci_high", "threshold", "n", "train_seconds"]
    out = tmp_path / "c.html"
    out.with_suffix(".csv").write_text(",".join(earlier) + "\nrun,cnn,10,0.5,1,1,1,1,1,1,1,1,0.5,4,2.0\n")
    out.with_suffix(".json").write_text(json.dumps([dict.fromkeys(earlier, 1)]))
    assert main(["compare", str(tiny_run), "--out", str(out), "--n-boot", "10"]) == 0
    (row,) = csv.DictReader(out.with_suffix(".csv").open())
    assert row["image_size"] == "32" and json.loads(out.with_suffix(".json").read_text())[0]["image_size"] == 32


@pytest.mark.parametrize("argv, name", [(["evaluate", "--json"], "config.json"),
                                        (["evaluate", "--predictions"], "val_predictions.csv"),
                                        (["audit", "--json"], "split.json")])
def test_an_output_is_not_written_over_a_runs_own_file(argv: list[str], name: str, tiny_run: Path, tiny_data: Path,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # evaluate --json RUN/config.json replaced the run's settings with metrics: resume then failed with
    # "unknown model 'RUN/model.safetensors'", and --predictions RUN/val_predictions.csv changed what report shows
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = (run / name).read_bytes()
    data = ["--model", str(run), "--data", str(tiny_data)] if argv[0] == "evaluate" else [str(tiny_data)]
    assert main([argv[0], *data, argv[1], str(run / name)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"pneumoscan: error: {run / name}: the run in {run} keeps its own {name} there (resume, report and ensemble "
        f"read it); give {argv[1]} another file name")
    assert (run / name).read_bytes() == before
    elsewhere = tmp_path / "results" / name  # the same name in a folder that holds no run is an output like any other
    assert check_output(elsewhere, (elsewhere.suffix,), "JSON") == elsewhere


def test_fit_guard_replaces_a_guard_but_not_other_weights(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.numpy import save_file
    import numpy as np

    weights = tmp_path / "pretrained.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(weights))
    before = weights.read_bytes()
    assert main(["fit-guard", "--model", str(tiny_run), "--data", str(tiny_data), "--out", str(weights)]) == 2
    assert "is another kind of safetensors file" in capsys.readouterr().err and weights.read_bytes() == before
    guard = tmp_path / "g.safetensors"
    for _ in range(2):  # a guard written before is replaced
        assert main(["fit-guard", "--model", str(tiny_run), "--data", str(tiny_data), "--out", str(guard)]) == 0


def test_explain_never_writes_over_the_image_it_explains(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    xray = tmp_path / "xray.png"
    Image.open(sorted((tiny_data / "test" / "NORMAL").iterdir())[0]).save(xray)
    before = xray.read_bytes()
    assert main(["explain", str(xray), "--model", str(tiny_run), "--out", str(xray)]) == 2
    assert "is the image to explain" in capsys.readouterr().err and xray.read_bytes() == before


def test_explain_never_writes_over_another_film_but_replaces_its_own_heatmap(
        tiny_run: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # explain a.png --out b.png replaced the film b.png with a.png's heatmap
    from PIL import Image

    films = sorted((tiny_data / "test" / "NORMAL").iterdir())
    other = tmp_path / "other.png"
    Image.open(films[1]).save(other)
    before = other.read_bytes()
    assert main(["explain", str(films[0]), "--model", str(tiny_run), "--out", str(other)]) == 2
    assert capsys.readouterr().err.strip() == (f"pneumoscan: error: {other}: exists and is not a figure pneumoscan "
                                               f"drew (an X-ray?); give --out another file name, or delete it first")
    assert other.read_bytes() == before
    heatmap = tmp_path / "heatmap.png"
    for _ in range(2):  # a heatmap written before is replaced
        assert main(["explain", str(films[0]), "--model", str(tiny_run), "--out", str(heatmap)]) == 0


def test_atomic_write_reports_the_path_when_even_the_cleanup_fails(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(self: Path, missing_ok: bool = False) -> None:
        raise OSError(30, "Read-only file system")

    def fail(tmp: Path) -> None:
        raise OSError(30, "Read-only file system", str(tmp))

    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(InputError, match=r"^\S*out\.png: cannot be written \(Read-only file system\)"):
        atomic_write(tmp_path / "out.png", fail)


@pytest.mark.parametrize("command", ["report", "explain", "export"])
def test_a_file_among_the_output_folders_is_found_before_the_work(command: str, tiny_run: Path, tiny_data: Path,
                                                                  tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`--out notes.txt/r.html` (a file where a folder must be made) failed only when writing, after the work."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    image = sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[0]
    argv = {"report": ["report", str(tiny_run), "--out", str(blocker / "sub" / "r.html")],
            "explain": ["explain", str(image), "--model", str(tiny_run), "--out", str(blocker / "h.png")],
            "export": ["export", "--model", str(tiny_run), "--out", str(blocker / "m.onnx")]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{blocker}: a file where a folder is needed; check the path of --out" in err  # by check_output, up front
    assert len(err.strip().splitlines()) == 1 and "decoding" not in err
    assert blocker.read_text() == "mine"


def test_json_ready_gives_what_strict_json_holds() -> None:
    data = {"auc": {"value": float("nan"), "ci95": (0.5, float("inf"))}, "n": 3, "names": ("a", "b")}
    assert json_ready(data) == {"auc": {"value": None, "ci95": [0.5, None]}, "n": 3, "names": ["a", "b"]}


def test_undone_on_failure_removes_only_what_the_block_made(tmp_path: Path) -> None:
    from pneumoscan.outputs import undone_on_failure

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "kept.json").write_text("before")
    out = tmp_path / "old" / "new" / "deeper"
    with pytest.raises(OSError, match="disk full"):
        with undone_on_failure(out, [out / "a.json", tmp_path / "old" / "kept.json"]):
            out.mkdir(parents=True)
            (out / "a.json").write_text("new")
            (tmp_path / "old" / "kept.json").write_text("after")
            raise OSError("disk full")
    assert not (tmp_path / "old" / "new").exists()
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["kept.json"]  # there before: not removed
    with undone_on_failure(out, [out / "a.json"]):  # success: all stays
        out.mkdir(parents=True)
        (out / "a.json").write_text("new")
    assert (out / "a.json").read_text() == "new"


@pytest.mark.parametrize("command", ["evaluate", "set-threshold"])
def test_a_command_that_fails_leaves_no_new_folder_for_its_outputs(command: str, tiny_run: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The folders of --json and --predictions were made before the work, and stayed, empty, when it failed."""
    from tests.conftest import write_xray

    data = tmp_path / "data"
    write_xray(data / "NORMAL" / "a.png", 0, 1)  # no PNEUMONIA folder: both commands fail after the output checks
    argv = {"evaluate": ["evaluate", "--model", str(tiny_run), "--data", str(data), "--json",
                         str(tmp_path / "j" / "deep" / "e.json"), "--predictions", str(tmp_path / "p" / "e.csv")],
            "set-threshold": ["set-threshold", "--model", str(tiny_run), "--data", str(data), "--out",
                              str(tmp_path / "site"), "--json", str(tmp_path / "j" / "deep" / "t.json")]}[command]
    assert main(argv) == 2
    assert "no PNEUMONIA folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_atomic_write_that_fails_removes_the_folders_it_made(tmp_path: Path) -> None:
    def full(tmp: Path) -> None:
        tmp.write_text("half")
        raise disk_full()

    (tmp_path / "old").mkdir()
    with pytest.raises(InputError, match="cannot be written"):
        atomic_write(tmp_path / "old" / "new" / "deeper" / "out.json", full)
    assert [p.name for p in tmp_path.iterdir()] == ["old"] and not any((tmp_path / "old").iterdir())


def test_atomic_write_all_replaces_none_when_one_fails(tmp_path: Path) -> None:
    """Files that belong together (a report page and its figures) are renamed into place only once all are written:
    a failure leaves the earlier ones as they were, and no new file, temp file or folder."""
    from pneumoscan.outputs import atomic_write_all

    def full(tmp: Path) -> None:
        tmp.write_text("half")
        raise disk_full()

    old = tmp_path / "old.txt"
    old.write_text("before")
    new = tmp_path / "new" / "a" / "b" / "figure.png"
    with pytest.raises(InputError, match=r"late\.txt: cannot be written \(No space left on device\)"):
        atomic_write_all({old: lambda tmp: tmp.write_text("after"), new: lambda tmp: tmp.write_bytes(b"png"),
                          tmp_path / "new" / "late.txt": full})
    assert [p.name for p in tmp_path.iterdir()] == ["old.txt"] and old.read_text() == "before"
    with pytest.raises(InputError, match=r"figure\.png: cannot be written"):  # before the other new folder is made
        atomic_write_all({new: full, tmp_path / "new" / "c" / "late.txt": lambda tmp: tmp.write_text("late")})
    assert [p.name for p in tmp_path.iterdir()] == ["old.txt"]
    assert atomic_write_all({old: lambda tmp: tmp.write_text("after"), new: lambda tmp: tmp.write_bytes(b"png")}) == \
        [old, new]
    assert old.read_text() == "after" and new.read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "figure.png", "new", "old.txt"]


@pytest.mark.usefixtures("ctrl_c_raises")
@pytest.mark.parametrize("during", [1, 2, 3])
def test_ctrl_c_among_the_renames_waits_until_all_are_done(during: int, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl+C right after the first rename raised KeyboardInterrupt there: the new files already renamed were removed
    again and the earlier ones overwritten stayed new, a mix of two reports."""
    import os
    import signal

    from pneumoscan import outputs

    old = {tmp_path / name: "before" for name in ("a.png", "b.png")}
    for path, text in old.items():
        path.write_text(text)
    files = [*old, tmp_path / "page.html"]  # two overwritten, the last one new
    real = os.replace
    calls: list[int] = []

    def replace(src: Path, dst: Path) -> None:
        real(src, dst)
        calls.append(1)
        if len(calls) == during:
            signal.raise_signal(signal.SIGINT)  # as a real Ctrl+C: the handler runs here, in the main thread

    monkeypatch.setattr(outputs.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        outputs.atomic_write_all({path: lambda tmp: tmp.write_text("after") for path in files})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "page.html"]
    assert all(path.read_text() == "after" for path in files)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl+C works as before afterwards


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under FOLDER (hidden ones too: temp files, backups, journals) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _report_set(folder: Path, version: str) -> tuple[dict[Path, Callable[[Path], object]], list[Path]]:
    """An old or new 'report': a page and figures (the new one lacks stale.png and has c.png), and what it removes."""
    figures = folder / "r_files"
    names = ["a.png", "b.png", "stale.png"] if version == "old" else ["a.png", "c.png"]
    files: dict[Path, Callable[[Path], object]] = {
        figures / name: (lambda tmp, text=f"{version} {name}": tmp.write_text(text)) for name in names}
    files[folder / "r.html"] = lambda tmp: tmp.write_text(f"{version} page")
    return files, [figures / name for name in ("a.png", "b.png", "c.png", "stale.png") if name not in names]


def _failing_replace(monkeypatch: pytest.MonkeyPatch, failing: int, fail: Callable[[], None]) -> list[tuple[str, str]]:
    """os.replace as `atomic_write_all` sees it, calling FAIL instead of the FAILING-th rename; the renames done."""
    import os

    from pneumoscan import outputs

    real, calls = os.replace, []

    def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == failing:
            fail()
        real(src, dst)

    monkeypatch.setattr(outputs.os, "replace", replace)
    return calls


@pytest.mark.parametrize("flock", [True, False])
@pytest.mark.parametrize("failing", range(1, 8))
def test_a_failed_rename_leaves_the_earlier_set_of_files_whole(failing: int, flock: bool, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The renames of a set were undone only for files that were new: a failure at the k-th left the files renamed
    before it new and the others old (and the figures an earlier report had but the new one lacks, removed after the
    renames, stayed), a mix a reader takes for one report. Now the folder holds the old set or the new one; also
    where there is no flock (Windows), where the journal is not held open."""
    from pneumoscan import outputs
    from pneumoscan.outputs import atomic_write_all

    if not flock:
        monkeypatch.setattr(outputs, "fcntl", None)

    atomic_write_all(_report_set(tmp_path, "old")[0])
    old = _tree(tmp_path)
    mine = tmp_path / "r_files" / "patient 7.png"  # the user's own file, in the figures' folder: not the report's
    mine.write_bytes(b"mine")

    def fail() -> None:
        raise OSError(5, "Input/output error")

    calls = _failing_replace(monkeypatch, failing, fail)
    files, remove = _report_set(tmp_path, "new")
    if failing <= 6:  # 3 files renamed into place, b.png and stale.png set aside, the journal committed
        with pytest.raises(InputError, match=r"cannot be written \(Input/output error\)"):
            atomic_write_all(files, remove=remove)
        assert _tree(tmp_path) == {**old, "r_files/patient 7.png": b"mine"}
    else:
        atomic_write_all(files, remove=remove)
        assert len(calls) == 6
        assert _tree(tmp_path) == {"r.html": b"new page", "r_files/a.png": b"new a.png", "r_files/c.png": b"new c.png",
                                   "r_files/patient 7.png": b"mine"}


CRASH = """
import os, sys
from pathlib import Path
from pneumoscan import outputs

failing, folder = int(sys.argv[1]), Path(sys.argv[2])
real, calls = os.replace, []

def replace(src, dst):
    calls.append(1)
    if len(calls) == failing:
        os._exit(9)  # as a crash or power loss: no cleanup runs
    real(src, dst)

outputs.os.replace = replace
if failing == 0:
    outputs._finish = lambda *args: os._exit(9)  # after the commit, before the backups and journal are deleted
figures = folder / "r_files"
outputs.atomic_write_all({figures / "a.png": lambda tmp: tmp.write_text("new a.png"),
                          figures / "c.png": lambda tmp: tmp.write_text("new c.png"),
                          folder / "r.html": lambda tmp: tmp.write_text("new page")},
                         remove=[figures / "b.png", figures / "stale.png"])
"""


@pytest.mark.parametrize("failing", range(0, 7))
def test_what_a_crash_among_the_renames_leaves_is_undone_by_the_next_write(failing: int, tmp_path: Path) -> None:
    """A crash among the renames (a process killed, a power loss) leaves new files beside old ones: the journal it
    leaves lets the next write of the set put the old ones back (or, once committed, finish), with a warning."""
    import subprocess
    import sys

    from pneumoscan.outputs import atomic_write_all, recover_interrupted

    atomic_write_all(_report_set(tmp_path, "old")[0])
    old = _tree(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run([sys.executable, "-c", CRASH, str(failing), str(tmp_path)], env=env)
    assert done.returncode == 9
    if failing > 1:
        assert _tree(tmp_path) != old  # a mix of the two, or the new set and leftovers
    assert any(name.endswith((".journal", ".done")) for name in os.listdir(tmp_path))
    if failing == 0:  # committed: the new set, whole, and nothing to warn about
        assert recover_interrupted([tmp_path / "r.html"]) == []
        assert _tree(tmp_path) == {"r.html": b"new page", "r_files/a.png": b"new a.png",
                                   "r_files/c.png": b"new c.png"}
        return
    with pytest.warns(UserWarning, match=r"r\.html: an earlier run stopped while replacing it .* put back"):
        atomic_write_all(_report_set(tmp_path, "old")[0])  # the next write: undoes it first
    assert _tree(tmp_path) == old


def _absolute(record: object, folder: Path) -> object:
    """A journal's record with its paths absolute, placed in FOLDER, as versions before relative paths wrote it."""
    if isinstance(record, list):
        return [_absolute(item, folder) for item in record]
    if isinstance(record, dict):
        return {key: _absolute(value, folder) for key, value in record.items()}
    return os.path.normpath(os.path.join(os.path.realpath(folder), record)) if isinstance(record, str) else record


@pytest.mark.parametrize("failing", [0, 3, 5])
@pytest.mark.parametrize("how", ["mv", "cp -a"])
@pytest.mark.parametrize("older", [False, True])
def test_a_crashed_write_in_a_moved_or_copied_folder_is_undone_there_only(how: str, failing: int, older: bool,
                                                                          tmp_path: Path) -> None:
    """The journal recorded absolute paths: in a folder moved (`mv run run2`) or copied (`cp -a`) since, recovery
    acted on the old place (with a copy, changing the files of the original folder), warned of files it had not
    put back and left the copy's backups (`.NAME.PID.old`) forever. Now it puts right the folder it is in; a journal
    of an `older` version, with absolute paths, is placed from the folder it was written in."""
    import json
    import subprocess
    import sys

    from pneumoscan.outputs import atomic_write_all, recover_interrupted

    run, run2 = tmp_path / "run", tmp_path / "run2"
    atomic_write_all(_report_set(run, "old")[0])
    old = _tree(run)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    assert subprocess.run([sys.executable, "-c", CRASH, str(failing), str(run)], env=env).returncode == 9
    if older:
        (journal,) = [p for p in run.iterdir() if p.name.endswith((".journal", ".done"))]
        record = json.loads(journal.read_text())
        journal.write_text(json.dumps(_absolute(record, run)))
    crashed = _tree(run)
    if how == "mv":
        run.rename(run2)
    else:
        shutil.copytree(run, run2, symlinks=True)
    if failing == 0:  # committed: the new set, whole; its backups and journal go
        assert recover_interrupted([run2 / "r.html"]) == []
        assert _tree(run2) == {"r.html": b"new page", "r_files/a.png": b"new a.png", "r_files/c.png": b"new c.png"}
    else:
        with pytest.warns(UserWarning, match=r"run2/r\.html: an earlier run stopped while replacing it"):
            assert recover_interrupted([run2 / "r.html"]) == [run2 / "r.html"]
        assert _tree(run2) == old
    assert not run.exists() if how == "mv" else _tree(run) == crashed  # the original folder is not touched


CRASH_PAIR = """
import os, sys
from pneumoscan import outputs

real = os.replace

def replace(src, dst):
    real(src, dst)
    os._exit(9)  # a crash right after the first rename

outputs.os.replace = replace
outputs.atomic_write_all({sys.argv[1]: lambda tmp: tmp.write_text("new p"),
                          sys.argv[2]: lambda tmp: tmp.write_text("new s")})
"""


def _crash_pair(predictions: Path, summary: Path, older: bool) -> Path:
    """`evaluate --predictions PREDICTIONS --json SUMMARY` (each "old" before) crashed after its first rename; its
    journal (rewritten with absolute paths when `older`, as versions before relative paths wrote it)."""
    import json
    import subprocess
    import sys

    for path, text in ((predictions, "old p"), (summary, "old s")):
        path.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    crash = subprocess.run([sys.executable, "-c", CRASH_PAIR, str(predictions), str(summary)], env=env)
    assert crash.returncode == 9 and predictions.read_text() == "new p"
    (journal,) = [p for p in summary.parent.iterdir() if p.name.endswith(".journal")]
    if older:
        record = json.loads(journal.read_text())
        journal.write_text(json.dumps(_absolute(record, summary.parent.absolute())))
    return journal


@pytest.mark.parametrize("older", [False, True])
def test_a_crashed_write_whose_journal_is_reached_through_a_symlink_undoes_its_own_files(older: bool,
                                                                                        tmp_path: Path) -> None:
    """The journal recorded a file outside its folder as `../other/p.csv`: beside a journal reached through a
    symlink (`link -> real/out`) the kernel resolves `..` after the link, so recovery put 'back' real/other/p.csv
    (deleting a user's file there) and left other/p.csv new, a half-written set. (An older journal's absolute paths
    were made so too.) Now `..` steps are counted between real paths, at writing and at reading."""
    from pneumoscan.outputs import recover_interrupted

    (tmp_path / "real" / "out").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real" / "out")
    _crash_pair(tmp_path / "other" / "p.csv", tmp_path / "link" / "s.json", older)
    (tmp_path / "real" / "other").mkdir()
    (tmp_path / "real" / "other" / "p.csv").write_text("the user's")
    with pytest.warns(UserWarning, match="an earlier run stopped"):
        assert recover_interrupted([tmp_path / "link" / "s.json"]) == [tmp_path / "link" / "s.json"]
    assert _tree(tmp_path / "other") == {"p.csv": b"old p"}
    assert _tree(tmp_path / "real") == {"out/s.json": b"old s", "other/p.csv": b"the user's"}


def _across_drives(monkeypatch: pytest.MonkeyPatch, drive: Path) -> None:
    """os.path.relpath as on Windows for paths on two drives: a ValueError when one lies under DRIVE, one not."""
    real = os.path.relpath

    def relpath(path: str, start: str | None = None) -> str:
        if (Path(path).is_relative_to(drive)) != (Path(start or os.getcwd()).is_relative_to(drive)):
            raise ValueError("path is on mount 'D:', start on mount 'C:'")
        return real(path, start)

    monkeypatch.setattr(os.path, "relpath", relpath)


@pytest.mark.parametrize("older", [False, True])
def test_a_set_of_files_on_two_drives_is_written_and_a_crashed_one_undone(older: bool, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows no relative path joins two drives (ntpath.relpath raises ValueError): `evaluate --predictions
    D:\\p.csv --json C:\\s.json` failed with a traceback after scoring, and an older journal (absolute paths) of such
    a set was taken for a torn one and deleted, leaving the set half written. Now the file on the other drive is
    recorded, and read back, by its absolute path."""
    from pneumoscan.outputs import atomic_write_all, recover_interrupted

    (tmp_path / "D").mkdir()
    (tmp_path / "C").mkdir()
    predictions, summary = tmp_path / "D" / "p.csv", tmp_path / "C" / "s.json"
    _crash_pair(predictions, summary, older)
    _across_drives(monkeypatch, tmp_path / "D")
    with pytest.warns(UserWarning, match="an earlier run stopped"):
        assert recover_interrupted([summary]) == [summary]
    assert (predictions.read_text(), summary.read_text()) == ("old p", "old s")
    atomic_write_all({predictions: lambda tmp: tmp.write_text("new p"), summary: lambda tmp: tmp.write_text("new s")})
    assert _tree(tmp_path) == {"D/p.csv": b"new p", "C/s.json": b"new s"}


def test_a_journal_records_a_path_relative_to_its_real_folder() -> None:
    """Relative to the journal's folder, `..` steps counted between real paths (symlinks resolved by the caller)."""
    from pneumoscan.outputs import journal_entry

    assert journal_entry("/a/real/out/r_files/a.png", "/a/real/out") == "r_files/a.png"
    assert journal_entry("/a/other/p.csv", "/a/real/out") == "../../other/p.csv"


def test_a_crashed_write_across_folders_of_a_tree_moved_since_is_undone_in_the_moved_tree(tmp_path: Path) -> None:
    """A set in two folders (`evaluate --predictions t/other/p.csv --json t/mydir/s.json`) crashed, then the tree
    was moved (`mv t t2`): with the file outside the journal's folder recorded absolute, recovery put back the old
    place's files (deleting a user's new t/other/p.csv) and left t2 half written. Now t2 is put right, t untouched."""
    from pneumoscan.outputs import recover_interrupted

    tree, moved = tmp_path / "t", tmp_path / "t2"
    for folder in ("other", "mydir"):
        (tree / folder).mkdir(parents=True)
    _crash_pair(tree / "other" / "p.csv", tree / "mydir" / "s.json", older=False)
    tree.rename(moved)
    (tree / "other").mkdir(parents=True)
    (tree / "other" / "p.csv").write_text("the user's")
    with pytest.warns(UserWarning, match="an earlier run stopped"):
        assert recover_interrupted([moved / "mydir" / "s.json"]) == [moved / "mydir" / "s.json"]
    assert _tree(moved) == {"other/p.csv": b"old p", "mydir/s.json": b"old s"}
    assert _tree(tree) == {"other/p.csv": b"the user's"}


def test_a_journal_that_a_running_process_holds_is_left_alone(tmp_path: Path) -> None:
    """Another command writing the same files right now is not taken for a crashed one: its flock says so."""
    from pneumoscan.outputs import Journal, recover_interrupted

    page, figure = tmp_path / "r.html", tmp_path / "b.png"
    for path in (page, figure):
        path.write_text("old")
    journal = Journal({figure: tmp_path / ".b.png.tmp", page: tmp_path / ".r.html.tmp"}, [], [], [])
    journal.open()  # as `atomic_write_all` does, before its temp files: locked while it runs
    assert recover_interrupted([page]) == [] and journal.path.exists()
    journal.close()  # as its process ending, by a crash: the lock goes with it
    with pytest.warns(UserWarning, match="an earlier run stopped"):
        assert recover_interrupted([figure, page]) == [page]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png", "r.html"]


def test_a_journal_is_locked_before_another_command_can_read_it(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal was written and fsynced before its flock was taken: another command writing the same files in
    that moment took it for a crashed write's, undid it (with a warning) and deleted it, and this write then failed
    at its commit. Now it is locked from the moment it exists."""
    from pneumoscan import outputs
    from pneumoscan.outputs import atomic_write_all, recover_interrupted

    page, figure = tmp_path / "r.html", tmp_path / "b.png"
    for path in (page, figure):
        path.write_text("old")
    real, seen = outputs.fsync_folder, []

    def fsync_folder(folder: Path) -> None:  # the first is the journal's folder, once the journal is written
        if not seen:
            seen.append(recover_interrupted([page]))  # another command about to write the same report
        real(folder)

    monkeypatch.setattr(outputs, "fsync_folder", fsync_folder)
    atomic_write_all({figure: lambda tmp: tmp.write_text("new"), page: lambda tmp: tmp.write_text("new")})
    assert seen == [[]]
    assert _tree(tmp_path) == {"b.png": b"new", "r.html": b"new"}



def test_a_journal_finished_while_another_command_waits_for_its_lock_is_left_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command that opened a journal just before its own process committed it and let go of its lock then read it
    by a path that was gone: the write of a report failed with 'r.html: cannot be written (No such file or
    directory)'. Now a journal that is no longer at its path once locked is not another's to recover."""
    from pneumoscan import outputs
    from pneumoscan.outputs import Journal, recover_interrupted

    page, figure = tmp_path / "r.html", tmp_path / "b.png"
    for path in (page, figure):
        path.write_text("old")
    journal = Journal({figure: tmp_path / ".b.png.tmp", page: tmp_path / ".r.html.tmp"}, [], [], [])
    journal.open()
    real = outputs._unlocked

    def unlocked(fd: int) -> bool:  # its process commits between this command's open and its flock
        journal.commit()
        return real(fd)

    monkeypatch.setattr(outputs, "_unlocked", unlocked)
    assert recover_interrupted([page]) == []
    assert _tree(tmp_path) == {"b.png": b"old", "r.html": b"old"}


def test_a_journal_another_command_removed_as_torn_before_it_was_locked_is_made_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the journal's creation and its flock, another command found it empty and unlocked, took it for one a
    crash tore, and removed it: this write then went on with a journal at no path and failed at its commit ('r.html:
    cannot be written (No such file or directory)'). Now a journal no longer at its path once locked is made again."""
    import fcntl
    import types

    from pneumoscan import outputs
    from pneumoscan.outputs import atomic_write_all, recover_interrupted

    page, figure = tmp_path / "r.html", tmp_path / "b.png"
    for path in (page, figure):
        path.write_text("old")
    seen = []

    def flock(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX and not seen:  # this write's own lock, on its new journal
            seen.append(recover_interrupted([page]))  # another command writing the same report, just before it
        fcntl.flock(fd, operation)

    monkeypatch.setattr(outputs, "fcntl", types.SimpleNamespace(LOCK_EX=fcntl.LOCK_EX, LOCK_NB=fcntl.LOCK_NB,
                                                                flock=flock))
    atomic_write_all({figure: lambda tmp: tmp.write_text("new"), page: lambda tmp: tmp.write_text("new")})
    assert seen == [[]]
    assert _tree(tmp_path) == {"b.png": b"new", "r.html": b"new"}


def test_where_there_are_no_hard_links_the_replaced_files_are_kept_as_copies(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """On a file system without hard links (FAT, some network shares) the files a set replaces are kept as copies:
    a failed rename still puts the earlier set back whole, and a written set leaves no copy behind."""
    from pneumoscan import outputs
    from pneumoscan.outputs import atomic_write_all

    def no_link(src: str | os.PathLike, dst: str | os.PathLike) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(outputs.os, "link", no_link)
    atomic_write_all(_report_set(tmp_path, "old")[0])
    old = _tree(tmp_path)

    def fail() -> None:
        raise OSError(5, "Input/output error")

    _failing_replace(monkeypatch, 3, fail)
    files, remove = _report_set(tmp_path, "new")
    with pytest.raises(InputError, match=r"cannot be written \(Input/output error\)"):
        atomic_write_all(files, remove=remove)
    assert _tree(tmp_path) == old
    atomic_write_all(files, remove=remove)
    assert _tree(tmp_path) == {"r.html": b"new page", "r_files/a.png": b"new a.png", "r_files/c.png": b"new c.png"}

