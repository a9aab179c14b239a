"""Store a model's operating threshold by the current rule (`threshold_for_recall`: midway in the validation gap
below the film it is chosen on), from the validation scores the model records; weights unchanged.

    python bench/rethreshold.py [MODEL]

Models trained before the rule stored the exact score of that film, which another backend (ONNX Runtime) can put
on the other side by rounding. The decisions on the stored validation films must stay the same (checked).
"""
from __future__ import annotations

import argparse

import numpy as np

from _rewrite import rewrite_artifact

from pneumoscan.artifact import load_artifact, resolve_model_path


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", default=None, help="run folder or .safetensors (default: the shipped model)")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    path = resolve_model_path(args.model)
    model, meta = load_artifact(path)
    old, new = meta.threshold, meta.threshold_for_recall(meta.target_recall)
    probs = np.asarray(meta.val_scores["probs"])
    if not np.array_equal(probs >= old, probs >= new):
        raise SystemExit(f"{path}: {old} -> {new} would change decisions on the stored validation films")
    if new == old:
        raise SystemExit(f"{path}: threshold {old} already follows the rule")
    meta.threshold = new
    on_it = int(np.sum(probs == old))
    print(f"{path}: threshold {old!r} -> {new!r} (validation films scored exactly at the old one: {on_it}); "
          f"{rewrite_artifact(path, model, meta)}")


if __name__ == "__main__":
    main()
