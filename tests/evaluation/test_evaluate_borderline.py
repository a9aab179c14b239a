"""The evaluation's `borderline` entry: films with P within the threshold's interval, and the decisions on the rest."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import pneumoscan
from pneumoscan.cli import main
from pneumoscan.evaluation.metrics import UndefinedMetricWarning
from pneumoscan.inference.predictor import Predictor
from tests.conftest import interval_scores, with_scores


@pytest.fixture(scope="module")
def site(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of class folders: four NORMAL and four PNEUMONIA films of the sample's train split."""
    root = tmp_path_factory.mktemp("borderline_site") / "films"
    for name in ("NORMAL", "PNEUMONIA"):
        (root / name).mkdir(parents=True)
        for film in sorted((sample_dir / "train" / name).iterdir())[:4]:
            shutil.copy(film, root / name / film.name)
    return root


@pytest.fixture(scope="module")
def ranked(tiny_run: Path, site: Path) -> list[tuple[float, int]]:
    """The films' (P, label) by the tiny model, ascending P; far enough apart to place an interval between them."""
    films = sorted(site.glob("*/*.jpeg"))
    results = Predictor(tiny_run, backend="torch").predict_files(films)
    pairs = sorted((r.probability, int(f.parent.name == "PNEUMONIA")) for r, f in zip(results, films))
    assert min(b[0] - a[0] for a, b in zip(pairs, pairs[1:])) > 1e-5, pairs
    return pairs


def placed(tiny_run: Path, ranked: list[tuple[float, int]], first: int, last: int, out: Path) -> Path:
    """A copy of the tiny model whose threshold lies just below film `first` (0-based, ascending P) and whose
    interval's top lies just above film `last`: films first..last are borderline, no other."""
    probs = [p for p, _ in ranked]
    gap = min(b - a for a, b in zip(probs, probs[1:]))
    low = (probs[first - 1] + probs[first]) / 2 if first else probs[0] - gap / 2
    high = (probs[last] + probs[last + 1]) / 2 if last + 1 < len(probs) else probs[-1] + gap / 2
    return with_scores(tiny_run, out, *interval_scores(low, high, step=gap / 10))


def expected(ranked: list[tuple[float, int]], first: int, last: int) -> tuple[int, int, float, float | None, float | None]:
    """By hand: NORMAL and PNEUMONIA films inside, and accuracy, recall, specificity outside (films below `first`
    are called NORMAL, films above `last` PNEUMONIA)."""
    inside = [label for _, label in ranked[first:last + 1]]
    below = [label for _, label in ranked[:first]]
    above = [label for _, label in ranked[last + 1:]]
    tn, fn, tp, fp = below.count(0), below.count(1), above.count(1), above.count(0)
    recall = tp / (tp + fn) if tp + fn else None
    specificity = tn / (tn + fp) if tn + fp else None
    return inside.count(0), inside.count(1), (tp + tn) / (len(below) + len(above)), recall, specificity


def test_the_entry_counts_the_films_inside_the_interval_and_scores_the_rest(
        tiny_run: Path, site: Path, ranked: list[tuple[float, int]], tmp_path: Path) -> None:
    model = placed(tiny_run, ranked, 2, 4, tmp_path / "placed.safetensors")
    normal, pneumonia, accuracy, recall, specificity = expected(ranked, 2, 4)
    summary = pneumoscan.evaluate(model, site, backend="torch", n_boot=20)
    entry = summary["borderline"]
    assert entry["interval"] == pytest.approx(list(Predictor(model, backend="torch").threshold_ci95))
    assert entry["interval"][0] == pytest.approx(summary["threshold"])
    assert (entry["n"], entry["share"]) == (3, 3 / 8)
    assert entry["by_class"] == {"NORMAL": {"n": normal, "share": normal / 4},
                                 "PNEUMONIA": {"n": pneumonia, "share": pneumonia / 4}}
    assert entry["outside"]["n"] == 5
    assert entry["outside"]["accuracy"] == pytest.approx(accuracy)
    assert entry["outside"]["recall"] == pytest.approx(recall)
    assert entry["outside"]["specificity"] == pytest.approx(specificity)


def test_a_metric_undefined_outside_the_interval_is_none_with_the_metrics_warning(
        tiny_run: Path, site: Path, ranked: list[tuple[float, int]], tmp_path: Path) -> None:
    """Every film but the highest inside: the one left is PNEUMONIA or NORMAL, so specificity or recall has no film.
    The warning says it is so outside the interval: the metric's own, 'no negative cases in y_true', was printed
    under an evaluation of NORMAL films as if there were none."""
    model = placed(tiny_run, ranked, 0, 6, tmp_path / "wide.safetensors")
    undefined, lacking = ("specificity", "NORMAL") if ranked[-1][1] == 1 else ("recall", "PNEUMONIA")
    with pytest.warns(UndefinedMetricWarning) as caught:
        entry = pneumoscan.evaluate(model, site, backend="torch", n_boot=20)["borderline"]
    assert [str(w.message) for w in caught if "outside" in str(w.message) or "y_true" in str(w.message)] == [
        f"{undefined} of the films outside the borderline interval is undefined: no {lacking} film lies outside it; "
        "returning nan."]
    assert (entry["n"], entry["outside"]["n"]) == (7, 1)
    assert entry["outside"]["accuracy"] == pytest.approx(float(ranked[-1][1] == 1))
    assert entry["outside"][undefined] is None
    assert entry["outside"]["recall" if undefined == "specificity" else "specificity"] == entry["outside"]["accuracy"]


def test_every_film_inside_the_interval_gives_one_warning_for_the_three_metrics_outside(
        tiny_run: Path, site: Path, ranked: list[tuple[float, int]], tmp_path: Path) -> None:
    model = placed(tiny_run, ranked, 0, 7, tmp_path / "all.safetensors")
    with pytest.warns(UndefinedMetricWarning) as caught:
        entry = pneumoscan.evaluate(model, site, backend="torch", n_boot=20)["borderline"]
    assert [str(w.message) for w in caught if "outside" in str(w.message) or "y_true" in str(w.message)
            or "empty" in str(w.message)] == [
        "accuracy, recall and specificity of the films outside the borderline interval are undefined: no film lies "
        "outside it; returning nan."]
    assert entry["outside"] == {"n": 0, "accuracy": None, "recall": None, "specificity": None}


def test_the_report_prints_it_and_the_json_holds_it(tiny_run: Path, site: Path, ranked: list[tuple[float, int]],
                                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = placed(tiny_run, ranked, 2, 4, tmp_path / "placed.safetensors")
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(model), "--data", str(site), "--backend", "torch", "--n-boot", "20",
                 "--json", str(out)]) == 0
    entry = json.loads(out.read_text())["borderline"]
    lo, hi = entry["interval"]
    printed = capsys.readouterr().out
    assert (f"  borderline   P within the threshold's 95 % interval [{lo:.4f}, {hi:.4f}]: 3 of 8 films (37.5 %; "
            f"NORMAL {entry['by_class']['NORMAL']['n']}, PNEUMONIA {entry['by_class']['PNEUMONIA']['n']})" in printed)
    assert f"  outside it   accuracy {entry['outside']['accuracy']:.4f}  " in printed and "(n=5)" in printed


def test_a_threshold_given_by_hand_has_no_borderline_entry(tiny_run: Path, site: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert pneumoscan.evaluate(tiny_run, site, backend="torch", n_boot=20)["borderline"] is not None
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(site), "--backend", "torch", "--n-boot", "20",
                 "--threshold", "0.5", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["borderline"] is None
    assert "borderline   none marked: this threshold has no 95 % interval" in capsys.readouterr().out


def test_the_printout_says_how_the_interval_was_drawn_as_the_json_and_the_report_do(
        tiny_run: Path, site: Path, ranked: list[tuple[float, int]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The JSON's `borderline.resampled`, the report and set-threshold say whether the threshold's interval drew
    patients or films; the text printout gave the interval alone."""
    from pneumoscan.evaluation.commands import _borderline_lines
    from pneumoscan.evaluation.bootstrap import resampled_unit

    model = placed(tiny_run, ranked, 2, 4, tmp_path / "placed.safetensors")
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(model), "--data", str(site), "--backend", "torch", "--n-boot", "20",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["borderline"]["resampled"]["known"] is False  # scores stored without patients
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  borderline   P within"))
    assert lines[at + 1] == f"  {'':13}the interval resampled film by film, the model storing no patients of them"
    assert lines[at + 2].startswith("  outside it   accuracy")
    by_patient = {"interval": [0.5, 0.7], "n": 1, "share": 0.25, "by_class": {"NORMAL": {"n": 1}, "PNEUMONIA": {"n": 0}},
                  "outside": {"n": 3, "accuracy": 1.0, "recall": 1.0, "specificity": 1.0},
                  "resampled": {**resampled_unit([0, 0, 1, 1], ["a", "a", "b", "c"]), "known": True}}
    assert _borderline_lines(by_patient)[1].strip() == \
        "the interval resampled by patient: the 3 patients each drawn with all of their films"
