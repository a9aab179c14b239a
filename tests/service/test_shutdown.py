"""`pneumoscan serve` stopped by SIGTERM (systemctl stop, docker stop, Kubernetes) or SIGINT (Ctrl+C), as a real
process: the request under way is answered, new connections are refused, and it exits 0 saying how it stopped."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import pneumoscan
from tests.conftest import write_xray

BOUNDARY = "shutdown-test"


class Served:
    """A `pneumoscan serve` process, its port and everything it has printed so far (stdout and stderr)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout_s: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while not (found := re.search(pattern, self.output)):
            assert self.proc.poll() is None, f"pneumoscan serve exited early:\n{self.output}"
            assert time.monotonic() < deadline, f"no {pattern!r} within {timeout_s} s:\n{self.output}"
            time.sleep(0.05)
        return found


# `pneumoscan` that takes 30 s to import torch ("import") or to load its model ("model"), its first argument, and
# says when it starts to: a stop signal can then come while `serve` is starting.
SLOW_START = """
import sys, time
phase = sys.argv.pop(1)

class SlowTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print("starting: importing torch", flush=True)
            time.sleep(30)
        return None

if phase == "import":
    sys.meta_path.insert(0, SlowTorch())
else:
    from pneumoscan.service.engine import Engine
    load = Engine.__init__
    def slow_load(self, *args, **kwargs):
        print("starting: loading the model", flush=True)
        time.sleep(30)
        load(self, *args, **kwargs)
    Engine.__init__ = slow_load
from pneumoscan.cli import entry
entry()
"""


def start(*argv: str) -> subprocess.Popen[str]:
    """`python ARGV...` with this checkout's pneumoscan, its stdout and stderr in one pipe."""
    src = str(Path(pneumoscan.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *argv], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


@contextlib.contextmanager
def serve(model: Path, *options: str) -> Iterator[tuple[Served, int]]:
    """`python -m pneumoscan serve` on a free port, once uvicorn says it is running; killed afterwards if still up."""
    proc = start("-m", "pneumoscan", "serve", "--model", str(model), "--port", "0", "--backend", "onnx", *options)
    try:
        served = Served(proc)
        port = int(served.wait_for(r"serving on http://127\.0\.0\.1:(\d+)/").group(1))
        served.wait_for(r"Uvicorn running on")
        yield served, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def upload(image: bytes) -> tuple[bytes, bytes]:
    """The head and body of a POST /predict of IMAGE."""
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"film.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{BOUNDARY}--\r\n".encode()
    head = (f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head, body


def answer(conn: socket.socket) -> bytes:
    """Everything the service sends on CONN until it closes it."""
    conn.settimeout(30)
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def refused(port: int, timeout_s: float = 10) -> bool:
    """Whether new connections to PORT are refused within TIMEOUT_S."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def film(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_xray(tmp_path_factory.mktemp("film") / "film.png", 1, 7, size=64).read_bytes()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_lets_the_upload_under_way_finish_refuses_new_connections_and_exits_0(
        stop: signal.Signals, tiny_run: Path, film: bytes) -> None:
    """SIGTERM killed the process with -15 (143 to docker and Kubernetes) once uvicorn had drained, and printed
    nothing of how it stopped."""
    head, body = upload(film)
    with serve(tiny_run) as (served, port):
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(head + body[:100])  # an upload under way: the rest comes after the signal
            time.sleep(0.5)
            served.proc.send_signal(stop)
            assert refused(port)
            conn.sendall(body[100:])
            reply = answer(conn)  # and then the connection is closed, not kept alive
        assert reply.startswith(b"HTTP/1.1 200 ") and b'"probability":' in reply, reply
        assert served.proc.wait(timeout=30) == 0, served.output
    assert f"stopped on {stop.name}: every request under way was answered" in served.output
    rid = re.search(rb"\r\nx-request-id: ([0-9a-f]{32})\r\n", reply)
    assert rid and f'"POST /predict HTTP/1.1" 200 OK request_id={rid.group(1).decode()}\n' in served.output  # its access line


def stopped_during_an_upload(model: Path, film: bytes, timeout_s: str,
                             stop: Callable[[Served], None]) -> tuple[bytes, float, str]:
    """`serve --shutdown-timeout-s TIMEOUT_S` stopped by STOP while an upload of FILM is under way, never to be
    finished: its answer, how long after STOP began the process took to exit (code 0), and all it printed."""
    head, body = upload(film)
    with serve(model, "--shutdown-timeout-s", timeout_s) as (served, port):
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(head + body[:100])  # and never the rest
            time.sleep(0.5)
            signalled = time.monotonic()
            stop(served)
            reply = answer(conn)
        assert served.proc.wait(timeout=30) == 0, served.output
        stopped_in = time.monotonic() - signalled
    time.sleep(0.1)  # the reading thread's last lines
    return reply, stopped_in, served.output


def test_a_request_still_under_way_at_the_shutdown_timeout_gets_503_and_the_process_exits_0(
        tiny_run: Path, film: bytes) -> None:
    reply, stopped_in, output = stopped_during_an_upload(tiny_run, film, "0.5",
                                                         lambda served: served.proc.send_signal(signal.SIGTERM))
    assert reply.startswith(b"HTTP/1.1 503 ") and b"retry-after: 5" in reply.lower(), reply
    assert b"the service is stopping" in reply
    assert "stopped on SIGTERM: 1 request still under way after --shutdown-timeout-s 0.5 s was cut off" in output
    assert "Traceback" not in output
    assert stopped_in < 10  # 0.5 s, then Python's own exit


@pytest.mark.parametrize(("first", "said"), [(signal.SIGINT, "SIGINT, then at once on a second SIGINT"),
                                            (signal.SIGTERM, "SIGTERM, then at once on SIGINT")])
def test_a_ctrl_c_during_the_drain_cuts_it_short_at_once_without_a_traceback(first: signal.Signals, said: str,
                                                                             tiny_run: Path, film: bytes) -> None:
    """A Ctrl+C while a first stop signal's drain waited for an upload (an impatient person at the terminal): uvicorn
    forced its exit, skipped the app's shutdown and left the upload to asyncio's exit, which printed a CancelledError
    traceback of the app's lifespan task and a stop line blaming a --shutdown-timeout-s that had not passed. It now
    stops at once: the upload answered 503, the app shut down, one line saying so, naming the signals as they came
    (after a SIGTERM it said "a second SIGINT" of the first one)."""

    def twice(served: Served) -> None:
        served.proc.send_signal(first)
        served.wait_for("Waiting for connections to close")
        served.proc.send_signal(signal.SIGINT)

    reply, stopped_in, output = stopped_during_an_upload(tiny_run, film, "60", twice)
    assert reply.startswith(b"HTTP/1.1 503 ") and b"the service is stopping" in reply, reply
    assert "Traceback" not in output and "CancelledError" not in output, output
    assert "Application shutdown complete" in output
    assert f"stopped on {said}: 1 request still under way was cut off (answered 503, to be sent again)" in output
    assert stopped_in < 10  # not the 60 s the first Ctrl+C gives it


@pytest.mark.parametrize(("stop", "phase"), [(signal.SIGTERM, "model"), (signal.SIGINT, "import")])
def test_a_stop_signal_while_serve_starts_exits_0_in_one_line(stop: signal.Signals, phase: str, tiny_run: Path) -> None:
    """Before uvicorn ran (importing torch, loading the model: seconds), SIGTERM killed the process with -15 (143 to
    docker and Kubernetes) and Ctrl+C printed `interrupted` with code 130, unlike the same signals once it serves."""
    proc = start("-c", SLOW_START, phase, "serve", "--model", str(tiny_run), "--port", "0", "--backend", "onnx")
    try:
        served = Served(proc)
        served.wait_for("starting: ")
        signalled = time.monotonic()
        proc.send_signal(stop)
        assert proc.wait(timeout=20) == 0, served.output
        stopped_in = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    time.sleep(0.1)  # the reading thread's last lines
    assert f"stopped on {stop.name} while starting, before serving any request" in served.output
    assert "Traceback" not in served.output and "interrupted" not in served.output
    assert "serving on" not in served.output and stopped_in < 5  # at once, not after the 30 s


def test_log_level_warning_hides_pneumoscans_own_info_lines_too(tiny_run: Path) -> None:
    """`serve --log-level warning` hid uvicorn's INFO lines but not pneumoscan's own: "model ... ready" and
    "stopped on SIGTERM: ..." still showed. The level governs both; the "serving on" line stays."""
    proc = start("-m", "pneumoscan", "serve", "--model", str(tiny_run), "--port", "0", "--backend", "onnx",
                 "--log-level", "warning")
    try:
        served = Served(proc)
        port = int(served.wait_for(r"serving on http://127\.0\.0\.1:(\d+)/").group(1))
        deadline = time.monotonic() + 60
        while True:  # no "Uvicorn running on" line to wait for at this level
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except ConnectionRefusedError:
                assert proc.poll() is None and time.monotonic() < deadline, served.output
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, served.output
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    time.sleep(0.1)  # the reading thread's last lines
    assert "serving on" in served.output
    assert "INFO" not in served.output and " ready" not in served.output and "stopped on" not in served.output, \
        served.output


def test_stdout_whose_reader_is_gone_is_said_once_and_the_service_serves_on(tiny_run: Path) -> None:
    """`serve | head -1`: once head had its line and exited, each request's access line hit the broken pipe, and
    logging printed a 60-line "--- Logging error ---" traceback on stderr for every request. Now one warning line, the
    requests answered, and the stop as usual (code 0)."""
    import urllib.request

    src = str(Path(pneumoscan.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pneumoscan", "serve", "--model", str(tiny_run), "--port", "0",
                             "--backend", "onnx"], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        found = re.search(r"serving on http://127\.0\.0\.1:(\d+)/", proc.stdout.readline())
        assert found, "no serving-on line"
        proc.stdout.close()  # as `head -1` exits
        for _ in range(3):
            with urllib.request.urlopen(f"http://127.0.0.1:{found.group(1)}/health", timeout=10) as reply:
                assert reply.status == 200
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Logging error" not in err, err
    assert err.count("stdout's reader is gone (broken pipe): access lines are no longer written; the service "
                     "serves on") == 1, err
    assert "stopped on SIGINT: every request under way was answered" in err


def test_stdout_on_a_full_disk_is_said_once_and_again_when_there_is_room(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """`serve > serve.log` on a disk that fills: each access line printed a 70-line "--- Logging error ---"
    traceback on stderr, for every request. Now one warning naming the cause and the fix while lines are lost, the
    lines tried again (a full disk is often freed: a log rotated), and one line when they are written again."""
    import errno
    import logging

    from pneumoscan.service.tracking import AccessHandler

    log_file = (tmp_path / "serve.log").open("w")
    room = {"free": False}

    class Disk:
        def fileno(self) -> int:
            return log_file.fileno()

        def write(self, text: str) -> None:
            if not room["free"]:
                raise OSError(errno.ENOSPC, "No space left on device")
            log_file.write(text)

        def flush(self) -> None:
            log_file.flush()

    handler = AccessHandler(Disk())  # type: ignore[arg-type]

    def record(n: int) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, f"GET /health {n}", None, None)

    with caplog.at_level(logging.WARNING, logger="pneumoscan.service"):
        for n in range(3):
            handler.handle(record(n))
        room["free"] = True
        for n in range(3, 5):
            handler.handle(record(n))
    said = [r.getMessage() for r in caplog.records if r.name == "pneumoscan.service"]
    assert len(said) == 2, said
    assert "No space left on device (free space" in said[0] and said[0].endswith(
        "access lines are lost until there is room; the service serves on"), said
    assert said[1] == "stdout: access lines are written again"
    log_file.close()
    assert (tmp_path / "serve.log").read_text() == "GET /health 3\nGET /health 4\n"


def test_stdout_at_a_file_size_limit_is_said_once_and_pointed_at_dev_null(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A size limit per file (`ulimit -f`, FAT32's 4 GB) is not lifted by free space: one warning with the fix, and
    stdout pointed at /dev/null, nothing half-written after it."""
    import errno
    import logging

    from pneumoscan.service.tracking import AccessHandler

    log_file = (tmp_path / "serve.log").open("w")

    class Limited:
        def fileno(self) -> int:
            return log_file.fileno()

        def write(self, text: str) -> None:
            raise OSError(errno.EFBIG, "File too large")

        def flush(self) -> None:
            pass

    handler = AccessHandler(Limited())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="pneumoscan.service"):
        handler.handle(logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "GET /health", None, None))
    said = [r.getMessage() for r in caplog.records if r.name == "pneumoscan.service"]
    assert len(said) == 1 and "File too large (the file reached a size limit" in said[0], said
    assert said[0].endswith("then restart to log again): access lines are no longer written; the service serves on")
    os.write(log_file.fileno(), b"after")  # the descriptor now writes to /dev/null
    log_file.close()
    assert (tmp_path / "serve.log").read_bytes() == b""


def test_stdout_whose_reader_is_gone_on_windows_is_a_broken_pipe(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows may report a write to a pipe whose reader is gone as EINVAL, not EPIPE (CPython #79935): each access
    line then printed logging's "--- Logging error ---" traceback. Now the broken pipe's one warning."""
    import errno
    import logging

    from pneumoscan import stream_failures
    from pneumoscan.service.tracking import AccessHandler

    log_file = (tmp_path / "serve.log").open("w")

    class ClosedPipe:
        def fileno(self) -> int:
            return log_file.fileno()

        def write(self, text: str) -> None:
            raise OSError(errno.EINVAL, "Invalid argument")

        def flush(self) -> None:
            pass

    monkeypatch.setattr(stream_failures, "WINDOWS", True)
    handler = AccessHandler(ClosedPipe())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="pneumoscan.service"):
        handler.handle(logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "GET /health", None, None))
    log_file.close()
    said = [r.getMessage() for r in caplog.records if r.name == "pneumoscan.service"]
    assert said == ["stdout's reader is gone (broken pipe): access lines are no longer written; the service serves on"]


class Unbuffered:
    """The whole-writes layer of `python -u` on file descriptor FD of a disk with `room` bytes free (None: as much
    as it takes): what fits is written, then the disk's error."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.room: int | None = None

    def fileno(self) -> int:
        return self.fd

    def write(self, text: str) -> None:
        import errno

        data = text.encode()
        if self.room is not None and self.room < len(data):
            os.write(self.fd, data[:self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        os.write(self.fd, data)

    def flush(self) -> None:
        pass


def test_stdout_a_full_disk_cut_mid_line_goes_on_on_a_line_of_its_own(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """An unbuffered stdout (PYTHONUNBUFFERED=1, as container images set) on a disk that fills mid-line keeps the
    line's start and drops its rest: the first access line written once there was room was glued to it
    (`"GET /healthINFO:     127.0.0.1:48538 - ... request_id=room-1`, measured on a 64 kB tmpfs), so neither could be
    found by its request id. The cut line now ends there and the next starts a line of its own."""
    import logging

    from pneumoscan.service.tracking import AccessHandler

    fd = os.open(tmp_path / "serve.log", os.O_WRONLY | os.O_CREAT)
    stdout = Unbuffered(fd)
    handler = AccessHandler(stdout)  # type: ignore[arg-type]

    def line(n: int) -> None:
        handler.handle(logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, f"GET /health {n}", None, None))

    with caplog.at_level(logging.WARNING, logger="pneumoscan.service"):
        line(0)
        stdout.room = 7
        line(1)  # "GET /he" written, the rest lost
        line(2)  # nothing written
        stdout.room = None
        line(3)
        line(4)
    os.close(fd)
    assert (tmp_path / "serve.log").read_text() == "GET /health 0\nGET /he\nGET /health 3\nGET /health 4\n"


def test_a_stderr_line_after_an_access_line_a_full_disk_cut_starts_a_line_of_its_own(tmp_path: Path) -> None:
    """`serve > serve.log 2>&1` with an unbuffered stdout: once there was room, a stderr line written before the next
    access line was glued to the one the full disk cut, as the access line had been ('..." 200 INFO:     Shutting
    down', measured on a 64 kB tmpfs, freed before SIGTERM). It starts a line of its own; the access line after it
    does not add another."""
    import logging

    from pneumoscan.service.tracking import AccessHandler, StderrHandler

    fd = os.open(tmp_path / "serve.log", os.O_WRONLY | os.O_CREAT)
    stdout = Unbuffered(fd)
    access = AccessHandler(stdout)  # type: ignore[arg-type]
    errors = StderrHandler(os.fdopen(os.dup(fd), "w", buffering=1))  # stderr on the same file, line-buffered

    def line(handler: logging.Handler, text: str) -> None:
        handler.handle(logging.LogRecord("uvicorn", logging.INFO, __file__, 1, text, None, None))

    line(access, "GET /health 0")
    stdout.room = 7
    line(access, "GET /health 1")  # "GET /he" written, the rest lost
    stdout.room = None
    line(errors, "Shutting down")
    line(access, "GET /health 2")
    errors.stream.close()
    os.close(fd)
    assert (tmp_path / "serve.log").read_text() == "GET /health 0\nGET /he\nShutting down\nGET /health 2\n"


def test_a_stderr_line_comes_after_the_rest_of_an_access_line_stdout_held(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve > serve.log 2>&1`, stdout buffered (the default): a full disk took the start of an access line and
    stdout's buffer kept its rest, but a stderr line written once there was room went first, inside it ('... 200
    OWARNING:     pneumoscan.service: ...', then 'K request_id=...' after the stop's lines; 64 kB tmpfs). stdout's
    held lines are now written before a stderr line."""
    import errno
    import io
    import logging

    from pneumoscan.service.tracking import AccessHandler, StderrHandler

    fd = os.open(tmp_path / "serve.log", os.O_WRONLY | os.O_CREAT)
    room: dict[str, int | None] = {"bytes": None}

    class Disk(io.RawIOBase):  # a short write when it fills, then its error
        def writable(self) -> bool:
            return True

        def fileno(self) -> int:
            return fd

        def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
            free = room["bytes"]
            if free == 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            written = os.write(fd, bytes(data)[:free])
            room["bytes"] = None if free is None else free - written
            return written

    stdout = io.TextIOWrapper(io.BufferedWriter(Disk()), encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", stdout)
    access = AccessHandler(stdout)
    errors = StderrHandler(os.fdopen(os.dup(fd), "w", buffering=1))  # stderr on the same file, line-buffered

    def line(handler: logging.Handler, text: str) -> None:
        handler.handle(logging.LogRecord("uvicorn", logging.INFO, __file__, 1, text, None, None))

    line(access, "GET /health 0")
    room["bytes"] = 7
    line(access, "GET /health 1")  # "GET /he" written, the rest held
    room["bytes"] = None
    line(errors, "Shutting down")
    errors.stream.close()
    os.close(fd)
    assert (tmp_path / "serve.log").read_text() == "GET /health 0\nGET /health 1\nShutting down\n"


def test_the_access_lines_failure_is_told_without_the_command_line(tmp_path: Path) -> None:
    """The service's access handler told a lost stdout with private names imported from `pneumoscan.cli`, the
    command line's internals: it now shares them with the CLI from a module of their own, and loads no CLI."""
    probe = ("import errno, logging, sys\n"
             "from pneumoscan.service.tracking import AccessHandler\n"
             "class Limited:\n"
             "    def fileno(self): return open(sys.argv[1], 'w').fileno()\n"
             "    def write(self, text): raise OSError(errno.EFBIG, 'File too large')\n"
             "    def flush(self): pass\n"
             "AccessHandler(Limited()).handle(logging.LogRecord('uvicorn.access', logging.INFO, '', 1, 'GET', None, None))\n"
             "print('pneumoscan.cli' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "serve.log")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(Path(pneumoscan.__file__).parents[1])})
    assert done.returncode == 0 and done.stdout == "False\n", done.stderr


def test_stdout_a_socket_its_reader_reset_is_a_gone_reader(caplog: pytest.LogCaptureFixture,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """stdout a TCP socket (inetd, systemd's StandardOutput=socket) whose reader closed with lines unread: the next
    write fails with ECONNRESET, not EPIPE, which printed logging's 80-line "--- Logging error ---" traceback before
    the broken pipe's warning on the line after. Now the one warning at once, naming the reset (not a broken pipe)."""
    import logging

    from pneumoscan.service.tracking import AccessHandler

    with socket.create_server(("127.0.0.1", 0)) as server:
        writer = socket.create_connection(server.getsockname())
        reader, _ = server.accept()
    stdout = open(writer.fileno(), "w", encoding="utf-8", closefd=False)  # as Python's own stdout on a socket
    handler = AccessHandler(stdout)

    def line(text: str) -> None:
        handler.handle(logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, text, None, None))

    line("GET /health 0")  # unread
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # closed with a reset
    reader.close()
    time.sleep(0.2)
    with caplog.at_level(logging.WARNING, logger="pneumoscan.service"):
        for n in (1, 2):
            line(f"GET /health {n}")
    said = [r.getMessage() for r in caplog.records if r.name == "pneumoscan.service"]
    assert said == ["stdout's reader is gone (connection reset): access lines are no longer written; the service "
                    "serves on"]
    assert "Logging error" not in capsys.readouterr().err
    stdout.close()
    writer.close()
