"""Per-image prediction CSVs: probabilities survive the round trip exactly."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pneumoscan.artifact import read_meta
from pneumoscan.data.layout import Sample
from pneumoscan.evaluation.evaluate import read_predictions, write_predictions
from pneumoscan.evaluation.metrics import recall


def test_predictions_round_trip_exactly(tmp_path: Path) -> None:
    # float32 sigmoid outputs; a stored threshold is one of them, so rounding could move a case below it
    probs = np.array([0.44827404618263245, 0.4496161937713623, 1e-9, 0.9999999], dtype=np.float32)
    samples = [Sample(Path(f"x{i}.png"), i % 2) for i in range(len(probs))]
    write_predictions(tmp_path / "p.csv", samples, probs)
    _, _, back = read_predictions(tmp_path / "p.csv")
    assert back.tolist() == [float(p) for p in probs]


def test_val_predictions_reach_the_target_recall_at_the_stored_threshold(tiny_run: Path) -> None:
    meta = read_meta(tiny_run / "model.safetensors")
    _, labels, probs = read_predictions(tiny_run / "val_predictions.csv", bases=[tiny_run])
    assert probs.tolist() == meta.val_scores["probs"]
    assert recall(labels, (probs >= meta.threshold).astype(int)) >= meta.target_recall


def test_images_the_guard_refuses_are_scored_but_named(fitted: Path, sample_dir: Path, tmp_path: Path) -> None:
    import shutil
    import warnings

    import pytest

    from pneumoscan.evaluation.evaluate import GuardWarning, evaluate
    from pneumoscan.inference.predictor import Predictor
    from tests.conftest import colour_photo

    data = tmp_path / "site"
    shutil.copytree(sample_dir / "test", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = evaluate(Predictor(fitted, backend="torch"), data, n_boot=10).summary["refused_by_guard"]
    (data / "NORMAL" / "holiday.jpg").write_bytes(colour_photo())
    with pytest.warns(GuardWarning, match=rf"{len(before) + 1} of \d+ images look unlike chest X-rays"):
        result = evaluate(Predictor(fitted, backend="torch"), data, n_boot=10)
    new = sorted(set(result.summary["refused_by_guard"]) - set(before))
    assert len(new) == 1 and "holiday.jpg: not a chest X-ray: colour image" in new[0]
    assert result.summary["n"] == len(list(data.glob("*/*")))  # still scored: the figures are not flattered


def test_a_negative_bootstrap_seed_is_refused_up_front(tmp_path: Path, capsys) -> None:
    from pneumoscan.cli import main

    assert main(["evaluate", "--data", str(tmp_path / "none"), "--seed", "-1"]) == 2
    assert "--seed -1: must be 0 or more" in capsys.readouterr().err
