"""Output files: refused before the work when they cannot be what a command writes, then written atomically."""
from __future__ import annotations

import errno
import math
import os
import re
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from pneumoscan.errors import InputError, WriteError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def unwritable(path: str | os.PathLike, err: OSError) -> WriteError:
    """The one-line error for a failed write of PATH, with the fix its errno points to (a full disk or quota:
    free space; otherwise the folder and its permissions)."""
    fix = "free disk space" if err.errno in DISK_FULL else "check the folder and its permissions"
    return WriteError(f"{path}: cannot be written ({err.strerror or err}); {fix}")


def os_error_of(err: Exception) -> OSError:
    """The OSError behind a library's own error for a failed write (safetensors says '... I/O error: No space left
    on device (os error 28)'), so `atomic_write` names the file and the fix its errno points to."""
    code = re.search(r"\(os error (\d+)\)", str(err))
    return OSError(int(code[1]), os.strerror(int(code[1]))) if code else OSError(" ".join(str(err).split()))


def check_output(path: str | os.PathLike, suffixes: tuple[str, ...], what: str, option: str = "--out") -> Path:
    """PATH as an output file of this kind; InputError when it is a folder or ends otherwise than `suffixes`.

    Called before any work, so a mistyped path (an X-ray, a folder) is neither overwritten nor found out late.
    """
    out = Path(path)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; give {option} a file name such as {out / ('output' + suffixes[0])}")
    if out.suffix.lower() not in suffixes:
        raise InputError(f"{out}: {what} is written as {suffixes[0]}; give {option} a file name ending in {suffixes[0]}")
    folder = out.parent
    while not folder.exists() and folder != folder.parent:  # the folders still to make are made in the nearest one
        folder = folder.parent
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: a file where a folder is needed; check the path of {option} {out}")
    try:  # the permission bits do not tell (root, ACLs, read-only mounts): try it
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise unwritable(out, err) from None
    return out


def check_companion(path: Path, of: Path, *, folder: bool) -> Path:
    """PATH, written beside the output `of` (its figures folder, or a table file), when nothing of the other kind is
    there; InputError before the work otherwise."""
    if folder and path.exists() and not path.is_dir():
        raise InputError(f"{path}: is a file, but {of.name} keeps its figures in a folder of that name; move the file "
                         f"or choose another --out")
    if not folder and path.is_dir():
        raise InputError(f"{path}: is a folder, but {of.name} writes its table to a file of that name; move the folder "
                         f"or choose another --out")
    return path


@contextmanager
def undone_on_failure(folder: str | os.PathLike, files: Iterable[str | os.PathLike] = ()) -> Iterator[None]:
    """Run the block; when it fails (a full disk, Ctrl+C), remove those of FILES that were not there before it and
    the folders up to FOLDER that it made and left empty, nearest first: a failed command leaves nothing that was
    not there before. A failure to remove is passed over for the error at hand."""
    new = [Path(f) for f in files if not Path(f).exists()]
    made = [f for f in (Path(folder), *Path(folder).parents) if not f.exists()]
    try:
        yield
    except BaseException:
        remove_new(new, made)
        raise


def remove_new(files: Iterable[Path], made: Iterable[Path]) -> None:
    """Remove FILES, then those of the folders `made` (the nearest first) that are empty; failures to remove are
    passed over (e.g. a read-only file system, which is the error to report)."""
    try:
        for path in files:
            path.unlink(missing_ok=True)
        for folder in made:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    except OSError:
        pass


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], *, mode: int | None = None) -> Path:
    """`write(TMP)` to a temp file beside PATH, fsync it, rename it over PATH and fsync the folder: readers never see
    half a file, and a crash or power loss leaves the old file or the new one, whole.

    The temp file, and the folders made for PATH, are removed on any failure, and a failure to write names PATH,
    not the temp file. `mode` sets the file's permissions (safetensors creates 0600 files).
    """
    return atomic_write_all({path: write}, mode=mode)[0]


def atomic_write_all(files: Mapping[str | os.PathLike, Callable[[Path], object]], *,
                     mode: int | None = None) -> list[Path]:
    """`atomic_write` for files that belong together (a report page and its figures, `--predictions` and `--json`):
    each is written to its temp file and fsynced, and only once all are, they are renamed into place in the order
    given and their folders fsynced.

    A failure while writing (a full disk, Ctrl+C) leaves every file as it was before, with no temp file and no folder
    made for them. Ctrl+C during the renames is held back until all are done (`HeldInterrupt`): the files are then all
    new when KeyboardInterrupt is raised. Only a failure or crash among the renames, which write no data, can leave
    some new files beside old ones, each whole (on a failure, those that were not there before are removed).
    """
    writes = [(Path(path), write) for path, write in files.items()]
    for path, _ in writes:
        if path.is_dir():
            raise InputError(f"{path}: is a folder; give a file name")
    new = [path for path, _ in writes if not path.exists()]
    made = sorted({folder for path, _ in writes for folder in path.parents if not folder.exists()},
                  key=lambda folder: len(folder.parts), reverse=True)  # the deepest first: emptied before its parent
    temps: dict[Path, Path] = {}
    held = HeldInterrupt()
    try:
        for path, write in writes:
            path.parent.mkdir(parents=True, exist_ok=True)
            temps[path] = tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with _named(path):
                write(tmp)
                if mode is not None:
                    os.chmod(tmp, mode)
                fsync_file(tmp)  # before the rename, or a power loss can leave PATH renamed but empty
        held.hold()
        for path, tmp in temps.items():
            with _named(path):
                os.replace(tmp, path)
    except BaseException:
        remove_new([*temps.values(), *new], made)
        held.release(raise_held=False)
        raise
    for folder in dict.fromkeys(path.parent for path in temps):
        fsync_folder(folder)  # the renames themselves
    held.release()
    return list(temps)


class HeldInterrupt:
    """Ctrl+C held back while files are renamed into place, then raised: it stops a command before the renames or
    after all of them, never among them (some files new, others old). Only in the main thread, and only where Ctrl+C
    raises KeyboardInterrupt (Python's default handler), as signal handlers can be set nowhere else."""

    def __init__(self) -> None:
        self.caught = False
        self._previous: object = None

    def hold(self) -> None:
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._catch)

    def _catch(self, signum: int, frame: object) -> None:
        self.caught = True

    def release(self, *, raise_held: bool = True) -> None:
        """Restore Ctrl+C; raise the KeyboardInterrupt held back, if any (unless another error is on its way)."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
            self._previous = None
        if self.caught and raise_held:
            raise KeyboardInterrupt


@contextmanager
def _named(path: Path) -> Iterator[None]:
    """An OSError in the block as the `unwritable` error of PATH (not of its temp file)."""
    try:
        yield
    except OSError as err:
        raise unwritable(path, err) from None


# fsync's answers from file systems that do not support it (some network and FUSE ones), not failed writes
FSYNC_REFUSED = (errno.EINVAL, errno.ENOTSUP, errno.ENOSYS, errno.EBADF)


def fsync_file(path: Path) -> None:
    """Flush PATH's data to the disk; an OSError when the disk cannot take it (a full disk shows here too)."""
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)  # Windows syncs only writable handles
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in FSYNC_REFUSED:
            raise
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Flush FOLDER's entries (a file renamed into it) to the disk; passed over where it cannot be opened or
    synced (Windows, some network file systems), as the rename has happened either way."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def json_ready(data: object) -> object:
    """`data` as strict JSON holds it: NaN and infinities (undefined metrics) as None, tuples as lists."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: json_ready(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_ready(v) for v in data]
    return data
