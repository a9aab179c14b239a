"""Cues measured on one file or image, without a fitted model: colourfulness, the share of pixels near black
or white (two tones), the dither energy, the pixel spread (blank) and the image statistics the image signal
and the upside-down rule compare; and the fixed cut-offs of the guard's rules."""
from __future__ import annotations

import numpy as np

from pneumoscan.data.file_cues import (  # measured on the file, so the image cache keeps them too
    COLOUR_REFERENCE,
    DITHER_MIN_SIDE,
    DITHER_WINDOW,
    TWO_TONE_BAND,
    TWO_TONE_MAX_PIXELS,
    TWO_TONE_SHARE,
    PEAK_WINDOW,
    colourfulness,
    colourfulness_of,
    dither_energy,
    jpeg_cues,
    peak_excess,
    two_tone_share,
    two_tone_share_of,
)

BLANK_SPREAD = 3.0  # pixel standard deviation (0-255) under which an image is blank
_LAYOUT = 8  # the standardised image's layout is summarised as LAYOUT x LAYOUT block means
# `python bench/guard_cues.py` (train films only; bench/results/guard_cues.md) measured the rules' constants:
# - the 5,216 train films decode to 113 to 256 grey levels (1st percentile 171), and as 16-bit PNG/TIFF and
#   12-bit DICOM (plain, windowed, MONOCHROME1) to at least as many; a 1-bit dithered film has 2.
MAX_GREY_LEVELS = 16
# - upside-down gain of unflipped train films: 99.9th percentile 0.13 (5-fold cross-fitted image model), 2 of
#   5,216 above 0.2 (0.04 %); of their 180-degree rotations 98.7 % and vertical flips 98.0 % are above 0.2.
UPSIDE_DOWN_GAIN = 0.2
# - share of a JPEG's pixels within TWO_TONE_BAND (32) levels of black or white: train films at most 0.568 (99.9th
#   percentile 0.372; the same as JPEGs at twice the size), none above 0.75; 1-bit dithered (Floyd-Steinberg,
#   ordered) or thresholded films saved as JPEG (224 to 1,792 px, quality 30 to 95) at least 0.837. The cut,
#   TWO_TONE_SHARE = 0.75, lives in `pneumoscan.data.file_cues`, whose lossless cues read it too.
# `python bench/dither_cue.py` (bench/results/dither_cue.md): dither energy (`dither_energy`) of the 5,216 train
# films at most 5.22 (99.9th percentile 4.72; 5.29 at JPEG quality 10); films Floyd-Steinberg dithered to 4 evenly
# spaced tones and saved as JPEG (224 and 896 px, quality 30 to 95) at least 16.4. The cut leaves more than twice
# the films' largest for noisier originals; 4 tones of an adaptive palette or 8 tones often fall under it. Smaller
# films are grainier (at most 12.57 at 64 px): only files of at least DITHER_MIN_SIDE px are measured. 8-bit PNG, TIFF
# and BMP files are measured too (train films as 8-bit PNG: at most 5.22 as stored, 7.88 at 128 px). A guard fitted
# on JPEGs grainier than the train films (median above 3; theirs 2.73) refuses above 4 times their median instead
# (`fit.fitted_dither_cut`, meta dither_cut).
DITHER_ENERGY = 12.0
# `python bench/few_grey_levels.py` (bench/results/few_grey_levels.md): peak excess (`peak_excess`) of the 5,216 train
# films at most 0.080, as stored and as JPEG quality 10 to 95 or twice the size, flat edge lines left out (the bundled
# sample's at most 0.042); 0.072 with the levels of peaks along the edges alone left out too (`file_cues._picture_excess`;
# the sample's 0.0002; measured by hand at e406b40, not yet in few_grey_levels.md: as stored 0.0716 and 0 at f7b69d5);
# films posterised to the 4 tones of an adaptive palette (`Image.quantize(4)`, no dither) and saved as JPEG at least
# 0.19 (224 px, quality 75; 0.09 at quality 30). Such copies change the shipped model's label of 26 to 30 % of films
# at 224 px and 11 to 14 % at 896 px, re-encoding the film none.
PEAK_EXCESS = 0.15


def pixel_spread(images: np.ndarray) -> np.ndarray:
    """Standard deviation of each image's pixels (0-255)."""
    return np.asarray(images, dtype=np.float32).reshape(len(images), -1).std(1)


def image_statistics(images: np.ndarray) -> np.ndarray:
    """(N, S, S) uint8 -> (N, 11 + 64) float64: global statistics and the 8x8 standardised layout. Pixels in float32
    (as PyTorch computed them before: the image and layout statistics of a film agree with those to about 1e-6),
    averages accumulated in float64; the pixel counts (mean, spread, dark and bright shares, histogram) are exact."""
    pixels = np.asarray(images)
    if pixels.ndim != 3:
        raise ValueError(f"images must be (N, S, S) uint8, got shape {tuple(pixels.shape)}")
    pixels = pixels.astype(np.uint8, copy=False)
    n = len(pixels)
    counts = _value_counts(pixels)  # (N, 256)
    values = np.arange(256, dtype=np.float32) / np.float32(255.0)
    share = counts / pixels[0].size
    mean = share @ values.astype(np.float64)
    std = np.sqrt(np.maximum(share @ values.astype(np.float64) ** 2 - mean**2, 0.0))
    soft = std + 0.02
    hist = share @ np.eye(32)[(values * np.float32(31.999)).astype(np.int64)]
    entropy = -(hist * np.log(np.maximum(hist, 1e-12))).sum(1) / np.log(32)
    x = values[pixels]
    grad = 0.5 * (_mean(np.abs(x[:, :, 1:] - x[:, :, :-1])) + _mean(np.abs(x[:, 1:] - x[:, :-1])))
    fine = _mean(np.abs(x - _box_blur(x)))
    z = (x - mean.astype(np.float32)[:, None, None]) / soft.astype(np.float32)[:, None, None]
    square = z * z
    mirror = _mean(z * z[:, :, ::-1]) / (_mean(square) + 1e-6)
    stats = np.stack([
        mean, np.log(soft), np.sqrt(share @ (values < np.float32(0.04))), np.sqrt(share @ (values > np.float32(0.96))),
        entropy, np.log(grad + 1e-3), np.log(grad / soft + 1e-3), np.log(fine / soft + 1e-3), mirror,
        np.clip(_mean(square * z), -20, 20), np.log(_mean(square * square) + 1e-3),
    ], 1)
    return np.concatenate([stats, _block_means(z, _LAYOUT)], 1)


def _value_counts(pixels: np.ndarray) -> np.ndarray:
    """How many pixels of each uint8 image (N, S, S) hold each of the 256 values: (N, 256) int64."""
    offsets = (np.arange(len(pixels), dtype=np.int64) * 256)[:, None]
    flat = pixels.reshape(len(pixels), -1)
    return np.bincount((flat + offsets).ravel(), minlength=256 * len(pixels)).reshape(len(pixels), 256)


def _mean(x: np.ndarray) -> np.ndarray:
    """The mean of each image (N, ...) of float32 values, accumulated in float64."""
    return x.reshape(len(x), -1).mean(1, dtype=np.float64)


def _box_blur(x: np.ndarray) -> np.ndarray:
    """The mean of each pixel's 3x3 neighbourhood within the image (edges and corners average the pixels there
    are), as PyTorch's avg_pool2d(3, 1, 1, count_include_pad=False)."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    rows, cols = x.shape[1:]
    total = sum(padded[:, i : i + rows, j : j + cols] for i in range(3) for j in range(3))
    ones = np.pad(np.ones((rows, cols), np.float32), 1)
    count = sum(ones[i : i + rows, j : j + cols] for i in range(3) for j in range(3))
    return total / count


def _block_means(z: np.ndarray, cells: int) -> np.ndarray:
    """(N, S, S) -> (N, cells * cells): the mean of each block of PyTorch's adaptive_avg_pool2d to cells x cells."""
    size = z.shape[1:]
    edges = [[(i * s // cells, -(-(i + 1) * s // cells)) for i in range(cells)] for s in size]
    return np.stack([_mean(np.ascontiguousarray(z[:, r0:r1, c0:c1])) for r0, r1 in edges[0] for c0, c1 in edges[1]], 1)


def flipped_statistics(stats: np.ndarray) -> list[np.ndarray]:
    """The `image_statistics` of each image's 180-degree rotation and of its vertical flip, from its own: the global
    statistics (left-right symmetry included) are the same for the flipped image, the layout is flipped."""
    n, cells = len(stats), _LAYOUT * _LAYOUT
    layout = stats[:, -cells:].reshape(n, _LAYOUT, _LAYOUT)
    return [np.concatenate([stats[:, :-cells], flip.reshape(n, cells)], 1)
            for flip in (layout[:, ::-1, ::-1], layout[:, ::-1, :])]
