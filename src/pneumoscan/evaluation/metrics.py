"""Binary classification metrics as pure functions over numpy arrays.

Labels are NORMAL=0, PNEUMONIA=1 and scores are P(pneumonia). A metric that is
undefined for its input (empty input, a single class where two are needed, a
zero denominator) returns ``float('nan')`` and emits an
:class:`UndefinedMetricWarning`; it never raises for that. Malformed input
(labels other than 0/1, unequal lengths, probabilities outside [0, 1],
non-finite scores) raises ``ValueError``.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple, Sequence

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
    "AucDifference",
    "delong_auc_difference",
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


class AucDifference(NamedTuple):
    """Two models' ROC AUCs on the same films and DeLong's paired test of their difference (`auc_a - auc_b`)."""

    auc_a: float
    auc_b: float
    difference: float
    se: float
    ci95: tuple[float, float]
    p_value: float


_Z95 = 1.959963984540054  # the 0.975 quantile of the standard normal


def _placements(ys: NDArray[np.float64], pos: NDArray[np.bool_]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """DeLong's placement values by Sun & Xu's midranks (O(n log n)): for each positive film the share of negatives it
    outscores (V10), for each negative film the share of positives outscoring it (V01); ties count one half."""
    m, n = int(pos.sum()), int((~pos).sum())
    combined = _average_ranks(ys)
    v10 = (combined[pos] - _average_ranks(ys[pos])) / n
    v01 = 1.0 - (combined[~pos] - _average_ranks(ys[~pos])) / m
    return v10, v01


def _delong_covariance(v10: NDArray[np.float64], v01: NDArray[np.float64], aucs: NDArray[np.float64],
                       clusters: tuple[NDArray[np.intp], NDArray[np.intp]] | None) -> NDArray[np.float64]:
    """The 2 x 2 covariance of two AUCs from their placements (`v10`: models x positives, `v01`: models x negatives):
    DeLong's, or with `clusters` (each positive's and each negative's patient index) Obuchowski's (1997), each
    patient's placements summed, which is DeLong's when every patient has one film."""
    m, n = v10.shape[1], v01.shape[1]
    if clusters is None:
        return np.cov(v10, ddof=1) / m + np.cov(v01, ddof=1) / n
    pos_c, neg_c = clusters
    k = int(max(pos_c.max(), neg_c.max())) + 1
    # per patient: the sum of its films' placements minus its film count times the AUC
    d10 = np.stack([np.bincount(pos_c, weights=row, minlength=k) for row in v10])
    d10 -= np.bincount(pos_c, minlength=k) * aucs[:, None]
    d01 = np.stack([np.bincount(neg_c, weights=row, minlength=k) for row in v01])
    d01 -= np.bincount(neg_c, minlength=k) * aucs[:, None]
    k10, k01 = np.unique(pos_c).size, np.unique(neg_c).size
    k_all = np.unique(np.r_[pos_c, neg_c]).size
    s10 = k10 / ((k10 - 1) * m * m) * (d10 @ d10.T) if k10 > 1 else np.full((2, 2), np.nan)
    s01 = k01 / ((k01 - 1) * n * n) * (d01 @ d01.T) if k01 > 1 else np.full((2, 2), np.nan)
    s11 = k_all / ((k_all - 1) * m * n) * (d10 @ d01.T)
    return s10 + s01 + s11 + s11.T


def delong_auc_difference(y_true: ArrayLike, score_a: ArrayLike, score_b: ArrayLike, *,
                          groups: Sequence[str | None] | None = None) -> AucDifference:
    """DeLong's paired test of two ROC AUCs on the same films (DeLong, DeLong & Clarke-Pearson, 1988; Sun & Xu's
    midrank algorithm, 2014): `auc_a - auc_b` with its standard error, 95 % Wald interval and two-sided p-value.

    Films are independent unless `groups` gives each film's patient key (None: a film of no known patient, its own):
    then each patient's films are one cluster (Obuchowski, 1997, Biometrics 53:567-578). Undefined (NaN, with a
    warning) without both classes, or with fewer than two patients of a class; with no estimated variance the
    difference of identical rankings (0) has p-value 1.0, any other a NaN interval and p-value (with a warning).
    """
    yt, ya = _labels_and_scores(y_true, score_a, probabilities=False, name="score_a")
    yb = _check_scores(score_b, "score_b")
    _check_lengths(yt, yb, "score_b")
    if groups is not None and len(groups) != yt.shape[0]:
        raise ValueError(f"groups must give one patient key per film: {len(groups)} for {yt.shape[0]} films.")
    pos = yt == 1
    m, n = int(pos.sum()), int((~pos).sum())
    nan = float("nan")
    if m < 2 or n < 2:
        _undefined("delong_auc_difference", "y_true needs at least two films of each class")
        return AucDifference(nan, nan, nan, nan, (nan, nan), nan)
    placed = [_placements(ys, pos) for ys in (ya, yb)]
    v10, v01 = np.stack([p[0] for p in placed]), np.stack([p[1] for p in placed])
    aucs = v10.mean(axis=1)
    clusters = None
    if groups is not None:
        ids: dict[tuple[bool, object], int] = {}  # a film of no known patient is its own
        index = np.array([ids.setdefault((g is None, i if g is None else g), len(ids)) for i, g in enumerate(groups)])
        clusters = (index[pos], index[~pos])
        if np.unique(clusters[0]).size < 2 or np.unique(clusters[1]).size < 2:
            _undefined("delong_auc_difference", "y_true needs at least two patients of each class")
            return AucDifference(float(aucs[0]), float(aucs[1]), float(aucs[0] - aucs[1]), nan, (nan, nan), nan)
    cov = _delong_covariance(v10, v01, aucs, clusters)
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    if se <= 1e-12 * max(1.0, abs(diff)):  # no sampling variance to test against
        if abs(diff) <= 1e-12:  # the same ranking of every pair
            return AucDifference(float(aucs[0]), float(aucs[1]), diff, 0.0, (diff, diff), 1.0)
        _undefined("delong_auc_difference", "the difference has no estimated variance (each model's placements "
                   "constant, as of a model scoring every film alike, or too few patients)")
        return AucDifference(float(aucs[0]), float(aucs[1]), diff, 0.0, (nan, nan), nan)
    p_value = math.erfc(abs(diff) / se / math.sqrt(2.0))
    return AucDifference(float(aucs[0]), float(aucs[1]), diff, se, (diff - _Z95 * se, diff + _Z95 * se), p_value)


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
    # the recall steps summed as positives, divided once: a perfect ranking's m steps of 1/m came to 1 - 2**-53
    return float(np.sum(np.diff(tps, prepend=0) * prec) / tps[-1])


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
