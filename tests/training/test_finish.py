from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pneumoscan.artifact import read_meta
from pneumoscan.cli import main


@pytest.mark.parametrize("lr", ["0.5", "2"])
def test_a_run_that_collapsed_to_one_output_warns_that_its_auc_and_threshold_mean_nothing(
        lr: str, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a learning rate far too high left a cnn giving every film P = 1.0 (or 8.8e-27): train ended with exit 0 and
    # 'validation: AUC 0.5000 ... at threshold 0.0000' (or 1.0000), its model saved as any other, without a word
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), "--model", "cnn", "--image-size", "32",
                 "--epochs", "2", "--batch-size", "16", "--val-fraction", "0.25", "--lr", lr, "--quiet",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    probs = read_meta(run / "model.safetensors").val_scores["probs"]
    assert len(probs) > 1 and probs == [probs[0]] * len(probs)  # the value itself depends on torch and BLAS
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"pneumoscan: warning: {run}: the kept model gives every validation film the same P(pneumonia), "
        f"{probs[0]:.4g}, so it tells no film from another and its AUC and threshold mean nothing (the run "
        f"collapsed, most often from a learning rate too high for it); start a new run (another --out) with a lower "
        f"--lr (this one: {lr})")


@pytest.mark.parametrize("lr, weight_decay, cause", [
    (0.002, 300.0, "most likely from its weight decay, weight_decay=300.0 (default 0.05), which pulls every weight "
                   "toward 0 each step); start a new run (another `out`) with a lower weight_decay, or a lower `lr` "
                   "(this one: 0.002)"),
    (2.0, 0.06, "most often from a learning rate too high for it); start a new run (another `out`) with a lower `lr` "
                "(this one: 2)"),
], ids=["weight-decay", "lr"])
def test_a_collapsed_run_is_told_to_lower_the_setting_furthest_above_its_default(
        lr: float, weight_decay: float, cause: str, tiny_dataset: Path, tmp_path: Path) -> None:
    # weight_decay=300 at lr=0.002 (below decay_warning's weight_decay x lr >= 1) collapsed the model, and the
    # warning blamed a learning rate too high, naming only lr; then lr=2 (1,000 times its default 0.002) with
    # weight_decay=0.06 (1.2 times its 0.05) was told its weight decay was the likely cause
    from pneumoscan import api

    with pytest.warns(UserWarning) as caught:
        api.train(tiny_dataset, tmp_path / "run", progress=False, verbose=False, model="cnn", image_size=32, epochs=3,
                  batch_size=16, val_fraction=0.25, lr=lr, weight_decay=weight_decay, cache_dir=tmp_path / "cache")
    probs = read_meta(tmp_path / "run" / "model.safetensors").val_scores["probs"]
    assert len(probs) > 1 and max(probs) - min(probs) < 1e-6
    said = [str(w.message) for w in caught if "the same P(pneumonia)" in str(w.message)]
    assert len(said) == 1 and said[0].endswith(f"(the run collapsed, {cause}")


def test_one_output_is_told_apart_from_a_model_that_ranks_films_however_little() -> None:
    from pneumoscan.training.finish import one_output

    assert one_output([0.505011157, 0.505011197, 0.505011170]) == pytest.approx(0.50501117)  # batch-norm noise
    assert one_output([1e-30, 1e-30]) == 1e-30 and one_output([1.0, 1.0, 1.0]) == 1.0
    assert one_output([0.49, 0.51]) is None and one_output([0.5, 0.5001]) is None  # an untrained model still ranks
    assert one_output(1 / (1 + np.exp(-np.array([-60.0, -59.0])))) is None  # saturated, but ranked by log-odds
    assert one_output([0.7]) is None  # one film: nothing to tell apart
