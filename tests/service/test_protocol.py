"""The deadlines of `serve --header-timeout-s`: a client trickling its headers ("slowloris"), or the body of a
request the service answered before reading it all, is disconnected; requests and bodies that arrive in time, or
slowly after their head while the service reads them, are not."""
from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pneumoscan.service.protocol import http_protocol
from tests.service.test_upload_memory import HEADERS, form

DEADLINE = 1.0  # --header-timeout-s of the server below
MARGIN = 2.5  # scheduling slack on a busy 2-core machine
TIMED_OUT = {"detail": "request headers not received within 1 s; check the connection and send the request again"}


@pytest.fixture(scope="module")
def address(tiny_run: Path) -> Iterator[tuple[str, int]]:
    """`pneumoscan serve --header-timeout-s 1 --upload-idle-s 2 --max-upload-mb 20` in a subprocess (a 40 MB body is
    over its limit); yields its host and port."""
    from tests.service.test_browser import serving

    with serving(tiny_run, "--header-timeout-s", str(DEADLINE), "--upload-idle-s", "2", "--max-upload-mb", "20") as base:
        host, port = base.removeprefix("http://").split(":")
        yield host, int(port)


def trickle(sock: socket.socket, data: bytes, gap_s: float = 0.2, limit_s: float = 15) -> tuple[bytes, float]:
    """Send `data` one byte every `gap_s` s, reading meanwhile, until the server closes (or resets) the connection;
    what it answered and the seconds until it closed (`limit_s` if it never did)."""
    start, answer, sent = time.monotonic(), b"", 0
    sock.settimeout(gap_s)
    while time.monotonic() - start < limit_s:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # closed with a trickled byte unread: the server's TCP resets
            break
        except socket.timeout:
            if sent < len(data):
                sock.sendall(data[sent:sent + 1])
                sent += 1
            continue
        if not chunk:
            break
        answer += chunk
    return answer, time.monotonic() - start


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP response (head, body) from `sock`, framed by its Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return head, body


def get(host: str) -> bytes:
    return f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def test_a_client_trickling_its_headers_gets_408_at_the_deadline(address: tuple[str, int]) -> None:
    """Before, a header byte every 0.2 s held the connection for as long as the client liked."""
    host, port = address
    with socket.create_connection(address, timeout=10) as sock:
        answer, took = trickle(sock, f"GET /health HTTP/1.1\r\nHost: {host}\r\nX-Slow: ".encode() + b"a" * 200)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"\r\nconnection: close" in head.lower() and json.loads(body) == TIMED_OUT
    assert DEADLINE - 0.1 <= took < DEADLINE + MARGIN, took


def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=10) as sock:
        start = time.monotonic()
        answer = sock.recv(65536)
        took = time.monotonic() - start
    assert answer == b""  # closed without an answer to a request never made
    assert DEADLINE - 0.1 <= took < DEADLINE + MARGIN, took


def test_requests_in_time_are_served_and_kept_alive(address: tuple[str, int]) -> None:
    """A head arriving in pieces within the deadline, then a second request on the same connection after a
    pause shorter than it: both answered."""
    host, _ = address
    request = get(host)
    with socket.create_connection(address, timeout=10) as sock:
        for i in range(0, len(request), 10):  # 0.15 s apart: about 0.6 s in all
            sock.sendall(request[i:i + 10])
            time.sleep(0.15)
        head, body = read_response(sock)
        assert head.startswith(b"HTTP/1.1 200 ") and json.loads(body)["status"] == "ok"
        time.sleep(0.6 * DEADLINE)
        sock.sendall(request)
        head, body = read_response(sock)
        assert head.startswith(b"HTTP/1.1 200 ") and json.loads(body)["status"] == "ok"


def test_the_deadline_starts_again_for_the_next_request_on_a_kept_alive_connection(address: tuple[str, int]) -> None:
    """After an answer the next head is due within the deadline too; uvicorn's keep-alive timer alone stops at
    the first byte."""
    host, _ = address
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(get(host))
        assert read_response(sock)[0].startswith(b"HTTP/1.1 200 ")
        answer, took = trickle(sock, get(host)[:-4] + b"\r\nX-Slow: " + b"a" * 200)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert DEADLINE - 0.1 <= took < DEADLINE + MARGIN, took


def test_a_slow_body_is_timed_by_the_upload_limits_not_the_header_deadline(address: tuple[str, int]) -> None:
    """A body taking 3 x the header deadline, each piece within --upload-idle-s, is answered; a body that stops
    gets the uploads' own 408 after --upload-idle-s (2 s), not the header deadline's after 1 s."""
    host, _ = address
    body = form(30_000, "file")
    head = (f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: {HEADERS['content-type']}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(head)
        for i in range(0, len(body), 3000):  # 10 pieces 0.3 s apart
            time.sleep(0.3)
            sock.sendall(body[i:i + 3000])
        answer, content = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 200 "), (answer, content)
    assert "probability" in json.loads(content)
    with socket.create_connection(address, timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(head + body[:10_000])
        answer, content = read_response(sock)
        took = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408 ") and json.loads(content)["detail"].startswith("upload stalled: no data "
                                                                                           "for 2 s")
    assert 2 <= took < 2 + MARGIN, took


EARLY = {  # requests the service answers without reading their 40 MB body
    "413": ("POST", "/predict", HEADERS["content-type"]),
    "404": ("POST", "/no-such-page", "application/octet-stream"),
}


def early_head(host: str, status: str, length: int = 40_000_000) -> bytes:
    method, path, content_type = EARLY[status]
    return (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


@pytest.mark.parametrize("status", EARLY)
def test_a_client_trickling_a_body_answered_early_is_closed_at_the_deadline(status: str,
                                                                            address: tuple[str, int]) -> None:
    """Before, uvicorn discarded the body one byte at a time for as long as the client sent it: still open after
    25 s. The answer stays the app's own, with no 408 after it."""
    host, _ = address
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(early_head(host, status) + b"-" * 1000)
        head, body = read_response(sock)
        assert head.startswith(f"HTTP/1.1 {status} ".encode()), (head, body)
        after, took = trickle(sock, b"-" * 200)
    assert after == b""
    assert DEADLINE - 0.2 <= took < DEADLINE + MARGIN, took


def test_a_body_answered_early_but_sent_in_time_leaves_the_connection_usable(address: tuple[str, int]) -> None:
    """The whole 40 MB sent at once after a 413: the connection stays open for the next request, and the drain
    deadline no longer runs (an upload on it taking longer than the deadline is served)."""
    host, _ = address
    upload = form(30_000, "file")
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(early_head(host, "413"))
        sock.sendall(bytes(40_000_000))
        head, body = read_response(sock)
        assert head.startswith(b"HTTP/1.1 413 ") and "larger than the limit" in json.loads(body)["detail"]
        sock.sendall(early_head(host, "413", len(upload)))
        for i in range(0, len(upload), 6000):  # 5 pieces 0.4 s apart: past the deadline of the 413
            time.sleep(0.4)
            sock.sendall(upload[i:i + 6000])
        head, body = read_response(sock)
        assert head.startswith(b"HTTP/1.1 200 ") and "probability" in json.loads(body), (head, body)


# ----------------------------------------------------------------- the protocol class alone


@pytest.fixture
def plain_server() -> Iterator[tuple[str, int]]:
    """uvicorn in a thread with the deadline protocol (0.5 s) and an app answering 200 'ok'."""
    from tests.service.test_browser import uvicorn_in_thread

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

    with uvicorn_in_thread(app, lifespan="off", http=http_protocol(0.5)) as port:
        yield "127.0.0.1", port


def test_the_timeout_is_logged_in_one_line_without_what_the_client_sent(plain_server: tuple[str, int],
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pneumoscan.service"):
        with socket.create_connection(plain_server, timeout=10) as sock:
            sock.sendall(b"GET /patients/jane-doe HTTP/1.1\r\nHost: x\r\nX-Patient: Jane Doe")
            answer, took = trickle(sock, b"", limit_s=10)
        assert answer.startswith(b"HTTP/1.1 408 ") and 0.4 <= took < 0.5 + MARGIN, (answer, took)
        with socket.create_connection(plain_server, timeout=10) as sock:  # an idle connection: closed quietly
            assert sock.recv(100) == b""
    warnings = [r.getMessage() for r in caplog.records if r.name == "pneumoscan.service"]
    assert warnings == ["closed a connection from 127.0.0.1 whose request headers were not all received within "
                        "0.5 s (--header-timeout-s)"]


def test_closing_a_body_answered_early_is_logged_in_one_line_without_what_the_client_sent(
        plain_server: tuple[str, int], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pneumoscan.service"):
        with socket.create_connection(plain_server, timeout=10) as sock:
            sock.sendall(b"POST /patients/jane-doe HTTP/1.1\r\nHost: x\r\nX-Patient: Jane Doe\r\n"
                         b"Content-Length: 1000\r\n\r\nJane")
            head, body = read_response(sock)
            answer, took = trickle(sock, b"Doe" * 100, limit_s=10)
    assert head.startswith(b"HTTP/1.1 200 ") and body == b"ok" and answer == b"", (head, body, answer)
    assert 0.3 <= took < 0.5 + MARGIN, took
    warnings = [r.getMessage() for r in caplog.records if r.name == "pneumoscan.service"]
    assert warnings == ["closed a connection from 127.0.0.1 still sending the body of a request answered 0.5 s "
                        "earlier (--header-timeout-s)"]


def test_an_uvicorn_without_what_the_deadline_needs_falls_back_to_its_own_protocol(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    protocol = http_protocol(3)
    assert issubclass(protocol, H11Protocol) and protocol.header_timeout_s == 3
    monkeypatch.delattr(H11Protocol, "on_response_complete")
    with caplog.at_level(logging.WARNING, logger="pneumoscan.service"):
        assert http_protocol(3) == "h11"
    assert [r.getMessage() for r in caplog.records] == [
        "no deadline for request headers and early-answered bodies (--header-timeout-s): the installed uvicorn/h11 "
        "lacks H11Protocol.on_response_complete; serving with uvicorn's h11 protocol"]
