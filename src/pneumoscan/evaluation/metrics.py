"""Binary classification metrics as pure functions over numpy arrays.

Labels are NORMAL=0, PNEUMONIA=1 and scores are P(pneumonia). A metric that is
undefined for its input (empty input, a single class where two are needed, a
zero denominator) returns ``float('nan')`` and emits an
:class:`UndefinedMetricWarning`; it never raises for that. Malformed input
(labels other than 0/1, unequal lengths, probabilities outside [0, 1],
non-finite scores) raises ``ValueError``.
"""
from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pneumoscan.errors import warn

__all__ = [
    "UndefinedMetricWarning",
    "confusion_counts",
    "accuracy",
    "precision",
    "recall",
    "specificity",
    "npv",
    "f1",
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "roc_curve",
    "pr_curve",
    "expected_calibration_error",
    "reliability_curve",
]

_LOG_LOSS_EPS = float(np.finfo(np.float64).eps)


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for its input; the value returned is NaN."""


def _undefined(name: str, reason: str) -> float:
    warn(f"{name} is undefined: {reason}; returning nan.", UndefinedMetricWarning)
    return float("nan")


def _as_1d(values: ArrayLike, name: str) -> NDArray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}.")
    if arr.size and arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}.")
    return arr


def _check_labels(values: ArrayLike, name: str = "y_true") -> NDArray[np.int8]:
    """Return ``values`` as an int8 0/1 array or raise ValueError."""
    arr = _as_1d(values, name)
    if arr.dtype.kind != "b" and arr.size and not np.all((arr == 0) | (arr == 1)):
        bad = arr[~((arr == 0) | (arr == 1))][:5]
        raise ValueError(f"{name} must contain only 0 (NORMAL) and 1 (PNEUMONIA); found {bad.tolist()}.")
    return arr.astype(np.int8, copy=False)


def _check_scores(values: ArrayLike, name: str = "y_score") -> NDArray[np.float64]:
    arr = _as_1d(values, name).astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or infinity).")
    return arr


def _check_probs(values: ArrayLike, name: str = "y_prob") -> NDArray[np.float64]:
    arr = _check_scores(values, name)
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise ValueError(f"{name} must be probabilities within [0, 1]; found range [{arr.min()}, {arr.max()}].")
    return arr


def _check_lengths(a: NDArray, b: NDArray, b_name: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"y_true and {b_name} must have the same length, got {a.shape[0]} and {b.shape[0]}.")


def _labels_and_preds(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[NDArray[np.int8], NDArray[np.int8]]:
    yt = _check_labels(y_true, "y_true")
    yp = _check_labels(y_pred, "y_pred")
    _check_lengths(yt, yp, "y_pred")
    return yt, yp


def _labels_and_scores(
    y_true: ArrayLike, y_score: ArrayLike, *, probabilities: bool, name: str
) -> tuple[NDArray[np.int8], NDArray[np.float64]]:
    yt = _check_labels(y_true, "y_true")
    ys = _check_probs(y_score, name) if probabilities else _check_scores(y_score, name)
    _check_lengths(yt, ys, name)
    return yt, ys


def _counts(yt: NDArray[np.int8], yp: NDArray[np.int8]) -> tuple[int, int, int, int]:
    n = int(yt.shape[0])
    n_pos = int(np.count_nonzero(yt))
    n_pred_pos = int(np.count_nonzero(yp))
    tp = int(np.count_nonzero(yt & yp))
    fp = n_pred_pos - tp
    fn = n_pos - tp
    tn = n - tp - fp - fn
    return tn, fp, fn, tp


def _ratio(num: int, den: int, name: str, reason: str) -> float:
    if den == 0:
        return _undefined(name, reason)
    return num / den


def confusion_counts(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[int, int, int, int]:
    """Return ``(tn, fp, fn, tp)`` with PNEUMONIA (1) as the positive class."""
    return _counts(*_labels_and_preds(y_true, y_pred))


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of correct predictions."""
    tn, fp, fn, tp = confusion_counts(y_true, y_pred)
    return _ratio(tp + tn, tn + fp + fn + tp, "accuracy", "empty input")


def precision(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Positive predictive value: tp / (tp + fp)."""
    _, fp, _, tp = confusion_counts(y_true, y_pred)
    return _ratio(tp, tp + fp, "precision", "no predicted positives")


def recall(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Sensitivity: tp / (tp + fn)."""
    _, _, fn, tp = confusion_counts(y_true, y_pred)
    return _ratio(tp, tp + fn, "recall", "no positive cases in y_true")


def specificity(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """True negative rate: tn / (tn + fp)."""
    tn, fp, _, _ = confusion_counts(y_true, y_pred)
    return _ratio(tn, tn + fp, "specificity", "no negative cases in y_true")


def npv(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Negative predictive value: tn / (tn + fn)."""
    tn, _, fn, _ = confusion_counts(y_true, y_pred)
    return _ratio(tn, tn + fn, "npv", "no predicted negatives")


def f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """F1 score: 2tp / (2tp + fp + fn); undefined only when there are no positives at all."""
    _, fp, fn, tp = confusion_counts(y_true, y_pred)
    return _ratio(2 * tp, 2 * tp + fp + fn, "f1", "no positive cases and no predicted positives")


def _average_ranks(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """1-based ranks of ``x`` with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], xs.shape[0]]
    group_rank = 0.5 * (starts + ends + 1)
    ranks = np.empty(x.shape[0], dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def roc_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    yt, ys = _labels_and_scores(y_true, y_score, probabilities=False, name="y_score")
    n_pos = int(np.count_nonzero(yt))
    n_neg = int(yt.shape[0]) - n_pos
    if n_pos == 0 or n_neg == 0:
        return _undefined("roc_auc", "y_true needs both classes")
    rank_sum = float(_average_ranks(ys)[yt == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _descending_counts(
    yt: NDArray[np.int8], ys: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """Distinct scores in descending order with cumulative tp and fp at ``score >= threshold``."""
    order = np.argsort(-ys, kind="mergesort")
    scores = ys[order]
    last = np.r_[np.flatnonzero(scores[1:] != scores[:-1]), scores.shape[0] - 1]
    tps = np.cumsum(yt[order], dtype=np.int64)[last]
    fps = last + 1 - tps
    return scores[last], tps, fps


def pr_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Average precision: sum over thresholds of (R_n - R_{n-1}) * P_n, as sklearn's average_precision_score."""
    yt, ys = _labels_and_scores(y_true, y_score, probabilities=False, name="y_score")
    if yt.shape[0] == 0 or not np.any(yt):
        return _undefined("pr_auc", "no positive cases in y_true")
    _, tps, fps = _descending_counts(yt, ys)
    prec = tps / (tps + fps)
    rec = tps / tps[-1]
    return float(np.sum(np.diff(rec, prepend=0.0) * prec))


def brier(y_true: ArrayLike, y_prob: ArrayLike) -> float:
    """Brier score: mean squared difference between probability and outcome."""
    yt, yp = _labels_and_scores(y_true, y_prob, probabilities=True, name="y_prob")
    if yt.shape[0] == 0:
        return _undefined("brier", "empty input")
    return float(np.mean((yp - yt) ** 2))


def log_loss(y_true: ArrayLike, y_prob: ArrayLike) -> float:
    """Mean binary cross-entropy with probabilities clipped to [eps, 1 - eps] (float64 machine eps, as sklearn)."""
    yt, yp = _labels_and_scores(y_true, y_prob, probabilities=True, name="y_prob")
    if yt.shape[0] == 0:
        return _undefined("log_loss", "empty input")
    p = np.clip(yp, _LOG_LOSS_EPS, 1.0 - _LOG_LOSS_EPS)
    return float(-np.mean(np.where(yt == 1, np.log(p), np.log1p(-p))))


def _empty_curve() -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    return np.empty(0), np.empty(0), np.empty(0)


def roc_curve(
    y_true: ArrayLike, y_score: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Return ``(fpr, tpr, thresholds)`` as sklearn.metrics.roc_curve (first threshold is +inf).

    With a single class the undefined rate is NaN; with empty input all three arrays are empty.
    """
    from sklearn.metrics import roc_curve as _sk_roc_curve

    yt, ys = _labels_and_scores(y_true, y_score, probabilities=False, name="y_score")
    if yt.shape[0] == 0:
        _undefined("roc_curve", "empty input")
        return _empty_curve()
    n_pos = int(np.count_nonzero(yt))
    if n_pos in (0, yt.shape[0]):
        _undefined("roc_curve", "y_true needs both classes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fpr, tpr, thresholds = _sk_roc_curve(yt, ys, pos_label=1)
    return fpr, tpr, thresholds


def pr_curve(
    y_true: ArrayLike, y_score: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Return ``(precision, recall, thresholds)`` as sklearn.metrics.precision_recall_curve.

    Without positive cases recall is NaN; with empty input all three arrays are empty.
    """
    from sklearn.metrics import precision_recall_curve as _sk_pr_curve

    yt, ys = _labels_and_scores(y_true, y_score, probabilities=False, name="y_score")
    if yt.shape[0] == 0:
        _undefined("pr_curve", "empty input")
        return _empty_curve()
    no_positives = not np.any(yt)
    if no_positives:
        _undefined("pr_curve", "no positive cases in y_true")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prec, rec, thresholds = _sk_pr_curve(yt, ys, pos_label=1)
    if no_positives:
        rec = np.full_like(rec, np.nan, dtype=np.float64)
    return prec, rec, thresholds


def _check_n_bins(n_bins: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")


def _bin_stats(
    yt: NDArray[np.int8], yp: NDArray[np.float64], n_bins: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Per-bin sums of probability, sums of outcome, counts (all n_bins bins, empty ones included).

    Bins are equal-width on [0, 1], right-closed except the first, which includes 0
    (the same assignment as sklearn.calibration.calibration_curve).
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], yp)
    prob_sum = np.bincount(ids, weights=yp, minlength=n_bins)
    true_sum = np.bincount(ids, weights=yt.astype(np.float64), minlength=n_bins)
    count = np.bincount(ids, minlength=n_bins).astype(np.int64)
    return prob_sum, true_sum, count


def reliability_curve(
    y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Return ``(bin_mean_prob, bin_frequency, bin_count)`` over equal-width bins; empty bins are omitted."""
    _check_n_bins(n_bins)
    yt, yp = _labels_and_scores(y_true, y_prob, probabilities=True, name="y_prob")
    if yt.shape[0] == 0:
        _undefined("reliability_curve", "empty input")
        return np.empty(0), np.empty(0), np.empty(0, dtype=np.int64)
    prob_sum, true_sum, count = _bin_stats(yt, yp, n_bins)
    keep = count > 0
    return prob_sum[keep] / count[keep], true_sum[keep] / count[keep], count[keep]


def expected_calibration_error(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10) -> float:
    """ECE: sum over equal-width bins of (bin count / n) * |mean probability - observed frequency|."""
    _check_n_bins(n_bins)
    yt, yp = _labels_and_scores(y_true, y_prob, probabilities=True, name="y_prob")
    if yt.shape[0] == 0:
        return _undefined("expected_calibration_error", "empty input")
    prob_sum, true_sum, _ = _bin_stats(yt, yp, n_bins)
    return float(np.sum(np.abs(prob_sum - true_sum)) / yt.shape[0])
