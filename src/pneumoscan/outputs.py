"""Output files: refused before the work when they cannot be what a command writes, then written atomically."""
from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path, PurePath
from typing import Callable

from pneumoscan.errors import InputError, Terminated, WriteError, option, raise_terminated, warn

try:
    import fcntl
except ImportError:  # Windows: no flock; a journal found is taken for a crashed write's
    fcntl = None  # type: ignore[assignment]

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


# The files a training run (or an ensemble) keeps beside its model, which resume, report, compare and ensemble read
# again, and the files that mark a folder as a run; an output of another command is not written over them.
RUN_FILES = ("config.json", "split.json", "history.csv", "val_predictions.csv")
RUN_MARKERS = ("model.safetensors", "best.safetensors", "last.pt")


def check_output(path: str | os.PathLike, suffixes: tuple[str, ...], what: str, flag: str | None = None) -> Path:
    """PATH as an output file of this kind; InputError when it is a folder or ends otherwise than `suffixes`.

    Called before any work, so a mistyped path (an X-ray, a folder) is neither overwritten nor found out late.
    `flag` names the option that gave PATH (default: --out, or `out` in the Python API).
    """
    flag = flag or option("out")
    out = Path(path)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; give {flag} a file name such as {out / ('output' + suffixes[0])}")
    if out.suffix.lower() not in suffixes:
        raise InputError(f"{out}: {what} is written as {suffixes[0]}; give {flag} a file name ending in {suffixes[0]}")
    if out.name in RUN_FILES and any((out.parent / name).is_file() for name in RUN_MARKERS):
        raise InputError(f"{out}: the run in {out.parent} keeps its own {out.name} there (resume, report and ensemble "
                         f"read it); give {flag} another file name")
    folder = out.parent
    while not folder.exists() and folder != folder.parent:  # the folders still to make are made in the nearest one
        folder = folder.parent
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: a file where a folder is needed; check the path of {flag} {out}")
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


def atomic_write_all(files: Mapping[str | os.PathLike, Callable[[Path], object]], *, mode: int | None = None,
                     remove: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """`atomic_write` for files that belong together (a report page and its figures, `--predictions` and `--json`),
    all or none: each is written to its temp file and fsynced, and only once all are, they are renamed into place in
    the order given, the files of `remove` (an earlier set's that this one lacks) removed, and their folders fsynced.
    Returns the paths of `files`.

    A failure at any step (a full disk, a failed rename, Ctrl+C while writing) leaves every file as it was before,
    with no temp file and no folder made for them; Ctrl+C during the renames is held back until all are done
    (`HeldInterrupt`). Two or more files are one transaction (`Journal`): the files they replace or remove are kept
    (hard links) until all renames are done, and a journal beside the last file says how to undo them, so what a
    crash or power loss among the renames leaves (new files beside old ones) is undone by the next write of these
    files, or by `recover_interrupted` before it.
    """
    writes = [(Path(path), write) for path, write in files.items()]
    for path, _ in writes:
        if path.is_dir():
            raise InputError(f"{path}: is a folder; give a file name")
    recover_interrupted([path for path, _ in writes])
    gone = [Path(path) for path in remove if Path(path).is_file() and Path(path) not in dict(writes)]
    new = [path for path, _ in writes if not path.exists()]
    made = sorted({folder for path, _ in writes for folder in path.parents if not folder.exists()},
                  key=lambda folder: len(folder.parts), reverse=True)  # the deepest first: emptied before its parent
    temps = {path: path.with_name(f".{path.name}.{os.getpid()}.tmp") for path, _ in writes}
    journal = Journal(temps, gone, new, made) if writes and len(writes) + len(gone) > 1 else None
    held = HeldInterrupt()
    try:
        if journal is not None:
            journal.open()
        for path, write in writes:
            path.parent.mkdir(parents=True, exist_ok=True)
            with _named(path):
                write(temps[path])
                if mode is not None:
                    os.chmod(temps[path], mode)
                fsync_file(temps[path])  # before the rename, or a power loss can leave PATH renamed but empty
        held.hold()
        if journal is not None:
            journal.keep_replaced()
        for path, tmp in temps.items():
            with _named(path):
                os.replace(tmp, path)
        if journal is not None:
            journal.set_aside_gone()
        for folder in dict.fromkeys(path.parent for path in [*temps, *gone]):
            fsync_folder(folder)  # the renames themselves
        if journal is not None:
            journal.commit()
    except BaseException:
        if journal is not None:
            journal.undo()
        else:
            remove_new([*temps.values(), *new], made)
        held.release(raise_held=False)
        raise
    held.release()
    return list(temps)


# a journal of `atomic_write_all`: ".NAME.PID.journal" beside the set's last file, ".NAME.PID.done" once committed
JOURNAL_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<state>journal|done)")


class Journal:
    """The undo record of one `atomic_write_all` of two or more files, a JSON file beside the last one: each file
    with its temp file and, when it replaces one, the backup of that (`.NAME.PID.old`: a hard link, or a copy where
    links are not supported); each file to remove with its backup; the folders made for them.

    Written and fsynced before any temp file, and locked (flock) by its process while that runs, so another process
    can tell a crashed write from one in progress (not on Windows, which has no flock and cannot rename an open
    file: two commands writing the same files at once there can undo each other's). Renamed to `.done` once every rename is done (the commit); the
    backups are then deleted, and the journal last. `recover_interrupted` undoes a journal a crash left (`_undo`)
    and finishes a `.done`. (Not a swap of a report's figures folder for a new one: its page and `compare`'s tables
    are outside that folder, and the user's own files in it would have to move too.)
    """

    def __init__(self, temps: Mapping[Path, Path], gone: list[Path], new: list[Path], made: list[Path]) -> None:
        self.anchor = list(temps)[-1]
        self.path = self.anchor.with_name(f".{self.anchor.name}.{os.getpid()}.journal")
        self.files = [(path, tmp, None if path in new else backup_name(path)) for path, tmp in temps.items()]
        self.gone = [(path, backup_name(path)) for path in gone]
        self.made = made
        self._fd: int | None = None

    def open(self) -> None:
        """Write the journal (its folder made first), locked from the moment it exists, and fsync it."""
        record = {"files": self.files, "gone": self.gone, "made": self.made}
        with _named(self.anchor):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            base = os.path.realpath(self.path.parent)
            self._fd = self._created_locked()
            text = json.dumps(record, default=lambda p: journal_entry(os.path.realpath(p), base))
            os.write(self._fd, text.encode())
            fsync_open(self._fd)
        fsync_folder(self.path.parent)
        if fcntl is None:
            self.close()

    def _created_locked(self) -> int:
        """The journal file, new and empty, locked (flock) before it holds anything: another command that finds it
        unlocked takes it for a crash's. Made again when one found it in the instant before the lock, took it for a
        torn journal and removed it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            if fcntl is None:
                return fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            if same_file(self.path, fd):
                return fd
            os.close(fd)

    def keep_replaced(self) -> None:
        """Keep each file about to be replaced under its backup name, before any rename."""
        kept = [(path, old) for path, _, old in self.files if old is not None]
        for path, old in kept:
            with _named(path):
                old.unlink(missing_ok=True)
                try:
                    os.link(path, old)
                except OSError:  # a file system without hard links (FAT, some network shares): a copy
                    shutil.copy2(path, old)
                    fsync_file(old)
        for folder in dict.fromkeys(path.parent for path, _ in kept):
            fsync_folder(folder)

    def set_aside_gone(self) -> None:
        """Rename the files to remove to their backup names (deleted at the commit)."""
        for path, old in self.gone:
            with _named(path):
                os.replace(path, old)

    def commit(self) -> None:
        """Mark the set written (the journal renamed to `.done`), then delete the backups and the journal."""
        done = self.path.with_name(self.path.name.removesuffix("journal") + "done")
        with _named(self.anchor):
            os.replace(self.path, done)
        fsync_folder(done.parent)
        self.path = done
        _finish(done, [old for *_, old in [*self.files, *self.gone] if old is not None])
        self.close()

    def undo(self) -> None:
        """Put the earlier files back and remove everything new; a failure to (a read-only disk) leaves the journal
        for the next write, and is passed over for the error at hand."""
        try:
            _undo(self.path, self.files, self.gone, self.made)
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None


def backup_name(path: Path) -> Path:
    """Where `atomic_write_all` keeps the file PATH it replaces or removes until the set is written."""
    return path.with_name(f".{path.name}.{os.getpid()}.old")


def recover_interrupted(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Undo the writes of a set of files that a crash or power loss stopped (`atomic_write_all`), by the journals
    it left beside any of PATHS, and finish those it had committed; journals that a running process holds are left
    alone. Returns the files whose earlier versions were put back (the last of each set), with a warning each."""
    undone = []
    for journal, path in _journals(paths):
        with _named(path):  # e.g. a folder made read-only since
            if _recover(journal):
                undone.append(path)
    for path in undone:
        warn(f"{path}: an earlier run stopped while replacing it and the files written with it; their earlier "
             f"versions were put back")
    return undone


def _journals(paths: Iterable[str | os.PathLike]) -> Iterator[tuple[Path, Path]]:
    """Each journal (`.journal` or `.done`) of `atomic_write_all` beside any of PATHS, with the file it is beside."""
    wanted: dict[Path, set[str]] = {}
    for path in map(Path, paths):
        wanted.setdefault(path.parent, set()).add(path.name)
    for folder, names in wanted.items():
        try:
            entries = sorted(os.listdir(folder))
        except OSError:  # no such folder yet
            continue
        for entry in entries:
            match = JOURNAL_NAME.fullmatch(entry)
            if match and match["name"] in names:
                yield folder / entry, folder / match["name"]


def interrupted_write(paths: Iterable[str | os.PathLike]) -> Path | None:
    """The journal a crash or power loss among the renames of a set (`atomic_write_all`) left beside any of PATHS,
    whose files are then some new and some old until `recover_interrupted` undoes it; None when there is none. Only
    looks: a reader that must not write (predict, serve) says what to run. A `.done` journal's set is whole, and one
    a running process holds is its write in progress."""
    for journal, _ in _journals(paths):
        if journal.name.endswith(".journal") and not _held(journal):
            return journal
    return None


def _held(journal: Path) -> bool:
    """Whether a running process holds JOURNAL's lock (`Journal.open`); False without flock (Windows)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(journal, os.O_RDONLY)
    except FileNotFoundError:  # its process finished it meanwhile
        return True
    try:
        return not _unlocked(fd)
    finally:
        os.close(fd)  # releases the lock it took


def _recover(journal: Path) -> bool:
    """Undo (a `.journal`) or finish (a `.done`) the set of JOURNAL, unless a running process holds it; whether
    earlier files were put back."""
    try:
        fd = os.open(journal, os.O_RDWR) if fcntl is not None else None
    except FileNotFoundError:  # another process recovered it meanwhile
        return False
    try:
        if fd is not None and not (_unlocked(fd) and same_file(journal, fd)):
            return False  # its process is still writing, or finished it (committed or undone) since it was opened
        try:
            record = json.loads(journal.read_bytes())
            place = _placed(journal, record["files"][-1][0])
            files = [(place(path), place(tmp), None if old is None else place(old))
                     for path, tmp, old in record["files"]]
            gone = [(place(path), place(old)) for path, old in record["gone"]]
            made = [place(folder) for folder in record["made"]]
        except (ValueError, KeyError, TypeError, IndexError):
            journal.unlink()  # torn: the crash came while it was written, before any other file
            return False
        if journal.name.endswith(".done"):
            _finish(journal, [old for *_, old in [*files, *gone] if old is not None])
            return False
        _undo(journal, files, gone, made)
        return True
    finally:
        if fd is not None:
            os.close(fd)


def journal_entry(path: str, base: str) -> str:
    """How a journal in folder BASE records PATH (both with every symlink resolved): relative to BASE, so a folder
    moved or copied (`cp -a`) with the journal, or a tree moved with the folders of all its files, is put right
    where it is now; `..` steps count from the real folder, so a journal reached through a symlink reads them as
    written. Absolute across drives (Windows), where no relative path exists."""
    try:
        return os.path.relpath(path, base)
    except ValueError:
        return path


def _placed(journal: Path, anchor: str) -> Callable[[str], Path]:
    """Where a path JOURNAL records is now: a relative one from the journal's real folder (`journal_entry`), an
    absolute one where it says. An older journal recorded every path absolute: those inside the folder of its set's
    last file (`anchor`), which it was written beside, are placed in the journal's folder, so a folder moved or
    copied since is put right where it is, never the one it was copied from."""
    before = PurePath(anchor).parent if PurePath(anchor).is_absolute() else None
    folder = os.path.realpath(journal.parent)

    def place(path: str) -> Path:
        if before is not None:
            with suppress(ValueError):  # outside its folder: where it says
                inside = PurePath(path).relative_to(before)
                path = path if ".." in inside.parts else str(inside)
        return Path(os.path.normpath(os.path.join(folder, path)))  # an absolute PATH stays as it is

    return place


def _undo(journal: Path, files: list[tuple[Path, Path, Path | None]], gone: list[tuple[Path, Path]],
          made: list[Path]) -> None:
    """Put the backups back over the files renamed into place and the removed ones, remove the new files and every
    temp file, the journal, and the folders MADE that are now empty. A file whose temp file is still there was not
    renamed: it is the earlier one (or, when new, not this write's). An OSError leaves the journal for the next try.
    """
    for path, tmp, old in files:
        renamed = not tmp.exists()
        if old is not None and old.exists():
            if renamed:
                os.replace(old, path)
            else:
                old.unlink()  # PATH is the file it backs up; a copy may be torn
        elif old is None and renamed:
            path.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    for path, old in gone:
        if old.exists():
            os.replace(old, path)
    journal.unlink(missing_ok=True)
    remove_new([], made)


def _finish(done: Path, backups: list[Path]) -> None:
    """Delete the backups of a committed set, then its journal; a failure leaves them for the next write."""
    try:
        for old in backups:
            old.unlink(missing_ok=True)
        done.unlink(missing_ok=True)
    except OSError:
        pass


def same_file(path: str | os.PathLike, fd: int) -> bool:
    """Whether PATH still names the file open as FD (not moved away, removed or replaced since it was opened)."""
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (at_path.st_dev, at_path.st_ino) == (here.st_dev, here.st_ino)


def _unlocked(fd: int) -> bool:
    """Take the exclusive lock of an open journal without waiting; False when another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class HeldInterrupt:
    """Ctrl+C (and SIGTERM where it stops a command as Ctrl+C does, `raise_terminated`) held back while files are
    renamed into place, then raised: it stops a command before the renames or after all of them, never among them
    (some files new, others old). Only in the main thread, and only where the signal raises (Python's default
    SIGINT handler, `raise_terminated`), as signal handlers can be set nowhere else."""

    def __init__(self) -> None:
        self.caught: KeyboardInterrupt | None = None
        self._previous: dict[int, object] = {}

    def hold(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, raising in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, raise_terminated)):
            if signal.getsignal(signum) is raising:
                self._previous[signum] = signal.signal(signum, self._catch)

    def _catch(self, signum: int, frame: object) -> None:
        self.caught = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    def release(self, *, raise_held: bool = True) -> None:
        """Restore the handlers; raise the interrupt held back, if any (unless another error is on its way)."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous = {}
        if self.caught is not None and raise_held:
            raise self.caught


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
        fsync_open(fd)
    finally:
        os.close(fd)


def fsync_open(fd: int) -> None:
    """Flush the data of the file open as FD to the disk; passed over on file systems that do not support it
    (`FSYNC_REFUSED`), an OSError when the disk cannot take it."""
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in FSYNC_REFUSED:
            raise


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
