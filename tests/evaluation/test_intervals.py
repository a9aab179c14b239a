from __future__ import annotations

import math

import pytest
from scipy import stats

from pneumoscan.evaluation.intervals import wilson_ci


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
