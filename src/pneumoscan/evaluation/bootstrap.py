"""Confidence intervals (Wilson for rates, bootstrap otherwise) and the evaluation summary behind ``evaluate --json``."""
from __future__ import annotations

import math
import warnings
from collections import Counter
from statistics import NormalDist
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pneumoscan import CLASS_NAMES
from pneumoscan.errors import counted, warn
from pneumoscan.evaluation import metrics
from pneumoscan.evaluation.intervals import clustered_wilson_ci, effective_clusters, wilson_ci
from pneumoscan.evaluation.metrics import UndefinedMetricWarning, _as_1d, _check_labels, _check_lengths
from pneumoscan.evaluation.thresholds import _logit

__all__ = ["bootstrap_ci", "summarize", "intervals_text", "classification_report_text", "classification_report_rows"]

Metric = Callable[[NDArray, NDArray], float]

# proportions of films, with Wilson intervals: (name, metric, which films are its trials and which of those its
# successes, from the labels and the calls)
_RATE_METRICS: tuple[tuple[str, Metric, Callable[[NDArray, NDArray], tuple[NDArray, NDArray]]], ...] = (
    ("accuracy", metrics.accuracy, lambda yt, yp: (np.ones(yt.shape, dtype=bool), yt == yp)),
    ("precision", metrics.precision, lambda yt, yp: (yp == 1, yt == 1)),
    ("recall", metrics.recall, lambda yt, yp: (yt == 1, yp == 1)),
    ("specificity", metrics.specificity, lambda yt, yp: (yt == 0, yp == 0)),
    ("npv", metrics.npv, lambda yt, yp: (yp == 0, yt == 0)),
)
# the other metrics, with bootstrap intervals: of the calls at the threshold, and of the scores
_CALL_METRICS: dict[str, Metric] = {"f1": metrics.f1}
_SCORE_METRICS: dict[str, Metric] = {
    "roc_auc": metrics.roc_auc,
    "pr_auc": metrics.pr_auc,
    "brier": metrics.brier,
}
# the order of the metrics in a summary (as before the Wilson intervals: readers may rely on it)
SUMMARY_ORDER = ("accuracy", "precision", "recall", "specificity", "f1", "npv", "roc_auc", "pr_auc", "brier")
WILSON_METRICS = tuple(name for name, _, _ in _RATE_METRICS)
BOOTSTRAP_METRICS = (*_CALL_METRICS, *_SCORE_METRICS)
# bootstrapped with a normal interval on the logit scale (`_logit_ci`): average precision's resamples sit above its
# estimate, skewed, and its percentile interval held the true value 92.2-94.2 % of the time, this one 94.6-95.3 %
# (bench/results/ap_coverage.md; the BCa interval 93.8-94.7 %, bench/interval_coverage.py at 4e401d6)
LOGIT_METRICS = ("pr_auc",)


def _stratified_indices(y_true: NDArray[np.int8], n_boot: int, seed: int | None) -> NDArray[np.intp]:
    """An ``(n_boot, n)`` matrix of resample indices; each row keeps the class counts of ``y_true``."""
    rng = np.random.default_rng(seed)
    blocks = []
    for cls in (1, 0):
        members = np.flatnonzero(y_true == cls)
        if members.size:
            blocks.append(members[rng.integers(0, members.size, size=(n_boot, members.size))])
    return np.concatenate(blocks, axis=1)


def _units(groups: Sequence[str | None]) -> list[str]:
    """Each film's resampling unit: its patient's key, or for a film of no known patient (None) the film alone."""
    return [f"{key}" if key is not None else f"\0film {i}" for i, key in enumerate(groups)]


def _patient_resamples(y_true: NDArray[np.int8], groups: Sequence[str | None], n_boot: int,
                       seed: int | None) -> list[NDArray[np.intp]]:
    """`n_boot` resamples of film indices drawn by patient: within each class, as many of its patients (`groups`: each
    film's patient key; None: a film of no known patient, drawn alone) as it has, with replacement, each with all of
    its films of that class (a patient's films of the other class are drawn with that class, separately)."""
    rng = np.random.default_rng(seed)
    units = _units(groups)
    blocks = []
    for cls in (1, 0):
        members = np.flatnonzero(y_true == cls)
        if not members.size:
            continue
        _, patient = np.unique(np.asarray([units[i] for i in members]), return_inverse=True)
        order = members[np.argsort(patient, kind="stable")]
        sizes = np.bincount(patient)
        starts = np.cumsum(sizes) - sizes
        picks = rng.integers(0, sizes.size, size=(n_boot, sizes.size))
        rows = []
        for chosen in picks:
            lengths = sizes[chosen]
            offsets = np.cumsum(lengths) - lengths
            rows.append(order[np.repeat(starts[chosen] - offsets, lengths) + np.arange(int(lengths.sum()))])
        blocks.append(rows)
    return [np.concatenate(parts) for parts in zip(*blocks)]


# a class with fewer resampling units than this gives bootstrap intervals much too narrow: simulated, 30 films a class,
# 95% AUC intervals held the true AUC 73-90% of the time with 2 to 5 patients in one class, 37-56% with 1, 91-93%
# with 10 (as with 30); resampling those films instead, 63-88% and 47-66% (bench/results/patient_bootstrap.md)
MIN_UNITS = 10


def resampled_unit(y_true: ArrayLike, groups: Sequence[str | None] | None) -> dict[str, Any]:
    """What the bootstrap of `summarize` resamples: `resampled` 'patients' when `groups` gives some patient several
    films of one class, else 'films' (resampling patients of one film each is the same); `n_resampled`, how many
    (distinct patients, a patient with films of both classes counted once, and the films of no known patient);
    `per_class`, how many units each class draws from; `unkeyed`, the films of no known patient (None), each drawn
    alone."""
    labels = np.asarray(y_true).astype(int)
    n = int(labels.shape[0])
    names = [str(name) for name in CLASS_NAMES]
    if groups is None:
        return {"resampled": "films", "n_resampled": n,
                "per_class": {names[c]: int(np.count_nonzero(labels == c)) for c in (0, 1)}}
    units = _units(groups)
    pairs = {(int(label), unit) for label, unit in zip(labels, units)}
    unkeyed = sum(key is None for key in groups)
    info: dict[str, Any] = {"resampled": "patients", "n_resampled": len(set(units)),
                            "per_class": {names[c]: sum(label == c for label, _ in pairs) for c in (0, 1)}}
    if len(pairs) == n:
        info.update(resampled="films", n_resampled=n)
    return {**info, **({"unkeyed": unkeyed} if unkeyed else {})}


def _effective_patients(y_true: NDArray[np.int8], groups: Sequence[str | None]) -> dict[str, float]:
    """How many patients each class's films count as when each patient's are one cluster: Kish's n^2 / sum(n_i^2)
    (`effective_clusters`), fewer than the patients when some hold most of the films; to one decimal."""
    films = Counter(zip(y_true.tolist(), _units(groups)))
    return {str(CLASS_NAMES[c]): round(effective_clusters([k for (label, _), k in films.items() if label == c]), 1)
            for c in (0, 1)}


def _check_groups(groups: Sequence[str | None] | None, y_true: NDArray[np.int8]) -> None:
    if groups is not None and len(groups) != y_true.shape[0]:
        raise ValueError(f"groups must give one patient key per case: {len(groups)} for {y_true.shape[0]} cases.")


def _resamples(y_true: NDArray[np.int8], groups: Sequence[str | None] | None, n_boot: int,
               seed: int | None) -> NDArray[np.intp] | list[NDArray[np.intp]]:
    """The class-stratified resamples of `y_true`'s films: by patient when `groups` gives some patient several films of
    one class (`resampled_unit`), else of films."""
    if groups is not None and resampled_unit(y_true, groups)["resampled"] == "patients":
        return _patient_resamples(y_true, groups, n_boot, seed)
    return _stratified_indices(y_true, n_boot, seed)


def _bootstrap_values(metric: Metric, y_true: NDArray, y_other: NDArray,
                      idx: NDArray[np.intp] | Sequence[NDArray[np.intp]]) -> NDArray[np.float64]:
    values = np.empty(len(idx), dtype=np.float64)
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


def _logit_ci(values: NDArray[np.float64], estimate: float, alpha: float, n_positive: int,
              name: str = "the metric") -> tuple[float, float]:
    """A normal ``(1 - alpha)`` interval on the logit scale around `estimate` (a metric within (0, 1)), its standard
    error the bootstrap `values`' standard deviation there, mapped back; values within half a positive case of 0 or 1
    (0.5 / `n_positive`) are taken as that close. The percentile interval when the estimate is 0, 1 or NaN, or within
    1e-12 of 0 or 1 (a sum a rounding short: no logit of a resample at the end is finite that close)."""
    lo, hi = _percentile_ci(values, alpha, name)
    if not takes_logit(values, estimate, n_positive):
        return lo, hi
    valid = values[~np.isnan(values)]
    edge = min(0.5 / n_positive, 0.5 * min(estimate, 1.0 - estimate))
    logits = np.asarray(_logit(np.clip(np.r_[estimate, valid], edge, 1.0 - edge)))
    half = NormalDist().inv_cdf(1.0 - alpha / 2.0) * float(np.std(logits[1:], ddof=1))
    low, high = 1.0 / (1.0 + np.exp(-(logits[0] - half))), 1.0 / (1.0 + np.exp(-(logits[0] + half)))
    return float(low), float(high)


def takes_logit(values: NDArray[np.float64], estimate: float, n_positive: int) -> bool:
    """Whether `_logit_ci` gives the logit-scale interval for these bootstrap `values` (else the percentile one): two
    resamples not NaN, a positive case, and the estimate more than 1e-12 inside (0, 1)."""
    return (int(np.count_nonzero(~np.isnan(values))) >= 2 and n_positive >= 1
            and bool(1e-12 < estimate < 1.0 - 1e-12))


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
    groups: Sequence[str | None] | None = None,
    logit: bool = False,
) -> tuple[float, float]:
    """Percentile bootstrap ``(1 - alpha)`` interval of ``metric(y_true, y_other)``; with ``logit`` the normal one on
    the logit scale from the same resamples (`_logit_ci`: `summarize` gives it to average precision, LOGIT_METRICS).

    Cases are resampled with replacement within each class, so every resample keeps
    the original numbers of positives and negatives: films, or with ``groups`` patients as `summarize` draws them.
    Resamples where the metric is
    NaN are dropped, with a warning naming how many; if none is left, returns ``(nan, nan)`` with a warning.
    """
    _check_boot_args(n_boot, alpha)
    yt = _check_labels(y_true, "y_true")
    yo = _as_1d(y_other, "y_other")
    _check_lengths(yt, yo, "y_other")
    _check_groups(groups, yt)
    if yt.shape[0] == 0:
        warn("bootstrap_ci: empty input; returning (nan, nan).", UndefinedMetricWarning)
        return float("nan"), float("nan")
    idx = _resamples(yt, groups, n_boot, seed)
    name = getattr(metric, "__name__", "the metric")
    values = _bootstrap_values(metric, yt, yo, idx)
    if not logit:
        return _percentile_ci(values, alpha, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        estimate = metric(yt, yo)
    return _logit_ci(values, estimate, alpha, int(np.count_nonzero(yt)), name)


def _entry(value: float, ci: tuple[float, float]) -> dict[str, Any]:
    return {"value": float(value), "ci95": [float(ci[0]), float(ci[1])]}


def summarize(
    y_true: ArrayLike, y_prob: ArrayLike, threshold: float, *, n_boot: int = 1000, seed: int | None = 0,
    groups: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """Point estimates with 95% intervals, ECE and the confusion matrix at ``threshold``.

    Predictions are ``y_prob >= threshold`` -> PNEUMONIA. Accuracy, precision, recall, specificity and NPV get
    Wilson score intervals of their film counts (NaN when a rate is 0 of 0), when the bootstrap resamples patients
    with each patient's films as one cluster (`clustered_wilson_ci`); F1, ROC AUC, average precision
    (``pr_auc``) and Brier get percentile bootstrap intervals from the same class-stratified resamples: of films, or
    with ``groups`` (each film's patient key; None for a film of no known patient, drawn alone) of patients within
    each class. ``intervals`` records which metric got which and what was resampled (`resampled_unit`; and
    ``wilson_clustered``, true, when the Wilson intervals are clustered). The result
    holds only plain ints, floats, strings, lists and dicts.
    """
    _check_boot_args(n_boot, 0.05)
    try:
        thr = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number, got {threshold!r}.") from None
    if not math.isfinite(thr):
        raise ValueError(f"threshold must be finite, got {threshold!r}.")
    yt, yp = metrics._labels_and_scores(y_true, y_prob, probabilities=True, name="y_prob")
    _check_groups(groups, yt)
    y_pred = (yp >= thr).astype(np.int8)
    n = int(yt.shape[0])
    n_pos = int(np.count_nonzero(yt))
    tn, fp, fn, tp = metrics.confusion_counts(yt, y_pred)
    unit = resampled_unit(yt, groups)
    idx: NDArray[np.intp] | list[NDArray[np.intp]] | None = None
    if n:
        idx = _resamples(yt, groups, n_boot, seed)

    logit: list[str] = []  # the LOGIT_METRICS that got the logit-scale interval (not the percentile fallback)

    def interval(metric: Metric, other: NDArray, estimate: float | None = None, key: str = "") -> tuple[float, float]:
        if idx is None:
            return float("nan"), float("nan")
        values, name = _bootstrap_values(metric, yt, other, idx), getattr(metric, "__name__", "the metric")
        if estimate is None:
            return _percentile_ci(values, 0.05, name)
        if takes_logit(values, estimate, n_pos):
            logit.append(key)
        return _logit_ci(values, estimate, 0.05, n_pos, name)

    by_patient = unit["resampled"] == "patients"
    # each film's patient as an index (a film of no known patient its own), when the rates take patients as clusters
    cluster = np.unique(np.asarray(_units(groups)), return_inverse=True)[1] if by_patient and groups else None
    entries: dict[str, dict[str, Any]] = {}
    for name, fn_, films in _RATE_METRICS:
        entries[name] = _entry(fn_(yt, y_pred), _rate_ci(*films(yt, y_pred), cluster))
    for name, fn_ in _CALL_METRICS.items():
        entries[name] = _entry(fn_(yt, y_pred), interval(fn_, y_pred))
    for name, fn_ in _SCORE_METRICS.items():
        value = fn_(yt, yp)
        entries[name] = _entry(value, interval(fn_, yp, value if name in LOGIT_METRICS else None, name))
    summary: dict[str, Any] = {"n": n, "n_positive": n_pos, "n_negative": n - n_pos, "threshold": thr}
    summary.update((name, entries[name]) for name in SUMMARY_ORDER)
    summary["ece"] = {"value": float(metrics.expected_calibration_error(yt, yp))}
    summary["confusion_matrix"] = {"labels": list(CLASS_NAMES), "matrix": [[tn, fp], [fn, tp]]}
    summary["intervals"] = {"wilson": list(WILSON_METRICS), "bootstrap": list(BOOTSTRAP_METRICS),
                            "logit": logit, "n_boot": int(n_boot), "seed": seed, **unit}
    if by_patient and groups:
        summary["intervals"].update(wilson_clustered=True, effective_per_class=_effective_patients(yt, groups))
    return summary


def _rate_ci(trials: NDArray[np.bool_], successes: NDArray[np.bool_],
             cluster: NDArray[np.intp] | None) -> tuple[float, float]:
    """Wilson interval of the rate `successes` of `trials` (film masks): of the film counts, or with `cluster` (each
    film's patient index) with each patient's films as one cluster."""
    hits = trials & successes
    if cluster is None:
        return wilson_ci(int(hits.sum()), int(trials.sum()))
    return clustered_wilson_ci(np.bincount(cluster, weights=hits).astype(np.int64),
                               np.bincount(cluster, weights=trials).astype(np.int64))


def intervals_text(summary: dict[str, Any], options: str = "") -> str:
    """How a summary's 95% intervals were computed, as one sentence without its full stop (the `evaluate` header, the
    report page); a summary without `intervals` (a model's stored figures from before) had the bootstrap for all.
    `options`: the flags that set the resamples and seed, said after them (' (--n-boot, --seed)')."""
    info = summary.get("intervals")
    if not info:
        return f"95% intervals: stratified percentile bootstrap of films for every metric{options}"
    films = ("each patient's films one cluster: the film count divided by the design effect, scaled to the degrees of "
             "freedom of the effective number of patients, no bound tighter than with every film called alike" if
             info.get("wilson_clustered") else "each film counted as independent")
    return (f"95% intervals: Wilson score for {', '.join(info['wilson'])} ({films}); "
            f"percentile bootstrap for {', '.join(info['bootstrap'])}{_logit_words(info)}, {info['n_boot']} resamples of "
            f"{_drawn(info, options)}{_too_few(info)}")


def _logit_words(info: dict[str, Any]) -> str:
    """Which of an `intervals` record's bootstrapped metrics had the logit-scale interval, in words ('' before)."""
    logit = info.get("logit") or []
    return (f" (for {', '.join(logit)} a normal interval on the logit scale, its standard error the resamples' "
            f"there)") if logit else ""


def _drawn(info: dict[str, Any], options: str) -> str:
    """What the bootstrap of an `intervals` record drew, and with which seed (and `options`, the flags setting them)."""
    unkeyed = int(info.get("unkeyed", 0))
    seed = f"drawn with seed {info['seed']}{options}"
    if info["resampled"] == "films":
        unknown = f" (the patients of {counted(unkeyed, 'film')} are not known)" if unkeyed else ""
        return f"films within each class{unknown} {seed}"
    # before `per_class`, n_resampled counted a patient with films of both classes twice
    keyed = int(info["n_resampled"]) - unkeyed
    patients = f"the {keyed:,} patient{'' if keyed == 1 else 's'}" if "per_class" in info else "patients"
    alone = f" ({counted(unkeyed, 'film')} of no known patient drawn alone)" if unkeyed else ""
    return (f"{patients}{alone} within each class {seed}, each patient with all of their films of that class "
            f"(their films of the other class, if any, drawn separately with that class)")


def resampled_words(info: dict[str, Any]) -> str:
    """How a bootstrap drew (`resampled_unit`'s record), in a few words: 'resampled by patient: the 12 patients each
    drawn with all of their films', or 'resampled film by film' (and why, when `info` says no patients were known:
    `known` false)."""
    if info["resampled"] == "films":
        return "resampled film by film" + ("" if info.get("known", True) else ", the model storing no patients of them")
    unkeyed = int(info.get("unkeyed", 0))
    alone = f" ({counted(unkeyed, 'film')} of no known patient drawn alone)" if unkeyed else ""
    keyed = int(info["n_resampled"]) - unkeyed
    patients = f"the {keyed:,} patient{'' if keyed == 1 else 's'}"
    return f"resampled by patient: {patients} each drawn with all of their films{alone}"


def too_few_units(info: dict[str, Any]) -> dict[str, int]:
    """The classes an `intervals` record's bootstrap drew from fewer than MIN_UNITS units, with their counts."""
    return {name: n for name, n in (info.get("per_class") or {}).items() if 0 < n < MIN_UNITS}


def _too_few(info: dict[str, Any]) -> str:
    """The warning clauses of an `intervals` record: its bootstrap drew a class from fewer than MIN_UNITS units (too
    narrow); its clustered Wilson intervals took a class's films as fewer than MIN_UNITS effective patients (wide)."""
    unit = "patient" if info["resampled"] == "patients" else "film"
    few = [counted(n, f"{name} {unit}") for name, n in too_few_units(info).items()]
    boot = (f"; these are unreliable, much too narrow: the bootstrap draws from only {' and '.join(few)} "
            f"(fewer than {MIN_UNITS} in a class)") if few else ""
    effective = {name: n for name, n in (info.get("effective_per_class") or {}).items()
                 if 0 < n < MIN_UNITS} if info.get("wilson_clustered") else {}
    if not effective:
        return boot
    # bench/rate_coverage.py, bench/interval_coverage.py: with few effective patients the clustered intervals held
    # the true rate 94-100 % of the time (94.1-94.7 % at a true recall of 0.995 from 10 patients)
    counts = " and the ".join(f"{name} films {'count ' if i == 0 else ''}as {n:g} patient{'' if n == 1 else 's'}"
                              for i, (name, n) in enumerate(effective.items()))
    return (f"{boot}; the rates' Wilson intervals are wide, as few patients hold the films (in simulations they held the true "
            f"rate about 94-100 % of the time): the "
            f"{counts} (Kish's effective number, fewer than {MIN_UNITS})")


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


CLASSIFICATION_COLUMNS = ("class", "precision", "recall", "f1-score", "support")


def classification_report_rows(
    y_true: ArrayLike, y_pred: ArrayLike, class_names: Sequence[str] = CLASS_NAMES
) -> list[list[object]]:
    """The rows of `classification_report_text` (CLASSIFICATION_COLUMNS) as numbers, not as its 3-decimal text, which
    shows 0.9995 as 1.000: each class, accuracy (its precision and recall cells empty), macro and weighted
    averages; NaN where undefined."""
    from sklearn.metrics import classification_report

    if len(class_names) != 2:
        raise ValueError(f"class_names must name exactly 2 classes, got {list(class_names)!r}.")
    yt, yp = metrics._labels_and_preds(y_true, y_pred)
    if yt.shape[0] == 0:
        raise ValueError("classification_report_rows needs at least one case; y_true is empty.")
    names = [str(c) for c in class_names]
    report = classification_report(yt, yp, labels=[0, 1], target_names=names, zero_division=np.nan, output_dict=True)
    rows: list[list[object]] = []
    for name, entry in report.items():
        if isinstance(entry, dict):
            rows.append([name, *(float(entry[k]) for k in CLASSIFICATION_COLUMNS[1:4]), int(entry["support"])])
        else:  # accuracy: one number, over every film
            rows.append([name, "", "", float(entry), int(yt.shape[0])])
    return rows
