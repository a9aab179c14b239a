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
