"""A CUDA out-of-memory in a request (a forward pass, Grad-CAM) is a 503 to retry and one logged line, not a 500 with
a traceback; the service stays up. torch.OutOfMemoryError is constructed on a CPU build too."""
from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from pneumoscan.service.app import create_app
from pneumoscan.service.engine import Engine
from pneumoscan.service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FILM = ROOT / "sample" / "chest_xray" / "train" / "NORMAL" / "IM-0240-0001.jpeg"
OOM = "CUDA out of memory. Tried to allocate 20.00 MiB"


@pytest.fixture(scope="module")
def client(tiny_run: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model=str(tiny_run), backend="torch"))) as c:
        yield c


def _out_of_memory(*_: object, **__: object) -> None:
    raise torch.OutOfMemoryError(OOM)


def _post(client: TestClient, url: str, field: str = "file"):  # noqa: ANN202
    return client.post(url, files={field: (FILM.name, FILM.read_bytes(), "image/jpeg")})


@pytest.mark.parametrize(("where", "url", "field"), [("results", "/predict", "file"),
                                                     ("explain_png", "/predict?explain=true", "file"),
                                                     ("explain_png", "/predict?explain=t", "file"),  # as parsed
                                                     ("results", "/predict?explain=Y", "file"),
                                                     ("results", "/predict/batch", "files")])
def test_an_out_of_memory_is_a_503_to_retry_and_one_log_line(where: str, url: str, field: str, client: TestClient,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    freed = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(1))
    with monkeypatch.context() as patch, caplog.at_level(logging.INFO):
        patch.setattr(Engine, where, _out_of_memory)
        res = _post(client, url, field)
    assert res.status_code == 503 and res.headers["Retry-After"] == "2"
    assert res.json()["detail"].startswith("server busy: the GPU ran out of memory; the request was not processed")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None and "Traceback" not in caplog.text
    line = errors[0].getMessage()
    assert "\n" not in line and f"the GPU ran out of memory ({OOM})" in line and url.split("?")[0] in line
    assert "--slots" in line and "--backend onnx" in line
    assert ("or ask without ?explain=true" in line) is ("explain" in url)
    assert "--backend onnx (ONNX Runtime, on the CPU, and Grad-CAM's model too)" in line  # it leaves the GPU whole
    assert freed == [1]
    assert _post(client, url, field).status_code == 200  # still up, and the next request is answered


@pytest.mark.parametrize("text", ["CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
                                  "cuDNN error: CUDNN_STATUS_ALLOC_FAILED"])
def test_a_gpu_handle_that_could_not_be_allocated_is_a_full_gpu_too(text: str, client: TestClient,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker thread's first matrix product makes its cuBLAS handle: under memory pressure that fails as a
    RuntimeError, not OutOfMemoryError. It was a 500, and /ready 'the model failed to score a test image'."""
    def alloc_failed(*_: object) -> None:
        raise RuntimeError(text)

    monkeypatch.setattr(Engine, "results", alloc_failed)
    monkeypatch.setattr(Engine, "self_test", alloc_failed)
    with TestClient(client.app, raise_server_exceptions=False) as c:
        res, ready = _post(c, "/predict"), c.get("/ready")
    assert res.status_code == 503 and res.headers["Retry-After"] == "2"
    assert res.json()["detail"].startswith("server busy: the GPU ran out of memory")
    assert ready.status_code == 503 and ready.headers["Retry-After"] == "2" and "GPU" in ready.text


# 0: said in words only, as torch's loaders do; -1: in an ImportError, which was a 503 on /ready and a 500 in a request
@pytest.mark.parametrize("code", [errno.ENOMEM, errno.EMFILE, 0, -1])
def test_a_host_short_of_memory_or_files_is_a_503_to_retry(code: int, client: TestClient,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """As re-reading an old --onnx export's model file for the guard may meet: it was a 500 with a traceback; and
    /ready's test image alike (without an errno it said 'the model failed to score a test image', as for a broken
    model, without Retry-After)."""
    def short(*_: object) -> None:
        if code > 0:
            raise OSError(code, os.strerror(code), "/srv/models/m.safetensors")
        words = "/srv/lib/libtorch_cpu.so: cannot open shared object file: Too many open files"
        raise OSError(words) if code == 0 else ImportError(words)

    monkeypatch.setattr(Engine, "results", short)
    monkeypatch.setattr(Engine, "self_test", short)
    with TestClient(client.app, raise_server_exceptions=False) as c:
        res, ready = _post(c, "/predict"), c.get("/ready")
    assert res.status_code == 503 and res.headers["Retry-After"] == "2" and "/srv" not in res.text
    assert res.json()["detail"].startswith("server busy: the server ran short of memory or open files")
    assert ready.status_code == 503 and ready.headers.get("Retry-After") == "2" and "/srv" not in ready.text, ready.text


@pytest.mark.parametrize("error", [RuntimeError("something else"), ImportError("No module named 'pydicom'"),
                                   OSError(errno.EACCES, "Permission denied")])
def test_another_runtime_error_is_still_an_internal_error(error: Exception, client: TestClient,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise error

    monkeypatch.setattr(Engine, "results", broken)
    with TestClient(client.app, raise_server_exceptions=False) as c:
        res = _post(c, "/predict")
    assert res.status_code == 500 and res.json()["detail"].startswith("internal error")


@pytest.mark.parametrize("code", [errno.ENOMEM, errno.EMFILE])
def test_an_old_export_reading_its_model_file_short_of_memory_or_files_is_503_to_retry(
        code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An --onnx export made before exports carried the guard's features: the guard reads the model file again for a
    request, and for /ready's test image. The host short of memory or file handles there passes: a request is 503
    with Retry-After (as an OSError of `Engine.results` above), and /ready said 'the model failed to score a test
    image (OSError)' with none, as for a broken model."""
    from tests.conftest import shipped_copy
    from tests.service.test_no_server_paths import no_features

    model = shipped_copy(tmp_path)
    app = create_app(Settings(model=str(model)))
    no_features(app)
    read_bytes = Path.read_bytes

    def short(self: Path) -> bytes:
        if self == model:
            raise OSError(code, os.strerror(code), str(model))
        return read_bytes(self)

    with TestClient(app, raise_server_exceptions=False) as c:
        monkeypatch.setattr(Path, "read_bytes", short)
        predicted, ready = _post(c, "/predict"), c.get("/ready")
        monkeypatch.setattr(Path, "read_bytes", read_bytes)
        assert _post(c, "/predict").status_code == 200 and c.get("/ready").status_code == 200  # it passed
    assert predicted.status_code == 503 and predicted.headers["Retry-After"] == "2", predicted.text
    assert predicted.json()["detail"].startswith("server busy: the server ran short of memory or open files")
    assert ready.status_code == 503 and ready.headers.get("Retry-After") == "2", ready.text
    assert ready.json()["detail"] == ("not ready: the server ran short of memory or open files scoring a test image; "
                                      "retry in 2 s")
    assert str(tmp_path) not in predicted.text + ready.text


SHORT_IN = ["decoding", "grey levels", "resizing", "cues"]


def _decoding_runs_short(monkeypatch: pytest.MonkeyPatch, where: str = "decoding") -> None:
    """Make the reading of FILM, a JPEG (not of the 64 x 64 px PNG `_both` sends), run out of memory, as numpy's
    allocation for a huge film's pixels fails: in the decoder, or just after it (counting its grey levels,
    resizing it, measuring the guard's cues)."""
    import pneumoscan.data.decode as decode
    import pneumoscan.data.preprocess as preprocess
    import pneumoscan.inference.decoding as decoding

    gray, levels, fit = decode._pil_to_gray, preprocess.grey_levels, preprocess.fit_decoded
    cues = decoding.file_cues

    def short(im: Image.Image, *args: object) -> object:
        if im.format == "JPEG":
            raise MemoryError()
        return gray(im, *args)

    def short_levels(pixels: object) -> int:
        if getattr(pixels, "shape", None) != (64, 64):
            raise MemoryError("Unable to allocate 1.07 GiB for an array")
        return levels(pixels)

    def short_fit(pixels: object, size: int, data: bytes) -> object:
        if data[:3] == b"\xff\xd8\xff":
            raise MemoryError("Unable to allocate 1.07 GiB for an array")
        return fit(pixels, size, data)

    def short_cues(data: bytes, *args: object, **kwargs: object) -> object:
        if data[:3] == b"\xff\xd8\xff":
            raise MemoryError("Unable to allocate 1.07 GiB for an array")
        return cues(data, *args, **kwargs)  # type: ignore[arg-type]

    if where == "decoding":
        monkeypatch.setattr(decode, "_pil_to_gray", short)
    elif where == "grey levels":
        monkeypatch.setattr(preprocess, "grey_levels", short_levels)
    elif where == "resizing":
        monkeypatch.setattr(preprocess, "fit_decoded", short_fit)
    else:
        monkeypatch.setattr(decoding, "file_cues", short_cues)


def _both(c: TestClient):  # noqa: ANN202
    """A batch of FILM, whose decoding runs short, and a small film, which decodes."""
    small = io.BytesIO()
    Image.new("L", (64, 64), 128).save(small, "PNG")
    return c.post("/predict/batch", files=[("files", (FILM.name, FILM.read_bytes(), "image/jpeg")),
                                           ("files", ("small.png", small.getvalue(), "image/png"))])


@pytest.mark.parametrize("where", SHORT_IN)
def test_a_film_too_large_for_an_idle_servers_memory_is_413_to_downscale_not_503_for_ever(
        where: str, client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A 12,000 x 12,000 px PNG under `ulimit -v 1250000` on an idle service was answered 503 'retry in 2 s' four times
    in a row (a client honouring Retry-After loops for ever), and a batch holding it was a 503 whole, its good films
    never scored. With no other request holding memory, retrying cannot help: 413, downscale it; a batch's other films
    are scored. The log line names no file. So too when memory runs short just after the decoder (its grey levels,
    its resizing), which was a 503 whole."""
    _decoding_runs_short(monkeypatch, where)
    with Image.open(FILM) as im:
        width, height = im.size
    with TestClient(client.app, raise_server_exceptions=False) as c, caplog.at_level(logging.ERROR):
        res, batch = _post(c, "/predict"), _both(c)
    too_large = f"{FILM.name}: {width} x {height} px is too large for this server's memory; downscale it"
    assert res.status_code == 413 and "Retry-After" not in res.headers, res.text
    assert res.json()["detail"].startswith(too_large), res.text
    assert batch.status_code == 200, batch.text
    big, small = batch.json()["results"]
    assert (big["status"], big["ok"]) == (413, False) and big["error"].startswith(too_large), big
    assert (small["status"], small["ok"]) == (200, True) and small["probability"] is not None, small
    lines = [r.getMessage() for r in caplog.records if r.name == "pneumoscan.service"]
    assert any(f"{width} x {height} px" in line and "413" in line for line in lines), lines
    assert not any(FILM.name in line for line in lines), lines


def test_whether_others_hold_memory_is_asked_without_copying_the_slots_borrowers(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check runs in a worker thread: the limiter's statistics() copied the set of slot holders, which the event
    loop changes meanwhile. It reads counters only; a film too large for an idle server is still 413."""
    limiter_class = type(client.app.state.limiter)

    def copies(*_: object) -> None:
        raise RuntimeError("Set changed size during iteration")

    monkeypatch.setattr(limiter_class, "statistics", copies)
    _decoding_runs_short(monkeypatch)
    with TestClient(client.app, raise_server_exceptions=False) as c:
        res = _post(c, "/predict")
    assert res.status_code == 413, res.text


@contextlib.contextmanager
def _holding_memory(c: TestClient, other: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Something other than the request under way meanwhile: another request's slot or upload, Grad-CAM's model
    loading after the page's POST /warm-up, or a GET /ready whose test image is being scored (which holds no memory
    to speak of)."""
    limiter, budget, engine, holder = c.app.state.limiter, c.app.state.upload_budget, c.app.state.engine, object()
    started, go = threading.Event(), threading.Event()

    def busy(*_: object) -> None:
        started.set()
        go.wait(30)

    thread = None
    if other == "slot":
        c.portal.call(limiter.acquire_on_behalf_of, holder)
    elif other == "upload":
        budget.available -= 1000  # another request's upload
    elif other == "warm-up":
        monkeypatch.setattr(Engine, "_warm", busy)
        monkeypatch.setattr(engine, "_cam_error", None)  # not loaded yet, whatever an earlier test did
        assert c.post("/warm-up").status_code == 202
        thread = engine._warming
    else:
        monkeypatch.setattr(Engine, "self_test", busy)
        thread = threading.Thread(target=c.get, args=("/ready",))
        thread.start()
    assert other in ("slot", "upload") or started.wait(10)
    try:
        yield
    finally:
        go.set()
        if thread is not None:
            thread.join(30)
        if other == "slot":
            c.portal.call(limiter.release_on_behalf_of, holder)
        elif other == "upload":
            budget.available += 1000


@pytest.mark.parametrize("where", SHORT_IN)
@pytest.mark.parametrize("other", ["slot", "upload", "warm-up"])
def test_a_film_whose_decoding_runs_short_while_others_hold_memory_is_503_to_retry(
        other: str, where: str, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """While another request holds an inference slot or upload memory, or Grad-CAM's model loads after the page
    opened, the film may decode once that is done: 503 with Retry-After, 'nothing is wrong with the file'; in a batch
    that film's item alone, the others scored. The last one was 413 'downscale it'."""
    _decoding_runs_short(monkeypatch, where)
    with TestClient(client.app, raise_server_exceptions=False) as c, _holding_memory(c, other, monkeypatch):
        res, batch = _post(c, "/predict"), _both(c)
    assert res.status_code == 503 and res.headers["Retry-After"] == "2", res.text
    assert res.json()["detail"].startswith("server busy: the server ran short of memory or open files")
    assert "nothing is wrong with the file" in res.json()["detail"]
    big, small = batch.json()["results"]
    assert batch.status_code == 200 and big["status"] == 503 and "server busy" in big["error"], batch.text
    assert small["status"] == 200 and small["probability"] is not None, small


# torch's CPU allocator failing (`torch.empty(10**17, dtype=torch.uint8)` on this machine)
CPU_ALLOC = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                         "tried to allocate 100000000000000000 bytes. Error code 12 (Cannot allocate memory)")


@pytest.mark.parametrize("error", [MemoryError(), MemoryError("Unable to allocate 138. MiB for an array"), CPU_ALLOC])
def test_memory_that_runs_short_in_a_request_is_a_503_to_retry(error: BaseException, client: TestClient,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Python's own word for the host out of memory (numpy's allocations too) was a 500 'internal error', and so was
    torch's CPU allocator's, on the torch backend (and /ready said 'failed to score a test image', no Retry-After)."""
    def short(*_: object) -> None:
        raise error

    monkeypatch.setattr(Engine, "results", short)
    monkeypatch.setattr(Engine, "self_test", short)
    with TestClient(client.app, raise_server_exceptions=False) as c:
        res, ready = _post(c, "/predict"), c.get("/ready")
    assert res.status_code == 503 and res.headers["Retry-After"] == "2", res.text
    assert ready.status_code == 503 and ready.headers.get("Retry-After") == "2", ready.text


def _small_png() -> bytes:
    small = io.BytesIO()
    Image.new("L", (64, 64), 128).save(small, "PNG")
    return small.getvalue()


# per decoding of the film: whether another upload comes and goes during it, and whether it then runs out of memory
@pytest.mark.parametrize(("decodings", "status"), [
    ([(True, True), (False, True)], 413),  # the second reading fails with nothing else about: too large
    ([(True, True), (True, True)], 413),  # a steady stream of small uploads: decoded twice, then 413 all the same
    ([(True, True), (False, False)], 200),  # the memory the first reading missed was the other upload's
])
def test_a_film_whose_decoding_runs_short_while_another_request_came_and_went_is_decoded_again(
        decodings: list[tuple[bool, bool]], status: int, client: TestClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether others held memory was asked when the decoding started and when it failed; an upload that arrived and
    was answered in between was seen by neither, and the film was 413 'downscale it' though that upload's memory may
    be what it missed. 13e2425 made it 503, so a steady stream of small uploads kept a film from ever getting its 413
    (a client following Retry-After looped for ever). The film is decoded once more, and that reading decides."""
    import pneumoscan.data.decode as decode

    gray, answers, left = decode._pil_to_gray, [], list(decodings)

    def short(im: Image.Image, *args: object) -> object:
        if im.format != "JPEG":
            return gray(im, *args)
        arrival, fails = left.pop(0)
        if arrival:
            answers.append(c.post("/predict", files={"file": ("small.png", _small_png(), "image/png")}))
        if fails:
            raise MemoryError()
        return gray(im, *args)

    monkeypatch.setattr(decode, "_pil_to_gray", short)
    with TestClient(client.app, raise_server_exceptions=False) as c:
        res = _post(c, "/predict")
    assert left == [] and {answer.status_code for answer in answers} == {200}, [answer.text for answer in answers]
    assert res.status_code == status, res.text
    if status == 413:
        assert "too large for this server's memory; downscale it" in res.json()["detail"]


@pytest.mark.parametrize("when", ["came and went", "under way"])
def test_readiness_checks_do_not_change_a_too_large_films_413_nor_its_one_reading(
        when: str, client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A readiness check's test image measured +0 MB peak memory (torch and ONNX, the shipped model and a ResNet-50),
    so it is not memory another request holds. Counted as such, a lone film too large for the server under a /ready
    probe every 0.1 s was 503 or decoded twice, depending on the timing: a client following Retry-After looped for
    ever. A check that comes and goes during the decoding, or is under way at its start and failure, leaves the film
    its 413 after one reading."""
    import pneumoscan.data.decode as decode

    gray, answers, readings = decode._pil_to_gray, [], []

    def short(im: Image.Image, *args: object) -> object:
        if im.format != "JPEG":
            return gray(im, *args)
        readings.append(im.size)
        if when == "came and went":
            answers.append(c.get("/ready"))
        raise MemoryError()

    monkeypatch.setattr(decode, "_pil_to_gray", short)
    with (caplog.at_level(logging.INFO, logger="pneumoscan.service"),
          TestClient(client.app, raise_server_exceptions=False) as c):
        if when == "under way":
            with _holding_memory(c, "ready", monkeypatch):
                res = _post(c, "/predict")
        else:
            res = _post(c, "/predict")
    assert [answer.status_code for answer in answers] == ([200] if when == "came and went" else [])
    assert res.status_code == 413, res.text
    assert len(readings) == 1
    assert "decoding it again" not in caplog.text
