"""Closed-form confidence intervals of proportions (accuracy, precision, recall, specificity, NPV)."""
from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["wilson_ci"]


def wilson_ci(successes: int, trials: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score ``(1 - alpha)`` interval of the proportion ``successes / trials``; ``(nan, nan)`` for 0 trials.

    Unlike a percentile bootstrap it has width at 0 and at 1 (0 of 20: 0 to 0.161) and keeps close to its nominal
    coverage for rates near 0 or 1. It treats the trials as independent.
    """
    if isinstance(successes, bool) or isinstance(trials, bool) or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes!r} of {trials!r}.")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}.")
    if trials == 0:
        return float("nan"), float("nan")
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    n, p = float(trials), successes / trials
    scale = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / scale
    half = z / scale * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    # at 0 or `trials` successes one end is 0 or 1 exactly; rounding must not push it past
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == trials else min(1.0, centre + half)
    return lo, hi
