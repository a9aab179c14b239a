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


def test_the_figure_is_the_one_explain_saves(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A notebook shows the very figure `pneumoscan explain` writes, title and all."""
    from pneumoscan.cli import main
    from pneumoscan.report.figures import to_png

    film = sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[0]
    out = tmp_path / "heat.png"
    assert main(["explain", str(film), "--model", str(tiny_run), "--out", str(out)]) == 0
    capsys.readouterr()
    explained = explain_file(Predictor(tiny_run), film)
    assert to_png(explained.figure()) == out.read_bytes()
    assert explained.model_name == "resnet10" and explained.threshold_ci95 == Predictor(tiny_run).threshold_ci95
    assert explained.title().startswith(f"{film.name}: {explained.prediction.label}  P(pneumonia) = ")


def test_the_title_says_borderline_empty_and_small() -> None:
    from pneumoscan.explain.explanation import Explanation
    from pneumoscan.inference.prediction import Prediction

    film = Prediction("a/b/film.png", 0.55, "PNEUMONIA", 0.5, borderline=True, size_warning="20 x 20 px")
    explained = Explanation(film, np.zeros((8, 8), np.float32), np.zeros((20, 20), np.uint8), "cnn", (0.4, 0.6))
    assert explained.empty and explained.title() == (
        "film.png: PNEUMONIA  P(pneumonia) = 0.550  (threshold 0.500; borderline: within its 95 % interval 0.400 to "
        "0.600)\nheatmap: empty: Grad-CAM found no positive evidence for PNEUMONIA, model cnn\nwarning: 20 x 20 px")
    assert "heatmap=" not in repr(explained) and "image=" not in repr(explained)  # no pages of pixels in a notebook


def test_the_title_does_not_round_a_confident_film_to_certainty() -> None:
    """The shipped model gives many films P = 0.99998, which the title showed as 'P(pneumonia) = 1.000': certainty,
    to a clinician; report's case tiles already show such a P with the decimals it needs."""
    from pneumoscan.explain.explanation import Explanation
    from pneumoscan.inference.prediction import Prediction

    film = Prediction("film.png", 0.99998, "PNEUMONIA", 0.615)
    explained = Explanation(film, np.ones((8, 8), np.float32), np.zeros((20, 20), np.uint8), "resnet10")
    assert explained.title().startswith("film.png: PNEUMONIA  P(pneumonia) = 0.99998  (threshold 0.615)\n")


def test_an_ensembles_heatmap_says_which_members_it_leaves_out(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                               mlp_ensemble: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Grad-CAM maps only an ensemble's members with a feature map: with an mlp member (most of the logit, here) the
    title read 'evidence for PNEUMONIA, model ensemble' over a map of the cnn's share alone."""
    ensemble = mlp_ensemble
    film = sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[0]
    explained = explain_file(Predictor(ensemble), film)
    assert explained.unmapped == ("mlp",)
    from pneumoscan.cli import main

    assert main(["explain", str(film), "--model", str(ensemble), "--out", str(tmp_path / "heat.png")]) == 0
    assert capsys.readouterr().out.rstrip().endswith("heat.png (not its mlp member: no feature map to draw)")
    assert explained.title().splitlines()[1].endswith("model ensemble (not its mlp member: no feature map to draw)")
    assert explain_file(Predictor(tiny_run), film).unmapped == ()


def test_gradcam_takes_a_film_in_memory_as_predict_does(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    """`Predictor.predict` took a pydicom Dataset (and bytes, a PIL image, an array) while `gradcam` took a path
    only: a notebook that had read a film with pydicom could predict it but not explain it."""
    import pydicom
    from PIL import Image

    import pneumoscan
    from tests.conftest import dicom_to_bytes, make_dicom

    predictor = Predictor(tiny_run, guard=False)
    film = sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[0]
    with Image.open(film) as im:
        grey = np.asarray(im.convert("L"))
    path = tmp_path / "film.dcm"
    path.write_bytes(dicom_to_bytes(make_dicom((4095 - grey.astype(np.uint16) * 16).astype(np.uint16),
                                               bits_stored=12, photometric="MONOCHROME1")))
    from_file = pneumoscan.gradcam(path, predictor)
    from_dataset = pneumoscan.gradcam(pydicom.dcmread(path), predictor)  # MONOCHROME1 applied, as from its file
    assert from_dataset.prediction.path == "film.dcm"
    assert from_dataset.prediction.probability == pytest.approx(from_file.prediction.probability, abs=1e-9)
    assert np.allclose(from_dataset.heatmap, from_file.heatmap, atol=1e-6)
    as_png = pneumoscan.gradcam(film, predictor)
    for given, name in ((film.read_bytes(), "<upload>"), (Image.fromarray(grey), "<PIL image>"), (grey, "<array>")):
        explained = pneumoscan.gradcam(given, predictor)
        assert explained.prediction == predictor.predict(given) and explained.prediction.path == name
        assert explained.heatmap.shape == as_png.heatmap.shape
    with pytest.raises(InputError, match=r"^gradcam: an array of float32 \(4, 4\); give the film's pixels"):
        pneumoscan.gradcam(np.zeros((4, 4), np.float32), predictor)
