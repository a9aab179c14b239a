"""--equalize: a run trained on histogram-equalised images equalises at every later prediction too."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pneumoscan.artifact import load_artifact, save_artifact
from pneumoscan.data.cache import load_image_set
from pneumoscan.data.preprocess import Preprocessing, equalize_images
from pneumoscan.errors import InputError
from pneumoscan.evaluation.evaluate import read_predictions
from pneumoscan.data.labels import Sample
from pneumoscan.export.onnx import export_artifact
from pneumoscan.inference.batch import predict_logits, predict_probs
from pneumoscan.inference.ood import OODGuard
from pneumoscan.inference.onnx_backend import OnnxBackend
from pneumoscan.inference.predictor import Predictor
from pneumoscan.training.config import TrainConfig
from pneumoscan.training.ensemble import build_ensemble
from pneumoscan.training.trainer import train


def small_run(tiny_run: Path, tiny_data: Path, out: Path, equalize: bool) -> Path:
    """A cnn at 24 px for two epochs on tiny_run's data and validation split."""
    train(TrainConfig(data=str(tiny_data), out=str(out), model="cnn", image_size=24, epochs=2, batch_size=16,
                      val_fraction=0.2, equalize=equalize, cache_dir=str(tiny_run.parent / "cache")), progress=False)
    return out


@pytest.fixture(scope="module")
def equalized_run(tiny_run: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_run(tiny_run, tiny_data, tmp_path_factory.mktemp("equalized") / "run", equalize=True)


@pytest.fixture(scope="module")
def plain_run(tiny_run: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_run(tiny_run, tiny_data, tmp_path_factory.mktemp("plain") / "run", equalize=False)


def val_images(run: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    paths, labels, probs = read_predictions(run / "val_predictions.csv", bases=[run])
    images = load_image_set([Sample(p, int(y)) for p, y in zip(paths, labels)], size, progress=False)
    return np.asarray(images.images), probs


def test_equalize_is_the_default_and_can_be_turned_off() -> None:
    from pneumoscan.parser import build_parser

    assert TrainConfig(data="d", out="o").equalize
    parser = build_parser()
    assert TrainConfig.from_args(parser.parse_args(["train", "--data", "d", "--out", "o"])).equalize
    assert not TrainConfig.from_args(parser.parse_args(["train", "--data", "d", "--out", "o", "--no-equalize"])).equalize


def test_the_artifact_records_equalize_and_its_scores_are_of_equalised_images(equalized_run: Path) -> None:
    model, meta = load_artifact(equalized_run)
    assert meta.equalize and json.loads((equalized_run / "config.json").read_text())["equalize"] is True
    assert meta.preprocessing == Preprocessing(meta.mean, meta.std, equalize=True)
    images, stored = val_images(equalized_run, meta.image_size)
    np.testing.assert_allclose(predict_probs(model, images, meta.preprocessing), stored, atol=1e-5)
    plain = dataclasses.replace(meta.preprocessing, equalize=False)
    assert np.abs(predict_probs(model, images, plain) - stored).max() > 1e-3


def test_predict_logits_is_the_model_on_the_equalised_standardised_images(equalized_run: Path) -> None:
    model, meta = load_artifact(equalized_run)
    images, _ = val_images(equalized_run, meta.image_size)
    x = (torch.from_numpy(equalize_images(images)).float().unsqueeze(1) / 255.0 - meta.mean) / meta.std
    with torch.no_grad():
        expected = model.eval()(x).reshape(-1).numpy()
    np.testing.assert_array_equal(predict_logits(model, images, meta.preprocessing), expected)


def test_the_predictor_preprocesses_as_its_artifact_says(equalized_run: Path, tmp_path: Path) -> None:
    model, meta = load_artifact(equalized_run)
    plain_path = save_artifact(tmp_path / "plain.safetensors", model, dataclasses.replace(meta, equalize=False))
    images, _ = val_images(equalized_run, meta.image_size)
    for backend in ("torch", "onnx"):
        equalised = Predictor(equalized_run, backend=backend, guard=False).predict_images(images)
        plain = Predictor(plain_path, backend=backend, guard=False).predict_images(images)
        np.testing.assert_allclose(equalised, predict_probs(model, images, meta.preprocessing), atol=1e-4)
        np.testing.assert_allclose(plain, predict_probs(model, images, Preprocessing(meta.mean, meta.std)), atol=1e-4)
        assert np.abs(equalised - plain).max() > 1e-3, backend


def test_predictor_and_onnx_export_equalise_like_training(equalized_run: Path, tmp_path: Path) -> None:
    model, meta = load_artifact(equalized_run)
    images, _ = val_images(equalized_run, meta.image_size)
    expected = predict_probs(model, images, meta.preprocessing)
    torch_predictor = Predictor(equalized_run, backend="torch", guard=False)
    np.testing.assert_allclose(torch_predictor.predict_images(images), expected, atol=1e-6)
    report = export_artifact(equalized_run, tmp_path / "model.onnx")  # checks ONNX against torch itself
    backend = OnnxBackend(report.path, threads=1)
    assert backend.preprocessing == meta.preprocessing
    np.testing.assert_allclose(backend.predict_probs(images), expected, atol=1e-4)


def test_an_ensemble_refuses_to_mix_equalised_and_plain_members(plain_run: Path, equalized_run: Path,
                                                                tmp_path: Path) -> None:
    assert not load_artifact(plain_run)[1].equalize
    with pytest.raises(InputError, match="--equalize"):
        build_ensemble([plain_run, equalized_run], tmp_path / "ens", progress=False)


def guarded_copy(run: Path, tiny_data: Path, tmp_path: Path) -> tuple[Path, OODGuard | None]:
    """A copy of the run's artifact with a guard fitted on `tiny_data`."""
    from pneumoscan.inference.ood import fit_guard, load_guard

    model_file = tmp_path / "model.safetensors"
    model_file.write_bytes((run / "model.safetensors").read_bytes())
    fit_guard(model_file, tiny_data, cache_dir=tmp_path / "cache")
    return model_file, load_guard(model_file)


def test_the_guard_sees_the_equalised_features(equalized_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    from pneumoscan.inference.ood import forward_with_features

    model_file, guard = guarded_copy(equalized_run, tiny_data, tmp_path)
    model, meta = load_artifact(model_file)
    assert guard is not None and guard.meta["equalize"] is True and guard.preprocessing == meta.preprocessing
    images, _ = val_images(equalized_run, meta.image_size)
    _, features = forward_with_features(model, images, meta.preprocessing)
    np.testing.assert_allclose(guard.components(images, model=model)["features"],
                               guard.components(images, features=features)["features"], rtol=1e-5)
