"""Predictor's arguments: a user's mistake is one InputError naming the argument as Python takes it (as the api
functions do), never a traceback from deep inside nor a value silently taken."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import pneumoscan
from pneumoscan.errors import InputError
from pneumoscan.inference.predictor import Predictor

PATH = "a run folder or a model.safetensors (a str or os.PathLike), or None for the shipped model"

# Predictor(...) with one argument of a kind it does not take, and the start of the message
WRONG_KINDS: dict[str, tuple[dict[str, Any], str]] = {
    "model int": ({"model": 3}, f"Predictor: model takes {PATH}, not int 3"),
    "model bytes": ({"model": b"run"}, f"Predictor: model takes {PATH}, not bytes b'run'"),
    "backend None": ({"backend": None}, "Predictor: backend takes a str, not NoneType None"),
    "threshold bool": ({"threshold": True}, "Predictor: threshold takes a number or None, not bool True"),
    "threshold str": ({"threshold": "0.5"}, "Predictor: threshold takes a number or None, not str '0.5'"),
    "target_recall bool": ({"target_recall": True}, "Predictor: target_recall takes a number or None, not bool True"),
    "target_recall str": ({"target_recall": "0.9"}, "Predictor: target_recall takes a number or None, not str '0.9'"),
    "prevalence str": ({"prevalence": "0.1"}, "Predictor: prevalence takes a number or None, not str '0.1'"),
    "prevalence bool": ({"prevalence": False}, "Predictor: prevalence takes a number or None, not bool False"),
    "batch_size str": ({"batch_size": "8"}, "Predictor: batch_size takes an int, not str '8'"),
    "batch_size bool": ({"batch_size": True}, "Predictor: batch_size takes an int, not bool True"),
    "batch_size float": ({"batch_size": 8.0}, "Predictor: batch_size takes an int, not float 8.0"),
    "onnx_path int": ({"onnx_path": 3}, "Predictor: onnx_path takes a path (a str or os.PathLike) or None, not int 3"),
    "guard str": ({"guard": "no"}, "Predictor: guard takes a bool, not str 'no'"),
    "guard None": ({"guard": None}, "Predictor: guard takes a bool, not NoneType None"),
    # a type not built in is named with its module, so numpy's bool is not 'bool' refused as not a bool
    "threshold numpy bool": ({"threshold": np.True_}, "Predictor: threshold takes a number or None, not numpy.bool "
                                                      "np.True_"),
}


@pytest.mark.parametrize("case", list(WRONG_KINDS))
def test_an_argument_of_the_wrong_kind_is_refused_when_the_predictor_is_made(case: str) -> None:
    """Each ended in a TypeError from deep inside (model, threshold, target_recall, prevalence, onnx_path) or was
    taken: threshold=True as 1.0, target_recall=True as 1.0, guard='no' as a guard, guard=None as none."""
    given, message = WRONG_KINDS[case]
    with pytest.raises(pneumoscan.InputError) as err:
        Predictor(**given)
    assert isinstance(err.value, TypeError)  # as the api functions' ArgumentTypeError
    assert str(err.value) == message
    assert err.traceback[-1].path == Path(pneumoscan.api.__file__)  # at the call: the model was not loaded


@pytest.mark.parametrize("given, message", [
    ({"backend": "cuda"}, "backend='cuda': choose one of torch, onnx, auto"),
    ({"batch_size": 0}, "batch_size=0: must be at least 1"),
    ({"threshold": float("nan")}, "threshold=nan: must be between 0 and 1"),
    ({"target_recall": 0}, "target_recall=0: must be above 0 and at most 1, e.g. 0.95"),
    ({"prevalence": 1.0}, "prevalence=1.0: must be strictly between 0 and 1"),
])
def test_a_value_out_of_range_is_named_as_python_takes_it_before_the_model_is_read(tmp_path: Path,
                                                                                   given: dict[str, Any],
                                                                                   message: str) -> None:
    """The model given does not exist: the operating point and batch size are checked first, so the mistake in
    them is not hidden behind a second try (backend 'cuda' was named as "backend 'cuda'", in neither language)."""
    with pytest.raises(InputError, match="^" + message.replace("(", r"\(") + "$"):
        Predictor(tmp_path / "none" if "backend" not in given else None, **given)


@pytest.mark.parametrize("guard", [np.False_, np.True_])
def test_a_numpy_bool_is_taken_as_a_bool(guard: np.bool_) -> None:
    """guard=np.False_, as from an array of settings, was refused: 'guard takes a bool, not bool np.False_'."""
    assert (Predictor(None, guard=guard).guard is not None) is bool(guard)  # type: ignore[arg-type]


def test_a_numpy_batch_size_is_taken_as_an_int() -> None:
    """np.int64(8), as from an array of settings, was refused as not 'a whole number of images'."""
    predictor = Predictor(None, batch_size=np.int64(8))  # type: ignore[arg-type]
    assert predictor.batch_size == 8 and type(predictor.batch_size) is int


@pytest.fixture(scope="module")
def shipped() -> Predictor:
    return Predictor(None)


def _film(name: str = "IM-0240-0001.jpeg") -> Path:
    return Path(pneumoscan.__file__).parents[2] / "sample" / "chest_xray" / "train" / "NORMAL" / name


FILM = "a path (a str or os.PathLike), a file's bytes, a PIL image, a numpy array or a pydicom Dataset"

# a method of a Predictor called with an argument of a kind it does not take, and the message
WRONG_METHOD_KINDS: dict[str, tuple[Callable[[Predictor], Any], str]] = {
    "predict_files item": (lambda p: p.predict_files([_film(), 3]),
                           "predict_files: paths takes a list of paths (str or os.PathLike), not list [PosixPath("),
    "predict_files int": (lambda p: p.predict_files(3),
                          "predict_files: paths takes a list of paths (str or os.PathLike), not int 3"),
    "predict_files workers": (lambda p: p.predict_files([_film()], workers="2"),
                              "predict_files: workers takes an int or None, not str '2'"),
    "predict_chunks chunk_size": (lambda p: p.predict_chunks([], chunk_size=2.5),
                                  "predict_chunks: chunk_size takes an int or None, not float 2.5"),
    "predict_bytes path": (lambda p: p.predict_bytes(str(_film())),
                           "predict_bytes: data takes a file's bytes (bytes, as Path.read_bytes() gives them; "
                           "predict(path) takes a path), not str '/"),
    "predict_bytes name": (lambda p: p.predict_bytes(_film().read_bytes(), name=Path("a.jpeg")),
                           "predict_bytes: name takes a str, not pathlib.PosixPath PosixPath('a.jpeg')"),
    "predict list": (lambda p: p.predict([1, 2]), f"predict: image takes {FILM}, not list [1, 2]"),
    "gradcam list": (lambda p: pneumoscan.gradcam([1, 2], p), f"gradcam: image takes {FILM}, not list [1, 2]"),
    "borderline str": (lambda p: p.borderline("0.5"), "borderline: prob takes a number, not str '0.5'"),
    "borderline None": (lambda p: p.borderline(None), "borderline: prob takes a number, not NoneType None"),
}


@pytest.mark.parametrize("case", list(WRONG_METHOD_KINDS))
def test_a_method_names_an_argument_of_the_wrong_kind(shipped: Predictor, case: str) -> None:
    """predict_bytes(path) read the file at that path, named '<upload>' (or said '<upload>: file not found');
    name=Path(...) gave a Prediction whose path is no str; the others ended in a TypeError from inside."""
    call, message = WRONG_METHOD_KINDS[case]
    with pytest.raises(InputError) as err:
        call(shipped)
    assert isinstance(err.value, TypeError)
    assert str(err.value).startswith(message), str(err.value)
    assert err.traceback[-1].path == Path(pneumoscan.api.__file__)


class Array(np.ndarray):
    """A numpy array subclass, as imageio.v2.imread returns (imageio.core.util.Array)."""


def test_an_array_of_a_numpy_subclass_is_taken_by_predict_and_gradcam(shipped: Predictor) -> None:
    """gradcam refused imageio's Array ('not a numpy array') by the name of its type's module; predict took it."""
    with Image.open(_film()) as im:
        pixels = np.asarray(im.convert("L")).view(Array)
    expected = shipped.predict(np.asarray(pixels))
    assert shipped.predict(pixels).probability == expected.probability
    assert pneumoscan.gradcam(pixels, shipped).prediction.probability == pytest.approx(expected.probability, abs=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda: np.zeros((0, 0), np.uint8), "an empty array of shape (0, 0), no pixels to read; give the film's pixels, "
                                         "as np.asarray(ImageOps.exif_transpose(Image.open(path))) gives "
                                         "them"),
    (lambda: np.zeros((5, 0, 3), np.uint8), "an empty array of shape (5, 0, 3), no pixels to read; "),
    (lambda: Image.new("L", (0, 4)),
     "an empty PIL image (0 x 4 px), no pixels to read; give the film itself"),
])
def test_an_empty_array_or_image_is_refused_as_empty(shipped: Predictor, make: Callable[[], Any],
                                                     message: str) -> None:
    """np.zeros((0, 0), np.uint8) was refused as 'a PIL image of mode L; convert it first', which it is not."""
    for function, call in (("predict", shipped.predict), ("gradcam", lambda film: pneumoscan.gradcam(film, shipped))):
        with pytest.raises(InputError) as err:
            call(make())
        assert str(err.value).startswith(f"{function}: {message}"), str(err.value)


COUNTS_BELOW_ONE: dict[str, tuple[Callable[[Predictor], Any], str]] = {
    "predict_files workers 0": (lambda p: p.predict_files([_film()], workers=0), "workers=0: must be at least 1"),
    "predict_files workers -1": (lambda p: p.predict_files([_film()], workers=-1), "workers=-1: must be at least 1"),
    "predict_chunks workers 0": (lambda p: p.predict_chunks([(_film(), None)], workers=0),
                                 "workers=0: must be at least 1"),
    "predict_chunks chunk_size 0": (lambda p: p.predict_chunks([(_film(), None)], chunk_size=0),
                                    "chunk_size=0: must be at least 1"),
}


@pytest.mark.parametrize("case", list(COUNTS_BELOW_ONE))
def test_a_count_of_threads_or_files_below_one_is_refused(shipped: Predictor, case: str) -> None:
    """workers=0 (and chunk_size=0) was taken as the default, workers=-1 ended in ThreadPoolExecutor's ValueError;
    predict_chunks says so when called, not when its first chunk is asked for."""
    call, message = COUNTS_BELOW_ONE[case]
    with pytest.raises(InputError, match=f"^{message}$"):
        call(shipped)


def test_predict_files_takes_any_iterable_of_paths(shipped: Predictor, tmp_path: Path) -> None:
    """A generator ended in "object of type 'generator' has no len()" when one of its folders held no image."""
    empty = tmp_path / "empty"
    empty.mkdir()
    got = shipped.predict_files(path for path in [empty, _film()])
    assert [p.error is not None for p in got] == [True, False]
    assert "folder holds no image files" in str(got[0].error)
    assert got[1].probability == shipped.predict_files([_film()])[0].probability


def test_predict_files_checks_the_items_of_an_iterator_and_predict_chunks_takes_one(shipped: Predictor) -> None:
    """An iterator's items were not checked (so as not to spend it): a 3 among them ended in a TypeError from deep
    inside; predict_chunks of a generator ended in "object of type 'generator' has no len()"."""
    with pytest.raises(InputError, match=r"^predict_files: paths takes a list of paths \(str or os.PathLike\), "
                                         r"not list \[3\]$"):
        shipped.predict_files(iter([3]))
    got = [p for chunk in shipped.predict_chunks((path, None) for path in [_film()]) for p in chunk]
    assert [p.probability for p in got] == [shipped.predict_files([_film()])[0].probability]


def test_an_onnx_path_with_backend_torch_is_refused_before_the_model_is_read(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """It was refused only after the torch model was loaded (seconds); backend='auto' with an onnx_path still asks
    for onnx."""
    import pneumoscan.inference.predictor as predictor_module

    def read(*_: Any, **__: Any) -> Any:
        raise AssertionError("the model file was read")

    for name in ("file_sha256", "read_meta", "load_artifact", "resolve_model_path"):
        monkeypatch.setattr(predictor_module, name, read)
    with pytest.raises(InputError, match=r"^onnx_path='.*m\.onnx': only the onnx backend uses it; drop `onnx_path` "
                                         r"or pass backend='onnx'$"):
        Predictor(None, backend="torch", onnx_path=tmp_path / "m.onnx")
    with pytest.raises(AssertionError, match="the model file was read"):  # auto: the export is looked at with the model
        Predictor(None, backend="auto", onnx_path=tmp_path / "m.onnx")


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_pil_image_is_turned_upright_by_its_exif_orientation_as_its_file_is(
        shipped: Predictor, tmp_path: Path, orientation: int) -> None:
    """predict(Image.open(path)) saved the image as a PNG without its EXIF, so a film stored turned (orientation 3, 6
    or 8) was scored or refused as stored, upside down or on its side, where predict(path) turns it upright."""
    with Image.open(_film()) as im:
        stored = im.convert("L").transpose({3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
                                            8: Image.Transpose.ROTATE_270}[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "turned.jpeg"
    stored.save(path, quality=95, exif=exif)
    from_path = shipped.predict(path)
    assert from_path.probability is not None and from_path.label == "NORMAL"
    with Image.open(path) as im:
        from_image = shipped.predict(im)
        assert from_image.probability == from_path.probability
        assert pneumoscan.gradcam(im, shipped).prediction.probability == pytest.approx(from_path.probability, abs=1e-6)


@pytest.mark.parametrize("loaded", [False, True])
@pytest.mark.parametrize("orientation", [3, 5, 6, 7, 8])
@pytest.mark.parametrize("mode", ["L", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"])
def test_a_pil_image_of_a_turned_tiff_gives_its_files_pixels(tmp_path: Path, mode: str, orientation: int,
                                                             loaded: bool) -> None:
    """Pillow maps an uncompressed L, P, RGBA, CMYK or I;16 TIFF opened from a path at its upright size, so with an
    orientation that swaps width and height, predict(Image.open(path)) read scrambled pixels (up to 170 of 255 off
    the file's at 64 px), loaded first or not; the file itself decodes right."""
    from pneumoscan.data.preprocess import load_image
    from pneumoscan.inference.inputs import film_bytes

    with Image.open(_film()) as im:
        gray = np.asarray(im.convert("L").resize((150, 90)))
    if mode in ("I", "I;16", "F"):
        image = Image.fromarray(gray.astype(np.int32) * 16 if mode != "F" else gray.astype(np.float32) / 255)
        image = image.convert(mode) if mode == "I;16" else image
    else:
        image = Image.fromarray(gray) if mode == "L" else Image.fromarray(gray).convert("RGB").convert(mode)
    path = tmp_path / "turned.tif"
    image.save(path, tiffinfo={0x0112: orientation})
    with Image.open(path) as opened:
        if loaded:
            opened.load()
        from_image = load_image(film_bytes(opened)[0], 64)
    np.testing.assert_array_equal(from_image, load_image(path, 64))


def test_a_pil_image_of_a_turned_l_tiff_gets_its_files_probability(shipped: Predictor, tmp_path: Path) -> None:
    with Image.open(_film()) as im:
        stored = im.convert("L").resize((224, 200)).transpose(Image.Transpose.ROTATE_90)  # 6: upright, not square
    stored.save(tmp_path / "turned.tif", tiffinfo={0x0112: 6})
    from_path = shipped.predict(tmp_path / "turned.tif")
    assert from_path.probability is not None and from_path.label == "NORMAL"
    with Image.open(tmp_path / "turned.tif") as im:
        assert shipped.predict(im).probability == from_path.probability


@pytest.mark.parametrize("orientation", [None, 1])
def test_a_pil_image_with_nothing_to_turn_is_not_copied(orientation: int | None) -> None:
    """ImageOps.exif_transpose copies an image it does not turn: about 60 MB more at peak for a 20 MP colour photo."""
    from pneumoscan.inference.inputs import _upright

    image = Image.new("L", (30, 20), 128)
    if orientation is not None:
        image.getexif()[0x0112] = orientation
    assert _upright(image) is image
    image.getexif()[0x0112] = 6
    assert _upright(image).size == (20, 30)  # a turn is still made


@pytest.mark.parametrize("mode", ["I", "F", "CMYK"])
def test_a_pil_image_of_a_mode_png_cannot_hold_is_read_as_its_file_is(shipped: Predictor, tmp_path: Path,
                                                                       mode: str) -> None:
    """Image.open of a 32-bit integer or float TIFF (or a CMYK one) was refused: 'a PIL image of mode F; convert it
    first, e.g. image.convert('L')', which clips 12-bit or 0-1 pixels to a white or black image, where
    predict(path) reads the film."""
    with Image.open(_film()) as im:
        gray = np.asarray(im.convert("L"))
    stored = {"I": lambda: Image.fromarray(gray.astype(np.int32) * 16),  # 12-bit pixels
              "F": lambda: Image.fromarray(gray.astype(np.float32) / 255),
              "CMYK": lambda: Image.fromarray(gray).convert("RGB").convert("CMYK")}[mode]()
    path = tmp_path / f"film_{mode}.tif"
    stored.save(path)
    from_path = shipped.predict(path)
    assert from_path.probability is not None and from_path.label == "NORMAL"
    with Image.open(path) as im:
        assert im.mode == mode
        assert shipped.predict(im).probability == from_path.probability
        assert pneumoscan.gradcam(im, shipped).prediction.probability == pytest.approx(from_path.probability, abs=1e-6)


def test_a_pil_image_of_a_mode_no_file_holds_is_refused_saying_to_convert_it(shipped: Predictor) -> None:
    with Image.open(_film()) as im:
        hsv = im.convert("RGB").convert("HSV")
    with pytest.raises(InputError, match=r"^predict: a PIL image of mode HSV, which no image file holds; convert it "
                                         r"first, e.g. image.convert\('RGB'\)$"):
        shipped.predict(hsv)
    assert shipped.predict(hsv.convert("RGB")).label == "NORMAL"
