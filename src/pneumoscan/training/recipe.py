"""The arithmetic of the training recipe that the epoch loop (and pretrain) applies: seeding, batches per epoch,
the learning-rate schedule, the normalisation statistics, the EMA of the weights and the consistency term."""
from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch import nn


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA), and hold cuDNN to deterministic convolution algorithms, chosen
    without benchmarking: its fastest ones, and the ones a benchmark picks, vary from run to run on a GPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def bernoulli_js(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Mean Jensen-Shannon divergence (nats) between the Bernoulli predictions of two logit vectors."""
    p = torch.stack([torch.sigmoid(first), torch.sigmoid(second)]).clamp(1e-7, 1 - 1e-7)
    m = p.mean(0)

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * (a / b).log() + (1 - a) * ((1 - a) / (1 - b)).log()

    return ((kl(p[0], m) + kl(p[1], m)) / 2).mean()


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """The learning rate at `step` of `total`: linear warm-up over `warmup` steps to `base`, then cosine to 0."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch over `n` images: a last batch of one image joins the one before it (batch
    normalisation cannot train on a single image)."""
    return max(1, n // batch_size) if n % batch_size == 1 else math.ceil(n / batch_size)


def image_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation (0..1 scale) of uint8 images, from a subsample of about 500."""
    sample = np.asarray(images[:: max(1, len(images) // 500)], dtype=np.float32) / 255.0
    return float(sample.mean()), float(max(sample.std(), 1e-3))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """Average parameters with a warmed-up decay; copy buffers (batch-norm statistics) as they are.

    Averaging running variances too leaves them near their initial 1.0 for thousands of steps.
    """
    decay = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)
