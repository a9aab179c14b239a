"""Pixel arrays to 8-bit grey: the pixel limit every decoder checks before decoding, linear scaling onto
0..255 and colour to luminance, shared by the Pillow and DICOM readers."""
from __future__ import annotations

import numpy as np
from PIL import Image

from pneumoscan.errors import DecodeOutOfMemory, ImageTooLarge, InputError

DEFAULT_MAX_PIXELS: int = 150_000_000
"""Largest accepted width * height (decompression-bomb limit); override per call."""


def too_large(label: str, width: int, height: int, max_pixels: int) -> InputError:
    """The one-line refusal of a `width` x `height` image above `max_pixels`, named by `label`."""
    return ImageTooLarge(
        f"{label}: image too large ({width} x {height} = {width * height} pixels, "
        f"limit {max_pixels}); downscale it below the limit and try again"
    )


def out_of_memory(label: str, width: int | None = None, height: int | None = None, *,
                  alone: bool = False) -> DecodeOutOfMemory:
    """The one-line refusal of a film, named by `label` (`width` x `height` px when known), whose decoding ran short
    of memory: the machine's shortage, not the file's fault. `alone`: it ran short when decoded on its own, so fewer
    films at once would not help."""
    size = f"{width} x {height} px; " if width is not None and height is not None else ""
    when, ways = ((", even on its own", "close other programs, or downscale the film or leave it out of the data")
                  if alone else ("", "close other programs or give fewer films at once, or downscale the film"))
    return DecodeOutOfMemory(f"{label}: the machine ran out of memory decoding it{when} ({size}the file itself may be "
                             f"fine); {ways}, and try again", label, width, height)


def to_uint8(arr: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Scale linearly so lo -> 0 and hi -> 255 (default: finite min/max), clip, round to uint8.

    A constant image (hi == lo) and non-finite values become 0. Integer images of up to 16 bits are
    scaled in float32, which holds their values exactly in half the memory (uploads can be 150 megapixels).
    """
    return to_levels(arr, lo, hi, 255).astype(np.uint8)


def eight_bit_as_sixteen(values: np.ndarray) -> bool:
    """Whether integer pixels are an 8-bit film stored with 16 bits as `v * 257` (which maps 0..255 onto 0..65535,
    as Pillow and most tools widen 8-bit data): every value a multiple of 257 in 0..65535, so `v // 257` is the film
    exactly, where stretching its own range would change its contrast. Looks at a few million pixels at a time:
    real 16-bit data fails on its first."""
    if values.dtype.kind not in "iu" or values.size == 0:
        return False
    flat = values.reshape(-1)
    step = 1 << 22
    for start in range(0, flat.size, step):
        chunk = flat[start:start + step]
        if chunk.min() < 0 or chunk.max() > 65535 or (chunk % 257).any():
            return False
    return True


def to_levels(arr: np.ndarray, lo: float | None, hi: float | None, top: int) -> np.ndarray:
    """`to_uint8` onto the whole numbers 0..`top` (as floats) instead of 0..255: with `top` 65535 at most, the
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


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) array -> (H, W) uint8 luminance, via Pillow's RGB -> L conversion."""
    if rgb.dtype != np.uint8:
        rgb = to_uint8(rgb)
    return np.array(Image.fromarray(np.ascontiguousarray(rgb), "RGB").convert("L"), dtype=np.uint8)
