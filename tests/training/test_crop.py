"""--crop: a run trained on body-cropped images crops at every later prediction, export and guard too."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from pneumoscan.artifact import load_artifact
from pneumoscan.data.framing import body_boxes, crop_to_body
from pneumoscan.data.preprocess import Preprocessing, prepare_pixels
from pneumoscan.errors import InputError
from pneumoscan.export.onnx import export_artifact
from pneumoscan.inference.batch import predict_probs
from pneumoscan.inference.onnx_backend import OnnxBackend
from pneumoscan.inference.predictor import Predictor
from pneumoscan.training.config import TrainConfig
from pneumoscan.training.ensemble import build_ensemble
from tests.training.test_equalize import guarded_copy, small_run, val_images


@pytest.fixture(scope="module")
def cropped_run(tiny_run: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cropped") / "run"
    from pneumoscan.training.trainer import train

    train(TrainConfig(data=str(tiny_data), out=str(out), model="cnn", image_size=24, epochs=2, batch_size=16,
                      val_fraction=0.2, crop=True, cache_dir=str(tiny_run.parent / "cache")), progress=False)
    return out


def framed(images: np.ndarray) -> np.ndarray:
    """The images with a black band on both sides, so the crop has something to remove."""
    out = images.copy()
    out[:, :, : images.shape[2] // 5] = 0
    out[:, :, -images.shape[2] // 5 :] = 0
    return out


def test_crop_is_off_by_default_and_on_with_the_flag() -> None:
    from pneumoscan.parser import build_parser

    parser = build_parser()
    assert not TrainConfig.from_args(parser.parse_args(["train", "--data", "d", "--out", "o"])).crop
    assert TrainConfig.from_args(parser.parse_args(["train", "--data", "d", "--out", "o", "--crop"])).crop


def test_prepare_pixels_crops_before_it_equalises() -> None:
    images = framed(np.random.default_rng(0).integers(40, 200, (2, 32, 32), dtype=np.uint8))
    from pneumoscan.data.preprocess import equalize_images

    np.testing.assert_array_equal(prepare_pixels(images, equalize=True, crop=True),
                                  equalize_images(crop_to_body(images)))
    np.testing.assert_array_equal(prepare_pixels(images[:, None], equalize=False, crop=True)[:, 0], crop_to_body(images))


def test_the_artifact_records_crop_and_its_scores_are_of_cropped_images(cropped_run: Path) -> None:
    model, meta = load_artifact(cropped_run)
    assert meta.crop and json.loads((cropped_run / "config.json").read_text())["crop"] is True
    assert meta.preprocessing == Preprocessing(meta.mean, meta.std, equalize=True, crop=True)
    images, stored = val_images(cropped_run, meta.image_size)
    np.testing.assert_allclose(predict_probs(model, images, meta.preprocessing), stored, atol=1e-5)


def test_predictor_and_onnx_export_crop_like_training(cropped_run: Path, tmp_path: Path) -> None:
    model, meta = load_artifact(cropped_run)
    images = framed(val_images(cropped_run, meta.image_size)[0])
    expected = predict_probs(model, images, meta.preprocessing)
    uncropped = predict_probs(model, images, dataclasses.replace(meta.preprocessing, crop=False))
    assert np.abs(expected - uncropped).max() > 1e-4
    np.testing.assert_allclose(Predictor(cropped_run, backend="torch", guard=False).predict_images(images), expected,
                               atol=1e-6)
    report = export_artifact(cropped_run, tmp_path / "model.onnx")
    backend = OnnxBackend(report.path, threads=1)
    assert backend.preprocessing == meta.preprocessing
    np.testing.assert_allclose(backend.predict_probs(images), expected, atol=1e-4)


def test_an_ensemble_refuses_to_mix_cropped_and_uncropped_members(tiny_run: Path, tiny_data: Path,
                                                                  cropped_run: Path, tmp_path: Path) -> None:
    plain = small_run(tiny_run, tiny_data, tmp_path / "plain", equalize=True)
    with pytest.raises(InputError, match="--crop"):
        build_ensemble([plain, cropped_run], tmp_path / "ens", progress=False)


def test_the_guard_records_the_crop(cropped_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    model_file, guard = guarded_copy(cropped_run, tiny_data, tmp_path)
    assert guard is not None and guard.meta["crop"] is True and guard.preprocessing == load_artifact(model_file)[1].preprocessing


def test_gradcam_lies_where_the_crop_came_from(cropped_run: Path) -> None:
    from pneumoscan.explain.gradcam import _uncropped, gradcam_for_image

    model, meta = load_artifact(cropped_run)
    image = framed(val_images(cropped_run, meta.image_size)[0][:1])[0]
    cam = gradcam_for_image(model, meta, image)
    left, top, right, bottom = body_boxes(image[None])[0]
    centres = np.arange(image.shape[1]) + 0.5
    assert cam.shape == image.shape and cam.max() > 0
    assert np.all(cam[:, (centres < left - 1) | (centres > right + 1)] == 0) and left > 1
    # a left-to-right ramp over the crop comes back as the same ramp over the box, to the sub-pixel
    ramp = _uncropped(np.tile(np.linspace(0, 1, 8, dtype=np.float32), (8, 1)), image)
    inside = (centres > left + 1) & (centres < right - 1)
    expected = np.clip(((centres - left) / (right - left) * 8 - 0.5) / 7, 0, 1)
    np.testing.assert_allclose(ramp[image.shape[0] // 2, inside], expected[inside], atol=1e-4)


def test_training_standardises_with_the_statistics_of_the_cropped_images(cropped_run: Path) -> None:
    from pneumoscan.training.run_data import prepare_data
    from pneumoscan.training.recipe import image_stats

    _, meta = load_artifact(cropped_run)
    cfg = TrainConfig.from_saved(json.loads((cropped_run / "config.json").read_text()))
    train_images = prepare_data(cfg, meta.image_size, progress=False).train.images
    cropped = image_stats(prepare_pixels(train_images, equalize=True, crop=True))
    assert (meta.mean, meta.std) == pytest.approx(cropped, abs=1e-6)
    assert abs(image_stats(prepare_pixels(train_images, equalize=True, crop=False))[0] - cropped[0]) > 1e-4


def test_an_empty_batch_stays_empty() -> None:
    assert crop_to_body(np.zeros((0, 16, 16), dtype=np.uint8)).shape == (0, 16, 16)
