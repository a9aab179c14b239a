"""No answer names a server path (the model's folder): the failures that come from the model file are logged with
it, and answered with what to do and the request id whose log line names it."""
from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pneumoscan.service.app import create_app
from pneumoscan.service.settings import Settings
from tests.conftest import shipped_copy

ROOT = Path(__file__).resolve().parents[2]
FILM = ROOT / "sample" / "chest_xray" / "train" / "NORMAL" / "IM-0240-0001.jpeg"


def answers(client: TestClient) -> list:  # noqa: ANN
    """Every endpoint's answer, heatmaps asked for, single and batch."""
    film = (FILM.name, FILM.read_bytes(), "image/jpeg")
    return [client.post("/predict", files={"file": film}), client.post("/predict?explain=true", files={"file": film}),
            client.post("/predict/batch", files={"files": film}), client.get("/model"), client.get("/ready"),
            client.get("/health"), client.get("/model/card")]


def scan(client: TestClient, folder: Path) -> list[int]:
    """The statuses of `answers`, after checking that none names `folder`."""
    found = answers(client)
    for res in found:
        assert str(folder) not in res.text and str(folder.resolve()) not in res.text, (res.request.url, res.text)
    return [res.status_code for res in found]


def no_features(app) -> None:  # noqa: ANN001
    """As an --onnx export made before exports carried the guard's features: the guard loads the torch model."""
    onnx = app.state.engine.predictor.onnx
    whole = onnx.predict_with_features
    onnx.predict_with_features = lambda images, batch_size=64: (whole(images, batch_size)[0], None)
    onnx.has_features = False


def test_a_model_file_written_over_since_start_up(tiny_run: Path, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    model = shipped_copy(tmp_path)
    app = create_app(Settings(model=str(model)))
    no_features(app)
    model.write_bytes((tiny_run / "model.safetensors").read_bytes())
    with TestClient(app) as c, caplog.at_level(logging.INFO):
        assert scan(c, tmp_path)[:4] == [503, 503, 503, 200]  # the guard fails first, heatmap or not
    assert f"{model}: changed since" in caplog.text  # the log names it


def test_a_model_that_gives_nan(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Damaged weights: the answer was a 422 naming the model file, as if the upload were wrong (a 500 in a batch)."""
    model = shipped_copy(tmp_path)
    app = create_app(Settings(model=str(model)))
    onnx = app.state.engine.predictor.onnx
    whole = onnx.predict_with_features
    onnx.predict_with_features = lambda images, batch_size=64: (np.full(len(images), np.nan),
                                                                whole(images, batch_size)[1])
    with TestClient(app) as c, caplog.at_level(logging.INFO):
        single, batch = c.post("/predict", files={"file": (FILM.name, FILM.read_bytes(), "image/jpeg")}), \
            c.post("/predict/batch", files={"files": (FILM.name, FILM.read_bytes(), "image/jpeg")})
        assert scan(c, tmp_path)[4] == 503  # /ready: its own words, no path
    for res in (single, batch):
        assert res.status_code == 503 and str(tmp_path) not in res.text
        assert "the model gave no probability (NaN): its weights are damaged" in res.json()["detail"]
        assert "(nothing is wrong with the uploaded film)" in res.json()["detail"]
        assert f"request {res.headers['X-Request-ID']}: {model}: the model gave no probability" in caplog.text


def test_a_model_file_that_cannot_be_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = shipped_copy(tmp_path)
    app = create_app(Settings(model=str(model)))
    read_bytes = Path.read_bytes

    def unreadable(self: Path) -> bytes:
        if self == model:
            raise PermissionError(errno.EACCES, "Permission denied", str(model))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    with TestClient(app) as c:
        assert scan(c, tmp_path)[:4] == [200, 501, 200, 200]
        assert "could not be read" in json.dumps(c.get("/model").json())


def test_a_model_grad_cam_cannot_explain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error that quotes the model file's path in its text (as an InputError of the artifact may)."""
    from pneumoscan.errors import InputError
    from pneumoscan.inference.predictor import Predictor

    model = shipped_copy(tmp_path)
    app = create_app(Settings(model=str(model)))

    def unusable(self: Predictor) -> None:
        raise InputError(f"{model}: its stored settings are unusable (bad), as in an edited file")

    monkeypatch.setattr(Predictor, "_load_model", unusable)
    with TestClient(app) as c:
        assert scan(c, tmp_path)[:4] == [200, 501, 200, 200]
        assert "the model file: its stored settings are unusable" in c.get("/model").json()["explain_problem"]


def test_a_model_file_deleted_since_start_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The screening loads the torch model: the answer was a 422 naming the model file and blaming the upload (a 500
    with a traceback in a batch)."""
    model = shipped_copy(tmp_path)
    app = create_app(Settings(model=str(model)))
    no_features(app)
    model.unlink()
    with TestClient(app) as c, caplog.at_level(logging.INFO):
        found = answers(c)
        assert scan(c, tmp_path)[:4] == [503, 503, 503, 200]
    for res in found[:3] + found[4:5]:  # /ready's self-test too: it said 'failed to score a test image (ModelFileGone)'
        detail = res.json()["detail"]
        assert "the model file was removed or cannot be read since the service started (no such file)" in detail
        if res.request.url.path != "/ready":
            assert "nothing is wrong with the uploaded film" in detail
            assert f"request {res.headers['X-Request-ID']}: {model}: removed or unreadable" in caplog.text
    assert f"not ready: {model}: removed or unreadable" in caplog.text


def test_a_model_file_deleted_since_start_up_for_heatmaps(tmp_path: Path) -> None:
    """Grad-CAM loads the torch model: its 501 said 'the model file: no such model file or run folder; pass --model'."""
    model = shipped_copy(tmp_path)
    app = create_app(Settings(model=str(model)))
    model.unlink()
    with TestClient(app) as c:
        assert scan(c, tmp_path)[:4] == [200, 501, 200, 200]
        problem = c.get("/model").json()["explain_problem"]
    assert problem.startswith("Grad-CAM heatmaps need the model file read again, and it could not be read (no such "
                              "file); predictions are not affected. Put the file back")


@pytest.mark.parametrize(("text", "shown"), [
    (r'[WinError 126] Error loading "C:\Program Files\Python311\Lib\site-packages\torch\lib\c10.dll" or one of its '
     r'dependencies.', '[WinError 126] Error loading "c10.dll" or one of its dependencies.'),
    (r"Error loading 'C:\Users\Dr Smith\venv\torch\lib\shm.dll'", "Error loading 'shm.dll'"),
    ("libcudnn.so.9: cannot open shared object file: /opt/My Venv/lib/libtorch_cuda.so",
     "libcudnn.so.9: cannot open shared object file: libtorch_cuda.so"),
    (r"C:\Program Files (x86)\Python\c10.dll is missing", "c10.dll is missing"),
    ("C:/Users/Dr Smith/torch/c10.dll: bad", "c10.dll: bad"),
    (r"\\fileserver\share\models\default.safetensors: bad", "default.safetensors: bad"),
    ("cannot load ~/venvs/pneumo/lib/libtorch.so", "cannot load libtorch.so"),
    ("/opt/venv/lib/libtorch.so: cannot open shared object file: No such file or directory",
     "libtorch.so: cannot open shared object file: No such file or directory"),
    ("can't find '/opt/x/y.so' and it's bad", "can't find 'y.so' and it's bad"),
    ("/srv/models/m.safetensors: bad", "the model file: bad"),
    ("size mismatch for fc.weight: copying a param of shape [2, 8]", "size mismatch for fc.weight: copying a param of "
                                                                     "shape [2, 8]"),
    # an apostrophe, comma, semicolon, colon or double space in a folder's name left the folders after it
    ("[Errno 2] No such file or directory: '/home/O'Brien/venv/lib/libtorch.so'",
     "[Errno 2] No such file or directory: 'libtorch.so'"),
    ('cannot open "/home/O\'Brien/venv/lib/libtorch.so"', 'cannot open "libtorch.so"'),
    ("/home/O'Brien/venv/lib/libtorch.so: bad", "libtorch.so: bad"),
    ("/opt/venv-3.12,old/lib/x.so: bad", "x.so: bad"),
    ("/opt/a;b/lib/x.so and /opt/a:b/lib/y.so", "x.so and y.so"),
    ("/opt/My  Venv/lib/x.so", "x.so"),
    ("file:///opt/venv/lib/libc10.so", "file://libc10.so"),
    # a word ending in , ; or : before a space ends the path: the message after it stays (was 'service.md', and
    # 'torchvision')
    ("cannot load /opt/venv/lib/x.so, see docs/service.md", "cannot load x.so, see docs/service.md"),
    ("/opt/venv/lib/libtorch_cpu.so: failed to map segment; reinstall torch/torchvision",
     "libtorch_cpu.so: failed to map segment; reinstall torch/torchvision"),
    # a URL is no server's path: it stays whole (was 'https:/cuda.html#environment-variables')
    ("See (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)",
     "See (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"),
])
def test_answers_cut_paths_to_their_file_names(text: str, shown: str) -> None:
    """Paths with spaces, quoted (torch's DLL errors on Windows), UNC or in a home folder were let through whole or
    in part ('My Venv/lib/libtorch_cuda.so')."""
    from pneumoscan.service.engine import without_paths

    assert without_paths(text, Path("/srv/models/m.safetensors")) == shown
