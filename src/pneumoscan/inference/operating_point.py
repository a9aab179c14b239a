"""The operating-point options `predict`, `evaluate` and `serve` share (checked by
evaluation.thresholds.check_operating_point, applied by the Predictor), and the operating point in use as the one line
`predict` and `evaluate` print."""
from __future__ import annotations

import argparse


def add_operating_point_args(parser: argparse.ArgumentParser, title: str = "operating point") -> None:
    """`--threshold`, `--target-recall` and `--prevalence`, in a group of their own."""
    group = parser.add_argument_group(title)
    group.add_argument("--threshold", type=float, help="decide PNEUMONIA when P >= this (default: the model's own)")
    group.add_argument("--target-recall", type=float,
                       help="choose the threshold for this recall on the model's stored validation scores (or the "
                            "local images of `pneumoscan set-threshold`); not with --threshold")
    group.add_argument("--prevalence", type=float,
                       help="pneumonia prevalence of your patients (0-1); probabilities are re-weighted by Bayes' rule "
                            "(default: none; P then assumes the model's own prior, 0.5 after class-balanced "
                            "training such as the shipped model's)")


def operating_point_text(point: dict) -> str:
    """`Predictor.operating_point` in one line: where the threshold came from and the prevalence P assumes."""
    on = {"local": " on this site's films (set-threshold)", "validation": " on the validation films"}.get(
        point["chosen_on"] or "", "")
    recall = point["target_recall"]
    if point["threshold_from"] == "threshold":
        source = "--threshold"
    elif point["threshold_from"] == "target_recall":
        source = f"--target-recall {recall:g}{on}"
    else:
        source = "the model's own" + (f" (for recall {recall:g}{on})" if recall is not None else "")
    if point["prevalence_from"] == "prevalence":
        moved = "" if point["threshold_from"] == "threshold" else ", the threshold moved with it"
        prior = f"{point['prevalence']:g} (--prevalence{moved})"
    else:
        prior = f"{point['prevalence']:g} (the model's prior; no --prevalence)"
    return f"operating point: threshold from {source}; P for a prevalence of {prior}"
