"""What the report and the comparison say about the films they score: in-sample, seen by a guard, or the validation films training chose on."""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pytest

from pneumoscan.cli import main


def test_compare_page_says_when_runs_are_scored_on_films_they_trained_on(tiny_run: Path, tiny_data: Path,
                                                                          tmp_path: Path) -> None:
    """compare warned on stderr only: the page (what gets shared) showed in-sample figures as if they were a test."""
    out = tmp_path / "train.html"
    assert main(["compare", str(tiny_run), "--data", str(tiny_data), "--split", "train", "--out", str(out),
                 "--n-boot", "10"]) == 0
    text = out.read_text(encoding="utf-8")
    n = json.loads(out.with_suffix(".json").read_text())[0]["n"]
    assert f"Warning: runs scored on films they trained or validated on: run ({n} of {n})" in text
    assert f"<td>run</td><td>{n} of {n}</td>" in text
    listed = text.split("<h3>Films run trained or validated on (in-sample)</h3>")[1].split("</table>")[0]
    first = sorted(tiny_data.joinpath("train").rglob("*.jpeg"))
    assert listed.count("<tr>") == 21 and any(f"<td>{p}</td>" in listed for p in first)  # the page names them
    assert f"... and {n - 20} more; `evaluate --json` lists them all under seen_in_training." in text
    out = tmp_path / "test.html"
    assert main(["compare", str(tiny_run), "--data", str(tiny_data), "--out", str(out), "--n-boot", "10"]) == 0
    text = out.read_text(encoding="utf-8")
    n = json.loads(out.with_suffix(".json").read_text())[0]["n"]
    assert "Warning:" not in text and f"<td>run</td><td>0 of {n}</td>" in text and "<h3>Films run" not in text
    out = tmp_path / "val.html"  # the runs' own validation predictions: nothing screened, no table
    assert main(["compare", str(tiny_run), "--out", str(out), "--n-boot", "10"]) == 0
    assert "in-sample" not in out.read_text(encoding="utf-8")


def test_a_model_without_a_guard_is_not_said_to_refuse_none(tiny_run: Path, fitted: Path, tiny_data: Path,
                                                            tmp_path: Path) -> None:
    """'0 of n' images refused read as every image passing a guard the model does not have."""
    refused = "guard would refuse (scored anyway)</td><td>"
    out = tmp_path / "plain.html"
    assert main(["report", str(tiny_run), "--data", str(tiny_data), "--out", str(out), "--n-boot", "10",
                 "--cases", "1"]) == 0
    assert f"{refused}none: this model has no guard (pneumoscan fit-guard fits one)</td>" in out.read_text("utf-8")
    out = tmp_path / "guarded.html"
    assert main(["report", str(fitted), "--data", str(tiny_data), "--out", str(out), "--n-boot", "10",
                 "--cases", "1"]) == 0
    n = sum(1 for _ in (tiny_data / "test").rglob("*.jpeg"))
    text = out.read_text(encoding="utf-8")
    assert refused in text and f" of {n}</td>" in text.split(refused)[1][:20]
    count = int(text.split(refused)[1].split(" of ")[0])
    listed = text.split("<th>image: why the guard would refuse it</th>")[1].split("</table>")[0] if count else ""
    assert listed.count("<tr>") == min(count, 20)  # the page names the films it counts
    out = tmp_path / "compare.html"
    assert main(["compare", str(tiny_run), str(fitted), "--data", str(tiny_data), "--out", str(out),
                 "--n-boot", "10"]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.count("none: this model has no guard") == 1


def test_figures_on_the_runs_own_validation_films_are_said_to_be_optimistic(val_report: Path, tiny_run: Path,
                                                                              tiny_data: Path,
                                                                              tmp_path: Path) -> None:
    """Training kept the epoch of best validation AUC and chose the threshold on those films; the page showed their
    metrics with no word that they flatter the model."""
    text = val_report.read_text(encoding="utf-8")
    assert ("Optimistic: the kept epoch (best validation ROC AUC) and the operating threshold (for recall 0.95) were "
            "chosen on these validation films") in text
    out = tmp_path / "test.html"
    assert main(["report", str(tiny_run), "--data", str(tiny_data), "--out", str(out), "--n-boot", "10",
                 "--cases", "1"]) == 0
    assert "Optimistic" not in out.read_text(encoding="utf-8")
    out = tmp_path / "compare.html"
    assert main(["compare", str(tiny_run), "--out", str(out), "--n-boot", "10"]) == 0
    assert "so these figures are optimistic" in out.read_text(encoding="utf-8")


def test_selection_note_leaves_out_a_threshold_set_elsewhere(tiny_run: Path, tiny_site: Path) -> None:
    from pneumoscan.report.build import selection_note
    from pneumoscan.report.run import load_run
    from pneumoscan.report.scores import Scores

    def note(run_dir: Path) -> str:
        scores = Scores("", "val", [], np.zeros(0), np.zeros(0), 0.5, {}, [], own_validation=True)
        return selection_note(load_run(run_dir), scores)

    assert "the operating threshold" in note(tiny_run)
    assert "threshold" not in note(tiny_site)


def test_an_ensembles_note_says_its_members_kept_epochs_were_chosen_on_its_validation_films(
        tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    """An ensemble keeps no epoch itself, so the note said only that its threshold was chosen on these films; but each
    member kept its epoch of best AUC on the same films (ensemble requires one validation split)."""
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.ensemble import build_ensemble
    from pneumoscan.training.trainer import train

    member = tmp_path / "member"
    train(TrainConfig(data=str(tiny_data), out=str(member), model="cnn", image_size=24, epochs=1, batch_size=16,
                      val_fraction=0.2, seed=5, cache_dir=str(tmp_path / "cache")), progress=False)
    build_ensemble([tiny_run, member], tmp_path / "ens", progress=False)
    out = tmp_path / "ens.html"
    assert main(["report", str(tmp_path / "ens"), "--out", str(out), "--n-boot", "10", "--cases", "1"]) == 0
    assert ("Optimistic: each member's kept epoch (best validation ROC AUC) and the operating threshold (for recall "
            "0.95) were chosen on these validation films") in html.unescape(out.read_text(encoding="utf-8"))


def test_the_guards_refusals_are_listed_with_why_the_first_twenty() -> None:
    from pneumoscan.report.build import refusals_html

    assert refusals_html({"refused_by_guard": []}) == ""
    text = refusals_html({"refused_by_guard": ["a/photo.jpeg: not a chest X-ray: colour image"]})
    assert "<td>a/photo.jpeg: not a chest X-ray: colour image</td>" in text and "more" not in text
    text = refusals_html({"refused_by_guard": [f"f{i}.png: blank" for i in range(23)]})
    assert text.count("<td>f") == 20 and "... and 3 more; `evaluate --json` lists them all under refused_by_guard" in text


def test_report_names_the_films_the_model_trained_on(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    """The page counted them ('60 of 60'), but which films they were was on stderr and in evaluate --json only."""
    out = tmp_path / "train.html"
    assert main(["report", str(tiny_run), "--data", str(tiny_data), "--split", "train", "--out", str(out),
                 "--n-boot", "10", "--cases", "1"]) == 0
    text = out.read_text(encoding="utf-8")
    n = sum(1 for _ in (tiny_data / "train").rglob("*.jpeg"))
    listed = text.split("<h3>Films the model trained or validated on (in-sample)</h3>")[1].split("</table>")[0]
    names = [p for p in (tiny_data / "train").rglob("*.jpeg") if f"<td>{p}</td>" in listed]
    assert len(names) == listed.count("<td>") == 20
    assert f"... and {n - 20} more; `evaluate --json` lists them all under seen_in_training." in text


def test_the_films_seen_in_training_are_listed_as_the_refusals_are() -> None:
    from pneumoscan.report.build import seen_html

    assert seen_html({"seen_in_training": []}) == "" and seen_html({}) == ""
    text = seen_html({"seen_in_training": ["a/<b>.jpeg"]}, "run <2>")
    assert "<h3>Films run &lt;2&gt; trained or validated on (in-sample)</h3>" in text
    assert "<td>a/&lt;b&gt;.jpeg</td>" in text and "more" not in text


def test_a_folder_of_class_folders_is_not_called_a_split(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    """evaluate names a folder used whole 'all': the page said 'evaluated on all split of DATA'."""
    out = tmp_path / "r.html"
    assert main(["report", str(tiny_run), "--data", str(tiny_data / "test"), "--out", str(out), "--n-boot", "10",
                 "--cases", "1"]) == 0
    text = out.read_text(encoding="utf-8")
    assert f"evaluated on all images of {tiny_data / 'test'} (no split folders)" in text and "all split" not in text
    assert "all films (n=" in text  # the figures' titles


def test_report_and_compare_name_a_lateral_dicom_and_the_guards_refusals(tiny_run: Path, fitted: Path,
                                                                        tmp_path: Path) -> None:
    """A lateral DICOM was scored as a frontal film with no word of it (the image cache kept no View Position); and
    compare counted a run's refusals ('1 of 6') without naming them, as the report does."""
    from tests.conftest import LATERAL, site_with_dicoms

    data = site_with_dicoms(tmp_path / "site")
    lateral = f"<td>{data / 'NORMAL' / 'lateral.dcm'}: {LATERAL}</td>"
    out = tmp_path / "report.html"
    assert main(["report", str(fitted), "--data", str(data), "--out", str(out), "--n-boot", "10", "--cases", "1"]) == 0
    assert lateral in out.read_text(encoding="utf-8").split("<h3>Images its guard would refuse (scored anyway)</h3>")[1]
    out = tmp_path / "compare.html"
    assert main(["compare", str(tiny_run), str(fitted), "--data", str(data), "--out", str(out), "--n-boot", "10"]) == 0
    text = out.read_text(encoding="utf-8")
    guarded = fitted.parent.name
    listed = text.split(f"<h3>Images {guarded}&#x27;s guard would refuse (scored anyway)</h3>")[1].split("</table>")[0]
    count = int(text.split(f"<td>{guarded}</td><td>0 of 6</td><td>")[1].split(" of 6</td>")[0])
    assert lateral in listed and listed.count("<tr>") == count + 1  # the header row, then each film it counts
    assert "Images run&#x27;s guard" not in text  # the run without a guard refuses nothing


def test_a_run_trained_with_an_auc_tie_is_said_to_keep_its_epoch_so(tiny_run: Path, tiny_data: Path,
                                                                     tmp_path: Path) -> None:
    """The recipe left --auc-tie out, and the page said the kept epoch was the one of best validation AUC, which a
    near-tie of lower validation loss replaces under it; then it stated the rule as the lowest loss among near-ties,
    which training does not run (it decides as each epoch ends)."""
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.ensemble import build_ensemble
    from pneumoscan.training.trainer import train

    run = tmp_path / "tie"
    train(TrainConfig(data=str(tiny_data), out=str(run), model="cnn", image_size=24, epochs=1, batch_size=16,
                      val_fraction=0.2, seed=5, auc_tie=0.002, cache_dir=str(tmp_path / "cache")), progress=False)
    out = tmp_path / "tie.html"
    assert main(["report", str(run), "--out", str(out), "--n-boot", "10", "--cases", "1"]) == 0
    text = html.unescape(out.read_text(encoding="utf-8"))
    rule = ("validation ROC AUC: an epoch within 0.002 of the highest AUC so far replaced the kept one when its "
            "validation loss was lower or the kept one's AUC had fallen more than 0.002 below the highest")
    assert "patience 8, auc_tie 0.002, seed 5" in text
    assert f"Optimistic: the kept epoch ({rule}) and the operating threshold" in text
    assert f"the epoch whose weights were kept ({rule})" in text and "best validation ROC AUC" not in text
    out = tmp_path / "compare.html"
    assert main(["compare", str(tiny_run), str(run), "--out", str(out), "--n-boot", "10"]) == 0
    text = html.unescape(out.read_text(encoding="utf-8"))
    assert "patience 8, auc_tie 0.002, seed 5" in text and "patience 8, auc_tie 0.0, seed 0" in text
    build_ensemble([tiny_run, run], tmp_path / "ens", progress=False)
    out = tmp_path / "ens.html"
    assert main(["report", str(tmp_path / "ens"), "--out", str(out), "--n-boot", "10", "--cases", "1"]) == 0
    # one member without --auc-tie: the tie rule was stated for every member
    assert ("each member's kept epoch (best validation ROC AUC, or for the members trained with --auc-tie, validation "
            "ROC AUC: an epoch within 0.002 of the highest AUC so far replaced the kept one when its validation loss "
            "was lower or the kept one's AUC had fallen more than 0.002 below the highest)") in html.unescape(
        out.read_text(encoding="utf-8"))


@pytest.mark.parametrize(("ties", "start"), [
    ((0, None), "best validation ROC AUC ("),
    ((0.002, 0.002), "validation ROC AUC: an epoch within 0.002 of"),
    ((0.002, 0.01), "validation ROC AUC: an epoch within the member's --auc-tie of"),
    ((0, 0.002), "best validation ROC AUC, or for the members trained with --auc-tie, validation ROC AUC: an epoch "
                 "within 0.002 of"),
    ((0, 0.002, 0.01), "best validation ROC AUC, or for the members trained with --auc-tie, validation ROC AUC: an "
                       "epoch within the member's --auc-tie of"),
])
def test_the_kept_epoch_rule_of_members_is_each_ones(ties: tuple, start: str) -> None:
    from pneumoscan.report.build import kept_epoch_rule

    assert (kept_epoch_rule([{"auc_tie": tie} for tie in ties]) + " (").startswith(start)
