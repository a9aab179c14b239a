from __future__ import annotations

import numpy as np
import pytest
import torch

from pneumoscan.evaluation.metrics import roc_auc
from pneumoscan.inference.batch import device_for, sigmoid


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
