from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk

from pneumoscan.evaluation import metrics as M
from pneumoscan.evaluation.thresholds import (
    DEFAULT_THRESHOLDS,
    adjust_for_prevalence,
    threshold_ci95,
    threshold_for_recall,
    threshold_table,
    youden_threshold,
)
from tests.conftest import known_interval_scores


def make_data(seed: int, n: int = 200):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.6).astype(int)
    y[:2] = [0, 1]
    p = np.round(np.clip(rng.normal(0.4 + 0.25 * y, 0.2), 0.0, 1.0), 2)
    return y, p


def recall_at(y: np.ndarray, p: np.ndarray, t: float) -> float:
    return float(np.mean(p[y == 1] >= t))


@st.composite
def labelled_probs(draw, need_neg: bool = False):
    n = draw(st.integers(1, 50))
    y = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    y[0] = 1
    if need_neg:
        y.append(0)
    grid = st.integers(0, 20).map(lambda k: k / 20)
    p = draw(st.lists(st.one_of(grid, st.floats(0.0, 1.0)), min_size=len(y), max_size=len(y)))
    return np.array(y), np.array(p)


@settings(max_examples=100, deadline=None)
@given(labelled_probs(), st.floats(0.0, 1.0, exclude_min=True))
def test_property_threshold_for_recall_is_highest_reaching_target(data, target):
    y, p = data
    t = threshold_for_recall(y, p, target)
    assert recall_at(y, p, t) >= target
    assert M.recall(y, (p >= t).astype(int)) >= target
    # the same decisions as the highest threshold that reaches the target, a score of one of the cases
    highest = max(c for c in np.unique(p) if recall_at(y, p, c) >= target)
    assert np.array_equal(p >= t, p >= highest)
    below = p[p < highest]
    if below.size and np.nextafter(below.max(), np.inf) < highest:  # room between: no case sits on the threshold
        assert t not in p and below.max() < t < highest


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95, 0.99, 1.0])
def test_threshold_for_recall_maximises_specificity(target):
    y, p = make_data(3)
    t = threshold_for_recall(y, p, target)
    candidates = [c for c in np.unique(p) if recall_at(y, p, c) >= target]
    best_spec = max(M.specificity(y, (p >= c).astype(int)) for c in candidates)
    assert M.specificity(y, (p >= t).astype(int)) == best_spec
    assert t == pytest.approx((max(candidates) + max(p[p < max(candidates)], default=0.0)) / 2)


def test_threshold_for_recall_exact_fractions_are_not_lost_to_rounding():
    y = np.array([1] * 20 + [0] * 5)
    p = np.r_[np.linspace(0.99, 0.80, 20), np.full(5, 0.1)]
    assert threshold_for_recall(y, p, 0.95) == pytest.approx((p[18] + p[19]) / 2)
    assert threshold_for_recall(y, p, 1.0) == pytest.approx((p[19] + 0.1) / 2)


def test_threshold_is_midway_to_the_next_lower_score_so_rounding_cannot_flip_the_film_it_was_chosen_on():
    y = np.array([1, 1, 1, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6172, 0.5, 0.2])
    t = threshold_for_recall(y, p, 1.0)
    assert t == pytest.approx(0.5586)
    assert recall_at(y, p - 1e-7, t) == 1.0  # another backend scoring every film 1e-7 lower
    assert threshold_for_recall([1, 1], [0.9, 0.6], 1.0) == pytest.approx(0.3)  # nothing below: midway to 0
    assert youden_threshold([0, 1], [0.25, 0.75]) == 0.5
    tight = np.nextafter(0.6, 0.0)  # adjacent floats: no room between them, the score itself
    assert threshold_for_recall([1, 0], [0.6, tight], 1.0) == 0.6


def test_threshold_for_recall_errors():
    with pytest.raises(ValueError, match="positive"):
        threshold_for_recall([0, 0], [0.1, 0.9], 0.9)
    for bad in (0.0, 1.5, -0.1, float("nan"), "high"):
        with pytest.raises(ValueError, match="target_recall"):
            threshold_for_recall([0, 1], [0.1, 0.9], bad)
    with pytest.raises(ValueError, match="only 0"):
        threshold_for_recall([0, 2], [0.1, 0.9], 0.9)
    with pytest.raises(ValueError, match="y_prob"):
        threshold_for_recall([0, 1], [0.1, 1.9], 0.9)


def youden_j(y: np.ndarray, p: np.ndarray, t: float) -> float:
    pred = (p >= t).astype(int)
    return M.recall(y, pred) + M.specificity(y, pred) - 1.0


@settings(max_examples=100, deadline=None)
@given(labelled_probs(need_neg=True))
def test_property_youden_threshold_maximises_j(data):
    y, p = data
    t = youden_threshold(y, p)
    fpr, tpr, _ = sk.roc_curve(y, p, drop_intermediate=False)
    assert youden_j(y, p, t) == pytest.approx(np.max(tpr - fpr), abs=1e-12)
    higher = np.unique(p[p > t])
    assert all(youden_j(y, p, c) < youden_j(y, p, t) - 1e-12 for c in higher[1:])  # higher[0]: the same decisions


def test_youden_threshold_breaks_exact_ties_towards_highest_despite_float_rounding():
    y = np.array([1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0])
    p = np.array([0.1, 0, 0, 0, 0, 0.05, 0.1, 0, 0, 0, 0, 0.05, 0.05, 0.03125, 0.05])
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())

    def exact_j(t: float) -> Fraction:
        return Fraction(int(np.sum(p[y == 1] >= t)), n_pos) - Fraction(int(np.sum(p[y == 0] >= t)), n_neg)

    candidates = sorted(set(p.tolist()))
    best = max(exact_j(t) for t in candidates)
    best_t = max(t for t in candidates if exact_j(t) == best)
    assert youden_threshold(y, p) == pytest.approx((best_t + max(c for c in candidates if c < best_t)) / 2)


def test_youden_threshold_separable_data_and_errors():
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    assert youden_threshold(y, p) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both"):
        youden_threshold([1, 1], [0.2, 0.4])


def test_threshold_table_default_rows_match_metrics():
    y, p = make_data(1)
    rows = threshold_table(y, p)
    assert [r["threshold"] for r in rows] == list(DEFAULT_THRESHOLDS)
    assert len(rows) == 19 and rows[0]["threshold"] == 0.05 and rows[-1]["threshold"] == 0.95
    for row in rows:
        assert set(row) == {"threshold", "sensitivity", "specificity", "ppv", "npv", "f1"}
        pred = (p >= row["threshold"]).astype(int)
        assert row["sensitivity"] == sk.recall_score(y, pred)
        assert row["specificity"] == sk.recall_score(y, pred, pos_label=0)
        assert row["ppv"] == pytest.approx(sk.precision_score(y, pred, zero_division=np.nan), nan_ok=True)
        assert row["npv"] == pytest.approx(sk.precision_score(y, pred, pos_label=0, zero_division=np.nan), nan_ok=True)
        assert row["f1"] == pytest.approx(sk.f1_score(y, pred))
    sens = [r["sensitivity"] for r in rows]
    assert sens == sorted(sens, reverse=True)


def test_threshold_table_adds_extra_thresholds_sorted_and_deduplicated():
    y, p = make_data(2)
    rows = threshold_table(y, p, thresholds=[0.37, 0.5, 0.01])
    ts = [r["threshold"] for r in rows]
    assert ts == sorted(set(DEFAULT_THRESHOLDS) | {0.37, 0.01})
    only = threshold_table(y, p, thresholds=[0.6, 0.3], include_defaults=False)
    assert [r["threshold"] for r in only] == [0.3, 0.6]
    with pytest.raises(ValueError, match="finite"):
        threshold_table(y, p, thresholds=[float("nan")])


def test_threshold_table_undefined_ppv_is_nan():
    with pytest.warns(M.UndefinedMetricWarning):
        rows = threshold_table([0, 1, 0], [0.1, 0.2, 0.3], thresholds=[0.9], include_defaults=False)
    assert math.isnan(rows[0]["ppv"]) and rows[0]["sensitivity"] == 0.0


def test_adjust_for_prevalence_identity_when_prevalence_unchanged():
    p = np.array([0.0, 1e-6, 0.1, 0.5, 0.73, 0.999, 1.0])
    np.testing.assert_allclose(adjust_for_prevalence(p, 0.3, 0.3), p, rtol=1e-9, atol=1e-11)


def test_adjust_for_prevalence_matches_odds_formula():
    p = np.array([0.1, 0.5, 0.9])
    train, new = 0.7, 0.2
    odds = p / (1 - p) * (new / (1 - new)) / (train / (1 - train))
    np.testing.assert_allclose(adjust_for_prevalence(p, train, new), odds / (1 + odds), rtol=1e-12)
    assert adjust_for_prevalence([0.5], 0.5, 0.1)[0] == pytest.approx(0.1)


def test_adjust_for_prevalence_is_safe_at_the_extremes():
    out = adjust_for_prevalence(np.array([0.0, 1.0]), 1e-9, 1 - 1e-9)
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))
    assert out[0] < out[1]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0), min_size=2, max_size=30),
    st.floats(0.01, 0.99),
    st.floats(0.01, 0.99),
    st.floats(0.01, 0.99),
)
def test_property_adjust_for_prevalence_monotone(p, train, new_a, new_b):
    assume(abs(new_a - new_b) > 1e-3)
    p = np.sort(np.array(p))
    low, high = sorted((new_a, new_b))
    a = adjust_for_prevalence(p, train, low)
    b = adjust_for_prevalence(p, train, high)
    assert np.all((a >= 0) & (a <= 1))
    assert np.all(np.diff(a) >= 0)
    assert np.all(b >= a)
    interior = (p > 1e-6) & (p < 1 - 1e-6)
    assert np.all(b[interior] > a[interior])


def test_adjust_for_prevalence_keeps_the_order_of_confident_scores():
    """A confident model's P reaches 1e-13 and 1 - 1e-13 (logits beyond +-28, which training's float64 sigmoid keeps
    apart); the re-weighted probabilities must keep them apart too, and keep a threshold chosen among them on the
    same side of every film (it was 1e-12 clipping: all of them one value, so films below the threshold were flagged)."""
    y = np.array([0, 0, 1, 1, 0, 1, 1, 1])
    p = 1 / (1 + np.exp(-np.array([-45.0, -40.0, -35.0, -30.0, 29.0, 31.0, 33.0, 35.0])))
    adjusted = adjust_for_prevalence(p, 0.5, 0.2)
    assert np.all(np.diff(adjusted) > 0)
    odds = p / (1 - p) * 0.25
    np.testing.assert_allclose(adjusted, odds / (1 + odds), rtol=1e-9)
    for target in (1.0, 0.5):
        t = threshold_for_recall(y, p, target)
        assert np.array_equal(adjusted >= adjust_for_prevalence([t], 0.5, 0.2)[0], p >= t), target
    assert M.roc_auc(y, adjusted) == M.roc_auc(y, p)
    np.testing.assert_array_equal(adjust_for_prevalence([0.0, 1.0], 0.5, 0.2), [0.0, 1.0])  # certain stays certain


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(-120, 58)), min_size=1, max_size=40),
       st.floats(0.01, 0.99), st.sampled_from([0.5, 0.9, 1.0]))
def test_property_prevalence_moves_the_threshold_with_the_probabilities(films, new, target):
    """`Predictor` re-weights P and the recall threshold by the same map: the decisions on the films the threshold
    was chosen on stay the same, whatever the prevalence. Logits from -60 (the model's floor) to 29 in half steps:
    beyond about 30, P is within 1e-13 of 1, where float64 cannot keep neighbours apart once the odds grow 99-fold
    (P = 1 - 2e-16 and 1 both become 1.0)."""
    y = np.array([1] + [label for label, _ in films])
    p = 1 / (1 + np.exp(-np.array([films[0][1]] + [logit for _, logit in films]) / 2))
    t = threshold_for_recall(y, p, target)
    shifted = adjust_for_prevalence(p, 0.5, new)
    assert np.array_equal(shifted >= adjust_for_prevalence([t], 0.5, new)[0], p >= t)


def test_adjust_for_prevalence_preserves_auc():
    y, p = make_data(4)
    assert M.roc_auc(y, adjust_for_prevalence(p, 0.6, 0.1)) == pytest.approx(M.roc_auc(y, p), abs=1e-12)


@pytest.mark.parametrize("train, new", [(0.0, 0.5), (0.5, 1.0), (-0.1, 0.5), (0.5, float("nan")), ("x", 0.5)])
def test_adjust_for_prevalence_rejects_bad_prevalence(train, new):
    with pytest.raises(ValueError, match="prevalence"):
        adjust_for_prevalence([0.5], train, new)


def test_adjust_for_prevalence_rejects_bad_probabilities():
    with pytest.raises(ValueError, match="y_prob"):
        adjust_for_prevalence([0.5, 1.2], 0.5, 0.3)


def test_threshold_ci95_is_the_known_interval_of_a_constructed_score_set():
    """Five NORMAL films at 0.1, five PNEUMONIA at 0.3..0.7, recall 1: the threshold is midway between a resample's
    lowest PNEUMONIA score and 0.1, and that score is 0.3 in 67 % of resamples, 0.6 or above in only 1 %; so the
    interval is that of 0.3 (0.2) to that of 0.5 (0.3), see `known_interval_scores`."""
    labels, probs, threshold, interval = known_interval_scores(0.1, [0.3, 0.4, 0.5, 0.6, 0.7])
    assert threshold == pytest.approx(0.2) and interval == pytest.approx((0.2, 0.3))
    assert threshold_for_recall(labels, probs, 1.0) == pytest.approx(threshold)
    assert threshold_ci95(labels, probs, 1.0) == pytest.approx(interval)
    assert threshold_ci95(labels, probs, 1.0, seed=7) == pytest.approx((0.2, 0.3))  # not one seed's luck



def test_threshold_ci95_draws_a_patients_films_together() -> None:
    """Each patient's films are copies of one score: drawn by patient, the interval is exactly that of one film a
    patient (the same draws), where drawing the copies one by one as independent films made it narrower."""
    y, p = make_data(3, 60)
    copies = 4
    y4, p4 = np.repeat(y, copies), np.repeat(p, copies)
    patients = [f"patient{i:03d}" for i in np.repeat(np.arange(y.size), copies)]
    single = threshold_ci95(y, p, 0.9, n_boot=300)
    by_patient = threshold_ci95(y4, p4, 0.9, n_boot=300, groups=patients)
    by_film = threshold_ci95(y4, p4, 0.9, n_boot=300)
    assert by_patient == single
    assert by_film[1] - by_film[0] < 0.8 * (by_patient[1] - by_patient[0])
