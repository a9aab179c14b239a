"""`train --compile`: the same training step, compiled; eager with a warning when it cannot be."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pneumoscan.models.registry import create_model
from pneumoscan.training import compile as compile_module
from pneumoscan.training.compile import CompileWarning, compile_for_training, cxx_compiler

needs_compiler = pytest.mark.skipif(cxx_compiler() is None, reason="no C++ compiler for torch.compile on this machine")


def test_without_a_compiler_training_goes_on_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compile_module.shutil, "which", lambda name: None)
    model = create_model("cnn")
    with pytest.warns(CompileWarning, match="no C\\+\\+ compiler"):
        assert compile_for_training(model, torch.device("cpu")) is model


@needs_compiler
def test_a_compiled_step_updates_the_weights_as_an_eager_step_does() -> None:
    torch.manual_seed(0)
    eager = create_model("cnn", dropout=0.0).to(memory_format=torch.channels_last).train()  # dropout: no shared RNG
    compiled_model = copy.deepcopy(eager)
    x, y = torch.rand(8, 1, 32, 32), torch.tensor([0.0, 1.0] * 4)
    losses = []
    for model, forward in ((eager, eager), (compiled_model, compile_for_training(compiled_model, torch.device("cpu")))):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # Adam would magnify rounding in ~0 gradients
        for _ in range(2):
            loss = F.binary_cross_entropy_with_logits(forward(x).reshape(-1), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)
    for (name, a), (_, b) in zip(eager.state_dict().items(), compiled_model.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), atol=1e-4), name  # same parameters and BatchNorm statistics


@needs_compiler
def test_a_compiled_run_saves_the_plain_model(tiny_dataset: Path, tmp_path: Path) -> None:
    from pneumoscan.artifact import load_artifact
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.trainer import train

    cfg = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "run"), model="cnn", image_size=32, epochs=1,
                      batch_size=16, val_fraction=0.3, compile=True)
    artifact = train(cfg, progress=False)
    model, meta = load_artifact(artifact)  # strict load: no torch.compile wrapper names in the weights
    assert meta.training["config"]["compile"] is True and type(model).__name__ != "OptimizedModule"
