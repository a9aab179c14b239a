"""What a write to stdout or stderr that failed is told as, shared by the command line and the service's access
lines: the errors of a full disk, quota or file size limit and what frees room, the file stdout writes to, and a
descriptor pointed at /dev/null so that a lost stream fails no second time."""
from __future__ import annotations

import errno
import os
import sys

from pneumoscan.errors import one_name

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


def stdout_name() -> str:
    """What stdout writes to, as a message names it: 'stdout (/home/amy/out.csv)', its full path, for `> out.csv`; else
    'stdout'."""
    try:
        return f"stdout ({one_name(os.readlink(f'/proc/self/fd/{sys.stdout.fileno()}'))})"
    except (OSError, ValueError, AttributeError):  # no /proc (macOS, Windows), or no file descriptor
        return "stdout"
