from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from pneumoscan.evaluation.intervals import clustered_wilson_ci, t_quantile, wilson_ci


@pytest.mark.parametrize(("k", "n"), [(0, 1), (0, 20), (1, 20), (7, 30), (29, 30), (30, 30), (383, 390), (204, 234)])
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_wilson_ci_matches_scipy(k, n, alpha):
    expected = stats.binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="wilson")
    assert wilson_ci(k, n, alpha) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_wilson_ci_has_width_at_the_ends_and_nan_for_no_trials():
    assert wilson_ci(0, 10) == (0.0, pytest.approx(0.27753, abs=1e-5))
    assert wilson_ci(5, 5) == (pytest.approx(0.56552, abs=1e-5), 1.0)
    assert all(math.isnan(v) for v in wilson_ci(0, 0))


@pytest.mark.parametrize(("k", "n", "alpha"), [(-1, 5, 0.05), (6, 5, 0.05), (1, 5, 0.0), (1, 5, 1.0), (True, 5, 0.05)])
def test_wilson_ci_refuses_impossible_counts(k, n, alpha):
    with pytest.raises(ValueError):
        wilson_ci(k, n, alpha)


@pytest.mark.parametrize("q", [0.5, 0.8, 0.95, 0.975, 0.995, 0.99995])
def test_t_quantile_matches_the_closed_forms_and_scipy(q):
    """Student's t quantile without scipy: exact at 1 and 2 degrees of freedom, scipy's to 1e-9 at any other."""
    assert t_quantile(q, 1) == pytest.approx(math.tan(math.pi * (q - 0.5)), rel=1e-10, abs=1e-12)
    assert t_quantile(q, 2) == pytest.approx((2 * q - 1) / math.sqrt(2 * q * (1 - q)), rel=1e-10, abs=1e-12)
    for df in (3, 4, 5, 9, 10, 29, 38, 101, 389, 3874):
        assert t_quantile(q, df) == pytest.approx(stats.t.ppf(q, df), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("q", "df"), [(0.4, 3), (1.0, 3), (0.975, 0), (0.975, 2.5), (0.975, True)])
def test_t_quantile_refuses_what_it_does_not_compute(q, df):
    with pytest.raises(ValueError):
        t_quantile(q, df)


def _coverage(interval, n_sets: int = 400, patients: int = 100, films: int = 4, rate: float = 0.8) -> float:
    """How often `interval(successes, trials)` (per-patient counts) holds `rate` when each patient's films are all
    called alike, so 400 films carry the information of 100."""
    rng = np.random.default_rng(0)
    trials = np.full(patients, films)
    held = 0
    for _ in range(n_sets):
        successes = films * (rng.random(patients) < rate).astype(np.int64)
        lo, hi = interval(successes, trials)
        held += lo <= rate <= hi
    return held / n_sets


def test_clustered_wilson_ci_holds_its_coverage_where_counting_films_does_not():
    plain = _coverage(lambda k, n: wilson_ci(int(k.sum()), int(n.sum())))
    clustered = _coverage(clustered_wilson_ci)
    assert plain < 0.75  # the films' 400 counted as independent: intervals half as wide as they should be
    assert 0.92 <= clustered <= 0.98


def _wilson_at(p: float, n_eff: float) -> tuple[float, float]:
    """Wilson's 95 % interval of the rate p with n_eff the sample size of its variance, written out."""
    z = stats.norm.ppf(0.975)
    centre = (p + z * z / (2 * n_eff)) / (1 + z * z / n_eff)
    half = z / (1 + z * z / n_eff) * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff**2))
    return centre - half, centre + half


def _korn_graubard(films: int, patients: int) -> float:
    """Korn & Graubard's degrees-of-freedom factor (t_{n-1} / t_{m-1})^2 at 95 %, by scipy."""
    return (stats.t.ppf(0.975, films - 1) / stats.t.ppf(0.975, patients - 1)) ** 2


def test_clustered_wilson_ci_of_patients_called_alike_is_wilson_of_one_fewer_patient_each():
    """All of a patient's films called alike: the design effect is m c / (m - 1), so the effective size is m - 1,
    scaled by the degrees of freedom of 40 patients."""
    k, n = np.array([4] * 30 + [0] * 10), np.full(40, 4)
    expected = stats.binomtest(30, 40).proportion_ci(method="wilson")
    lo, hi = clustered_wilson_ci(k, n)
    assert (lo, hi) == pytest.approx(_wilson_at(0.75, 39 * _korn_graubard(160, 40)), abs=1e-12)
    assert hi - lo > expected.high - expected.low > wilson_ci(120, 160)[1] - wilson_ci(120, 160)[0]


def test_clustered_wilson_ci_of_few_patients_uses_their_degrees_of_freedom():
    """5 patients measure the spread between patients with 4 degrees of freedom: the effective n is scaled by
    (t_{n-1} / t_4)^2 (Korn & Graubard 1998), where z alone held the true rate 80-89 % of the time at 3-5 patients."""
    k, n = np.array([5, 2, 6, 1, 4]), np.full(5, 6)
    p = 18 / 30
    design_effect = 5 / 4 * float(np.sum((k - p * n) ** 2)) / 30**2 / (p * (1 - p) / 30)
    assert design_effect > 1
    assert clustered_wilson_ci(k, n) == pytest.approx(_wilson_at(p, 30 / design_effect * _korn_graubard(30, 5)),
                                                       abs=1e-12)
    # one patient with most of the films, the design effect measured below 1: still wider than Wilson of the films,
    # with the 1 degree of freedom of Kish's 38^2 / 916 = 1.6 effective patients (below)
    lo, hi = clustered_wilson_ci(np.array([20, 2, 2, 2, 2]), np.array([30, 2, 2, 2, 2]))
    assert (lo, hi) == pytest.approx(_wilson_at(28 / 38, 38 * _korn_graubard(38, 2)), abs=1e-12)
    assert lo < wilson_ci(28, 38)[0] and hi > wilson_ci(28, 38)[1]


def test_clustered_wilson_ci_of_unequal_patients_takes_the_degrees_of_freedom_of_the_effective_patients():
    """Two patients of 20 films and ten of 2 measure the spread between patients about as well as 4 patients of equal
    films (Kish's 60^2 / 840 = 4.3): 3 degrees of freedom, not 11. With m - 1 whatever the sizes, one patient of 60
    films among eleven of 2 held a true rate of 0.5 in 50 % of data sets (reviewer), no better than counting films."""
    k, n = np.array([15, 8, 2, 1, 2, 2, 0, 2, 1, 2, 2, 1]), np.array([20, 20] + [2] * 10)
    p = 38 / 60
    design_effect = 12 / 11 * float(np.sum((k - p * n) ** 2)) / 60**2 / (p * (1 - p) / 60)
    assert design_effect > 1
    assert clustered_wilson_ci(k, n) == pytest.approx(_wilson_at(p, 60 / design_effect * _korn_graubard(60, 4)),
                                                       abs=1e-12)
    rng = np.random.default_rng(0)
    trials, held = np.array([60] + [2] * 11), 0
    for _ in range(400):  # a patient effect of half the variance around a true rate of 0.5
        effects = rng.normal(0.0, math.sqrt(0.5), trials.size)
        successes = np.array([int((e + rng.normal(0.0, math.sqrt(0.5), t) >= 0).sum())
                              for e, t in zip(effects, trials)])
        lo, hi = clustered_wilson_ci(successes, trials)
        held += lo <= 0.5 <= hi
    assert held / 400 >= 0.93


def test_clustered_wilson_ci_at_the_ends_takes_each_patients_films_as_fully_alike():
    """Every film called alike (0 or n successes) says nothing of how alike a patient's films are: the worst case,
    fully alike, makes m patients of equal films count as m (reviewer: 10 patients x 10 films all called PNEUMONIA
    gave 1.0 [0.963, 1], Wilson of 100 independent films, where 10 patients give [0.722, 1])."""
    assert clustered_wilson_ci(np.full(10, 10), np.full(10, 10)) == wilson_ci(10, 10)
    assert clustered_wilson_ci(np.zeros(10, dtype=int), np.full(10, 4)) == wilson_ci(0, 10)
    # unequal films: Kish's n^2 / sum(n_i^2) = 36 / 14 patients; 0 successes of n has upper end z^2 / (n + z^2)
    z2 = stats.norm.ppf(0.975) ** 2
    assert clustered_wilson_ci(np.array([0, 0, 0]), np.array([2, 3, 1])) == (0.0, pytest.approx(z2 / (36 / 14 + z2)))
    # a film per patient: every film independent, Wilson of the films
    assert clustered_wilson_ci(np.ones(7, dtype=int), np.ones(7, dtype=int)) == wilson_ci(7, 7)


_LAYOUTS = [[10] * 10, [10] * 5, [3] * 30, [2] * 200, [30, 2, 2, 2, 2], [60] + [2] * 11, [20, 20] + [2] * 10,
            [6, 5, 4, 1, 7, 3, 2, 2, 5, 1, 4, 6]]


@pytest.mark.parametrize("layout", _LAYOUTS)
def test_clustered_wilson_ci_gives_a_miss_no_better_bound_than_none(layout: list[int]):
    """10 patients of 10 films all called PNEUMONIA gave recall [0.722, 1] and one film missed [0.934, 0.999]
    (reviewer): the ends take the films as fully alike, their neighbours measured a design effect near 1. Now no
    count is bounded more tightly than the ends of these films: misses added one by one in one patient, or one per
    patient when all have as many films, never raise the lower end (nor hits added the upper end lower), and no
    other count beats the end's bound."""
    n = np.array(layout)
    top, bottom = clustered_wilson_ci(n, n)[0], clustered_wilson_ci(np.zeros_like(n), n)[1]
    paths = [np.repeat(np.arange(n.size), n)[: n[0]]] + ([np.arange(n.size)] if len(set(layout)) == 1 else [])
    for path in paths:
        misses, hits = n.copy(), np.zeros_like(n)
        lower, upper = [top], [bottom]
        for patient in path:
            misses[patient] -= 1
            hits[patient] += 1
            lower.append(clustered_wilson_ci(misses, n)[0])
            upper.append(clustered_wilson_ci(hits, n)[1])
        assert all(b <= a + 1e-12 for a, b in zip(lower, lower[1:])), lower
        assert all(b >= a - 1e-12 for a, b in zip(upper, upper[1:])), upper
    rng = np.random.default_rng(0)
    for _ in range(100):
        k = rng.binomial(n, rng.random())
        lo, hi = clustered_wilson_ci(k, n)
        assert lo <= top + 1e-12 and hi >= bottom - 1e-12


def test_clustered_wilson_ci_of_one_patient_counts_one():
    """One patient's films (the other clusters empty) measure no spread between patients: they count as one."""
    lo, hi = clustered_wilson_ci(np.array([3, 0]), np.array([5, 0]))
    z2 = stats.norm.ppf(0.975) ** 2
    assert (lo + hi) / 2 == pytest.approx((0.6 + z2 / 2) / (1 + z2), abs=1e-12)  # Wilson's centre at n = 1
    assert lo < wilson_ci(3, 5)[0] and hi > wilson_ci(3, 5)[1]
    assert all(math.isnan(v) for v in clustered_wilson_ci(np.array([0]), np.array([0])))


def test_clustered_wilson_ci_is_never_narrower_than_wilson_of_the_films():
    """Patients' films less alike than chance (a design effect measured below 1) are taken as independent, never as
    more than independent: the design effect's floor of 1."""
    # under-dispersed: measured design effect 0.19, and 0 (every patient at the rate exactly)
    lo, hi = clustered_wilson_ci(np.array([1, 1, 1, 0]), np.array([2, 2, 2, 1]))
    assert lo <= wilson_ci(3, 7)[0] and hi >= wilson_ci(3, 7)[1]
    assert clustered_wilson_ci(np.array([1, 1, 1, 1]), np.array([2, 2, 2, 2])) == pytest.approx(
        _wilson_at(0.5, 8 * _korn_graubard(8, 4)), abs=1e-12)
    rng = np.random.default_rng(1)
    for _ in range(300):
        n = rng.integers(0, 6, rng.integers(1, 12))
        k = rng.binomial(n, rng.random())
        lo, hi = clustered_wilson_ci(k, n)
        plain = wilson_ci(int(k.sum()), int(n.sum()))
        if n.sum():
            assert lo <= plain[0] + 1e-12 and hi >= plain[1] - 1e-12, (k, n)


def test_clustered_wilson_ci_drops_clusters_without_trials():
    """A patient with no films among a rate's trials (no PNEUMONIA film, for recall) is no cluster of it: it does not
    count among the patients the degrees of freedom and the design effect are of."""
    assert clustered_wilson_ci(np.array([2, 1, 0]), np.array([3, 3, 0])) == clustered_wilson_ci(
        np.array([2, 1]), np.array([3, 3]))
    assert clustered_wilson_ci(np.array([2, 5, 0, 1, 0]), np.array([4, 6, 0, 3, 0])) == clustered_wilson_ci(
        np.array([2, 5, 1]), np.array([4, 6, 3]))


@pytest.mark.parametrize(("k", "n"), [([1, 2], [1]), ([3], [2]), ([-1], [2]), ([0.5], [1]), ([[1]], [[1]])])
def test_clustered_wilson_ci_refuses_impossible_counts(k, n):
    with pytest.raises(ValueError):
        clustered_wilson_ci(np.array(k), np.array(n))
