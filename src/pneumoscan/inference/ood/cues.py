"""Cues measured on one file or image, without a fitted model: colourfulness, the share of pixels near black
or white (two tones), the pixel spread (blank) and the image statistics the image signal and the
upside-down rule compare; and the fixed cut-offs of the guard's rules."""
from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from pneumoscan.data.decode import DEFAULT_MAX_PIXELS, is_dicom

COLOUR_REFERENCE = 15.0  # Hasler & Suesstrunk: below 15 an image is "not colourful"
BLANK_SPREAD = 3.0  # pixel standard deviation (0-255) under which an image is blank
_LAYOUT = 8  # the standardised image's layout is summarised as LAYOUT x LAYOUT block means
# `python bench/guard_cues.py` (train films only; bench/results/guard_cues.md) measured the rules' constants:
# - the 5,216 train films decode to 113 to 256 grey levels (1st percentile 171), and as 16-bit PNG/TIFF and
#   12-bit DICOM (plain, windowed, MONOCHROME1) to at least as many; a 1-bit dithered film has 2.
MAX_GREY_LEVELS = 16
# - upside-down gain of unflipped train films: 99.9th percentile 0.13 (5-fold cross-fitted image model), 2 of
#   5,216 above 0.2 (0.04 %); of their 180-degree rotations 98.7 % and vertical flips 98.0 % are above 0.2.
UPSIDE_DOWN_GAIN = 0.2
# - share of a JPEG's pixels within TWO_TONE_BAND levels of black or white: train films at most 0.568 (99.9th
#   percentile 0.372; the same as JPEGs at twice the size), none above 0.75; 1-bit dithered (Floyd-Steinberg,
#   ordered) or thresholded films saved as JPEG (224 to 1,792 px, quality 30 to 95) at least 0.837.
TWO_TONE_BAND = 32  # an eighth of the 0-255 range at each end
TWO_TONE_SHARE = 0.75
TWO_TONE_MAX_PIXELS = 4096 * 4096  # larger JPEGs are measured at half size or less (the decoder's memory stays low)


def pixel_spread(images: np.ndarray) -> np.ndarray:
    """Standard deviation of each image's pixels (0-255)."""
    return np.asarray(images, dtype=np.float32).reshape(len(images), -1).std(1)


def colourfulness(source: str | os.PathLike | bytes | bytearray, size: int = 64) -> float:
    """Hasler-Suesstrunk colourfulness (0 = gray, 15 = barely, 109 = extremely colourful) of a raw file.

    Cheap: grayscale modes return 0 without decoding, JPEGs are decoded in draft mode at about
    `size` px. DICOM, unreadable or oversized files return 0.0 (the decoder reports those).
    """
    from PIL import Image

    try:
        data = source if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes()
        if is_dicom(bytes(data[:132])):
            return 0.0
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
    """Share of a JPEG's pixels, decoded at full size, within `TWO_TONE_BAND` grey levels of black or white.

    Only JPEGs are measured (lossless formats keep a black-and-white picture's grey levels, which the
    grey-level rule counts); those above `TWO_TONE_MAX_PIXELS` at the largest reduced size under it.
    Other, unreadable or oversized files return 0.0 (the decoder reports those).
    """
    from PIL import Image

    try:
        data = source if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes()
        if bytes(data[:3]) != b"\xff\xd8\xff":
            return 0.0
        with Image.open(io.BytesIO(data), formats=("JPEG", "MPO")) as im:
            width, height = im.size
            if width * height > DEFAULT_MAX_PIXELS:
                return 0.0
            scale = next((s for s in (1, 2, 4) if width * height <= TWO_TONE_MAX_PIXELS * s * s), 8)
            im.draft("L", (width // scale, height // scale))  # grey straight from the decoder
            histogram = (im if im.mode == "L" else im.convert("L")).histogram()  # convert would copy an L image
    except Exception:  # noqa: BLE001 - any unreadable input: the decoder raises the user-facing error
        return 0.0
    near = sum(histogram[:TWO_TONE_BAND]) + sum(histogram[-TWO_TONE_BAND:])
    return near / max(sum(histogram), 1)


def two_tone_share_of(sources: Sequence[str | os.PathLike]) -> np.ndarray:
    """`two_tone_share` of every file, in order (read in parallel)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return np.array(list(pool.map(two_tone_share, sources)), dtype=np.float64)


def image_statistics(images: np.ndarray) -> np.ndarray:
    """(N, S, S) uint8 -> (N, 11 + 64) float64: global statistics and the 8x8 standardised layout."""
    x = torch.from_numpy(np.array(images, dtype=np.uint8)).float().div_(255.0)
    if x.ndim != 3:
        raise ValueError(f"images must be (N, S, S) uint8, got shape {tuple(x.shape)}")
    n = x.shape[0]
    flat = x.reshape(n, -1)
    mean, std = flat.mean(1), flat.std(1, correction=0)
    soft = std + 0.02
    z = (x - mean[:, None, None]) / soft[:, None, None]
    zf = z.reshape(n, -1)
    bins = (flat * 31.999).long() + 32 * torch.arange(n)[:, None]
    hist = torch.bincount(bins.reshape(-1), minlength=32 * n).reshape(n, 32).float() / flat.shape[1]
    entropy = -(hist * torch.log(hist.clamp_min(1e-12))).sum(1) / np.log(32)
    grad = 0.5 * ((x[:, :, 1:] - x[:, :, :-1]).abs().mean((1, 2)) + (x[:, 1:] - x[:, :-1]).abs().mean((1, 2)))
    blur = nn.functional.avg_pool2d(x[:, None], 3, 1, 1, count_include_pad=False)[:, 0]
    fine = (x - blur).abs().mean((1, 2))
    mirror = (z * z.flip(2)).mean((1, 2)) / (zf.pow(2).mean(1) + 1e-6)
    layout = nn.functional.adaptive_avg_pool2d(z[:, None], _LAYOUT).reshape(n, -1)
    stats = torch.stack([
        mean, torch.log(soft), (flat < 0.04).float().mean(1).sqrt(), (flat > 0.96).float().mean(1).sqrt(), entropy,
        torch.log(grad + 1e-3), torch.log(grad / soft + 1e-3), torch.log(fine / soft + 1e-3), mirror,
        zf.pow(3).mean(1).clamp(-20, 20), torch.log(zf.pow(4).mean(1) + 1e-3),
    ], 1)
    return torch.cat([stats, layout], 1).double().numpy()



def flipped_statistics(stats: np.ndarray) -> list[np.ndarray]:
    """The `image_statistics` of each image's 180-degree rotation and of its vertical flip, from its own: the global
    statistics (left-right symmetry included) are the same for the flipped image, the layout is flipped."""
    n, cells = len(stats), _LAYOUT * _LAYOUT
    layout = stats[:, -cells:].reshape(n, _LAYOUT, _LAYOUT)
    return [np.concatenate([stats[:, :-cells], flip.reshape(n, cells)], 1)
            for flip in (layout[:, ::-1, ::-1], layout[:, ::-1, :])]
