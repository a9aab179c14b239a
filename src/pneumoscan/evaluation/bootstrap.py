"""Bootstrap confidence intervals and the evaluation summary behind ``evaluate --json``."""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pneumoscan import CLASS_NAMES
from pneumoscan.errors import warn
from pneumoscan.evaluation import metrics
from pneumoscan.evaluation.metrics import UndefinedMetricWarning, _as_1d, _check_labels, _check_lengths

__all__ = ["bootstrap_ci", "summarize", "classification_report_text"]

Metric = Callable[[NDArray, NDArray], float]

_THRESHOLD_METRICS: dict[str, Metric] = {
    "accuracy": metrics.accuracy,
    "precision": metrics.precision,
    "recall": metrics.recall,
    "specificity": metrics.specificity,
    "f1": metrics.f1,
    "npv": metrics.npv,
}
_SCORE_METRICS: dict[str, Metric] = {
    "roc_auc": metrics.roc_auc,
    "pr_auc": metrics.pr_auc,
    "brier": metrics.brier,
}


def _stratified_indices(y_true: NDArray[np.int8], n_boot: int, seed: int | None) -> NDArray[np.intp]:
    """An ``(n_boot, n)`` matrix of resample indices; each row keeps the class counts of ``y_true``."""
    rng = np.random.default_rng(seed)
    blocks = []
    for cls in (1, 0):
        members = np.flatnonzero(y_true == cls)
        if members.size:
            blocks.append(members[rng.integers(0, members.size, size=(n_boot, members.size))])
    return np.concatenate(blocks, axis=1)


def _bootstrap_values(metric: Metric, y_true: NDArray, y_other: NDArray, idx: NDArray[np.intp]) -> NDArray[np.float64]:
    values = np.empty(idx.shape[0], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for b, rows in enumerate(idx):
            values[b] = metric(y_true[rows], y_other[rows])
    return values


def _percentile_ci(values: NDArray[np.float64], alpha: float, name: str = "the metric") -> tuple[float, float]:
    valid = values[~np.isnan(values)]
    if valid.size == 0:
        warn(f"{name} is undefined on every bootstrap resample; its interval is (nan, nan).", UndefinedMetricWarning)
        return float("nan"), float("nan")
    if valid.size < values.size:  # the interval then describes only the resamples where the metric exists
        warn(
            f"{name} is undefined on {values.size - valid.size} of {values.size} bootstrap resamples; its interval "
            f"comes from the other {valid.size} only",
            UndefinedMetricWarning,
        )
    lo, hi = np.quantile(valid, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def _check_boot_args(n_boot: int, alpha: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}.")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}.")


def bootstrap_ci(
    metric: Metric,
    y_true: ArrayLike,
    y_other: ArrayLike,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int | None = 0,
) -> tuple[float, float]:
    """Percentile bootstrap ``(1 - alpha)`` interval of ``metric(y_true, y_other)``.

    Cases are resampled with replacement within each class, so every resample keeps
    the original numbers of positives and negatives. Resamples where the metric is
    NaN are dropped, with a warning naming how many; if none is left, returns ``(nan, nan)`` with a warning.
    """
    _check_boot_args(n_boot, alpha)
    yt = _check_labels(y_true, "y_true")
    yo = _as_1d(y_other, "y_other")
    _check_lengths(yt, yo, "y_other")
    if yt.shape[0] == 0:
        warn("bootstrap_ci: empty input; returning (nan, nan).", UndefinedMetricWarning)
        return float("nan"), float("nan")
    idx = _stratified_indices(yt, n_boot, seed)
    return _percentile_ci(_bootstrap_values(metric, yt, yo, idx), alpha, getattr(metric, "__name__", "the metric"))


def _entry(value: float, ci: tuple[float, float]) -> dict[str, Any]:
    return {"value": float(value), "ci95": [float(ci[0]), float(ci[1])]}


def summarize(
    y_true: ArrayLike, y_prob: ArrayLike, threshold: float, *, n_boot: int = 1000, seed: int | None = 0
) -> dict[str, Any]:
    """Point estimates with 95% bootstrap intervals, ECE and the confusion matrix at ``threshold``.

    Predictions are ``y_prob >= threshold`` -> PNEUMONIA. All metrics share the same
    stratified resamples. The result holds only plain ints, floats, strings and lists.
    """
    _check_boot_args(n_boot, 0.05)
    try:
        thr = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number, got {threshold!r}.") from None
    if not math.isfinite(thr):
        raise ValueError(f"threshold must be finite, got {threshold!r}.")
    yt, yp = metrics._labels_and_scores(y_true, y_prob, probabilities=True, name="y_prob")
    y_pred = (yp >= thr).astype(np.int8)
    n = int(yt.shape[0])
    n_pos = int(np.count_nonzero(yt))
    tn, fp, fn, tp = metrics.confusion_counts(yt, y_pred)
    idx = _stratified_indices(yt, n_boot, seed) if n else None

    def interval(metric: Metric, other: NDArray) -> tuple[float, float]:
        if idx is None:
            return float("nan"), float("nan")
        return _percentile_ci(_bootstrap_values(metric, yt, other, idx), 0.05, getattr(metric, "__name__", "the metric"))

    summary: dict[str, Any] = {"n": n, "n_positive": n_pos, "n_negative": n - n_pos, "threshold": thr}
    for name, fn_ in _THRESHOLD_METRICS.items():
        summary[name] = _entry(fn_(yt, y_pred), interval(fn_, y_pred))
    for name, fn_ in _SCORE_METRICS.items():
        summary[name] = _entry(fn_(yt, yp), interval(fn_, yp))
    summary["ece"] = {"value": float(metrics.expected_calibration_error(yt, yp))}
    summary["confusion_matrix"] = {"labels": list(CLASS_NAMES), "matrix": [[tn, fp], [fn, tp]]}
    return summary


def classification_report_text(
    y_true: ArrayLike, y_pred: ArrayLike, class_names: Sequence[str] = CLASS_NAMES
) -> str:
    """sklearn-style per-class precision/recall/F1/support report (nan where undefined, as in the metrics)."""
    from sklearn.metrics import classification_report

    if len(class_names) != 2:
        raise ValueError(f"class_names must name exactly 2 classes, got {list(class_names)!r}.")
    yt, yp = metrics._labels_and_preds(y_true, y_pred)
    if yt.shape[0] == 0:
        raise ValueError("classification_report_text needs at least one case; y_true is empty.")
    return classification_report(
        yt, yp, labels=[0, 1], target_names=[str(c) for c in class_names], digits=3, zero_division=np.nan
    )
