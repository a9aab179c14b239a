"""`report` and `compare` warn, as `evaluate` does, when scored on the films `set-threshold` chose the threshold on."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pneumoscan.cli import main

IN_SAMPLE = "these are the films the threshold was chosen on"


def test_report_and_compare_warn_on_the_films_the_threshold_was_chosen_on(tiny_site: Path, tiny_run: Path,
                                                                          tiny_data: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    site = tiny_site
    assert main(["report", str(site), "--data", str(tiny_data), "--out", str(tmp_path / "r.html"), "--n-boot", "20",
                 "--cases", "1"]) == 0
    assert IN_SAMPLE in capsys.readouterr().err
    assert main(["compare", str(site), str(tiny_run), "--data", str(tiny_data), "--out", str(tmp_path / "c.html"),
                 "--n-boot", "20"]) == 0
    err = capsys.readouterr().err
    assert err.count(IN_SAMPLE) == 1  # the site copy only, not the run it came from
    assert f"{site}: {IN_SAMPLE}" in err  # named: with several runs, 'these are the films' said not whose

    assert main(["report", str(site), "--data", str(tiny_data), "--split", "train", "--out", str(tmp_path / "t.html"),
                 "--n-boot", "20", "--cases", "1"]) == 0
    assert IN_SAMPLE not in capsys.readouterr().err


def test_compare_names_the_run_in_each_of_its_warnings(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs trained on the films given as --data: each warned '... images are byte-identical to images this
    model was trained or validated on', and nothing said which warning was whose."""
    other = tmp_path / "other"
    shutil.copytree(tiny_run, other)
    assert main(["compare", str(tiny_run), str(other), "--data", str(tiny_data), "--split", "train",
                 "--out", str(tmp_path / "c.html"), "--n-boot", "5"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "trained or validated on" in line]
    assert len(lines) == 2
    assert lines[0].startswith(f"pneumoscan: warning: {tiny_run}: ") and lines[1].startswith(f"pneumoscan: warning: {other}: ")


def test_report_shows_evaluates_borderline_films(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    """`evaluate` counts the films within the threshold's 95% interval (which predict marks borderline) and the
    rates outside it; the report's threshold section left them out."""

    out, metrics = tmp_path / "r.html", tmp_path / "m.json"
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--json", str(metrics),
                 "--n-boot", "10"]) == 0
    border = json.loads(metrics.read_text())["borderline"]
    assert border is not None
    assert main(["report", str(tiny_run), "--data", str(tiny_data), "--out", str(out), "--n-boot", "10",
                 "--cases", "1"]) == 0
    text = out.read_text(encoding="utf-8").split('<section id="thresholds">')[1].split("</section>")[0]
    low, high = border["interval"]
    assert f"<td>{low:.4f} - {high:.4f}</td>" in text
    assert f"<td>{border['n']} of " in text and f"NORMAL {border['by_class']['NORMAL']['n']} (" in text
    assert f"on the {border['outside']['n']} films outside it</td>" in text
    val = tmp_path / "val.html"  # the run's own validation predictions: evaluate's borderline is not computed
    assert main(["report", str(tiny_run), "--out", str(val), "--n-boot", "10", "--cases", "1"]) == 0
    assert "Borderline films" not in val.read_text(encoding="utf-8")


def test_threshold_note_does_not_promise_rows_one_class_cannot_have() -> None:
    """With NORMAL films alone only the operating threshold can be marked, but the note still listed the recall
    targets and Youden's J as highlighted rows."""
    from pneumoscan.report.build import _thresholds_section
    from pneumoscan.report.scores import Scores

    probs = np.array([0.2, 0.4, 0.7])
    scores = Scores("", "val", [], np.zeros(3, dtype=np.int64), probs, 0.5, {"n_positive": 0, "n_negative": 3}, [])
    text = _thresholds_section(scores)
    assert "Highlighted row: the operating threshold;" in text and "these images hold only NORMAL films" in text
    assert "Highlighted rows" not in text and text.count('class="highlight"') == 1


def test_report_of_a_set_threshold_copy_without_data_reports_on_the_films_its_threshold_was_chosen_on(
        tiny_site: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A set-threshold folder has no val_predictions.csv: `report` of it without --data said to pass the --data of
    its films. The copy records where they were, and their scores: found there with the same scores, they are
    its films, so the report is made on them (every section, the cases too), as a run's is on its validation
    films, saying that the figures are optimistic; from any folder."""
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(tiny_site), "--out", "r.html", "--n-boot", "5"]) == 0
    assert IN_SAMPLE in capsys.readouterr().err
    page = (tmp_path / "r.html").read_text()
    assert f"the films set-threshold chose the threshold on (test split of {tiny_data})" in page
    assert "Optimistic: set-threshold chose the operating threshold (for recall" in page
    assert "Most confident right and wrong cases" in page and 'id="cases"' in page


def test_report_of_a_set_threshold_copy_without_data_refuses_another_split(
        tiny_site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--split val` was accepted and the report made on the threshold's (test) films all the same; other splits were
    refused saying 'the run's validation predictions are used', which a set-threshold copy does not have."""
    capsys.readouterr()
    assert main(["report", str(tiny_site), "--split", "val", "--out", str(tmp_path / "v.html"), "--n-boot", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"pneumoscan: error: --split val: {tiny_site} is a set-threshold copy without validation "
                   f"predictions; without --data its report is of the films its threshold was chosen on (split test), "
                   f"so leave out --split, or pass --data DIR --split val to score that split")
    assert not (tmp_path / "v.html").exists()
    assert main(["report", str(tiny_site), "--split", "test", "--out", str(tmp_path / "t.html"), "--n-boot", "5"]) == 0


def _site_copy(tiny_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A set-threshold copy of tiny_run made in lab/ with `--data site` (tiny_data's test films), and lab/site;
    the current folder is then another one."""
    lab = tmp_path / "lab"
    shutil.copytree(tiny_data / "test", lab / "site")
    monkeypatch.chdir(lab)
    assert main(["set-threshold", "--model", str(tiny_run), "--data", "site", "--out", "copy", "--n-boot", "5"]) == 0
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return lab / "copy", lab / "site"


def test_report_of_a_set_threshold_copy_whose_films_are_not_there_says_what_to_pass(
        tiny_run: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Films removed or changed since, or a copy that records its films' folder only as typed, relative to where it
    was made (as before it recorded it whole): not a report silently on other films, but one line saying what to
    pass; the relative --data is not offered as if it named a folder from here."""
    from dataclasses import replace

    from pneumoscan.artifact import load_artifact, save_artifact

    copy, site = _site_copy(tiny_run, tiny_data, tmp_path, monkeypatch)
    said = f"{copy}: a model written by set-threshold, which keeps the scores of the 16 films its threshold was chosen on"
    capsys.readouterr()
    assert main(["evaluate", "--model", str(copy), "--data", str(site), "--n-boot", "5"]) == 0
    assert IN_SAMPLE in capsys.readouterr().err  # judged by where they were, not by `site` from this folder
    removed = sorted((site / "NORMAL").iterdir())[0]
    removed.rename(tmp_path / removed.name)
    assert main(["report", str(copy), "--out", "r.html", "--n-boot", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pneumoscan: error: {said}") and len(err.splitlines()) == 1
    assert err.endswith(f"; {site}, where they were, holds other films now (15 now, 16 then); pass --data DIR with "
                        f"labelled films it has not seen")
    (tmp_path / removed.name).rename(removed)
    site.rename(tmp_path / "moved")
    assert main(["report", str(copy), "--out", "r.html", "--n-boot", "5"]) == 2
    assert f"; {site}, where they were, is not found; pass --data DIR" in capsys.readouterr().err
    (tmp_path / "moved").rename(site)
    model, meta = load_artifact(copy / "model.safetensors")
    older = {k: v for k, v in meta.threshold_source.items() if k != "data_resolved"}
    save_artifact(copy / "model.safetensors", model, replace(meta, threshold_source=older))
    assert main(["report", str(copy), "--out", "r.html", "--n-boot", "5"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "; pass --data DIR with labelled films it has not seen, or --data site (as given to set-threshold, relative "
        "to the folder it ran in) for the films its threshold was chosen on (in-sample)")
    assert not (tmp_path / "elsewhere" / "r.html").exists()


def test_the_borderline_note_says_its_interval_ignores_n_boot_and_seed() -> None:
    """The page said every interval came from --n-boot resamples drawn with --seed; the threshold's, which marks the
    borderline films, is always predict's (1000 resamples, seed 0)."""
    from pneumoscan.report.build import borderline_html

    summary = {"n": 10, "borderline": {"interval": [0.4, 0.6], "n": 1, "share": 0.1,
                                       "by_class": {"NORMAL": {"n": 1, "share": 0.2}, "PNEUMONIA": {"n": 0, "share": 0.0}},
                                       "outside": {"n": 9, "accuracy": 1.0, "recall": 1.0, "specificity": 1.0}}}
    assert ("The threshold&#x27;s interval is the one predict marks films by: 1000 resamples of those films drawn "
            "with seed 0, whatever --n-boot and --seed say.") in borderline_html(summary)



def test_compare_caption_says_what_each_runs_auc_interval_resampled(tiny_site: Path, tiny_run: Path, tiny_data: Path,
                                                                   tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Each run is scored through `evaluate`, which resamples the patients of --data as that run's training keyed
    them, or its films when no patient has several (here: 8 films a class, of 8 patients): the caption said only
    'the 95% bootstrap interval of each AUC' (reviewD). Runs keyed differently resample differently, so the caption
    says it per run."""
    from pneumoscan.report.compare import resampled_caption

    out = tmp_path / "c.html"
    assert main(["compare", str(tiny_site), str(tiny_run), "--data", str(tiny_data), "--split", "test", "--out",
                 str(out), "--n-boot", "20"]) == 0
    capsys.readouterr()
    assert ("(20 resamples within each class, seed 0) of films, unreliable (fewer than 10 in a class) for every "
            "run.") in out.read_text(encoding="utf-8")
    assert resampled_caption([("a", "patients"), ("b", "films"), ("c", "patients")]) == (
        "of patients (each with all of their films of a class) for a, c; of films for b")


def test_the_borderline_note_says_whether_the_interval_drew_patients_or_films() -> None:
    """The note said 'resamples of those films' whatever was drawn; a model storing its films' patients draws them
    together, one storing none draws films, and the page says which."""
    from pneumoscan.report.build import borderline_html

    entry = {"interval": [0.4, 0.6], "n": 1, "share": 0.1,
             "by_class": {"NORMAL": {"n": 1, "share": 0.2}, "PNEUMONIA": {"n": 0, "share": 0.0}},
             "outside": {"n": 9, "accuracy": 1.0, "recall": 1.0, "specificity": 1.0}}
    patients = {"resampled": "patients", "n_resampled": 12, "per_class": {"NORMAL": 6, "PNEUMONIA": 6}, "known": True}
    films = {"resampled": "films", "n_resampled": 10, "per_class": {"NORMAL": 5, "PNEUMONIA": 5}, "known": False}
    page = borderline_html({"n": 10, "borderline": {**entry, "resampled": patients}})
    assert ("1000 resamples of those films drawn with seed 0 (resampled by patient: the 12 patients each drawn with "
            "all of their films), whatever") in page
    assert ("drawn with seed 0 (resampled film by film, the model storing no patients of them), whatever"
            in borderline_html({"n": 10, "borderline": {**entry, "resampled": films}}))


def test_the_data_a_set_threshold_copy_offers_can_be_pasted_for_a_path_with_a_space(
        tiny_run: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`or --data /x/my lab/site films for the films its threshold was chosen on` split the folder in a shell."""
    import shlex

    site = tmp_path / "my lab" / "site films"
    shutil.copytree(tiny_data / "test", site)
    monkeypatch.chdir(site.parent)
    assert main(["set-threshold", "--model", str(tiny_run), "--data", site.name, "--out", "copy", "--n-boot", "5"]) == 0
    capsys.readouterr()
    assert main(["compare", "copy", str(tiny_run), "--out", str(tmp_path / "cmp.html"), "--n-boot", "5"]) == 2
    err = capsys.readouterr().err
    offered = err.split("or --data ")[1].split(" for the films")[0]
    assert shlex.split(offered) == [str(site)]
