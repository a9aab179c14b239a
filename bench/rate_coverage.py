"""Coverage of the rates' 95 % Wilson intervals when patients have several films: counting films or patients.

    PYTHONPATH=src:bench .venv/bin/python bench/rate_coverage.py [--datasets 2000]

Simulated calls only (no image is read): PNEUMONIA films of patients with as many films each as Kermany's
train/PNEUMONIA has (person<N>_*: 630 patients of 1 film, 561 of 2, ... one of 30), a film called PNEUMONIA when
mu + patient effect + film noise >= 0, the patient effect holding a share (0, 0.2, 0.5, 0.8) of the unit variance.
The true recall is Phi(mu). Data sets of 390 films; of 10 or 5 such patients (few: what `evaluate` warns of); and
of 5 patients one of whom has 30 films, the others 2 each; and of 12 patients, one of 60 films and eleven of 2
(one patient holding most of the class), also at true recalls of 0.5 and 0.79. For each of --datasets data sets:
`wilson_ci` of the film counts (films counted as independent) and `clustered_wilson_ci` of the per-patient counts
(what `summarize` gives when it resamples patients): how often each holds the true recall, and its mean width.
"""
from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from scipy.stats import norm

from _results import write_results

from pneumoscan.evaluation.intervals import clustered_wilson_ci, wilson_ci

FILMS = 390
# films per PNEUMONIA patient in Kermany's train split: {films: patients}
PATIENT_SIZES = {1: 630, 2: 561, 3: 191, 4: 85, 5: 43, 6: 44, 7: 29, 8: 19, 9: 12, 10: 6, 11: 5, 12: 4, 13: 1, 14: 2,
                 16: 1, 18: 1, 30: 1}
SHARES = (0.0, 0.2, 0.5, 0.8)
MUS = (1.6, 2.3)
# data set -> how its patients' film counts are drawn: to 390 films, or a fixed number of patients
SETS = ("390 films", "10 patients", "5 patients", "5 patients, one of 30 films", "12 patients, one of 60 films")
DOMINANT_MUS = (0.0, 0.8, 1.6)  # the data set of one dominant patient, at true recalls 0.5, 0.79 and 0.945


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", type=int, default=2000, help="simulated data sets per row (default 2000)")
    return parser


def _film_counts(data_set: str, rng: np.random.Generator) -> list[int]:
    """Films per patient of one simulated data set (`SETS`), drawn from Kermany's train counts."""
    sizes = np.array(list(PATIENT_SIZES))
    weights = np.array(list(PATIENT_SIZES.values()), dtype=float)
    weights /= weights.sum()
    if data_set == "5 patients, one of 30 films":
        return [30, 2, 2, 2, 2]
    if data_set == "12 patients, one of 60 films":
        return [60] + [2] * 11
    if data_set.endswith(" patients"):
        return [int(k) for k in rng.choice(sizes, int(data_set.split()[0]), p=weights)]
    films: list[int] = []
    while sum(films) < FILMS:
        films.append(min(int(rng.choice(sizes, p=weights)), FILMS - sum(films)))
    return films


def measure(data_set: str, share: float, mu: float, datasets: int) -> dict[str, Any]:
    """One row: coverage and mean width of both intervals over `datasets` simulated data sets of `data_set`."""
    true = float(norm.cdf(mu))
    rng = np.random.default_rng(3)
    covered = {"films": 0, "patients": 0}
    widths: dict[str, list[float]] = {"films": [], "patients": []}
    for _ in range(datasets):
        n_i = np.array(_film_counts(data_set, rng))
        effects = rng.normal(0, np.sqrt(share), n_i.size)
        k_i = np.array([int((mu + e + rng.normal(0, np.sqrt(1 - share), k) >= 0).sum()) for e, k in zip(effects, n_i)])
        for unit, (low, high) in (("films", wilson_ci(int(k_i.sum()), int(n_i.sum()))),
                                  ("patients", clustered_wilson_ci(k_i, n_i))):
            covered[unit] += int(low <= true <= high)
            widths[unit].append(high - low)
    return {"data set": data_set, "patient share of variance": share, "true recall": true,
            "coverage, films": covered["films"] / datasets, "width, films": float(np.mean(widths["films"])),
            "coverage, patients": covered["patients"] / datasets,
            "width, patients": float(np.mean(widths["patients"]))}


def main() -> None:
    args = build_parser().parse_args()
    rows = []
    for data_set in SETS:
        for share in SHARES:
            for mu in DOMINANT_MUS if data_set.startswith("12 ") else MUS:
                rows.append(measure(data_set, share, mu, args.datasets))
                print(rows[-1], flush=True)
    write_results("rate_coverage", rows, list(rows[0]),
                  command=f"python bench/rate_coverage.py --datasets {args.datasets}",
                  note=f"Simulated: PNEUMONIA films, Kermany's train films per patient ({FILMS} films; 10 or 5 "
                       f"patients; 5 patients, one of 30 films and four of 2; 12 patients, one of 60 films and eleven "
                       f"of 2); coverage: the share of data sets whose 95 % interval of recall holds the true recall "
                       f"(films: `wilson_ci` of the film counts; patients: `clustered_wilson_ci`, each patient's "
                       f"films one cluster).")


if __name__ == "__main__":
    main()
