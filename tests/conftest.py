"""Shared fixtures: the bundled sample, tiny synthetic datasets and an isolated image cache."""
from __future__ import annotations

import errno
import io
import os
import shutil
import signal
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator


def worker_threads(cores: int, workers: int) -> int:
    """The threads each of `workers` parallel test processes may use on `cores` cores: its share, at least 1."""
    return max(1, cores // max(1, workers))


def share_the_cores() -> None:
    """Under pytest-xdist, give torch, OpenMP and ONNX Runtime in this worker (and in the commands it starts) its
    share of the cores, unless the caller's environment says otherwise: each would take every core, and two workers
    on 2 cores then wait on each other's threads."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers:
        return
    threads = str(worker_threads(len(os.sched_getaffinity(0)), int(workers)))
    for name in ("OMP_NUM_THREADS", "PNEUMOSCAN_ORT_THREADS"):
        os.environ.setdefault(name, threads)


share_the_cores()  # before numpy and torch are imported: they read OMP_NUM_THREADS once, when loaded

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from pneumoscan import CLASS_NAMES  # noqa: E402
from tests.guard_site.sitecustomize import READ_GUARD, READ_GUARD_LOG, files_of, opens_one_of, refusal  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample" / "chest_xray"
SHARED = ROOT.parent / "shared" / "data" / "chest_xray"


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache folder for module- and session-scoped fixtures, which are set up outside any test's own cache:
    without it they wrote into the developer's ~/.cache/pneumoscan."""
    with pytest.MonkeyPatch.context() as patch:
        cache = tmp_path_factory.mktemp("session_cache")
        patch.setenv("PNEUMOSCAN_CACHE", str(cache))
        patch.delenv("PNEUMOSCAN_CACHE_MAX_GB", raising=False)
        yield cache


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("PNEUMOSCAN_CACHE", str(cache))
    monkeypatch.delenv("PNEUMOSCAN_CACHE_MAX_GB", raising=False)  # the default limit, whatever the caller's shell says
    return cache


class _InterruptedInit:
    """A finder for `name` whose import fails as a Ctrl+C during a pybind11 module's initialisation does: an
    ImportError('initialization failed') raised from the KeyboardInterrupt (seen with ONNX Runtime's)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        from importlib.machinery import ModuleSpec

        return ModuleSpec(fullname, self) if fullname == self.name else None

    def create_module(self, spec: object) -> None:
        return None

    def exec_module(self, module: object) -> None:
        raise ImportError("initialization failed") from KeyboardInterrupt()


def serve_at_once(then: Callable[..., object] | None = None) -> Callable[..., None]:
    """A stand-in for `pneumoscan.service.serving.run`, which serves until stopped: it says where it serves, as the
    real one does once uvicorn serves, hands the app and uvicorn's options to THEN, and returns: `serve`'s start-up
    alone."""

    def run(app: object, *, sockets: object, announce: Callable[[], None], **options: Any) -> None:
        announce()
        if then is not None:
            then(app, **options)

    return run


def interrupt_import(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Make the next `import module` fail as a Ctrl+C during its C extension's initialisation does
    (`_InterruptedInit`), until the test ends."""

    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(sys, "meta_path", [_InterruptedInit(module), *sys.meta_path])


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """Ctrl+C (SIGINT) raises KeyboardInterrupt during the test, as in a terminal, in this process and in the ones it
    starts: pytest started with SIGINT ignored (by `nohup`, or with `&` in a script) passed that on, and the tests of
    Ctrl+C then failed, or passed without any Ctrl+C arriving."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class SampleTestFilmRead(PermissionError):
    """A test opened a film of the bundled sample's test/ (of the official test split, for final reporting only):
    refused before anything is read."""


SAMPLE_TEST = os.path.realpath(SAMPLE / "test")
SAMPLE_TEST_FILES = files_of(SAMPLE_TEST)
REPORTING = {ROOT / "tests" / "test_shipped_model.py"}  # the tests that report on the sample's test films
LISTS_SAMPLE_TEST = "lists_sample_test_films"
# What the audit hook reads: armed from the start (collection, module-level code, parametrize lists included) and
# disarmed only while a test of REPORTING or one marked LISTS_SAMPLE_TEST runs
_guard: dict[str, object] = {"armed": True, "seen": []}
READ_SAMPLE_TEST = ("read or changed the bundled sample's test/ (official test split films, for final reporting "
                    "only; use the sample_films fixture)")


def under_sample_test(path: object) -> bool:
    """Whether `path` (what an "open" audit event names) is a file of the sample's test/, by its device and inode:
    through any symlink (to the sample, to a class folder, to a film) or hard link."""
    return opens_one_of(path, SAMPLE_TEST_FILES)


# Processes the tests start are guarded by tests/guard_site/sitecustomize.py, first on their PYTHONPATH (Python
# imports the first sitecustomize only): while the guard is armed READ_GUARD names the sample's test/ in their
# environment, and what they were refused is appended to the log, made by pytest_configure (importing this module
# outside pytest, for write_dicom, makes no file and leaves the environment be)
GUARD_SITE = ROOT / "tests" / "guard_site"
_log: dict[str, str] = {}


def guard_site_first(pythonpath: str | None) -> str:
    """`pythonpath` with tests/guard_site first (and only there): after a folder holding another sitecustomize (a
    stdlib folder, as `os.pathsep.join(sys.path)` lists it) it would not be imported."""
    paths = [path for path in str(pythonpath or "").split(os.pathsep) if path and path != str(GUARD_SITE)]
    return os.pathsep.join([str(GUARD_SITE), *paths])


def guarded_env(env: object) -> None:
    """Give the environment a test passes to a process it starts (`env=`) the guard, while armed: a test's own
    PYTHONPATH (`src` alone) left tests/guard_site out."""
    if not isinstance(env, dict) or READ_GUARD not in os.environ:
        return
    env.update({READ_GUARD: os.environ[READ_GUARD], READ_GUARD_LOG: _log["path"],
                "PYTHONPATH": guard_site_first(env.get("PYTHONPATH"))})


def read_by_processes() -> list[str]:
    """The sample's test/ films the processes the tests started were refused since last asked (the log emptied). A
    log removed meanwhile (a temp-folder clean-up) holds none: a refusal after it makes the file again."""
    try:
        with open(_log["path"], "r+", encoding="utf-8") as log:
            seen = log.read().splitlines()
            log.truncate(0)
    except FileNotFoundError:
        return []
    return seen


_watches: list[tuple[str, list[str]]] = []  # `files_opened_under`'s folders (resolved) and what was opened in each


@contextmanager
def files_opened_under(folder: Path) -> Iterator[list[str]]:
    """The files this process opens under `folder` (through any symlink) while the block runs, as the audit hook
    sees them: a list that grows as they are opened."""
    watch: tuple[str, list[str]] = (os.path.realpath(folder), [])
    _watches.append(watch)
    try:
        yield watch[1]
    finally:
        _watches.remove(watch)


def _sample_test_hook(event: str, args: tuple[object, ...]) -> None:
    if event == "subprocess.Popen":
        guarded_env(args[3])
    if event == "open" and args[0] is not None and not isinstance(args[0], int):
        for root, opened in _watches:
            real = os.path.realpath(os.fsdecode(os.fspath(args[0])))  # type: ignore[arg-type]
            if real == root or real.startswith(root + os.sep):
                opened.append(real)
    if _guard["armed"] and (path := refusal(event, args, SAMPLE_TEST, SAMPLE_TEST_FILES)):
        _guard["seen"].append(path)  # type: ignore[union-attr]
        raise SampleTestFilmRead(errno.EACCES, "a test may not read or change the bundled sample's test/ (official "
                                 "test split films; use the sample_films fixture)", path)


def pytest_unconfigure(config: pytest.Config) -> None:
    if "path" in _log and os.path.exists(_log["path"]):
        os.unlink(_log["path"])


def pytest_configure(config: pytest.Config) -> None:
    """Arm the guard, before the tests are collected: this process's audit hook, and the environment and log of the
    processes the tests start."""
    descriptor, _log["path"] = tempfile.mkstemp(prefix="pneumoscan-tests-read-guard-", suffix=".log")
    os.close(descriptor)
    os.environ.update({READ_GUARD: SAMPLE_TEST, READ_GUARD_LOG: _log["path"],
                       "PYTHONPATH": guard_site_first(os.environ.get("PYTHONPATH"))})
    if hasattr(sys.modules.get("sitecustomize"), "stand_down"):  # this process started guarded (an xdist worker)
        sys.modules["sitecustomize"].stand_down()  # its own guard below is armed and disarmed with each test
    if not getattr(sys, "_pneumoscan_sample_test_hook", False):  # audit hooks cannot be removed: one per process
        sys.addaudithook(_sample_test_hook)
        sys._pneumoscan_sample_test_hook = True  # type: ignore[attr-defined]
    config.addinivalue_line("markers", f"{LISTS_SAMPLE_TEST}(reason): the test lists, copies or hashes the bundled "
                            "sample's test/ films with no model (audit's leakage and duplicate checks, the sdist's "
                            "copy), so the guard of tests/conftest.py lets it open them; say why in `reason`")


def sample_test_reason(item: pytest.Item) -> str | None:
    """The reason `item` is marked `lists_sample_test_films` with (`reason="..."` or the marker's one argument), or
    None when it is not marked."""
    marker = item.get_closest_marker(LISTS_SAMPLE_TEST)
    if marker is None:
        return None
    return str(marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")).strip()


def reads_sample_test(item: pytest.Item) -> bool:
    """Whether `item` may open the sample's test/: a test of REPORTING, or one marked `lists_sample_test_films`."""
    return sample_test_reason(item) is not None or Path(item.path).resolve() in REPORTING


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The run stops before any test when collecting the tests opened a film of the sample's test/ (the guard
    refused it, and a loader that skips unreadable films may have caught that: no test would fail for it), or when
    a `lists_sample_test_films` mark has no reason, naming the films or the tests."""
    seen, _guard["seen"] = sorted(set(_guard["seen"]) | set(read_by_processes())), []  # type: ignore[arg-type]
    if seen:
        raise pytest.UsageError(f"collecting the tests {READ_SAMPLE_TEST}: {', '.join(seen)}")
    unexplained = [item.nodeid for item in items if sample_test_reason(item) == ""]
    if unexplained:
        raise pytest.UsageError(f"@pytest.mark.{LISTS_SAMPLE_TEST} needs a reason (reason='why'): "
                                f"{', '.join(unexplained)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Disarm the guard for the whole run of a test that may read the sample's test/ (the setup of the session and
    module fixtures it is first to use included: an autouse fixture would be set up after those)."""
    _guard.update(armed=not reads_sample_test(item), seen=[])
    if not _guard["armed"]:
        os.environ.pop(READ_GUARD)
    try:
        yield
    finally:
        _guard.update(armed=True)
        os.environ[READ_GUARD] = SAMPLE_TEST


@pytest.fixture(autouse=True)
def sample_test_films_unread() -> Iterator[None]:
    """Fail a test that opened a film of the bundled sample's test/ (of the official test split, for final reporting
    only: tests/test_shipped_model.py scores them; other tests use `sample_films`) or changed the folder. An audit hook
    (`sys.addaudithook`, one per process) refuses each "open" of a file there before a byte is read, whatever the
    spelling (`sample_dir / "test"`, joinpath, an f-string, os.path.join, a glob, a symlink or hard link to the sample,
    a class folder or a film), each open that would write or make a file there, and each change of the folder that
    raises an audit event (a move in or out, a new folder or link, a removal, also of a folder holding it, a film's data
    or metadata changed: tests/guard_site/sitecustomize.py's CHANGES); this fixture also fails the test when code caught
    that refusal (a loader that skips unreadable films). Python processes the test starts (`python -m pneumoscan ...`, a
    served app; a forked DataLoader worker inherits the hook) are guarded alike by tests/guard_site/sitecustomize.py,
    and what they were refused fails the test too (a process left running by an earlier test, the test after it).
    Listing the folder is let be: it reads no film, and `discover(sample_dir)` lists every split. Not covered: C code
    that opens or changes files itself, os.mkfifo and os.mknod (no audit event), a film's mode, owner, times or xattrs
    changed through a symlink to it (the call may change the link itself: `shutil.copytree(..., symlinks=True)` of a
    folder holding one), and a process started without site
    (`python -S`) or isolated (`-I`, `-E`), which skips PYTHONPATH."""
    yield
    seen = sorted(set(_guard["seen"]) | set(read_by_processes()))  # type: ignore[arg-type]
    if seen:
        pytest.fail(f"the test {READ_SAMPLE_TEST}: {', '.join(seen)}", pytrace=False)


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


def sample_films_of(name: str) -> list[Path]:
    """The bundled sample's films of class `name` that tests may put through a model, an export check or the
    service: 30 of its train/ films. Its test/ holds films of the official test split, which is for final reporting
    only (tests/test_shipped_model.py scores them); these stand in for them, 30 a class as there."""
    return sorted((SAMPLE / "train" / name).glob("*.jpeg"))[-30:]


def sample_as_data(root: Path) -> Path:
    """A data folder laid out as the bundled sample, of its train/ films only: `sample_films_of` as its test/, the
    other train/ films as its train/."""
    for name in CLASS_NAMES:
        held_out = sample_films_of(name)
        for film in sorted((SAMPLE / "train" / name).glob("*.jpeg")):
            split = root / ("test" if film in held_out else "train") / name
            split.mkdir(parents=True, exist_ok=True)
            shutil.copy(film, split / film.name)
    return root


@pytest.fixture(scope="session")
def sample_films(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of `sample_films_of` each class (NORMAL/, PNEUMONIA/: 30 real X-rays each), held out from the
    guard of `fitted`."""
    return sample_as_data(tmp_path_factory.mktemp("sample")) / "test"


def xray_pixels(label: int, seed: int, size: int = 40) -> np.ndarray:
    """A synthetic 'X-ray' (uint8): pneumonia images carry a bright blob, normal ones don't."""
    rng = np.random.default_rng(seed)
    img = rng.normal(90, 20, (size, size))
    if label:
        yy, xx = np.mgrid[:size, :size]
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        img += 120 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 8) ** 2))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_xray(path: Path, label: int, seed: int, size: int = 40) -> Path:
    """A synthetic 'X-ray' image file (format by the extension): see `xray_pixels`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(xray_pixels(label, seed, size)).save(path)
    return path


def write_dicom(path: Path, label: int, seed: int, patient_id: str | None = None, size: int = 40) -> Path:
    """The synthetic 'X-ray' of `xray_pixels` as a DICOM file with this PatientID (None: the header has none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dicom_to_bytes(make_dicom(xray_pixels(label, seed, size), bits_stored=8, patient_id=patient_id)))
    return path


def write_partly_identified(root: Path, patients: int, extensionless: bool = False) -> None:
    """Kermany-named films of `patients` patients under ROOT/train: the first one or two of each a DICOM film with
    PatientID MRN<p>, the others a JPEG (or, `extensionless`, a JPEG's bytes or a DICOM film without a PatientID under
    no extension)."""
    for p in range(patients):
        label = p % 2
        for film in range(1, 5):
            stem = f"IM-{p:04d}-{film:04d}" if label == 0 else f"person{p}_bacteria_{film}"
            folder = root / "train" / ("NORMAL", "PNEUMONIA")[label]
            if film <= 1 + p % 2:
                write_dicom(folder / f"{stem}.dcm", label, 10 * p + film, patient_id=f"MRN{p}", size=8)
            elif not extensionless:
                write_xray(folder / f"{stem}.jpeg", label, 10 * p + film, size=8)
            elif film % 2:
                write_dicom(folder / stem, label, 10 * p + film, patient_id=None, size=8)
            else:
                Image.fromarray(xray_pixels(label, 10 * p + film, 8)).save(folder / stem, format="JPEG")


def write_name_across_splits(root: Path) -> Path:
    """ROOT/train and ROOT/val, where person7's name keys films of both: person7_bacteria_2.jpeg in train/,
    person7_bacteria_1.dcm (PatientID MRN7) and _3.jpeg in val/ (with one NORMAL film), so `sibling_ids` joins
    nothing and val's JPEG keeps person7 (3 patients in val/), or takes MRN7 when val/ is keyed alone (2); train/
    holds 8 more films of each class. ROOT returned."""
    for i in range(8):
        write_xray(root / "train" / "NORMAL" / f"IM-{i:04d}-0001.jpeg", 0, i, size=32)
        write_xray(root / "train" / "PNEUMONIA" / f"person{100 + i}_bacteria_1.jpeg", 1, 50 + i, size=32)
    write_xray(root / "train" / "PNEUMONIA" / "person7_bacteria_2.jpeg", 1, 99, size=32)
    write_dicom(root / "val" / "PNEUMONIA" / "person7_bacteria_1.dcm", 1, 1, patient_id="MRN7", size=32)
    write_xray(root / "val" / "PNEUMONIA" / "person7_bacteria_3.jpeg", 1, 2, size=32)
    write_xray(root / "val" / "NORMAL" / "IM-0500-0001.jpeg", 0, 3, size=32)
    return root


def write_dicom_dataset(root: Path, patients: int = 8, films: int = 3, size: int = 32) -> Path:
    """ROOT/train/{NORMAL,PNEUMONIA} of UID-named DICOM files, `films` per patient (PatientID N<p> or P<p>): by
    file name each film would be its own patient."""
    for p in range(patients):
        for k in range(films):
            for label, name in enumerate(CLASS_NAMES):
                write_dicom(root / "train" / name / f"1.2.826.0.1.3680043.{label}.{p}.{k}", label,
                            1000 * label + 10 * p + k, patient_id=f"{name[0]}{p}", size=size)
    return root


def write_dicom_test_split(root: Path, splits: tuple[str, ...] = ("train", "val"), films: int = 8) -> list[Path]:
    """JPEG films of `films` patients a class in each of `splits` of `root` and a test/ of DICOM films, named .dcm or
    with no extension (which listing a folder may open to tell an image), returned: a command that scores no test/
    film should open none of them."""
    for split in splits:
        for label, name in enumerate(CLASS_NAMES):
            for p in range(films):
                write_xray(root / split / name / f"{split}{p}.jpeg", label, 1000 * len(split) + 100 * label + p,
                           size=32)
    return [write_dicom(root / "test" / name / (f"t{i}.dcm" if i else f"IM00000{i}"), label, 900 + 10 * label + i,
                        size=32) for label, name in enumerate(CLASS_NAMES) for i in range(2)]


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """train/ and test/ with 12 patients per class (Kermany names), 2 images for some patients."""
    root = tmp_path / "data"
    seed = 0
    for split, patients in (("train", 12), ("test", 4)):
        for p in range(patients):
            for k in range(1 + (p % 2)):
                seed += 1
                write_xray(root / split / "NORMAL" / f"IM-{p:04d}-{k + 1:04d}.jpeg", 0, seed)
                seed += 1
                kind = "bacteria" if p % 3 else "virus"
                write_xray(root / split / "PNEUMONIA" / f"person{p}_{kind}_{seed}.jpeg", 1, seed)
    return root


def without_stored_patients(path: Path) -> None:
    """Rewrite the model at `path` as one from before its validation scores stored their patients (`groups`)."""
    from dataclasses import replace

    from pneumoscan.artifact import load_artifact, save_artifact

    model, meta = load_artifact(path, "cpu")
    save_artifact(path, model, replace(meta, val_scores={k: v for k, v in meta.val_scores.items() if k != "groups"}))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained run folder (resnet10 at 32 px, 3 epochs on synthetic blobs); shared by the whole session."""
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.trainer import train

    base = tmp_path_factory.mktemp("tiny_run")
    data = base / "data"
    seed = 1000
    for split, patients in (("train", 30), ("test", 8)):
        for p in range(patients):
            for label, name in ((0, f"NORMAL/IM-{p:04d}-0001.jpeg"), (1, f"PNEUMONIA/person{p}_bacteria_{p}.jpeg")):
                seed += 1
                write_xray(data / split / name, label, seed, size=48)
    out = base / "run"
    train(TrainConfig(data=str(data), out=str(out), model="resnet10", image_size=32, epochs=3, batch_size=16,
                      val_fraction=0.2, cache_dir=str(base / "cache"), lr=3e-3), progress=False)
    return out


@pytest.fixture(scope="session")
def shared_patient_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run (resnet10 at 32 px, 1 epoch) trained on DICOM films of 6 patients a class (PatientIDs N<p>, P<p>), whose
    data's test/ holds 4 films: one more of N1 and of P1 (patients it was trained on) and one each of new patients."""
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.trainer import train

    base = tmp_path_factory.mktemp("shared_patient_run")
    data = base / "data"
    for label, name in enumerate(CLASS_NAMES):
        for p in range(6):
            for k in range(2):
                write_dicom(data / "train" / name / f"1.2.{label}.{p}.{k}", label, 100 * label + 10 * p + k,
                            patient_id=f"{name[0]}{p}", size=48)
        write_dicom(data / "test" / name / f"1.3.{label}.0", label, 500 + label, patient_id=f"{name[0]}1", size=48)
        write_dicom(data / "test" / name / f"1.3.{label}.1", label, 600 + label, patient_id=f"T{label}", size=48)
    train(TrainConfig(data=str(data), out=str(base / "run"), model="resnet10", image_size=32, epochs=1, batch_size=16,
                      val_fraction=0.34, cache_dir=str(base / "cache")), progress=False)
    return base / "run"


@pytest.fixture(scope="session")
def mlp_ensemble(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ensemble of `tiny_run` and an mlp (1 epoch on its data), whose heatmap leaves the mlp out: no feature map."""
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.ensemble import build_ensemble
    from pneumoscan.training.trainer import train

    base = tmp_path_factory.mktemp("mlp_ensemble")
    train(TrainConfig(data=str(tiny_run.parent / "data"), out=str(base / "mlp"), model="mlp", image_size=32, epochs=1,
                      batch_size=16, val_fraction=0.2, seed=5, cache_dir=str(base / "cache")), progress=False)
    return build_ensemble([tiny_run, base / "mlp"], base / "ens", progress=False)


@pytest.fixture(scope="session")
def tiny_data(tiny_run: Path) -> Path:
    """The synthetic dataset `tiny_run` was trained on (train/ and test/)."""
    return tiny_run.parent / "data"


@pytest.fixture(scope="session")
def tiny_site(tiny_run: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `set-threshold` copy of tiny_run: its threshold chosen on tiny_data's test films."""
    from pneumoscan.cli import main

    site = tmp_path_factory.mktemp("site") / "site"
    assert main(["set-threshold", "--model", str(tiny_run), "--data", str(tiny_data), "--split", "test", "--out",
                 str(site), "--n-boot", "20"]) == 0
    return site


@pytest.fixture(scope="session")
def fitted(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny run's artifact with a guard fitted on the sample's real train X-rays but `sample_films`;
    shared by the session."""
    from pneumoscan.inference.ood import fit_guard, guard_path

    folder = tmp_path_factory.mktemp("guarded")
    model = folder / "model.safetensors"
    shutil.copy(tiny_run / "model.safetensors", model)
    out = fit_guard(model, sample_as_data(folder / "data"), cache_dir=folder / "cache")
    assert out == folder / "model.ood.safetensors" == guard_path(folder)
    return model


def known_interval_scores(below: float, pneumonia: list[float]) -> tuple[list[int], list[float], float,
                                                                       tuple[float, float]]:
    """Labels and scores whose threshold for recall 1 and its 95 % bootstrap interval are known: five NORMAL films at
    `below`, five PNEUMONIA films at the ascending `pneumonia` scores (all above `below`).

    The threshold is midway between a resample's lowest PNEUMONIA score and `below`. That lowest score is
    pneumonia[0] in 1 - (4/5)^5 = 67 % of resamples, and pneumonia[3] or above in only (2/5)^5 = 1.0 % (pneumonia[2]
    or above in 7.8 %), so the 2.5th and 97.5th percentiles are the thresholds of pneumonia[0] and pneumonia[2]."""
    assert len(pneumonia) == 5 and sorted(pneumonia) == pneumonia and below < pneumonia[0]
    labels, probs = [0] * 5 + [1] * 5, [below] * 5 + list(pneumonia)
    return labels, probs, (pneumonia[0] + below) / 2, ((pneumonia[0] + below) / 2, (pneumonia[2] + below) / 2)


def interval_scores(low: float, high: float, step: float = 1e-3) -> tuple[list[int], list[float]]:
    """Labels and scores of `known_interval_scores` whose threshold is `low` and its interval [low, high]."""
    below = low - step
    third = 2 * high - below
    labels, probs, threshold, interval = known_interval_scores(
        below, [low + step, (low + step + third) / 2, third, third + step, third + 2 * step])
    assert threshold == pytest.approx(low) and interval == pytest.approx((low, high))
    return labels, probs


def with_scores(model: Path, out: Path, labels: list[int], probs: list[float], target_recall: float = 1.0) -> Path:
    """A copy of `model` at `out` whose stored validation scores are these, its threshold chosen on them for
    `target_recall` as training chooses it."""
    from pneumoscan.artifact import load_artifact, save_artifact
    from pneumoscan.evaluation.thresholds import threshold_for_recall

    net, meta = load_artifact(model, device="cpu")
    meta.val_scores = {"labels": list(labels), "probs": list(probs)}
    meta.target_recall = target_recall
    meta.threshold = threshold_for_recall(labels, probs, target_recall)
    return save_artifact(out, net, meta)


def shipped_copy(folder: Path) -> Path:
    """The shipped model, its export and guard copied to `folder` (the export serves: torch is loaded on demand)."""
    from pneumoscan.artifact import default_model_path

    for suffix in (".safetensors", ".onnx", ".ood.safetensors"):
        source = default_model_path().with_name(f"default{suffix}")
        (folder / source.name).write_bytes(source.read_bytes())
    return folder / "default.safetensors"


def count_pil_decoders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A list that grows by a Pillow decoder's name ('zip' for a PNG, 'jpeg') whenever an image's pixels are
    decoded, from now until the test ends."""
    decoders: list[str] = []
    real = Image._getdecoder

    def counted(mode: str, decoder_name: str, *args: object) -> object:
        decoders.append(decoder_name)
        return real(mode, decoder_name, *args)

    monkeypatch.setattr(Image, "_getdecoder", counted)
    return decoders


def disk_full() -> OSError:
    """The OSError a write to a full disk raises (ENOSPC, 'No space left on device', no file name)."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def full_safetensors(*_: object, **__: object) -> None:
    """A stand-in for safetensors' `save_file` on a full disk: its own error, the errno only in its text."""
    from safetensors import SafetensorError

    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def imagenet_state_dict(model_name: str, seed: int = 0) -> dict:
    """A state dict laid out like torchvision's ImageNet weights for `model_name` (a tv_resnet): the model's own
    tensor names and shapes, with an RGB conv1 and a 1000-class fc, filled with random values (nothing downloaded)."""
    import torch

    from pneumoscan.models.registry import create_model

    generator = torch.Generator().manual_seed(seed)
    weights = {}
    own = create_model(model_name).state_dict()
    imagenet = {"conv1.weight": (64, 3, 7, 7), "fc.weight": (1000, own["fc.weight"].shape[1]), "fc.bias": (1000,)}
    for key, value in own.items():
        shape = imagenet.get(key, value.shape)
        if key.endswith("num_batches_tracked"):
            weights[key] = torch.tensor(12345)
        elif key.endswith("running_var"):
            weights[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            weights[key] = torch.randn(shape, generator=generator) * 0.05
    return weights


# Inputs an out-of-distribution guard must reject (as encoded files).


def encode(im: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def blank_image() -> bytes:
    return encode(Image.new("L", (300, 260), 128))


def colour_photo(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (320, 240), (90, 160, 230))
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = rng.integers(0, 300), rng.integers(0, 220)
        draw.ellipse([x0, y0, x0 + rng.integers(20, 150), y0 + rng.integers(20, 150)],
                     fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return encode(im, "JPEG", quality=90)


def text_document() -> bytes:
    im = Image.new("L", (400, 560), 250)
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=14)
    for row in range(24):
        draw.text((20, 15 + 22 * row), f"Patient form line {row}: name, date, signature ______", fill=10, font=font)
    return encode(im, "PNG")


# A real film the shipped guard accepts; its 180-degree rotation and vertical flip passed that guard too, before
# the upside-down rule.
UPRIGHT_FILM = SAMPLE / "train" / "NORMAL" / "NORMAL2-IM-0869-0001.jpeg"


def dithered(path: Path = UPRIGHT_FILM, side: int = 896) -> bytes:
    """A real film dithered to black and white (a 1-bit PNG) at the size of an original: the guard must refuse it."""
    with Image.open(path) as im:
        return encode(im.convert("L").resize((side, side), Image.Resampling.BICUBIC).convert("1"))


def dithered_jpeg(path: Path = UPRIGHT_FILM, side: int = 896, quality: int = 75) -> bytes:
    """The same film dithered to black and white, saved as JPEG: compression gives it many grey levels."""
    with Image.open(path) as im:
        return encode(im.convert("L").resize((side, side), Image.Resampling.BICUBIC).convert("1").convert("L"), "JPEG",
                      quality=quality)


def four_tone_jpeg(path: Path = UPRIGHT_FILM, side: int = 224, quality: int = 75) -> bytes:
    """The same film Floyd-Steinberg dithered to 4 evenly spaced grey levels (a GIF-like palette copy), saved as
    JPEG: compression turns its 4 levels into many, few of them near black or white."""
    palette = Image.new("P", (1, 1))
    palette.putpalette([v for v in (0, 85, 170, 255) for _ in range(3)] + [0] * 252 * 3)
    with Image.open(path) as im:
        gray = im.convert("L").resize((side, side), Image.Resampling.BICUBIC)
    four = gray.convert("RGB").quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).convert("L")
    return encode(four, "JPEG", quality=quality)


def posterised_jpeg(path: Path = UPRIGHT_FILM, side: int = 224, quality: int = 75, tones: int = 4) -> bytes:
    """The same film reduced to the `tones` grey levels of its own adaptive palette without dithering (flat bands of
    grey, as a palette copy saved without dither), saved as JPEG: many grey levels again, none of them grainy."""
    with Image.open(path) as im:
        gray = im.convert("L").resize((side, side), Image.Resampling.BICUBIC)
    flat = gray.convert("RGB").quantize(palette=gray.quantize(tones), dither=Image.Dither.NONE).convert("L")
    return encode(flat, "JPEG", quality=quality)


def make_dicom(
    arr: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    slope: float | None = None,
    intercept: float | None = None,
    center: float | None = None,
    width: float | None = None,
    voi_function: str | None = None,
    frames: int | None = None,
    patient_name: str | None = None,
    patient_id: str | None = None,
):
    """A minimal single-frame DX DICOM dataset (Explicit VR Little Endian) holding `arr`."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    if patient_name is not None:
        ds.PatientName = patient_name
    if patient_id is not None:
        ds.PatientID = patient_id
    ds.Modality = "DX"
    if arr is not None:
        ds.set_pixel_data(arr, photometric, bits_stored or arr.dtype.itemsize * 8, generate_instance_uid=False)
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept if intercept is not None else 0
    if center is not None:
        ds.WindowCenter, ds.WindowWidth = center, width
    if voi_function is not None:
        ds.VOILUTFunction = voi_function
    if frames is not None:
        ds.NumberOfFrames = frames
    return ds


def with_view_code(ds, scheme: str, code: str):
    """`ds` with a View Code Sequence (0054,0220) of one item, the code `code` of coding scheme `scheme`."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, scheme, "as the device wrote it"
    ds.ViewCodeSequence = [item]
    return ds


def film_as_dicom(view: str | None, film: Path = UPRIGHT_FILM, code: tuple[str, str] | None = None) -> bytes:
    """A real film (UPRIGHT_FILM: one the guards pass) as an 8-bit DICOM whose View Position is `view` (None: not
    stated), with a View Code Sequence of `code` (scheme, code value) when given."""
    with Image.open(film) as im:
        ds = make_dicom(np.asarray(im.convert("L")), bits_stored=8)
    if view is not None:
        ds.ViewPosition = view
    if code is not None:
        with_view_code(ds, *code)
    return dicom_to_bytes(ds)


def site_with_dicoms(data: Path) -> Path:
    """DATA/{NORMAL,PNEUMONIA} of two sample train films each, and among the NORMAL films a lateral DICOM (View
    Position LL: lateral.dcm) and a frontal one (PA: frontal.dcm) of a film the guards pass."""
    for label in ("NORMAL", "PNEUMONIA"):
        (data / label).mkdir(parents=True)
        for film in sorted((SAMPLE / "train" / label).iterdir())[:2]:
            shutil.copy(film, data / label)
    (data / "NORMAL" / "lateral.dcm").write_bytes(film_as_dicom("LL"))
    (data / "NORMAL" / "frontal.dcm").write_bytes(film_as_dicom("PA"))
    return data


# why a guarded model refuses the lateral film of `site_with_dicoms` (`view_reason`)
LATERAL = ("DICOM View Position LL: not a plain frontal (AP or PA) film; the model reads plain frontal chest X-rays "
           "only, send the frontal film of the study")


def make_colour_dicom(rgb: np.ndarray, photometric: str = "RGB"):
    """A DICOM dataset holding the (H, W, 3) uint8 `rgb` (even width) uncompressed as RGB, YBR_FULL or
    YBR_FULL_422 (Y1 Y2 Cb Cr for each pair of pixels, chroma averaged over the pair)."""
    from pydicom.pixels import convert_color_space

    ds = make_dicom(rgb, photometric="RGB")
    if photometric == "RGB":
        return ds
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL").astype(np.float64)
    if photometric == "YBR_FULL_422":
        pairs = ybr.reshape(ybr.shape[0], -1, 2, 3)
        chroma = np.rint(pairs[..., 1:].mean(axis=2))
        ybr = np.concatenate([pairs[..., 0], chroma], axis=-1)  # per pair: Y1, Y2, Cb, Cr
    ds.PhotometricInterpretation = photometric
    ds.PixelData = ybr.astype(np.uint8).tobytes()
    return ds


def dicom_to_bytes(ds) -> bytes:
    """Serialise a dataset as a DICOM file ('DICM' at byte 128)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def dicom_bytes(pixels: np.ndarray, bits_stored: int = 12, *, window: tuple[float, float] | None = None,
                patient_name: str | None = None) -> bytes:
    """A MONOCHROME2 DICOM file holding `pixels`, optionally windowed."""
    center, width = window if window is not None else (None, None)
    return dicom_to_bytes(make_dicom(pixels, bits_stored=bits_stored, center=center, width=width,
                                     patient_name=patient_name))


def per_film_lines(err: str) -> list[str]:
    """The stderr lines of `predict` or `explain` but those said once a command: the threshold in use (`predict`'s
    text output) and the warning that the model has no chest X-ray guard (tiny_run has none)."""
    return [line for line in err.splitlines() if not line.startswith("pneumoscan: note: PNEUMONIA at P(pneumonia) >= ")
            and "this model has no chest X-ray guard" not in line]
