"""Coverage of the 95 % AUC interval when one class has few patients: the patient bootstrap against the film one.

    PYTHONPATH=src:bench .venv/bin/python bench/patient_bootstrap.py [--datasets 300] [--n-boot 200]

Simulated scores only (no image is read): 30 NORMAL films of G patients (G = 1, 2, 3, 5, 10, 30; a patient's films
share a normal patient effect) and 30 PNEUMONIA films of 30 patients, score = class shift 1.5 + patient effect + film
noise (sd 1), with a patient effect of sd 1 (half the variance) or 0.5. The true AUC is that of new patients' films.
For each of --datasets data sets, the interval `summarize` gives (`_patient_resamples`, within each class) and the
one from resampling films (`_stratified_indices`), from the same seed: how often each holds the true AUC, and its
mean width. This is what sets `bootstrap.MIN_UNITS`, below which `evaluate` calls its intervals unreliable.
"""
from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from scipy.stats import norm

from _results import write_results

from pneumoscan.evaluation.bootstrap import _patient_resamples, _stratified_indices

SHIFT, FILM_SD, N_NEG, N_POS = 1.5, 1.0, 30, 30
PATIENTS = (1, 2, 3, 5, 10, 30)
PATIENT_SDS = (1.0, 0.5)


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", type=int, default=300, help="simulated data sets per row (default 300)")
    parser.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples per interval (default 200)")
    return parser


def _aucs(labels: np.ndarray, scores: np.ndarray, resamples: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """The Mann-Whitney AUC of each resample (no ties: the scores are continuous)."""
    out = np.empty(len(resamples))
    for b, rows in enumerate(resamples):
        y, s = labels[rows], scores[rows]
        n_neg = int((y == 0).sum())
        ranks = np.argsort(np.argsort(np.concatenate([s[y == 0], s[y == 1]]))) + 1
        n_pos = len(ranks) - n_neg
        out[b] = (ranks[n_neg:].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return out


def measure(patients: int, patient_sd: float, datasets: int, n_boot: int, rng: np.random.Generator) -> dict[str, Any]:
    """One row: the coverage and mean width of both intervals over `datasets` simulated data sets."""
    true = float(norm.cdf(SHIFT / np.sqrt(2 * (patient_sd ** 2 + FILM_SD ** 2))))
    covered = {"patients": 0, "films": 0}
    widths: dict[str, list[float]] = {"patients": [], "films": []}
    labels = np.r_[np.zeros(N_NEG, np.int8), np.ones(N_POS, np.int8)]
    for _ in range(datasets):
        patient = np.repeat(np.arange(patients), -(-N_NEG // patients))[:N_NEG]
        scores = np.r_[rng.normal(0, patient_sd, patients)[patient] + rng.normal(0, FILM_SD, N_NEG),
                       SHIFT + rng.normal(0, patient_sd, N_POS) + rng.normal(0, FILM_SD, N_POS)]
        groups = [f"n{p}" for p in patient] + [f"p{i}" for i in range(N_POS)]
        seed = int(rng.integers(1 << 30))
        for unit, resamples in (("patients", _patient_resamples(labels, groups, n_boot, seed)),
                                ("films", _stratified_indices(labels, n_boot, seed))):
            low, high = np.quantile(_aucs(labels, scores, resamples), [0.025, 0.975])
            covered[unit] += int(low <= true <= high)
            widths[unit].append(float(high - low))
    return {"patient sd": patient_sd, "NORMAL patients": patients, "true AUC": true,
            "coverage, patients": covered["patients"] / datasets, "width, patients": float(np.mean(widths["patients"])),
            "coverage, films": covered["films"] / datasets, "width, films": float(np.mean(widths["films"]))}


def main() -> None:
    args = build_parser().parse_args()
    rng = np.random.default_rng(1)
    rows = []
    for patient_sd in PATIENT_SDS:
        for patients in PATIENTS:
            rows.append(measure(patients, patient_sd, args.datasets, args.n_boot, rng))
            print(rows[-1])
    write_results("patient_bootstrap", rows, list(rows[0]),
                  command=f"python bench/patient_bootstrap.py --datasets {args.datasets} --n-boot {args.n_boot}",
                  note=f"Simulated: {N_NEG} NORMAL films of G patients, {N_POS} PNEUMONIA films of {N_POS} patients, "
                       f"score = {SHIFT} x label + patient effect (sd as given) + film noise (sd {FILM_SD}); "
                       f"coverage: the share of data sets whose 95 % percentile interval holds the true AUC.")


if __name__ == "__main__":
    main()
