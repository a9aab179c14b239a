"""The threshold's 95 % interval behind "borderline", from a model's stored validation scores only.

    PYTHONPATH=src:bench .venv/bin/python bench/borderline.py [--model M] [--repeats 5]

For the stored operating point and a few others (`--prevalence`, `--target-recall`): the threshold, its 95 %
bootstrap interval as `predict` and `serve` compute it (`Predictor.threshold_ci95`: 1,000 class-stratified
resamples, seed 0), how many stored validation films lie within it (borderline), and the time the interval takes
(median of --repeats fresh computations; the model's loading is not counted). The ends' spread over seeds 0-9
says how much the 1,000 resamples themselves move them. No image is read: nothing here touches the test split.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from _results import write_results

from pneumoscan.evaluation.thresholds import threshold_ci95
from pneumoscan.inference.predictor import Predictor

POINTS: tuple[dict[str, float], ...] = ({}, {"prevalence": 0.2}, {"prevalence": 0.625}, {"target_recall": 0.9},
                                       {"target_recall": 0.99})


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="run folder or .safetensors (default: the shipped model)")
    parser.add_argument("--repeats", type=int, default=5, help="timed computations of each interval (default 5)")
    return parser


def measure(model: str | None, options: dict[str, float], repeats: int) -> dict[str, Any]:
    """One operating point's row."""
    seconds = []
    for _ in range(repeats):
        predictor = Predictor(model, backend="torch", guard=False, **options)
        start = time.perf_counter()
        interval = predictor.threshold_ci95
        seconds.append(time.perf_counter() - start)
    assert interval is not None, "the model stores no scores that give its threshold"
    scores = predictor.meta.val_scores
    labels = np.asarray(scores["labels"])
    probs = predictor._adjust(np.asarray(scores["probs"], dtype=np.float64))  # the probabilities predict would give
    inside = (probs >= interval[0]) & (probs <= interval[1])
    recall = predictor.target_recall
    ends = np.array([threshold_ci95(labels, scores["probs"], recall, seed=seed) for seed in range(10)])
    ends = predictor._adjust(ends)
    return {"operating point": " ".join(f"--{k.replace('_', '-')} {v}" for k, v in options.items()) or "stored",
            "threshold": predictor.threshold, "interval": [float(v) for v in interval],
            "width": float(interval[1] - interval[0]),
            "borderline normal": f"{int(inside[labels == 0].sum())} / {int((labels == 0).sum())}",
            "borderline pneumonia": f"{int(inside[labels == 1].sum())} / {int((labels == 1).sum())}",
            "low end, seeds 0-9": [float(ends[:, 0].min()), float(ends[:, 0].max())],
            "high end, seeds 0-9": [float(ends[:, 1].min()), float(ends[:, 1].max())],
            "seconds": statistics.median(seconds)}


def main() -> None:
    args = build_parser().parse_args()
    rows = [measure(args.model, options, args.repeats) for options in POINTS]
    for row in rows:
        print(row)
    columns = list(rows[0])
    command = "python bench/borderline.py" + (f" --model {args.model}" if args.model else "")
    write_results("borderline", rows, columns, command=command,
                  note="From the stored validation scores only (labels and P of the films the threshold was chosen "
                       "on); seconds: the interval alone, median of fresh computations, OMP_NUM_THREADS=1.")


if __name__ == "__main__":
    main()
