"""Request ids: the client's X-Request-ID when safe, else a new one, in the response header and JSON."""
from __future__ import annotations

import http.client
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pneumoscan.service.app import create_app
from pneumoscan.service.settings import Settings
from pneumoscan.service.tracking import request_id
from tests.conftest import xray_pixels

NEW_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def client(tiny_run: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model=str(tiny_run), backend="onnx")), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def film() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(xray_pixels(1, 3, 48)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("sent", ["3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f", "ris.42:7", "a" * 64])
def test_a_safe_request_id_is_kept(sent: str) -> None:
    assert request_id(sent.encode()) == sent


@pytest.mark.parametrize("sent", [b"", b"a" * 65, b"id with spaces", b"id\r\nINFO: forged line", b"Doe^Jane/1234",
                                  "caf\u00e9".encode("latin-1"), None])
def test_an_unsafe_or_missing_request_id_is_replaced(sent: bytes | None) -> None:
    assert NEW_ID.fullmatch(request_id(sent))


def test_predict_returns_the_request_id_in_its_header_and_json(client: TestClient, film: bytes) -> None:
    files = {"file": ("film.png", film, "image/png")}
    res = client.post("/predict", files=files, headers={"X-Request-ID": "ticket-0042"})
    assert res.status_code == 200
    assert res.headers["X-Request-ID"] == res.json()["request_id"] == "ticket-0042"
    made = client.post("/predict", files=files, headers={"X-Request-ID": "not safe; drop"})
    assert NEW_ID.fullmatch(made.headers["X-Request-ID"]) and made.json()["request_id"] == made.headers["X-Request-ID"]
    batch = client.post("/predict/batch", files=[("files", ("film.png", film, "image/png"))])
    assert batch.json()["request_id"] == batch.headers["X-Request-ID"]
    assert made.headers["X-Request-ID"] != batch.headers["X-Request-ID"]


def test_every_answer_carries_a_request_id(client: TestClient) -> None:
    for res in (client.get("/health"), client.get("/nowhere"), client.post("/predict", content=b"x"),
                client.get("/", headers={"X-Request-ID": "page-1"})):
        assert res.headers.get("X-Request-ID"), res.request.url
    assert res.headers["X-Request-ID"] == "page-1"


def test_an_internal_error_names_its_request_id_in_the_answer_and_the_log(
        client: TestClient, film: bytes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(client.app.state.engine, "results", broken)  # type: ignore[attr-defined]
    res = client.post("/predict", files={"file": ("film.png", film, "image/png")}, headers={"X-Request-ID": "bug-7"})
    assert res.status_code == 500 and res.headers["X-Request-ID"] == "bug-7" and "bug-7" in res.json()["detail"]
    assert any("request bug-7" in record.getMessage() for record in caplog.records)


def test_each_access_line_ends_with_its_request_id(tiny_run: Path, film: bytes,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn's access lines named no request id: the X-Request-ID of a support ticket, in the answers and the
    audit log, could not be found in the ordinary log."""
    from pneumoscan.service.tracking import log_config
    from tests.service.test_browser import uvicorn_in_thread

    config = log_config()
    lines = io.StringIO()
    config["handlers"]["access"]["stream"] = lines
    app = create_app(Settings(model=str(tiny_run), backend="onnx"))

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    with uvicorn_in_thread(app, log_config=config, log_level="info") as port:
        def ask(method: str, path: str, **headers: str) -> str:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            body, boundary = None, "b0undary"
            if method == "POST":
                body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.png\"\r\n"
                        "Content-Type: image/png\r\n\r\n").encode() + film + f"\r\n--{boundary}--\r\n".encode()
                headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
            conn.request(method, path, body=body, headers=headers)
            res = conn.getresponse()
            res.read()
            conn.close()
            return res.getheader("X-Request-ID") or ""

        assert ask("GET", "/health", **{"X-Request-ID": "ticket-0042"}) == "ticket-0042"
        made = ask("POST", "/predict")
        monkeypatch.setattr(app.state.engine, "results", broken)
        assert ask("POST", "/predict", **{"X-Request-ID": "bug-7"}) == "bug-7"  # answered outside RequestTracker
    logged = lines.getvalue()
    assert re.search(r'"GET /health HTTP/1.1" 200 OK request_id=ticket-0042\n', logged), logged
    assert NEW_ID.fullmatch(made) and f'"POST /predict HTTP/1.1" 200 OK request_id={made}\n' in logged
    assert '"POST /predict HTTP/1.1" 500 Internal Server Error request_id=bug-7\n' in logged


def test_an_uvicorn_logging_configuration_of_another_shape_is_kept_with_a_warning(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import uvicorn.config

    from pneumoscan.service.tracking import log_config

    other = {"version": 1, "disable_existing_loggers": False, "formatters": {}, "handlers": {}}
    monkeypatch.setattr(uvicorn.config, "LOGGING_CONFIG", other)
    assert log_config() == other
    assert "its access lines will not carry the request id" in caplog.text


@pytest.mark.parametrize(("error", "told"), [(OSError(28, "No space left on device"), False),
                                             (OSError(122, "Disk quota exceeded"), False),
                                             (ValueError("I/O operation on closed file."), True)])
def test_a_full_disk_under_stderr_adds_no_logging_error_line(error: Exception, told: bool,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`serve > serve.log 2>&1` on a full disk: a stderr line the disk refused (the warning that access lines are
    lost, uvicorn's) made logging print `--- Logging error ---` to stderr, which held it with the line and wrote it
    into the log once there was room (measured on a 64 kB tmpfs). uvicorn's stderr handler passes a full disk over;
    another failure is still told."""
    import logging
    import pydoc

    from pneumoscan.service.tracking import log_config

    class Failing(io.StringIO):
        def write(self, text: str) -> int:
            raise error

    handler_class = pydoc.locate(log_config()["handlers"]["default"]["class"])
    handler = handler_class(Failing())  # type: ignore[operator]
    handler.handle(logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Shutting down", None, None))
    assert ("--- Logging error ---" in capsys.readouterr().err) is told
