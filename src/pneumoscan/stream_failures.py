"""What a write to stdout or stderr that failed is told as, shared by the command line and the service's access
lines: a reader that is gone, the errors of a full disk, quota or file size limit and what frees room, the file stdout
writes to, a descriptor pointed at /dev/null so that a lost stream fails no second time (or holds nothing at exit),
and a last line on stderr."""
from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Any

from pneumoscan.errors import one_name

WINDOWS = os.name == "nt"


def reader_gone(err: BaseException) -> bool:
    """Whether ERR, from a write to stdout, says its reader is gone (`| head -1`, a log shipper stopped): a broken
    pipe, which Windows may report as EINVAL (CPython issue 79935) rather than EPIPE, or for a socket (inetd,
    systemd's StandardOutput=socket) whose reader closed with data unread, a connection reset naming no file (one
    naming a file is a read's, e.g. of a film on a network mount: a fault to tell, not a reader gone)."""
    if isinstance(err, BrokenPipeError) or (isinstance(err, ConnectionResetError) and err.filename is None):
        return True
    return WINDOWS and isinstance(err, OSError) and err.errno == errno.EINVAL and err.filename is None


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# what frees room for the rest, by errno: a size limit per file is not lifted by free space
DISK_FULL_FIX = {errno.ENOSPC: "free space (or write it elsewhere)",
                 errno.EDQUOT: "free space within your disk quota (or write it elsewhere)",
                 errno.EFBIG: "the file reached a size limit (a `ulimit -f` limit, or FAT32's 4 GB per file): raise "
                              "the limit (or write it to another disk)"}


def to_devnull(fd: int) -> None:
    """Point file descriptor FD at /dev/null: what is written to it goes nowhere, without an error."""
    null = os.open(os.devnull, os.O_WRONLY)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def reader_gone_why(err: BaseException) -> str:
    """How a gone reader (`reader_gone(ERR)`) is told: a socket's reset as such, else a broken pipe."""
    return f"stdout's reader is gone ({'connection reset' if isinstance(err, ConnectionResetError) else 'broken pipe'})"


def stdout_name() -> str:
    """What stdout writes to, as a message names it: 'stdout (/home/amy/out.csv)', its full path, for `> out.csv`; else
    'stdout'."""
    try:
        return f"stdout ({one_name(os.readlink(f'/proc/self/fd/{sys.stdout.fileno()}'))})"
    except (OSError, ValueError, AttributeError):  # no /proc (macOS, Windows), or no file descriptor
        return "stdout"


def drop_if_full(stream: Any) -> OSError | None:
    """Flush STREAM (stdout or stderr); when a full disk, quota or file size limit still refuses what it holds, point
    it at /dev/null, dropping that, and return the error: Python's own flush at exit would fail instead, with exit
    code 120."""
    try:
        stream.flush()
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        to_devnull(stream.fileno())
        stream.flush()  # into /dev/null
        return err
    except (ValueError, AttributeError):  # a closed or missing stream holds nothing
        pass
    return None


def tell(line: str) -> None:
    """LINE on stderr, for the command's outcome: a stderr that cannot take it (on the same full disk as stdout,
    `> log 2>&1`) is passed over, so the exit code still says what happened."""
    try:
        print(line, file=sys.stderr)
    except (OSError, ValueError, AttributeError):  # a full disk; a closed or missing stderr
        with contextlib.suppress(OSError, ValueError, AttributeError):
            to_devnull(sys.stderr.fileno())
            sys.stderr.flush()  # what the failed write left, into /dev/null rather than a failure at exit
