"""--auc-tie, decided as each epoch ends: an epoch whose validation AUC is within the tie of the highest so far becomes
the kept one when its validation loss is lower than the kept epoch's, or when the kept epoch's AUC has fallen more than
the tie below the highest."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pneumoscan.artifact import read_meta
from pneumoscan.cli import main
from pneumoscan.training.selection import becomes_kept, selection_state


def kept_epochs(aucs: list[float], losses: list[float], tie: float) -> list[int]:
    """The kept epoch after each epoch, as the trainer updates its state."""
    state = {"best_auc": -1.0, "best_loss": math.inf, "top_auc": -1.0, "best_epoch": 0}
    kept = []
    for epoch, (auc, loss) in enumerate(zip(aucs, losses), start=1):
        if becomes_kept(state, auc, loss, tie):
            state.update(best_auc=auc, best_loss=loss, best_epoch=epoch)
        state["top_auc"] = max(state["top_auc"], auc)
        kept.append(state["best_epoch"])
    return kept


def test_without_a_tie_only_a_higher_auc_is_kept_whatever_the_loss() -> None:
    assert kept_epochs([0.90, 0.95, 0.95, 0.94], [0.5, 0.4, 0.1, 0.05], 0.0) == [1, 2, 2, 2]


def test_a_near_tie_is_broken_by_the_lower_loss() -> None:
    # epoch 3's AUC is 0.001 below epoch 2's, within the tie of 0.002, and its loss is lower
    assert kept_epochs([0.990, 0.997, 0.996, 0.9975], [0.3, 0.10, 0.08, 0.09], 0.002) == [1, 2, 3, 3]


def test_an_auc_further_below_than_the_tie_is_never_kept_however_low_its_loss() -> None:
    assert kept_epochs([0.997, 0.994], [0.10, 0.01], 0.002) == [1, 1]


def test_a_kept_epoch_left_more_than_the_tie_below_a_new_highest_auc_is_replaced_even_with_a_higher_loss() -> None:
    assert kept_epochs([0.990, 0.989, 0.995], [0.10, 0.05, 0.20], 0.002) == [1, 2, 3]


def test_a_new_highest_auc_is_kept_over_an_earlier_epoch_of_lower_loss_still_within_the_tie() -> None:
    # the online rule the docs, --help and report now state: epoch 2 (0.9019, loss 0.5) did not become the kept one
    # (loss above epoch 1's, epoch 1 within the tie), so its weights are gone when epoch 3 (0.903) pushes epoch 1 out
    # of the tie; the lowest loss within 0.002 of the run's highest AUC would be epoch 2
    assert kept_epochs([0.900, 0.9019, 0.903], [0.2, 0.5, 0.9], 0.002) == [1, 1, 3]


def test_a_run_saved_before_the_tie_existed_resumes_with_its_kept_epochs_loss_and_its_highest_auc() -> None:
    history = [{"epoch": 1, "val_auc": 0.9, "val_loss": 0.3}, {"epoch": 2, "val_auc": 0.95, "val_loss": 0.2},
               {"epoch": 3, "val_auc": 0.94, "val_loss": 0.1}]
    assert selection_state(history, 2) == {"best_loss": 0.2, "top_auc": 0.95}
    assert selection_state([], 0) == {"best_loss": math.inf, "top_auc": -1.0}


def test_train_keeps_the_lower_loss_epoch_of_a_near_tie_and_says_so_in_its_record(
        tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pneumoscan.training.trainer as trainer

    aucs = iter([0.90, 0.950, 0.949, 0.80])
    losses = iter([0.5, 0.40, 0.20, 0.9])
    monkeypatch.setattr(trainer, "roc_auc", lambda labels, probs: next(aucs))
    real_bce = F.binary_cross_entropy_with_logits

    def bce(logits: torch.Tensor, target: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        if not logits.requires_grad:
            return torch.tensor(next(losses), dtype=torch.float64)  # the validation loss of each epoch
        return real_bce(logits, target, *args, **kwargs)

    monkeypatch.setattr(trainer.F, "binary_cross_entropy_with_logits", bce)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), "--model", "cnn", "--image-size", "32",
                 "--epochs", "4", "--batch-size", "16", "--consistency", "0", "--auc-tie", "0.002",
                 "--quiet"]) == 0
    meta = read_meta(run / "model.safetensors")
    assert meta.training["best_epoch"] == 3
    assert meta.training["config"]["auc_tie"] == 0.002


@pytest.mark.parametrize("value", ["-0.1", "1", "nan"])
def test_an_auc_tie_out_of_range_is_refused_naming_the_option(value: str, tiny_dataset: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "run"), "--auc-tie", value]) != 0
    assert "--auc-tie" in capsys.readouterr().err


def test_train_help_states_the_rule_it_runs(capsys: pytest.CaptureFixture[str]) -> None:
    # --auc-tie's help said the lowest loss among epochs within the tie, and --patience's that a better AUC resets it
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "or when the kept epoch's AUC has fallen more than this below the highest" in text
    assert ("with it, those its rule passes over, even a higher AUC whose val loss is not lower while the kept epoch "
            "stays within the tie") in text
