"""The seeds' model comparison done right: every registered model, one patient-aware split, test figures with 95% CIs.

    python bench/compare_models.py --data ../shared/data/chest_xray --runs runs/full
Writes bench/results/compare_models.{json,md} (reusing the runs of train_full.py), then the shipped
model's robustness table, bench/results/robustness.{json,md} (see robustness.py).
"""
from __future__ import annotations

import sys

import robustness
from train_full import build_parser, main  # noqa: F401  (build_parser: the same command line)

if __name__ == "__main__":
    main(name="compare_models")
    data = sys.argv[sys.argv.index("--data") + 1] if "--data" in sys.argv else "../shared/data/chest_xray"
    sys.argv = [sys.argv[0], "--data", data]
    robustness.main()
