"""`serve` starts and predicts without PyTorch when the ONNX export on file serves (the shipped model); Grad-CAM's
torch model is loaded by the first heatmap, or in the background once the page has opened (its script asks, POST
/warm-up), and a PyTorch that cannot be loaded turns heatmaps off, not the service."""
from __future__ import annotations

import base64
import errno
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pneumoscan.artifact import file_sha256
from pneumoscan.inference.predictor import Predictor
from pneumoscan.service.app import create_app
from pneumoscan.service.engine import cam_error, no_torch, out_of_memory
from pneumoscan.service.settings import Settings
from tests.conftest import shipped_copy

ROOT = Path(__file__).resolve().parents[2]
FILM = ROOT / "sample" / "chest_xray" / "train" / "NORMAL" / "IM-0240-0001.jpeg"

# Runs `pneumoscan serve` (the shipped model, backend auto) with serving.run replaced by requests through a TestClient,
# and prints, as JSON, whether torch was imported after each step.
SERVE = textwrap.dedent("""
    import json, sys, time
    from fastapi.testclient import TestClient
    from pneumoscan.service import serving
    from pneumoscan.cli import main

    film = open(sys.argv[2], "rb").read()
    steps = {}

    def serve(app, **_):
        with TestClient(app) as c:
            def post(url):
                res = c.post(url, files={"file": ("film.jpeg", film, "image/jpeg")})
                assert res.status_code == 200, res.text
                return res.json()
            assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200
            steps["model"] = c.get("/model").json()
            assert post("/predict")["probability"] is not None
            assert post("/predict/batch")["n_ok"] == 1
            assert c.head("/").status_code == 200  # an uptime monitor, not a doctor opening the page
            steps["before"] = "torch" in sys.modules
            if sys.argv[1] == "page":
                assert c.get("/").status_code == 200
                assert c.post("/warm-up").status_code == 202  # what the page's script asks once it runs
                end = time.monotonic() + 120
                while not c.get("/model").json()["explain_loaded"] and time.monotonic() < end:
                    time.sleep(0.05)
                steps["page"] = "torch" in sys.modules
            steps["heatmap"] = bool(post("/predict?explain=true")["heatmap_png_base64"])
            steps["after"] = "torch" in sys.modules
            steps["loaded"] = c.get("/model").json()["explain_loaded"]

    serving.run = serve
    assert main(["serve", "--port", "0", "--log-level", "critical"]) == 0
    print(json.dumps(steps))
""")


def serve_steps(mode: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", SERVE, mode, str(FILM)], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")}, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_serve_predicts_without_torch_and_the_first_heatmap_loads_it() -> None:
    steps = serve_steps("heatmap")
    assert steps["before"] is False  # /health, /ready, /model, /predict, /predict/batch, HEAD /: no torch
    assert steps["model"]["explain_available"] is True and steps["model"]["explain_loaded"] is False
    assert steps["heatmap"] is True and steps["after"] is True and steps["loaded"] is True


def test_opening_the_page_loads_torch_in_the_background() -> None:
    steps = serve_steps("page")
    assert steps["before"] is False and steps["page"] is True
    assert steps["heatmap"] is True and steps["loaded"] is True


@pytest.fixture
def app() -> Iterator:
    """The shipped model as `serve` runs it: ONNX from its export on file, the torch model not loaded."""
    application = create_app(Settings())
    assert not application.state.engine.predictor.model_loaded
    yield application


def post_film(client: TestClient, url: str):  # noqa: ANN201
    return client.post(url, files={"file": (FILM.name, FILM.read_bytes(), "image/jpeg")})


def open_first(client: TestClient, engine: object, first: str) -> None:
    """With `first` "page", a doctor opens the page before asking for a heatmap: its background load (which a
    test may make fail), which the page's script asks for, is waited for; with "heatmap", the heatmap request itself
    loads the torch model."""
    if first == "page":
        assert client.get("/").status_code == 200
        assert client.post("/warm-up").status_code == 202
        engine._warming.join(120)  # type: ignore[attr-defined]


def test_fetching_the_page_loads_nothing_only_its_script_warms_up(app) -> None:  # noqa: ANN001
    """GET / loaded PyTorch in the background (RSS 120 -> 337 MB), so an uptime monitor fetching the page did."""
    engine = app.state.engine
    with TestClient(app) as c:
        for _ in range(3):
            assert c.get("/").status_code == 200 and c.head("/").status_code == 200
        assert engine._warming is None and c.get("/model").json()["explain_loaded"] is False
        assert 'fetch("warm-up", { method: "POST" })' in c.get("/static/app.js").text  # the page's script asks
        assert c.post("/warm-up").status_code == 202
        engine._warming.join(120)
        assert c.post("/warm-up").json() == {"explain_available": True, "explain_loaded": True, "explain_problem": None}
        assert c.get("/warm-up").status_code == 405  # a GET (a crawler's, a monitor's) never loads it


def test_a_heatmap_made_on_demand_is_that_of_the_torch_model(app) -> None:  # noqa: ANN001
    from pneumoscan.explain.gradcam import cam_layers, gradcam_for_image, overlay_png

    with TestClient(app) as c:
        first, second = post_film(c, "/predict?explain=true").json(), post_film(c, "/predict?explain=true").json()
    assert first["heatmap_png_base64"] and first == {**second, **{k: first[k] for k in (
        "latency_ms", "request_id", "analysed_at")}}
    predictor = Predictor(backend="torch")  # the model loaded at once, as serve did before
    image = predictor.decode(FILM.read_bytes(), FILM.name).image
    model = predictor.model.eval()
    cam = gradcam_for_image(model, predictor.meta, image, target=predictor.meta.class_names.index(first["label"]),
                            layers=cam_layers(model, predictor.meta))
    assert base64.b64decode(first["heatmap_png_base64"]) == bytes(overlay_png(image, cam))


def test_a_heatmap_asked_while_the_page_warm_up_runs_waits_for_it(app) -> None:  # noqa: ANN001
    engine = app.state.engine
    with TestClient(app) as c:
        with engine._explain_lock:  # the warm-up holds it while it loads the model
            assert c.post("/warm-up").json() == {"explain_available": True, "explain_loaded": False,
                                                 "explain_problem": None}
            assert engine._warming.is_alive()
            assert post_film(c, "/predict").status_code == 200  # predictions go on meanwhile
            assert c.get("/model").json()["explain_loaded"] is False
        engine._warming.join(120)
        assert c.get("/model").json()["explain_loaded"] is True
        assert post_film(c, "/predict?explain=true").json()["heatmap_png_base64"]


def test_a_pytorch_that_cannot_be_loaded_turns_off_heatmaps_only(app, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    def broken(self: Predictor) -> None:
        raise ImportError("libtorch_cpu.so: cannot open shared object file")

    monkeypatch.setattr(Predictor, "_load_model", broken)
    with TestClient(app) as c:
        assert c.get("/model").json()["explain_available"] is True  # not known before a heatmap is asked for
        res = post_film(c, "/predict?explain=true")
        assert res.status_code == 501
        assert "need PyTorch, which could not be loaded (ImportError: libtorch_cpu.so" in res.json()["detail"]
        assert "predictions are not affected" in res.json()["detail"]
        again = post_film(c, "/predict?explain=true")
        assert again.status_code == 501 and "PyTorch" in again.json()["detail"]
        info = c.get("/model").json()
        assert info["explain_available"] is False and "PyTorch" in info["explain_problem"]
        assert post_film(c, "/predict").json()["probability"] is not None
        assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200


def test_a_pytorch_that_is_not_installed_is_no_heatmap(app, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails, and find_spec says so without a spec
    with TestClient(app) as c:
        info = c.get("/model").json()
        assert info["explain_available"] is False
        assert "need PyTorch, which is not installed" in info["explain_problem"]
        assert "pip install 'torch==" in info["explain_problem"]  # the version pneumoscan pins
        res = post_film(c, "/predict?explain=true")
        assert res.status_code == 501 and info["explain_problem"] in res.json()["detail"]
        assert post_film(c, "/predict").status_code == 200
        warm = c.post("/warm-up").json()  # the page was opened: it loaded nothing, and kept the install advice
        assert warm["explain_available"] is False and warm["explain_problem"] == info["explain_problem"]
        if app.state.engine._warming is not None:  # a load started: let it end before asking
            app.state.engine._warming.join(60)
        assert c.get("/model").json()["explain_problem"] == info["explain_problem"]


def winerror(code: int) -> OSError:
    """An OSError with Windows' error code `code`, as Windows gives it (`winerror` exists there only)."""
    err = OSError(errno.EINVAL, "[WinError] Error loading \"c10.dll\" or one of its dependencies.")
    err.winerror = code  # type: ignore[attr-defined]
    return err


@pytest.mark.parametrize(("err", "short"), [
    (OSError(errno.ENOMEM, "Cannot allocate memory"), True),
    (ImportError("libc10.so: cannot map: Cannot allocate memory"), True),
    (ImportError("libtorch_cpu.so: failed to map segment from shared object"), False),  # also a damaged library
    (OSError(errno.ENOENT, "No such file or directory"), False),
    (ImportError("libtorch_cpu.so: cannot open shared object file"), False),
    # Windows: importing torch short of memory (its errno is EINVAL)
    (OSError(errno.EINVAL, 'The paging file is too small for this operation to complete. Error loading "c10.dll" or '
                           'one of its dependencies.'), True),
    (winerror(1455), True), (winerror(8), True), (winerror(126), False),
])
def test_memory_that_ran_short_importing_pytorch_is_out_of_memory(err: Exception, short: bool) -> None:
    """Was 'Reinstall torch', for good, when the host only ran short of memory for a moment."""
    assert out_of_memory(err) is short


@pytest.mark.parametrize(("err", "short"), [
    (OSError(errno.EMFILE, "Too many open files"), True), (OSError(errno.ENFILE, "Too many open files in system"), True),
    # loading torch's libraries under a low file limit: the reason in words only, no errno (was 'Reinstall torch')
    (ImportError("libtorch_cpu.so: cannot open shared object file: Too many open files"), True),
    (OSError("libc10.so: cannot open shared object file: Too many open files"), True),
    (ImportError("libtorch_cpu.so: cannot open shared object file: No such file or directory"), False),
])
def test_too_many_open_files_is_a_shortage_that_may_pass(err: Exception, short: bool) -> None:
    from pneumoscan.service.engine import too_many_files

    assert too_many_files(err) is short


def test_a_pytorch_removed_since_start_up_is_named_as_not_installed() -> None:
    """`import torch` failing for want of torch itself: its install advice, not 'Reinstall torch'."""
    text = cam_error(ModuleNotFoundError("No module named 'torch'", name="torch"), Path("/srv/m.safetensors"))
    assert text == no_torch()
    other = cam_error(ModuleNotFoundError("No module named 'sympy'", name="sympy"), Path("/srv/m.safetensors"))
    assert "which could not be loaded (ModuleNotFoundError" in other


@pytest.mark.parametrize("first", ["heatmap", "page"])
def test_a_permanent_failure_to_load_the_torch_model_turns_heatmaps_off_once(app, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
                                                                             first: str) -> None:
    """Not only a broken PyTorch: damaged weights. Loaded again by every heatmap it held an inference slot for
    seconds and ended in a 500, the prediction lost."""
    calls = []

    def damaged(self: Predictor) -> None:
        calls.append(1)
        raise RuntimeError("Error(s) in loading state_dict for ResNet:\n\tsize mismatch for fc.weight")

    monkeypatch.setattr(Predictor, "_load_model", damaged)
    engine = app.state.engine
    with TestClient(app) as c:
        open_first(c, engine, first)
        for _ in range(2):
            res = post_film(c, "/predict?explain=true")
            assert res.status_code == 501  # the page then asks again without a heatmap
            assert "could not be loaded (RuntimeError: size mismatch for fc.weight)" in res.json()["detail"]
            assert "Heatmaps stay off until the service is restarted" in res.json()["detail"]
        info = c.get("/model").json()
        assert info["explain_available"] is False and "RuntimeError: size mismatch" in info["explain_problem"]
        assert post_film(c, "/predict").json()["probability"] is not None
        engine._cam_retry_at = None  # no back-off to wait out: a later heatmap would not try again either
        assert c.post("/warm-up").json()["explain_available"] is False
    assert len(calls) == 1


@pytest.mark.parametrize("first", ["heatmap", "page"])
@pytest.mark.parametrize("short", [MemoryError(), "torch.OutOfMemoryError",
                                   RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"),
                                   OSError(errno.ENOMEM, "Cannot allocate memory", "/venv/torch/lib/libtorch_cpu.so"),
                                   ImportError("libtorch_cpu.so: failed to map segment from shared object: Cannot "
                                               "allocate memory")])
def test_a_load_that_ran_out_of_memory_is_tried_again_after_a_back_off(app, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
                                                                      first: str, short: object) -> None:
    """Memory that ran short (the host's, the GPU's) turned heatmaps off until a restart, as a damaged file does."""
    import torch

    from pneumoscan.service.engine import CAM_RETRY_S

    err = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB") if short == \
        "torch.OutOfMemoryError" else short
    calls, load = [], Predictor._load_model

    def out_of_memory(self: Predictor) -> None:
        calls.append(1)
        raise err  # type: ignore[misc]

    monkeypatch.setattr(Predictor, "_load_model", out_of_memory)
    engine = app.state.engine
    with TestClient(app) as c:
        open_first(c, engine, first)
        for _ in range(2):  # within the back-off: not loaded again
            res = post_film(c, "/predict?explain=true")
            assert res.status_code == 503  # not 501: heatmaps are back after Retry-After's seconds
            assert 0 < int(res.headers["Retry-After"]) <= CAM_RETRY_S
            assert f"could not be loaded for lack of memory ({type(err).__name__}" in res.json()["detail"]
            assert "Heatmaps will be tried again in " in res.json()["detail"] and " UTC" in res.json()["detail"]
            # the first is found in the worker, the second before the upload is read: both say how to get a result now,
            # and neither calls a passing shortage 'not available for this model or installation'
            assert "retry without ?explain=true now" in res.json()["detail"], res.text
            assert "not available for this model" not in res.json()["detail"]
        info = c.get("/model").json()
        assert info["explain_available"] is False and "tried again in" in info["explain_problem"]
        assert 0 < info["explain_retry_s"] <= CAM_RETRY_S  # the page reads GET /model again once it has passed
        assert len(calls) == 1
        assert post_film(c, "/predict").json()["probability"] is not None
        engine._cam_retry_at -= CAM_RETRY_S  # the back-off is over
        monkeypatch.setattr(Predictor, "_load_model", load)  # and the memory is back
        info = c.get("/model").json()
        assert "The next heatmap asked for tries again" in info["explain_problem"]
        assert info["explain_available"] is True and info["explain_retry_s"] == 0
        if first == "page":  # the page opened again asks again
            assert c.post("/warm-up").status_code == 202
            engine._warming.join(120)
            assert c.get("/model").json()["explain_loaded"] is True
        assert post_film(c, "/predict?explain=true").json()["heatmap_png_base64"]
        info = c.get("/model").json()
        assert info["explain_loaded"] is True and info["explain_problem"] is info["explain_retry_s"] is None
    assert len(calls) == 1


def test_a_model_file_written_over_since_start_up_gives_no_heatmap(tiny_run: Path, tmp_path: Path) -> None:
    """A new `train` into the served model's folder: the heatmap would explain other weights than those predicting
    (and /model's sha256)."""
    model = shipped_copy(tmp_path)
    app = create_app(Settings(model=str(model)))
    assert not app.state.engine.predictor.model_loaded
    model.write_bytes((tiny_run / "model.safetensors").read_bytes())
    with TestClient(app) as c:
        res = post_film(c, "/predict?explain=true")
        assert res.status_code == 501 and "it changed since the service started" in res.json()["detail"]
        assert "Restart the service for heatmaps (its log names the file)" in res.json()["detail"]
        info = c.get("/model").json()
        assert info["explain_available"] is False and "changed since" in info["explain_problem"]
        assert str(tmp_path) not in res.text + json.dumps(info)
        assert info["sha256"] == app.state.engine.predictor.sha256 != file_sha256(model)
        assert post_film(c, "/predict").json()["probability"] is not None


def test_torch_backend_still_knows_at_once_whether_it_can_explain(tiny_run: Path) -> None:
    with TestClient(create_app(Settings(model=str(tiny_run), backend="torch"))) as c:
        info = c.get("/model").json()
    assert info["explain_available"] is True and info["explain_loaded"] is True and info["explain_problem"] is None



@pytest.mark.parametrize(("how", "first"), [("missing", "heatmap"), ("missing", "page"), ("permission", "heatmap"),
                                            ("read", "heatmap")])
def test_a_model_file_that_cannot_be_read_again_is_named_not_pytorch(how: str, first: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Grad-CAM reads the model file again when the export served: a file deleted or unreadable since start-up was
    reported as 'need PyTorch, which could not be loaded', and reinstalling torch fixes nothing."""
    import errno

    model = shipped_copy(tmp_path)
    app = create_app(Settings(model=str(model)))
    assert not app.state.engine.predictor.model_loaded
    # the OSError open() raises (or read(), naming no file); as root a chmod does not stop the read, and a file
    # deleted before the heatmap is already named as missing by the path check before the read
    read_bytes = Path.read_bytes
    err = {"missing": FileNotFoundError(errno.ENOENT, "No such file or directory", str(model)),
           "permission": PermissionError(errno.EACCES, "Permission denied", str(model)),
           "read": OSError(errno.EIO, "Input/output error")}[how]

    def failing(self: Path) -> bytes:
        if self == model:
            raise err
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", failing)
    engine = app.state.engine
    with TestClient(app) as c:
        open_first(c, engine, first)
        res = post_film(c, "/predict?explain=true")
        detail = res.json()["detail"]
        assert res.status_code == 501 and "PyTorch" not in detail
        assert "the model file read again, and it could not be read" in detail and "restart the service" in detail
        assert str(tmp_path) not in detail and "the service's log names it" in detail
        assert {"missing": "No such file", "permission": "Permission denied", "read": "Input/output"}[how] in detail
        assert post_film(c, "/predict").json()["probability"] is not None


@pytest.mark.parametrize(("code", "said"), [(errno.ENOMEM, "for lack of memory (OSError: [Errno 12] Cannot allocate "
                                                             "memory: 'the model file')"),
                                            (errno.EMFILE, "the service had too many files open (OSError: Too many "
                                                           "open files)"),
                                            (errno.ENFILE, "too many files open")])
def test_a_shortage_reading_the_model_file_again_is_tried_again_not_called_removed(
        code: int, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of memory or file handles while Grad-CAM read the model file again was 'the model file was removed or
    cannot be read ... put it back' (ModelFileGone), and heatmaps stayed off until a restart."""
    from pneumoscan.service.engine import CAM_RETRY_S

    model = shipped_copy(tmp_path)
    app = create_app(Settings(model=str(model)))
    err = OSError(code, __import__("os").strerror(code), str(model))
    assert app.state.engine.predictor._gone(err) is None
    read_bytes = Path.read_bytes

    def short(self: Path) -> bytes:
        if self == model:
            raise err
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", short)
    engine = app.state.engine
    with TestClient(app) as c:
        res = post_film(c, "/predict?explain=true")
        detail = res.json()["detail"]
        assert res.status_code == 503 and 0 < int(res.headers["Retry-After"]) <= CAM_RETRY_S, res.text
        assert said in detail and "Heatmaps will be tried again in " in detail
        assert "put it back" not in detail and str(tmp_path) not in detail
        monkeypatch.setattr(Path, "read_bytes", read_bytes)  # the shortage passed
        engine._cam_retry_at -= CAM_RETRY_S
        assert post_film(c, "/predict?explain=true").json()["heatmap_png_base64"]


@pytest.mark.parametrize("err", [OSError("libtorch_cpu.so: cannot open shared object file: No such file or directory"),
                                 PermissionError(13, "Permission denied", "/venv/torch/lib/libtorch_cpu.so")])
def test_an_oserror_loading_pytorch_names_pytorch(err: OSError, app, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    def broken(self: Predictor) -> None:
        raise err

    monkeypatch.setattr(Predictor, "_load_model", broken)
    with TestClient(app) as c:
        res = post_film(c, "/predict?explain=true")
        assert res.status_code == 501
        assert "need PyTorch, which could not be loaded (" in res.json()["detail"]
        assert "model file" not in res.json()["detail"] and "/venv/" not in res.json()["detail"]  # the log has it


def test_a_model_file_written_over_is_a_503_whose_log_line_names_it_when_the_guard_needs_the_torch_model(
        tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """An older --onnx export, without the features output, makes the guard load the torch model on the first upload:
    a model file changed since start-up then failed the request with 422, as if the upload were the problem. The
    answer names no server path (it did): the log line does, found by the request id the answer gives."""
    model = shipped_copy(tmp_path)
    app = create_app(Settings(model=str(model)))
    onnx = app.state.engine.predictor.onnx
    whole = onnx.predict_with_features
    monkeypatch.setattr(onnx, "predict_with_features",
                        lambda images, batch_size=64: (whole(images, batch_size)[0], None))
    monkeypatch.setattr(onnx, "has_features", False)  # as an export made before the features output
    model.write_bytes((tiny_run / "model.safetensors").read_bytes())
    with TestClient(app) as c:
        single = post_film(c, "/predict")
        batch = c.post("/predict/batch", files={"files": ("film.jpeg", FILM.read_bytes(), "image/jpeg")})
    for res in (single, batch):
        assert res.status_code == 503, res.text
        detail, rid = res.json()["detail"], res.headers["X-Request-ID"]
        assert detail.startswith("the model file changed since the service started") and "restart the service" in detail
        assert detail.endswith(f"the service's log names the model file at request id {rid}")
        assert str(tmp_path) not in res.text and "Retry-After" not in res.headers
        assert f"request {rid}: {model}: changed since" in caplog.text


def test_explain_available_never_loads_on_the_event_loop_once_heatmaps_are_off(app, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
                                                                                ) -> None:
    """Heatmaps off for memory, and the back-off ending between `_retry_due` and the next read: GET /model went on to
    `_cam_problem`, which would load PyTorch and the model on the event loop."""
    from pneumoscan.service.engine import Engine

    engine = app.state.engine
    engine._cam_error, engine._cam_retry_at = "Grad-CAM's torch model could not be loaded for lack of memory", 0.0
    monkeypatch.setattr(Engine, "_retry_due", lambda self: False)  # asked just before the back-off ended

    def load(self: Engine, module: object) -> str:
        raise AssertionError("loaded on the event loop")

    monkeypatch.setattr(Engine, "_cam_problem", load)
    assert engine.explain_available() is False


def test_explain_problem_reads_the_retry_time_once(app) -> None:  # noqa: ANN001
    """A heatmap's load that succeeded between its two reads of `_cam_retry_at` made GET /model a TypeError (a 500)."""
    from pneumoscan.service.engine import Engine

    reads = iter([time.monotonic() + 20, None, None])

    class Racing(Engine):
        _cam_retry_at = property(lambda self: next(reads), lambda self, value: None)

    engine = app.state.engine
    engine._cam_error = "Grad-CAM's torch model could not be loaded for lack of memory"
    engine.__class__ = Racing
    assert "Heatmaps will be tried again in 20 s" in engine.explain_problem


def test_explain_refusal_reads_the_state_once_after_explain_available(app,  # noqa: ANN001
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """?explain=true asked while heatmaps were not available: a model loaded since goes on, anything else is refused
    with what `explain_state` says (the route read the state three times to tell)."""
    from pneumoscan.service.engine import Engine

    engine = app.state.engine
    monkeypatch.setattr(Engine, "explain_available", lambda self: False)
    engine._cam_error = ""  # loaded since it was asked
    assert engine.explain_refusal() is None
    engine._cam_error = None  # nothing known, PyTorch installed: a 501 without a reason
    assert engine.explain_refusal() == (None, None)
    engine._cam_error, engine._cam_retry_at = "short of memory", time.monotonic() + 20
    problem, retry_s = engine.explain_refusal()
    assert problem.startswith("short of memory. Heatmaps will be tried again in ") and retry_s in (19, 20)


def test_a_retry_that_succeeds_never_shows_its_old_error_as_for_good(app,  # noqa: ANN001
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A heatmap's retry after the back-off cleared the retry time before the error: a request on the event loop in
    between got 501 (for good) with the out-of-memory reason. Every state the retry passes through is replayed."""
    from pneumoscan.service.engine import CAM_RETRY_S, Engine

    seen: list[tuple[object, object]] = []

    class Watched(Engine):
        def __setattr__(self, name: str, value: object) -> None:
            super().__setattr__(name, value)
            if name in ("_cam_error", "_cam_retry_at"):
                seen.append((self._cam_error, self._cam_retry_at))

    load = Predictor._load_model

    def short(self: Predictor) -> None:
        raise MemoryError

    monkeypatch.setattr(Predictor, "_load_model", short)
    engine = app.state.engine
    with TestClient(app) as c:
        assert post_film(c, "/predict?explain=true").status_code == 503
        engine._cam_retry_at -= CAM_RETRY_S  # the back-off is over, and the memory is back
        monkeypatch.setattr(Predictor, "_load_model", load)
        engine.__class__ = Watched
        assert post_film(c, "/predict?explain=true").json()["heatmap_png_base64"]
        engine.__class__ = Engine
        assert len(seen) == 2
        for engine._cam_error, engine._cam_retry_at in seen:  # as a request on the event loop finds it
            res = post_film(c, "/predict?explain=true")
            assert res.status_code in (200, 503), res.text
            assert engine.explain_available() or engine.explain_state()[1] is not None


# Fails `import torch` once at the module named by argv[1], as memory running short part-way would, and prints, as
# JSON, whether torch is then half loaded, what cam_error says, and whether importing it again works.
HALF_LOADED = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from pneumoscan.service.engine import cam_error, torch_half_loaded

    class Fail:
        armed = True
        def find_spec(self, name, path=None, target=None):
            if name == sys.argv[1] and Fail.armed:
                Fail.armed = False
                raise ImportError("libtorch_cpu.so: failed to map segment from shared object: Cannot allocate memory")

    sys.meta_path.insert(0, Fail())
    try:
        import torch
    except ImportError as err:
        first = err
    half, said = torch_half_loaded(), cam_error(first, Path("/srv/m.safetensors"))
    try:
        import torch
        again = bool(torch.ones(2).sum() == 2)
    except Exception as err:
        again = type(err).__name__
    print(json.dumps({"half": half, "said": said, "again": again}))
""")


@pytest.mark.parametrize(("where", "half"), [("torch._C", False), ("torch.functional", True)])
def test_pytorch_failing_part_way_after_its_library_loaded_needs_a_restart_and_says_so(where: str, half: bool) -> None:
    """Memory that ran short importing PyTorch was tried again after 30 s, and said to be: once `torch._C` has loaded,
    importing it again fails ('partially initialized module'), so the retry only turned it into a permanent 'could
    not be loaded' naming another error. Before `torch._C` loads (its libraries mapped), the retry works."""
    done = subprocess.run([sys.executable, "-c", HALF_LOADED, where], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"},
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["half"] is half and (found["again"] is True) is (not half), found
    if half:
        assert "loading it failed part-way" in found["said"] and found["said"].endswith(
            "Restart the service for heatmaps once more memory is free")
    else:
        assert "could not be loaded for lack of memory" in found["said"]


def test_a_pytorch_half_loaded_is_no_back_off_but_a_restart(app,  # noqa: ANN001
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's answer once PyTorch failed part-way for want of memory: 501, for good, saying to restart (it was
    503 with Retry-After, then a 501 blaming whatever the retry raised)."""
    import pneumoscan.service.engine as engine_module

    def short(self: Predictor) -> None:
        raise ImportError("libgomp.so.1: cannot allocate memory in static TLS block: Cannot allocate memory")

    monkeypatch.setattr(Predictor, "_load_model", short)
    monkeypatch.setattr(engine_module, "torch_half_loaded", lambda: True)  # as after the import above (real torch here)
    with TestClient(app) as c:
        res = post_film(c, "/predict?explain=true")
        assert res.status_code == 501 and "Retry-After" not in res.headers, res.text
        assert "loading it failed part-way" in res.json()["detail"] and "Restart the service" in res.json()["detail"]
        assert c.get("/model").json()["explain_retry_s"] is None
