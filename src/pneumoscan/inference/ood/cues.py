"""Cues measured on one file or image, without a fitted model: colourfulness, the share of pixels near black
or white (two tones), the pixel spread (blank) and the image statistics the image signal and the
upside-down rule compare; and the fixed cut-offs of the guard's rules."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pneumoscan.data.file_cues import (  # measured on the file, so the image cache keeps them too
    COLOUR_REFERENCE,
    TWO_TONE_BAND,
    TWO_TONE_MAX_PIXELS,
    colourfulness,
    colourfulness_of,
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
#   ordered) or thresholded films saved as JPEG (224 to 1,792 px, quality 30 to 95) at least 0.837.
TWO_TONE_SHARE = 0.75


def pixel_spread(images: np.ndarray) -> np.ndarray:
    """Standard deviation of each image's pixels (0-255)."""
    return np.asarray(images, dtype=np.float32).reshape(len(images), -1).std(1)


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
