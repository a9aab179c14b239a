"""Decode one X-ray image (JPEG, PNG, TIFF, BMP or DICOM) into a 2-D uint8 grayscale array.

Every problem with the input itself (missing, empty, truncated, not an image, too large,
an undecodable DICOM) is raised as a one-line :class:`~pneumoscan.errors.InputError` that
starts with the file's name and says what to do. Nothing else escapes for bad input bytes.

Decisions:

* Format detection is by content: DICOM when bytes 128:132 are ``b"DICM"``, otherwise Pillow
  identifies the file, so the extension never matters.
* 8-bit grayscale images are returned as stored. Data with more than 8 bits (16-bit PNG/TIFF,
  32-bit or float TIFF, 12/16-bit DICOM without a window) is scaled linearly so its min -> 0 and
  its max -> 255; a constant image becomes all zeros.
* Colour becomes luminance with Pillow's ITU-R 601-2 ``"L"`` conversion.
* Alpha (``LA``, ``RGBA``, ``PA``, transparent palette entries) is composited on **black** and
  then dropped: transparent pixels read as 0, like the background of an X-ray.
* DICOM: Modality LUT (its LUT, or rescale slope/intercept), then the first VOI LUT (its entries' own range
  mapped to 0..255) or the first window (Window Center/Width, VOI LUT Function LINEAR, LINEAR_EXACT
  or SIGMOID as pydicom applies them), mapped over the window's full output range to 0..255 (a window that
  leaves every pixel of the film one tone, a blank picture, is passed over for the next one); no VOI -> min-max
  of the data, except unsigned 8-bit data with an identity Modality LUT, which is kept as stored
  (so the same image as DICOM or PNG decodes identically). MONOCHROME1, and MONOCHROME2 with a Presentation
  LUT Shape of INVERSE, are inverted at the end (once: MONOCHROME1 with INVERSE, as DX films are required to
  carry it, is the same single inversion, as viewers show it). A Presentation LUT Sequence instead maps the VOI
  output (over the range above) onto its entries, whose P-values (0 black, 2^bits - 1 white) are the film's shades
  with their polarity, MONOCHROME1's too (PS3.3 C.11.4); one that cannot be read so (a descriptor whose first
  input is not 0 or whose entries are not 8 to 16 bits, LUT Data of another length, an entry above 2^bits - 1) is
  an InputError rather than a guess at the film's polarity.
  Header values other than image geometry are never read for decoding (`not_frontal_view` reads the View
  Position apart), and exception text from pydicom is never copied into messages or exception chains (it could
  quote header values).
* A multi-frame DICOM is read only when every frame holds the same pixels (one film stored again; NumberOfFrames 1
  is one film too): its first frame. Frames that differ are refused, as which film is meant cannot be guessed, and so
  is a file whose frames together exceed ``max_pixels`` (all are decoded to compare them).
* DICOM Pixel Padding Value (with a Pixel Padding Range Limit: every stored value between the two) marks the
  frame around a collimated or non-rectangular film: padding pixels count for no min-max range and are filled
  with the darkest tone of the film's real pixels after every other step, so they neither stretch its contrast
  nor show as a bright frame.
* Pillow's own decompression-bomb guard (``2 * Image.MAX_IMAGE_PIXELS``) stays a hard cap even
  when ``max_pixels`` is set above it; both end up as InputError.
* Warnings filters are not touched (``warnings.catch_warnings`` is not thread-safe); if warnings
  are turned into errors, they are reported as InputError like any other decoding failure.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pneumoscan.errors import ImageTooLarge, InputError, NotAnImage

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["DEFAULT_MAX_PIXELS", "MIN_SIDE", "NOT_FRONTAL_VIEWS", "dicom_colour", "is_dicom", "not_frontal_view",
           "quiet_decoder_warnings", "read_grayscale", "read_grayscale_and_rgb", "size_warning", "stored_size",
           "thumbnail_warning", "view_reason"]

DEFAULT_MAX_PIXELS: int = 150_000_000
"""Largest accepted width * height (decompression-bomb limit); override per call."""

MIN_SIDE: int = 32
"""px: a film with a shorter side is a thumbnail, too small to read reliably (upscaled to the model's input it is
mostly interpolation): `audit` lists such files, and `predict`, `explain` and the service warn with each prediction."""


def quiet_decoder_warnings() -> None:
    """Silence the decoders' own warnings: installed on import, and again by the CLI and the service, since
    leaving any `warnings.catch_warnings()` block (as every test does) drops filters added inside it.

    Every read checks its own `max_pixels` before decoding, so Pillow's warning above 89 megapixels (one
    line per large upload in a service's log) says nothing new. pydicom warns, with its source paths,
    about every irregular header: a file it cannot read becomes one InputError here, and one it can read
    needs no lecture on DICOM value representations.
    """
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")


quiet_decoder_warnings()

_PIL_FORMATS = ("JPEG", "PNG", "TIFF", "BMP")  # JPEG also opens MPO (camera) files
_GIVE = "give a JPEG, PNG, TIFF, BMP or DICOM file"
_DICOM_DECODERS = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
_MAX_REASON = 120


def is_dicom(head: bytes) -> bool:
    """True when bytes 128:132 are b'DICM', or for a DICOM file written without its 128-byte preamble and
    'DICM' (older devices and exports do this; pass at least the first 132 bytes)."""
    return (len(head) >= 132 and bytes(head[128:132]) == b"DICM") or _is_bare_dicom(bytes(head[:8]))


def _is_bare_dicom(head: bytes) -> bool:
    """Whether the first element is a little-endian file-meta (0002) or identifying (0008) element with an
    explicit VR (two capital letters) or an implicit, short length: no image format starts like this."""
    if len(head) < 8 or head[:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    explicit = head[4:6].isalpha() and head[4:6].isupper()
    return explicit or int.from_bytes(head[4:8], "little") < 0x10000


def read_grayscale(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> np.ndarray:
    """Decode an image file (path) or in-memory bytes into a 2-D uint8 grayscale array (H, W).

    `name` labels error messages (for bytes input, e.g. an upload's filename; it also overrides
    the path). `draft_size`: JPEGs may be decoded at 1/2, 1/4 or 1/8 size with Pillow's draft
    mode, keeping both sides >= draft_size (never below it). Raises InputError for anything
    unusable; ValueError/TypeError only for invalid arguments.
    """
    return read_grayscale_and_rgb(source, name=name, max_pixels=max_pixels, draft_size=draft_size)[0]


def read_grayscale_and_rgb(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """`read_grayscale`, and from the same decode a colour DICOM's RGB pixels as `dicom_colour` gives them (None for
    any other file): for the colourfulness cue (`colourfulness(..., rgb=...)`) without decoding the DICOM again."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    if draft_size is not None and draft_size < 1:
        raise ValueError(f"draft_size must be >= 1 or None, got {draft_size}")

    if isinstance(source, (bytes, bytearray, memoryview)):
        label = _one_line(name) if name is not None else "<upload>"
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        label = _one_line(name if name is not None else os.fsdecode(source))
        data = read_file(source, label)
    else:
        raise TypeError(f"source must be a path or bytes, not {type(source).__name__}")

    if not data:
        raise InputError(f"{label}: empty file (0 bytes); {_GIVE}")
    if is_dicom(data):
        return _read_dicom(data, label, max_pixels)
    return _read_pil(data, label, max_pixels, draft_size), None


def draft_changes_pixels(data: bytes, draft_size: int) -> bool:
    """Whether `read_grayscale(data, draft_size=draft_size)` gives other pixels than `read_grayscale(data)`: a JPEG
    that draft mode decodes at 1/2 to 1/8 scale, or as grey straight from its luma (a colour one). Reads the header
    only; True when it cannot tell."""
    if is_dicom(data):
        return False
    try:
        with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
            if im.format not in ("JPEG", "MPO"):  # as `_read_pil`: draft mode applies to these only
                return False
            before = (im.mode, im.size)
            im.draft("L", (draft_size, draft_size))
            return (im.mode, im.size) != before
    except Exception:  # noqa: BLE001 - unreadable here: decoding tells the user why
        return True


def same_draft(data: bytes, draft_size: int, other_size: int) -> bool:
    """Whether `read_grayscale(data, draft_size=draft_size)` and `read_grayscale(data, draft_size=other_size)` give
    the same pixels: always but for a JPEG that draft mode decodes at another scale for one than for the other.
    Reads the header only; False when it cannot tell."""
    if is_dicom(data):
        return True

    def drafted(size: int) -> tuple[str, tuple[int, int]] | None:
        with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
            if im.format not in ("JPEG", "MPO"):  # as `_read_pil`: draft mode applies to these only
                return None
            im.draft("L", (size, size))
            return im.mode, im.size

    try:
        return draft_size == other_size or drafted(draft_size) == drafted(other_size)
    except Exception:  # noqa: BLE001 - unreadable here: decoding tells the user why
        return False


def stored_size(data: bytes | bytearray) -> tuple[int, int] | None:
    """(width, height) of the image in a file's bytes, from its header only (a DICOM's Columns and Rows); None when
    the header cannot be read (decoding says why)."""
    try:
        if is_dicom(bytes(data[:132])):
            import pydicom

            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["Rows", "Columns"],
                                 force=data[128:132] != b"DICM")
            return int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0)
        with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
            return im.size
    except Exception:  # noqa: BLE001 - unreadable here: decoding tells the user why
        return None


NOT_FRONTAL_VIEWS = frozenset({"LL", "RL", "LLD", "RLD", "LLO", "RLO", "LAT", "LATERAL"})
"""DICOM View Position values (upper case) of a lateral, decubitus or oblique film: the DX/CR defined terms besides
AP and PA, and the words some devices write instead."""


def not_frontal_view(data: bytes | bytearray) -> str | None:
    """A DICOM file's View Position (0018,5101), from its header, when it names a lateral, decubitus or oblique view
    (NOT_FRONTAL_VIEWS); None for a frontal, unstated or unreadable one, and for any other file."""
    if not is_dicom(bytes(data[:132])):
        return None
    try:
        import pydicom

        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["ViewPosition"],
                             force=data[128:132] != b"DICM")
        view = str(ds.get("ViewPosition", "") or "").strip().upper()
    except Exception:  # noqa: BLE001 - decoding reads this header: a value it cannot give is no view
        return None
    return view if view in NOT_FRONTAL_VIEWS else None


def view_reason(view: str) -> str:
    """Why a film whose View Position is `view` (one of NOT_FRONTAL_VIEWS) gets no prediction, and what to send."""
    return (f"DICOM View Position {view}: not a frontal (AP or PA) film; the model reads frontal chest X-rays only, "
            f"send the frontal film of the study")


def size_warning(data: bytes | bytearray) -> str | None:
    """What to tell about a film under MIN_SIDE px on a side (a thumbnail): its size, that it is too small to read
    reliably and to send the original; None for a larger film or an unreadable header."""
    return thumbnail_warning(stored_size(data))


def thumbnail_warning(size: tuple[int, int] | None) -> str | None:
    """`size_warning` of a film whose `stored_size` is `size`."""
    if size is None or min(size) >= MIN_SIDE or min(size) < 1:
        return None
    return (f"{size[0]} x {size[1]} px, under {MIN_SIDE} px on a side: too small to read reliably; send the original "
            f"film")


# --------------------------------------------------------------------------- helpers


def _one_line(text: str, limit: int | None = None) -> str:
    """Collapse whitespace/control characters so a message stays on one line."""
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())
    if limit is not None and len(cleaned) > limit:
        cleaned = cleaned[: limit - 3] + "..."
    return cleaned


def read_path(path: str | os.PathLike[str]) -> tuple[bytes, str]:
    """A file's bytes, read once, and the label its errors carry (its path on one line), as `read_grayscale` labels
    a path: for callers that decode the bytes and read other cues from them too."""
    label = _one_line(os.fsdecode(path))
    return read_file(path, label), label


def read_file(path: str | os.PathLike[str], label: str) -> bytes:
    """Read a whole file once, turning OS errors into InputError."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError(f"{label}: a link to {os.readlink(path)}, which does not exist; fix or remove the link") \
                from None
        raise InputError(f"{label}: file not found; check the path") from None
    except IsADirectoryError:
        raise InputError(f"{label}: is a directory, not an image file; {_GIVE}") from None
    except OSError as exc:
        if os.path.isdir(path):
            raise InputError(f"{label}: is a directory, not an image file; {_GIVE}") from None
        reason = _one_line(exc.strerror or type(exc).__name__, _MAX_REASON)
        raise InputError(f"{label}: cannot read the file ({reason}); check it exists and is readable") from None
    except ValueError:  # e.g. embedded NUL character in the path
        raise InputError(f"{label}: not a valid file path; check the path") from None


def _too_large(label: str, width: int, height: int, max_pixels: int) -> InputError:
    return ImageTooLarge(
        f"{label}: image too large ({width} x {height} = {width * height} pixels, "
        f"limit {max_pixels}); downscale it below the limit and try again"
    )


def _to_uint8(arr: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Scale linearly so lo -> 0 and hi -> 255 (default: finite min/max), clip, round to uint8.

    A constant image (hi == lo) and non-finite values become 0. Integer images of up to 16 bits are
    scaled in float32, which holds their values exactly in half the memory (uploads can be 150 megapixels).
    """
    return _to_levels(arr, lo, hi, 255).astype(np.uint8)


def _to_levels(arr: np.ndarray, lo: float | None, hi: float | None, top: int) -> np.ndarray:
    """`_to_uint8` onto the whole numbers 0..`top` (as floats) instead of 0..255: with `top` 65535 at most, the
    input of a Presentation LUT of `top` + 1 entries. In float64 above 255 (a float32 factor rounds some differently)."""
    values = np.asarray(arr)
    exact32 = values.dtype.kind in "biu" and values.dtype.itemsize <= 2 and top <= 255
    finite = None if values.dtype.kind in "biu" else np.isfinite(values)
    if lo is None or hi is None:
        if finite is None:
            lo, hi = float(values.min()), float(values.max())
        elif not finite.any():
            return np.zeros(values.shape, dtype=np.float32)
        elif finite.all():
            lo, hi = float(values.min()), float(values.max())
        else:
            lo, hi = float(values[finite].min()), float(values[finite].max())
    span = hi - lo
    if not np.isfinite(span) or span == 0:
        return np.zeros(values.shape, dtype=np.float32)
    out = values.astype(np.float32 if exact32 else np.float64)
    with np.errstate(all="ignore"):
        out -= lo
        out *= float(top) / span
    if finite is not None:
        out[~finite] = 0.0
    np.clip(out, 0.0, float(top), out=out)
    return np.rint(out, out=out)


def _rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) array -> (H, W) uint8 luminance, via Pillow's RGB -> L conversion."""
    if rgb.dtype != np.uint8:
        rgb = _to_uint8(rgb)
    return np.array(Image.fromarray(np.ascontiguousarray(rgb), "RGB").convert("L"), dtype=np.uint8)


# --------------------------------------------------------------------------- Pillow


def _read_pil(data: bytes, label: str, max_pixels: int, draft_size: int | None) -> np.ndarray:
    """Decode JPEG/PNG/TIFF/BMP with Pillow: size check before decoding, EXIF orientation."""
    try:
        with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise _too_large(label, width, height, max_pixels)
            if width < 1 or height < 1:
                raise InputError(f"{label}: image has no pixels ({width} x {height}); {_GIVE}")
            pages = getattr(im, "n_frames", 1)
            if im.format == "TIFF" and pages > 1:  # which page is the film is not ours to guess (as for DICOM)
                raise InputError(f"{label}: multi-page TIFF ({pages} pages) is not supported; export the film's page "
                                 "as a single image")
            if draft_size is not None and im.format in ("JPEG", "MPO"):
                im.draft("L", (draft_size, draft_size))
            im.load()
            try:
                ImageOps.exif_transpose(im, in_place=True)
            except Exception:  # noqa: BLE001 - broken EXIF: keep the stored orientation
                pass
            out = _pil_to_gray(im)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{label}: not a readable image (cannot identify image file); {_GIVE}") from None
    except Image.DecompressionBombError as exc:
        reason = _one_line(str(exc), _MAX_REASON)
        raise ImageTooLarge(f"{label}: image too large ({reason}); downscale it and try again") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure on bad bytes is the input's fault
        reason = _one_line(str(exc) or type(exc).__name__, _MAX_REASON)
        raise InputError(
            f"{label}: not a readable image ({reason}); the file may be truncated or damaged, {_GIVE}"
        ) from exc
    if out.ndim != 2 or out.size == 0:
        raise InputError(f"{label}: decoded to an unusable array of shape {out.shape}; {_GIVE}")
    return out


def _pil_to_gray(im: Image.Image) -> np.ndarray:
    """Loaded Pillow image of any mode -> (H, W) uint8."""
    mode = im.mode
    if mode == "L" and "transparency" not in im.info:
        return np.array(im, dtype=np.uint8)
    if mode in ("I", "F") or mode.startswith("I;"):
        return _to_uint8(np.asarray(im))
    if mode == "LAB":  # CIELab (TIFF): Pillow cannot convert it, and its L band already is the lightness
        return np.array(im.getchannel("L"), dtype=np.uint8)
    if mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        gray = np.asarray(rgba.convert("L"), dtype=np.uint16)
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.uint16)
        return ((gray * alpha + 127) // 255).astype(np.uint8)  # composite on black
    return np.array(im.convert("L"), dtype=np.uint8)


# --------------------------------------------------------------------------- DICOM


def _add_transfer_syntax(ds: Dataset) -> None:
    """File meta with the uncompressed transfer syntax pydicom read the dataset in (implicit or explicit VR)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    implicit, little = ds.original_encoding
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                              ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    ds.file_meta = meta


_ONE_SAMPLE = ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")  # photometric interpretations of one sample per pixel


def dicom_colour(data: bytes | bytearray, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray | None:
    """A colour DICOM's (H, W, 3) uint8 RGB pixels (RGB, YBR_*, PALETTE COLOR), as `read_grayscale` takes them
    before it turns them grey, for the colourfulness cue; None for a grey, unreadable or oversized one (decoding
    reports those). A grey one's header alone is read."""
    try:
        import pydicom

        head = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=data[128:132] != b"DICM",
                               specific_tags=["SamplesPerPixel", "PhotometricInterpretation"])
        palette = str(head.get("PhotometricInterpretation", "") or "").strip().upper() == "PALETTE COLOR"
        if int(head.get("SamplesPerPixel", 1) or 1) == 1 and not palette:
            return None
        ds, arr, photometric = _load_dicom(bytes(data), "", max_pixels)
        rgb = _dicom_rgb(arr, ds, photometric)
    except Exception:  # noqa: BLE001 - unreadable here: decoding tells the user why
        return None
    return None if rgb is None else rgb if rgb.dtype == np.uint8 else _to_uint8(rgb)


def _read_dicom(data: bytes, label: str, max_pixels: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode a DICOM image of one film (`_load_dicom`): Modality LUT, VOI LUT/window, Presentation LUT or inversion (MONOCHROME1
    or INVERSE); colour becomes luminance. With the grey image, a colour one's uint8 RGB pixels as `dicom_colour`
    gives them (None above its DEFAULT_MAX_PIXELS, as there), else None.

    Errors are raised ``from None`` and never quote pydicom's text: it may contain header values.
    """
    ds, arr, photometric = _load_dicom(data, label, max_pixels)
    presentation = _presentation_lut(ds, label) if arr.ndim == 2 and photometric != "PALETTE COLOR" else None
    try:
        rgb = _dicom_rgb(arr, ds, photometric)
        if rgb is not None:
            rgb = rgb if rgb.dtype == np.uint8 else _to_uint8(rgb)
            out = _rgb_to_gray(rgb)
        elif arr.ndim == 2 and presentation is not None:  # its P-values are the film's shades, polarity included
            out = _dicom_mono(arr, ds, invert=False, presentation=presentation)
        elif arr.ndim == 2:
            shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
            out = _dicom_mono(arr, ds, invert=photometric == "MONOCHROME1" or shape == "INVERSE")
        else:
            raise ValueError("unexpected pixel array shape")
    except Exception:  # noqa: BLE001
        raise InputError(
            f"{label}: DICOM pixel data has an unsupported layout ({photometric}, {arr.ndim}-D); "
            "give a single-frame grayscale or RGB DICOM image"
        ) from None
    if rgb is not None and rgb.shape[0] * rgb.shape[1] > DEFAULT_MAX_PIXELS:
        rgb = None
    return np.ascontiguousarray(out, dtype=np.uint8), rgb


def _is_dicomdir(ds: Dataset) -> bool:
    """Whether a dataset is a DICOMDIR (Media Storage Directory Storage, or directory records without a file meta
    that says so)."""
    try:
        sop_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
        return sop_class == "1.2.840.10008.1.3.10" or "DirectoryRecordSequence" in ds
    except Exception:  # noqa: BLE001 - a damaged header is no DICOMDIR
        return False


def _dicom_rgb(arr: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray | None:
    """The (H, W, 3) RGB pixels of a colour DICOM's decoded array (pydicom gives YBR as RGB; a palette is looked
    up), None for a grey one."""
    if photometric == "PALETTE COLOR" and arr.ndim == 2:
        from pydicom.pixels import apply_color_lut

        arr = np.asarray(apply_color_lut(arr, ds))
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return arr[..., :3]
    return None


def _load_dicom(data: bytes, label: str, max_pixels: int) -> tuple[Dataset, np.ndarray, str]:
    """The dataset of a DICOM image of one film, its decoded pixel array and its photometric interpretation (upper
    case; MONOCHROME2 for any other label on one sample per pixel), or an InputError naming `label`. A multi-frame
    file is one film when every frame holds the same pixels (`_one_film`: its first frame); its frames together
    count against `max_pixels`, as all are decoded to compare them."""
    try:
        import pydicom
        from pydicom.pixels import get_decoder
    except ImportError:
        raise InputError(f"{label}: is a DICOM file but pydicom is not installed; pip install pydicom") from None

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=data[128:132] != b"DICM")  # force: no preamble
        if getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None) is None:
            _add_transfer_syntax(ds)  # a bare dataset without file meta: say how it was encoded, as read
    except Exception:  # noqa: BLE001
        raise InputError(f"{label}: damaged DICOM header, cannot be read; give a complete, valid DICOM file") from None

    try:
        has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
        frames_value = ds.get("NumberOfFrames", None)
        frames = int(frames_value) if frames_value not in (None, "") else 1
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        photometric = str(ds.get("PhotometricInterpretation", "") or "MONOCHROME2").strip().upper()
        if int(ds.get("SamplesPerPixel", 1) or 1) == 1 and photometric not in _ONE_SAMPLE:
            photometric = "MONOCHROME2"  # one sample per pixel is a grey level, whatever else the header says
        if ds.get("PhotometricInterpretation") != photometric:  # pydicom refuses 'monochrome2' or a YBR label here
            ds.PhotometricInterpretation = photometric
        tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        compressed = bool(tsyntax is not None and tsyntax.is_compressed)
        tsyntax_name = _one_line(tsyntax.name, _MAX_REASON) if tsyntax is not None else "unknown"
    except Exception:  # noqa: BLE001
        raise InputError(f"{label}: damaged DICOM image header; give a complete, valid DICOM file") from None

    if not has_pixels and _is_dicomdir(ds):
        raise NotAnImage(
            f"{label}: a DICOMDIR, the index of a DICOM export, not an image; give one of the films it indexes, "
            "in the folders beside it (`pneumoscan predict` also takes the folder it is in)"
        )
    if not has_pixels:
        raise NotAnImage(
            f"{label}: DICOM file has no pixel data (not an image, e.g. a report); give a DICOM image"
        )
    if rows < 1 or cols < 1:
        raise InputError(f"{label}: DICOM image has no rows/columns; give a complete, valid DICOM file")
    if rows * cols > max_pixels:
        raise _too_large(label, cols, rows, max_pixels)
    if frames > 1 and rows * cols * frames > max_pixels:  # every frame is decoded to compare them
        raise _frames_too_large(label, cols, rows, frames, max_pixels)
    if compressed:
        try:
            available = get_decoder(tsyntax).is_available
        except Exception:  # noqa: BLE001 - no decoder exists for this transfer syntax
            available = False
        if not available:
            raise InputError(
                f"{label}: compressed DICOM ({tsyntax_name}) cannot be decoded, no decoder installed; "
                f"{_DICOM_DECODERS}"
            )

    try:
        arr = np.asarray(ds.pixel_array)
    except Exception:  # noqa: BLE001
        if compressed:
            raise InputError(
                f"{label}: cannot decode the compressed DICOM pixel data ({tsyntax_name}); the file may be "
                f"damaged, or a decoder is missing: {_DICOM_DECODERS}"
            ) from None
        raise InputError(
            f"{label}: cannot decode the DICOM pixel data; the file may be truncated or damaged, "
            "give a complete DICOM file"
        ) from None
    if frames > 1:
        arr = _one_film(arr, frames, label)
    return ds, arr, photometric


def _multi_frame(label: str, frames: int) -> InputError:
    return InputError(f"{label}: multi-frame DICOM ({frames} frames) is not supported unless every frame is the same "
                      f"film; export one frame as a single image")


def _frames_too_large(label: str, width: int, height: int, frames: int, max_pixels: int) -> InputError:
    return ImageTooLarge(
        f"{label}: multi-frame DICOM too large ({frames} frames of {width} x {height} pixels, {width * height * frames} "
        f"together, limit {max_pixels}; all are decoded to compare them); export one frame as a single image"
    )


def _one_film(arr: np.ndarray, frames: int, label: str) -> np.ndarray:
    """The film of a multi-frame DICOM's decoded frames (`arr`, frames first) when every frame is the same film
    stored again, else InputError: which of several films is meant cannot be guessed."""
    if arr.ndim < 3 or arr.shape[0] != frames or not all(np.array_equal(arr[0], frame) for frame in arr[1:]):
        raise _multi_frame(label, frames)
    return arr[0]


def _dicom_mono(raw: np.ndarray, ds: Dataset, invert: bool,
                presentation: tuple[np.ndarray, int] | None = None) -> np.ndarray:
    """Monochrome stored values -> uint8 through Modality LUT, VOI (window or LUT) and the `presentation` LUT
    (`_presentation_lut`) when given, inverted (255 - v) when `invert`, padding pixels filled as `_fill_padding`
    says. Every step maps each value on its own, so integer
    data of up to 16 bits is mapped once per possible value (at most 65,536) and then looked up: the same pixels
    as mapping the image, without its float64 copies (a 4,300 x 4,300 px film with a rescale and a window took
    seconds and over 500 MB that way)."""
    if raw.dtype.kind not in "iu" or raw.dtype.itemsize > 2:
        padding = _padding(raw, ds)
        out = _mono_to_uint8(raw, ds, None if padding is None else ~padding, presentation)
        if invert:
            np.subtract(255, out, out=out)
        return _fill_padding(out, padding, None if padding is None else ~padding)
    unsigned = raw.view(f"u{raw.dtype.itemsize}")  # int16 -2 is entry 65534 of the table, as its bits read unsigned
    every = np.arange(2 ** (8 * raw.dtype.itemsize), dtype=unsigned.dtype)
    present = np.zeros(every.size, dtype=bool)
    rows = max(1, _LOOKUP_PIXELS // max(1, raw.shape[-1]))  # an index array is cast to int64: a slice at a time
    for start in range(0, raw.shape[0], rows):
        present[unsigned[start:start + rows]] = True
    padding = _padding(every.view(raw.dtype), ds)
    real = present if padding is None else present & ~padding
    table = _mono_to_uint8(every.view(raw.dtype), ds, real, presentation)
    if invert:
        table = 255 - table
    table = _fill_padding(table, padding, real)
    out = np.empty(raw.shape, dtype=np.uint8)
    for start in range(0, raw.shape[0], rows):
        out[start:start + rows] = table[unsigned[start:start + rows]]
    return out


def _lut(item: Dataset, ds: Dataset) -> tuple[np.ndarray, int]:
    """A Modality or VOI LUT item's entries (int64) and the first value it maps, read as pydicom's
    `apply_modality_lut` and `apply_voi` read them, except that its entries are not cast to the descriptor's bit
    depth: pydicom 3.0 looks an 8-bit VOI LUT up in uint8 (every index wraps at 256, so a 12-bit film through a
    4,096-entry LUT came out as 16 repeated ramps) and cannot make a 10 to 15-bit Modality LUT ('uint12'); the
    entries are scaled by their own range anyway. For signed pixels a first value written as US (explicit VR),
    such as 65436 for -100, is the signed value, as pydicom reads it from implicit VR (it mapped no pixel of a
    signed film)."""
    entries, first_mapped, _ = (int(v) for v in item.LUTDescriptor)
    entries = entries or 2**16
    if first_mapped >= 2**15 and int(ds.get("PixelRepresentation", 0) or 0) == 1:
        first_mapped -= 2**16
    table = _lut_data(item, ds)
    if table.size < entries:
        raise ValueError("fewer LUT entries than the descriptor gives")
    return table[:entries].astype(np.int64), first_mapped


def _lut_data(item: Dataset, ds: Dataset) -> np.ndarray:
    """A LUT item's LUT Data, one entry a value: US values, or OW 16-bit words in the dataset's byte order."""
    data = item["LUTData"].value
    if isinstance(data, (bytes, bytearray)):
        return np.frombuffer(data, dtype="<u2" if ds.original_encoding[1] is not False else ">u2")
    return np.atleast_1d(np.asarray(data, dtype=np.int64))


def _presentation_lut(ds: Dataset, label: str) -> tuple[np.ndarray, int] | None:
    """The Presentation LUT Sequence's LUT as (its P-values, their bits), None without one (an empty sequence
    too). PS3.3 C.11.4.1: its input is the VOI output, from 0 (the first entry) to the number of entries - 1 (the
    last); its P-values run from 0, black, to 2^bits - 1, white. One that cannot be read so is an InputError: it
    sets the film's shades and polarity, which no guess should replace."""
    try:
        items = ds.get("PresentationLUTSequence")
        if not items:
            return None
        lut = _presentation_lut_of(items[0], ds)
    except Exception:  # noqa: BLE001 - a damaged sequence or item
        lut = "its item cannot be read"
    if isinstance(lut, str):
        raise InputError(
            f"{label}: the DICOM Presentation LUT Sequence cannot be used ({lut}), and it sets how the film is "
            "shown; export the film with Presentation LUT Shape IDENTITY or INVERSE instead, or as a PNG as a viewer "
            "shows it"
        )
    return lut


def _presentation_lut_of(item: Dataset, ds: Dataset) -> tuple[np.ndarray, int] | str:
    """A Presentation LUT item as (P-values, bits), or what makes it unusable: its descriptor must say a first input
    of 0 and 8 to 16 bits (the standard asks 10 to 16; 8 reads as clearly), its LUT Data hold one entry per input
    value, each at most 2^bits - 1."""
    if "LUTDescriptor" not in item or "LUTData" not in item:
        return "no LUT Descriptor or no LUT Data"
    descriptor = [int(v) & 0xFFFF for v in np.atleast_1d(item.LUTDescriptor)]  # all US, even if read as SS
    if len(descriptor) != 3:
        return f"a LUT Descriptor of {len(descriptor)} values, not 3"
    entries, first_mapped, bits = descriptor[0] or 2**16, descriptor[1], descriptor[2]
    if first_mapped != 0:
        return f"its first input value is {first_mapped}, not 0"
    if not 8 <= bits <= 16:
        return f"entries of {bits} bits, where a Presentation LUT's have 10 to 16"
    table = _lut_data(item, ds).astype(np.int64)
    if table.size != entries:
        return f"its LUT Descriptor gives {entries} entries, its LUT Data holds {table.size}"
    if entries < 2:
        return "a single entry"
    if table.min() < 0 or table.max() > 2**bits - 1:
        return f"an entry outside 0 to {2**bits - 1}, the {bits}-bit P-values"
    return table, bits


def _look_up(values: np.ndarray, table: np.ndarray, first_mapped: int) -> np.ndarray:
    """`values` through a LUT as pydicom maps them: below the first mapped value its first entry, past its end its
    last (in int64: pydicom subtracts in the values' own type)."""
    ints = values.astype(np.int64) if values.dtype.kind in "iu" else np.rint(values).astype(np.int64)
    return table[np.clip(ints - first_mapped, 0, table.size - 1)]


def _padding(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """Which integer stored `values` are padding: the Pixel Padding Value, and with a Pixel Padding Range Limit
    every value from one to the other (PS3.3 C.7.5.1.1.2); None when the header names none a pixel can hold."""
    if values.dtype.kind not in "iu":
        return None
    first = _stored_value(ds, "PixelPaddingValue", values.dtype)
    if first is None:
        return None
    limit = _stored_value(ds, "PixelPaddingRangeLimit", values.dtype)
    low, high = sorted((first, first if limit is None else limit))
    return (values >= low) & (values <= high)


def _stored_value(ds: Dataset, keyword: str, dtype: np.dtype) -> int | None:
    """A padding element as a stored value of `dtype`: for signed pixels a value written unsigned (US, as the
    two's complement of Bits Stored or Bits Allocated bits) is read back as signed; None when absent or out of
    range."""
    try:
        value = ds.get(keyword)
        if value is None or isinstance(value, (bytes, str)):
            return None
        value = int(value)
        bits_stored = int(ds.get("BitsStored", 0) or 0)
    except Exception:  # noqa: BLE001 - a damaged element: no padding
        return None
    info = np.iinfo(dtype)
    if info.min < 0 and 0 < bits_stored < info.bits and 2 ** (bits_stored - 1) <= value < 2 ** bits_stored:
        value -= 2 ** bits_stored
    elif info.min < 0 and info.max < value < 2 ** info.bits:
        value -= 2 ** info.bits
    return value if info.min <= value <= info.max else None


def _fill_padding(out: np.ndarray, padding: np.ndarray | None, real: np.ndarray | None) -> np.ndarray:
    """`out` with its `padding` entries set to the darkest of its `real` entries (0 when none are real): the frame
    of a collimated film reads as its darkest real tone, neither a bright frame nor a stretch of its range."""
    if padding is None or not padding.any():
        return out
    darkest = out[real].min() if real is not None and real.any() else 0
    out[padding] = darkest
    return out


_LOOKUP_PIXELS = 1 << 20


def _mono_to_uint8(raw: np.ndarray, ds: Dataset, present: np.ndarray | None,
                   presentation: tuple[np.ndarray, int] | None = None) -> np.ndarray:
    """`_dicom_mono` of `raw`, or of a table of every stored value when `present` marks those in the image (the
    range of a min-max scaling is theirs): the VOI output over its range (as `_voi`) onto 0..255, or through the
    `presentation` LUT: onto its entries, then its P-values onto 0..255."""
    values, lo, hi = _voi(raw, ds, present)
    if presentation is None:
        return _to_uint8(values, lo, hi)
    table, bits = presentation
    index = _to_levels(values, lo, hi, table.size - 1).astype(np.intp)
    return _to_uint8(table[index], 0.0, float(2**bits - 1))


def _window_count(ds: Dataset) -> int:
    """How many windows (Window Center/Width pairs) the header gives: 0 without both."""
    from pydicom.multival import MultiValue

    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None or center == "" or width == "":
        return 0
    return min(len(v) if isinstance(v, MultiValue) else 1 for v in (center, width))


def _one_tone(seen: np.ndarray) -> bool:
    """Whether a window leaves a film's pixels (`seen`) all one tone: a window that is not the film's (e.g. a soft
    tissue window on a film stored in other units), which would show a blank white or black picture."""
    finite = seen[np.isfinite(seen)]
    return finite.size > 1 and finite.min() == finite.max()


def _voi(raw: np.ndarray, ds: Dataset, present: np.ndarray | None) -> tuple[np.ndarray, float | None, float | None]:
    """`raw` through the Modality LUT and the VOI, with the VOI output's range (None, None: the min-max of all
    finite values): a VOI LUT's entries' own range, a window's full output range, 0..255 for unsigned 8-bit data kept
    as stored, else the min-max of the values `present` marks."""
    from pydicom.pixels import apply_modality_lut, apply_windowing

    if ds.get("ModalityLUTSequence"):
        values = _look_up(raw, *_lut(ds.ModalityLUTSequence[0], ds))
    else:
        values = np.asarray(apply_modality_lut(raw, ds))

    if ds.get("VOILUTSequence"):
        try:
            table, first_mapped = _lut(ds.VOILUTSequence[0], ds)
            return _look_up(values, table, first_mapped), float(table.min()), float(table.max())
        except Exception:  # noqa: BLE001 - bad VOI LUT: fall back to the window or min-max
            pass

    for index in range(_window_count(ds)):
        try:
            with np.errstate(all="ignore"):
                windowed = np.asarray(apply_windowing(values, ds, index=index), dtype=np.float64)
                # The window's output range, found by sending -inf/+inf through the same function.
                y_min, y_max = np.asarray(apply_windowing(np.array([-np.inf, np.inf]), ds, index=index),
                                          dtype=np.float64)
            if np.isfinite(y_min) and np.isfinite(y_max) and y_max != y_min and \
                    not _one_tone(windowed if present is None else windowed[present]):
                return windowed, float(y_min), float(y_max)
        except Exception:  # noqa: BLE001 - invalid window (e.g. width < 1): the next one, or min-max
            pass

    if raw.dtype == np.uint8 and int(ds.get("BitsStored", 8) or 8) == 8 and np.array_equal(values, raw):
        return raw, 0.0, 255.0
    if present is None:
        return values, None, None
    seen = values[present]
    finite = seen if seen.dtype.kind in "biu" else seen[np.isfinite(seen)]
    if finite.size == 0:
        return values, 0.0, 0.0  # nothing to scale by: all zeros
    return values, float(finite.min()), float(finite.max())
