"""`evaluate` with a threshold from `set-threshold` says how many patients of the films it was chosen on also have
films in the training data (recorded in the model, and shown before only at GET /model)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pneumoscan.artifact import read_meta
from pneumoscan.cli import main
from pneumoscan.evaluation.local_threshold import source_notes

LINE = "  patients of those films also in the training data: "


def _lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(LINE)]


def test_evaluate_shows_the_shared_patients_set_threshold_recorded(
        shared_patient_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = shared_patient_run.parent / "data"
    site = tmp_path / "site"
    assert main(["set-threshold", "--model", str(shared_patient_run), "--data", str(data), "--split", "test",
                 "--out", str(site), "--n-boot", "5"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(site), "--data", str(data), "--n-boot", "5"]) == 0
    assert _lines(capsys.readouterr().out) == [f"{LINE}2 (2 of 4 films; by DICOM PatientID)"]
    assert main(["evaluate", "--model", str(site), "--data", str(data), "--n-boot", "5", "--threshold", "0.5"]) == 0
    assert _lines(capsys.readouterr().out) == []  # not the stored threshold: nothing to say about it


def test_the_line_says_why_set_threshold_counted_none(tiny_site: Path, tmp_path: Path) -> None:
    """Kermany's file names name no patient across splits; a record of null: the training data was not found
    then; an older set-threshold recorded nothing, and nothing is said."""
    meta = read_meta(tiny_site / "model.safetensors")
    assert [text for _, text in source_notes(meta, tmp_path, "test") if text.startswith(LINE.strip())] == [
        "patients of those films also in the training data: not counted (these films' patients are keyed by file "
        "name, which names no patient across splits; a DICOM PatientID, a manifest's patient column or "
        "--patient-key folder would)"]
    lost = replace(meta, threshold_source={**meta.threshold_source, "patients_in_training": None})
    assert source_notes(lost, tmp_path, "test")[1][1] == (
        "patients of those films also in the training data: not counted (the data the model was trained on was not "
        "found where set-threshold ran)")
    older = replace(meta, threshold_source={k: v for k, v in meta.threshold_source.items()
                                            if k != "patients_in_training"})
    assert len(source_notes(older, tmp_path, "test")) == 1
