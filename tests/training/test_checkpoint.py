"""run_lock: one process at a time in a run folder, and a refused run tidies only what is its own.

Two runs are played in one process: flock locks belong to an open file, so a second `run_lock` on the same
folder is refused here just as a second process would be. The hooks put the other run's step at the very
moment a real race would.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from pneumoscan.errors import InputError
from pneumoscan.training import checkpoint
from pneumoscan.training.checkpoint import run_lock

pytestmark = pytest.mark.skipif(checkpoint.fcntl is None, reason="run_lock locks only where fcntl exists")
BUSY = "another pneumoscan process is training in this folder"


class Failed(Exception):
    """A run refused before it wrote anything (say, --resume with nothing to resume)."""


def with_flock_hook(monkeypatch: pytest.MonkeyPatch, before_flock: callable) -> None:
    """Run `before_flock()` once, just before the next run_lock locks its folder."""
    real = checkpoint.fcntl

    def flock(fd: int, operation: int) -> None:
        monkeypatch.setattr(checkpoint, "fcntl", real)
        before_flock()
        real.flock(fd, operation)

    monkeypatch.setattr(checkpoint, "fcntl", SimpleNamespace(LOCK_EX=real.LOCK_EX, LOCK_NB=real.LOCK_NB, flock=flock))


def test_a_run_refused_by_the_lock_leaves_the_folder_of_the_run_that_holds_it(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs started at once with the same new --out: the one that made the folder but lost the lock removed
    it (empty, and made by it), from under the run that had just locked it and was about to train there."""
    folder = tmp_path / "run"
    other = contextlib.ExitStack()
    with_flock_hook(monkeypatch, lambda: other.enter_context(run_lock(folder)))  # the other run locks first
    with other:
        with pytest.raises(InputError, match=BUSY), run_lock(folder):
            pass
        assert folder.is_dir()  # the other run's folder
        (folder / "history.csv").write_text("epoch\n")


def test_a_refused_run_removes_its_empty_folder_before_another_run_can_lock_it(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The run that made the folder and failed released the lock first and removed the folder after: a run
    starting in between locked the folder and then lost it."""
    folder = tmp_path / "run"
    other = contextlib.ExitStack()
    real_close = os.close

    def close(fd: int) -> None:
        real_close(fd)
        monkeypatch.setattr(checkpoint.os, "close", real_close)
        other.enter_context(run_lock(folder))  # the other run starts as soon as the lock is free

    with pytest.raises(Failed), run_lock(folder):
        monkeypatch.setattr(checkpoint.os, "close", close)
        raise Failed
    with other:
        assert folder.is_dir()
        (folder / "history.csv").write_text("epoch\n")


def test_a_folder_removed_while_a_run_waited_to_lock_it_is_made_again(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A run opened the folder just as a refused run removed it: the lock it then got was on a removed folder."""
    folder = tmp_path / "run"
    folder.mkdir()
    with_flock_hook(monkeypatch, folder.rmdir)
    with run_lock(folder):
        (folder / "history.csv").write_text("epoch\n")
    assert folder.is_dir()


def test_a_refused_run_leaves_no_empty_folders_behind(tmp_path: Path) -> None:
    """The folders it made for --out (runs/2026/exp), not only the last, and none that were there before."""
    with pytest.raises(Failed), run_lock(tmp_path / "runs" / "2026" / "exp"):
        raise Failed
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "runs").mkdir()
    with pytest.raises(Failed), run_lock(tmp_path / "runs" / "2026" / "exp"):
        raise Failed
    assert [p.name for p in tmp_path.iterdir()] == ["runs"] and not any((tmp_path / "runs").iterdir())


def test_a_run_that_wrote_something_keeps_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "exp"
    with pytest.raises(Failed), run_lock(folder):
        (folder / "config.json").write_text("{}")
        raise Failed
    assert (folder / "config.json").is_file()
    with run_lock(folder):  # and the lock was released
        pass


@pytest.mark.parametrize(("resume", "then"), [
    (True, "wait for it to end (or stop it), then continue with --resume"),
    (False, "choose another --out for this run (that one's run will be in this folder)"),
])
def test_a_run_refused_by_the_lock_is_told_what_to_do_as_a_resume_or_a_new_run(resume: bool, then: str,
                                                                                tmp_path: Path) -> None:
    # a new run was told to "continue with --resume", which would continue the other run, not start its own
    folder = tmp_path / "run"
    with run_lock(folder):
        with pytest.raises(InputError) as err, run_lock(folder, resume=resume):
            pass
    assert str(err.value) == f"{folder}: {BUSY}; {then}"
