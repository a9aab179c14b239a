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


def _flat_validation(patch: pytest.MonkeyPatch) -> None:
    """Every epoch's validation AUC 0.5 and validation loss 0.5: none replaces epoch 1, whatever the --auc-tie."""
    import torch
    import torch.nn.functional as F

    import pneumoscan.training.trainer as trainer

    bce = F.binary_cross_entropy_with_logits

    def loss(logits: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return bce(logits, *args, **kwargs) if logits.requires_grad else torch.tensor(0.5, dtype=torch.float64)

    patch.setattr(trainer, "roc_auc", lambda *_: 0.5)
    patch.setattr(trainer.F, "binary_cross_entropy_with_logits", loss)


def _stopped_before_its_model(data: Path, run: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> None:
    """A run of at most 4 epochs whose validation never improves after epoch 1 (--patience 1: it stops after
    epoch 2), interrupted while it made its model."""
    import pneumoscan.training.trainer as trainer

    def ctrl_c(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        _flat_validation(patch)
        patch.setattr(trainer, "finish_artifact", ctrl_c)
        assert main(["train", "--data", str(data), "--out", str(run), "--model", "cnn", "--image-size", "32",
                     "--epochs", "4", "--patience", "1", "--batch-size", "16", "--consistency", "0", "--quiet",
                     *extra]) == 130


@pytest.mark.parametrize("epochs", [[], ["--epochs", "6"]])
def test_a_resume_that_trains_no_epoch_says_once_that_the_run_had_stopped_early(
        epochs: list[str], tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # the loop's own "stopped early after epoch 2 of 4" (of 6 with --epochs 6, after the warning said it) came as if
    # the resume had just stopped it
    run = tmp_path / "run"
    _stopped_before_its_model(tiny_dataset, run, monkeypatch)
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--quiet", *epochs]) == 0
    out = capsys.readouterr()
    said = out.out + out.err
    assert said.count("stopped early") == 1, said
    assert "stopped early after epoch 2 of" not in said
    if not epochs:
        assert (f"resuming {run} after epoch 2 (best so far: epoch 1, validation AUC 0.5000); the run stopped early "
                "there (validation AUC has not improved for 1 epoch, --patience), so no epoch is left to train: the "
                "model is made from epoch 1") in out.out, out.out


def test_messages_of_patience_speak_of_the_kept_epoch_under_an_auc_tie(
        tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # with --auc-tie, --patience counts epochs that did not replace the kept one, though their AUC may have risen
    run = tmp_path / "run"
    tie = "no epoch has replaced the kept one (by the --auc-tie 0.002 rule of validation AUC and loss)"
    _stopped_before_its_model(tiny_dataset, run, monkeypatch, "--auc-tie", "0.002")
    assert f"stopped early after epoch 2 of 4: {tie} for 1 epoch" in capsys.readouterr().out
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0
    assert f"the run stopped early there ({tie} for 1 epoch, --patience)" in capsys.readouterr().out
    done = tmp_path / "done"  # all its epochs trained, the last ones replacing nothing
    with monkeypatch.context() as patch:
        _flat_validation(patch)
        assert main(["train", "--data", str(tiny_dataset), "--out", str(done), "--model", "cnn", "--image-size", "32",
                     "--epochs", "3", "--patience", "2", "--batch-size", "16", "--consistency", "0", "--quiet",
                     "--auc-tie", "0.002"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(done), "--resume", "--epochs", "6", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "validation AUC did not improve" not in out, out
    assert ("nothing to resume, as no epoch replaced the kept one (by the --auc-tie 0.002 rule of validation AUC and "
            "loss) in the run's last 2 epochs (--patience)") in out, out
