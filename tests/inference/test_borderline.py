"""Borderline films: P within the 95 % bootstrap interval of the threshold, on the scores it was chosen on."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pneumoscan.artifact import load_artifact, read_meta, save_artifact
from pneumoscan.evaluation.thresholds import adjust_for_prevalence, threshold_ci95
from pneumoscan.inference.predictor import Predictor
from tests.conftest import interval_scores, per_film_lines, with_scores


@pytest.fixture(scope="module")
def films(sample_films: Path) -> list[Path]:
    return sorted((sample_films / "PNEUMONIA").iterdir())[:3] + sorted((sample_films / "NORMAL").iterdir())[:3]


@pytest.fixture(scope="module")
def placed(tiny_run: Path, films: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    """A copy of the tiny model whose stored scores put its threshold between the films' 2nd and 3rd probabilities
    (ascending) and the interval's top between their 4th and 5th: the 3rd and 4th are borderline, no other. Returns
    it and the films' probabilities in that order."""
    probs = sorted(p.probability for p in Predictor(tiny_run, backend="torch").predict_files(films))
    gap = min(b - a for a, b in zip(probs, probs[1:]))
    assert gap > 1e-5, probs  # room for the interval's ends between them
    low, high = (probs[1] + probs[2]) / 2, (probs[3] + probs[4]) / 2
    out = tmp_path_factory.mktemp("placed") / "model.safetensors"
    return with_scores(tiny_run, out, *interval_scores(low, high, step=gap / 10)), probs


def test_the_interval_is_that_of_the_scores_the_threshold_was_chosen_on(placed: tuple[Path, list[float]]) -> None:
    model, probs = placed
    predictor = Predictor(model, backend="torch")
    assert predictor.threshold == pytest.approx((probs[1] + probs[2]) / 2)
    assert predictor.threshold_ci95 == pytest.approx(((probs[1] + probs[2]) / 2, (probs[3] + probs[4]) / 2))


def test_films_inside_the_interval_are_borderline_and_keep_their_label(placed: tuple[Path, list[float]],
                                                                        films: list[Path]) -> None:
    model, probs = placed
    results = sorted(Predictor(model, backend="torch").predict_files(films), key=lambda r: r.probability)
    assert [r.borderline for r in results] == [False, False, True, True, False, False]
    assert [r.label for r in results] == ["NORMAL"] * 2 + ["PNEUMONIA"] * 4


def test_prevalence_moves_the_interval_with_the_probabilities(placed: tuple[Path, list[float]],
                                                              films: list[Path]) -> None:
    """Re-weighted for a prevalence, P and the interval move by the same increasing map: the same films are
    borderline."""
    model, _ = placed
    plain, shifted = Predictor(model, backend="torch"), Predictor(model, backend="torch", prevalence=0.2)
    assert shifted.threshold_ci95 == pytest.approx(tuple(adjust_for_prevalence(plain.threshold_ci95, 0.5, 0.2)))
    assert shifted.threshold_ci95[1] < plain.threshold_ci95[0]  # it did move: odds / 4
    assert [r.borderline for r in shifted.predict_files(films)] == [r.borderline for r in plain.predict_files(films)]


def test_a_threshold_given_by_hand_has_no_interval(placed: tuple[Path, list[float]], films: list[Path]) -> None:
    predictor = Predictor(placed[0], backend="torch", threshold=0.5)
    assert predictor.threshold_ci95 is None
    assert {r.borderline for r in predictor.predict_files(films)} == {None}


def test_a_target_recall_gets_the_interval_of_the_threshold_for_it(tiny_run: Path) -> None:
    scores = read_meta(tiny_run / "model.safetensors").val_scores
    predictor = Predictor(tiny_run, backend="torch", target_recall=0.8)
    assert predictor.threshold_ci95 == pytest.approx(threshold_ci95(scores["labels"], scores["probs"], 0.8))
    assert predictor.threshold_ci95 != pytest.approx(Predictor(tiny_run, backend="torch").threshold_ci95)


def test_no_interval_when_the_stored_scores_do_not_give_the_stored_threshold(tiny_run: Path, tmp_path: Path) -> None:
    """Without stored scores, or with a threshold the scores do not give (set by editing the file), an interval
    of those scores would not be the threshold's: there is none."""
    net, meta = load_artifact(tiny_run, device="cpu")
    for name, changed in (("edited", replace(meta, threshold=meta.threshold + 0.01)),
                          ("unscored", replace(meta, val_scores={}))):
        model = save_artifact(tmp_path / f"{name}.safetensors", net, changed)
        assert Predictor(model, backend="torch").threshold_ci95 is None, name
    assert Predictor(tiny_run, backend="torch").threshold_ci95 is not None


def test_the_interval_is_computed_once_per_loaded_model(placed: tuple[Path, list[float]], films: list[Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import pneumoscan.inference.threshold as threshold_module

    calls = []
    real = threshold_module.threshold_ci95
    monkeypatch.setattr(threshold_module, "threshold_ci95", lambda *a, **k: calls.append(1) or real(*a, **k))
    predictor = Predictor(placed[0], backend="torch")
    predictor.predict_files(films)
    predictor.predict_files(films)
    assert len(calls) == 1


# ----------------------------------------------------------------- pneumoscan predict


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, str]:
    from pneumoscan.cli import main

    assert main(["predict", "--backend", "torch", *args]) == 0
    return capsys.readouterr()


def test_predict_marks_borderline_films_in_text_csv_and_json(placed: tuple[Path, list[float]], films: list[Path],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import csv
    import io
    import json

    model, probs = placed
    paths = [str(f) for f in films]
    expected = {str(r.path): r.borderline for r in Predictor(model, backend="torch").predict_files(films)}
    assert sorted(expected.values()) == [False] * 4 + [True] * 2
    out, err = _run(capsys, "--model", str(model), "--csv", *paths)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {row["path"]: row["borderline"] for row in rows} == {p: str(b) for p, b in expected.items()}
    assert per_film_lines(err) == []
    out, err = _run(capsys, "--model", str(model), "--json", *paths)
    assert {row["path"]: row["borderline"] for row in json.loads(out)} == expected and per_film_lines(err) == []
    out, err = _run(capsys, "--model", str(model), *paths)
    marked = {line.split()[-1] for line in out.splitlines() if "  borderline  " in line}
    assert marked == {p for p, b in expected.items() if b}
    interval = Predictor(model, backend="torch").threshold_ci95
    assert per_film_lines(err) == [
        f"pneumoscan: note: borderline films: 2 of 6, P within {interval[0]:.4f} to {interval[1]:.4f} (the 95 % "
        f"bootstrap interval of the threshold {probs[1] / 2 + probs[2] / 2:.4f} on the validation films it was chosen "
        f"on); their label stands, but a threshold re-chosen on a plausible resample of those films would give the "
        f"other one"]


def test_predict_with_a_threshold_by_hand_leaves_borderline_empty(placed: tuple[Path, list[float]], films: list[Path],
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import csv
    import io

    out, err = _run(capsys, "--model", str(placed[0]), "--csv", "--threshold", "0.5", *map(str, films))
    assert {row["borderline"] for row in csv.DictReader(io.StringIO(out))} == {""} and per_film_lines(err) == []


# Stored scores no threshold can be chosen on, as in an edited file
MALFORMED = {"unequal lengths": ({"labels": [0, 1, 1], "probs": [0.1, 0.9]}, "3 labels but 2 probabilities"),
             "no PNEUMONIA": ({"labels": [0, 0], "probs": [0.1, 0.9]}, "no PNEUMONIA (1) label"),
             "no NORMAL": ({"labels": [1, 1], "probs": [0.1, 0.9]}, "no NORMAL (0) label"),
             "not a label": ({"labels": [0, 2], "probs": [0.1, 0.9]}, "labels other than 0 (NORMAL) and 1"),
             "not a probability": ({"labels": [0, 1], "probs": [0.1, 1.5]}, "not numbers from 0 to 1")}


@pytest.fixture(params=list(MALFORMED))
def malformed(request: pytest.FixtureRequest, tiny_run: Path, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the tiny model with malformed stored scores, and the problem its error names."""
    scores, problem = MALFORMED[request.param]
    net, meta = load_artifact(tiny_run, device="cpu")
    return save_artifact(tmp_path / "edited.safetensors", net, replace(meta, val_scores=scores)), problem


def test_malformed_stored_scores_give_no_interval_and_predictions_are_made(malformed: tuple[Path, str],
                                                                            films: list[Path],
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    model, _ = malformed
    predictor = Predictor(model, backend="torch")
    assert predictor.threshold_ci95 is None
    results = predictor.predict_files(films)
    assert {r.borderline for r in results} == {None} and None not in {r.label for r in results}
    _run(capsys, "--model", str(model), *map(str, films))


def test_a_target_recall_on_malformed_stored_scores_is_one_line(malformed: tuple[Path, str], films: list[Path],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from pneumoscan.cli import main

    model, problem = malformed
    assert main(["predict", "--quiet", "--backend", "torch", "--model", str(model), "--target-recall", "0.9",
                 str(films[0])]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(f"pneumoscan: error: {model}: its stored validation scores are unusable (") and problem in err
    assert "pass --threshold instead of --target-recall, or re-run set-threshold or retrain" in err


def test_the_interval_draws_the_stored_patients_and_without_them_films(tiny_run: Path, tmp_path: Path) -> None:
    """Three films a patient: the interval resampled them one by one as independent films, too narrow. A model
    storing its films' patients (`stored_scores`) draws them together; one from before, storing none, or with
    groups edited out of shape, still draws films, and says so."""
    import numpy as np

    from pneumoscan.artifact import stored_scores

    rng = np.random.default_rng(0)
    labels = np.repeat([0] * 15 + [1] * 15, 3)
    probs = np.clip(np.repeat(rng.normal(0.35 + 0.3 * (np.arange(30) >= 15), 0.15), 3) + rng.normal(0, 0.02, 90),
                    0, 1).tolist()
    patients = [f"pt{i // 3}" for i in range(90)]
    old = with_scores(tiny_run, tmp_path / "old.safetensors", labels.tolist(), probs, target_recall=0.9)
    net, meta = load_artifact(old, device="cpu")
    grouped = save_artifact(tmp_path / "grouped.safetensors", net,
                            replace(meta, val_scores=stored_scores(labels, probs, patients)))
    edited = save_artifact(tmp_path / "edited.safetensors", net,
                           replace(meta, val_scores={**stored_scores(labels, probs, patients), "groups": [0, 1]}))
    films = threshold_ci95(labels, probs, 0.9, n_boot=1000, seed=0)
    by_patient = threshold_ci95(labels, probs, 0.9, n_boot=1000, seed=0, groups=patients)
    assert by_patient[1] - by_patient[0] > 1.2 * (films[1] - films[0])
    assert Predictor(grouped, backend="torch").threshold_ci95 == pytest.approx(by_patient)
    assert Predictor(grouped, backend="torch").threshold_resampled == {
        "resampled": "patients", "n_resampled": 30, "per_class": {"NORMAL": 15, "PNEUMONIA": 15}, "known": True}
    for model in (old, edited):
        predictor = Predictor(model, backend="torch")
        assert predictor.threshold_ci95 == pytest.approx(films)
        assert predictor.threshold_resampled["resampled"] == "films" and not predictor.threshold_resampled["known"]
