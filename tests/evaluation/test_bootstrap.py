from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from sklearn import metrics as sk

from pneumoscan.evaluation import metrics as M
from pneumoscan.evaluation.bootstrap import (_patient_resamples, bootstrap_ci, classification_report_text, intervals_text,
                                             summarize)
from pneumoscan.evaluation.intervals import clustered_wilson_ci, wilson_ci
from pneumoscan.evaluation.metrics import UndefinedMetricWarning

CI_METRICS = ["accuracy", "precision", "recall", "specificity", "f1", "npv", "roc_auc", "pr_auc", "brier"]


def make_data(seed: int = 0, n: int = 624, n_pos: int = 390):
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=int)
    y[rng.choice(n, n_pos, replace=False)] = 1
    p = np.round(np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0.0, 1.0), 3)
    return y, p


@pytest.mark.parametrize(
    ("metric", "use_pred"),
    [(M.accuracy, True), (M.recall, True), (M.f1, True), (M.roc_auc, False), (M.pr_auc, False), (M.brier, False)],
)
def test_ci_contains_point_estimate(metric, use_pred):
    y, p = make_data(n=300, n_pos=150)
    other = (p >= 0.5).astype(int) if use_pred else p
    lo, hi = bootstrap_ci(metric, y, other, n_boot=300, seed=1)
    point = metric(y, other)
    assert lo < point < hi
    assert hi - lo < 0.25


def test_ci_is_reproducible_with_seed_and_varies_without():
    y, p = make_data(n=200, n_pos=80)
    a = bootstrap_ci(M.roc_auc, y, p, n_boot=200, seed=7)
    assert a == bootstrap_ci(M.roc_auc, y, p, n_boot=200, seed=7)
    assert a != bootstrap_ci(M.roc_auc, y, p, n_boot=200, seed=8)


def test_ci_narrows_as_alpha_grows():
    y, p = make_data(n=200, n_pos=80)
    lo95, hi95 = bootstrap_ci(M.brier, y, p, n_boot=300, alpha=0.05)
    lo50, hi50 = bootstrap_ci(M.brier, y, p, n_boot=300, alpha=0.5)
    assert lo95 < lo50 < hi50 < hi95


def test_resamples_are_stratified_by_class():
    y, p = make_data(n=50, n_pos=3)
    seen: list[tuple[int, int]] = []

    def counts(yt, yo):
        seen.append((int(yt.sum()), len(yt)))
        return float(yt.mean())

    assert bootstrap_ci(counts, y, p, n_boot=200) == (3 / 50, 3 / 50)
    assert len(seen) == 200 and set(seen) == {(3, 50)}


def test_resamples_keep_pairs_together():
    rng = np.random.default_rng(5)
    y = np.r_[np.ones(20, dtype=int), np.zeros(40, dtype=int)]
    p = rng.permutation(60) / 100
    pairs = {(int(a), float(b)) for a, b in zip(y, p)}

    def all_pairs_original(yt, yo):
        return float(all((int(a), float(b)) in pairs for a, b in zip(yt, yo)))

    assert bootstrap_ci(all_pairs_original, y, p, n_boot=50) == (1.0, 1.0)


def test_nan_resamples_are_ignored():
    y, p = make_data(n=100, n_pos=50)
    calls = iter(range(10_000))

    def half_nan(yt, yo):
        return float("nan") if next(calls) % 2 else 0.25

    with pytest.warns(UndefinedMetricWarning, match="undefined on 50 of 100"):
        assert bootstrap_ci(half_nan, y, p, n_boot=100) == (0.25, 0.25)


def test_all_nan_gives_nan_interval_and_warning():
    with pytest.warns(UndefinedMetricWarning, match="roc_auc is undefined on every bootstrap resample"):
        lo, hi = bootstrap_ci(M.roc_auc, [1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4], n_boot=20)
    assert math.isnan(lo) and math.isnan(hi)
    with pytest.warns(UndefinedMetricWarning, match="empty"):
        assert all(math.isnan(v) for v in bootstrap_ci(M.accuracy, [], [], n_boot=20))


def test_bootstrap_ci_validates_arguments():
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(M.accuracy, [0, 1], [0, 1], n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(M.accuracy, [0, 1], [0, 1], alpha=1.0)
    with pytest.raises(ValueError, match="same length"):
        bootstrap_ci(M.accuracy, [0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="only 0"):
        bootstrap_ci(M.accuracy, [0, 3], [0, 1])


def test_summarize_shape_values_and_json_round_trip():
    y, p = make_data(n=200, n_pos=120)
    threshold = 0.5
    s = summarize(y, p, threshold, n_boot=200, seed=3)
    expected_keys = {"n", "n_positive", "n_negative", "threshold", "ece", "confusion_matrix", "intervals", *CI_METRICS}
    assert set(s) == expected_keys
    assert (s["n"], s["n_positive"], s["n_negative"]) == (200, 120, 80)
    assert type(s["n"]) is int and type(s["threshold"]) is float and s["threshold"] == threshold

    pred = (p >= threshold).astype(int)
    references = {
        "accuracy": sk.accuracy_score(y, pred),
        "precision": sk.precision_score(y, pred),
        "recall": sk.recall_score(y, pred),
        "specificity": sk.recall_score(y, pred, pos_label=0),
        "f1": sk.f1_score(y, pred),
        "npv": sk.precision_score(y, pred, pos_label=0),
        "roc_auc": sk.roc_auc_score(y, p),
        "pr_auc": sk.average_precision_score(y, p),
        "brier": sk.brier_score_loss(y, p),
    }
    for name in CI_METRICS:
        entry = s[name]
        assert set(entry) == {"value", "ci95"}
        assert type(entry["value"]) is float
        assert entry["value"] == pytest.approx(references[name], abs=1e-9)
        lo, hi = entry["ci95"]
        assert type(lo) is float and type(hi) is float
        assert lo <= entry["value"] <= hi
    assert set(s["ece"]) == {"value"}
    assert s["ece"]["value"] == pytest.approx(M.expected_calibration_error(y, p))
    assert s["confusion_matrix"] == {
        "labels": ["NORMAL", "PNEUMONIA"],
        "matrix": sk.confusion_matrix(y, pred, labels=[0, 1]).tolist(),
    }
    assert all(type(v) is int for row in s["confusion_matrix"]["matrix"] for v in row)
    assert json.loads(json.dumps(s)) == s
    assert summarize(y, p, threshold, n_boot=200, seed=3) == s


def test_summarize_single_class_is_serialisable_with_nans():
    with pytest.warns(UndefinedMetricWarning):
        s = summarize([1, 1, 1, 1], [0.2, 0.6, 0.7, 0.9], 0.5, n_boot=50)
    assert math.isnan(s["roc_auc"]["value"]) and all(math.isnan(v) for v in s["roc_auc"]["ci95"])
    assert s["recall"]["value"] == 0.75
    assert s["confusion_matrix"]["matrix"] == [[0, 0], [1, 3]]
    text = json.dumps(s)
    assert "NaN" in text
    assert json.loads(text)["n_negative"] == 0


def test_summarize_validates_threshold_and_probabilities():
    with pytest.raises(ValueError, match="threshold"):
        summarize([0, 1], [0.2, 0.8], float("nan"), n_boot=10)
    with pytest.raises(ValueError, match="y_prob"):
        summarize([0, 1], [0.2, 1.8], 0.5, n_boot=10)


def test_summarize_1000_resamples_on_624_cases_is_fast():
    y, p = make_data()
    start = time.process_time()
    summarize(y, p, 0.5, n_boot=1000)
    assert time.process_time() - start < 2.0


def test_classification_report_text():
    y = np.array([0, 0, 1, 1, 1, 0])
    pred = np.array([0, 1, 1, 1, 0, 0])
    text = classification_report_text(y, pred)
    assert text == sk.classification_report(
        y, pred, labels=[0, 1], target_names=["NORMAL", "PNEUMONIA"], digits=3, zero_division=0
    )
    assert "NORMAL" in text and "PNEUMONIA" in text
    assert "healthy" in classification_report_text(y, pred, class_names=("healthy", "sick"))
    with pytest.raises(ValueError, match="class_names"):
        classification_report_text(y, pred, class_names=("a", "b", "c"))
    with pytest.raises(ValueError, match="empty"):
        classification_report_text([], [])


def test_partly_undefined_resamples_are_counted_in_a_warning():
    """One film called PNEUMONIA, correctly: every resample that draws it has precision 1, the rest none, so
    the interval [1, 1] is only the resamples where precision exists, and the user must be told."""
    y = np.array([1] * 10 + [0] * 10)
    pred = np.array([1] + [0] * 19)
    with pytest.warns(UndefinedMetricWarning, match=r"precision is undefined on \d+ of 200 bootstrap resamples"):
        assert bootstrap_ci(M.precision, y, pred, n_boot=200) == (1.0, 1.0)


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_interval_is_the_percentile_interval_of_class_wise_resamples_drawn_from_the_seed(alpha):
    """Written out independently: with `seed`, draw each class's films with replacement (PNEUMONIA first), score
    every resample, and take the alpha/2 and 1 - alpha/2 quantiles; `bootstrap_ci` and `summarize` give exactly that."""
    y, p = make_data(seed=4, n=90, n_pos=35)
    rng = np.random.default_rng(11)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    pos_rows = pos[rng.integers(0, pos.size, size=(300, pos.size))]
    neg_rows = neg[rng.integers(0, neg.size, size=(300, neg.size))]
    values = [M.roc_auc(y[np.r_[a, b]], p[np.r_[a, b]]) for a, b in zip(pos_rows, neg_rows)]
    expected = tuple(np.quantile(values, [alpha / 2, 1 - alpha / 2]))
    assert bootstrap_ci(M.roc_auc, y, p, n_boot=300, alpha=alpha, seed=11) == pytest.approx(expected, abs=1e-15)
    if alpha == 0.05:
        assert summarize(y, p, 0.5, n_boot=300, seed=11)["roc_auc"]["ci95"] == pytest.approx(list(expected), abs=1e-15)


def test_rates_get_wilson_intervals_of_their_counts_and_the_rest_the_bootstrap():
    """A perfect classifier on 5 + 5 films: the rates are 1 but their intervals are not [1, 1] (what the percentile
    bootstrap gave), they are the Wilson intervals of 10/10 and 5/5; the AUC keeps its bootstrap interval."""
    s = summarize([1] * 5 + [0] * 5, [0.9] * 5 + [0.1] * 5, 0.5, n_boot=100)
    assert s["accuracy"] == {"value": 1.0, "ci95": list(wilson_ci(10, 10))}
    for name in ("precision", "recall", "specificity", "npv"):
        assert s[name] == {"value": 1.0, "ci95": list(wilson_ci(5, 5))}
        assert s[name]["ci95"][0] == pytest.approx(0.5655, abs=1e-4)
    assert s["roc_auc"]["ci95"] == [1.0, 1.0]
    assert s["intervals"] == {"wilson": ["accuracy", "precision", "recall", "specificity", "npv"],
                              "bootstrap": ["f1", "roc_auc", "pr_auc", "brier"], "logit": [], "n_boot": 100,
                              "seed": 0,
                              "resampled": "films", "n_resampled": 10, "per_class": {"NORMAL": 5, "PNEUMONIA": 5}}


def test_rate_intervals_follow_the_confusion_counts():
    y, p = make_data(n=200, n_pos=120)
    s = summarize(y, p, 0.5, n_boot=50)
    (tn, fp), (fn, tp) = s["confusion_matrix"]["matrix"]
    counts = {"accuracy": (tn + tp, 200), "precision": (tp, tp + fp), "recall": (tp, tp + fn),
              "specificity": (tn, tn + fp), "npv": (tn, tn + fn)}
    for name, (k, n) in counts.items():
        assert s[name]["ci95"] == list(wilson_ci(k, n)), name


def test_an_undefined_rate_keeps_a_nan_interval():
    with pytest.warns(UndefinedMetricWarning, match="precision"):
        s = summarize([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4], 0.5, n_boot=20)
    assert math.isnan(s["precision"]["value"]) and all(math.isnan(v) for v in s["precision"]["ci95"])
    assert s["specificity"]["ci95"] == list(wilson_ci(2, 2))


def _clustered(n_patients: int = 40, films: int = 4, seed: int = 0):
    """Patients of 4 films each, all of a patient's films scored alike: films are far from independent."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_patients) % 2, films)
    p = np.repeat(np.clip(rng.normal(0.4 + 0.2 * (np.arange(n_patients) % 2), 0.2), 0, 1), films)
    return y, p, [f"pt{i // films}" for i in range(y.size)]


def test_patient_resamples_keep_each_patient_whole_within_its_class():
    y, _, groups = _clustered()
    for rows in _patient_resamples(y, groups, 30, seed=1):
        drawn = np.bincount(rows, minlength=y.size)
        for patient in set(groups):
            films = [i for i, g in enumerate(groups) if g == patient]
            assert len(set(drawn[films])) == 1  # all of its films, as many times as the patient was drawn
        assert sorted(set(y[rows])) == [0, 1] and len(rows) % 4 == 0


def test_summarize_with_patient_keys_resamples_patients_and_says_so():
    """Clustered films: resampling films treats 160 films as independent and gives a narrower AUC interval than
    resampling the 40 patients they come from."""
    y, p, groups = _clustered()
    by_film = summarize(y, p, 0.5, n_boot=400, seed=0)
    by_patient = summarize(y, p, 0.5, n_boot=400, seed=0, groups=groups)
    width = {name: s["roc_auc"]["ci95"][1] - s["roc_auc"]["ci95"][0]
             for name, s in (("films", by_film), ("patients", by_patient))}
    assert width["patients"] > 1.5 * width["films"]
    assert by_patient["roc_auc"]["value"] == by_film["roc_auc"]["value"]
    assert by_patient["recall"]["value"] == by_film["recall"]["value"]
    assert (by_patient["intervals"]["resampled"], by_patient["intervals"]["n_resampled"]) == ("patients", 40)
    assert "resamples of the 40 patients within each class drawn with seed 0, each patient with all of their films " \
           "of that class" in intervals_text(by_patient)
    assert "unreliable" not in intervals_text(by_patient)
    assert "resamples of films" in intervals_text(by_film)


def test_rate_intervals_count_a_patients_films_as_one_cluster():
    """A patient's 4 films are scored alike: the rates' Wilson intervals take the patients as clusters (wider than
    counting 160 independent films), each rate over the patients with films among its trials, and the text says so."""
    y, p, groups = _clustered()
    by_film = summarize(y, p, 0.5, n_boot=50, seed=0)
    by_patient = summarize(y, p, 0.5, n_boot=50, seed=0, groups=groups)
    patient = np.repeat(np.arange(40), 4)
    called = p >= 0.5
    rates = {"accuracy": (np.ones(160, bool), called == (y == 1)), "precision": (called, y == 1),
             "recall": (y == 1, called), "specificity": (y == 0, ~called), "npv": (~called, y == 0)}
    for name, (trials, successes) in rates.items():
        k = np.bincount(patient, weights=trials & successes).astype(np.int64)
        n = np.bincount(patient, weights=trials).astype(np.int64)
        assert by_patient[name]["ci95"] == list(clustered_wilson_ci(k, n)), name
        film_lo, film_hi = by_film[name]["ci95"]
        lo, hi = by_patient[name]["ci95"]
        assert by_patient[name]["value"] == by_film[name]["value"]
        assert hi - lo > 1.5 * (film_hi - film_lo), name
    assert by_patient["intervals"]["wilson_clustered"] is True and "wilson_clustered" not in by_film["intervals"]
    assert "(each patient's films one cluster: the film count divided by the design effect, scaled to the degrees of " \
           "freedom of the effective number of patients, no bound tighter than with every film called alike)" in \
        intervals_text(by_patient)
    assert "(each film counted as independent)" in intervals_text(by_film)


def test_a_rate_of_every_film_called_alike_counts_the_patients_not_the_films():
    """10 PNEUMONIA patients of 10 films each, all called PNEUMONIA: recall 1.0 had Wilson's interval of 100
    independent films, [0.963, 1], under a header saying the films were clustered; the 10 patients give [0.722, 1]."""
    y = np.r_[np.ones(100), np.zeros(100)].astype(int)
    p = np.r_[np.full(100, 0.9), np.tile(np.r_[np.full(9, 0.1), 0.9], 10)]
    groups = [f"P{i // 10}" for i in range(100)] + [f"N{i // 10}" for i in range(100)]
    s = summarize(y, p, 0.5, n_boot=20, groups=groups)
    assert s["recall"] == {"value": 1.0, "ci95": list(wilson_ci(10, 10))}
    assert s["intervals"]["wilson_clustered"] is True


def test_one_film_per_patient_is_the_film_bootstrap():
    y, p = make_data(n=60, n_pos=30)
    keyed = summarize(y, p, 0.5, n_boot=100, groups=[f"p{i}" for i in range(60)])
    assert keyed == summarize(y, p, 0.5, n_boot=100)
    with pytest.raises(ValueError, match="one patient key per case"):
        summarize(y, p, 0.5, n_boot=10, groups=["a"])


def test_a_patient_with_films_of_both_classes_is_counted_once():
    """15 patients, each with 2 NORMAL and 2 PNEUMONIA films: 15 patients (not 30 patient-class pairs), and the text
    says a patient's films of each class are drawn separately."""
    y, p = make_data(n=60, n_pos=30)
    order = np.argsort(-y, kind="stable")  # the 30 PNEUMONIA films first, then the 30 NORMAL
    y, p = y[order], p[order]
    groups = [f"p{i // 2}" for i in range(30)] * 2
    s = summarize(y, p, 0.5, n_boot=50, groups=groups)
    assert (s["intervals"]["resampled"], s["intervals"]["n_resampled"]) == ("patients", 15)
    assert s["intervals"]["per_class"] == {"NORMAL": 15, "PNEUMONIA": 15}
    text = intervals_text(s)
    assert "resamples of the 15 patients within each class" in text
    assert "their films of the other class, if any, drawn separately with that class" in text


def test_films_of_no_known_patient_are_drawn_alone():
    """None keys (file names joining folders, `evaluate.film_patients`) are not one patient: every film of them is
    a unit of its own, so all of them unkeyed is the film bootstrap, and the record and text count them."""
    y, p = make_data(n=60, n_pos=30)
    unkeyed = summarize(y, p, 0.5, n_boot=100, groups=[None] * 60)
    by_film = summarize(y, p, 0.5, n_boot=100)
    assert unkeyed["roc_auc"] == by_film["roc_auc"] and unkeyed["roc_auc"]["ci95"][0] < unkeyed["roc_auc"]["ci95"][1]
    assert (unkeyed["intervals"]["resampled"], unkeyed["intervals"]["unkeyed"]) == ("films", 60)
    assert "resamples of films within each class (the patients of 60 films are not known)" in intervals_text(unkeyed)
    y4, p4, groups = _clustered()
    mixed = summarize(y4, p4, 0.5, n_boot=50, groups=[None] * 8 + groups[8:])
    assert (mixed["intervals"]["resampled"], mixed["intervals"]["n_resampled"]) == ("patients", 38 + 8)
    assert "of the 38 patients (8 films of no known patient drawn alone)" in intervals_text(mixed)


def test_a_class_of_few_patients_says_its_intervals_are_unreliable():
    """All 30 NORMAL films of one patient: that class never varies between resamples (the interval is too narrow,
    reviewD), so the text says plainly the intervals are unreliable, naming the class and its patients; the rates'
    Wilson intervals, which then count those films as one patient, are wide instead, and it says that."""
    y, p = make_data(n=60, n_pos=30)
    groups = ["A" if label == 0 else f"p{i}" for i, label in enumerate(y)]
    s = summarize(y, p, 0.5, n_boot=100, groups=groups)
    assert s["intervals"]["per_class"] == {"NORMAL": 1, "PNEUMONIA": 30}
    assert intervals_text(s).endswith("; these are unreliable, much too narrow: the bootstrap draws from only 1 NORMAL "
                                      "patient (fewer than 10 in a class); the rates' Wilson intervals are wide, as "
                                      "few patients hold the films (in simulations they held the true rate about "
                                      "94-100 % of the time): the NORMAL films count as 1 patient (Kish's effective "
                                      "number, fewer than 10)")
    assert "unreliable" not in intervals_text(summarize(y, p, 0.5, n_boot=20))
    # 5 films of a class: Wilson of independent films holds its coverage, only the bootstrap is unreliable
    few_films = summarize(*make_data(n=35, n_pos=30), 0.5, n_boot=20)
    assert few_films["intervals"]["per_class"] == {"NORMAL": 5, "PNEUMONIA": 30}
    assert intervals_text(few_films).endswith("draws from only 5 NORMAL films (fewer than 10 in a class)")


def test_the_rates_clause_keys_on_the_effective_patients_not_their_count() -> None:
    """One PNEUMONIA patient of 60 films among eleven of 2 is 12 patients, enough for the bootstrap, but its films
    count as 1.8 (Kish): the rates' Wilson intervals are wide and the text said nothing (reviewer). 5 NORMAL patients of
    6 films each count as 5: said wide, not 'unreliable too' as if too narrow (they held 95-98 %)."""
    y = np.r_[np.ones(82), np.zeros(60)].astype(int)
    groups = ["big"] * 60 + [f"p{i // 2}" for i in range(22)] + [f"n{i // 12}" for i in range(60)]
    p = np.r_[np.tile([0.9, 0.2], 41), np.tile([0.1, 0.3, 0.6], 20)]
    s = summarize(y, p, 0.5, n_boot=20, groups=groups)
    assert s["intervals"]["per_class"] == {"NORMAL": 5, "PNEUMONIA": 12}
    assert s["intervals"]["effective_per_class"] == {"NORMAL": 5.0, "PNEUMONIA": 1.8}
    text = intervals_text(s)
    assert "the bootstrap draws from only 5 NORMAL patients (fewer than 10 in a class)" in text
    assert text.endswith("; the rates' Wilson intervals are wide, as few patients hold the films (in simulations "
                         "they held the true rate about 94-100 % of the time): the NORMAL films count as 5 patients and the PNEUMONIA films as 1.8 patients (Kish's "
                         "effective number, fewer than 10)")
    assert "unreliable too" not in text
    # films resampled: the rates count films, and no such clause
    assert "Wilson intervals are wide" not in intervals_text(summarize(y, p, 0.5, n_boot=20))


@pytest.mark.parametrize("per_class", [None, []])
def test_an_intervals_record_without_class_counts_reads_as_no_warning(per_class: object) -> None:
    """A summary edited to `"per_class": null` (or []) crashed `intervals_text` with an AttributeError before
    `too_few_units` read it as compare's caption did: it is said as drawn, with no warning clause."""
    y, p = make_data(n=60, n_pos=30)
    s = summarize(y, p, 0.5, n_boot=20)
    s["intervals"]["per_class"] = per_class
    assert "resamples of films" in intervals_text(s) and "unreliable" not in intervals_text(s)


def test_one_patient_with_films_of_both_classes_is_one_patient_in_the_text() -> None:
    """Every film of one patient (one site ID on every film taken for a patient): 'the 1 patient', not 'the 1
    patients'."""
    y, p = make_data(n=20, n_pos=10)
    text = intervals_text(summarize(y, p, 0.5, n_boot=20, groups=["A"] * 20))
    assert "resamples of the 1 patient within each class" in text, text


def test_average_precision_gets_the_logit_interval_seeded() -> None:
    """Average precision's percentile interval held its true value 92-94.5 % of the time (its resamples sit above
    the estimate); summarize now gives the normal interval on the logit scale, from the same seeded resamples."""
    from pneumoscan.evaluation import metrics
    from pneumoscan.evaluation.bootstrap import bootstrap_ci

    y, p = make_data(n=200, n_pos=120)
    s = summarize(y, p, 0.5, n_boot=200, seed=3)
    logit = bootstrap_ci(metrics.pr_auc, y, p, n_boot=200, seed=3, logit=True)
    assert s["pr_auc"]["ci95"] == list(logit) == list(bootstrap_ci(metrics.pr_auc, y, p, n_boot=200, seed=3, logit=True))
    assert logit != bootstrap_ci(metrics.pr_auc, y, p, n_boot=200, seed=3)
    assert logit[0] < s["pr_auc"]["value"] < logit[1]
    assert s["roc_auc"]["ci95"] == list(bootstrap_ci(metrics.roc_auc, y, p, n_boot=200, seed=3))
    assert s["intervals"]["logit"] == ["pr_auc"]
    assert "(for pr_auc a normal interval on the logit scale" in intervals_text(s)
    groups = [f"p{i // 3}" for i in range(200)]
    by_patient = summarize(y, p, 0.5, n_boot=200, seed=3, groups=groups)
    assert by_patient["pr_auc"]["ci95"] == list(bootstrap_ci(metrics.pr_auc, y, p, n_boot=200, seed=3, groups=groups,
                                                             logit=True)) != s["pr_auc"]["ci95"]


def test_intervals_line_and_record_say_percentile_when_average_precision_is_at_an_end() -> None:
    """Films the scores separate perfectly: average precision is 1, and `_logit_ci` falls back to the percentile
    interval; the intervals record and line said 'a normal interval on the logit scale' for it all the same."""
    y = np.array([0] * 10 + [1] * 10)
    p = np.r_[np.linspace(0.0, 0.4, 10), np.linspace(0.6, 1.0, 10)]
    s = summarize(y, p, 0.5, n_boot=50, seed=0)
    assert s["pr_auc"]["value"] == 1.0 and s["pr_auc"]["ci95"] == [1.0, 1.0]
    assert s["intervals"]["logit"] == []
    text = intervals_text(s)
    assert "logit" not in text and "percentile bootstrap for f1, roc_auc, pr_auc, brier" in text, text


def test_logit_interval_is_symmetric_on_the_logit_scale_and_percentile_at_the_ends() -> None:
    from pneumoscan.evaluation.bootstrap import _logit_ci, _percentile_ci

    rng = np.random.default_rng(0)
    values = 1.0 / (1.0 + np.exp(-rng.normal(2.0, 0.5, 1000)))
    low, high = _logit_ci(values, 0.88, 0.05, 100)
    logit = lambda v: math.log(v / (1.0 - v))  # noqa: E731
    assert logit(0.88) - logit(low) == pytest.approx(logit(high) - logit(0.88))
    sd = float(np.std(np.log(values / (1.0 - values)), ddof=1))
    assert logit(high) - logit(0.88) == pytest.approx(1.959964 * sd, rel=1e-6)
    assert 0.0 < low < 0.88 < high < 1.0
    # a perfect ranking (average precision 1): no logit, the percentile interval as before
    assert _logit_ci(np.ones(50), 1.0, 0.05, 10) == _percentile_ci(np.ones(50), 0.05) == (1.0, 1.0)


def test_logit_interval_of_an_estimate_a_rounding_short_of_one_is_finite() -> None:
    """An average precision of 0.9999999999999999 (a perfect ranking's sum a rounding short of 1) clipped its
    resamples at 1 to 1 - 5.5e-17, which is 1.0: their logits were infinite and the interval (nan, nan), where the
    percentile interval had been (0.9999999999999999, 1.0). Within 1e-12 of 0 or 1 the estimate is taken as there."""
    from pneumoscan.evaluation.bootstrap import _logit_ci, _percentile_ci

    short = 1.0 - 2.0 ** -53
    values = np.r_[np.ones(40), np.full(10, short)]
    assert _logit_ci(values, short, 0.05, 24) == _percentile_ci(values, 0.05) == (short, 1.0)
    assert _logit_ci(1.0 - values, 1.0 - short, 0.05, 24) == _percentile_ci(1.0 - values, 0.05)
