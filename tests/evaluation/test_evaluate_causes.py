"""Recall by cause from a manifest's causes, kept in the prediction CSV, and given only when some cause is known."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pneumoscan.cli import main
from pneumoscan.data.labels import Sample
from pneumoscan.data.patients import cause_of
from pneumoscan.errors import InputError
from pneumoscan.evaluation.evaluate import read_prediction_samples, recall_by_cause, write_predictions


def hospital_manifest(tiny_data: Path, folder: Path, causes: list[str], kermany_last: bool = True) -> Path:
    """tiny_data's test films copied under hospital names (no cause in them) with a manifest `path,label,cause`: each
    PNEUMONIA film labelled PNEUMONIA with the next of `causes` ('' for none); with `kermany_last`, the last one named
    as Kermany's `person1_virus_1.jpeg`, so the manifest's cause has a file name's to win over."""
    rows = ["path,label,cause"]
    pneumonia = sorted((tiny_data / "test" / "PNEUMONIA").glob("*.jpeg"))
    assert len(pneumonia) == len(causes)
    for i, film in enumerate(sorted((tiny_data / "test" / "NORMAL").glob("*.jpeg"))):
        shutil.copy(film, folder / f"normal_{i:02d}.jpeg")
        rows.append(f"normal_{i:02d}.jpeg,NORMAL,")
    for i, (film, cause) in enumerate(zip(pneumonia, causes)):
        name = "person1_virus_1.jpeg" if kermany_last and i == len(causes) - 1 else f"scan_{i:02d}.jpeg"
        shutil.copy(film, folder / name)
        rows.append(f"{name},PNEUMONIA,{cause}")
    (folder / "site.csv").write_text("\n".join(rows) + "\n")
    return folder / "site.csv"


def test_the_prediction_csv_keeps_each_films_cause(tmp_path: Path) -> None:
    samples = [Sample(Path("scan1.png"), 1, cause="virus"), Sample(Path("person2_bacteria_3.jpeg"), 1),
               Sample(Path("person4_virus_5.jpeg"), 1, cause="bacteria"), Sample(Path("scan6.png"), 1),
               Sample(Path("IM-0001-0001.jpeg"), 0)]
    write_predictions(tmp_path / "p.csv", samples, np.full(len(samples), 0.5))
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert [r["cause"] for r in rows] == ["virus", "bacteria", "bacteria", "", ""]  # the manifest's wins
    back, _ = read_prediction_samples(tmp_path / "p.csv")
    assert [cause_of(s) for s in back] == [cause_of(s) for s in samples]


def test_a_prediction_csv_from_before_the_cause_column_reads_causes_from_the_names(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("path,label,prob\nperson1_virus_1.jpeg,1,0.9\nscan.png,1,0.4\n")
    back, _ = read_prediction_samples(tmp_path / "p.csv")
    assert [cause_of(s) for s in back] == ["virus", None]


@pytest.mark.parametrize("row", ["scan.png,1,0.9,fungal", "scan.png,0,0.1,virus"])
def test_a_prediction_csv_with_a_wrong_cause_is_refused_naming_the_line(tmp_path: Path, row: str) -> None:
    (tmp_path / "p.csv").write_text(f"path,label,prob,cause\nx.png,1,0.5,\n{row}\n")
    with pytest.raises(InputError, match=r"p\.csv:3: cause '\w+' must be bacteria or virus on a PNEUMONIA row "
                                         r"\(label 1\), or empty; restore the file$"):
        read_prediction_samples(tmp_path / "p.csv")


def test_recall_by_cause_counts_the_unknown_only_beside_a_known_cause() -> None:
    """Films whose names carry no cause gave `{}` here while the report drew an `unknown` bar: now both give recall by
    cause when at least one film's cause is known, the rest as `unknown`, and nothing otherwise."""
    samples = [Sample(Path("scan1.png"), 1, cause="virus"), Sample(Path("person2_bacteria_3.jpeg"), 1),
               Sample(Path("scan3.png"), 1), Sample(Path("scan4.png"), 1), Sample(Path("scan5.png"), 0)]
    probs = np.array([0.9, 0.1, 0.8, 0.2, 0.9])
    assert recall_by_cause(samples, probs, 0.5) == {"bacteria": {"n": 1, "recall": 0.0},
                                                    "virus": {"n": 1, "recall": 1.0},
                                                    "unknown": {"n": 2, "recall": 0.5}}
    unknown = [Sample(Path("scan1.png"), 1), Sample(Path("scan2.png"), 1), Sample(Path("scan3.png"), 0)]
    assert recall_by_cause(unknown, probs[:3], 0.5) == {}


def test_evaluate_gives_recall_by_the_manifests_causes(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    causes = ["bacteria", "bacterial", "viral", "virus", "", "", "unknown", "bacteria"]
    manifest = hospital_manifest(tiny_data, tmp_path, causes)
    out, films = tmp_path / "m.json", tmp_path / "films.csv"
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(manifest), "--n-boot", "20", "--json", str(out),
                 "--predictions", str(films)]) == 0
    printed = capsys.readouterr().out
    by_cause = json.loads(out.read_text())["recall_by_cause"]
    assert list(by_cause) == ["bacteria", "virus", "unknown"]
    assert [by_cause[c]["n"] for c in by_cause] == [3, 2, 3]  # person1_virus_1.jpeg: bacteria, as the manifest says
    rows = list(csv.DictReader(films.open()))
    written = {Path(r["path"]).name: r["cause"] for r in rows}
    assert written["person1_virus_1.jpeg"] == "bacteria" and written["scan_02.jpeg"] == "virus"
    assert written["scan_04.jpeg"] == "" and written["normal_00.jpeg"] == ""
    probs = {Path(r["path"]).name: float(r["prob"]) for r in rows}
    threshold = json.loads(out.read_text())["threshold"]
    unknown = [probs[f"scan_{i:02d}.jpeg"] >= threshold for i in (4, 5, 6)]
    assert by_cause["unknown"]["recall"] == pytest.approx(sum(unknown) / 3)
    assert f"recall unknown  {by_cause['unknown']['recall']:.4f} (n=3)" in printed
