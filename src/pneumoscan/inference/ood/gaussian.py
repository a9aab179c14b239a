"""The Gaussian model of a signal: squared Mahalanobis distance with a Ledoit-Wolf shrunk, tied covariance."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Gaussian:
    """Standardise by `scale`, then squared Mahalanobis distance to the nearest of `centers` (tied precision)."""

    centers: np.ndarray  # (C, D) in standardised units
    scale: np.ndarray  # (D,)
    precision: np.ndarray  # (D, D)

    @classmethod
    def fit(cls, x: np.ndarray, groups: np.ndarray | None = None, *, per_dim: bool = True) -> "Gaussian":
        """`per_dim`: standardise each column (mixed units); else one common scale, so the shrinkage
        towards a scaled identity also tames near-constant columns (e.g. rarely active ReLU channels)."""
        loc = x.mean(0)
        raw_scale = x.std(0)
        common = max(float(np.sqrt(np.mean(raw_scale**2))), 1e-9)
        scale = np.maximum(raw_scale, 0.1 * float(np.median(raw_scale)) + 1e-9) if per_dim else np.full(x.shape[1], common)
        z = (x - loc) / scale
        labels = np.zeros(len(x), int) if groups is None else np.asarray(groups)
        keys, index = np.unique(labels, return_inverse=True)
        if len(keys) < 2 or np.bincount(index).min() < 2:
            index = np.zeros(len(x), int)
        centers = np.stack([z[index == g].mean(0) for g in range(index.max() + 1)])
        resid = z - centers[index]
        cov = _ledoit_wolf(resid)
        precision = np.linalg.inv(cov + 1e-6 * np.eye(len(cov)))
        return cls(centers + loc / scale, scale, (precision + precision.T) / 2)

    def distance(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, dtype=np.float64) / self.scale
        best = np.full(len(z), np.inf)
        for center in self.centers:
            d = z - center
            best = np.minimum(best, ((d @ self.precision) * d).sum(1))
        return best


def _ledoit_wolf(x: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf (2004) shrinkage of the covariance of centred rows `x` towards a scaled identity."""
    n, p = x.shape
    s = x.T @ x / n
    mu = np.trace(s) / p
    delta = np.sum((s - mu * np.eye(p)) ** 2)
    beta = (np.sum(np.sum(x**2, 1) ** 2) / n - np.sum(s**2)) / n
    shrink = 1.0 if delta <= 0 else float(np.clip(beta / delta, 0.0, 1.0))
    return shrink * mu * np.eye(p) + (1 - shrink) * s

