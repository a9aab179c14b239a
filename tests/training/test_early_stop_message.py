"""A run that stops before --epochs says so: why, and which epoch the model keeps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pneumoscan.cli import main


def test_early_stopping_is_announced_with_the_kept_epoch(tiny_dataset: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import pneumoscan.training.trainer as trainer

    monkeypatch.setattr(trainer, "roc_auc", lambda labels, probs: 0.5)  # never better after epoch 1
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "run"), "--model", "cnn",
                 "--image-size", "32", "--epochs", "5", "--patience", "2", "--consistency", "0", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "stopped early after epoch 3 of 5" in out
    assert "--patience" in out and "keeps epoch 1" in out
    assert len(np.loadtxt(tmp_path / "run" / "history.csv", delimiter=",", skiprows=1, ndmin=2)) == 3


def test_a_run_that_uses_all_its_epochs_does_not_claim_an_early_stop(tiny_dataset: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "run"), "--model", "cnn",
                 "--image-size", "32", "--epochs", "2", "--consistency", "0", "--quiet"]) == 0
    assert "stopped early" not in capsys.readouterr().out
