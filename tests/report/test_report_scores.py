"""The figures a report computes from a run's own validation predictions."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from pneumoscan.errors import MissingImagesWarning
from pneumoscan.evaluation.bootstrap import summarize
from pneumoscan.report.run import load_run
from pneumoscan.report.scores import validation_scores


def test_validation_intervals_resample_patients_as_evaluate_does(tiny_run: Path, tmp_path: Path) -> None:
    """Validation films of one patient are not independent: the bootstrap drew them one by one (too narrow
    intervals, 'resamples of films' on the page) where `evaluate` on the same films draws their patients."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    rows = list(csv.DictReader((tiny_run / "val_predictions.csv").open()))
    for i, row in enumerate(rows):  # two patients a class, each with several films (Kermany names)
        name = f"IM-{i % 2:04d}-{i + 1:04d}.jpeg" if row["label"] == "0" else f"person{i % 2}_bacteria_{i}.jpeg"
        row["path"] = str(Path(row["path"]).with_name(name))
    with (run / "val_predictions.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.warns(MissingImagesWarning):  # the renamed films are not there: only their names count here
        scores = validation_scores(load_run(run), n_boot=50, progress=False)
    info = scores.summary["intervals"]
    assert info["resampled"] == "patients" and info["per_class"] == {"NORMAL": 2, "PNEUMONIA": 2}
    patients = [Path(r["path"]).name.split("_")[0] if r["label"] == "1" else Path(r["path"]).name[:7] for r in rows]
    expected = summarize(np.asarray([int(r["label"]) for r in rows]), np.asarray([float(r["prob"]) for r in rows]),
                         scores.threshold, n_boot=50, groups=patients)
    assert scores.summary["roc_auc"] == expected["roc_auc"] and scores.summary["f1"] == expected["f1"]
