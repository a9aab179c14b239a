"""The guard of the bundled sample's test/ films in the Python processes the tests start (`python -m pneumoscan ...`,
a served app, a script): tests/conftest.py puts this folder on their PYTHONPATH, so Python imports this module at
their start. While READ_GUARD names a folder in their environment (tests/conftest.py sets it while its own guard is
armed), each open of a file in it is refused, through any symlink or hard link, and its path appended to the file
READ_GUARD_LOG names, for the test that started the process to fail on. Nothing happens without READ_GUARD."""
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


def stand_down() -> None:
    """Leave this process to tests/conftest.py's own guard (a pytest worker started with READ_GUARD set)."""
    _state["on"] = False


def _refuse(event: str, args: tuple[object, ...]) -> None:
    folder = os.environ.get(READ_GUARD)
    if event != "open" or not folder or not _state["on"]:
        return
    if folder != _state["folder"]:
        _state.update(folder=folder, files=files_of(folder))
    if opens_one_of(args[0], _state["files"]):  # type: ignore[arg-type]
        path = os.fsdecode(os.fspath(args[0]))  # type: ignore[arg-type]
        if log := os.environ.get(READ_GUARD_LOG):  # its own open passes: the log is none of the files
            with open(log, "a", encoding="utf-8") as out:
                out.write(f"{os.path.abspath(path)}\n")
        raise PermissionError(errno.EACCES, f"a process a test started may not read {folder} (official test split "
                              f"films, for final reporting only)", path)


if os.environ.get(READ_GUARD) and not getattr(sys, "_pneumoscan_tests_read_guard", False):
    sys.addaudithook(_refuse)
    sys._pneumoscan_tests_read_guard = True  # type: ignore[attr-defined]
