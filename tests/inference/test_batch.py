from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from pneumoscan.evaluation.metrics import roc_auc
from pneumoscan.inference.batch import device_for, sigmoid, unsupported_gpu


def test_sigmoid_keeps_large_logits_apart_so_auc_sees_their_order() -> None:
    logits = np.array([18.0, 20.0, 25.0, 30.0], dtype=np.float32)  # all exactly 1.0 in float32
    probs = sigmoid(logits)
    assert np.all(np.diff(probs) > 0) and np.all(probs < 1.0)
    labels = np.array([0, 1, 1, 1])
    assert roc_auc(labels, probs) == 1.0  # float32 ties would give 0.5 credit for every pair
    assert roc_auc(labels, (1 / (1 + np.exp(-logits))).astype(np.float32)) < 1.0


def test_sigmoid_is_the_logistic_function_and_stable_at_the_extremes() -> None:
    x = np.array([-1000.0, -3.0, 0.0, 3.0, 1000.0])
    p = sigmoid(x)
    assert np.all(np.isfinite(p)) and p[2] == 0.5
    np.testing.assert_allclose(p[1:4], 1 / (1 + np.exp(-x[1:4])), rtol=1e-12)
    assert 0 < p[0] < 1e-25 and p[4] == 1.0


def test_choosing_cuda_turns_off_tf32_convolutions(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU's scores (and a run's stored validation scores and threshold) in full float32, as the CPU's and ONNX
    Runtime's; there is no GPU here, so this checks the switch, not the arithmetic."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # cuDNN's default; put back afterwards
    assert device_for("cpu").type == "cpu" and torch.backends.cudnn.allow_tf32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_for().type == "cuda"
    assert not torch.backends.cudnn.allow_tf32
    # torch 2.9+ convolutions read the per-operation setting, which the legacy switch sets
    assert torch.backends.cudnn.conv.fp32_precision != "tf32"


@pytest.fixture()
def fresh_gpu_check() -> Iterator[None]:
    """The check of the GPU against the build's architectures is made once a process: again for each case here."""
    unsupported_gpu.cache_clear()
    yield
    unsupported_gpu.cache_clear()


def _gpu(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], arches: list[str]) -> None:
    """A GPU of `capability` under a PyTorch build made for `arches` (no GPU here: torch's answers patched)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # put back afterwards
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: arches)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla P4")


CUDA_13_BUILD = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # PyTorch 2.13's x86_64 CUDA 13.0 wheels


def test_a_gpu_too_old_for_the_build_is_left_for_the_cpu_with_one_warning(
        fresh_gpu_check: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command stopped at its first operation ('no kernel image is available for execution on the device')."""
    from pneumoscan.inference.onnx_backend import resolve_backend

    _gpu(monkeypatch, (6, 1), CUDA_13_BUILD)
    with pytest.warns(UserWarning, match=r"Tesla P4 \(CUDA capability 6\.1\) is not supported .* running on the "
                                         r"CPU; .*CUDA_VISIBLE_DEVICES="):
        assert device_for().type == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once a process
        assert device_for().type == "cpu" and resolve_backend("auto") == "onnx"
    assert device_for("cuda").type == "cuda"  # asked for by name: the caller's choice


@pytest.mark.parametrize(("capability", "arches"), [
    ((8, 9), CUDA_13_BUILD),  # sm_86 code runs on 8.9
    ((12, 1), CUDA_13_BUILD),
    ((6, 1), ["sm_50", "sm_60", "sm_70"]),
    ((9, 0), ["sm_80", "compute_80"]),  # PTX compiled for the GPU at run time
    ((9, 0), ["gfx90a", "gfx942"]),  # a ROCm build: nothing to compare
    ((9, 0), []),
])
def test_a_gpu_the_build_has_kernels_for_is_used(capability: tuple[int, int], arches: list[str],
                                                 fresh_gpu_check: None, monkeypatch: pytest.MonkeyPatch) -> None:
    _gpu(monkeypatch, capability, arches)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert device_for().type == "cuda"
