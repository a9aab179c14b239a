"""On-the-fly batch augmentation in torch: small affine warp plus brightness and contrast, and mixup."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation ranges; `strength` scales all of them (0 disables augmentation)."""

    rotation_deg: float = 10.0
    scale: float = 0.10
    translate: float = 0.08
    brightness: float = 0.10
    contrast: float = 0.10
    aspect: float = 0.0  # stretch one axis and squeeze the other by up to this fraction (0: none)
    # x + k (x - blur(x)), blur a 1-px Gaussian, k uniform in +-this: softens (k < 0) or sharpens (0: none)
    sharpness: float = 0.0
    strength: float = 1.0


def affine_warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample a batch (N, C, H, W) through affine maps `theta` (N, 2, 3), output to input coordinates,
    bilinear with the border pixels repeated outside the image."""
    grid = F.affine_grid(theta.to(images.dtype).to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def gaussian_blur(images: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Separable Gaussian blur of a batch (N, 1, H, W), edges reflected (repeated in an image too small to
    reflect the kernel's radius, 2 px at sigma 1)."""
    radius = max(1, math.ceil(2 * sigma))
    taps = torch.exp(-torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device) ** 2 / (2 * sigma**2))
    taps = taps / taps.sum()
    mode = "reflect" if min(images.shape[-2:]) > radius else "replicate"
    padded = F.pad(images, (radius, radius, radius, radius), mode=mode)
    return F.conv2d(F.conv2d(padded, taps.view(1, 1, 1, -1)), taps.view(1, 1, -1, 1))


def augment_batch(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly warp and re-light a float batch (N, 1, H, W) with values in 0..1, images of any size from
    1 x 1 px; an empty batch comes back as it is. ValueError for another shape."""
    if images.ndim != 4 or min(images.shape[-2:], default=0) < 1:
        raise ValueError(f"augment_batch takes a batch of shape (N, 1, H, W) of images at least 1 x 1 px, "
                         f"got {tuple(images.shape)}")
    n = images.shape[0]
    if cfg.strength <= 0 or n == 0:
        return images

    def uniform(half_range: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * half_range * cfg.strength

    angle = uniform(math.radians(cfg.rotation_deg))
    scale = 1 + uniform(cfg.scale)
    tx, ty = uniform(cfg.translate) * 2, uniform(cfg.translate) * 2
    # Drawn only when asked for, so runs without it keep their random sequence (and resume exactly).
    stretch = torch.exp(uniform(math.log1p(cfg.aspect))) if cfg.aspect > 0 else torch.ones(n)
    sx, sy = scale * stretch, scale / stretch
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Output -> input coordinates: rotation after the inverse of the per-axis scaling.
    theta = torch.stack([torch.stack([cos / sx, -sin / sy, tx], 1), torch.stack([sin / sx, cos / sy, ty], 1)], 1)
    warped = affine_warp(images, theta)
    if cfg.sharpness > 0:  # drawn only when asked, as the stretch
        k = uniform(cfg.sharpness).view(n, 1, 1, 1).to(images.device)
        warped = warped + k * (warped - gaussian_blur(warped))
    brightness = uniform(cfg.brightness).view(n, 1, 1, 1).to(images.device)
    contrast = (1 + uniform(cfg.contrast)).view(n, 1, 1, 1).to(images.device)
    mean = warped.mean(dim=(2, 3), keepdim=True)
    return ((warped - mean) * contrast + mean + brightness).clamp(0.0, 1.0)


def mixup(images: torch.Tensor, targets: torch.Tensor, alpha: float,
          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend the batch with a shuffled copy of itself (Zhang et al. 2018), targets alike.

    One mixing weight lam ~ Beta(alpha, alpha) per batch, drawn from `generator` so runs repeat and
    resume exactly; alpha <= 0 returns the batch unchanged.
    """
    if alpha <= 0:
        return images, targets
    # torch's Beta sampler takes no generator, so numpy draws lam from a seed the generator gives.
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(images.shape[0], generator=generator).to(images.device)
    return lam * images + (1 - lam) * images[perm], lam * targets + (1 - lam) * targets[perm]
