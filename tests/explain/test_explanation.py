from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pneumoscan.errors import InputError, RefusedFilm
from pneumoscan.explain.explanation import explain_file
from pneumoscan.inference.predictor import Predictor
from tests.conftest import colour_photo, write_xray


def test_explain_file_gives_the_prediction_and_the_heatmap_of_its_label(tiny_run: Path, tmp_path: Path) -> None:
    image = write_xray(tmp_path / "film.png", 1, 7, size=60)
    predictor = Predictor(tiny_run)
    explained = explain_file(predictor, image)
    (expected,) = predictor.predict_files([image])
    assert explained.prediction == expected and explained.prediction.label in ("NORMAL", "PNEUMONIA")
    assert explained.heatmap.shape == (32, 32) and explained.heatmap.dtype == np.float32
    assert 0.0 <= explained.heatmap.min() and explained.heatmap.max() <= 1.0
    assert explained.image.shape == (60, 60) and explained.overlay().shape == (60, 60, 3)


def test_explain_file_draws_nothing_for_a_film_the_guard_refuses(fitted: Path, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(colour_photo())
    with pytest.raises(RefusedFilm, match=r"photo.png: .*; no prediction or heatmap made") as refused:
        explain_file(Predictor(fitted), photo)
    assert isinstance(refused.value, InputError)  # what the Python API documents for gradcam
