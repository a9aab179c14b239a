"""`serve --audit-log FILE`: one JSON line per analysed film, for saying later which model and operating point
gave a result.

A line holds the time (UTC), the request id, the model file's SHA-256, the operating point, the result and the
image's size: never the image, its file name or anything of a DICOM header. Lines are appended with one
unbuffered write each (all of a batch's in one), under a lock and with O_APPEND, so that concurrent requests, or
several processes sharing the file, never interleave within a line; and each write is fsynced before its answer
is sent, so that a result given has its line on disk even if the machine then loses power (a few ms a request).
The fsync is outside that lock, a "group commit": while one runs, other requests write their lines, and the next
fsync covers all of them at once (one of them syncs, the others find their line covered), so concurrent requests
no longer wait for each other's disk writes one after another. A failed fsync fails every request whose line it
was to cover: a later fsync that succeeds does not prove those lines reached the disk (Linux reports a lost
write-back once).
Before each write the file at FILE is checked to be the one open (as Python's WatchedFileHandler does): when
logrotate has moved it away or it was removed, FILE is opened again (created if missing), so the next line goes to
the new file and none is lost; the lines in the old file not yet fsynced are fsynced before it is closed.
"""
from __future__ import annotations

import io
import json
import logging
import os
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pneumoscan.errors import InputError, PneumoscanError
from pneumoscan.outputs import fsync_folder, fsync_open, same_file

log = logging.getLogger("pneumoscan.service")


class _Written:
    """One write's lines, until an fsync has covered them: `done` once it ran, `error` if it failed."""

    def __init__(self) -> None:
        self.done = False
        self.error: OSError | None = None

    def end(self, error: OSError | None) -> None:
        self.error = error
        self.done = True


class AuditError(PneumoscanError):
    """A line could not be appended to the audit log (disk full, file system gone)."""


def utc_now() -> str:
    """The current time in UTC, ISO 8601 to the millisecond: 2026-11-27T09:31:02.123Z."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _open(path: str) -> io.FileIO:
    """PATH opened for appending, unbuffered (created, readable by its owner and group only, if missing), its
    folder's entry for it flushed to disk; OSError when it cannot be opened."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o640)
    opened = os.fdopen(fd, "ab", buffering=0)
    fsync_folder(Path(path).absolute().parent)
    return opened  # type: ignore[return-value]  # an unbuffered binary file is a FileIO


def _fsync(fd: int) -> OSError | None:
    """fsync FD, passed over where unsupported (it would withhold every result); the OSError when it failed."""
    try:
        fsync_open(fd)
    except OSError as err:
        return err
    return None


class AuditLog:
    """An audit log file opened for appending (created, readable by its owner and group only, if missing), opened
    again when logrotate moved it away."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._file = _open(path)
        except OSError as err:
            raise InputError(f"--audit-log {path}: cannot be opened for appending ({err.strerror}); give a file in "
                             "a folder that exists and this user may write to") from None
        self._lock = threading.Lock()  # held to write, and to hand over what an fsync covers
        self._synced = threading.Condition(self._lock)  # notified when an fsync has ended
        self._syncing = False  # an fsync is running (outside the lock)
        self._unsynced: list[_Written] = []  # writes to the open file since the last fsync began

    def _current(self) -> io.FileIO:
        """The open file, after opening FILE again if it is no longer the one at FILE (the old one stays open until
        the new one is, and its writes not yet covered are fsynced first)."""
        if not same_file(self.path, self._file.fileno()):  # moved or removed by logrotate
            old, self._file = self._file, _open(self.path)
            try:
                self._end(self._take_unsynced(), _fsync(old.fileno()))  # under the lock: once a rotation
            finally:
                old.close()
            log.info("audit log %s: moved away or removed (as by logrotate); opened again", self.path)
        return self._file

    def _take_unsynced(self) -> list[_Written]:
        taken, self._unsynced = self._unsynced, []
        return taken

    def _end(self, writes: list[_Written], error: OSError | None) -> None:
        """End WRITES with the outcome of the fsync that covered them, and wake their requests (under the lock)."""
        for written in writes:
            written.end(error)
        self._synced.notify_all()

    def _append(self, data: bytes) -> _Written:
        """Write DATA to the file in one write; the write, for `_wait_synced`."""
        with self._lock:
            file = self._current()
            written = file.write(data)
            if written != len(data):
                raise OSError(0, f"only {written} of {len(data)} bytes written")
            mine = _Written()
            self._unsynced.append(mine)
        return mine

    def _wait_synced(self, mine: _Written) -> None:
        """Return once an fsync begun after MINE was written has succeeded: another request's, or one run here for
        every write not yet covered; the OSError of the fsync that was to cover it."""
        with self._lock:
            while not mine.done and self._syncing:
                self._synced.wait()  # that fsync may cover this line; if not, the next one will
            lead = not mine.done
            if lead:
                fd = os.dup(self._file.fileno())  # not closed under the fsync by a rotation meanwhile
                writes, self._syncing = self._take_unsynced(), True
        if lead:
            error: OSError | None = OSError(0, "the fsync was interrupted")
            try:
                error = _fsync(fd)
            finally:
                os.close(fd)
                with self._lock:
                    self._syncing = False
                    self._end(writes, error)
        if mine.error is not None:
            raise mine.error

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        """Append one line per record, all in one write, and return once it is fsynced; AuditError when it cannot
        be written whole or synced."""
        data = "".join(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n" for record in records).encode()
        if not data:
            return
        try:
            self._wait_synced(self._append(data))
        except OSError as err:
            log.error("audit log %s: a line could not be appended (%s); results are withheld until it can be",
                      self.path, err.strerror or err)
            raise AuditError(f"the result could not be recorded in the service's audit log, so it is not given; "
                             f"tell the service's administrators ({err.strerror or type(err).__name__})") from None

    def close(self) -> None:
        self._file.close()
