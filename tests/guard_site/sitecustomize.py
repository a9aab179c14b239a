"""The guard of the bundled sample's test/ films in the Python processes the tests start (`python -m pneumoscan ...`, a
served app, a script): tests/conftest.py puts this folder first on their PYTHONPATH, so Python imports this module at
their start (Python imports only the first sitecustomize on its path: this one runs the first it shadows that is no
copy of itself, if any, such as a distribution's or coverage's). While READ_GUARD names a folder in their environment
(tests/conftest.py sets it while its own guard is armed), these are refused, and the path appended to the file
READ_GUARD_LOG names, for the test that started the process to fail on: each open of a file in the folder, through any
symlink or hard link; each open that would write or make a file under it; and each change of it (the audit events of
CHANGES): an entry moved or renamed in or out (os.rename, os.replace, shutil.move), made (os.mkdir, os.link,
os.symlink) or removed (os.remove, os.unlink, os.rmdir, shutil.rmtree, also of a folder holding it), and a file's
data or metadata changed through any link (os.truncate, os.chmod, os.chown, os.utime, os.setxattr, os.removexattr;
the last five through a hard link only: a symlink they name may be changed itself, so it is let be).
Not covered: C code that changes files itself, and the calls Python raises no audit event for (os.mkfifo, os.mknod).
Nothing is refused without READ_GUARD."""
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


# The audit events that change a folder's entries or a file's data or metadata, with the positions of each path they
# change and of the dir_fd it is relative to (None: none). os.replace raises "os.rename", os.unlink "os.remove";
# shutil.move, copy and copytree raise these (or "open") for what they change.
CHANGES: dict[str, tuple[tuple[int, int | None], ...]] = {
    "os.rename": ((0, 2), (1, 3)), "os.remove": ((0, 1),), "os.mkdir": ((0, 2),), "os.rmdir": ((0, 1),),
    "shutil.rmtree": ((0, 1),), "os.link": ((1, 3),), "os.symlink": ((1, 2),), "os.truncate": ((0, None),),
    "os.chmod": ((0, 2),), "os.chown": ((0, 3),), "os.utime": ((0, 3),), "os.setxattr": ((0, None),),
    "os.removexattr": ((0, None),)}
TAKE_AWAY = frozenset({"os.rename", "os.remove", "os.rmdir", "shutil.rmtree"})  # a folder holding it goes with it
# these change the file a link leads to
THROUGH_LINKS = frozenset({"os.truncate", "os.chmod", "os.chown", "os.utime", "os.setxattr", "os.removexattr"})
# these may change the link itself (follow_symlinks=False, os.lchown, shutil.copystat of a copied link), which their
# audit event does not say: a link they name is taken for itself, never for the film it leads to
LINK_ITSELF = frozenset({"os.chmod", "os.chown", "os.utime", "os.setxattr", "os.removexattr"})


def entry_of(path: object, dir_fd: object) -> str | None:
    """The absolute path of the entry `path` (relative to `dir_fd` when one is given) names, its folder resolved and
    its last part kept (a link is the link); None for a file descriptor or no path."""
    if path is None or isinstance(path, int):
        return None
    try:
        name = os.fsdecode(os.fspath(path))  # type: ignore[arg-type]
        if isinstance(dir_fd, int) and dir_fd >= 0 and not os.path.isabs(name):
            name = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), name)
    except (OSError, TypeError, ValueError):
        return None
    name = os.path.abspath(name)
    return os.path.join(os.path.realpath(os.path.dirname(name)), os.path.basename(name))


def changed(event: str, args: tuple[object, ...], folder: str, files: frozenset[tuple[int, int]]) -> str | None:
    """The path by which an audit event of CHANGES would change `folder` (realpath): the folder or an entry in it,
    a folder holding it (TAKE_AWAY), or a link to one of its `files` (`files_of`; THROUGH_LINKS); None when it
    changes none of them. A symlink named to an event of LINK_ITSELF is not followed, as the call may change the
    link only: so a chmod, chown, utime or xattr change through a symlink to a film is let through (one through a
    hard link, or naming the film, is not)."""
    for at, fd_at in CHANGES.get(event, ()):
        entry = entry_of(args[at], None if fd_at is None else args[fd_at])
        if entry is not None and (entry == folder or entry.startswith(folder + os.sep)
                                  or (event in TAKE_AWAY and folder.startswith(entry + os.sep))
                                  or (event in THROUGH_LINKS and opens_one_of(entry, files)
                                      and not (event in LINK_ITSELF and os.path.islink(entry)))):
            return entry
    return None


def refusal(event: str, args: tuple[object, ...], folder: str, files: frozenset[tuple[int, int]]) -> str | None:
    """The path an audit event is refused for: an "open" `refused`, or a change of `folder` (`changed`); else None."""
    if event == "open":
        return os.fsdecode(os.fspath(args[0])) if refused(args, folder, files) else None  # type: ignore[arg-type]
    return changed(event, args, folder, files)

def stand_down() -> None:
    """Leave this process to tests/conftest.py's own guard (a pytest worker started with READ_GUARD set)."""
    _state["on"] = False


def _refuse(event: str, args: tuple[object, ...]) -> None:
    folder = os.environ.get(READ_GUARD)
    if (event != "open" and event not in CHANGES) or not folder or not _state["on"]:
        return
    if folder != _state["folder"]:
        _state.update(folder=folder, files=files_of(folder))
    if path := refusal(event, args, folder, _state["files"]):  # type: ignore[arg-type]
        if log := os.environ.get(READ_GUARD_LOG):  # its own open passes: the log is none of the files
            with open(log, "a", encoding="utf-8") as out:
                out.write(f"{os.path.abspath(path)}\n")
        raise PermissionError(errno.EACCES, f"a process a test started may not read or change {folder} (official "
                              f"test split films, for final reporting only)", path)

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
