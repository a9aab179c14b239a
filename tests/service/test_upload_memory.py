"""The service's upload memory: concurrent upload bodies held at once stay within a byte budget, beyond it
requests wait briefly or get 503 with Retry-After, and every way a request can end gives its bytes back."""
from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from pneumoscan.errors import InputError
from pneumoscan.service.app import create_app
from pneumoscan.service.settings import ENVELOPE, MB, Settings

BOUNDARY = "memorytestboundary"
HEADERS = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
# Each request holds 0.1 MB at most, the service 0.2 MB of uploads at once (never below 0.1 MB + ENVELOPE).
SMALL = {"max_upload_mb": 0.1, "max_batch_mb": 0.1, "upload_memory_mb": 0.2}


def form(size: int, field: str = "files", parts: int = 1) -> bytes:
    """A multipart body of exactly `size` bytes: `parts` small PNGs padded with zero bytes after their end."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 40), 120, np.uint8)).save(buffer, format="PNG")
    png = buffer.getvalue()
    heads = [(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"x{i}.png\"\r\n"
              "Content-Type: image/png\r\n\r\n").encode() for i in range(parts)]
    tail = f"--{BOUNDARY}--\r\n".encode()
    spare = size - len(tail) - sum(len(head) + len(png) + 2 for head in heads)
    assert spare >= 0, f"{size} bytes cannot hold {parts} parts"
    pads = [spare // parts] * (parts - 1) + [spare - spare // parts * (parts - 1)]
    return b"".join(head + png + bytes(pad) + b"\r\n" for head, pad in zip(heads, pads)) + tail


def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def app(tiny_run: Path) -> FastAPI:
    """One service for the module: every test leaves its upload memory full again, or fails."""
    return create_app(Settings(model=str(tiny_run), backend="onnx", upload_wait_s=0, **SMALL))


def budget_of(app: FastAPI) -> Any:
    return app.state.upload_budget


class Held:
    """Decoding blocks until `go` is set, so that admitted requests stay under way holding their bytes."""

    def __init__(self, app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
        engine = app.state.engine
        real = engine.decode
        self.entered = threading.Semaphore(0)
        self.go = threading.Event()

        def decode(data: bytes | bytearray, name: str) -> np.ndarray:
            self.entered.release()
            assert self.go.wait(30), "the test never let decoding go on"
            return real(data, name)

        monkeypatch.setattr(engine, "decode", decode)

    def wait_entered(self, n: int) -> None:
        for _ in range(n):
            assert self.entered.acquire(timeout=30), "an admitted request did not reach decoding"


@pytest.fixture
def held(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[Held]:
    h = Held(app, monkeypatch)
    yield h
    h.go.set()  # never leave a worker thread blocked


def test_the_body_helper_is_exact() -> None:
    for size in (4000, 50_000, 83_886):
        assert len(form(size)) == size and len(form(size, parts=3)) == size


def test_uploads_beyond_the_budget_get_503_with_retry_after(app: FastAPI, held: Held) -> None:
    budget = budget_of(app)
    size = int(budget.capacity * 0.4)  # two fit, a third does not
    with TestClient(app) as client, ThreadPoolExecutor(3) as pool:
        admitted = [pool.submit(client.post, "/predict/batch", content=form(size), headers=HEADERS) for _ in range(2)]
        held.wait_entered(2)
        assert budget.available == budget.capacity - 2 * size
        for path, field in (("/predict/batch", "files"), ("/predict", "file")):  # one budget for both
            res = client.post(path, content=form(size, field), headers=HEADERS)
            assert res.status_code == 503, res.text
            assert res.headers["retry-after"] == "5"
            assert res.json()["detail"] == ("server busy: uploads under way fill the 0.2 MB of memory set aside for "
                                            "them; retry in 5 s")
        rest = budget.available  # what still fits is admitted at once
        admitted.append(pool.submit(client.post, "/predict", content=form(rest, "file"), headers=HEADERS))
        until(lambda: budget.available == 0)
        held.go.set()
        assert [f.result(timeout=30).status_code for f in admitted] == [200, 200, 200]
        assert budget.available == budget.capacity
        assert client.post("/predict/batch", content=form(size), headers=HEADERS).status_code == 200


def test_a_request_waits_its_turn_when_memory_frees_up_in_time(tiny_run: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(Settings(model=str(tiny_run), backend="onnx", upload_wait_s=30, **SMALL))
    budget, held = budget_of(app), Held(app, monkeypatch)
    size = int(budget.capacity * 0.4)
    try:
        with TestClient(app) as client, ThreadPoolExecutor(3) as pool:
            posts = [pool.submit(client.post, "/predict/batch", content=form(size), headers=HEADERS) for _ in range(2)]
            held.wait_entered(2)
            posts.append(pool.submit(client.post, "/predict/batch", content=form(size), headers=HEADERS))
            until(lambda: budget.waiting == 1)
            assert not posts[2].done()
            held.go.set()
            assert [f.result(timeout=30).status_code for f in posts] == [200, 200, 200]
        assert budget.available == budget.capacity and budget.waiting == 0
    finally:
        held.go.set()


def test_a_batch_is_held_once_not_copied_for_decoding(tiny_run: Path) -> None:
    """Files are decoded from the upload's own buffers: copying each for decoding held a batch twice (2.0 x its
    size at the peak, against 1.1 x now), so the real memory was twice what the budget counted."""
    import tracemalloc

    app = create_app(Settings(model=str(tiny_run), backend="onnx", max_upload_mb=1, max_batch_mb=16))
    body = form(8 * MB, parts=8)
    with TestClient(app) as client:
        assert client.post("/predict/batch", content=form(100_000, parts=2), headers=HEADERS).status_code == 200
        tracemalloc.start()
        try:
            res = client.post("/predict/batch", content=body, headers=HEADERS)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert [row["status"] for row in res.json()["results"]] == [200] * 8
    assert peak < 1.4 * len(body), f"{peak / MB:.1f} MB at the peak for a body of {len(body) / MB:.1f} MB"


# ----------------------------------------------------------------- no leak, however a request ends


def chunked(body: bytes) -> Iterator[bytes]:
    """The body without a Content-Length (chunked transfer)."""
    for i in range(0, len(body), 8192):
        yield body[i:i + 8192]


@pytest.mark.parametrize(("path", "content", "status"), [
    ("/predict/batch", lambda: chunked(form(int(0.1 * MB) + 20_000)), 413),  # over the body limit while reading
    ("/predict", lambda: chunked(form(int(0.1 * MB) + ENVELOPE + 1000, "file")), 413),
    ("/predict", lambda: form(int(0.1 * MB) + ENVELOPE, "file"), 413),  # the file alone is over its limit
    ("/predict", lambda: b"\x00\x01garbage" * 100, 400),  # malformed multipart
    ("/predict", lambda: form(5000, "file")[:-len(f"--{BOUNDARY}--\r\n")], 400),  # cut off before its end
    ("/predict/batch", lambda: form(5000, "other"), 422),  # no files
    ("/predict/batch", lambda: form(20_000, parts=17), 413),  # too many files
    ("/predict", lambda: form(5000, "file").replace(b"\x89PNG", b"GIF89a"), 415),
])
def test_a_failed_request_gives_its_memory_back(app: FastAPI, path: str, content: Callable[[], Any],
                                                status: int) -> None:
    budget = budget_of(app)
    with TestClient(app) as client:
        res = client.post(path, content=content(), headers=HEADERS)
        assert res.status_code == status, res.text
        assert budget.available == budget.capacity and budget.waiting == 0


def test_an_internal_error_gives_its_memory_back(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(data: bytes, name: str) -> np.ndarray:
        raise RuntimeError("decoder crashed")

    monkeypatch.setattr(app.state.engine, "decode", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/predict", content=form(5000, "file"), headers=HEADERS).status_code == 500
    assert budget_of(app).available == budget_of(app).capacity


def test_a_client_gone_before_its_turn_gives_its_memory_back(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.requests import Request

    async def gone(self: Request) -> bool:
        return True

    monkeypatch.setattr(Request, "is_disconnected", gone)
    with TestClient(app) as client:
        assert client.post("/predict", content=form(5000, "file"), headers=HEADERS).status_code == 499
    assert budget_of(app).available == budget_of(app).capacity


def run_asgi(app: FastAPI, path: str, chunks: list[bytes], declared: int | None, *, disconnect: bool = False,
             stall: bool = False, gap_s: float = 0, on_chunk: Callable[[], None] | None = None) -> tuple[int, bytes]:
    """Call the app as a server would, with a body arriving in `chunks`, `gap_s` apart (then a disconnect, if
    asked; with `stall`, the body stays unfinished and the client sends nothing more; else the client waits for the
    answer); `on_chunk` runs as each chunk is handed over. Returns status and body sent."""
    headers = [(b"content-type", HEADERS["content-type"].encode())]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": c,
                                       "more_body": disconnect or stall or i < len(chunks) - 1}
                                      for i, c in enumerate(chunks)]
    sent: list[dict[str, Any]] = []

    async def call() -> None:
        answered = anyio.Event()

        async def receive() -> dict[str, Any]:
            if messages:
                await anyio.sleep(gap_s)
                if on_chunk is not None:
                    on_chunk()
                return messages.pop(0)
            if not disconnect:
                await answered.wait()  # a server says "disconnected" once the answer is out
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered.set()

        with anyio.fail_after(30):
            await app(scope, receive, send)

    anyio.run(call)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_a_body_is_never_read_before_its_bytes_are_reserved(app: FastAPI) -> None:
    """The reservation is the declared Content-Length, taken before the first chunk is read."""
    budget = budget_of(app)
    body = form(30_000)
    seen: list[int] = []
    status, _ = run_asgi(app, "/predict/batch", [body[:10_000], body[10_000:]], len(body),
                         on_chunk=lambda: seen.append(budget.available))
    assert status == 200 and seen == [budget.capacity - len(body)] * 2
    assert budget.available == budget.capacity


def test_a_client_that_disconnects_mid_upload_gives_its_memory_back(app: FastAPI) -> None:
    budget = budget_of(app)
    body = form(60_000)
    during: list[int] = []
    run_asgi(app, "/predict/batch", [body[:20_000], body[20_000:40_000]], len(body), disconnect=True,
             on_chunk=lambda: during.append(budget.available))
    assert during == [budget.capacity - len(body)] * 2  # held while the body came in
    assert budget.available == budget.capacity


def test_a_body_longer_than_its_content_length_is_refused(app: FastAPI) -> None:
    """Never more of a body in memory than its reservation, whatever the server in front lets through."""
    body = form(30_000)
    status, answer = run_asgi(app, "/predict/batch", [body[:20_000], body[20_000:]], 20_000)
    assert status == 400 and b"longer than its Content-Length" in answer
    assert budget_of(app).available == budget_of(app).capacity


# ----------------------------------------------------------------- stalled uploads


STALLED = "upload stalled: no data for 0.3 s; check the connection and send the file again"


@pytest.fixture(scope="module")
def impatient(tiny_run: Path) -> FastAPI:
    """A service that gives up on an upload after 0.3 s without data, or 1 s in all."""
    return create_app(Settings(model=str(tiny_run), backend="onnx", upload_wait_s=0, upload_idle_s=0.3,
                               upload_total_s=1, **SMALL))


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_a_client_that_stalls_mid_upload_gets_408_and_gives_its_memory_back(impatient: FastAPI, path: str) -> None:
    """Before, a client that announced a large body and stopped sending held its reservation until it went away,
    and a few such clients kept everyone else on 503."""
    budget = budget_of(impatient)
    body = form(60_000, "file" if path == "/predict" else "files")
    during: list[int] = []
    start = time.monotonic()
    status, answer = run_asgi(impatient, path, [body[:20_000]], len(body), stall=True,
                              on_chunk=lambda: during.append(budget.available))
    took = time.monotonic() - start
    assert status == 408, answer
    assert json.loads(answer) == {"detail": STALLED}
    assert 0.3 <= took < 5, took
    assert during == [budget.capacity - len(body)]  # held while the body came in
    assert budget.available == budget.capacity and budget.waiting == 0


def test_a_stalled_body_without_content_length_gets_408(impatient: FastAPI) -> None:
    body = form(30_000)
    status, answer = run_asgi(impatient, "/predict/batch", [body[:10_000], body[10_000:20_000]], None, stall=True)
    assert status == 408 and json.loads(answer)["detail"] == STALLED
    assert budget_of(impatient).available == budget_of(impatient).capacity


def test_a_slow_but_steady_upload_is_not_cut_off(impatient: FastAPI) -> None:
    """Each chunk comes within the idle timeout: the upload goes through, however many pauses it has."""
    body = form(30_000)
    status, answer = run_asgi(impatient, "/predict/batch", [body[i:i + 6000] for i in range(0, 30_000, 6000)],
                              len(body), gap_s=0.15)
    assert status == 200, answer


def test_a_trickle_over_the_total_limit_gets_408(impatient: FastAPI) -> None:
    """A chunk every 0.2 s never trips the 0.3 s idle timeout; the 1 s total limit stops it."""
    body = form(30_000)
    status, answer = run_asgi(impatient, "/predict/batch", [body[i:i + 1000] for i in range(0, 30_000, 1000)],
                              len(body), gap_s=0.2)
    assert status == 408
    assert json.loads(answer) == {"detail": "upload stalled: not all sent within 1 s; check the connection and "
                                            "send the file again"}
    assert budget_of(impatient).available == budget_of(impatient).capacity


def test_pneumoscan_serve_answers_a_stalled_client_408_and_closes(tiny_run: Path) -> None:
    """Through uvicorn and `--upload-idle-s`: a client that sends half its body and waits gets 408 and
    the connection is closed, rather than the socket staying open with its memory reserved."""
    import socket

    from tests.service.test_browser import serving

    with serving(tiny_run, "--upload-idle-s", "0.3") as base:
        host, port = base.removeprefix("http://").split(":")
        body = form(60_000, "file")
        head = (f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: {HEADERS['content-type']}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            start = time.monotonic()
            sock.sendall(head + body[:20_000])
            answer = b""
            while chunk := sock.recv(65536):  # until the service closes the connection
                answer += chunk
            took = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    head, _, content = answer.partition(b"\r\n\r\n")
    assert b"\r\nconnection: close" in head.lower() and json.loads(content) == {"detail": STALLED}
    assert 0.3 <= took < 10, took


# ----------------------------------------------------------------- settings


def test_the_default_is_four_full_batches(tiny_run: Path) -> None:
    assert Settings(model=str(tiny_run)).upload_memory_limit_mb == 400
    assert Settings(model=str(tiny_run), max_upload_mb=150).upload_memory_limit_mb == 600
    assert Settings(model=str(tiny_run), upload_memory_mb=250).upload_memory_bytes == 250 * MB


def test_the_model_card_names_the_upload_memory_and_timeouts(app: FastAPI, tiny_run: Path) -> None:
    with TestClient(app) as client:
        info = client.get("/model").json()
        assert info["upload_memory_mb"] == 0.2 and info["upload_idle_s"] == 30.0 and info["upload_total_s"] is None
    with TestClient(create_app(Settings(model=str(tiny_run), upload_idle_s=5, upload_total_s=600))) as client:
        info = client.get("/model").json()
        assert info["upload_idle_s"] == 5 and info["upload_total_s"] == 600


def test_the_model_card_names_the_largest_request_a_proxy_must_let_through(app: FastAPI, tiny_run: Path) -> None:
    """The page could only guess a /predict body's multipart envelope (1 MB) from max_upload_mb and max_batch_mb, and
    asked IT support for a proxy limit up to 1 MB above the largest request: GET /model now says it."""
    with TestClient(app) as client:  # a /predict body (its file with the envelope) is above a full batch
        assert client.get("/model").json()["max_request_mb"] == (int(0.1 * MB) + ENVELOPE) / MB
        described = client.get("/openapi.json").json()["components"]["schemas"]["ModelInfo"]["properties"]
        assert described["max_request_mb"]["type"] == "number" and "proxy" in described["max_request_mb"]["description"]
        accepted = client.post("/predict", files={"file": ("x.png", b"\0" * int(0.1 * MB), "image/png")})
        assert accepted.status_code != 413  # a file at the per-file limit fits in max_request_mb with its envelope
    with TestClient(create_app(Settings(model=str(tiny_run), max_upload_mb=1, max_batch_mb=3))) as client:
        assert client.get("/model").json()["max_request_mb"] == 3  # a full batch is the largest


@pytest.mark.parametrize(("memory", "message"), [
    (99, "--upload-memory-mb 99: must be at least the batch limit of 100 MB, so that one full /predict/batch "
         "request fits; such as 400"),
    (float("nan"), "--upload-memory-mb nan: must be at least the batch limit"),
    (float("inf"), "--upload-memory-mb inf: must be at least the batch limit"),
])
def test_upload_memory_below_one_batch_is_refused(tiny_run: Path, memory: float, message: str) -> None:
    with pytest.raises(InputError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        Settings(model=str(tiny_run), upload_memory_mb=memory)


@pytest.mark.parametrize(("options", "message"), [
    ({"upload_idle_s": 0}, "--upload-idle-s 0: must be a number of seconds above 0, such as 30"),
    ({"upload_idle_s": -1}, "--upload-idle-s -1: must be a number of seconds above 0"),
    ({"upload_idle_s": float("nan")}, "--upload-idle-s nan: must be a number of seconds above 0"),
    ({"upload_idle_s": float("inf")}, "--upload-idle-s inf: must be a number of seconds above 0"),
    ({"upload_total_s": 0}, "--upload-total-s 0: must be a number of seconds above 0, such as 600; leave it out "
                            "for no limit"),
    ({"upload_total_s": float("inf")}, "--upload-total-s inf: must be a number of seconds above 0"),
])
def test_upload_timeouts_must_be_positive_and_finite(tiny_run: Path, options: dict[str, float], message: str) -> None:
    with pytest.raises(InputError, match="^" + re.escape(message)):
        Settings(model=str(tiny_run), **options)


# ----------------------------------------------------------------- the budget alone


async def settle() -> None:
    for _ in range(20):
        await anyio.sleep(0)


def test_waiting_requests_are_admitted_first_come_first_served() -> None:
    from pneumoscan.service.budget import UploadBudget

    async def main() -> list[str]:
        budget, order = UploadBudget(10, wait_s=30), []
        assert await budget.take(8)

        async def request(name: str, nbytes: int) -> None:
            assert await budget.take(nbytes)
            order.append(name)

        async with anyio.create_task_group() as tg:
            tg.start_soon(request, "big", 9)
            await settle()
            tg.start_soon(request, "small", 1)  # would fit now, but must not overtake the big one
            await settle()
            assert order == [] and budget.waiting == 2
            budget.give(8)
        assert budget.available == 0
        return order

    assert anyio.run(main) == ["big", "small"]


@pytest.mark.parametrize("granted", [False, True])
def test_a_request_torn_down_while_waiting_leaves_nothing_behind(granted: bool) -> None:
    """Cancelled while queued, or just as its bytes were granted: no bytes lost, no queue entry left."""
    from pneumoscan.service.budget import UploadBudget

    async def main() -> tuple[int, int]:
        budget = UploadBudget(10, wait_s=30)
        assert await budget.take(10)

        async def request() -> None:
            async with budget.reservation() as reservation:
                await reservation.take(5)
                await anyio.sleep_forever()

        async with anyio.create_task_group() as tg:
            tg.start_soon(request)
            await settle()
            assert budget.waiting == 1
            if granted:
                budget.give(10)
            tg.cancel_scope.cancel()
        return budget.available, budget.waiting

    assert anyio.run(main) == ((10 if granted else 0), 0)
