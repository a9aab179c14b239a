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
import torch.nn.functional as F
import torch.serialization
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

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
    import pneumoscan.training.run_data as run_data
    import pneumoscan.training.trainer as trainer

    def stop(*_: object, **__: object) -> None:
        raise KeyboardInterrupt  # the flags are set before the data is read: no need to train

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    for module in (trainer, run_data):  # train reads it through the trainer's name, pretrain from run_data
        monkeypatch.setattr(module, "prepare_data", stop)
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


# The ATen operations behind those PyTorch lists as nondeterministic on CUDA (the docstring of
# torch.use_deterministic_algorithms, torch 2.13), forward and backward: the ones it "will throw a RuntimeError" for,
# and the ones that only "act deterministically" with use_deterministic_algorithms(True), which pneumoscan does not
# set. Left out: the convolutions, held deterministic by cudnn.deterministic (seed_everything sets it); torch.bmm of a
# sparse with a dense tensor and Tensor.resize_ of a quantized tensor, whose names a dense one shares (deterministic).
# Where the name cannot tell the listed case from the others (--mode of EmbeddingBag, bincount with weights,
# scatter_reduce's reduce, index_put's accumulate), every case is counted. `OVERLOAD` names (aten.scatter.src) count
# that overload only, the others (aten.index_add) every one.
NONDETERMINISTIC_ON_CUDA = {
    "aten.replication_pad1d_backward", "aten.replication_pad2d_backward", "aten.replication_pad3d_backward",
    "aten.index_put", "aten.index_put_", "aten._index_put_impl_",  # index_put, and the backward of indexing
    "aten.put", "aten.put_", "aten.scatter_add", "aten.scatter_add_",  # scatter_add, and the backward of gather
    "aten.index_add", "aten.index_add_",  # index_add, and the backward of index_select and repeat_interleave
    "aten.index_copy", "aten.index_copy_", "aten.scatter.src", "aten.scatter_.src", "aten.scatter.reduce",
    "aten.scatter_.reduce", "aten.scatter_reduce", "aten.scatter_reduce_", "aten.max_pool3d_with_indices_backward",
    "aten.avg_pool3d_backward", "aten._adaptive_avg_pool2d_backward", "aten._adaptive_avg_pool3d_backward",
    "aten.adaptive_max_pool2d_backward", "aten.fractional_max_pool2d_backward", "aten.fractional_max_pool3d_backward",
    "aten.max_unpool2d", "aten.max_unpool3d", "aten.upsample_linear1d_backward", "aten.upsample_bilinear2d_backward",
    "aten.upsample_bicubic2d_backward", "aten.upsample_trilinear3d_backward", "aten._upsample_bilinear2d_aa_backward",
    "aten._upsample_bicubic2d_aa_backward", "aten.reflection_pad1d_backward", "aten.reflection_pad2d_backward",
    "aten.reflection_pad3d_backward", "aten.nll_loss_forward", "aten.nll_loss_backward", "aten.nll_loss2d_forward",
    "aten.nll_loss2d_backward", "aten._ctc_loss_backward", "aten._embedding_bag_backward", "aten.histc",
    "aten.bincount", "aten.median.dim", "aten.median.dim_values", "aten.grid_sampler_2d_backward",
    "aten.grid_sampler_3d_backward", "aten.cumsum", "aten.cumsum_",
    "aten.adaptive_max_pool3d_backward",  # not in torch 2.13's list; kept from this test's earlier one
}


def _grad(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, requires_grad=True)


_INDEX = torch.tensor([0, 2, 1])
_POOLED_1D, _WHERE_1D = nn.MaxPool1d(2, return_indices=True)(torch.randn(1, 1, 4))
_POOLED_2D, _WHERE_2D = nn.MaxPool2d(2, return_indices=True)(torch.randn(1, 1, 4, 4))
_POOLED_3D, _WHERE_3D = nn.MaxPool3d(2, return_indices=True)(torch.randn(1, 1, 4, 4, 4))
# Each operation of that docstring's two lists (but the ones left out above), as a call: what the list above must
# catch, in forward or backward.
DOCUMENTED: dict[str, Any] = {
    "ReplicationPad1d": lambda: nn.ReplicationPad1d(1)(_grad(1, 2, 5)),
    "ReplicationPad2d": lambda: nn.ReplicationPad2d(1)(_grad(1, 2, 5, 5)),
    "ReplicationPad3d": lambda: nn.ReplicationPad3d(1)(_grad(1, 2, 5, 5, 5)),
    "Tensor.__getitem__ with a list of tensors": lambda: _grad(4, 3)[(_INDEX,)],
    "Tensor.index_put, accumulate=False": lambda: torch.zeros(4, 3).index_put((_INDEX,), torch.ones(3, 3)),
    "Tensor.index_put, accumulate=True": lambda: torch.zeros(4, 3).index_put((_INDEX,), torch.ones(3, 3), True),
    "Tensor.put_, accumulate=True": lambda: torch.zeros(6).put_(_INDEX, torch.ones(3), accumulate=True),
    "Tensor.put_, accumulate=False": lambda: torch.zeros(6).put_(_INDEX, torch.ones(3)),
    "Tensor.scatter_add_": lambda: torch.zeros(4).scatter_add_(0, _INDEX, torch.ones(3)),
    "torch.gather, requiring grad": lambda: torch.gather(_grad(4, 3), 0, torch.zeros(2, 3, dtype=torch.long)),
    "torch.index_add": lambda: torch.zeros(4, 3).index_add(0, _INDEX, torch.ones(3, 3)),
    "torch.index_select, differentiated": lambda: torch.index_select(_grad(4, 3), 0, _INDEX),
    "torch.repeat_interleave, differentiated": lambda: torch.repeat_interleave(_grad(3), torch.tensor([1, 2, 1])),
    "Tensor.index_copy": lambda: torch.zeros(4, 3).index_copy(0, _INDEX, torch.ones(3, 3)),
    "Tensor.scatter with a src tensor": lambda: torch.zeros(4).scatter(0, _INDEX, torch.ones(3)),
    "Tensor.scatter_reduce, sum": lambda: torch.zeros(4).scatter_reduce(0, _INDEX, torch.ones(3), "sum"),
    "Tensor.scatter_reduce, mean": lambda: torch.zeros(4).scatter_reduce(0, _INDEX, torch.ones(3), "mean"),
    "Tensor.scatter_reduce, prod": lambda: torch.zeros(4).scatter_reduce(0, _INDEX, torch.ones(3), "prod"),
    "MaxPool3d": lambda: nn.MaxPool3d(2)(_grad(1, 1, 4, 4, 4)),
    "AvgPool3d": lambda: nn.AvgPool3d(2)(_grad(1, 1, 4, 4, 4)),
    "AdaptiveAvgPool2d": lambda: nn.AdaptiveAvgPool2d(2)(_grad(1, 1, 5, 5)),
    "AdaptiveAvgPool3d": lambda: nn.AdaptiveAvgPool3d(2)(_grad(1, 1, 5, 5, 5)),
    "AdaptiveMaxPool2d": lambda: nn.AdaptiveMaxPool2d(2)(_grad(1, 1, 5, 5)),
    "FractionalMaxPool2d": lambda: nn.FractionalMaxPool2d(2, output_size=2)(_grad(1, 1, 5, 5)),
    "FractionalMaxPool3d": lambda: nn.FractionalMaxPool3d(2, output_size=2)(_grad(1, 1, 5, 5, 5)),
    "MaxUnpool1d": lambda: nn.MaxUnpool1d(2)(_POOLED_1D, _WHERE_1D),
    "MaxUnpool2d": lambda: nn.MaxUnpool2d(2)(_POOLED_2D, _WHERE_2D),
    "MaxUnpool3d": lambda: nn.MaxUnpool3d(2)(_POOLED_3D, _WHERE_3D),
    "interpolate, linear": lambda: F.interpolate(_grad(1, 1, 4), scale_factor=2, mode="linear"),
    "interpolate, bilinear": lambda: F.interpolate(_grad(1, 1, 4, 4), scale_factor=2, mode="bilinear"),
    "interpolate, bilinear antialiased": lambda: F.interpolate(_grad(1, 1, 8, 8), size=4, mode="bilinear",
                                                                antialias=True),
    "interpolate, bicubic": lambda: F.interpolate(_grad(1, 1, 4, 4), scale_factor=2, mode="bicubic"),
    "interpolate, bicubic antialiased": lambda: F.interpolate(_grad(1, 1, 8, 8), size=4, mode="bicubic",
                                                               antialias=True),
    "interpolate, trilinear": lambda: F.interpolate(_grad(1, 1, 4, 4, 4), scale_factor=2, mode="trilinear"),
    "ReflectionPad1d": lambda: nn.ReflectionPad1d(1)(_grad(1, 2, 5)),
    "ReflectionPad2d": lambda: nn.ReflectionPad2d(1)(_grad(1, 2, 5, 5)),
    "ReflectionPad3d": lambda: nn.ReflectionPad3d(1)(_grad(1, 2, 5, 5, 5)),
    "NLLLoss": lambda: nn.NLLLoss()(_grad(3, 4), torch.tensor([0, 1, 2])),
    "NLLLoss over an image": lambda: nn.NLLLoss()(_grad(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)),
    "CTCLoss": lambda: nn.CTCLoss()(_grad(6, 1, 4).log_softmax(2), torch.tensor([[1, 2]]), torch.tensor([6]),
                                    torch.tensor([2])),
    "EmbeddingBag, max": lambda: nn.EmbeddingBag(5, 3, mode="max")(torch.tensor([[0, 1], [2, 3]])),
    "torch.histc": lambda: torch.histc(torch.rand(10), bins=4),
    "torch.bincount with weights": lambda: torch.bincount(torch.tensor([0, 1, 1]), weights=torch.ones(3)),
    "torch.median with indices": lambda: torch.median(torch.rand(3, 4), dim=1),
    "grid_sample": lambda: F.grid_sample(_grad(1, 1, 4, 4), torch.zeros(1, 2, 2, 2), align_corners=False),
    "grid_sample, 3-D": lambda: F.grid_sample(_grad(1, 1, 4, 4, 4), torch.zeros(1, 2, 2, 2, 3), align_corners=False),
    "torch.cumsum": lambda: torch.cumsum(torch.rand(5), 0),
}


class _AtenCalls(TorchDispatchMode):
    """Records the ATen operations run under it, by overload (aten.scatter.src) and by name (aten.scatter)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.names |= {str(func), str(func.overloadpacket)}
        return func(*args, **(kwargs or {}))


def aten_calls(step: Any) -> set[str]:
    """The ATen operations `step()` runs, and the backward pass of what it returns when that has a gradient."""
    calls = _AtenCalls()
    with calls:
        out = step()
        out = out[0] if isinstance(out, tuple) else out
        if out.requires_grad:
            out.float().sum().backward()
    return calls.names


@pytest.mark.parametrize("operation", sorted(DOCUMENTED))
def test_the_list_catches_each_operation_pytorch_documents_as_nondeterministic(operation: str) -> None:
    """A name in NONDETERMINISTIC_ON_CUDA that torch does not use (misspelt, or renamed by a new version) would
    let a training step that runs it pass."""
    assert aten_calls(DOCUMENTED[operation]) & NONDETERMINISTIC_ON_CUDA


@pytest.mark.parametrize("name", ["cnn", "mlp", "resnet10", "resnet18", "tv_resnet18", "tv_resnet50", "simsiam"])
def test_a_training_step_runs_no_operation_pytorch_lists_as_nondeterministic_on_cuda(name: str) -> None:
    """What cudnn.deterministic cannot fix: an operation, forward or backward, without a deterministic CUDA
    implementation. The networks' global average pooling (nn.AdaptiveAvgPool2d(1), listed) is computed as a mean,
    whose backward is deterministic; the ATen operations are the same on every device (looked at here on the CPU).
    The step is the trainer's: channels-last weights, class-weighted loss, the consistency term of two views."""
    from pneumoscan.models.registry import create_model, model_config
    from pneumoscan.training.pretrain import SimSiam, strip_final_linear
    from pneumoscan.training.recipe import bernoulli_js
    from pneumoscan.training.trainer import Trainer

    size = 64

    def step() -> torch.Tensor:
        if name == "simsiam":
            backbone = create_model("resnet10", **model_config("resnet10", image_size=size))
            net = SimSiam(backbone, strip_final_linear(backbone)).to(memory_format=torch.channels_last).train()
            return net(torch.randn(4, 1, size, size), torch.randn(4, 1, size, size))[0]
        model = create_model(name, **model_config(name, image_size=size)).to(memory_format=torch.channels_last).train()
        first, second = model(torch.randn(8, 1, size, size)).reshape(-1).chunk(2)
        trainer = mock.Mock(cfg=mock.Mock(label_smoothing=0.1))
        targets, weight = torch.tensor([0.0, 1.0, 1.0, 0.0]), torch.tensor(2.0)
        return Trainer._loss(trainer, first, targets, weight) + bernoulli_js(first, second)

    calls = aten_calls(step)
    assert "aten.convolution_backward" in calls or name == "mlp"  # the backward pass was recorded
    assert not calls & NONDETERMINISTIC_ON_CUDA
