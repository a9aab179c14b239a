"""Checkpoints move between GPU and CPU machines: a run checkpointed on CUDA resumes here, without a GPU.

There is no GPU here, so a CUDA run's checkpoint is made as torch would write it: every tensor's storage recorded
as on "cuda:0" (torch.save names each storage's device), and the generator states of the GPUs it had.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
import torch.serialization
from torch import nn

from pneumoscan.cli import main
from pneumoscan.training.checkpoint import atomic_torch_save, load_checkpoint, restore_rng_states
from tests.training.test_audit_mistakes import QUICK


def save_as_on_cuda(obj: dict, path: Path) -> None:
    """`atomic_torch_save` as on a GPU machine: every storage tagged 'cuda:0', so loading it without a map to
    the CPU fails here as it would on any machine without CUDA."""
    tagged = [(0, lambda _storage: "cuda:0", None), *torch.serialization._package_registry]
    with mock.patch.object(torch.serialization, "_package_registry", tagged):
        atomic_torch_save(obj, path)


def test_the_stand_in_for_a_cuda_checkpoint_needs_the_map_to_the_cpu(tmp_path: Path) -> None:
    save_as_on_cuda({"w": torch.ones(2)}, tmp_path / "last.pt")
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(tmp_path / "last.pt", weights_only=True)
    assert load_checkpoint(tmp_path / "last.pt")["w"].device.type == "cpu"


def test_a_run_checkpointed_on_a_gpu_resumes_on_a_cpu(tiny_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *QUICK]) == 0
    ckpt = load_checkpoint(run / "last.pt")
    ckpt["cuda_rng"] = [torch.arange(16, dtype=torch.uint8)] * 2  # the machine it trained on had two GPUs
    save_as_on_cuda(ckpt, run / "last.pt")
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert load_checkpoint(run / "last.pt")["state"]["epoch"] == 2


def test_a_resume_sets_the_generators_of_the_gpus_present_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run checkpointed on a machine with two GPUs resumes on one with a single GPU."""
    restored: list[int] = []

    def set_rng_state(_state: torch.Tensor, device: int) -> None:
        if device >= 1:
            raise IndexError("tuple index out of range")  # torch.cuda.default_generators[device], once CUDA is up
        restored.append(device)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_rng_state)  # what set_rng_state_all calls
    restore_rng_states({"torch_rng": torch.get_rng_state(), "cuda_rng": [torch.zeros(16, dtype=torch.uint8)] * 2})
    assert restored == [0]


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_training_holds_cudnn_to_deterministic_algorithms(command: str, tiny_dataset: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """What a seed can promise on a GPU: cuDNN's nondeterministic and benchmarked algorithms are ruled out
    (monkeypatch puts back the flags the process had)."""
    import pneumoscan.training.trainer as trainer

    def stop(*_: object, **__: object) -> None:
        raise KeyboardInterrupt  # the flags are set before the data is read: no need to train

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(trainer, "prepare_data", stop)
    extra = ["--batch-size", "8"] if command == "pretrain" else []
    assert main([command, "--data", str(tiny_dataset), "--out", str(tmp_path / "run"), "--model", "cnn",
                 "--image-size", "32", "--epochs", "1", "--quiet", *extra]) != 0
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark


@pytest.mark.parametrize("recipe", [["--ema-decay", "0.9", "--balance", "weighted", "--mixup", "0.2"],
                                    ["--consistency", "0.5"]])
def test_a_run_checkpointed_on_a_cpu_resumes_with_every_tensor_of_its_step_on_the_gpu(
        recipe: list[str], tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other way round: a CPU's checkpoint (weights, AdamW's moments, the EMA) resumed where CUDA is present.
    The meta device stands in for the GPU (the weights it loads hold no values, so torch warns that loading them is a
    no-op): every tensor of the first step (the loss's inputs and class weight, the weights and their gradients,
    AdamW's state, the EMA's) must be there. The run stops after that step, before `loss.item()`."""
    import pneumoscan.training.trainer as trainer

    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *QUICK, *recipe]) == 0
    with_ema = "--ema-decay" in recipe
    seen: dict[str, set[str]] = {}

    def note(what: str, tensors: list[Any]) -> None:
        seen.setdefault(what, set()).update(t.device.type for t in tensors if isinstance(t, torch.Tensor))

    def loss(self: Any, logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None) -> torch.Tensor:
        note("loss inputs", [logits, targets, pos_weight])
        return original_loss(self, logits, targets, pos_weight)

    def step(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
        note("optimiser state", [v for state in self.state.values() for k, v in state.items() if k != "step"])
        note("weights and gradients", [t for group in self.param_groups for p in group["params"] for t in (p, p.grad)])
        done = original_step(self, *args, **kwargs)
        if not with_ema:
            raise KeyboardInterrupt
        return done

    def update_ema(ema: nn.Module, model: nn.Module, *_: Any) -> None:
        note("ema", [*ema.parameters(), *ema.buffers(), *model.buffers()])
        raise KeyboardInterrupt

    original_loss, original_step = trainer.Trainer._loss, torch.optim.AdamW.step
    monkeypatch.setattr(trainer, "device_for", lambda preferred=None: torch.device("meta"))
    monkeypatch.setattr(trainer, "save_artifact", lambda *_, **__: None)  # meta weights cannot be written
    monkeypatch.setattr(trainer.Trainer, "_loss", loss)
    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    monkeypatch.setattr(trainer, "update_ema", update_ema)
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 130
    assert seen == {"loss inputs": {"meta"}, "optimiser state": {"meta"}, "weights and gradients": {"meta"},
                    **({"ema": {"meta"}} if with_ema else {})}


def test_a_pretraining_checkpointed_on_a_cpu_resumes_with_its_step_on_the_gpu(tiny_dataset: Path, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """SimSiam likewise: resumed where CUDA is present (the meta device standing in), the views, the weights, their
    gradients and SGD's momentum from the CPU's checkpoint are all on the GPU at the first step."""
    import pneumoscan.training.pretrain as pretrain

    out = tmp_path / "pre"
    options = ["--data", str(tiny_dataset), "--out", str(out), "--model", "cnn", "--image-size", "32",
               "--batch-size", "8", "--quiet"]
    assert main(["pretrain", *options, "--epochs", "1"]) == 0
    seen: dict[str, set[str]] = {}

    def forward(self: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> Any:
        seen["views"] = {x1.device.type, x2.device.type}
        return original_forward(self, x1, x2)

    def step(self: torch.optim.Optimizer, *_: Any, **__: Any) -> None:
        seen["momentum"] = {v.device.type for state in self.state.values() for v in state.values()
                            if isinstance(v, torch.Tensor)}
        seen["weights and gradients"] = {t.device.type for group in self.param_groups for p in group["params"]
                                         for t in (p, p.grad)}
        raise KeyboardInterrupt

    original_forward = pretrain.SimSiam.forward
    monkeypatch.setattr(pretrain, "device_for", lambda preferred=None: torch.device("meta"))
    monkeypatch.setattr(pretrain.SimSiam, "forward", forward)
    monkeypatch.setattr(torch.optim.SGD, "step", step)
    assert main(["pretrain", *options, "--epochs", "2", "--resume"]) == 130
    assert seen == {"views": {"meta"}, "momentum": {"meta"}, "weights and gradients": {"meta"}}


# The backward functions of the operations PyTorch lists as having no deterministic CUDA implementation
# (torch.use_deterministic_algorithms), among those a classifier could use; convolutions are held deterministic by
# cudnn.deterministic, which seed_everything sets.
NONDETERMINISTIC_ON_CUDA = {
    "AdaptiveAvgPool2DBackward0", "AdaptiveAvgPool3DBackward0", "AvgPool3DBackward0", "MaxPool3DWithIndicesBackward0",
    "AdaptiveMaxPool2DBackward0", "AdaptiveMaxPool3DBackward0", "FractionalMaxPool2DBackward0",
    "FractionalMaxPool3DBackward0", "UpsampleLinear1DBackward0", "UpsampleBilinear2DBackward0",
    "UpsampleBicubic2DBackward0", "UpsampleTrilinear3DBackward0", "GridSampler2DBackward0", "ReflectionPad1DBackward0",
    "ReflectionPad2DBackward0", "ReflectionPad3DBackward0", "ReplicationPad1DBackward0", "ReplicationPad2DBackward0",
    "ReplicationPad3DBackward0", "IndexBackward0", "IndexPutBackward0", "IndexAddBackward0", "ScatterAddBackward0",
    "EmbeddingBagBackward0", "NllLossBackward0", "NllLoss2DBackward0", "CumsumBackward0", "CtcLossBackward0",
}


def backward_functions(loss: torch.Tensor) -> set[str]:
    """The names of the autograd functions `loss.backward()` runs."""
    names, seen, stack = set(), set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(child for child, _ in node.next_functions)
    return names


@pytest.mark.parametrize("name", ["cnn", "mlp", "resnet10", "resnet18", "tv_resnet18", "tv_resnet50", "simsiam"])
def test_a_training_step_runs_no_operation_pytorch_lists_as_nondeterministic_on_cuda(name: str) -> None:
    """What cudnn.deterministic cannot fix: a backward pass without a deterministic CUDA implementation. The
    networks' global average pooling (nn.AdaptiveAvgPool2d(1), listed) is computed as a mean, whose backward is
    deterministic; the graph is the same on every device (a composite of ATen, looked at here on the CPU). The
    step is the trainer's: channels-last weights, class-weighted loss, the consistency term of two views."""
    from pneumoscan.models.registry import create_model, model_config
    from pneumoscan.training.pretrain import SimSiam, strip_final_linear
    from pneumoscan.training.trainer import Trainer, bernoulli_js

    size = 64
    if name == "simsiam":
        backbone = create_model("resnet10", **model_config("resnet10", image_size=size))
        net = SimSiam(backbone, strip_final_linear(backbone)).to(memory_format=torch.channels_last).train()
        loss, _ = net(torch.randn(4, 1, size, size), torch.randn(4, 1, size, size))
    else:
        model = create_model(name, **model_config(name, image_size=size)).to(memory_format=torch.channels_last).train()
        first, second = model(torch.randn(8, 1, size, size)).reshape(-1).chunk(2)
        trainer = mock.Mock(cfg=mock.Mock(label_smoothing=0.1))
        targets, weight = torch.tensor([0.0, 1.0, 1.0, 0.0]), torch.tensor(2.0)
        loss = Trainer._loss(trainer, first, targets, weight) + bernoulli_js(first, second)
    functions = backward_functions(loss)
    assert "ConvolutionBackward0" in functions or name == "mlp"  # the graph was walked
    assert not functions & NONDETERMINISTIC_ON_CUDA
