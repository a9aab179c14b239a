"""A run trained on a manifest keeps its validation films' causes, for the report's recall by cause."""
from __future__ import annotations

import csv
from pathlib import Path

import pneumoscan
from tests.conftest import write_xray


def test_val_predictions_keep_the_manifests_causes(tmp_path: Path) -> None:
    rows = ["path,label"]
    for i in range(16):
        write_xray(tmp_path / f"n{i:02d}.png", 0, 2 * i)
        write_xray(tmp_path / f"p{i:02d}.png", 1, 2 * i + 1)
        rows += [f"n{i:02d}.png,NORMAL", f"p{i:02d}.png,{'bacterial' if i % 2 else 'viral'}"]
    (tmp_path / "site.csv").write_text("\n".join(rows) + "\n")
    run = pneumoscan.train(tmp_path / "site.csv", tmp_path / "run", model="cnn", epochs=1, image_size=32,
                           val_fraction=0.25, cache_dir=str(tmp_path / "cache"), progress=False, verbose=False)
    written = list(csv.DictReader((run.folder / "val_predictions.csv").open()))
    expected = {f"p{i:02d}.png": "bacteria" if i % 2 else "virus" for i in range(16)}
    pneumonia = [r for r in written if r["label"] == "1"]
    assert pneumonia and all(r["cause"] == expected[Path(r["path"]).name] for r in pneumonia)
    assert all(r["cause"] == "" for r in written if r["label"] == "0")
