"""The deadlines of `serve --header-timeout-s`: a client trickling its headers ("slowloris"), or the body of a
request the service answered before reading it all, is disconnected; requests and bodies that arrive in time, or
slowly after their head while the service reads them, are not. An answer that closes the connection while the
client is still sending reaches the client, without a reset (a lingering close), and the linger is bounded."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pneumoscan.service import protocol
from pneumoscan.service.protocol import http_protocol
from tests.conftest import interrupt_import
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


# ----------------------------------------------------------------- answers that close the connection

MB = 1024 * 1024


def send_then_read(sock: socket.socket, data: bytes) -> bytes:
    """Send all of `data` without reading, then read until the server closes: all it answered. A reset (the server
    closed with bytes of ours unread) raises ConnectionResetError or BrokenPipeError."""
    for i in range(0, len(data), 65536):
        sock.sendall(data[i:i + 65536])
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def wait_readable(sock: socket.socket, timeout_s: float = 10) -> None:
    """Until the server's answer has arrived, without reading it."""
    assert select.select([sock], [], [], timeout_s)[0], "no answer"


MULTIPART = f"Content-Type: {HEADERS['content-type']}\r\n"
CLOSING = {  # status, and a head the service answers at once with it, closing the connection (its body: 30 MB)
    "413 to Connection: close": ("413", f"POST /predict HTTP/1.1\r\nConnection: close\r\n{MULTIPART}"),
    "413 to HTTP/1.0": ("413", f"POST /predict HTTP/1.0\r\n{MULTIPART}"),
    "404 to Connection: close": ("404", "POST /no-such-page HTTP/1.1\r\nConnection: close\r\n"),
    "uvicorn's 400 to a malformed head": ("400", "POST /predict HTTP/1.1\r\nno colon here\r\n"),
}


def closing_head(case: str) -> bytes:
    return (CLOSING[case][1] + "Host: x\r\nContent-Length: 30000000\r\n\r\n").encode()


@pytest.mark.parametrize("case", CLOSING)
def test_a_closing_answer_reaches_a_client_still_sending_without_a_reset(case: str, address: tuple[str, int]) -> None:
    """8 MB of the body sent after the head, then the answer read. Before, the service closed at once with the body
    unread: the client's write failed with a reset (20 of 20 tries each), and a client such as Python's
    http.client never read the answer."""
    with socket.create_connection(address, timeout=10) as sock:
        answer = send_then_read(sock, closing_head(case) + bytes(8 * MB))
    assert answer.startswith(f"HTTP/1.1 {CLOSING[case][0]} ".encode()), answer[:200]
    assert b"\r\nconnection: close" in answer.lower()


def test_a_408_for_a_stalled_upload_reaches_a_client_that_sends_again(address: tuple[str, int]) -> None:
    """A client whose upload stalled past --upload-idle-s and that then sends the rest reads the 408; before, the
    rest hit a closed socket and the client got a reset."""
    host, _ = address
    body = form(2 * MB, "file")
    head = (f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: {HEADERS['content-type']}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(head + body[:10_000])
        wait_readable(sock)
        answer = send_then_read(sock, body[10_000:])
    assert answer.startswith(b"HTTP/1.1 408 ") and b"upload stalled" in answer, answer[:200]


def test_a_408_for_slow_headers_reaches_a_client_that_sends_again(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        wait_readable(sock)
        answer = send_then_read(sock, b"a" * MB)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and json.loads(body) == TIMED_OUT, answer[:200]


def test_answers_queued_behind_a_closing_one_are_not_lost(address: tuple[str, int]) -> None:
    """Two pipelined requests, the second answered 413 with Connection: close, from a client with a small receive
    buffer that reads only once it has sent its body: before, the reset dropped what the service still had queued
    for it (the 413 always, most of the first answer too)."""
    first = b"GET /static/app.js HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(address)
        answer = send_then_read(sock, first + closing_head("413 to Connection: close") + bytes(8 * MB))
    js = (Path(protocol.__file__).parent / "static" / "app.js").read_bytes()
    assert answer.startswith(b"HTTP/1.1 200 ") and js in answer, answer[:200]
    assert answer.split(js, 1)[1].startswith(b"HTTP/1.1 413 "), answer[-300:]


# ----------------------------------------------------------------- the protocol class alone


@contextlib.contextmanager
def ok_server(timeout_s: float) -> Iterator[tuple[str, int]]:
    """uvicorn in a thread with the deadline protocol (`timeout_s`) and an app answering 200 'ok' without reading
    the request's body; yields its host and port."""
    from tests.service.test_browser import uvicorn_in_thread

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

    with uvicorn_in_thread(app, lifespan="off", http=http_protocol(timeout_s)) as port:
        yield "127.0.0.1", port


@pytest.fixture
def plain_server() -> Iterator[tuple[str, int]]:
    with ok_server(0.5) as address:
        yield address


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
        "no deadline for request headers and early-answered bodies (--header-timeout-s), and no lingering close: the "
        "installed uvicorn/h11 lacks H11Protocol.on_response_complete; serving with uvicorn's h11 protocol"]


CLOSE_EARLY = b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100000000\r\n\r\n"


def answered(sock: socket.socket) -> float:
    """Send a request the app answers (and closes) before its body, and read the answer; when it came."""
    sock.sendall(CLOSE_EARLY + b"-" * 1000)
    head, body = read_response(sock)
    assert head.startswith(b"HTTP/1.1 200 ") and body == b"ok", (head, body)
    return time.monotonic()


def test_a_client_that_keeps_sending_after_a_closing_answer_is_cut_off_after_the_linger(
        plain_server: tuple[str, int]) -> None:
    """The linger lasts --header-timeout-s (0.5 s here): a byte every 0.05 s after the answer is refused (reset)
    then, not before (before the lingering close: at the first byte) nor later."""
    with socket.create_connection(plain_server, timeout=10) as sock:
        start = answered(sock)
        assert sock.recv(100) == b""  # the FIN after the answer: nothing more comes
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            while time.monotonic() - start < 0.5 + MARGIN:
                sock.sendall(b"-")
                time.sleep(0.05)
        took = time.monotonic() - start
    assert 0.4 <= took < 0.5 + MARGIN, took


def test_the_rest_of_a_body_gets_the_whole_header_timeout_after_a_closing_answer_too() -> None:
    """As after an answer that keeps the connection, the rest of a body answered early may arrive within
    --header-timeout-s of a closing answer (6 s here). The linger was cut to 5 s at most: a client sending 1 KB
    every 0.25 s was reset 5 s after the answer, its time not yet up."""
    with ok_server(6) as address, socket.create_connection(address, timeout=10) as sock:
        start = answered(sock)
        assert sock.recv(100) == b""
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            while time.monotonic() - start < 6 + MARGIN:
                sock.sendall(b"-" * 1024)
                time.sleep(0.25)
        took = time.monotonic() - start
    assert 6 - 0.3 <= took < 6 + MARGIN, took


def test_a_lingering_close_ends_when_the_client_sends_nothing_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that stays connected but silent after the answer (a holding "slowloris", a dead upload) keeps its
    connection LINGER_IDLE_S (0.5 s here), not the linger's 5 s (--header-timeout-s): a byte it sends 1.5 s later
    is refused."""
    monkeypatch.setattr(protocol, "LINGER_IDLE_S", 0.5)
    with ok_server(5) as address, socket.create_connection(address, timeout=10) as sock:
        answered(sock)
        assert sock.recv(100) == b""
        time.sleep(1.5)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            for _ in range(20):  # the first byte draws the reset, a later one fails on it
                sock.sendall(b"-")
                time.sleep(0.05)


def test_a_lingering_close_drops_at_most_linger_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that sends fast is cut off after LINGER_BYTES (1 MB here), well before the linger's 5 s."""
    monkeypatch.setattr(protocol, "LINGER_BYTES", MB)
    with ok_server(5) as address, socket.create_connection(address, timeout=10) as sock:
        start, sent = answered(sock), 0
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            while sent < 64 * MB:
                sock.sendall(bytes(65536))
                sent += 65536
        took = time.monotonic() - start
    assert sent < 16 * MB and took < 2.5, (sent, took)  # 1 MB read, the rest in the kernels' buffers


def test_stopping_the_server_ends_a_lingering_close() -> None:
    """uvicorn waits for every connection to close before it stops: a lingering one must not hold it for 5 s."""
    with socket.socket() as sock:
        with ok_server(5) as address:
            sock.connect(address)
            answered(sock)
            stopping = time.monotonic()
        took = time.monotonic() - stopping  # the server stopped while the client kept its side open
    assert took < 2.5, took


# ----------------------------------------------------------------- access lines of answers the app never sees

NEW_ID = rb"[0-9a-f]{32}"


@contextlib.contextmanager
def logged_server(reads_body: bool = True) -> Iterator[tuple[tuple[str, int], io.StringIO]]:
    """uvicorn in a thread with `serve`'s logging and protocol (a 0.5 s head deadline), serving an app that reads
    each request's body (unless not `reads_body`: it answers at once, as a 405 does) and answers 200, behind the
    service's RequestTracker; yields its address and its access log."""
    from pneumoscan.service.tracking import RequestCounts, RequestTracker, log_config
    from tests.service.test_browser import uvicorn_in_thread

    async def app(scope: dict, receive: Any, send: Any) -> None:  # type: ignore[type-arg]
        while reads_body and (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    config = log_config()
    lines = io.StringIO()
    config["handlers"]["access"]["stream"] = lines
    with uvicorn_in_thread(RequestTracker(app, RequestCounts()), lifespan="off", http=http_protocol(0.5),
                           log_config=config, log_level="info") as port:
        yield ("127.0.0.1", port), lines


def answered_with_id(sock: socket.socket, data: bytes) -> tuple[bytes, str]:
    """Send DATA, read until the server closes; the status line and the X-Request-ID of its answer."""
    sock.sendall(data)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    found = re.search(rb"\r\nx-request-id: ([^\r]+)\r\n", answer, re.IGNORECASE)
    assert found, answer
    return answer.split(b"\r\n", 1)[0], found.group(1).decode()


def test_uvicorns_400_and_the_408_have_access_lines_with_the_id_of_their_answer() -> None:
    """Before, uvicorn's 400 for a malformed request and the 408 for a head not received in time wrote no access
    line and sent no X-Request-ID: an operator saw no trace of them."""
    sent = {  # what the client sends, the request line its access line gives
        "malformed head": (b"POST /predict?x=1 HTTP/1.1\r\nno colon here\r\n\r\n",
                           '"POST /predict?x=1 HTTP/1.1" 400 Bad Request'),
        "no request line": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", '"-" 400 Bad Request'),
        "slow head": (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: a", '"GET /health HTTP/1.1" 408 Request Timeout'),
        "slow request line": (b"GE", '"-" 408 Request Timeout'),
    }
    ids = {}
    with logged_server() as (address, lines):
        for case, (data, _) in sent.items():
            with socket.create_connection(address, timeout=10) as sock:
                status, ids[case] = answered_with_id(sock, data)
                assert status.split()[1] in (b"400", b"408"), (case, status)
    logged = lines.getvalue()
    for case, (_, line) in sent.items():
        assert re.fullmatch(NEW_ID.decode(), ids[case]), (case, ids[case])
        assert re.search(rf"^INFO: +127\.0\.0\.1:[0-9]+ - {re.escape(line)} request_id={ids[case]}$", logged,
                         re.MULTILINE), (case, logged)
    assert len(set(ids.values())) == len(ids) and len(logged.splitlines()) == len(sent), logged


def test_a_400_for_the_malformed_body_of_a_request_under_way_has_its_line_and_id() -> None:
    with logged_server() as (address, lines), socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-ID: ticket-0042\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        time.sleep(0.5)  # the app has begun, and given the request its id
        status, rid = answered_with_id(sock, b"not a chunk size\r\n")
    assert status.startswith(b"HTTP/1.1 400 ") and rid == "ticket-0042", (status, rid)
    assert lines.getvalue().endswith(' - "POST /predict HTTP/1.1" 400 Bad Request request_id=ticket-0042\n'), \
        lines.getvalue()


def test_a_malformed_body_after_the_answer_closes_the_connection_without_a_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    """The app answered before reading the body (as a 405 or 413 does) and the rest of it was being dropped: a
    malformed chunk then made send_400_response send a second answer, which h11 refuses, and asyncio logged
    'Fatal error: protocol.data_received() call failed' with a traceback, as often as a client liked."""
    with caplog.at_level(logging.ERROR), logged_server(reads_body=False) as (address, lines), \
            socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        time.sleep(0.5)  # answered 200 without reading the body
        status, _ = answered_with_id(sock, b"zz\r\nhello\r\n")
    assert status.startswith(b"HTTP/1.1 200 "), status
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


def test_a_400_for_a_body_malformed_in_the_heads_packet_keeps_the_clients_request_id() -> None:
    """Head and malformed body in one read: the app had not yet given the request its id, so the 400 made a new one
    and the client's own X-Request-ID was lost."""
    with logged_server() as (address, lines), socket.create_connection(address, timeout=10) as sock:
        status, rid = answered_with_id(sock, b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-ID: ticket-0042\r\n"
                                             b"Transfer-Encoding: chunked\r\n\r\nnot a chunk size\r\n")
    assert status.startswith(b"HTTP/1.1 400 ") and rid == "ticket-0042", (status, rid)



# ----------------------------------------------------------------- a client that stops reading its answer

BIG = 6 * MB  # an answer larger than what the kernels' buffers hold on loopback


@contextlib.contextmanager
def big_answer_server(timeout_s: float) -> Iterator[int]:
    """uvicorn in a thread over plain HTTP with `serve`'s protocol (`timeout_s` its --header-timeout-s), answering
    any request with BIG bytes; yields its port."""
    from tests.service.test_browser import uvicorn_in_thread

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                        "headers": [(b"content-length", str(BIG).encode())]})
            await send({"type": "http.response.body", "body": b"x" * BIG})  # type: ignore[operator]

    with uvicorn_in_thread(app, lifespan="off", http=http_protocol(timeout_s)) as port:
        yield port


def slow_socket(port: int) -> socket.socket:
    """A connection to PORT whose client takes at most 4 KB at a time from the network, as a slow link does."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def read_until_closed(sock: socket.socket, gap_s: float) -> tuple[bytes, bool]:
    """What SOCK receives, 16 KB every GAP_S s, until the server closes it; and whether it was reset."""
    answer = b""
    try:
        while chunk := sock.recv(16384):
            answer += chunk
            time.sleep(gap_s)
    except ConnectionResetError:
        return answer, True
    return answer, False


@pytest.mark.parametrize("closing", [True, False], ids=["connection-close", "kept-alive"])
def test_a_client_that_stops_reading_its_answer_is_cut_off(closing: bool, caplog: pytest.LogCaptureFixture) -> None:
    """Over plain HTTP asyncio's close waited for the unsent answer without end: the connection and the answer's
    unsent 3.4 MB stayed for as long as the client did, and a stop waited all of --shutdown-timeout-s for it. It is
    now cut off once the client has taken none of it for --header-timeout-s, as over TLS."""
    request = b"GET / HTTP/1.1\r\nHost: x\r\n" + (b"Connection: close\r\n" if closing else b"") + b"\r\n"
    with caplog.at_level(logging.WARNING, logger="pneumoscan.service"):
        with big_answer_server(0.5) as port, slow_socket(port) as sock:
            sock.sendall(request)
            deadline = time.monotonic() + 1.0 + MARGIN  # kept alive: closed at the head deadline, 0.5 s, then cut off
            while not caplog.records and time.monotonic() < deadline:
                time.sleep(0.05)
            answer, reset = read_until_closed(sock, 0)
    assert reset or len(answer) < BIG
    warnings = [r.getMessage() for r in caplog.records if r.name == "pneumoscan.service"]
    assert len(warnings) == 1 and re.fullmatch(r"closed a connection from 127\.0\.0\.1 whose client took none of its "
                                               r"answer for 0\.5 s \(--header-timeout-s\); \d+ bytes of it were "
                                               r"not sent", warnings[0]), warnings


def test_a_slow_client_still_gets_its_whole_answer() -> None:
    """The cut-off is for a client that stopped reading, not for one reading slowly (the kernel frees its buffer
    for the service's writes in steps of a third of it, about 1 MB on loopback: hence 5 s here)."""
    with big_answer_server(5) as port, slow_socket(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer, reset = read_until_closed(sock, 0.001)
    assert not reset and len(answer.partition(b"\r\n\r\n")[2]) == BIG


def test_ctrl_c_while_h11_is_imported_is_not_taken_for_an_old_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ImportError('initialization failed') raised from a Ctrl+C went on serving without the header deadline."""
    interrupt_import(monkeypatch, "h11")
    with pytest.raises(KeyboardInterrupt):
        http_protocol(10.0)
