from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import calibration as skcal
from sklearn import metrics as sk

from pneumoscan.evaluation import metrics as M
from pneumoscan.evaluation.metrics import UndefinedMetricWarning

SEEDS = [0, 1, 2, 3, 4]


def make_data(seed: int, n: int = 300, prevalence: float = 0.6, decimals: int | None = 2):
    """Labels, informative probabilities (rounded to force ties) and thresholded predictions."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    y[:2] = [0, 1]
    p = np.clip(rng.normal(0.4 + 0.25 * y, 0.2), 0.0, 1.0)
    if decimals is not None:
        p = np.round(p, decimals)
    return y, p, (p >= 0.5).astype(int)


@st.composite
def labelled_scores(draw, min_size: int = 1, max_size: int = 60, both_classes: bool = False):
    n = draw(st.integers(min_size, max_size))
    y = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    if both_classes:
        if n < 2:
            y = [0, 1]
        elif len(set(y)) < 2:
            y[0] = 1 - y[0]
    grid = st.integers(0, 10).map(lambda k: k / 10)
    probs = st.one_of(grid, st.floats(0.0, 1.0, allow_nan=False))
    p = draw(st.lists(probs, min_size=len(y), max_size=len(y)))
    return np.array(y), np.array(p)


@pytest.mark.parametrize("seed", SEEDS)
def test_confusion_counts_match_sklearn(seed):
    y, _, pred = make_data(seed)
    assert M.confusion_counts(y, pred) == tuple(sk.confusion_matrix(y, pred, labels=[0, 1]).ravel().tolist())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    ("ours", "reference"),
    [
        (M.accuracy, sk.accuracy_score),
        (M.precision, sk.precision_score),
        (M.recall, sk.recall_score),
        (M.specificity, lambda y, p: sk.recall_score(y, p, pos_label=0)),
        (M.npv, lambda y, p: sk.precision_score(y, p, pos_label=0)),
        (M.f1, sk.f1_score),
    ],
    ids=["accuracy", "precision", "recall", "specificity", "npv", "f1"],
)
def test_threshold_metrics_match_sklearn(seed, ours, reference):
    y, _, pred = make_data(seed, prevalence=[0.2, 0.5, 0.8, 0.6, 0.4][seed])
    value = ours(y, pred)
    assert isinstance(value, float)
    assert value == pytest.approx(reference(y, pred), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [None, 1, 2])
@pytest.mark.parametrize(
    ("ours", "reference"),
    [
        (M.roc_auc, sk.roc_auc_score),
        (M.pr_auc, sk.average_precision_score),
        (M.brier, sk.brier_score_loss),
        (M.log_loss, lambda y, p: sk.log_loss(y, p, labels=[0, 1])),
    ],
    ids=["roc_auc", "pr_auc", "brier", "log_loss"],
)
def test_score_metrics_match_sklearn(seed, decimals, ours, reference):
    y, p, _ = make_data(seed, decimals=decimals)
    assert ours(y, p) == pytest.approx(reference(y, p), abs=1e-9)


def test_log_loss_clips_certain_wrong_predictions_like_sklearn():
    y = np.array([0, 1, 1, 0])
    p = np.array([1.0, 0.0, 1.0, 0.0])
    value = M.log_loss(y, p)
    assert math.isfinite(value)
    assert value == pytest.approx(sk.log_loss(y, p, labels=[0, 1]), rel=1e-12)


def test_auc_handles_all_tied_scores():
    y = np.array([0, 1, 0, 1, 1])
    p = np.full(5, 0.3)
    assert M.roc_auc(y, p) == pytest.approx(0.5, abs=1e-12)
    assert M.pr_auc(y, p) == pytest.approx(sk.average_precision_score(y, p), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_curves_match_sklearn(seed):
    y, p, _ = make_data(seed)
    for ours, ref in zip(M.roc_curve(y, p), sk.roc_curve(y, p)):
        np.testing.assert_allclose(ours, ref)
    for ours, ref in zip(M.pr_curve(y, p), sk.precision_recall_curve(y, p)):
        np.testing.assert_allclose(ours, ref)


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("n_bins", [1, 5, 10, 15])
def test_reliability_curve_matches_sklearn_calibration_curve(seed, n_bins):
    y, p, _ = make_data(seed, decimals=1)
    mean_prob, freq, count = M.reliability_curve(y, p, n_bins=n_bins)
    prob_true, prob_pred = skcal.calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    np.testing.assert_allclose(mean_prob, prob_pred, atol=1e-12)
    np.testing.assert_allclose(freq, prob_true, atol=1e-12)
    assert count.sum() == len(y)
    assert np.all(count > 0)


def _ece_reference(y: np.ndarray, p: np.ndarray, n_bins: int) -> float:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total = 0.0
    for i in range(n_bins):
        in_bin = (p > edges[i]) & (p <= edges[i + 1]) if i else (p >= edges[0]) & (p <= edges[1])
        if in_bin.any():
            total += in_bin.sum() / len(p) * abs(p[in_bin].mean() - y[in_bin].mean())
    return total


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_bins", [1, 10, 20])
def test_ece_matches_binned_reference(seed, n_bins):
    y, p, _ = make_data(seed, decimals=[None, 1, 2, 3, 2][seed])
    assert M.expected_calibration_error(y, p, n_bins=n_bins) == pytest.approx(_ece_reference(y, p, n_bins), abs=1e-12)


def test_ece_is_zero_for_perfectly_calibrated_bins_and_large_when_overconfident():
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    calibrated = np.array([0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75])
    assert M.expected_calibration_error(y, calibrated) == pytest.approx(0.0, abs=1e-12)
    wrong = np.where(y == 1, 0.0, 1.0)
    assert M.expected_calibration_error(y, wrong) == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(labelled_scores(both_classes=True))
def test_property_ranking_metrics_equal_sklearn(data):
    y, p = data
    assert M.roc_auc(y, p) == pytest.approx(sk.roc_auc_score(y, p), abs=1e-9)
    assert M.pr_auc(y, p) == pytest.approx(sk.average_precision_score(y, p), abs=1e-9)


@pytest.mark.filterwarnings("ignore::pneumoscan.evaluation.metrics.UndefinedMetricWarning")
@settings(max_examples=60, deadline=None)
@given(labelled_scores(), st.floats(0.0, 1.0))
def test_property_metrics_in_unit_interval(data, threshold):
    y, p = data
    pred = (p >= threshold).astype(int)
    values = [
        M.accuracy(y, pred),
        M.precision(y, pred),
        M.recall(y, pred),
        M.specificity(y, pred),
        M.npv(y, pred),
        M.f1(y, pred),
        M.roc_auc(y, p),
        M.pr_auc(y, p),
        M.brier(y, p),
        M.expected_calibration_error(y, p),
    ]
    for v in values:
        assert isinstance(v, float)
        assert math.isnan(v) or 0.0 <= v <= 1.0
    assert M.log_loss(y, p) >= 0.0


@pytest.mark.parametrize(
    ("func", "y", "other"),
    [
        (M.roc_auc, [1, 1, 1], [0.2, 0.5, 0.9]),
        (M.roc_auc, [0, 0], [0.2, 0.5]),
        (M.pr_auc, [0, 0, 0], [0.2, 0.5, 0.9]),
        (M.precision, [0, 1, 1], [0, 0, 0]),
        (M.recall, [0, 0, 0], [0, 1, 0]),
        (M.specificity, [1, 1], [1, 0]),
        (M.npv, [0, 1, 1], [1, 1, 1]),
        (M.f1, [0, 0], [0, 0]),
    ],
)
def test_undefined_metric_returns_nan_with_warning(func, y, other):
    with pytest.warns(UndefinedMetricWarning, match="undefined"):
        value = func(y, other)
    assert isinstance(value, float) and math.isnan(value)


def test_defined_edge_cases_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert M.pr_auc([1, 1], [0.2, 0.9]) == 1.0
        assert M.f1([0, 1], [0, 0]) == 0.0
        assert M.brier([1, 1], [1.0, 0.5]) == pytest.approx(0.125)
        assert M.accuracy([0, 0], [0, 0]) == 1.0


@pytest.mark.parametrize(
    "func",
    [M.accuracy, M.precision, M.recall, M.specificity, M.npv, M.f1, M.roc_auc, M.pr_auc, M.brier, M.log_loss,
     M.expected_calibration_error],
)
def test_empty_input_returns_nan_with_warning(func):
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(func([], []))


def test_curves_warn_on_single_class_and_empty_input():
    with pytest.warns(UndefinedMetricWarning):
        fpr, tpr, _ = M.roc_curve([1, 1, 1], [0.1, 0.4, 0.8])
    assert np.all(np.isnan(fpr)) and not np.any(np.isnan(tpr))
    with pytest.warns(UndefinedMetricWarning):
        _, rec, _ = M.pr_curve([0, 0], [0.1, 0.4])
    assert np.all(np.isnan(rec))
    with pytest.warns(UndefinedMetricWarning):
        assert all(a.size == 0 for a in M.roc_curve([], []))
    with pytest.warns(UndefinedMetricWarning):
        assert all(a.size == 0 for a in M.reliability_curve([], []))


def test_confusion_counts_returns_python_ints_and_accepts_bools():
    counts = M.confusion_counts(np.array([True, False, True, True]), [1, 1, 0, 1])
    assert counts == (0, 1, 1, 2)
    assert all(type(c) is int for c in counts)


@pytest.mark.parametrize(
    "func", [M.accuracy, M.precision, M.recall, M.f1, M.roc_auc, M.pr_auc, M.brier, M.log_loss]
)
@pytest.mark.parametrize(
    ("y", "other", "message"),
    [
        ([0, 2, 1], [0, 1, 1], "only 0"),
        ([0, -1], [0, 1], "only 0"),
        ([0.0, 0.5], [0, 1], "only 0"),
        (["NORMAL", "PNEUMONIA"], [0, 1], "numeric"),
        ([0, 1, 1], [0, 1], "same length"),
        ([[0, 1]], [[0, 1]], "1-D"),
    ],
)
def test_bad_labels_or_lengths_raise_value_error(func, y, other, message):
    with pytest.raises(ValueError, match=message):
        func(y, other)


@pytest.mark.parametrize("func", [M.accuracy, M.precision, M.recall, M.specificity, M.npv, M.f1])
def test_predictions_must_be_binary(func):
    with pytest.raises(ValueError, match="y_pred"):
        func([0, 1], [0.2, 0.9])


@pytest.mark.parametrize("func", [M.brier, M.log_loss, M.expected_calibration_error, M.reliability_curve])
@pytest.mark.parametrize("bad", [[0.2, 1.5], [-0.1, 0.5], [0.2, float("nan")]])
def test_probabilities_out_of_range_raise(func, bad):
    with pytest.raises(ValueError, match="y_prob"):
        func([0, 1], bad)


def test_auc_accepts_unbounded_scores_but_not_nan():
    assert M.roc_auc([0, 1, 1], [-3.0, 2.0, 10.0]) == 1.0
    with pytest.raises(ValueError, match="finite"):
        M.roc_auc([0, 1], [0.1, float("inf")])


@pytest.mark.parametrize("n_bins", [0, -1, 2.5, True])
def test_bad_n_bins_raise(n_bins):
    with pytest.raises(ValueError, match="n_bins"):
        M.expected_calibration_error([0, 1], [0.1, 0.9], n_bins=n_bins)


@pytest.mark.filterwarnings("ignore::pneumoscan.evaluation.metrics.UndefinedMetricWarning")
@settings(max_examples=150, deadline=None)
@given(labelled_scores(max_size=40), st.floats(0.0, 1.0))
def test_property_threshold_metrics_and_counts_equal_sklearn(data, threshold):
    """At any threshold (a score itself half the time: `>=` decides it PNEUMONIA), one class or both, predictions of
    one class or both: the counts sum to n and every rate is sklearn's, NaN where sklearn's zero_division is."""
    y, p = data
    pred = (p >= (p[0] if threshold < 0.5 else threshold)).astype(int)
    counts = M.confusion_counts(y, pred)
    assert counts == tuple(sk.confusion_matrix(y, pred, labels=[0, 1]).ravel().tolist()) and sum(counts) == len(y)
    nan = {"zero_division": np.nan}
    for ours, reference in ((M.accuracy(y, pred), sk.accuracy_score(y, pred)),
                            (M.precision(y, pred), sk.precision_score(y, pred, **nan)),
                            (M.recall(y, pred), sk.recall_score(y, pred, **nan)),
                            (M.specificity(y, pred), sk.recall_score(y, pred, pos_label=0, **nan)),
                            (M.npv(y, pred), sk.precision_score(y, pred, pos_label=0, **nan)),
                            (M.f1(y, pred), sk.f1_score(y, pred, **nan))):
        assert ours == pytest.approx(reference, abs=1e-12, nan_ok=True)


@settings(max_examples=150, deadline=None)
@given(labelled_scores(), st.integers(1, 20))
def test_property_probability_metrics_equal_sklearn(data, n_bins):
    """Brier, log loss, the reliability curve and ECE (its count-weighted gaps) on any probabilities, 0 and 1 and
    bin edges among them, against sklearn."""
    y, p = data
    assert M.brier(y, p) == pytest.approx(sk.brier_score_loss(y, p, pos_label=1), abs=1e-12)
    assert M.log_loss(y, p) == pytest.approx(sk.log_loss(y, p, labels=[0, 1]), rel=1e-9)
    mean_prob, freq, count = M.reliability_curve(y, p, n_bins=n_bins)
    prob_true, prob_pred = skcal.calibration_curve(y, p, n_bins=n_bins, strategy="uniform", pos_label=1)
    np.testing.assert_allclose(mean_prob, prob_pred, atol=1e-12)
    np.testing.assert_allclose(freq, prob_true, atol=1e-12)
    assert count.sum() == len(y)
    ece = float(np.sum(count / len(y) * np.abs(prob_pred - prob_true)))
    assert M.expected_calibration_error(y, p, n_bins=n_bins) == pytest.approx(ece, abs=1e-12)


# --- DeLong's paired test of two ROC AUCs -------------------------------------------------------------------------


def _slow_delong(y, a, b, groups=None):
    """DeLong's (or with `groups` Obuchowski's clustered) variance of auc_a - auc_b from the O(n^2) kernel
    psi(x, y) = 1 if x > y, 1/2 if equal, 0 if below, over every positive-negative pair."""
    y = np.asarray(y)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    v10, v01 = [], []
    for s in (np.asarray(a, float), np.asarray(b, float)):
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    aucs = np.array([v.mean() for v in v10])
    m, n = len(pos), len(neg)
    if groups is None:
        groups = [str(i) for i in range(len(y))]
    keys = sorted(set(groups))
    c10 = np.zeros((2, len(keys)))
    c01 = np.zeros((2, len(keys)))
    m_i = np.zeros(len(keys))
    n_i = np.zeros(len(keys))
    for k in range(2):
        for j, film in enumerate(pos):
            c10[k, keys.index(groups[film])] += v10[k][j]
        for j, film in enumerate(neg):
            c01[k, keys.index(groups[film])] += v01[k][j]
    for film in pos:
        m_i[keys.index(groups[film])] += 1
    for film in neg:
        n_i[keys.index(groups[film])] += 1
    d10 = c10 - m_i * aucs[:, None]
    d01 = c01 - n_i * aucs[:, None]
    k10, k01, kk = int((m_i > 0).sum()), int((n_i > 0).sum()), len(keys)
    cov = np.zeros((2, 2))
    for p in range(2):
        for q in range(2):
            s10 = k10 / ((k10 - 1) * m * m) * sum(d10[p, i] * d10[q, i] for i in range(kk))
            s01 = k01 / ((k01 - 1) * n * n) * sum(d01[p, i] * d01[q, i] for i in range(kk))
            s11 = kk / ((kk - 1) * m * n) * sum(d10[p, i] * d01[q, i] + d10[q, i] * d01[p, i] for i in range(kk))
            cov[p, q] = s10 + s01 + s11
    return aucs, cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]


@st.composite
def paired_scores(draw, clustered: bool = False):
    y, a = draw(labelled_scores(min_size=4, max_size=40, both_classes=True))
    y[:4] = [0, 0, 1, 1]  # two films of each class at least
    b = np.array(draw(st.lists(st.integers(0, 10).map(lambda k: k / 10), min_size=len(y), max_size=len(y))))
    groups = None
    if clustered:
        groups = [str(draw(st.integers(0, 6))) for _ in y]
        groups[:4] = ["x", "y", "z", "w"]  # two patients of each class at least
    return y, a, b, groups


@settings(max_examples=150, deadline=None)
@given(paired_scores())
def test_delong_matches_the_direct_quadratic_computation(data):
    y, a, b, _ = data
    aucs, var = _slow_delong(y, a, b)
    result = M.delong_auc_difference(y, a, b)
    assert result.auc_a == pytest.approx(aucs[0], abs=1e-12)
    assert result.auc_b == pytest.approx(aucs[1], abs=1e-12)
    assert result.auc_a == pytest.approx(sk.roc_auc_score(y, a), abs=1e-12)
    assert result.se == pytest.approx(math.sqrt(max(var, 0.0)), abs=1e-9)
    if result.se > 0:
        z = result.difference / result.se
        assert result.p_value == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), abs=1e-12)
        assert result.ci95[0] == pytest.approx(result.difference - 1.959964 * result.se, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(paired_scores(clustered=True))
def test_clustered_delong_matches_obuchowski_computed_directly(data):
    y, a, b, groups = data
    _, var = _slow_delong(y, a, b, groups)
    assert M.delong_auc_difference(y, a, b, groups=groups).se == pytest.approx(math.sqrt(max(var, 0.0)), abs=1e-9)


def test_delong_variance_of_one_model_on_a_worked_example():
    # positives 0.8, 0.6; negatives 0.7, 0.2, 0.1. Placements V10 = (1, 2/3), V01 = (1/2, 1, 1), AUC = 5/6;
    # DeLong's variance = var(V10)/m + var(V01)/n = (1/18)/2 + (1/12)/3 = 1/18. Against a model of no skill (one score
    # for every film, AUC 1/2, placements all 1/2, no variance) the difference's variance is that model's alone.
    y, a = [1, 1, 0, 0, 0], [0.8, 0.6, 0.7, 0.2, 0.1]
    result = M.delong_auc_difference(y, a, [0.5] * 5)
    assert result.auc_a == pytest.approx(5 / 6)
    assert result.auc_b == 0.5
    assert result.se ** 2 == pytest.approx(1 / 18)


def test_delong_films_of_their_own_patient_are_delong_and_shared_patients_change_it():
    y, a, _ = make_data(0, n=120, decimals=None)
    b = a + np.random.default_rng(1).normal(0, 0.2, a.size)
    films = M.delong_auc_difference(y, a, b)
    assert M.delong_auc_difference(y, a, b, groups=[f"p{i}" for i in range(y.size)]).se == pytest.approx(films.se)
    assert M.delong_auc_difference(y, a, b, groups=[None] * y.size).se == pytest.approx(films.se)
    assert M.delong_auc_difference(y, a, b, groups=[f"p{i // 4}" for i in range(y.size)]).se != pytest.approx(films.se)


def test_delong_identical_models_and_one_class():
    y, a, _ = make_data(2)
    same = M.delong_auc_difference(y, a, a)
    assert (same.difference, same.se, same.p_value) == (0.0, 0.0, 1.0)
    with pytest.warns(UndefinedMetricWarning, match="two films of each class"):
        one = M.delong_auc_difference([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    assert all(math.isnan(v) for v in (one.auc_a, one.difference, one.se, one.p_value, *one.ci95))
    with pytest.warns(UndefinedMetricWarning, match="two patients of each class"):
        few = M.delong_auc_difference([1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2], [0.7, 0.9, 0.3, 0.1],
                                      groups=["a", "a", "b", "c"])
    assert few.auc_a == 1.0 and math.isnan(few.p_value)
    with pytest.raises(ValueError, match="same length"):
        M.delong_auc_difference([0, 1], [0.1, 0.2], [0.1])


def test_delong_difference_without_variance_has_no_point_interval():
    """A model ranking every pair right against one scoring every film alike: each model's placements are constant,
    so DeLong's variance of their 0.5 difference is 0. The interval was (0.5, 0.5), certain, beside a p-value of NaN;
    compare showed 0.5 [0.5, 0.5], p n/a. Nothing can be said of its sampling error: interval and p-value undefined."""
    y, perfect = [1, 1, 1, 0, 0, 0], [0.9, 0.8, 0.7, 0.3, 0.2, 0.1]
    with pytest.warns(UndefinedMetricWarning, match="no estimated variance"):
        flat = M.delong_auc_difference(y, perfect, [0.5] * 6)
    assert (flat.difference, flat.se) == (0.5, 0.0)
    assert all(math.isnan(v) for v in (*flat.ci95, flat.p_value))
    same = M.delong_auc_difference(y, perfect, [s / 2 for s in perfect])  # the same ranking: no difference, p 1
    assert (same.difference, same.ci95, same.p_value) == (0.0, (0.0, 0.0), 1.0)


def test_average_precision_of_a_perfect_ranking_is_exactly_one():
    """Summed as recall steps of 1/m times precision 1, a perfect ranking of 24, 28 or 30 positives (among others)
    came to 0.9999999999999999: evaluate printed it with 16 decimals, and its logit-scale interval was NaN."""
    for m in range(1, 80):
        y = np.r_[np.ones(m, dtype=int), np.zeros(7, dtype=int)]
        assert M.pr_auc(y, np.r_[np.linspace(0.6, 1.0, m), np.linspace(0.0, 0.5, 7)]) == 1.0, m
