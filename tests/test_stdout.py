"""The command line's stdout (`whole_writes`) on pipes a reader drains slowly: nothing raised, dropped or doubled."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")

# 6.3 KB chunks of numbered lines: a chunk never fills the 8 KB buffer, two overflow it (as predict's rows do)
WRITER = ("import sys\nfrom pneumoscan.stdout import whole_writes\nwith whole_writes():\n"
          "    for i in range(0, 700 * {chunks}, 700):\n"
          "        sys.stdout.write(''.join(f'{{n:08d}}\\n' for n in range(i, i + 700)))\n")


def _env(unbuffered: bool) -> dict[str, str]:
    """This environment with the worktree's package, buffered (the default) or as `python -u` (PYTHONUNBUFFERED)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    return {**env, "PYTHONPATH": SRC, **({"PYTHONUNBUFFERED": "1"} if unbuffered else {})}


def _drain(fd: int, pause: float) -> bytes:
    """Everything read from pipe `fd` until its end, 4 KB at a time with `pause` seconds between reads."""
    got = []
    while chunk := os.read(fd, 4096):
        got.append(chunk)
        time.sleep(pause)
    return b"".join(got)


def _numbers(out: bytes) -> list[int]:
    """The line numbers the writer printed, in the order read."""
    return [int(line) for line in out.decode().splitlines()]


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_a_non_blocking_stdout_read_slowly_takes_every_line(unbuffered: bool) -> None:
    """A stdout pipe the reader made non-blocking (O_NONBLOCK), once full, raised BlockingIOError: a traceback, exit
    code 1."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    child = subprocess.Popen([sys.executable, "-c", WRITER.format(chunks=60)], stdout=write, stderr=subprocess.PIPE,
                             env=_env(unbuffered))
    os.close(write)
    try:
        time.sleep(0.5)  # the pipe fills
        out = _drain(read, 0.0005)
    finally:
        os.close(read)
    assert child.wait(timeout=60) == 0, child.stderr.read().decode()  # type: ignore[union-attr]
    assert _numbers(out) == list(range(700 * 60))


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_ctrl_c_while_stdout_is_full_never_writes_a_line_twice(unbuffered: bool) -> None:
    """A write that a signal cut short, under a BufferedWriter, left bytes written that it had not counted: its next
    flush wrote them again (700 lines twice after Ctrl+C)."""
    for _ in range(5):  # the signal lands in a write that part-filled the pipe most times, not every time
        read, write = os.pipe()
        child = subprocess.Popen([sys.executable, "-c", WRITER.format(chunks=2000)], stdout=write,
                                 stderr=subprocess.DEVNULL, env=_env(unbuffered))
        os.close(write)
        try:
            time.sleep(1.0)  # blocked on the full pipe
            child.send_signal(signal.SIGINT)
            out = _drain(read, 0.0)
        finally:
            os.close(read)
        child.wait(timeout=60)
        numbers = _numbers(out[: out.rfind(b"\n") + 1])
        assert numbers == list(range(len(numbers)))


@pytest.mark.parametrize(("system", "err", "gone"), [
    ("posix", BrokenPipeError(errno.EPIPE, "Broken pipe"), True),
    ("nt", BrokenPipeError(errno.EPIPE, "Broken pipe"), True),
    ("nt", OSError(errno.EINVAL, "Invalid argument"), True),  # Windows' word for a closed pipe (CPython #79935)
    ("posix", OSError(errno.EINVAL, "Invalid argument"), False),  # on Linux, another fault: not hidden
    ("nt", OSError(errno.EINVAL, "Invalid argument", "out.csv"), False),  # a file written by name
    ("nt", OSError(errno.ENOSPC, "No space left on device"), False),
    ("posix", ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), True),  # a socket's reader
    ("posix", ConnectionResetError(errno.ECONNRESET, "Connection reset by peer", "/mnt/nfs/a.dcm"), False),  # a read
])
def test_reader_gone_takes_windows_einval_on_stdout_for_a_broken_pipe(system: str, err: OSError, gone: bool,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoscan import stream_failures

    monkeypatch.setattr(stream_failures, "WINDOWS", system == "nt")
    assert stream_failures.reader_gone(err) is gone
