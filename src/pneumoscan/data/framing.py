"""Framing normalisation: crop each X-ray to a square as wide as the body, so field of view stops mattering.

In the training data, how much of the frame the child fills differs by class (normals were taken with a
wider field of view), and a model learns framing as evidence: zooming validation normals in flags them.
Cropping every image, in training and at every prediction, to a square whose side is the body's width
(found from the column brightness of the middle rows) gives all images the same framing, whatever the
X-ray unit's collimation or the zoom of the file.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

BAND = (0.25, 0.75)  # rows whose column means find the body (the chest, below the neck, above the abdomen)
LEVEL = 0.5  # a column is body when its mean is above this point between the darkest and brightest columns
MARGIN = 0.02  # of the width, added on each side of the body
MIN_SIDE = 0.5  # of the width: the crop never zooms in more than 2x


def body_boxes(images: np.ndarray) -> np.ndarray:
    """Square crop boxes (N, 4) as (left, top, right, bottom) in pixels for uint8 images (N, H, W).

    The side is the body's width (plus a margin, at least MIN_SIDE of the width, at most the image's
    shorter side); the box is centred on the body across and on the image down.
    """
    images = np.asarray(images)
    _, h, w = images.shape
    band = images[:, int(h * BAND[0]) : max(int(h * BAND[1]), int(h * BAND[0]) + 1)].astype(np.float32)
    profile = band.mean(axis=1)  # (N, W)
    # an even k sits half a column to one side (np.convolve 'same'): a film and its mirror get boxes up to ~1.5 % of
    # the width apart; kept, as centring it moves the boxes existing --crop models see (docs/training.md, --crop)
    k = max(1, w // 32)
    kernel = np.ones(k, dtype=np.float32) / k
    profile = np.stack([np.convolve(p, kernel, mode="same") for p in profile]) if k > 1 else profile
    lo, hi = np.percentile(profile, 5, axis=1), np.percentile(profile, 95, axis=1)
    on = profile >= (lo + LEVEL * (hi - lo))[:, None]
    first = np.argmax(on, axis=1).astype(np.float64)
    last = (w - np.argmax(on[:, ::-1], axis=1)).astype(np.float64)
    left, right = np.maximum(0, first - MARGIN * w), np.minimum(w, last + MARGIN * w)
    side = np.clip(right - left, MIN_SIDE * w, min(h, w))
    left = np.clip((left + right) / 2 - side / 2, 0, w - side)
    top = (h - side) / 2
    return np.stack([left, top, left + side, top + side], axis=1)


def crop_to_body(images: np.ndarray) -> np.ndarray:
    """Each uint8 image (N, H, W) cropped to its body box and resized back to H x W."""
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim != 3:
        raise ValueError(f"expected uint8 images (N, H, W), got shape {images.shape}")
    n, h, w = images.shape
    out = np.empty_like(images)
    if n == 0:
        return out
    for i, box in enumerate(body_boxes(images)):
        image = Image.fromarray(np.ascontiguousarray(images[i]), mode="L")
        out[i] = np.asarray(image.resize((w, h), Image.Resampling.BILINEAR, box=tuple(float(b) for b in box)))
    return out
