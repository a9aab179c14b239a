"""Coverage of the intervals docs/evaluation.md cites: DeLong's paired AUC test, average precision's bootstrap, and
the clustered Wilson interval of a recall near 1 from 10 patients.

    PYTHONPATH=src:bench .venv/bin/python bench/interval_coverage.py [--datasets 2000] [--ap-datasets 2000]

Simulated scores only (no image is read), data sets of the official test split's size and prevalence: 390 PNEUMONIA
and 234 NORMAL films. Two models score each film with binormal scores, PNEUMONIA films shifted by d (true AUC
Phi(d / sqrt 2)), the two models' noise correlated 0.6 (as two CNNs on one film are); "patients of 2 films": every
patient has 2 films of one class, half of the noise variance shared by a patient's films. For each data set:
`delong_auc_difference` (films independent, and with each patient one cluster): how often its 95 % interval holds the
true difference and how often p < 0.05 (the test's size when the true AUCs are equal). Average precision: the
percentile and the logit-scale intervals of `bootstrap_ci` (1000 resamples within each class) from the same
resamples, how often each holds the true average precision (its limit for the binormal scores at that prevalence, computed on a grid).
Recall: `rate_coverage.measure`, 10 patients of Kermany's train films per patient, true recall 0.995.
"""
from __future__ import annotations

import argparse
import warnings
from typing import Any

import numpy as np
from scipy.stats import norm

from _results import write_results
from rate_coverage import measure as rate_measure

from pneumoscan.evaluation import bootstrap as B
from pneumoscan.evaluation import metrics

N_POS, N_NEG = 390, 234
RHO = 0.6
# (name, d of model a, d of model b, films per patient, share of a patient's noise)
DELONG_CASES = (("equal AUCs 0.95", 2.326, 2.326, 1, 0.0), ("equal AUCs 0.85", 1.466, 1.466, 1, 0.0),
                ("AUC 0.95 vs 0.92", 2.326, 1.990, 1, 0.0),
                ("equal AUCs 0.95, patients of 2 films", 2.326, 2.326, 2, 0.5),
                ("AUC 0.95 vs 0.92, patients of 2 films", 2.326, 1.990, 2, 0.5))
AP_DS = (1.466, 2.326, 3.2)  # true AUC 0.85, 0.95, 0.99
PARTS = ("delong", "recall", "ap")


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", type=int, default=2000, help="data sets per DeLong and recall row (2000)")
    parser.add_argument("--ap-datasets", type=int, default=2000, help="data sets per average precision row (2000)")
    parser.add_argument("--part", action="append", choices=PARTS,
                        help="measure only this part (repeatable; default all), its results files replaced alone")
    return parser


def _scores(rng: np.random.Generator, d: tuple[float, float], films: int, share: float) -> tuple[np.ndarray, ...]:
    """Labels, both models' scores and each film's patient of one simulated data set."""
    y = np.r_[np.ones(N_POS, dtype=np.int8), np.zeros(N_NEG, dtype=np.int8)]
    n = y.size
    patient = np.arange(n) // films
    shared = rng.normal(size=(2, n // films + 1))[:, patient]  # a patient's part of the noise
    common = rng.normal(size=n)  # the part both models share
    noise = [np.sqrt(RHO) * common + np.sqrt(1 - RHO) * rng.normal(size=n) for _ in range(2)]
    scores = [dk * y + np.sqrt(share) * shared[k] + np.sqrt(1 - share) * noise[k] for k, dk in enumerate(d)]
    return y, scores[0], scores[1], patient


def delong_row(name: str, d_a: float, d_b: float, films: int, share: float, datasets: int) -> dict[str, Any]:
    """Coverage and rejections of the paired test, films independent and patients clustered, over `datasets`."""
    rng = np.random.default_rng(7)
    true = float(norm.cdf(d_a / np.sqrt(2)) - norm.cdf(d_b / np.sqrt(2)))
    held = {"films": 0, "patients": 0}
    rejected = {"films": 0, "patients": 0}
    for _ in range(datasets):
        y, a, b, patient = _scores(rng, (d_a, d_b), films, share)
        for unit, groups in (("films", None), ("patients", [str(p) for p in patient])):
            test = metrics.delong_auc_difference(y, a, b, groups=groups)
            held[unit] += int(test.ci95[0] <= true <= test.ci95[1])
            rejected[unit] += int(test.p_value < 0.05)
    return {"case": name, "true difference": round(true, 4), "coverage, films": held["films"] / datasets,
            "p < 0.05, films": rejected["films"] / datasets, "coverage, patients": held["patients"] / datasets,
            "p < 0.05, patients": rejected["patients"] / datasets}


def true_average_precision(d: float) -> float:
    """Average precision's limit for binormal scores shifted by `d` at the test split's prevalence."""
    prevalence = N_POS / (N_POS + N_NEG)
    t = np.linspace(-12.0, 16.0, 400001)[::-1]  # thresholds from high to low: recall rising
    tpr, fpr = norm.sf(t - d), norm.sf(t)
    precision = prevalence * tpr / np.maximum(prevalence * tpr + (1 - prevalence) * fpr, 1e-300)
    return float(np.sum(np.diff(tpr) * precision[1:]))


def ap_row(d: float, datasets: int) -> dict[str, Any]:
    """Coverage and width of average precision's percentile and logit-scale intervals from the same 1000 resamples."""
    rng = np.random.default_rng(11)
    true = true_average_precision(d)
    held = {"percentile": 0, "logit": 0}
    widths: dict[str, list[float]] = {"percentile": [], "logit": []}
    for i in range(datasets):
        y, a, _, _ = _scores(rng, (d, d), 1, 0.0)
        values = B._bootstrap_values(metrics.pr_auc, y, a, B._resamples(y, None, 1000, i))
        for method, (low, high) in (("percentile", B._percentile_ci(values, 0.05)),
                                    ("logit", B._logit_ci(values, metrics.pr_auc(y, a), 0.05, N_POS))):
            held[method] += int(low <= true <= high)
            widths[method].append(high - low)
    return {"true AUC": round(float(norm.cdf(d / np.sqrt(2))), 3), "true average precision": round(true, 4),
            "coverage, percentile": held["percentile"] / datasets,
            "width, percentile": float(np.mean(widths["percentile"])), "coverage, logit": held["logit"] / datasets,
            "width, logit": float(np.mean(widths["logit"]))}


def main() -> None:
    args = build_parser().parse_args()
    warnings.simplefilter("ignore", metrics.UndefinedMetricWarning)
    command = (f"python bench/interval_coverage.py --datasets {args.datasets} --ap-datasets {args.ap_datasets}"
               + "".join(f" --part {part}" for part in args.part or []))
    for part in (part for part in PARTS if part in (args.part or PARTS)):
        name, rows, note = PART_ROWS[part](args)
        print(f"{name}: {rows}", flush=True)
        write_results(name, rows, list(rows[0]), command=command, note=note)


def delong_part(args: argparse.Namespace) -> tuple[str, list[dict[str, Any]], str]:
    """The paired AUC test's rows (bench/results/delong_coverage.*) and their note."""
    rows = [delong_row(*case, args.datasets) for case in DELONG_CASES]
    return "delong_coverage", rows, (
        f"Simulated: {N_POS} PNEUMONIA and {N_NEG} NORMAL films, two models' binormal scores with noise correlated "
        f"{RHO}; coverage: the share of {args.datasets} data sets whose 95 % interval of the AUC difference holds the "
        f"true one; p < 0.05: the share rejected (the size when the AUCs are equal). films: `delong_auc_difference` "
        f"without groups; patients: each patient one cluster (Obuchowski).")


def recall_part(args: argparse.Namespace) -> tuple[str, list[dict[str, Any]], str]:
    """The clustered recall interval near 1 from 10 patients (bench/results/recall_near_one_coverage.*)."""
    rows = [rate_measure("10 patients", share, float(norm.ppf(0.995)), args.datasets) for share in (0.0, 0.2, 0.5)]
    return "recall_near_one_coverage", rows, (
        f"Simulated as bench/rate_coverage.py: 10 PNEUMONIA patients of Kermany's train films per patient, true "
        f"recall 0.995, {args.datasets} data sets.")


def ap_part(args: argparse.Namespace) -> tuple[str, list[dict[str, Any]], str]:
    """Average precision's percentile and logit-scale intervals (bench/results/ap_coverage.*)."""
    rows = [ap_row(d, args.ap_datasets) for d in AP_DS]
    return "ap_coverage", rows, (
        f"Simulated: {N_POS} PNEUMONIA and {N_NEG} NORMAL films, binormal scores; {args.ap_datasets} data sets, 1000 "
        f"class-stratified resamples each; coverage: the share whose 95 % interval of average precision holds its "
        f"true value.")


PART_ROWS = {"delong": delong_part, "recall": recall_part, "ap": ap_part}


if __name__ == "__main__":
    main()
