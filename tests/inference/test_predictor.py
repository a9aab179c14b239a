"""Predictor safety: a damaged model must not call every film NORMAL."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pneumoscan.errors import InputError
from pneumoscan.inference.predictor import Predictor


@pytest.mark.parametrize("guard", [False, True])
def test_nan_probabilities_are_an_error_not_a_normal_label(guard: bool) -> None:
    predictor = Predictor(None, backend="torch", guard=guard)
    with torch.no_grad():
        for weight in predictor.model.parameters():
            weight.fill_(float("nan"))
    images = np.random.default_rng(0).integers(0, 256, (2, predictor.size, predictor.size), dtype=np.uint8)
    with pytest.raises(InputError, match="NaN.*damaged"):
        predictor.results(["a.png", "b.png"], images)


def test_auto_backend_falls_back_to_torch_when_the_onnx_export_fails_its_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """--backend auto means 'ONNX when it can': an export that disagrees with PyTorch is warned about and the
    torch model predicts; --backend onnx asked for ONNX, so the failure stops it."""
    import pneumoscan.inference.onnx_backend as onnx_backend
    from pneumoscan.export.onnx import ExportCheckError

    def failing(*args: object, **kwargs: object) -> None:
        raise ExportCheckError("ONNX and PyTorch differ by 0.3")

    monkeypatch.setattr(onnx_backend, "open_for_artifact", failing)
    monkeypatch.setattr(onnx_backend, "resolve_backend", lambda backend: "onnx" if backend == "auto" else backend)
    with pytest.warns(UserWarning, match="failed the check against PyTorch .*differ by 0.3.*PyTorch instead"):
        predictor = Predictor(None, backend="auto", guard=False)
    assert predictor.backend == "torch" and predictor.onnx is None
    with pytest.raises(ExportCheckError):
        Predictor(None, backend="onnx", guard=False)
