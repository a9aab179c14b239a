"""Atomic training checkpoints, loaded without unpickling arbitrary objects."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from pneumoscan.errors import InputError, option, switch
from pneumoscan.outputs import atomic_write

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


def atomic_torch_save(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """Write `obj` to a temp file beside `path`, then rename it over `path` (`atomic_write`: both fsynced)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            try:
                torch.save(obj, handle)
            except RuntimeError as err:  # torch reports a failed write as "unexpected pos ..." over the OSError
                if isinstance(err.__context__, OSError):
                    raise err.__context__ from None
                raise OSError(f"torch.save failed: {err}; is the disk full?") from None

    atomic_write(path, write)


def schedule_change(epochs: int, done: int, last_lr: float, next_lr: float, kind: str) -> str:
    """What a resume after epoch `done` with another --epochs (`epochs`) does to the learning rate: from the next
    epoch on it follows the cosine schedule of a `kind` ('run', 'pretraining') of that many epochs, moving from
    `last_lr` to `next_lr`, as the resume's warning says it."""
    return (f"from epoch {done + 1} on, the learning rate follows the cosine schedule of a {epochs}-epoch {kind}, so "
            f"it moves from {last_lr:.3g} (end of epoch {done}) to {next_lr:.3g}")


def files_in(folder: Path, names: tuple[str, ...]) -> str:
    """Those of the files `names` that are in `folder`, as 'a, b'; '' when none."""
    return ", ".join(name for name in names if (folder / name).exists())


def check_writable(folder: Path) -> None:
    """InputError naming FOLDER when no file can be created in it (or, while it does not exist, in the folder that
    would hold it): found before the data is decoded and an epoch is trained, not at the first checkpoint."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:  # the permission bits do not tell (root, ACLs, read-only mounts): try it
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise InputError(f"{existing}: cannot be written ({err.strerror or err}); choose another {option('out')} or "
                         f"check the folder and its permissions") from None


@contextmanager
def run_lock(folder: Path, *, resume: bool = False) -> Iterator[None]:
    """Create FOLDER if needed and hold an exclusive lock on it while a run trains in it; InputError when another
    process holds it (a second `--resume` while the first still runs would train the same epochs and remove its
    temp files), saying to `resume` once it ends, or for a new run to choose another folder. The system releases the lock when a process ends, even by SIGKILL, so none is ever left stale.
    The folders made here and still empty when the block fails (a run refused before it wrote anything) are
    removed, while the lock is still held; a run refused by the lock removes nothing (the folder is the other's)."""
    made = [path for path in (folder, *folder.parents) if not path.exists()]  # the folder first, then its parents
    folder.mkdir(parents=True, exist_ok=True)
    fd = _lock(folder, resume) if fcntl is not None else None  # not on POSIX: no lock
    try:
        yield
    except BaseException:
        for path in made:
            if not path.is_dir() or any(path.iterdir()):
                break
            path.rmdir()
        raise
    finally:
        if fd is not None:
            os.close(fd)


def _lock(folder: Path, resume: bool) -> int:
    """An open descriptor of FOLDER holding its exclusive lock; InputError when another process holds it, saying
    what to do for a `resume` or a new run."""
    while True:
        fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            then = (f"wait for it to end (or stop it), then continue with {switch('resume')}" if resume else
                    f"choose another {option('out')} for this run (that one's run will be in this folder)")
            raise InputError(f"{folder}: another pneumoscan process is training in this folder; {then}") from None
        if os.fstat(fd).st_nlink:
            return fd
        os.close(fd)  # a refused run removed the folder between our open and our lock: make it again
        folder.mkdir(parents=True, exist_ok=True)


def rng_states() -> dict[str, Any]:
    """The global torch generators a checkpoint keeps: the CPU's and, when present, every CUDA device's (dropout
    on a GPU draws from those)."""
    return {"torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng_states(ckpt: dict[str, Any]) -> None:
    """Set the generators `rng_states` saved in `ckpt` (checkpoints written before CUDA's was kept have none). Only
    the CUDA devices present are set: a run checkpointed on more GPUs than this machine has trained on the first."""
    torch.set_rng_state(ckpt["torch_rng"])
    if ckpt.get("cuda_rng") and torch.cuda.is_available():
        for index, state in enumerate(ckpt["cuda_rng"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, index)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by `atomic_torch_save` with `weights_only=True`; InputError naming the file when it
    is damaged (copied in part, truncated) or holds anything but tensors and plain data."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, KeyError or EOFError for such files
        first = f"{type(err).__name__}: " + (str(err).strip().splitlines() or [""])[0]
        raise InputError(f"{path}: not a readable checkpoint ({first}); it is damaged or was not written by pneumoscan, "
                         f"so the run cannot continue from it: start again with another {option('out')}") from None
