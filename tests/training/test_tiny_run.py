from __future__ import annotations

import csv
import json
from pathlib import Path

from pneumoscan.artifact import load_artifact, read_meta


def test_tiny_run_writes_everything(tiny_run: Path) -> None:
    for name in ("model.safetensors", "best.safetensors", "last.pt", "history.csv", "config.json", "split.json",
                 "val_predictions.csv"):
        assert (tiny_run / name).is_file(), name
    rows = list(csv.DictReader((tiny_run / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    meta = read_meta(tiny_run / "model.safetensors")
    assert meta.image_size == 32 and meta.class_names == ["NORMAL", "PNEUMONIA"]
    assert 0.0 <= meta.threshold <= 1.0
    assert meta.val_metrics["recall"]["value"] >= 0.95 or meta.val_metrics["n_positive"] < 20
    split = json.loads((tiny_run / "split.json").read_text())
    assert split["method"].startswith("patient-aware")
    model, meta2 = load_artifact(tiny_run)
    assert meta2 == meta and not model.training
