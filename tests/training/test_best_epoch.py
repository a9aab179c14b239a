"""The model a run ends with is its best epoch's, not its last: the weights, and the threshold and validation scores
chosen with them."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pneumoscan.artifact import read_meta
from pneumoscan.cli import main
from pneumoscan.evaluation.thresholds import threshold_for_recall

AUC_BY_EPOCH = [0.6, 0.9, 0.7, 0.65]  # best at epoch 2; --patience 2 stops the run after epoch 4


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_the_artifact_holds_the_best_epoch_and_its_threshold_comes_from_that_epoch(
        ema: float, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pneumoscan.training.trainer as trainer

    scored: list[np.ndarray] = []  # each epoch's validation scores, as early stopping saw them
    weights: list[dict[str, torch.Tensor]] = []  # each epoch's weights that validation scored (the EMA's, with one)

    def auc(labels: np.ndarray, probs: np.ndarray) -> float:
        scored.append(np.asarray(probs, dtype=np.float64).copy())
        return AUC_BY_EPOCH[len(scored) - 1]

    real_save = trainer.atomic_torch_save

    def save(obj: dict, path: Path) -> None:
        weights.append(copy.deepcopy(obj["ema"] if ema else obj["model"]))
        real_save(obj, path)

    monkeypatch.setattr(trainer, "roc_auc", auc)
    monkeypatch.setattr(trainer, "atomic_torch_save", save)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), "--model", "cnn", "--image-size", "32",
                 "--epochs", "6", "--patience", "2", "--batch-size", "16", "--consistency", "0", "--lr", "1e-2",
                 "--ema-decay", str(ema), "--quiet"]) == 0
    assert len(scored) == len(weights) == 4
    meta = read_meta(run / "model.safetensors")
    assert (meta.training["best_epoch"], meta.training["epochs_run"]) == (2, 4)

    model = load_file(str(run / "model.safetensors"))
    assert all(torch.equal(model[k], weights[1][k].contiguous()) for k in model)
    assert not all(torch.equal(model[k], weights[3][k].contiguous()) for k in model)

    labels = np.array(meta.val_scores["labels"])
    probs = np.array(meta.val_scores["probs"])
    np.testing.assert_allclose(probs, scored[1], atol=1e-5)  # another memory layout: rounding only
    assert np.abs(probs - scored[3]).max() > 1e-3
    assert meta.threshold == pytest.approx(threshold_for_recall(labels, scored[1], meta.target_recall), abs=1e-5)


def test_a_crash_between_the_best_weights_and_the_checkpoint_never_leaves_weights_of_another_epoch(
        tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Epoch 2 beat epoch 1 and the run stopped (a kill, a full disk) at epoch 2's checkpoint. best.safetensors was
    written before it, so when the resume did not reproduce epoch 2 exactly (another thread count, a GPU) and judged
    it worse, the model kept the first attempt's epoch-2 weights while naming epoch 1 as its best."""
    import pneumoscan.training.trainer as trainer

    aucs = iter([0.6, 0.9, 0.5])  # epoch 1, epoch 2, epoch 2 again after the resume
    monkeypatch.setattr(trainer, "roc_auc", lambda labels, probs: next(aucs))
    saved: list[dict[str, torch.Tensor]] = []
    real_save = trainer.atomic_torch_save

    def save(obj: dict, path: Path) -> None:
        if len(saved) == 1:  # epoch 2's checkpoint
            raise KeyboardInterrupt
        saved.append(copy.deepcopy(obj["model"]))
        real_save(obj, path)

    run = tmp_path / "run"
    args = ["--model", "cnn", "--image-size", "32", "--epochs", "2", "--batch-size", "16", "--consistency", "0",
            "--lr", "1e-2", "--quiet"]
    with monkeypatch.context() as patch:
        patch.setattr(trainer, "atomic_torch_save", save)
        assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *args]) == 130
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0
    meta = read_meta(run / "model.safetensors")
    assert meta.training["best_epoch"] == 1
    model = load_file(str(run / "model.safetensors"))
    assert all(torch.equal(model[k], saved[0][k].contiguous()) for k in model)


def test_a_crash_after_the_checkpoint_of_a_best_epoch_writes_its_weights_on_resume(
        tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint is written before best.safetensors: a run stopped between the two has its best weights in the
    checkpoint, and the resume writes them."""
    import pneumoscan.training.trainer as trainer

    aucs = iter([0.5, 0.6])
    monkeypatch.setattr(trainer, "roc_auc", lambda labels, probs: next(aucs))
    saved: list[dict[str, torch.Tensor]] = []
    real_save = trainer.atomic_torch_save
    real_weights = trainer.save_artifact

    def save(obj: dict, path: Path) -> None:
        saved.append(copy.deepcopy(obj["model"]))
        real_save(obj, path)

    def stop_at_epoch_2(path: Path, *rest: object) -> Path:
        if path.name == "best.safetensors" and len(saved) == 2:
            raise KeyboardInterrupt
        return real_weights(path, *rest)

    run = tmp_path / "run"
    args = ["--model", "cnn", "--image-size", "32", "--epochs", "2", "--batch-size", "16", "--consistency", "0",
            "--lr", "1e-2", "--quiet"]
    monkeypatch.setattr(trainer, "atomic_torch_save", save)
    with monkeypatch.context() as patch:
        patch.setattr(trainer, "save_artifact", stop_at_epoch_2)
        assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *args]) == 130
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0
    assert read_meta(run / "model.safetensors").training["best_epoch"] == 2
    model = load_file(str(run / "model.safetensors"))
    assert all(torch.equal(model[k], saved[1][k].contiguous()) for k in model)
