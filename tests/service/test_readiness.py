"""GET /ready (readiness: the model scores a test image now) versus GET /health (liveness: the service answers)."""
from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pneumoscan.artifact import file_sha256
from pneumoscan.service.app import create_app
from pneumoscan.service.settings import Settings
from tests.conftest import xray_pixels


@pytest.fixture
def client(tiny_run: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model=str(tiny_run), backend="onnx", inference_slots=1))) as c:
        yield c


def test_ready_when_the_model_scores_a_test_image(client: TestClient, tiny_run: Path) -> None:
    res = client.get("/ready")
    assert res.status_code == 200
    body = res.json()
    assert body["status"] == "ready" and body["backend"] == "onnx" and body["test_ms"] >= 0
    assert body["model_sha256"] == file_sha256(tiny_run / "model.safetensors")[:12]
    assert client.head("/ready").status_code == 200


def test_guarded_model_is_ready_though_its_guard_refuses_the_grey_test_image(fitted: Path) -> None:
    with TestClient(create_app(Settings(model=str(fitted), backend="onnx"))) as client:
        assert client.get("/ready").status_code == 200


def test_a_failing_model_is_alive_but_not_ready(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("session lost")

    monkeypatch.setattr(client.app.state.engine, "results", broken)  # type: ignore[attr-defined]
    res = client.get("/ready")
    assert res.status_code == 503
    assert res.json() == {"detail": "not ready: the model failed to score a test image (RuntimeError)"}
    assert client.get("/health").status_code == 200


def test_a_hung_model_is_not_ready_and_probes_do_not_pile_up_threads(client: TestClient,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    scored, release, calls = engine.results, threading.Event(), []

    def hung(uploads: object) -> object:
        calls.append(1)
        release.wait(30)
        return scored(uploads)

    monkeypatch.setattr(engine, "results", hung)
    client.app.state.readiness.timeout_s = 0.3  # type: ignore[attr-defined]
    for _ in range(3):
        res = client.get("/ready")
        assert res.status_code == 503 and "has not scored a test image within 0.3 s" in res.json()["detail"]
    assert len(calls) == 1  # the later probes waited for the first test, not one thread each
    release.set()
    client.app.state.readiness.timeout_s = 10  # type: ignore[attr-defined]
    assert client.get("/ready").status_code == 200


def test_a_busy_service_is_still_ready(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The film under way holds the only inference slot: more films queue, so the service is still ready."""
    engine = client.app.state.engine  # type: ignore[attr-defined]
    decode, started, release = engine.decode, threading.Event(), threading.Event()

    def slow(data: bytes, name: str) -> object:
        started.set()
        release.wait(30)
        return decode(data, name)

    monkeypatch.setattr(engine, "decode", slow)
    buffer = io.BytesIO()
    Image.fromarray(xray_pixels(1, 2, 48)).save(buffer, format="PNG")
    with ThreadPoolExecutor(1) as pool:
        upload = pool.submit(client.post, "/predict", files={"file": ("x.png", buffer.getvalue(), "image/png")})
        assert started.wait(30)
        assert client.get("/ready").status_code == 200
        release.set()
        assert upload.result().status_code == 200


def test_a_gpu_out_of_memory_in_the_test_is_not_ready_for_now_with_retry_after(
        tiny_run: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Requests under way can hold the GPU: the test image's out-of-memory was 'failed to score a test image
    (OutOfMemoryError)', as if the model were broken, with no time to probe again."""
    import logging

    import torch

    freed = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(1))
    with TestClient(create_app(Settings(model=str(tiny_run), backend="torch"))) as client:
        engine = client.app.state.engine  # type: ignore[attr-defined]
        scored = engine.results

        def out_of_memory(uploads: object) -> None:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

        monkeypatch.setattr(engine, "results", out_of_memory)
        with caplog.at_level(logging.INFO):
            res = client.get("/ready")
        assert res.status_code == 503 and res.headers["Retry-After"] == "2"
        assert res.json()["detail"] == ("not ready: the GPU ran out of memory scoring a test image (requests under way "
                                        "may hold it); retry in 2 s")
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "Traceback" not in caplog.text
        assert "the GPU ran out of memory (CUDA out of memory. Tried" in errors[0].getMessage()
        assert "--slots" in errors[0].getMessage() and freed == [1]
        monkeypatch.setattr(engine, "results", scored)
        assert client.get("/ready").status_code == 200


def test_another_failure_of_the_test_gives_no_retry_after(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("session lost")

    monkeypatch.setattr(client.app.state.engine, "results", broken)  # type: ignore[attr-defined]
    assert "Retry-After" not in client.get("/ready").headers
