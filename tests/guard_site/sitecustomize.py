"""The guard of the bundled sample's test/ films in the Python processes the tests start (`python -m pneumoscan ...`, a
served app, a script): tests/conftest.py puts this folder first on their PYTHONPATH, so Python imports this module at
their start (Python imports only the first sitecustomize on its path: this one runs the first it shadows that is no
copy of itself, if any, such as a distribution's or coverage's). While READ_GUARD names a folder in their environment
(tests/conftest.py sets it while its own guard is armed), each open of a file in it, through any symlink or hard
link, and each open that would write or make a file under it, is refused, and its path appended to the file
READ_GUARD_LOG names, for the test that started the process to fail on. Nothing is refused without READ_GUARD."""
from __future__ import annotations

import errno
import os
import sys

READ_GUARD = "PNEUMOSCAN_TESTS_READ_GUARD"  # the folder whose files may not be opened
READ_GUARD_LOG = "PNEUMOSCAN_TESTS_READ_GUARD_LOG"  # the file each refused path is appended to
_state: dict[str, object] = {"on": True, "folder": None, "files": frozenset()}


def files_of(folder: str) -> frozenset[tuple[int, int]]:
    """The (device, inode) of every file below `folder`: what a path opens, whatever links lead there."""
    found = set()
    for current, _, names in os.walk(folder):
        for name in names:
            stat = os.stat(os.path.join(current, name))
            found.add((stat.st_dev, stat.st_ino))
    return frozenset(found)


def opens_one_of(path: object, files: frozenset[tuple[int, int]]) -> bool:
    """Whether `path` (what an "open" audit event names) is one of `files` (`files_of`), through any link."""
    if path is None or isinstance(path, int):
        return False
    try:
        stat = os.stat(path)  # type: ignore[arg-type]
    except (OSError, TypeError, ValueError):  # a file to be made, or no path: none of them
        return False
    return (stat.st_dev, stat.st_ino) in files


def refused(args: tuple[object, ...], folder: str, files: frozenset[tuple[int, int]]) -> bool:
    """Whether an "open" audit event's `args` (path, mode, flags) open one of `files` (`files_of(folder)`), or
    would write or make a file under `folder` (realpath), such as a new film there."""
    if opens_one_of(args[0], files):
        return True
    flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
    if args[0] is None or isinstance(args[0], int) or not flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        return False
    try:
        real = os.path.realpath(os.fsdecode(os.fspath(args[0])))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return real.startswith(folder + os.sep)


def stand_down() -> None:
    """Leave this process to tests/conftest.py's own guard (a pytest worker started with READ_GUARD set)."""
    _state["on"] = False


def _refuse(event: str, args: tuple[object, ...]) -> None:
    folder = os.environ.get(READ_GUARD)
    if event != "open" or not folder or not _state["on"]:
        return
    if folder != _state["folder"]:
        _state.update(folder=folder, files=files_of(folder))
    if refused(args, folder, _state["files"]):  # type: ignore[arg-type]
        path = os.fsdecode(os.fspath(args[0]))  # type: ignore[arg-type]
        if log := os.environ.get(READ_GUARD_LOG):  # its own open passes: the log is none of the files
            with open(log, "a", encoding="utf-8") as out:
                out.write(f"{os.path.abspath(path)}\n")
        raise PermissionError(errno.EACCES, f"a process a test started may not read {folder} (official test split "
                              f"films, for final reporting only)", path)


def is_guard_copy(origin: str) -> bool:
    """Whether the sitecustomize at `origin` is this guard (a copy of tests/guard_site, as another worktree's or a
    venv's): running it would run this one again, and they would recurse forever."""
    try:
        with open(origin, encoding="utf-8", errors="replace") as source:
            return f'READ_GUARD = "{READ_GUARD}"' in source.read()
    except OSError:
        return False


def run_shadowed() -> None:
    """Run the sitecustomize this module shadows: the first on sys.path that is not a copy of this guard, if any."""
    import importlib.machinery
    import importlib.util

    for entry in sys.path:
        spec = importlib.machinery.PathFinder.find_spec("sitecustomize", [entry])
        if spec is None or spec.loader is None or spec.origin is None or is_guard_copy(spec.origin):
            continue
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return

if os.environ.get(READ_GUARD) and not getattr(sys, "_pneumoscan_tests_read_guard", False):
    sys.addaudithook(_refuse)
    sys._pneumoscan_tests_read_guard = True  # type: ignore[attr-defined]
if __name__ == "sitecustomize":  # imported by site, not by tests/conftest.py
    run_shadowed()
