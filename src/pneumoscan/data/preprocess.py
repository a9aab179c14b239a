"""The one preprocessing path shared by training, evaluation, prediction and the service."""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from pneumoscan.data.decode import DEFAULT_MAX_PIXELS, read_grayscale

# Bump when decoding or resizing changes: it invalidates every image cache.
PREPROCESS_VERSION = 1


def resize_square(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D uint8 image to `size` x `size` (the whole image, aspect not kept, as in the dataset)."""
    if gray.shape == (size, size):
        return np.ascontiguousarray(gray, dtype=np.uint8)
    image = Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8), mode="L")
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def load_image(
    source: str | os.PathLike | bytes,
    size: int,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode any supported file (or bytes) to a `size` x `size` uint8 grayscale array."""
    return resize_square(read_grayscale(source, name=name, max_pixels=max_pixels, draft_size=size), size)


def normalize(batch: torch.Tensor | np.ndarray, mean: float, std: float) -> torch.Tensor:
    """uint8 images (N, H, W) or (N, 1, H, W) in 0..255 -> float32 (N, 1, H, W), standardised."""
    tensor = torch.from_numpy(np.array(batch, dtype=np.uint8)) if isinstance(batch, np.ndarray) else batch
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(1)
    return (tensor.float() / 255.0 - mean) / std
