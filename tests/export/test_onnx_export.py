"""ONNX export: a valid graph that matches PyTorch on real X-rays, with the artifact's metadata inside."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from pneumoscan import __version__
from pneumoscan.artifact import ArtifactMeta, load_artifact, read_meta, save_artifact
from pneumoscan.cli import main
from pneumoscan.data.preprocess import Preprocessing, load_image
from pneumoscan.errors import InputError
from pneumoscan.export.onnx import (
    ExportCheckError,
    check_onnx,
    export_artifact,
    export_onnx_bytes,
    read_onnx_metadata,
)
from pneumoscan.inference.batch import predict_probs
from tests.conftest import write_xray


def sample_images(sample_films: Path, size: int, per_class: int = 3) -> np.ndarray:
    files = [f for c in ("NORMAL", "PNEUMONIA") for f in sorted((sample_films / c).iterdir())[:per_class]]
    return np.stack([load_image(f, size) for f in files])


def ort_probs(onnx_path: Path, images: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """Run the file with plain onnxruntime (independent of pneumoscan's backend wrapper)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = preprocessing(images).numpy()
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_export_round_trip_matches_torch(tiny_run: Path, sample_films: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    report = export_artifact(tiny_run, out, images=[sample_films])
    assert out.is_file() and report.path == out
    assert report.max_abs_diff <= 1e-4 and report.n_images == len(list(sample_films.rglob("*.jpeg")))

    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    model, meta = load_artifact(tiny_run)
    images = sample_images(sample_films, meta.image_size)
    got = ort_probs(out, images, meta.preprocessing)
    expected = predict_probs(model, images, meta.preprocessing)
    assert got.shape == (len(images),) and got.dtype == np.float32
    assert np.max(np.abs(got - expected)) <= 1e-4
    assert np.all((got >= 0) & (got <= 1))
    # the batch axis is dynamic: one image and an odd-sized batch both work
    assert np.allclose(ort_probs(out, images[:1], meta.preprocessing), expected[:1], atol=1e-4)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_export_metadata(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    export_artifact(tiny_run / "model.safetensors", out)
    meta = read_meta(tiny_run / "model.safetensors")
    props = read_onnx_metadata(out)
    assert json.loads(props["class_names"]) == ["NORMAL", "PNEUMONIA"]
    assert int(props["input_size"]) == meta.image_size == 32
    assert float(props["mean"]) == pytest.approx(meta.mean) and float(props["std"]) == pytest.approx(meta.std)
    assert float(props["threshold"]) == pytest.approx(meta.threshold)
    assert json.loads(props["tta"]) is False
    assert props["model_name"] == "resnet10"
    assert props["pneumoscan_version"] == __version__
    assert json.loads(props["artifact_meta"]) == json.loads(meta.to_json())
    assert len(props["artifact_sha256"]) == 64


def test_tta_is_part_of_the_graph(tiny_run: Path, sample_films: Path, tmp_path: Path) -> None:
    model, meta = load_artifact(tiny_run)
    meta.tta = True
    artifact = save_artifact(tmp_path / "tta.safetensors", model, meta)
    out = tmp_path / "tta.onnx"
    export_artifact(artifact, out, images=[sample_films])
    assert json.loads(read_onnx_metadata(out)["tta"]) is True

    images = sample_images(sample_films, meta.image_size)
    got = ort_probs(out, images, meta.preprocessing)
    with_tta = predict_probs(model, images, meta.preprocessing, tta=True)
    without = predict_probs(model, images, meta.preprocessing, tta=False)
    assert np.max(np.abs(got - with_tta)) <= 1e-4
    assert np.max(np.abs(with_tta - without)) > 1e-4  # the mirror really changes the result
    mirrored = ort_probs(out, images[:, :, ::-1].copy(), meta.preprocessing)
    assert np.max(np.abs(mirrored - got)) <= 1e-5  # mirror-averaged output is symmetric


def test_onnx_backend_keeps_confident_probabilities_apart_like_torch(tiny_run: Path, sample_films: Path) -> None:
    from pneumoscan.inference.onnx_backend import OnnxBackend

    model, meta = load_artifact(tiny_run)
    with torch.no_grad():
        model.head[-1].bias += 25.0  # every logit far above 17, where float32 probabilities are all 1.0
    images = sample_images(sample_films, meta.image_size)
    backend = OnnxBackend(export_onnx_bytes(model, meta), threads=1)
    got = backend.predict_probs(images)
    expected = predict_probs(model, images, meta.preprocessing)
    assert got.dtype == np.float64 and np.all(got < 1.0) and len(np.unique(got)) == len(images)
    assert np.argsort(got).tolist() == np.argsort(expected).tolist()
    assert np.max(np.abs(np.log1p(-got) - np.log1p(-expected))) < 1e-3  # the same tail, in log space


def test_check_rejects_a_graph_that_disagrees(tiny_run: Path, sample_films: Path) -> None:
    model, meta = load_artifact(tiny_run)
    data = export_onnx_bytes(model, meta)
    other = load_artifact(tiny_run)[0]
    with torch.no_grad():
        other.head[-1].bias += 1.0  # a different model than the one exported
    images = sample_images(sample_films, meta.image_size)
    assert check_onnx(data, model, meta, images) <= 1e-4
    with pytest.raises(ExportCheckError, match="disagree"):
        check_onnx(data, other, meta, images)


def test_a_model_whose_weights_give_nan_is_refused_as_damaged_naming_its_file(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """export said 'ONNX Runtime and PyTorch disagree: max |P diff| = nan > 0.0001', naming no file, and so did
    --backend onnx: neither runtime was at fault, the weights were."""
    from pneumoscan.inference.predictor import Predictor

    model, meta = load_artifact(tiny_run, "cpu")
    with torch.no_grad():
        model.head[-1].bias.fill_(float("nan"))
    path = save_artifact(tmp_path / "nan" / "model.safetensors", model, meta)
    damaged = (f"{path}: the model gave no probability (NaN) for 8 of 8 images in PyTorch, so its weights are "
               f"damaged; restore the model file or train it again")
    assert main(["export", "--model", str(path.parent), "--out", str(tmp_path / "nan.onnx")]) == 2
    assert capsys.readouterr().err == f"pneumoscan: error: {damaged}\n"
    assert not (tmp_path / "nan.onnx").exists()
    with pytest.raises(ExportCheckError) as err:
        Predictor(path, backend="onnx", guard=False)
    assert str(err.value) == damaged.replace("8 of 8", "4 of 4")  # the in-memory export's check: 4 sample films


def test_export_cli(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli" / "model.onnx"
    assert main(["export", "--model", str(tiny_run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "onnx.checker passed" in printed and "bundled sample" in printed

    assert main(["export", "--model", str(tmp_path / "missing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing" in err and "Traceback" not in err


def test_check_images_says_how_many_of_the_given_images_it_used(tiny_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoscan.export import onnx as onnx_module

    folder = tiny_data / "train"
    given = len(list(folder.rglob("*.jpeg")))
    batch, source = onnx_module.check_images(16, [folder])
    assert len(batch) == given and source == f"{given} given images"
    monkeypatch.setattr(onnx_module, "GIVEN_LIMIT", 5)
    batch, source = onnx_module.check_images(16, [folder])
    assert len(batch) == 5 and source == f"the first 5 of {given} given images"


def test_unreadable_files_among_the_given_images_are_left_out_with_a_warning(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a hospital folder with one empty file: the export goes on with the rest, as every other command does
    folder = tmp_path / "films"
    write_xray(folder / "a.png", 0, 1)
    write_xray(folder / "b.png", 1, 2)
    (folder / "empty.jpg").write_bytes(b"")
    out = tmp_path / "model.onnx"
    assert main(["export", "--model", str(tiny_run), "--out", str(out), "--images", str(folder)]) == 0
    captured = capsys.readouterr()
    assert out.is_file() and "on 2 readable of 3 given images" in captured.out
    assert captured.err.count("\n") == 1
    assert "1 unreadable image left out of the export check" in captured.err and "empty.jpg" in captured.err
    assert main(["export", "--model", str(tiny_run), "--out", str(tmp_path / "none.onnx"),
                 "--images", str(folder / "empty.jpg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pneumoscan: error: none of the 1 --images files could be read") and "empty.jpg" in err
    assert not (tmp_path / "none.onnx").exists()


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5"])
def test_a_bad_ort_threads_setting_is_refused_by_name(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoscan.inference.onnx_backend import default_threads

    monkeypatch.setenv("PNEUMOSCAN_ORT_THREADS", value)
    with pytest.raises(InputError, match="PNEUMOSCAN_ORT_THREADS"):
        default_threads()
    monkeypatch.setenv("PNEUMOSCAN_ORT_THREADS", " 3 ")
    assert default_threads() == 3
    monkeypatch.delenv("PNEUMOSCAN_ORT_THREADS")
    assert 1 <= default_threads() <= 4


def test_an_empty_list_of_images_is_an_error_not_the_bundled_sample(tiny_run: Path, tmp_path: Path) -> None:
    """images=[] (a glob that matched nothing) checked the export on the bundled sample and said so only in the
    report's source; None keeps that default."""
    import pneumoscan

    out = tmp_path / "m.onnx"
    with pytest.raises(InputError) as exc:
        pneumoscan.export_onnx(tiny_run, out, images=[])
    assert str(exc.value).startswith("`images` is empty: no image to check the export on") and not out.exists()
    assert pneumoscan.export_onnx(tiny_run, out, images=None).image_source.endswith("bundled sample X-rays")


class FixedBatchNet(torch.nn.Module):
    """A plugin's model whose trace fixes the batch size (int(x.shape[0]) is a constant in the traced graph): its
    export runs in ONNX Runtime only on batches of the size it was traced with."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
        self.fc = torch.nn.Linear(2 * 16 * 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).reshape(int(x.shape[0]), -1)).squeeze(1)


def _plugin_model(net: type[torch.nn.Module], name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """NET registered for this test as a plugin's model NAME (16 px), saved untrained in TMP_PATH."""
    from pneumoscan.models import registry

    registry.list_models()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register_model(name, description=f"the test's {name}", image_size=16)(net)
    meta = ArtifactMeta(model_name=name, model_config={}, image_size=16, mean=0.5, std=0.25,
                        model_sources=registry.model_sources([name]))
    return save_artifact(tmp_path / "model.safetensors", net(), meta)


def _export_code(path: Path, tmp_path: Path) -> int:
    """The exit code of `pneumoscan export` of model PATH to TMP_PATH/model.onnx, checked on one 16 px film."""
    film = write_xray(tmp_path / "film.png", 1, 0, size=16)
    return main(["export", "--model", str(path), "--out", str(tmp_path / "model.onnx"), "--images", str(film)])


def _refused_and_predicted_with_pytorch(path: Path, tmp_path: Path, err: str, cause: str) -> None:
    """After `_export_code`: its error line ERR ends with the way out and left no export; a Predictor of PATH warns
    that the export failed its check (`cause`: a pattern of why) and predicts with PyTorch."""
    from pneumoscan.inference.predictor import Predictor

    assert err.endswith("; predict with --backend torch")
    assert not (tmp_path / "model.onnx").exists()
    with pytest.warns(UserWarning, match=rf"its ONNX export failed the check against PyTorch \({cause}\); predicting "
                                         r"with PyTorch instead"):
        predictor = Predictor(path)
        assert predictor.backend == "torch"


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # the cause, said by torch
def test_an_export_onnx_runtime_cannot_run_is_refused_in_one_line_and_predicted_with_pytorch(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """ONNX Runtime's own error escaped the check: `export` ended in a traceback, and predict's auto backend, which
    falls back to PyTorch on a failed check, stopped with it. ORT's log line of the error is not shown either."""
    path = _plugin_model(FixedBatchNet, "fixedbatch", monkeypatch, tmp_path)
    capfd.readouterr()
    assert _export_code(path, tmp_path) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert [line for line in lines if "onnxruntime" in line and not line.startswith("pneumoscan: ")] == []
    err = lines[-1]  # after the tracer's warning of why (int(x.shape[0]))
    assert err.startswith(f"pneumoscan: error: {path}: ONNX Runtime cannot run the exported model (InvalidArgument: ")
    _refused_and_predicted_with_pytorch(path, tmp_path, err,
                                        r"ONNX Runtime cannot run the exported model \(InvalidArgument: .*\)")


def test_the_default_check_images_are_train_films_never_the_official_test_splits() -> None:
    """`export` without --images (and every in-memory export of predict, serve and set-threshold) ran the model on 8
    (4) films of the bundled sample's test/ folder, which are official test split films."""
    from pneumoscan.export.onnx import sample_image_paths

    files = sample_image_paths(8)
    assert len(files) == 8 and {f.parent.name for f in files} == {"NORMAL", "PNEUMONIA"}
    assert all(f.parents[1].name == "train" for f in files)


class Float64ConvNet(torch.nn.Module):
    """A plugin's model whose forward convolves in float64: its export holds a Conv that ONNX Runtime has no CPU
    kernel for, so the graph does not even load."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
        self.fc = torch.nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.conv2d(x.double(), self.conv.weight.double(), self.conv.bias.double(), padding=1)
        return self.fc(y.float().mean(dim=(2, 3))).squeeze(1)


def test_an_export_onnx_runtime_cannot_load_is_refused_with_its_reason_and_predicted_with_pytorch(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """ONNX Runtime failing to load the export was not an ExportCheckError: predict's auto backend stopped instead of
    falling back to PyTorch, and `export` said 'export one with `pneumoscan export`', without ORT's reason."""
    path = _plugin_model(Float64ConvNet, "float64conv", monkeypatch, tmp_path)
    capfd.readouterr()
    assert _export_code(path, tmp_path) == 2
    err = capfd.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"pneumoscan: error: {path}: ONNX Runtime cannot load the exported model (")
    assert "Could not find an implementation for Conv" in err and "pneumoscan export" not in err
    _refused_and_predicted_with_pytorch(path, tmp_path, err, r"ONNX Runtime cannot load the exported model \(.*Conv.*\)")
