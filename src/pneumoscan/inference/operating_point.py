"""The operating-point options `predict`, `evaluate` and `serve` share (checked by
evaluation.thresholds.check_operating_point, applied by the Predictor)."""
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
