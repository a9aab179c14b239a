"""The figures a report computes from a run's own validation predictions."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from pneumoscan.errors import MissingImagesWarning
from pneumoscan.evaluation.bootstrap import summarize
from pneumoscan.evaluation.evaluate import InSampleWarning
from pneumoscan.report.run import load_run
from pneumoscan.report.scores import data_scores, validation_scores
from tests.conftest import without_stored_patients, write_name_across_splits, write_xray


def test_validation_intervals_resample_patients_as_evaluate_does(tiny_run: Path, tmp_path: Path) -> None:
    """Validation films of one patient are not independent: the bootstrap drew them one by one (too narrow
    intervals, 'resamples of films' on the page) where `evaluate` on the same films draws their patients."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    without_stored_patients(run / "model.safetensors")  # a model from before they were: read from the file names
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


def test_validation_intervals_draw_a_manifests_patients_as_the_models_val_metrics_did(tmp_path: Path) -> None:
    """val_predictions.csv keeps no patient column: for a run trained on a manifest with one, the report read each
    film's patient again from its generic file name (every film its own patient, or none) and drew its intervals
    otherwise than the model's stored val_metrics, which were drawn by the manifest's patients."""
    from pneumoscan.artifact import read_meta
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.trainer import train

    rows = ["path,label,patient"]
    for i in range(48):  # 16 patients, 3 films each, generic names
        label = i // 24
        rows.append(f"{write_xray(tmp_path / 'films' / f'film_{i:04d}.png', label, 3000 + i, size=32)},"
                    f"{'PNEUMONIA' if label else 'NORMAL'},p{i // 3}")
    manifest = tmp_path / "man.csv"
    manifest.write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    train(TrainConfig(data=str(manifest), out=str(run), model="mlp", image_size=32, epochs=1, val_fraction=0.5,
                      cache_dir=str(tmp_path / "cache")), progress=False)
    meta = read_meta(run / "model.safetensors")
    assert meta.val_metrics["intervals"]["resampled"] == "patients"  # by the manifest's patients, 3 films each
    scores = validation_scores(load_run(run), n_boot=500, progress=False)
    assert scores.summary["intervals"] == meta.val_metrics["intervals"]
    assert scores.summary["roc_auc"] == meta.val_metrics["roc_auc"] and scores.summary["f1"] == meta.val_metrics["f1"]
    assert scores.patients == meta.val_metrics["intervals"]["n_resampled"] == len(scores.labels) // 3


def _trained_across_splits(tmp_path: Path) -> tuple[Path, Path]:
    """(data, run): an MLP run trained with --use-given-val on `write_name_across_splits`' data."""
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.trainer import train

    data, run = write_name_across_splits(tmp_path / "data"), tmp_path / "run"
    train(TrainConfig(data=str(data), out=str(run), model="mlp", image_size=32, epochs=1, use_given_val=True,
                      cache_dir=str(tmp_path / "cache")), progress=False)
    return data, run


def test_validation_patients_are_keyed_over_every_split_as_training_keyed_them(tmp_path: Path) -> None:
    """person7_bacteria_2.jpeg in train/, person7_bacteria_1.dcm (PatientID MRN7) and _3.jpeg in val/: `train` keys
    them over every split, where a name keying films of another split joins nothing (val's JPEG stays person7); the
    report keyed val's films alone, so the JPEG took MRN7: 2 patients where training counted 3, its intervals drawn
    otherwise than the model's val_metrics."""
    from pneumoscan.artifact import read_meta

    run = _trained_across_splits(tmp_path)[1]
    meta = read_meta(run / "model.safetensors")
    without_stored_patients(run / "model.safetensors")  # a model from before they were: read from the files
    scores = validation_scores(load_run(run), n_boot=500, progress=False)
    assert scores.patients == len(set(meta.score_groups() or [])) == 3
    assert scores.summary["intervals"] == meta.val_metrics["intervals"]


def test_a_splits_patients_are_counted_over_its_data_sets_every_split(tmp_path: Path) -> None:
    """`report --data DIR --split val` counted the split's patients keyed alone (val's person7_bacteria_3.jpeg took
    MRN7, its DICOM sibling's PatientID: 2) where `evaluate` drew its intervals by the patients of the data set keyed
    over every split, as `train` and `audit` key it (person7 stays: 3)."""
    data, run = _trained_across_splits(tmp_path)
    with pytest.warns(InSampleWarning):  # the run's own validation films
        scores = data_scores(load_run(run), data, "val", n_boot=50, progress=False)
    assert scores.patients == len(set(scores.groups or [])) == 3
