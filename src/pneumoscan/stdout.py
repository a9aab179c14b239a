"""The command line's stdout, taking each write whole or failing: Python's own drops what a short write leaves.

A disk that fills during a write (or a `ulimit -f` limit, FAT32's 4 GB cap) takes part of it: `write(1, ..., 3000)
= 1096`. Python's buffered stdout (3.11) then drops the rest without an error when the write went past its buffer,
so `predict --csv > out.csv` exited 0 with its last rows cut. Here the rest is written again, and the disk's error
(ENOSPC, EFBIG) is raised for the CLI to report."""
from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class _WholeWrites(io.RawIOBase):
    """File descriptor `fd` (left open), writing each buffer whole: a short write is followed by one of the rest."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self.discard = False  # after a failure already reported: what is left is dropped, not raised at exit

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        if self.discard:
            return len(view)
        done = 0
        while done < len(view):
            done += os.write(self._fd, view[done:])
        return done


@contextmanager
def whole_writes() -> Iterator[None]:
    """Within it, `sys.stdout` writes to the same file descriptor, in the same encoding and buffering, but each write
    whole or with an OSError (`_WholeWrites`); a stdout without a file descriptor (a test's capture) is left as it is."""
    stream = sys.stdout
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        yield
        return
    stream.flush()
    raw = _WholeWrites(fd)
    whole = io.TextIOWrapper(io.BufferedWriter(raw), encoding=getattr(stream, "encoding", None) or "utf-8",
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
            raw.discard = True
