"""Choosing and tabulating decision thresholds, and prior-shift correction of probabilities.

The decision rule everywhere in the project is ``y_prob >= threshold`` -> PNEUMONIA.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pneumoscan.errors import InputError, option
from pneumoscan.evaluation import metrics
from pneumoscan.evaluation.metrics import _check_probs, _descending_counts, _labels_and_scores

__all__ = [
    "DEFAULT_THRESHOLDS",
    "threshold_for_recall",
    "threshold_ci95",
    "youden_threshold",
    "threshold_table",
    "adjust_for_prevalence",
]

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))


def check_target_recall(target_recall: float | None) -> None:
    """InputError naming --target-recall unless it is None or in (0, 1]."""
    if target_recall is not None and not 0.0 < target_recall <= 1.0:
        raise InputError(f"{option('target_recall', target_recall)}: must be above 0 and at most 1, e.g. 0.95")


def check_operating_point(threshold: float | None, target_recall: float | None, prevalence: float | None) -> None:
    """InputError naming the flag unless --threshold, --target-recall and --prevalence (None: not given) make an
    operating point: a threshold in [0, 1] or a recall in (0, 1], not both, and a prevalence in (0, 1)."""
    if threshold is not None and target_recall is not None:
        raise InputError(f"give either {option('threshold')} or {option('target_recall')}, not both")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise InputError(f"{option('threshold', threshold)}: must be between 0 and 1")
    check_target_recall(target_recall)
    if prevalence is not None and not 0.0 < prevalence < 1.0:
        raise InputError(f"{option('prevalence', prevalence)}: must be strictly between 0 and 1")


def threshold_for_recall(y_true: ArrayLike, y_prob: ArrayLike, target_recall: float) -> float:
    """Threshold ``t`` with recall of ``y_prob >= t`` at least ``target_recall`` and the highest specificity.

    Recall only changes at the scores of positive cases, so the highest such threshold is the
    k-th highest positive score, k being the fewest positives that reach the target. ``t`` is
    the midpoint of the gap below that score (`_midway_below`): the same decisions on these
    cases, none of them on the threshold itself.
    """
    try:
        target = float(target_recall)
    except (TypeError, ValueError):
        raise ValueError(f"target_recall must be a number in (0, 1], got {target_recall!r}.") from None
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall!r}.")
    yt, yp = _labels_and_scores(y_true, y_prob, probabilities=True, name="y_prob")
    pos_scores = np.sort(yp[yt == 1])[::-1]
    n_pos = pos_scores.shape[0]
    if n_pos == 0:
        raise ValueError("threshold_for_recall needs at least one positive (PNEUMONIA) case in y_true.")
    reachable = np.arange(1, n_pos + 1) / n_pos
    k = int(np.searchsorted(reachable, target, side="left"))
    return _midway_below(float(pos_scores[k]), yp)


def threshold_ci95(
    y_true: ArrayLike, y_prob: ArrayLike, target_recall: float, *, n_boot: int = 1000, seed: int | None = 0,
    groups: Sequence[str | None] | None = None,
) -> tuple[float, float]:
    """95 % percentile bootstrap interval of `threshold_for_recall(y_true, y_prob, target_recall)`: the thresholds
    the same rule chooses on resamples of these cases (within each class, as `bootstrap_ci` draws them: of films, or
    with `groups`, each film's patient key or None, of patients, a patient's films drawn together).

    A film whose P lies inside it is decided one way at the chosen threshold and the other way at a threshold
    re-chosen on a plausible resample: it is borderline.
    """
    from pneumoscan.evaluation.bootstrap import bootstrap_ci

    return bootstrap_ci(lambda y, p: threshold_for_recall(y, p, target_recall), y_true, y_prob,
                        n_boot=n_boot, seed=seed, groups=groups)


def youden_threshold(y_true: ArrayLike, y_prob: ArrayLike) -> float:
    """Threshold maximising Youden's J = sensitivity + specificity - 1.

    Candidates are the observed probabilities; J is compared exactly (as the integer
    J * n_pos * n_neg) and on ties the highest wins; the threshold is the midpoint of the
    gap below it (`_midway_below`).
    """
    yt, yp = _labels_and_scores(y_true, y_prob, probabilities=True, name="y_prob")
    n_pos = int(np.count_nonzero(yt))
    n_neg = int(yt.shape[0]) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("youden_threshold needs both NORMAL (0) and PNEUMONIA (1) cases in y_true.")
    scores, tps, fps = _descending_counts(yt, yp)
    scaled_j = tps * n_neg - fps * n_pos
    return _midway_below(float(scores[int(np.argmax(scaled_j))]), yp)


def _midway_below(score: float, scores: NDArray[np.float64]) -> float:
    """The midpoint between `score` and the next lower of `scores` (0 when there is none).

    A threshold equal to a case's score would decide that case by rounding alone: ONNX Runtime and
    PyTorch differ by ~1e-7, so the film a threshold was chosen on flipped with the backend. Any
    threshold in the gap makes the same decisions on `scores`; its middle leaves the most room.
    """
    lower = scores[scores < score]
    below = float(lower.max()) if lower.size else 0.0
    middle = (score + below) / 2
    return middle if below < middle < score else score  # adjacent floats: no room in between


def threshold_table(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    thresholds: Iterable[float] | None = None,
    *,
    include_defaults: bool = True,
) -> list[dict[str, float]]:
    """Operating characteristics at each threshold, sorted ascending.

    Thresholds are :data:`DEFAULT_THRESHOLDS` (0.05 to 0.95 by 0.05) plus any passed in
    ``thresholds``; ``include_defaults=False`` keeps only the passed ones. Each row has
    keys threshold, sensitivity, specificity, ppv, npv, f1; undefined values are NaN.
    """
    yt, yp = _labels_and_scores(y_true, y_prob, probabilities=True, name="y_prob")
    extra = [] if thresholds is None else [float(t) for t in thresholds]
    if any(not math.isfinite(t) for t in extra):
        raise ValueError("thresholds must be finite numbers.")
    chosen = sorted(set(extra) | (set(DEFAULT_THRESHOLDS) if include_defaults else set()))
    rows: list[dict[str, float]] = []
    for t in chosen:
        pred = (yp >= t).astype(np.int8)
        rows.append(
            {
                "threshold": t,
                "sensitivity": metrics.recall(yt, pred),
                "specificity": metrics.specificity(yt, pred),
                "ppv": metrics.precision(yt, pred),
                "npv": metrics.npv(yt, pred),
                "f1": metrics.f1(yt, pred),
            }
        )
    return rows


def _check_prevalence(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}.") from None
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}.")
    return v


def _logit(p: float | NDArray[np.float64]) -> float | NDArray[np.float64]:
    return np.log(p) - np.log1p(-p)


def adjust_for_prevalence(y_prob: ArrayLike, train_prevalence: float, new_prevalence: float) -> NDArray[np.float64]:
    """Re-calibrate P(pneumonia) from the training prevalence to a new one (prior shift).

    Assuming only the class prior changes and p(x | class) stays the same, Bayes' rule
    gives the adjusted posterior odds as the model's odds times the ratio of prior odds
    (Saerens, Latinne & Decaestecker, Neural Computation 14(1), 2002)::

        odds' = odds * [new / (1 - new)] / [train / (1 - train)]

    The computation is done on log-odds with a numerically stable sigmoid, unclipped: the
    mapping is increasing, so rankings (and ROC AUC) and the side of a threshold moved with
    it are unchanged (down to float64 resolution, which holds P near 1 to about 1e-16).
    P = 0 and 1 (odds 0 and infinity) stay 0 and 1: no prior makes a certainty uncertain.
    Returns a float64 array of the same shape as ``y_prob``.
    """
    train = _check_prevalence(train_prevalence, "train_prevalence")
    new = _check_prevalence(new_prevalence, "new_prevalence")
    arr = np.asarray(y_prob, dtype=np.float64)
    _check_probs(arr.reshape(-1), "y_prob")
    with np.errstate(divide="ignore"):  # log(0): the infinite log-odds of P = 0 and 1
        z = _logit(arr) + (_logit(new) - _logit(train))
    return np.exp(-np.logaddexp(0.0, -z))
