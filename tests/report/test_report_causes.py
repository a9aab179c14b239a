"""The report's recall by cause: a manifest's causes, the same groups as `evaluate`, and no lone `unknown` bar."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

from pneumoscan.report.build import Figures, _subgroups_section
from pneumoscan.report.run import load_run
from pneumoscan.report.scores import data_scores, validation_scores
from pneumoscan.report.subgroups import by_cause
from tests.evaluation.test_evaluate_causes import hospital_manifest

NO_CAUSE = "No PNEUMONIA image has a known cause"


def test_report_and_evaluate_give_the_same_recall_by_the_manifests_causes(tiny_run: Path, tiny_data: Path,
                                                                          tmp_path: Path) -> None:
    manifest = hospital_manifest(tiny_data, tmp_path, ["bacteria", "viral", "virus", "", "", "", "", "bacteria"])
    scores = data_scores(load_run(tiny_run), manifest, None, n_boot=10, progress=False)
    rows = by_cause(scores.causes, scores.labels, scores.preds)
    assert {r.group: {"n": r.n, "recall": r.recall} for r in rows} == scores.summary["recall_by_cause"]
    assert [r.group for r in rows] == ["bacteria", "virus", "unknown"] and rows[0].n == 2  # the manifest's cause wins
    figures = Figures()
    assert NO_CAUSE not in _subgroups_section(scores, figures) and "recall_by_cause" in figures.pngs


def test_films_of_no_known_cause_get_no_recall_by_cause_in_either(tiny_run: Path, tiny_data: Path,
                                                                  tmp_path: Path) -> None:
    """`evaluate` gave `{}` for hospital names while the report drew one `unknown` bar repeating the recall."""
    manifest = hospital_manifest(tiny_data, tmp_path, [""] * 8, kermany_last=False)
    scores = data_scores(load_run(tiny_run), manifest, None, n_boot=10, progress=False)
    assert scores.summary["recall_by_cause"] == {} and by_cause(scores.causes, scores.labels, scores.preds) == []
    figures = Figures()
    section = _subgroups_section(scores, figures)
    assert NO_CAUSE in section and "recall_by_cause" not in figures.pngs and "<td>unknown</td>" not in section


def test_the_report_reads_the_causes_the_validation_predictions_keep(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    rows = list(csv.DictReader((tiny_run / "val_predictions.csv").open()))
    positive = [r for r in rows if r["label"] == "1"]
    for i, row in enumerate(positive):  # a manifest said virus for the first two, against their names
        row["cause"] = "virus" if i < 2 else row["cause"]
    with (run / "val_predictions.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "prob", "cause"])
        writer.writeheader()
        writer.writerows(rows)
    scores = validation_scores(load_run(run), n_boot=10)
    groups = {r.group: r.n for r in by_cause(scores.causes, scores.labels, scores.preds)}
    assert groups == {"bacteria": len(positive) - 2, "virus": 2}
