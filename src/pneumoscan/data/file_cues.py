"""Cues of the input guard measured on a raw image file, before any model: how colourful it is and, for a JPEG, the
share of its pixels near black or white, its dither energy and its peak excess (an 8-bit lossless file: its dither
energy). The image cache keeps them with each file's decoded image."""
from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from pneumoscan.data.decode import DEFAULT_MAX_PIXELS, eight_bit_film, file_label, is_dicom, read_grayscale
from pneumoscan.data.deep_png import deep_colour_png, deep_png_rgb, deep_png_samples
from pneumoscan.data.deep_tiff import deep_colour_tiff, deep_tiff_samples
from pneumoscan.data.dicom import dicom_colour
from pneumoscan.data.pixels import out_of_memory
from pneumoscan.errors import DecodeOutOfMemory

if TYPE_CHECKING:
    from PIL import Image

TWO_TONE_BAND = 32  # an eighth of the 0-255 range at each end
TWO_TONE_SHARE = 0.75  # the guard's two-tone cut (`pneumoscan.inference.ood.cues`, where it is measured)
COLOUR_REFERENCE = 15.0  # Hasler & Suesstrunk: below 15 an image is "not colourful"
# larger JPEGs are measured at half size or less (the decoder's memory stays low); larger lossless files not at all
TWO_TONE_MAX_PIXELS = 4096 * 4096
LOSSLESS_MODES = ("L", "P", "RGB")  # 8 bits a sample, no alpha: the lossless files the JPEG cues measure too
SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I")  # Pillow's modes of a 16-bit grey PNG or TIFF
DITHER_WINDOW = 512  # dither energy is measured on the central DITHER_WINDOW x DITHER_WINDOW pixels at most
# A film's grain rises as it is made smaller (bench/results/dither_cue.md, train films resized with LANCZOS and saved
# as JPEG quality 75 and 90: at most 8.02 at 128 px, 9.67 at 96 px, 12.57 at 64 px; 4-tone dithered copies at 128 px
# at least 17.85), so the dither energy is measured only on images at least DITHER_MIN_SIDE px on their shorter side.
DITHER_MIN_SIDE = 128
NOT_MEASURED = float("nan")  # the dither energy of a file the dithered rule does not apply to
PEAK_WINDOW = 8  # peak excess: a grey level's count against the mean count of the 2 x PEAK_WINDOW + 1 levels around it
# Peak excess leaves out the flat rows and columns along the edges (letterbox padding, a scanner frame): a row or column
# is flat when its grey levels have a standard deviation of at most FLAT_SPREAD (a flat border decodes from a JPEG
# exactly flat, bar the 8 x 8 blocks it shares with the film, and a scanner's noise is a level or two;
# bench/results/few_grey_levels.md, padded and framed train films). Up to EDGE_LINES busy lines at the very edge (a
# ruler or caption line, a resampling edge) are passed over to reach the flat ones.
FLAT_SPREAD = 2.0
EDGE_LINES = 3
# A posterised picture keeps its tones in the middle too, a border or a collimator's mask (round, or cut at the corners)
# lies along the edges: the grey levels in peaks that are EDGE_RATIO times rarer in the central CENTRE_SHARE of the
# image (on each side) than in all of it are left out of the peak excess, with their pixels, unless the rest of the
# image has peaks itself (its peak excess above POSTERISED_REST; the train films' 99.9th percentile is 0.012 as stored,
# measured by hand at f7b69d5, no bench file): a posterised film's background is one of its tones, and leaving it out
# lost posterised copies (every 20th train film at 224 px, 6 adaptive tones at quality 75: 174 of 261 caught with 0.08,
# 217 with 0.03, 228 before).
CENTRE_SHARE = 0.5
EDGE_RATIO = 4.0
POSTERISED_REST = 0.03


NOT_DECODED: Any = object()
"""`colourfulness`'s `rgb` when the caller has not decoded the file (None means decoded, and not a colour DICOM)."""


def colourfulness(source: str | os.PathLike | bytes | bytearray, size: int = 64,
                  rgb: np.ndarray | None = NOT_DECODED, name: str | None = None) -> float:
    """Hasler-Suesstrunk colourfulness (0 = gray, 15 = barely, 109 = extremely colourful) of a raw file.

    Cheap: grayscale modes return 0 without decoding, JPEGs are decoded in draft mode at about
    `size` px. A 16-bit colour PNG or TIFF is measured on its full samples as the decoder maps them (`deep_png_rgb`),
    not Pillow's 8-bit read of their high bytes: `rgb`, the colour `read_grayscale_and_rgb` gave from its decode, else
    decoded here. A colour DICOM (RGB, YBR, palette) is measured on its RGB pixels like a
    colour PNG: `rgb`, what
    `read_grayscale_and_rgb` gave when it already decoded the file (None for a grey DICOM, so 0 with no second
    read of its header), else decoded here; a grey one returns 0 from its header.
    Unreadable or oversized files return 0.0 (the decoder reports those); memory running short is the file's
    DecodeOutOfMemory, named `name` (else a path's name): a colour file read as 0 would pass the guard's colour
    check. Unnamed bytes re-raise the MemoryError, for the caller's `reading_film` to name the film.
    """
    from PIL import Image

    unnamed = name is None and isinstance(source, (bytes, bytearray, memoryview))
    label = None if unnamed else file_label(source, name)
    try:
        data = source if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes()
        if is_dicom(bytes(data[:132])):
            rgb = dicom_colour(data, label=label) if rgb is NOT_DECODED else rgb
            if rgb is None:
                return 0.0
        elif rgb is NOT_DECODED or rgb is None:  # else a 16-bit colour PNG's colour, as the decoder gave it
            rgb = None
            with Image.open(io.BytesIO(data), formats=("JPEG", "PNG", "TIFF", "BMP")) as im:
                if im.mode not in ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                    return 0.0
                if im.size[0] * im.size[1] > DEFAULT_MAX_PIXELS:
                    return 0.0
                if im.format == "PNG" and deep_colour_png(data) is not None:
                    # Pillow reads each sample's high byte: a 12-bit colour overlay would read as 0..15, grey
                    rgb = deep_png_rgb(deep_png_samples(bytes(data)), im.info.get("transparency"), 4 * size)
                elif deep_colour_tiff(im) is not None:
                    rgb = deep_png_rgb(deep_tiff_samples(bytes(data)), None, 4 * size)
                else:
                    im.draft("RGB", (size, size))
                    im.thumbnail((size, size))
                    rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        if rgb is not None:
            im = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
            im.thumbnail((size, size))
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
    except MemoryError as exc:
        if label is None:
            raise
        raise out_of_memory(label) from exc
    except DecodeOutOfMemory:
        raise
    except Exception:  # noqa: BLE001 - any unreadable input: the decoder raises the user-facing error
        return 0.0
    rgb = rgba[..., :3] * (rgba[..., 3:] / 255.0)  # composite on black, as the decoder does
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def colourfulness_of(sources: Sequence[str | os.PathLike]) -> np.ndarray:
    """`colourfulness` of every file, in order (read in parallel)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return np.array(list(pool.map(colourfulness, sources)), dtype=np.float64)


def two_tone_share(source: str | os.PathLike | bytes | bytearray) -> float:
    """Share of a JPEG's pixels, decoded at full size, within `TWO_TONE_BAND` grey levels of black or white
    (`jpeg_cues`); 0.0 for other, unreadable or oversized files."""
    return jpeg_cues(source)[0]


def jpeg_cues(source: str | os.PathLike | bytes | bytearray, gray: np.ndarray | None = None,
              deep: bool | None = None) -> tuple[float, float, float]:
    """A JPEG's two-tone share, dither energy (`dither_energy`) and peak excess (`peak_excess`, of the image without
    its flat edge rows and columns and the levels of peaks along its edges alone, `_picture_excess`: a letterbox,
    frame or collimator's mask is no posterised picture), from one decode at full size.

    Two-tone share: the share of its pixels within `TWO_TONE_BAND` grey levels of black or white. JPEGs above
    `TWO_TONE_MAX_PIXELS` are measured at the largest reduced size under it. An 8-bit PNG, TIFF or BMP (mode
    `LOSSLESS_MODES`, up to `TWO_TONE_MAX_PIXELS`: a dithered JPEG's pixels, or a resized copy of a dithered
    picture, have many grey levels too) gets its dither energy alone, unless more than `TWO_TONE_SHARE` of its
    pixels are within `TWO_TONE_BAND` levels of black or white (a page of text or line art is grainy at its strokes:
    such files are left to the other signals); its two-tone share is 0.0 (a page of black text is no film to send
    again) and its peak excess 0.0 (the pixels of a low-quality JPEG keep the encoder's comb of peaks, which only the
    JPEG's own header tells apart). The dither
    energy is `NOT_MEASURED` (NaN) for an image under `DITHER_MIN_SIDE` px on its shorter side, whose grain is a small
    film's. An 8-bit film saved as a 16-bit grey or colour file (every sample v * 257, `eight_bit_as_sixteen`) is
    measured as its 8-bit file, on the 8-bit pixels the decoder reads. Other files (16-bit data, which the decoder
    stretches; 1-bit, with alpha, DICOM), unreadable or oversized ones return (0.0, NaN, 0.0) (the decoder reports
    those). `gray`: the file's grey pixels as the
    decoder gave them (`read_film`), measured for a lossless file instead of decoding it again when they have its
    size; `deep`, its `Film.deep`, which a 16-bit file's `gray` needs (else it is decoded again).
    """
    from PIL import Image

    try:
        data = source if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes()
        if bytes(data[:3]) != b"\xff\xd8\xff":
            return _lossless_cues(data, gray, deep)
        with Image.open(io.BytesIO(data), formats=("JPEG", "MPO")) as im:
            width, height = im.size
            if width * height > DEFAULT_MAX_PIXELS:
                return 0.0, NOT_MEASURED, 0.0
            step = _dc_step(im)
            scale = next((s for s in (1, 2, 4) if width * height <= TWO_TONE_MAX_PIXELS * s * s), 8)
            im.draft("L", (width // scale, height // scale))  # grey straight from the decoder
            gray = im if im.mode == "L" else im.convert("L")  # convert would copy an L image
            histogram = gray.histogram()
            energy = dither_energy(np.asarray(gray.crop(_central(gray.size)))) \
                if min(width, height) >= DITHER_MIN_SIDE else NOT_MEASURED  # a copy of the window alone
            peaks = _picture_excess(gray, histogram, step)
    except MemoryError:  # the machine's shortage, not an unreadable file: the caller's `reading_film` names the film
        raise
    except Exception:  # noqa: BLE001 - any unreadable input: the decoder raises the user-facing error
        return 0.0, NOT_MEASURED, 0.0
    return _two_tone(histogram), energy, peaks


def _picture_excess(gray: Any, histogram: list[int], step: int) -> float:
    """The peak excess of a loaded grey (mode L) Pillow image whose whole `histogram` is given, of its unframed box
    (`_unframed_box`) and without the levels in peaks that lie along its edges (`EDGE_RATIO`), so that neither a
    border nor a mask is read as a posterised picture's flat tones."""
    box = _unframed_box(gray)
    whole = histogram if box == (0, 0, *gray.size) else gray.crop(box).histogram()
    counts, excess = _level_excess(whole, step)
    if not excess.any():
        return 0.0  # most films: no peak at all
    left, top, right, bottom = box
    margin_x, margin_y = (round((1 - CENTRE_SHARE) / 2 * n) for n in (right - left, bottom - top))
    middle, _ = _level_excess(gray.crop((left + margin_x, top + margin_y, right - margin_x,
                                         bottom - margin_y)).histogram(), step)
    edge = (excess > 0) & (counts / counts.sum() > EDGE_RATIO * middle / max(middle.sum(), 1))
    if not edge.any() or not middle.sum():
        return peak_excess(whole, step)
    kept = counts[~edge].sum()
    rest = float(excess[~edge].sum() / kept) if kept else 0.0
    return peak_excess(whole, step) if rest > POSTERISED_REST else rest


def _unframed_box(gray: Any) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box of a loaded grey (mode L) Pillow image without its flat edge rows and
    columns (`FLAT_SPREAD`, `EDGE_LINES`), whose one level would otherwise be a sharp peak: the whole image when it
    has none. Rows and columns are trimmed in turn until neither changes, as a frame inside a frame (a letterbox
    inside a pillarbox) has lines that cross the outer one."""
    width, height = gray.size
    whole = (0, 0, width, height)
    band = EDGE_LINES + 1
    edges = ((0, 0, width, band), (0, height - band, width, height), (0, 0, band, height),
             (width - band, 0, width, height))
    if not any(_flat_lines(np.asarray(gray.crop(edge)), axis).any()
               for edge, axis in zip(edges, (1, 1, 0, 0))):
        return whole  # most films: a few lines along each edge read, no copy of the image
    pixels = np.asarray(gray)
    box = whole
    for _ in range(4):
        left, top, right, bottom = box
        rows = _unflat_span(_flat_lines(pixels[top:bottom, left:right], 1))
        columns = _unflat_span(_flat_lines(pixels[top + rows[0]:top + rows[1], left:right], 0))
        trimmed = (left + columns[0], top + rows[0], left + columns[1], top + rows[1])
        if trimmed[2] - trimmed[0] < band or trimmed[3] - trimmed[1] < band:
            return whole  # a blank image: the guard's blank rule speaks of it
        if trimmed == box:
            break
        box = trimmed
    return box


def _flat_lines(pixels: np.ndarray, axis: int) -> np.ndarray:
    """Whether each row (`axis` 1) or column (`axis` 0) of a grey image (H, W) is flat: a standard deviation of at
    most FLAT_SPREAD."""
    n = pixels.shape[axis]
    if n == 0:
        return np.zeros(pixels.shape[1 - axis], dtype=bool)
    mean = pixels.sum(axis=axis, dtype=np.float64) / n
    squares = np.square(pixels, dtype=np.uint16).sum(axis=axis, dtype=np.float64) / n
    return squares - mean * mean <= FLAT_SPREAD ** 2


def _unflat_span(flat: np.ndarray) -> tuple[int, int]:
    """The (start, stop) of the lines between the flat ones at either end (`_edge_run`), from whether each is flat."""
    start = _edge_run(flat)
    return start, len(flat) - _edge_run(flat[::-1][: len(flat) - start])


def _edge_run(flat: np.ndarray) -> int:
    """How many lines from the start of `flat` are left out: a run of flat lines from the edge or after up to
    EDGE_LINES busy ones; 0 when none of the first EDGE_LINES + 1 lines is flat."""
    first = np.flatnonzero(flat[: EDGE_LINES + 1])
    if not len(first):
        return 0
    busy = np.flatnonzero(~flat[first[0]:])
    return int(first[0] + busy[0]) if len(busy) else len(flat)


def _lossless_cues(data: bytes | bytearray | memoryview, decoded: np.ndarray | None = None,
                   deep: bool | None = None) -> tuple[float, float, float]:
    """`jpeg_cues` of an 8-bit PNG, TIFF or BMP, or a 16-bit one of an 8-bit film (v * 257): its dither energy, of
    its `decoded` grey pixels when they have its size, turned as its EXIF orientation turns it, and of a 16-bit file
    when the decoder did not map its data by their range (`deep`, `Film.deep`; else read here by `eight_bit_film`,
    to the same pixels, and 16-bit data told from its samples without stretching them); two-tone share and peak excess 0.0. Memory running short is a MemoryError, for the caller's `reading_film`."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "TIFF", "BMP")) as im:
            colour16 = ((im.format == "PNG" and deep_colour_png(data) is not None)  # Pillow reads its high bytes
                        or deep_colour_tiff(im) is not None)
            if im.size[0] * im.size[1] > TWO_TONE_MAX_PIXELS or (
                    im.mode not in LOSSLESS_MODES + SIXTEEN_BIT_GREY if not colour16 else im.mode != "RGB"):
                return 0.0, NOT_MEASURED, 0.0
            sixteen = colour16 or im.mode in SIXTEEN_BIT_GREY
            stored = im.size[::-1]
            if decoded is not None and decoded.shape == stored[::-1] != stored and _quarter_turned(im):
                stored = decoded.shape  # the decoder turned it by its EXIF orientation
        if decoded is None or decoded.shape != stored or (sixteen and deep is None):
            # the decoder's own pixels (a transparency entry composited on black, EXIF orientation), as every caller
            # that passes them measures, and whether it stretched 16-bit data to read them (`deep`)
            if sixteen:  # the decoder's pixels of an 8-bit film saved so; other data is stretched, not measured
                decoded, deep = eight_bit_film(bytes(data)), False
                if decoded is None:
                    return 0.0, NOT_MEASURED, 0.0
            else:
                decoded = read_grayscale(bytes(data))
        if sixteen and deep:
            return 0.0, NOT_MEASURED, 0.0  # 16-bit data mapped by its range: no 8-bit file's grain
    except MemoryError:  # the machine's shortage, not an unreadable file: the caller's `reading_film` names the film
        raise
    except DecodeOutOfMemory as exc:  # the same shortage in the decoder, which knows the bytes alone as '<upload>'
        raise MemoryError(str(exc)) from exc
    except Exception:  # noqa: BLE001 - any other or unreadable input: the decoder raises the user-facing error
        return 0.0, NOT_MEASURED, 0.0
    if min(decoded.shape) < DITHER_MIN_SIDE or _near_black_or_white(decoded) > TWO_TONE_SHARE:
        return 0.0, NOT_MEASURED, 0.0
    return 0.0, dither_energy(decoded), 0.0


def _quarter_turned(im: Image.Image) -> bool:
    """Whether the EXIF orientation of the open image `im` (5 to 8) turns it a quarter, swapping its axes (a PNG
    whose EXIF comes after its pixels is decoded to tell)."""
    try:
        return im.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Exception:  # noqa: BLE001 - broken EXIF: the decoder keeps the stored orientation too
        return False


def _near_black_or_white(gray: np.ndarray) -> float:
    """`_two_tone` of a grey image (H, W) itself."""
    near = np.count_nonzero(gray < TWO_TONE_BAND) + np.count_nonzero(gray >= 256 - TWO_TONE_BAND)
    return near / max(gray.size, 1)


def _two_tone(histogram: Sequence[int]) -> float:
    """The share of the pixels of a 256-level `histogram` within `TWO_TONE_BAND` levels of black or white."""
    near = sum(histogram[:TWO_TONE_BAND]) + sum(histogram[-TWO_TONE_BAND:])
    return near / max(sum(histogram), 1)


def peak_excess(histogram: Sequence[int], step: int = 1) -> float:
    """The share of an image's pixels (of its 256-level `histogram`) in sharp peaks: each level's count above twice
    the mean count of the 2 x `PEAK_WINDOW` + 1 levels around it (the ends repeated), summed, over all pixels. A
    picture of a few flat tones (posterised, or a palette without dithering) keeps its tones as peaks through JPEG
    noise; a film's histogram is smooth. `step`: the grey levels between the block means a JPEG can hold (its DC
    quantisation step / 8, `_dc_step`), whose comb of peaks (10 levels apart at quality 10) is the encoder's:
    the histogram is averaged over `step` levels first; 1 for a lossless file."""
    total = sum(histogram)
    return float(_level_excess(histogram, step)[1].sum() / total) if total else 0.0


def _level_excess(histogram: Sequence[int], step: int) -> tuple[np.ndarray, np.ndarray]:
    """`peak_excess`' counts of each level (averaged over `step` levels) and each level's count above twice the mean
    count around it."""
    counts = np.asarray(histogram, dtype=np.float64)
    if step > 1:
        counts = np.convolve(np.pad(counts, (step // 2, step - 1 - step // 2), mode="edge"), np.ones(step) / step,
                             "valid")
    width = 2 * PEAK_WINDOW + 1
    around = np.convolve(np.pad(counts, PEAK_WINDOW, mode="edge"), np.ones(width) / width, "valid")
    return counts, np.maximum(counts - 2 * around, 0.0)


def _dc_step(jpeg: Any) -> int:
    """The grey levels between the block means an opened JPEG can hold: its luminance DC quantiser / 8, rounded (1 at
    quality 75 and above, 2 at 50, 10 at 10, in Pillow's tables); 1 when it does not say."""
    try:
        return max(1, round(jpeg.quantization[0][0] / 8))
    except (AttributeError, KeyError, IndexError, TypeError):
        return 1


def dither_energy(gray: np.ndarray) -> float:
    """Mean |pixel - the mean of its 2 x 2 block| (0-255) of a grey image (H, W), on its central `DITHER_WINDOW`
    pixels at most: the pixel-to-pixel grain that dithering adds (a few grey levels mixed pixel by pixel); 0.0 for
    an image under 2 px on a side."""
    left, top, right, bottom = _central(gray.shape[::-1])
    a = np.asarray(gray[top:bottom, left:right], dtype=np.int16)  # 4 x 255 fits, and is fast
    if a.shape[0] < 2 or a.shape[1] < 2:
        return 0.0
    four_times = 3 * a[:-1, :-1]  # becomes 4 x (pixel - its block's mean), in place
    four_times -= a[1:, :-1]
    four_times -= a[:-1, 1:]
    four_times -= a[1:, 1:]
    np.abs(four_times, out=four_times)
    return float(four_times.sum(dtype=np.int64) / four_times.size / 4)


def two_tone_share_of(sources: Sequence[str | os.PathLike]) -> np.ndarray:
    """`two_tone_share` of every file, in order (read in parallel)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return np.array(list(pool.map(two_tone_share, sources)), dtype=np.float64)


def _central(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box of the central `DITHER_WINDOW` pixels at most of an image of (width,
    height)."""
    width, height = (min(n, DITHER_WINDOW) for n in size)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return left, top, left + width, top + height
