"""`serve --ssl-certfile/--ssl-keyfile`: HTTPS from the service itself. Over TLS a film is analysed, a client
trickling its headers gets the 408 and a clean TLS close after the lingering close, one that sends nothing or never
starts the handshake is closed at --header-timeout-s, a plain-HTTP request to the HTTPS port (any method) gets a
plain 400 and one log line, and its connection closes once the client is idle, a failed handshake one log line (at
most FAILURE_LINES a minute), one that does not speak TLS at all one saying so, closing the server aborts the
connections still in their handshake, and a certificate or key that cannot be used stops `serve` at start-up in one
line."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import pneumoscan
from pneumoscan.cli import main
from pneumoscan.service import tls
from pneumoscan.service.protocol import http_protocol
from pneumoscan.service.tls import SHUTDOWN_S
from tests.conftest import serve_at_once, write_xray
from tests.service.test_browser import free_port, stop
from tests.service.test_protocol import DEADLINE, MARGIN, MB, TIMED_OUT

HEAD = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"  # never finished


def make_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM) in FOLDER, made by openssl (EC: milliseconds)."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate with")
    return make_certificate(tmp_path_factory.mktemp("tls"), "server")


@contextlib.contextmanager
def serving_tls(model: Path, cert: Path, key: Path, log: Path) -> Iterator[tuple[int, ssl.SSLContext]]:
    """`pneumoscan serve --ssl-certfile CERT --ssl-keyfile KEY --header-timeout-s 1` in a subprocess, its output
    in LOG; yields its port and a client context trusting CERT."""
    port = free_port()
    src = str(Path(pneumoscan.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pneumoscan.cli", "serve", "--model", str(model), "--port", str(port),
             "--backend", "onnx", "--header-timeout-s", str(DEADLINE), "--ssl-certfile", str(cert),
             "--ssl-keyfile", str(key)], env=env, stdout=out, stderr=subprocess.STDOUT)
    client = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"pneumoscan serve exited: {log.read_text()}"
            try:
                if httpx.get(f"https://127.0.0.1:{port}/health", verify=client, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"pneumoscan serve did not start within 60 s: {log.read_text()}"
            time.sleep(0.2)
        yield port, client
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def https(tiny_run: Path, certificate: tuple[Path, Path],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, ssl.SSLContext, Path]]:
    log = tmp_path_factory.mktemp("tls_log") / "serve.log"
    with serving_tls(tiny_run, *certificate, log) as (port, client):
        yield port, client, log


def tls_socket(port: int, client: ssl.SSLContext) -> ssl.SSLSocket:
    """A TLS connection to the service, handshake done; an end without the TLS close raises SSLEOFError."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return client.wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False)


def until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """What SOCK receives until the server closes it (an SSLSocket: with the TLS close, else SSLEOFError), and
    after how many seconds; fails if it is still open after LIMIT_S."""
    start, answer = time.monotonic(), b""
    sock.settimeout(limit_s)
    while chunk := sock.recv(65536):
        answer += chunk
    return answer, time.monotonic() - start


def test_a_film_is_analysed_over_https(https: tuple[int, ssl.SSLContext, Path], tmp_path: Path) -> None:
    port, client, _ = https
    xray = write_xray(tmp_path / "film.png", 1, 7, size=48)
    answer = httpx.post(f"https://127.0.0.1:{port}/predict", verify=client, timeout=30,
                        files={"file": (xray.name, xray.read_bytes(), "image/png")})
    assert answer.status_code == 200, answer.text
    assert 0 <= answer.json()["probability"] <= 1 and re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"])


def trickle_tls(sock: ssl.SSLSocket, data: bytes, gap_s: float = 0.2, limit_s: float = 10) -> tuple[bytes, float, float]:
    """Send DATA one byte every GAP_S s, reading meanwhile, until the server closes the connection with the TLS close
    (an end without it raises SSLEOFError): what it answered, and the seconds until the answer's first bytes and until
    the close."""
    start, answer, sent, first = time.monotonic(), b"", 0, float("nan")
    sock.settimeout(gap_s)
    while time.monotonic() - start < limit_s:
        try:
            chunk = sock.recv(65536)  # a timeout while the server sends nothing (its TLS session tickets are read)
        except socket.timeout:
            sock.sendall(data[sent:sent + 1])
            sent += 1
            continue
        if not chunk:
            return answer, first, time.monotonic() - start
        first = first if answer else time.monotonic() - start
        answer += chunk
    pytest.fail(f"still open after {limit_s} s")


def test_headers_trickled_over_tls_get_408_then_a_clean_tls_close(https: tuple[int, ssl.SSLContext, Path]) -> None:
    """The 408 reaches a client still trickling its head, and the lingering close then ends with TLS's close
    (SSLEOFError otherwise) --header-timeout-s after it, as over plain HTTP."""
    port, client, log = https
    with tls_socket(port, client) as sock:
        answer, answered, closed = trickle_tls(sock, HEAD)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and json.loads(body) == TIMED_OUT
    assert DEADLINE - 0.1 < answered < DEADLINE + MARGIN and DEADLINE - 0.1 < closed - answered < DEADLINE + MARGIN
    rid = re.search(rb"x-request-id: ([0-9a-f]{32})", head).group(1).decode()  # type: ignore[union-attr]
    assert f"408 Request Timeout request_id={rid}" in log.read_text() and "Traceback" not in log.read_text()


def test_a_closing_413_reaches_a_client_still_sending_its_body_over_tls(https: tuple[int, ssl.SSLContext, Path]) -> None:
    port, client, log = https
    with tls_socket(port, client) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: "
                     b"multipart/form-data; boundary=b\r\nContent-Length: 60000000\r\n\r\n" + b"x" * 65536)
        answer, _, closed = trickle_tls(sock, b"x" * 100)
    assert answer.startswith(b"HTTP/1.1 413 ") and closed < DEADLINE + MARGIN and "Traceback" not in log.read_text()


def test_a_tls_connection_that_sends_nothing_is_closed_at_the_deadline(
        https: tuple[int, ssl.SSLContext, Path]) -> None:
    """Closed with the TLS close at the deadline; a client that never answers it with its own no longer keeps the
    connection 30 s more (asyncio's default wait), but SHUTDOWN_S."""
    port, client, _ = https
    with tls_socket(port, client) as sock:
        answer, closed = until_closed(sock, DEADLINE + MARGIN)
        with socket.socket(fileno=os.dup(sock.fileno())) as tcp:  # under TLS: the server's TCP close
            start = time.monotonic()
            tcp.settimeout(SHUTDOWN_S + MARGIN)
            with contextlib.suppress(ConnectionResetError):
                assert tcp.recv(1) == b""
            ended = time.monotonic() - start
    assert answer == b"" and DEADLINE - 0.1 < closed < DEADLINE + MARGIN
    assert SHUTDOWN_S - 0.5 < ended < SHUTDOWN_S + MARGIN


def test_a_connection_that_never_starts_the_handshake_is_closed_at_the_deadline(
        https: tuple[int, ssl.SSLContext, Path]) -> None:
    """asyncio waited 60 s for a TLS handshake, whatever --header-timeout-s said: such a client held the
    connection, and its file descriptor, 60 times longer than one that sent nothing over plain HTTP."""
    port, _, _ = https
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        answer, closed = until_closed(sock, DEADLINE + MARGIN)
    assert answer == b"" and DEADLINE - 0.1 < closed < DEADLINE + MARGIN


def test_plain_http_to_the_https_port_gets_a_plain_400_and_one_log_line(
        https: tuple[int, ssl.SSLContext, Path]) -> None:
    """It was closed unanswered: a user who typed http:// saw a connection reset. It now gets a plain-HTTP 400 saying
    to use https://, then the service's FIN; a POST's body, not read, is dropped (no reset: the answer arrives)."""
    port, _, log = https
    plain = f"http://127.0.0.1:{port}"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer, _ = until_closed(sock, MARGIN)  # the FIN after the answer, the client's side still open
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and json.loads(body) == {"detail": tls.PLAIN_HTTP_DETAIL}, answer
    posted = httpx.post(f"{plain}/predict", content=b"x" * 1_000_000, headers={"content-type": "image/png"}, timeout=10)
    assert posted.status_code == 400 and "https://" in posted.json()["detail"]
    deadline = time.monotonic() + MARGIN
    while log.read_text().count("plain-HTTP request") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    text = log.read_text()
    line = "a plain-HTTP request from 127.0.0.1 came to this HTTPS port; answered 400, the client must use https://"
    assert text.count(line) == 2 and text.count("plain-HTTP request") == 2 and "Traceback" not in text


@pytest.mark.parametrize("case, message", [
    ("missing cert", "--ssl-certfile {dir}/none.crt: no such file; give the server certificate in PEM format"),
    ("missing key", "--ssl-keyfile {dir}/none.key: no such file; give the certificate's private key in PEM format"),
    ("other key", "--ssl-keyfile {dir}/other.key: this private key does not belong to the certificate in "
                  "--ssl-certfile {dir}/server.crt; give the key the certificate was issued for"),
    ("wrong order", "--ssl-keyfile {dir}/server.key: this private key does not belong to the certificate in "
                    "--ssl-certfile {dir}/chain.pem, or the file does not start with the server's own certificate "
                    "(its chain after it); give the key the certificate was issued for, or put the server's "
                    "certificate first"),
    ("swapped", "--ssl-certfile {dir}/server.key: no server certificate in PEM format in it"),
    ("key alone", "--ssl-keyfile {dir}/server.key: needs --ssl-certfile, the certificate it belongs to"),
    ("no key", "--ssl-certfile {dir}/server.crt: no private key in it; give the certificate's key with "
               "--ssl-keyfile"),
    ("encrypted", "--ssl-keyfile {dir}/locked.key: the private key is encrypted with a passphrase; give it "
                  "unencrypted"),
])
def test_a_certificate_or_key_that_cannot_be_used_is_one_line(
        case: str, message: str, tiny_run: Path, certificate: tuple[Path, Path],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoscan.service import serving

    cert, key = certificate
    folder = cert.parent
    if not (folder / "other.key").exists():
        make_certificate(folder, "other")
        subprocess.run(["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:secret", "-out",
                        str(folder / "locked.key")], check=True, capture_output=True)
        (folder / "chain.pem").write_bytes((folder / "other.crt").read_bytes() + cert.read_bytes())  # CA first
    argv = {"missing cert": ["--ssl-certfile", f"{folder}/none.crt", "--ssl-keyfile", str(key)],
            "missing key": ["--ssl-certfile", str(cert), "--ssl-keyfile", f"{folder}/none.key"],
            "other key": ["--ssl-certfile", str(cert), "--ssl-keyfile", f"{folder}/other.key"],
            "wrong order": ["--ssl-certfile", f"{folder}/chain.pem", "--ssl-keyfile", str(key)],
            "swapped": ["--ssl-certfile", str(key), "--ssl-keyfile", str(cert)],
            "key alone": ["--ssl-keyfile", str(key)],
            "no key": ["--ssl-certfile", str(cert)],
            "encrypted": ["--ssl-certfile", str(cert), "--ssl-keyfile", f"{folder}/locked.key"]}[case]
    monkeypatch.setattr(serving, "run", serve_at_once())  # a certificate let through must not serve
    assert main(["serve", "--model", str(tiny_run), "--port", "0", "--log-level", "critical", *argv]) == 2
    captured = capsys.readouterr()
    assert message.format(dir=folder) in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "serving on" not in captured.out and "Traceback" not in captured.err


def test_https_is_announced_and_the_warning_no_longer_says_no_tls(
        tiny_run: Path, certificate: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoscan.service import serving

    calls: list[dict] = []  # type: ignore[type-arg]
    monkeypatch.setattr(serving, "run", serve_at_once(lambda *args, **kwargs: calls.append(kwargs)))
    cert, key = certificate
    assert main(["serve", "--model", str(tiny_run), "--host", "0.0.0.0", "--port", "0", "--ssl-certfile", str(cert),
                 "--ssl-keyfile", str(key)]) == 0
    captured = capsys.readouterr()
    assert re.search(r"serving on https://127\.0\.0\.1:\d+/ \(listening on every IPv4 address", captured.out)
    assert "this service has no login; put it behind" in captured.err and "no TLS" not in captured.err
    assert calls[0]["ssl_certfile"] == str(cert) and calls[0]["ssl_keyfile"] == str(key) and "loop" in calls[0]


def test_an_uvicorn_without_loop_factories_serves_tls_with_a_warning(
        tiny_run: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn before 0.36 takes no loop factory: TLS is served on its own loop, and `serve` says what that lacks."""
    import uvicorn

    from pneumoscan.service import serving

    calls: list[dict] = []  # type: ignore[type-arg]
    monkeypatch.setattr(serving, "run", serve_at_once(lambda *args, **kwargs: calls.append(kwargs)))
    monkeypatch.delattr(uvicorn.Config, "get_loop_factory")
    cert, key = certificate
    assert main(["serve", "--model", str(tiny_run), "--port", "0", "--ssl-certfile", str(cert), "--ssl-keyfile",
                 str(key)]) == 0
    assert "loop" not in calls[0] and calls[0]["ssl_certfile"] == str(cert)
    assert "a TLS handshake gets asyncio's 60 s, not --header-timeout-s" in caplog.text


# ----------------------------------------------------------------- the TLS close, with uvicorn in a thread

BIG = 6 * MB  # an answer larger than what the kernels' buffers hold on loopback


@contextlib.contextmanager
def big_answer_server(certificate: tuple[Path, Path], timeout_s: float, size: int = BIG) -> Iterator[int]:
    """uvicorn in a thread over TLS with `serve`'s protocol (`timeout_s` its --header-timeout-s) and event loop,
    answering any request with SIZE bytes; yields its port."""
    from tests.service.test_browser import uvicorn_in_thread

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                        "headers": [(b"content-length", str(size).encode())]})
            await send({"type": "http.response.body", "body": b"x" * size})  # type: ignore[operator]

    cert, key = certificate
    loop = tls.tls_loop(tls.tls_context(str(cert), str(key)), timeout_s)
    with uvicorn_in_thread(app, lifespan="off", http=http_protocol(timeout_s), loop=loop, ssl_certfile=str(cert),
                           ssl_keyfile=str(key)) as port:
        yield port


def slow_tls_socket(port: int, cert: Path) -> ssl.SSLSocket:
    """A TLS connection to PORT whose client takes at most 4 KB at a time from the network, as a slow link does."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", port))
    client = ssl.create_default_context(cafile=str(cert))
    return client.wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False)


def read_all(sock: ssl.SSLSocket, gap_s: float) -> bytes:
    """What SOCK receives, 16 KB every GAP_S s, until the TLS close (an end without it raises SSLEOFError)."""
    answer = b""
    while chunk := sock.recv(16384):
        answer += chunk
        time.sleep(gap_s)
    return answer


def test_a_closing_answer_reaches_a_slow_client_whole_over_tls(
        certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncio's TLS close waits SHUTDOWN_S (0.2 s here) for the client's and then drops what is still unsent: a 6 MB
    answer with `Connection: close`, read at about 3 MB/s, lost its last megabytes (plain HTTP sent it all). The
    close now waits for the answer to be sent."""
    monkeypatch.setattr(tls, "SHUTDOWN_S", 0.2)
    with big_answer_server(certificate, 5) as port, slow_tls_socket(port, certificate[0]) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = read_all(sock, 0.005)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and len(body) == BIG


def test_a_client_that_stops_reading_its_answer_is_cut_off_over_tls(
        certificate: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    """Waiting for an answer to be sent ends when the client has taken none of it for --header-timeout-s."""
    with caplog.at_level(logging.WARNING, logger="pneumoscan.service"):
        with big_answer_server(certificate, 0.5) as port, slow_tls_socket(port, certificate[0]) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            time.sleep(0.5 + MARGIN)
            with pytest.raises((ssl.SSLEOFError, ConnectionResetError)):  # no TLS close: the answer is not whole
                read_all(sock, 0)
    warnings = [r.getMessage() for r in caplog.records if r.name == "pneumoscan.service"]
    assert len(warnings) == 1 and re.fullmatch(r"closed a connection from 127\.0\.0\.1 whose client took none of its "
                                               r"answer for 0\.5 s \(--header-timeout-s\); \d+ bytes of it were "
                                               r"not sent", warnings[0]), warnings


def test_stopping_does_not_wait_for_an_idle_clients_tls_close(certificate: tuple[Path, Path]) -> None:
    """An idle kept-alive client that never answers the service's TLS close held the stop for SHUTDOWN_S (2 s); with
    --shutdown-timeout-s under that, uvicorn logged "timeout graceful shutdown exceeded" while `serve` said every
    request was answered. The client still gets the TLS close, and the connection ends at once."""
    from tests.service.test_protocol import read_response

    with contextlib.ExitStack() as client:
        with big_answer_server(certificate, 5, size=2) as port:
            sock = client.enter_context(slow_tls_socket(port, certificate[0]))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_response(sock)[1] == b"xx"
            stopping = time.monotonic()
        took = time.monotonic() - stopping  # the server stopped while the client kept its side open
        assert sock.recv(1) == b""  # the TLS close (SSLEOFError without it)
    assert took < SHUTDOWN_S - 0.5, took


def test_stopping_does_not_wait_for_the_tls_close_of_a_connection_already_closed(
        certificate: tuple[Path, Path]) -> None:
    """After a closing answer (`Connection: close`) the service had sent its TLS close and waited SHUTDOWN_S for the
    client's; a stop in that wait still waited it out (a second close() on asyncio's TLS transport does nothing)."""
    from tests.service.test_protocol import read_response

    with contextlib.ExitStack() as client:
        with big_answer_server(certificate, 5, size=2) as port:
            sock = client.enter_context(slow_tls_socket(port, certificate[0]))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert read_response(sock)[1] == b"xx"
            time.sleep(0.3)  # the service's TLS close is sent; the client never answers it
            stopping = time.monotonic()
        took = time.monotonic() - stopping
    assert took < SHUTDOWN_S - 0.8, took


# ----------------------------------------------------------------- failed handshakes

def handshake_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    messages = [r.getMessage() for r in caplog.records if r.name == "pneumoscan.service"]
    return [message for message in messages if "TLS handshake" in message]


def wait_for_lines(caplog: pytest.LogCaptureFixture, count: int, limit_s: float = MARGIN) -> list[str]:
    deadline = time.monotonic() + limit_s
    while len(handshake_lines(caplog)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return handshake_lines(caplog)


def fail_handshake(port: int, case: str) -> None:
    """A client whose handshake fails: CASE "untrusted" (it does not trust the certificate), "old" (TLS 1.0 only),
    "reset" (half a ClientHello, then a TCP reset) or "silent" (connects, sends nothing, closes)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    if case in ("untrusted", "old"):
        client = ssl.create_default_context()  # the system's CAs: not this self-signed certificate
        if case == "old":
            client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
            client.set_ciphers("DEFAULT:@SECLEVEL=0")
            with warnings.catch_warnings():  # TLS 1.0 is deprecated: that is the point
                warnings.simplefilter("ignore", DeprecationWarning)
                client.minimum_version = client.maximum_version = ssl.TLSVersion.TLSv1
        with contextlib.suppress(ssl.SSLError, OSError), client.wrap_socket(raw, server_hostname="127.0.0.1"):
            pass
    elif case == "reset":
        raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's first bytes
        time.sleep(0.1)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close: RST
    raw.close()


@pytest.mark.parametrize("case, reason", [
    ("untrusted", r"the client does not trust this service's certificate \((TLSV1_ALERT_UNKNOWN_CA|"
                  r"SSLV3_ALERT_BAD_CERTIFICATE|SSLV3_ALERT_CERTIFICATE_UNKNOWN)\)"),
    ("old", r"the client and the service have no TLS version or cipher in common \([A-Z_]+\)"),
    ("reset", r"the client closed or reset the connection during the handshake"),
], ids=["untrusted", "old", "reset"])
def test_a_failed_handshake_is_one_line_with_the_client_and_the_reason(
        case: str, reason: str, certificate: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    """asyncio dropped them without a word (it logs them in debug mode only)."""
    with caplog.at_level(logging.WARNING, logger="pneumoscan.service"), big_answer_server(certificate, 5, 2) as port:
        fail_handshake(port, case)
        lines = wait_for_lines(caplog, 1)
    assert len(lines) == 1 and re.fullmatch(rf"TLS handshake with 127\.0\.0\.1 failed: {reason}", lines[0]), lines
    assert "Traceback" not in caplog.text


def test_a_client_that_sends_nothing_is_not_a_failed_handshake(
        certificate: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    """A TCP health check or a browser's spare connection, as over plain HTTP: no line."""
    with caplog.at_level(logging.WARNING, logger="pneumoscan.service"), big_answer_server(certificate, 0.5, 2) as port:
        fail_handshake(port, "silent")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            until_closed(sock, MARGIN)  # closed at the handshake deadline
    assert handshake_lines(caplog) == []


def test_a_flood_of_failed_handshakes_is_a_few_lines_and_a_count(
        certificate: tuple[Path, Path], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls, "FAILURE_LINES", 2)
    monkeypatch.setattr(tls, "FAILURE_WINDOW_S", 1.0)
    with caplog.at_level(logging.WARNING, logger="pneumoscan.service"), big_answer_server(certificate, 5, 2) as port:
        for _ in range(6):
            fail_handshake(port, "reset")
        lines = wait_for_lines(caplog, 3)
    assert len(lines) == 3 and all(line.startswith("TLS handshake with 127.0.0.1 failed") for line in lines[:2])
    assert re.fullmatch(r"\d more failed TLS handshakes in the last 1 s were not logged \(at most 2 lines in that "
                        r"time\)", lines[2]) and int(lines[2][0]) + 2 == 6, lines


def test_a_request_sent_with_the_end_of_the_handshake_is_answered(certificate: tuple[Path, Path]) -> None:
    """A client's TLS Finished and its first request can arrive in one read; the TLS layer hands the request over
    before the handshake's end reaches the service's protocol, which must not lose it (or take it unconnected)."""
    client = ssl.create_default_context(cafile=str(certificate[0]))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = client.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with big_answer_server(certificate, 5, size=2) as port, \
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        while True:
            try:
                tls_client.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                incoming.write(sock.recv(65536))
        tls_client.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.sendall(outgoing.read())  # the Finished and the request in one write
        answer = b""
        while b"xx" not in answer:
            incoming.write(sock.recv(65536))
            with contextlib.suppress(ssl.SSLWantReadError):
                while chunk := tls_client.read(65536):
                    answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nxx"), answer


# ----------------------------------------------------------------- clients that do not speak TLS

@pytest.mark.parametrize("parts", [
    [b"OPTIONS /model HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"], [b"DELETE /model HTTP/1.1\r\n\r\n"],
    [b"PATCH /model HTTP/1.1\r\n\r\n"], [b"TRACE /model HTTP/1.1\r\n\r\n"],
    [b"CONNECT 127.0.0.1:443 HTTP/1.1\r\n\r\n"], [b"OPTIO", b"NS /model HTTP/1.1\r\n\r\n"],
    [b"DELETE /model", b" HTTP/1.1\r\n\r\n"], [b"PATCH /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n"]],
    ids=["OPTIONS", "DELETE", "PATCH", "TRACE", "CONNECT", "OPTIO|NS", "request-line-split", "over-8KB"])
def test_plain_http_with_any_method_gets_the_plain_400(
        parts: list[bytes], certificate: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    """OpenSSL says HTTP_REQUEST only for GET, POST, HEAD and PUT: any other method (WRONG_VERSION_NUMBER; CONNECT's
    HTTPS_PROXY_REQUEST) got an empty reply and a warning that there was no TLS version in common. Then only a whole
    request line among the first bytes got the 400: not one whose method came in two segments (OpenSSL gives up on the
    first 5 bytes, `OPTIO`), whose line was still on its way, or longer than 8 KB."""
    with caplog.at_level(logging.WARNING, logger="pneumoscan.service"), big_answer_server(certificate, 5, 2) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for part in parts:
                sock.sendall(part)
                time.sleep(0.3)  # the service reads each part on its own
            answer, _ = until_closed(sock, MARGIN)  # the service's FIN after the answer
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and json.loads(body) == {"detail": tls.PLAIN_HTTP_DETAIL}, answer
    messages = [r.getMessage() for r in caplog.records if r.name == "pneumoscan.service"]
    assert messages == ["a plain-HTTP request from 127.0.0.1 came to this HTTPS port; answered 400, the client must "
                        "use https://"], messages


def test_plain_http_is_told_by_the_method_alone() -> None:
    """The kept first bytes are a plain-HTTP request when they begin with a method and its space, or are capitals
    that may begin one (OpenSSL gave up on them); an SSH banner, HTTP/2's preface or a TLS record are not."""
    for first in (b"OPTIONS / HTT", b"OPTIO", b"PATCH /aaaaa", b"MKCOL /dav"):
        assert tls.is_plain_http(tls.NOT_TLS, first), first
    for first in (b"SSH-2.0-Ope", b"PRI * HTTP/", b"Hello world", b"\x16\x03\x01\x02\x00", b"OPTIONS"):
        assert not tls.is_plain_http(tls.NOT_TLS if first != b"OPTIONS" else "UNSUPPORTED_PROTOCOL", first), first


@pytest.mark.parametrize("data", [b"SSH-2.0-OpenSSH_9.6\r\n", b"\x00" * 16, b"Hello world\r\n",
                                  b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"], ids=["ssh", "zeros", "text", "http2"])
def test_a_client_that_does_not_speak_tls_is_closed_with_one_line_saying_so(
        data: bytes, certificate: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    """An SSH banner or a port scanner's probe: no answer, and the line no longer says there was no TLS version or
    cipher in common (that is UNSUPPORTED_PROTOCOL)."""
    with caplog.at_level(logging.WARNING, logger="pneumoscan.service"), big_answer_server(certificate, 5, 2) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(data)
            with contextlib.suppress(ConnectionResetError):
                assert until_closed(sock, MARGIN)[0] == b""
        lines = wait_for_lines(caplog, 1)
    assert lines == ["TLS handshake with 127.0.0.1 failed: the client did not speak TLS (WRONG_VERSION_NUMBER)"], lines


def closed_by_the_service(sock: socket.socket) -> bool:
    """Whether the service has closed its side of SOCK, whose FIN it already sent: a byte sent to a closed socket
    is answered with a TCP reset (Linux reports it as EPIPE once the service's FIN is in), one sent to an open one is
    read (and dropped)."""
    try:
        sock.sendall(b"\r\n")
        time.sleep(0.2)  # the reset, if any, arrives on loopback at once
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) in (errno.EPIPE, errno.ECONNRESET)
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_a_plain_http_client_that_stays_connected_is_closed_once_idle(certificate: tuple[Path, Path]) -> None:
    """After the plain 400 the connection waited for the client's close or the handshake deadline (10 s by
    default), and on Python 3.12.1+ held a stop that long; it now closes once the client has sent nothing for
    LINGER_IDLE_S, as the lingering close after an answer does."""
    from pneumoscan.service.protocol import LINGER_IDLE_S

    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with big_answer_server(certificate, 10, 2) as port, \
            socket.create_connection(("127.0.0.1", port), timeout=5) as early, \
            socket.create_connection(("127.0.0.1", port), timeout=5) as late:
        for sock in (early, late):
            sock.sendall(request)
            answer, _ = until_closed(sock, MARGIN)  # the service's FIN after the 400
            assert answer.startswith(b"HTTP/1.1 400 ")
        answered = time.monotonic()
        time.sleep(LINGER_IDLE_S - 0.5)
        assert not closed_by_the_service(early)
        time.sleep(max(0.0, answered + LINGER_IDLE_S + MARGIN - time.monotonic()))
        assert closed_by_the_service(late), "still open"


def run_on_tls_loop(certificate: tuple[Path, Path], scenario: Callable[..., Awaitable[None]], **server: Any) -> None:
    """Run SCENARIO(loop, server, port) on `serve`'s TLS event loop (a handshake deadline of 10 s), its TLS server
    made with the extra create_server arguments SERVER."""
    cert, key = certificate
    context = tls.tls_context(str(cert), str(key))
    loop = tls.tls_loop(context, 10)()

    async def main() -> None:
        made = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=context, **server)
        try:
            await scenario(loop, made, made.sockets[0].getsockname()[1])
        finally:
            made.close()

    try:
        loop.run_until_complete(asyncio.wait_for(main(), 30))
    finally:
        loop.close()


def test_closing_the_server_aborts_connections_still_in_their_handshake(certificate: tuple[Path, Path]) -> None:
    """uvicorn's stop closes its servers and ends the connections handed to it; one still in its handshake (or
    answered as plain HTTP) was left to the handshake deadline, and since Python 3.12.1 `Server.wait_closed()` waits
    for it, so a stop took that long (10 s by default). Closing the server now aborts them."""
    async def scenario(loop: asyncio.AbstractEventLoop, server: asyncio.Server, port: int) -> None:
        silent = await asyncio.open_connection("127.0.0.1", port)  # never starts the handshake
        plain = await asyncio.open_connection("127.0.0.1", port)
        plain[1].write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await asyncio.wait_for(plain[0].read(), 5)).startswith(b"HTTP/1.1 400 ")  # until the service's FIN
        await asyncio.sleep(0.2)
        server.close()
        start = loop.time()
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(silent[0].read(), MARGIN) == b""
        plain[1].write(b"\r\n")  # to a closed socket: answered with a reset
        await asyncio.sleep(0.2)
        assert plain[1].get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) in (
            errno.EPIPE, errno.ECONNRESET)
        assert loop.time() - start < MARGIN
        await asyncio.wait_for(server.wait_closed(), MARGIN)  # since Python 3.12.1, it waits for every connection
        for _, writer in (silent, plain):
            writer.close()

    run_on_tls_loop(certificate, scenario)


def test_the_tls_loop_takes_the_tls_timeouts_uvicorn_may_pass(certificate: tuple[Path, Path]) -> None:
    """The loop's TLS servers accept plain TCP (`ssl=None`) and start TLS themselves, with their own timeouts; a TLS
    timeout passed along, as a uvicorn that sets them would, made asyncio refuse the server with a ValueError."""
    async def scenario(loop: asyncio.AbstractEventLoop, server: asyncio.Server, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 400 ")  # the loop's own TLS server
        writer.close()

    run_on_tls_loop(certificate, scenario, ssl_handshake_timeout=60.0, ssl_shutdown_timeout=30.0)
