"""Predictor safety: a damaged model must not call every film NORMAL."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pneumoscan.errors import InputError
from pneumoscan.inference.predictor import Predictor
from tests.conftest import shipped_copy


@pytest.mark.parametrize("guard", [False, True])
def test_nan_probabilities_are_an_error_not_a_normal_label(guard: bool) -> None:
    predictor = Predictor(None, backend="torch", guard=guard)
    with torch.no_grad():
        for weight in predictor.model.parameters():
            weight.fill_(float("nan"))
    images = np.random.default_rng(0).integers(0, 256, (2, predictor.size, predictor.size), dtype=np.uint8)
    with pytest.raises(InputError, match="NaN.*damaged"):
        predictor.results(["a.png", "b.png"], images)


def test_auto_backend_falls_back_to_torch_when_the_onnx_export_fails_its_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """--backend auto means 'ONNX when it can': an export that disagrees with PyTorch is warned about and the
    torch model predicts; --backend onnx asked for ONNX, so the failure stops it."""
    import pneumoscan.inference.onnx_backend as onnx_backend
    from pneumoscan.export.onnx import ExportCheckError

    def failing(*args: object, **kwargs: object) -> None:
        raise ExportCheckError("ONNX and PyTorch differ by 0.3")

    monkeypatch.setattr(onnx_backend, "export_in_memory", failing)
    monkeypatch.setattr(onnx_backend, "export_on_file", lambda *args, **kwargs: None)  # as without weights/default.onnx
    monkeypatch.setattr(onnx_backend, "resolve_backend", lambda backend: "onnx" if backend == "auto" else backend)
    with pytest.warns(UserWarning, match="failed the check against PyTorch .*differ by 0.3.*PyTorch instead"):
        predictor = Predictor(None, backend="auto", guard=False)
    assert predictor.backend == "torch" and predictor.onnx is None
    with pytest.raises(ExportCheckError):
        Predictor(None, backend="onnx", guard=False)


def test_the_torch_model_loaded_later_must_be_the_file_the_predictor_read(tiny_run: Path, tmp_path: Path) -> None:
    """A `train` into the model's folder after the Predictor was made: its lazy torch model (Grad-CAM's) would be
    other weights than the export, threshold and guard it was checked with."""
    model = shipped_copy(tmp_path)
    original = model.read_bytes()
    predictor = Predictor(model, backend="onnx")
    assert not predictor.model_loaded
    model.write_bytes((tiny_run / "model.safetensors").read_bytes())
    with pytest.raises(InputError, match=f"{model.name}: changed since the service or Predictor loaded it .*sha256 "
                                         f"{predictor.sha256[:12]}.*make a new Predictor"):
        _ = predictor.model
    assert not predictor.model_loaded
    model.write_bytes(original)  # the very file again
    assert predictor.model is not None and predictor.model_loaded


def test_predict_chunks_reads_one_chunk_at_a_time_in_input_order(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory bounded by a chunk: the second chunk is not read before the first is handed back; the chunks
    together are the one list of `predict_files`."""
    import pneumoscan.inference.predictor as predictor_module
    from pneumoscan.inference.inputs import input_files

    films = sorted((tiny_data / "train" / "PNEUMONIA").iterdir())[:4]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    paths = [films[0], broken, *films[1:]]
    read: list[str] = []
    real_load = predictor_module.load_image_levels_rgb_and_gray

    def load(data: bytes, size: int, name: str = "") -> object:
        read.append(name)
        return real_load(data, size, name=name)

    monkeypatch.setattr(predictor_module, "load_image_levels_rgb_and_gray", load)
    predictor = Predictor(tiny_run, backend="torch")
    chunks = predictor.predict_chunks(input_files(paths), chunk_size=2)
    first = next(chunks)
    assert sorted(read) == sorted(map(str, paths[:2])) and [p.path for p in first] == list(map(str, paths[:2]))
    rest = list(chunks)
    assert [len(c) for c in rest] == [2, 1]
    whole = predictor.predict_files(paths)
    chunked = first + [p for chunk in rest for p in chunk]
    assert [(p.path, p.error is None, p.label) for p in chunked] == [(p.path, p.error is None, p.label) for p in whole]
    assert [p.probability for p in chunked] == pytest.approx([p.probability for p in whole], abs=1e-6)


def test_the_model_is_loaded_onto_the_device_device_for_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA when present: predict, evaluate, explain, report, set-threshold and the service load their model
    through the Predictor. No GPU here: the meta device stands in for one (loading needs no values)."""
    import pneumoscan.inference.batch as batch

    monkeypatch.setattr(batch, "device_for", lambda preferred=None: torch.device("meta"))
    model = Predictor(None, backend="torch").model
    assert {t.device.type for t in [*model.parameters(), *model.buffers()]} == {"meta"}


def test_predict_takes_one_film_as_a_path_bytes_an_array_or_a_pil_image(tiny_run: Path, tiny_data: Path) -> None:
    """A notebook's one call for one film gives the very numbers predict_files gives for its file."""
    from PIL import Image

    predictor = Predictor(tiny_run)
    film = sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[0]
    (expected,) = predictor.predict_files([film])
    assert expected.probability is not None
    assert predictor.predict(film) == expected
    assert predictor.predict(str(film)) == expected
    with Image.open(film) as im:
        pixels = np.asarray(im)
        picture = im.copy()
    # (H, W, 1), as Keras' img_to_array and a grey image with its channel axis kept give it, is the grey film
    for given, name in ((film.read_bytes(), "<upload>"), (pixels, "<array>"), (picture, "<PIL image>"),
                        (np.stack([pixels] * 3, axis=-1), "<array>"), (pixels[:, :, None], "<array>")):
        got = predictor.predict(given)
        assert got.path == name and got.probability == pytest.approx(expected.probability, abs=1e-6), name
        assert got.label == expected.label
    # 16-bit pixels are scaled min to max, as a 16-bit PNG file's are
    assert predictor.predict(pixels.astype(np.uint16) * 200).probability is not None
    assert predictor.predict(pixels.astype(np.uint16)[:, :, None] * 257).probability == pytest.approx(
        expected.probability, abs=1e-6)  # every value a multiple of 257: the 8-bit film widened


def test_a_predictor_without_a_guard_warns_once_when_it_first_scores_a_film(tiny_run: Path, tiny_data: Path,
                                                                             fitted: Path) -> None:
    """A notebook scored a photo with a run's model (no guard) without a word; `serve` warned. Loading it says
    nothing (evaluate, report and set-threshold make Predictors too), the first film scored does, once."""
    import warnings

    import pneumoscan

    film = sorted((tiny_data / "test" / "NORMAL").iterdir())[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predictor = Predictor(tiny_run)
        Predictor(tiny_run, guard=False).predict(film)  # asked to score without a guard: nothing to say
        Predictor(fitted).predict(film)
    with pytest.warns(UserWarning) as record:
        predictor.predict(film)
        predictor.predict(film.read_bytes())
        predictor.predict_files([film])
        predictor.predict(np.zeros((40, 40), np.uint8))
    (said,) = [str(w.message) for w in record]
    assert said == (f"{tiny_run / 'model.safetensors'}: this model has no chest X-ray guard, so every film gets a "
                    f"probability, a photo or an upside-down film too, instead of being refused; fit one with "
                    f"`pneumoscan fit-guard --model {tiny_run} --data {tiny_data}`")
    assert record[0].filename == __file__  # the notebook's cell, not pneumoscan's line
    for first in (lambda p: p.predict_bytes(film.read_bytes()), lambda p: list(p.predict_chunks([(film, None)])),
                  lambda p: pneumoscan.gradcam(film, p)):
        with pytest.warns(UserWarning, match="^" + re.escape(said) + "$"):
            first(Predictor(tiny_run))


def test_predict_takes_a_pydicom_dataset_as_its_file(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    """A notebook that has read a film with pydicom gets the film's prediction, its header (MONOCHROME1 here)
    applied as from the file: it was refused as 'not FileDataset', and its pixel_array is the negative."""
    import pydicom
    from PIL import Image

    from tests.conftest import dicom_to_bytes, make_dicom

    predictor = Predictor(tiny_run, guard=False)
    film = sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[0]
    with Image.open(film) as im:
        grey = np.asarray(im.convert("L"), dtype=np.uint16)
    path = tmp_path / "film.dcm"
    path.write_bytes(dicom_to_bytes(make_dicom((4095 - grey * 16).astype(np.uint16), bits_stored=12,
                                               photometric="MONOCHROME1")))
    expected = predictor.predict(path)
    got = predictor.predict(pydicom.dcmread(path))
    assert got.path == "film.dcm" and got.probability == pytest.approx(expected.probability, abs=1e-9)

    class Image2D(pydicom.dataset.FileDataset):  # a subclass from another package (highdicom's) was refused
        pass

    subclassed = pydicom.dcmread(path)
    subclassed.__class__ = Image2D
    assert predictor.predict(subclassed).probability == pytest.approx(expected.probability, abs=1e-9)


@pytest.mark.parametrize("given, message", [
    # a float array says how to make pixels of it, by its range: only that says what 1.0 is
    (np.zeros((40, 40), np.float32) + 0.5, r"^predict: an array of float32 \(40, 40\); give the film's pixels as uint8"
     r".*; for floats in \[0, 1\], pass \(image \* 255\)\.round\(\)\.astype\(np\.uint8\)$"),
    (np.zeros((40, 40, 1), np.float64) + 90, r"^predict: an array of float64 \(40, 40, 1\); .*; for floats of pixel "
     r"values 0-255, pass image\.round\(\)\.astype\(np\.uint8\)$"),
    # 12-bit values (a DICOM's pixel_array as floats) clipped to 0-255 would be a white film
    (np.linspace(0, 4095, 1600).reshape(40, 40).astype(np.float32), r"^predict: an array of float32 \(40, 40\); .*; "
     r"for floats of 12- or 16-bit pixel values, pass image\.round\(\)\.astype\(np\.uint16\)$"),
    (np.linspace(-1000, 3000, 1600).reshape(40, 40), r"^predict: an array of float64 \(40, 40\); .*; these floats "
     r"are not pixel values \(below 0 or above 65535, e\.g\. Hounsfield units\): pass the DICOM file or its pydicom "
     r"Dataset, which pneumoscan reads itself$"),
    (np.zeros((40, 40, 2), np.uint8),
     r"^predict: an array of uint8 \(40, 40, 2\); give the film's pixels as uint8 \(0-255\) or uint16, shape \(H, W\) "
     r"or \(H, W, 1\), or uint8 \(H, W, 3\) or \(H, W, 4\), as .* gives them$"),
    ([[1, 2], [3, 4]],
     r"^predict: image takes a path \(a str or os.PathLike\), a file's bytes, a PIL image, a numpy array or a pydicom "
     r"Dataset, not list \[\[1, 2\], \[3, 4\]\]$"),
    ("{tmp}/none.png", r"none.png: file not found; check the path"),
    ("{tmp}", r": a folder; predict takes one film, predict_files\(\[folder\]\) predicts every film in it$"),
])
def test_predict_names_what_it_takes_for_anything_else(tiny_run: Path, tmp_path: Path, given: object,
                                                       message: str) -> None:
    if isinstance(given, str):
        given = given.format(tmp=tmp_path)
    with pytest.raises(InputError, match=message):
        Predictor(tiny_run).predict(given)


def test_predict_files_refuses_one_path_instead_of_reading_its_letters(tiny_run: Path, tiny_data: Path) -> None:
    film = str(sorted((tiny_data / "test" / "NORMAL").iterdir())[0])
    with pytest.raises(InputError, match=r"^predict_files takes a list of paths, not one path; predict_files\(\["):
        Predictor(tiny_run).predict_files(film)


def test_predict_images_says_which_arrays_it_takes(tiny_run: Path) -> None:
    predictor = Predictor(tiny_run, backend="torch")
    good = np.full((2, predictor.size, predictor.size), 90, np.uint8)
    assert predictor.predict_images(good).shape == (2,)
    for bad in (good[0], good.astype(np.float32) / 255, np.zeros((1, 224, 224), np.uint8)):
        with pytest.raises(InputError, match=rf"^predict_images takes uint8 images \(N, 32, 32\) as load_image\(path, "
                                             rf"32\) gives them, stacked; got .*; for one film of any size, use "
                                             rf"predict\(image\)$"):
            predictor.predict_images(bad)


@pytest.mark.parametrize("reader", ["predict_files", "predict_bytes", "service", "explain"])
def test_a_colour_dicom_is_decoded_once_for_the_prediction_and_the_guards_colour_cue(
        reader: str, fitted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard's colourfulness of a colour DICOM decoded its pixels a second time; it is measured on the pixels
    of the one decode, so the guard refuses it as before (a colour image, not an X-ray)."""
    from pneumoscan.data.file_cues import COLOUR_REFERENCE, colourfulness
    from tests.data.test_cache import colour_dicom_file, count_dicom_decodes

    path = tmp_path / "colour.dcm"
    data = colour_dicom_file(path)
    assert colourfulness(data) > COLOUR_REFERENCE
    predictor = Predictor(fitted, backend="torch")
    decodes = count_dicom_decodes(monkeypatch)
    if reader == "predict_files":
        (result,) = predictor.predict_files([path])
    elif reader == "predict_bytes":
        result = predictor.predict_bytes(data, name=str(path))
    elif reader == "service":
        from pneumoscan.service.engine import Engine
        from pneumoscan.service.settings import Settings

        engine = Engine(Settings(model=str(fitted), backend="torch"))
        decodes.clear()  # the engine's own start decodes nothing of this file, but count from here
        (result,) = engine.results([engine.decode(data, str(path))])
    else:
        from pneumoscan.errors import RefusedFilm
        from pneumoscan.explain.explanation import explain_file

        with pytest.raises(RefusedFilm, match="colour"):
            explain_file(predictor, path)
        assert len(decodes) == 1
        return
    assert len(decodes) == 1
    assert result.in_distribution is False and "colour" in str(result.ood_reason)


@pytest.mark.parametrize("guard", [True, False])
def test_results_measures_on_the_raw_bytes_what_decode_measures(fitted: Path, guard: bool) -> None:
    """`results` given a file's bytes and no cues measures them as `decode` does for `predict_bytes`: its colour,
    grey levels and two-tone share (each a refusal of the guard here) and its size warning (a thumbnail)."""
    from PIL import Image

    from tests.conftest import colour_photo, dithered, dithered_jpeg, encode, xray_pixels

    predictor = Predictor(fitted, backend="torch", guard=guard)
    files = [colour_photo(), dithered(side=256), dithered_jpeg(quality=95), encode(Image.fromarray(xray_pixels(1, 0, 20)))]
    got = [predictor.results(["f"], predictor.decode(data, "f").image[None], [data])[0] for data in files]
    assert got == [predictor.predict_bytes(data, "f") for data in files]
    assert got[3].size_warning is not None
    reasons = [str(p.ood_reason) for p in got[:3]]
    if guard:
        assert "colour" in reasons[0] and "grey level" in reasons[1] and "near black or white" in reasons[2]
    else:
        assert reasons == ["None"] * 3


def test_results_without_a_guard_reads_only_the_size_warning_of_the_raw_bytes(fitted: Path) -> None:
    """No guard: the raw bytes give only the size warning, read from the header, so bytes that do not decode
    are no error there (the image given is scored)."""
    predictor = Predictor(fitted, backend="torch", guard=False)
    image = np.full((1, predictor.size, predictor.size), 128, np.uint8)
    (result,) = predictor.results(["f"], image, [b"not an image"])
    assert result.probability is not None and result.size_warning is None


@pytest.mark.parametrize("given", ["levels", "no cue"])
def test_results_decodes_the_raw_bytes_only_for_their_grey_levels(fitted: Path, given: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`results` given the grey levels (as the service gives them) decoded each file in full again for the other
    cues, which need its header (a DICOM's colour, the size warning) or their own read (a JPEG's two tones)."""
    from PIL import Image

    import pneumoscan.data.decode as decode_module
    from tests.conftest import dicom_bytes, encode, xray_pixels
    from tests.data.test_cache import count_dicom_decodes

    predictor = Predictor(fitted, backend="torch")
    files = [dicom_bytes(xray_pixels(1, 0, 64).astype(np.uint16) * 16),
             encode(Image.fromarray(xray_pixels(0, 1, 64)), "JPEG", quality=90)]
    expected = [predictor.predict_bytes(data, "f") for data in files]
    decoded = [predictor.decode(data, "f") for data in files]
    dicoms, pil = count_dicom_decodes(monkeypatch), []
    real = decode_module._read_pil
    monkeypatch.setattr(decode_module, "_read_pil", lambda *args: pil.append(1) or real(*args))
    cues = {"levels": [f.levels for f in decoded]} if given == "levels" else {}
    got = predictor.results(["f", "f"], np.stack([f.image for f in decoded]), files, **cues)
    assert got == expected
    assert (len(dicoms), len(pil)) == ((0, 0) if given == "levels" else (1, 1))


def test_an_in_memory_image_is_screened_as_the_png_file_of_its_pixels(tmp_path: Path) -> None:
    """Every way in gives one verdict: a PIL image or an array is screened as the PNG file of its pixels, by path
    or bytes. The JPEG rules measured 8-bit in-memory pixels but not PNG files, so a dithered JPEG's pixels were
    refused as an array or PIL image and scored as a PNG file. The JPEG file itself is still refused."""
    import io

    from PIL import Image

    from tests.conftest import dithered_jpeg, encode, four_tone_jpeg

    predictor = Predictor(None, backend="onnx")
    for data, cause in ((four_tone_jpeg(), "dithered"), (dithered_jpeg(quality=95), "two_tone")):
        assert predictor.predict_bytes(data).refused_by == cause
        with Image.open(io.BytesIO(data)) as im:
            pixels = im.convert("L")
        png = encode(pixels, "PNG")
        (tmp_path / "film.png").write_bytes(png)
        verdicts = {(p.refused_by, p.probability) for p in (
            predictor.predict(tmp_path / "film.png"), predictor.predict(png), predictor.predict(pixels),
            predictor.predict(np.asarray(pixels)))}
        assert len(verdicts) == 1, verdicts


def test_a_dithered_film_as_an_8_bit_lossless_file_or_array_is_refused_as_its_jpeg_is(tmp_path: Path) -> None:
    """The dithered rule measures 8-bit PNG, TIFF and BMP files too, so a 4-tone dithered JPEG's pixels as such a
    file, a PIL image or an array are refused as dithered, and so is a resized copy of a 1-bit dithered film, whose
    grey levels the grey-level rule no longer counts; the film itself as 8-bit PNG, made smaller or larger, passes,
    and a PNG page of text (mostly near white, grainy at its strokes) is not measured."""
    import io

    from PIL import Image

    from tests.conftest import UPRIGHT_FILM, encode, four_tone_jpeg, text_document

    predictor = Predictor(None, backend="onnx")
    with Image.open(io.BytesIO(four_tone_jpeg())) as im:
        pixels = im.convert("L")
    (tmp_path / "film.png").write_bytes(encode(pixels, "PNG"))
    for payload in (tmp_path / "film.png", encode(pixels, "TIFF"), encode(pixels.convert("RGB"), "BMP"), pixels,
                    np.asarray(pixels)):
        assert predictor.predict(payload).refused_by == "dithered", type(payload)
    with Image.open(UPRIGHT_FILM) as im:
        film = im.convert("L")
    resized = film.convert("1").convert("L").resize((448, 448), Image.Resampling.BICUBIC)  # 1 bit, then 200+ levels
    assert predictor.predict(encode(resized, "PNG")).refused_by == "dithered"
    for side, resample in ((128, Image.Resampling.LANCZOS), (224, None), (448, Image.Resampling.BICUBIC)):
        copy = film if resample is None else film.resize((side, side), resample)
        assert predictor.predict(encode(copy, "PNG")).in_distribution is True, side
    assert predictor.predict(text_document()).refused_by == "image"


@pytest.mark.parametrize(("data", "resolved", "shown"), [
    (".", "/srv/site/films", "films"),  # set-threshold --data . gave "data": ""
    ("..", "/srv/site", "site"),
    ("/srv/site/films", "/srv/site/films", "films"),
    ("site/films", None, "films"),  # a copy made before data_resolved was recorded
    ("films", r"C:\Users\alice\Hospital X\films", "films"),  # made on Windows, served on Linux: was the whole path
    (r"\\srv\share\films", None, "films"),
])
def test_served_source_names_the_data_folder_by_its_name(data: str, resolved: str | None, shown: str) -> None:
    from pneumoscan.service.engine import served_source

    source = {"data": data, "model": "/srv/runs/a/model.safetensors", "metrics": {"recall": 1.0}, "n_normal": 8,
              **({"data_resolved": resolved} if resolved else {})}
    assert served_source(source) == {"data": shown, "model": "model.safetensors", "n_normal": 8}
