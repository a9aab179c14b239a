"""Cues of the input guard measured on a raw image file, before any model: how colourful it is and, for a JPEG, the
share of its pixels near black or white, its dither energy and its peak excess (an 8-bit lossless file: its dither
energy). The image cache keeps them with each file's decoded image."""
from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pneumoscan.data.decode import DEFAULT_MAX_PIXELS, is_dicom, read_grayscale
from pneumoscan.data.dicom import dicom_colour

TWO_TONE_BAND = 32  # an eighth of the 0-255 range at each end
TWO_TONE_SHARE = 0.75  # the guard's two-tone cut (`pneumoscan.inference.ood.cues`, where it is measured)
COLOUR_REFERENCE = 15.0  # Hasler & Suesstrunk: below 15 an image is "not colourful"
# larger JPEGs are measured at half size or less (the decoder's memory stays low); larger lossless files not at all
TWO_TONE_MAX_PIXELS = 4096 * 4096
LOSSLESS_MODES = ("L", "P", "RGB")  # 8 bits a sample, no alpha: the lossless files the JPEG cues measure too
DITHER_WINDOW = 512  # dither energy is measured on the central DITHER_WINDOW x DITHER_WINDOW pixels at most
# A film's grain rises as it is made smaller (bench/results/dither_cue.md, train films resized with LANCZOS and saved
# as JPEG quality 75 and 90: at most 8.02 at 128 px, 9.67 at 96 px, 12.57 at 64 px; 4-tone dithered copies at 128 px
# at least 17.85), so the dither energy is measured only on images at least DITHER_MIN_SIDE px on their shorter side.
DITHER_MIN_SIDE = 128
NOT_MEASURED = float("nan")  # the dither energy of a file the dithered rule does not apply to
PEAK_WINDOW = 8  # peak excess: a grey level's count against the mean count of the 2 x PEAK_WINDOW + 1 levels around it
# Peak excess leaves out the flat rows and columns along the edges (letterbox padding, a scanner frame): a row or column
# is flat when its grey levels span at most FLAT_RANGE (a flat border decodes from a JPEG exactly flat, bar the 8 x 8
# blocks it shares with the film; bench/results/few_grey_levels.md, padded and framed train films).
FLAT_RANGE = 4


NOT_DECODED: Any = object()
"""`colourfulness`'s `rgb` when the caller has not decoded the file (None means decoded, and not a colour DICOM)."""


def colourfulness(source: str | os.PathLike | bytes | bytearray, size: int = 64,
                  rgb: np.ndarray | None = NOT_DECODED) -> float:
    """Hasler-Suesstrunk colourfulness (0 = gray, 15 = barely, 109 = extremely colourful) of a raw file.

    Cheap: grayscale modes return 0 without decoding, JPEGs are decoded in draft mode at about
    `size` px. A colour DICOM (RGB, YBR, palette) is measured on its RGB pixels like a colour PNG: `rgb`, what
    `read_grayscale_and_rgb` gave when it already decoded the file (None for a grey DICOM, so 0 with no second
    read of its header), else decoded here; a grey one returns 0 from its header.
    Unreadable or oversized files return 0.0 (the decoder reports those).
    """
    from PIL import Image

    try:
        data = source if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes()
        if is_dicom(bytes(data[:132])):
            rgb = dicom_colour(data) if rgb is NOT_DECODED else rgb
            if rgb is None:
                return 0.0
            im = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
            im.thumbnail((size, size))
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        else:
            with Image.open(io.BytesIO(data), formats=("JPEG", "PNG", "TIFF", "BMP")) as im:
                if im.mode not in ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                    return 0.0
                if im.size[0] * im.size[1] > DEFAULT_MAX_PIXELS:
                    return 0.0
                im.draft("RGB", (size, size))
                im.thumbnail((size, size))
                rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
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


def jpeg_cues(source: str | os.PathLike | bytes | bytearray,
              gray: np.ndarray | None = None) -> tuple[float, float, float]:
    """A JPEG's two-tone share, dither energy (`dither_energy`) and peak excess (`peak_excess`, of the image without
    its flat edge rows and columns: a letterbox or frame of one grey level is no posterised picture), from one decode
    at full size.

    Two-tone share: the share of its pixels within `TWO_TONE_BAND` grey levels of black or white. JPEGs above
    `TWO_TONE_MAX_PIXELS` are measured at the largest reduced size under it. An 8-bit PNG, TIFF or BMP (mode
    `LOSSLESS_MODES`, up to `TWO_TONE_MAX_PIXELS`: a dithered JPEG's pixels, or a resized copy of a dithered
    picture, have many grey levels too) gets its dither energy alone, unless more than `TWO_TONE_SHARE` of its
    pixels are within `TWO_TONE_BAND` levels of black or white (a page of text or line art is grainy at its strokes:
    such files are left to the other signals); its two-tone share is 0.0 (a page of black text is no film to send
    again) and its peak excess 0.0 (the pixels of a low-quality JPEG keep the encoder's comb of peaks, which only the
    JPEG's own header tells apart). The dither
    energy is `NOT_MEASURED` (NaN) for an image under `DITHER_MIN_SIDE` px on its shorter side, whose grain is a small
    film's. Other files (16-bit, 1-bit, with alpha, DICOM), unreadable or oversized ones return (0.0, NaN, 0.0) (the
    decoder reports those). `gray`: the file's grey pixels as the decoder gave them (`read_grayscale`), measured
    for a lossless file instead of decoding it again when they have its size.
    """
    from PIL import Image

    try:
        data = source if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes()
        if bytes(data[:3]) != b"\xff\xd8\xff":
            return _lossless_cues(data, gray)
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
            peaks = peak_excess(_unframed_histogram(gray, histogram), step)
    except Exception:  # noqa: BLE001 - any unreadable input: the decoder raises the user-facing error
        return 0.0, NOT_MEASURED, 0.0
    return _two_tone(histogram), energy, peaks


def _unframed_histogram(gray: Any, histogram: list[int]) -> list[int]:
    """The 256-level histogram of a loaded grey (mode L) Pillow image without its flat edge rows and columns
    (`FLAT_RANGE`), whose one level would otherwise be a sharp peak; `histogram`, the whole image's, when it has
    none."""
    width, height = gray.size
    edges = ((0, 0, width, 1), (0, height - 1, width, height), (0, 0, 1, height), (width - 1, 0, width, height))
    if all(high - low > FLAT_RANGE for low, high in (gray.crop(box).getextrema() for box in edges)):
        return histogram  # most films: four lines read, no copy of the image
    pixels = np.asarray(gray)
    top, bottom = _unflat_span(pixels.max(axis=1), pixels.min(axis=1))
    if top >= bottom:
        return histogram  # a blank image: the guard's blank rule speaks of it
    left, right = _unflat_span(pixels[top:bottom].max(axis=0), pixels[top:bottom].min(axis=0))
    return gray.crop((left, top, right, bottom)).histogram()


def _unflat_span(highs: np.ndarray, lows: np.ndarray) -> tuple[int, int]:
    """The (start, stop) of the lines between the flat ones at either end, from each line's highest and lowest grey
    level."""
    busy = np.flatnonzero(highs.astype(np.int16) - lows > FLAT_RANGE)
    return (int(busy[0]), int(busy[-1]) + 1) if len(busy) else (0, 0)


def _lossless_cues(data: bytes | bytearray | memoryview,
                   decoded: np.ndarray | None = None) -> tuple[float, float, float]:
    """`jpeg_cues` of an 8-bit PNG, TIFF or BMP: its dither energy, of its `decoded` grey pixels when they have its
    size (else decoded here by `read_grayscale`, to the same pixels); two-tone share and peak excess 0.0."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "TIFF", "BMP")) as im:
            if im.mode not in LOSSLESS_MODES or im.size[0] * im.size[1] > TWO_TONE_MAX_PIXELS:
                return 0.0, NOT_MEASURED, 0.0
            stored = im.size[::-1]
        if decoded is None or decoded.shape != stored:
            # the decoder's own pixels (a transparency entry composited on black, EXIF orientation), as every caller
            # that passes them measures
            decoded = read_grayscale(bytes(data))
    except Exception:  # noqa: BLE001 - any other or unreadable input: the decoder raises the user-facing error
        return 0.0, NOT_MEASURED, 0.0
    if min(decoded.shape) < DITHER_MIN_SIDE or _near_black_or_white(decoded) > TWO_TONE_SHARE:
        return 0.0, NOT_MEASURED, 0.0
    return 0.0, dither_energy(decoded), 0.0


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
    counts = np.asarray(histogram, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return 0.0
    if step > 1:
        counts = np.convolve(np.pad(counts, (step // 2, step - 1 - step // 2), mode="edge"), np.ones(step) / step,
                             "valid")
    width = 2 * PEAK_WINDOW + 1
    around = np.convolve(np.pad(counts, PEAK_WINDOW, mode="edge"), np.ones(width) / width, "valid")
    return float(np.maximum(counts - 2 * around, 0.0).sum() / total)


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
