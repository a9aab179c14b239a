"""The command line's stdout, taking each write whole or failing: Python's own can drop what a short write leaves.

A disk that fills during a write (or a `ulimit -f` limit, FAT32's 4 GB cap) takes part of it: `write(1, ..., 5024)
= 4096`. Python's unbuffered stdout (`python -u`, PYTHONUNBUFFERED=1, as container images often set) then drops
the rest without an error, so `predict --csv > out.csv` exited 0 with its last rows cut. Here the rest is written
again, and the disk's error (ENOSPC, EFBIG) is raised for the CLI to report."""
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
    whole or with an OSError (`_WholeWrites`); a stdout that does not write bytes to a file descriptor (a test's
    capture, a Windows console, which takes Unicode through its own API) is left as it is."""
    stream = sys.stdout
    binary = getattr(stream, "buffer", None)
    if not isinstance(getattr(binary, "raw", binary), io.FileIO):  # `python -u`: the FileIO itself, unbuffered
        yield
        return
    fd = stream.fileno()
    stream.flush()
    raw = _WholeWrites(fd)
    layer = raw if binary is getattr(binary, "raw", binary) else io.BufferedWriter(raw)  # unbuffered as it was
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
            raw.discard = True
