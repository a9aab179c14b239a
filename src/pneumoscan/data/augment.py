"""On-the-fly batch augmentation in torch: small affine warp plus brightness and contrast."""
from __future__ import annotations

import math
from dataclasses import dataclass

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
    strength: float = 1.0


def augment_batch(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly warp and re-light a float batch (N, 1, H, W) with values in 0..1."""
    if cfg.strength <= 0:
        return images
    n = images.shape[0]

    def uniform(half_range: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * half_range * cfg.strength

    angle = uniform(math.radians(cfg.rotation_deg))
    scale = 1 + uniform(cfg.scale)
    tx, ty = uniform(cfg.translate) * 2, uniform(cfg.translate) * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype).to(images.device), list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    brightness = uniform(cfg.brightness).view(n, 1, 1, 1).to(images.device)
    contrast = (1 + uniform(cfg.contrast)).view(n, 1, 1, 1).to(images.device)
    mean = warped.mean(dim=(2, 3), keepdim=True)
    return ((warped - mean) * contrast + mean + brightness).clamp(0.0, 1.0)
