"""What `predict` takes: paths (files, folders of films, a CSV manifest given by mistake) and films given in memory
(bytes, a pydicom Dataset, a PIL image, a pixel array), each made the bytes of a file and a name."""
from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscan.data.formats import IMAGE_EXTENSIONS
from pneumoscan.data.layout import image_files
from pneumoscan.data.pixels import out_of_memory
from pneumoscan.errors import InputError, one_name, shell_word

__all__ = ["dicom_file_bytes", "encoded_png", "expand_paths", "film_bytes", "input_files", "manifest_given"]

_ARRAY_OF_FILE = "np.asarray(ImageOps.exif_transpose(Image.open(path)))"  # a file's pixels upright, as decoded


def expand_paths(paths: list[str | os.PathLike]) -> list[Path]:
    """Files as given, folders expanded to the image files below them (sorted)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise InputError(f"{one_name(str(path))}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)}, or DICOM under "
                                 f"any name)")
            files.extend(found)
        else:
            files.append(path)
    return files


def manifest_given(path: Path) -> str | None:
    """The error of a CSV file given to predict: a manifest, not an image; it says how a labelled one is scored."""
    if path.suffix.lower() != ".csv" or not path.is_file():
        return None
    return (f"{one_name(str(path))}: a CSV file, not an image; predict takes image files and folders of them, and a labelled "
            f"manifest (columns path,label) is scored with `pneumoscan evaluate --data {shell_word(path)}`")


def input_files(paths: Sequence[str | os.PathLike]) -> list[tuple[Path, str | None]]:
    """The files `predict_files` predicts, in order, each with None or the error it gets: a CSV file (a manifest)
    or, among other inputs, a folder without images (alone, that folder is the whole request: InputError)."""
    files: list[tuple[Path, str | None]] = []
    for raw in paths:
        if (manifest := manifest_given(Path(raw))) is not None:
            files.append((Path(raw), manifest))
            continue
        try:
            files.extend((path, None) for path in expand_paths([raw]))
        except InputError as err:
            if len(paths) == 1:
                raise
            files.append((Path(raw), str(err)))
    return files


def dicom_file_bytes(image: Any, caller: str = "predict") -> tuple[bytes, str] | None:
    """A pydicom Dataset as the bytes of its DICOM file and the name its Prediction gets (its file's name, or
    `<DICOM dataset>`), so its header is read as from the file; None for anything else. `caller` names the
    function in a message."""
    dataset = getattr(sys.modules.get("pydicom.dataset"), "Dataset", None)  # none can exist before it is imported
    if not isinstance(dataset, type) or not isinstance(image, dataset):  # a subclass too (highdicom's images)
        return None
    import pydicom
    buffer = io.BytesIO()
    try:
        pydicom.dcmwrite(buffer, image)
    except Exception:  # noqa: BLE001 -- pydicom's text could quote header values
        raise InputError(f"{caller}: a pydicom Dataset that pydicom cannot write as a file; give the DICOM file's "
                         "path or bytes") from None
    filename = getattr(image, "filename", None)
    return buffer.getvalue(), Path(filename).name if isinstance(filename, str) and filename else "<DICOM dataset>"


def film_bytes(image: Any, caller: str = "predict") -> tuple[bytes, str]:
    """A film given in memory, as `Predictor.predict` and `gradcam` take it, as a file's bytes and the name its
    Prediction gets: a file's bytes as they are (`<upload>`), a pydicom Dataset as its DICOM file
    (`dicom_file_bytes`), a PIL image or a pixel array as a PNG file (`encoded_png`); InputError for anything else,
    naming `caller`."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image), "<upload>"
    return dicom_file_bytes(image, caller) or encoded_png(image, caller)


def encoded_png(image: Any, caller: str = "predict") -> tuple[bytes, str]:
    """A PIL image or a pixel array as a PNG file's bytes (lossless: the pixels as given, a PIL image turned upright
    by its EXIF orientation as a file is; a TIFF file's for a PIL mode PNG cannot hold, such as I or F, which
    `image.convert('L')` would clip) and the name its Prediction gets; InputError for anything else (naming
    `caller`)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        name = "<PIL image>"
        if not (image.width and image.height):  # PNG cannot hold it: refused below as of a mode to convert
            raise InputError(f"{caller}: an empty PIL image ({image.width} x {image.height} px), no pixels to read; "
                             f"give the film itself")
        if (source := _tiff_file_bytes(image)) is not None:
            return source, name
        try:
            image = _upright(image)
        except MemoryError as exc:  # the machine's shortage while turning it: this image's, named
            raise out_of_memory(name, image.width, image.height) from exc
    elif isinstance(image, np.ndarray):
        name = "<array>"
        if image.size == 0:
            raise InputError(f"{caller}: an empty array of shape {image.shape}, no pixels to read; give the film's "
                             f"pixels, as {_ARRAY_OF_FILE} gives them")
        shape = image.shape
        if image.ndim == 3 and image.shape[2] == 1:  # one channel, as Keras and OpenCV's IMREAD_GRAYSCALE keep it
            image = image[:, :, 0]
        rgb = image.ndim == 3 and image.shape[2] in (3, 4) and image.dtype == np.uint8
        if not (rgb or image.ndim == 2 and image.dtype in (np.uint8, np.uint16)):
            raise InputError(f"{caller}: an array of {image.dtype} {shape}; give the film's pixels as uint8 "
                             f"(0-255) or uint16, shape (H, W) or (H, W, 1), or uint8 (H, W, 3) or (H, W, 4), as "
                             f"{_ARRAY_OF_FILE} gives them" + _float_hint(image))
        try:
            image = Image.fromarray(np.ascontiguousarray(image))
        except MemoryError as exc:  # the machine's shortage while copying it: this array's, named
            raise out_of_memory(name, shape[1], shape[0]) from exc
    else:
        raise InputError(f"{caller} takes a path, a file's bytes, a PIL image, a numpy array or a pydicom Dataset, not "
                         f"{type(image).__name__}")
    for fmt in ("PNG", "TIFF"):  # TIFF holds the modes of films PNG cannot (I, F, CMYK, YCbCr, LAB), read as such files
        buffer = io.BytesIO()
        try:
            image.save(buffer, format=fmt)
            return buffer.getvalue(), name
        except MemoryError as exc:  # the machine's shortage while encoding it: this image's, named, as a file's
            raise out_of_memory(name, image.width, image.height) from exc
        except (OSError, ValueError):  # a mode the format cannot hold
            continue
    raise InputError(f"{caller}: a PIL image of mode {image.mode}, which no image file holds; convert it first, e.g. "
                     f"image.convert('RGB')")


def _float_hint(image: np.ndarray) -> str:
    """How to turn a float array into pixels (its range decides: scaled to 0-1 by a loader, or pixel values), or ''
    for an array of another kind; floats are not taken as they are, since only their range says what 1.0 is."""
    if image.dtype.kind != "f":
        return ""
    finite = image[np.isfinite(image)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
    if 0 <= low and high <= 1:
        return "; for floats in [0, 1], pass (image * 255).round().astype(np.uint8)"
    if 0 <= low and high <= 255:
        return "; for floats of pixel values 0-255, pass image.round().astype(np.uint8)"
    if 0 <= low and high <= 65535:  # 12- or 16-bit pixel values, e.g. a DICOM's pixel_array as floats
        return "; for floats of 12- or 16-bit pixel values, pass image.round().astype(np.uint16)"
    return ("; these floats are not pixel values (below 0 or above 65535, e.g. Hounsfield units): pass the DICOM file "
            "or its pydicom Dataset, which pneumoscan reads itself")


def _tiff_file_bytes(image: Any) -> bytes | None:
    """The bytes of the single-page TIFF file whose pixels PIL image `image` is, unchanged (not loaded yet: read from
    its open file; or memory-mapped and untouched: the map is the whole file); None for any other image, or when they
    cannot be read. Pillow (13.0) maps an uncompressed TIFF's pixels (L, P, RGBA, CMYK, I;16) from the file at its
    upright size, so one whose EXIF orientation swaps width and height reads scrambled: such an image is read as its
    file, as `predict(path)` reads it. The bytes come from the image's own file handle or map, never from its name,
    which may name another file by now."""
    if getattr(image, "format", None) != "TIFF" or getattr(image, "n_frames", 1) != 1:
        return None
    mapped = getattr(image, "map", None)
    if mapped is not None and image.readonly:
        return bytes(mapped)
    handle = getattr(image, "fp", None)
    if not getattr(image, "tile", None) or handle is None:
        return None
    try:
        at = handle.tell()
        handle.seek(0)
        try:
            return handle.read()
        finally:
            handle.seek(at)
    except (OSError, ValueError, AttributeError):  # closed, or not seekable: its pixels as Pillow gives them
        return None


def _upright(image: Any) -> Any:
    """A PIL image turned as its EXIF orientation says (`ImageOps.exif_transpose`), as `decode` turns a file; the image
    itself, not a copy, without one, or when its EXIF cannot be read; a MemoryError is raised (a film read sideways
    would be scored)."""
    from PIL import ImageOps

    try:
        if image.getexif().get(0x0112, 1) not in range(2, 9):  # nothing to turn: exif_transpose would copy it all
            return image
        return ImageOps.exif_transpose(image)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - broken EXIF: keep the stored orientation, as decode does
        return image
