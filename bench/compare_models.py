"""The seeds' model comparison done right: every registered model, one patient-aware split, test figures with 95% CIs.

    python bench/compare_models.py --data ../shared/data/chest_xray --runs runs/full
Writes bench/results/compare_models.json and .md (same runs as train_full.py, which it reuses).
"""
from __future__ import annotations

from train_full import main

if __name__ == "__main__":
    main(name="compare_models")
