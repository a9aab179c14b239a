"""Predictor(backend='onnx'|'auto') gives the torch results, from an in-memory or a saved export."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pneumoscan.artifact import load_artifact, save_artifact
from pneumoscan.errors import InputError
from pneumoscan.export.onnx import export_artifact
from pneumoscan.inference.predictor import Predictor
from tests.conftest import interrupt_import


@pytest.fixture(scope="module")
def torch_predictor(tiny_run: Path) -> Predictor:
    return Predictor(tiny_run, backend="torch")


@pytest.fixture(scope="module")
def onnx_predictor(tiny_run: Path) -> Predictor:
    return Predictor(tiny_run, backend="onnx")


def test_onnx_and_torch_agree_on_files(torch_predictor: Predictor, onnx_predictor: Predictor, sample_films: Path,
                                       tiny_data: Path) -> None:
    assert onnx_predictor.onnx is not None and torch_predictor.onnx is None
    paths = [sample_films, tiny_data / "test"]
    a, b = torch_predictor.predict_files(paths), onnx_predictor.predict_files(paths)
    assert [r.path for r in a] == [r.path for r in b] and len(a) > 20
    pa = np.array([r.probability for r in a])
    pb = np.array([r.probability for r in b])
    assert np.max(np.abs(pa - pb)) <= 1e-4
    clear = np.abs(pa - torch_predictor.threshold) > 1e-4
    assert [r.label for r, c in zip(a, clear) if c] == [r.label for r, c in zip(b, clear) if c]
    assert onnx_predictor.threshold == torch_predictor.threshold


def test_onnx_predict_bytes_and_prevalence(tiny_run: Path, onnx_predictor: Predictor, torch_predictor: Predictor,
                                           sample_films: Path) -> None:
    data = next((sample_films / "PNEUMONIA").iterdir()).read_bytes()
    assert onnx_predictor.predict_bytes(data).probability == pytest.approx(
        torch_predictor.predict_bytes(data).probability, abs=1e-4)
    shifted_t = Predictor(tiny_run, backend="torch", prevalence=0.1).predict_bytes(data)
    shifted_o = Predictor(tiny_run, backend="onnx", prevalence=0.1).predict_bytes(data)
    assert shifted_o.probability == pytest.approx(shifted_t.probability, abs=1e-4)


def test_auto_prefers_onnx(tiny_run: Path) -> None:
    assert Predictor(tiny_run, backend="auto").backend == "onnx"


def test_auto_prefers_pytorch_on_a_cuda_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime runs on the CPU here, so with a GPU present auto keeps the model on it."""
    import torch

    from pneumoscan.inference.onnx_backend import resolve_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_backend("auto") == "torch"
    assert resolve_backend("onnx") == "onnx"


def test_the_onnx_backend_keeps_the_torch_model_off_the_gpu(tiny_run: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`--backend onnx` is the advice for a full GPU: the torch model it exports in memory from (and checks the export
    against), loads lazily beside an export on file, and copies for Grad-CAM stays on the CPU. The meta device stands
    in for CUDA: where it is picked, PyTorch's backend puts the model on it."""
    import torch

    import pneumoscan.inference.batch as batch
    from pneumoscan.service.engine import Engine
    from pneumoscan.service.settings import Settings

    def devices(model: torch.nn.Module) -> set[str]:
        return {t.device.type for t in model.state_dict().values()}

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(batch, "device_for", lambda preferred=None: torch.device(preferred or "meta"))
    assert devices(Predictor(tiny_run, backend="torch").model) == {"meta"}
    in_memory = Predictor(tiny_run, backend="onnx")
    assert in_memory.onnx is not None and in_memory.model_loaded and devices(in_memory.model) == {"cpu"}
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_run / "model.safetensors", run / "model.safetensors")
    export_artifact(run, run / "model.onnx")
    engine = Engine(Settings(model=str(run), backend="onnx"))
    assert not engine.predictor.model_loaded
    with engine._explain_lock:
        assert devices(engine._explain_copy()) == {"cpu"}


def test_an_onnx_file_asks_auto_for_onnx_even_on_a_gpu(tiny_run: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from pneumoscan.inference import predictor as predictor_module

    export_artifact(tiny_run, tmp_path / "model.onnx")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(predictor_module, "load_artifact",
                        lambda path, _device=None, **kw: load_artifact(path, "cpu", **kw))  # no GPU
    chosen = Predictor(tiny_run, backend="auto", onnx_path=tmp_path / "model.onnx")
    assert chosen.backend == "onnx" and chosen.onnx is not None
    assert chosen.onnx.source == str(tmp_path / "model.onnx")


def test_unknown_backend_is_an_input_error(tiny_run: Path) -> None:
    with pytest.raises(InputError, match="torch, onnx, auto"):
        Predictor(tiny_run, backend="tensorrt")


def test_saved_export_is_used_only_when_it_matches(tiny_run: Path, sample_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_run / "model.safetensors", run / "model.safetensors")
    export_artifact(run, run / "model.onnx")
    sibling = Predictor(run, backend="onnx")
    assert sibling.onnx is not None and sibling.onnx.source == str(run / "model.onnx")

    explicit = Predictor(run, backend="onnx", onnx_path=run / "model.onnx")
    assert explicit.onnx is not None and explicit.onnx.source == str(run / "model.onnx")
    images = np.stack([np.full((32, 32), v, np.uint8) for v in (0, 90, 200)])
    assert np.allclose(explicit.predict_images(images), Predictor(run).predict_images(images), atol=1e-4)

    # a different artifact in the folder: the stale sibling is ignored, an explicit one is refused
    other = tmp_path / "other"
    other.mkdir()
    model, meta = load_artifact(run)
    meta.threshold = 0.25  # same weights, another artifact (new digest)
    save_artifact(other / "model.safetensors", model, meta)
    stale = other / "model.onnx"
    shutil.copy(run / "model.onnx", stale)
    rebuilt = Predictor(other, backend="onnx")
    assert rebuilt.onnx is not None and rebuilt.onnx.source == "<in-memory ONNX>"
    with pytest.raises(InputError, match="different model"):
        Predictor(other, backend="onnx", onnx_path=stale)


def test_unreadable_onnx_file_is_an_input_error(tiny_run: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a loadable ONNX model") as exc:
        Predictor(tiny_run, backend="onnx", onnx_path=bad)
    # ONNX Runtime's reason, not only its error's type (a graph it has no kernel for reads alike)
    assert "(InvalidProtobuf: [ONNXRuntimeError] : 7 : INVALID_PROTOBUF : " in str(exc.value)



def test_a_missing_onnx_file_is_named_as_missing(tiny_run: Path, tmp_path: Path) -> None:
    """It was 'not a loadable ONNX model (NoSuchFile); export one with `pneumoscan export`', as for a damaged one."""
    with pytest.raises(InputError, match=r"^.*gone\.onnx: no such file; check the path, or leave out `onnx_path` "
                                         r"\(an export is then made in memory\)$"):
        Predictor(tiny_run, onnx_path=tmp_path / "gone.onnx")


def _with_props(onnx_bytes: bytes, **edits: str | None) -> bytes:
    """The export with its pneumoscan metadata entries edited (None: removed)."""
    import onnx

    proto = onnx.load_from_string(onnx_bytes)
    props = {p.key: p.value for p in proto.metadata_props}
    for key, value in edits.items():
        props.pop(f"pneumoscan.{key}", None)
        if value is not None:
            props[f"pneumoscan.{key}"] = value
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    return proto.SerializeToString()


@pytest.mark.parametrize("edits", [{"std": None}, {"std": "x"}, {"equalize": "maybe"}, {"input_size": "abc"},
                                   {"input_size": "0"}, {"crop": "1"}])
def test_an_export_with_unusable_metadata_is_an_input_error(tiny_run: Path, edits: dict[str, str | None]) -> None:
    from pneumoscan.export.onnx import export_onnx_bytes
    from pneumoscan.inference.onnx_backend import OnnxBackend

    model, meta = load_artifact(tiny_run, "cpu")
    with pytest.raises(InputError, match=r"^<in-memory ONNX>: ONNX model with unusable pneumoscan metadata \(.+\); "
                                         r"export it again with `pneumoscan export`$"):
        OnnxBackend(_with_props(export_onnx_bytes(model, meta), **edits))


_EXPORT_AGAIN = "export it again with `pneumoscan export`"


@pytest.mark.parametrize(("size", "problem", "advice"), [
    ("4097", "larger than the 4096 px this version of pneumoscan takes",
     "load it with the version that wrote it, or train the model again at --image-size 4096 or less"),
    ("0", "not a whole number of pixels from 1 to 4096", _EXPORT_AGAIN),
    ("\u00b2", "not a whole number of pixels from 1 to 4096", _EXPORT_AGAIN),
    ("9" * 5000, "not a whole number of pixels from 1 to 4096", _EXPORT_AGAIN)])
def test_an_exports_input_size_is_refused_in_the_words_of_a_model_files(tiny_run: Path, size: str, problem: str,
                                                                         advice: str) -> None:
    """An export at 4097 px was 'not a whole number of pixels from 1 to 4096', where a model file (or its guard) at
    that size is said to be larger than this version takes: every reader of an image size checks it alike. Then
    it was told to export again, which makes the same size: it gets the model file's way out. `²` (which `isdigit`
    takes) and 5000 digits reached int() and gave Python's words ('invalid literal', 'Exceeds the limit')."""
    from pneumoscan.export.onnx import export_onnx_bytes
    from pneumoscan.inference.onnx_backend import OnnxBackend

    model, meta = load_artifact(tiny_run, "cpu")
    with pytest.raises(InputError) as err:
        OnnxBackend(_with_props(export_onnx_bytes(model, meta), input_size=size))
    assert str(err.value).endswith(f"(input_size {size!r}: {problem}); {advice}")


def test_an_export_that_normalises_otherwise_than_its_model_is_not_used(tiny_run: Path, tmp_path: Path) -> None:
    """Its own metadata says how ONNX Runtime's input is normalised: an edited mean would silently change every P."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_run / "model.safetensors", run / "model.safetensors")
    export_artifact(run, run / "model.onnx")
    meta = load_artifact(run, "cpu")[1]
    (run / "model.onnx").write_bytes(_with_props((run / "model.onnx").read_bytes(), mean=repr(meta.mean + 0.2)))
    with pytest.raises(InputError, match=rf"^{run / 'model.onnx'}: normalises its input otherwise than "
                                         rf"{run / 'model.safetensors'} \(mean {meta.mean + 0.2!r} vs {meta.mean!r}\); "
                                         rf"export that model again, or leave out `onnx_path`"):  # Python words
        Predictor(run, backend="onnx", onnx_path=run / "model.onnx")
    rebuilt = Predictor(run, backend="onnx")  # the sibling is not used: an export is made in memory
    assert rebuilt.onnx is not None and rebuilt.onnx.source == "<in-memory ONNX>"


def test_auto_asks_torch_about_cuda_only_where_a_gpu_could_be(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing torch to ask took 1.5 s of a 2.4 s `predict`: on Linux without a GPU's device files CUDA cannot be
    usable, so auto picks onnx without it; with one, and on other systems, torch is asked (a GPU keeps PyTorch)."""
    import sys

    from pneumoscan.inference import onnx_backend

    asked: list[bool] = []
    monkeypatch.setattr(onnx_backend, "torch_cuda_available", lambda: asked.append(True) or True)
    monkeypatch.delitem(sys.modules, "torch")  # as in a process that has not imported it
    monkeypatch.setattr(onnx_backend.sys, "platform", "linux")
    device = tmp_path / "nvidia0"
    monkeypatch.setattr(onnx_backend, "GPU_DEVICE_FILES", (str(device),))
    assert onnx_backend.resolve_backend("auto") == "onnx" and asked == []
    device.touch()
    assert onnx_backend.resolve_backend("auto") == "torch" and asked == [True]
    device.unlink()
    monkeypatch.setattr(onnx_backend.sys, "platform", "win32")
    assert onnx_backend.resolve_backend("auto") == "torch" and asked == [True, True]


def test_an_export_on_file_serves_without_loading_the_torch_model(tiny_run: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch model is loaded when first used (explain, the torch backend), not to predict on the export."""
    from pneumoscan.inference import predictor as predictor_module

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_run / "model.safetensors", run / "model.safetensors")
    export_artifact(run, run / "model.onnx")
    loaded: list[Path] = []
    monkeypatch.setattr(predictor_module, "load_artifact",
                        lambda path, *args, **kw: loaded.append(path) or load_artifact(path, *args, **kw))
    predictor = Predictor(run, backend="onnx")
    images = np.stack([np.full((32, 32), v, np.uint8) for v in (0, 90, 200)])
    probs = predictor.predict_images(images)
    assert loaded == [] and predictor.onnx is not None and predictor.onnx.source == str(run / "model.onnx")
    model = predictor.model
    assert loaded == [run / "model.safetensors"] and predictor.model is model
    assert np.allclose(Predictor(run, backend="torch").predict_images(images), probs, atol=1e-4)


@pytest.mark.parametrize("module", ["onnxruntime", "onnx"])
def test_ctrl_c_while_onnx_runtime_or_onnx_is_imported_stops_the_command_as_interrupted(
        tiny_run: Path, tmp_path: Path, module: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """It was taken for the package missing: --backend onnx and export ended in 'pneumoscan: error: the onnx backend
    needs onnxruntime; pip install onnxruntime' (exit code 2), and --backend auto went on with PyTorch past the
    Ctrl+C, printing the film's row (exit code 0)."""
    from pneumoscan.cli import main

    interrupt_import(monkeypatch, module)
    film = next((tiny_run.parent / "data" / "test" / "NORMAL").iterdir())
    commands = [["export", "--model", str(tiny_run), "--out", str(tmp_path / "m.onnx")],
                ["predict", "--model", str(tiny_run), "--backend", "onnx", str(film)]]
    if module == "onnxruntime":
        commands.append(["predict", "--model", str(tiny_run), str(film)])  # --backend auto
    for command in commands:
        assert main(command) == 130, command
        out, err = capsys.readouterr()
        assert (out, err) == ("", "pneumoscan: interrupted\n"), command
    assert not (tmp_path / "m.onnx").exists()
