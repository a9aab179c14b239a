"""The command line's stdout, taking each write whole or failing: Python's own can drop what a short write leaves.

A disk that fills during a write (or a `ulimit -f` limit, FAT32's 4 GB cap) takes part of it: `write(1, ..., 5024)
= 4096`. Python's unbuffered stdout (`python -u`, PYTHONUNBUFFERED=1, as container images often set) then drops
the rest without an error, so `predict --csv > out.csv` exited 0 with its last rows cut. Here the rest is written
again, and the disk's error (ENOSPC, EFBIG) is raised for the CLI to report."""
from __future__ import annotations

import io
import os
import select
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class _WholeWrites(io.RawIOBase):
    """File descriptor `fd` (left open) for `python -u`'s unbuffered text layer, which drops what a write leaves:
    each buffer is written whole (a short write is followed by one of the rest) or the OSError raised. A
    non-blocking descriptor (O_NONBLOCK, set by the program reading) is waited for when full, not a BlockingIOError."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += _write_some(self._fd, view[done:])
        return done


class _WaitingWrites(io.FileIO):
    """File descriptor `fd` (left open) under a BufferedWriter, which writes the rest of a short write itself and
    raises the disk's error on that retry: each write returns what it wrote, so an interrupt (Ctrl-C) never leaves
    bytes written that the BufferedWriter would write again. Only a non-blocking descriptor is waited for here."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd, "w", closefd=False)

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        return _write_some(self.fileno(), memoryview(data).cast("B"))


def _write_some(fd: int, view: memoryview) -> int:
    """`os.write`, waiting while a non-blocking `fd` is full (EAGAIN) rather than raising BlockingIOError."""
    while True:
        try:
            return os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])


@contextmanager
def whole_writes() -> Iterator[None]:
    """Within it, `sys.stdout` writes to the same file descriptor, in the same encoding and buffering, but each write
    whole or with an OSError (`_WholeWrites`); a stdout that does not write bytes to a file descriptor (a test's
    capture, a Windows console, which takes Unicode through its own API) is left as it is."""
    stream = sys.stdout
    binary = getattr(stream, "buffer", None)
    if not isinstance(getattr(binary, "raw", binary), io.FileIO):  # `python -u`: the FileIO itself, unbuffered
        yield
        return
    fd = stream.fileno()
    stream.flush()
    # unbuffered as it was; buffered, C's FileIO counts what a write wrote before an interrupt can be raised
    raw: io.RawIOBase = (_WholeWrites(fd) if binary is getattr(binary, "raw", binary) else
                         io.FileIO(fd, "w", closefd=False) if os.name == "nt" or os.get_blocking(fd) else _WaitingWrites(fd))
    layer = raw if isinstance(raw, _WholeWrites) else io.BufferedWriter(raw)
    whole = io.TextIOWrapper(layer, encoding=getattr(stream, "encoding", None) or "utf-8",
                             errors=getattr(stream, "errors", None) or "strict",
                             line_buffering=getattr(stream, "line_buffering", False),
                             write_through=getattr(stream, "write_through", False))
    sys.stdout = whole
    try:
        yield
    finally:
        if sys.stdout is whole:
            sys.stdout = stream
        try:
            whole.flush()
        except OSError:  # the command's error, if any, is reported already; not a second one at exit
            raw.close()  # the descriptor stays open; what is left in the buffer is dropped
