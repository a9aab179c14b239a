"""The classifier's penultimate features, taken with a forward hook in the same pass as its logits."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

from pneumoscan.data.preprocess import Preprocessing

if TYPE_CHECKING:  # imported by the functions that run the model: the guard scores ONNX Runtime's features without it
    import torch
    from torch import nn


def final_linear(model: nn.Module) -> nn.Linear:
    """The classifier's last nn.Linear (inside `model.head` when there is one): its input is the feature."""
    from torch import nn

    from pneumoscan.models.registry import final_linear_name

    layer = model.get_submodule(final_linear_name(model))
    assert isinstance(layer, nn.Linear)
    return layer


def forward_with_features(
    model: nn.Module, images: np.ndarray, preprocessing: Preprocessing, *, batch_size: int = 128, tta: bool = False,
    progress: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (same as `predict_logits`) and penultimate features (N, D) of the unmirrored pass, in one pass;
    `progress`: the name of a bar counting the images on a terminal (default none)."""
    import torch

    from pneumoscan.progress import progress_bar

    model.eval()
    device = next(model.parameters()).device
    captured: list[torch.Tensor] = []
    capture = [True]
    owner = threading.get_ident()  # the model may be shared: other threads' forward passes fire this hook too

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if capture[0] and threading.get_ident() == owner:
            captured.append(inputs[0].detach().reshape(len(inputs[0]), -1).float().cpu())

    handle = final_linear(model).register_forward_pre_hook(hook)
    logits_out = np.empty(len(images), dtype=np.float32)
    bar = progress_bar(total=len(images), desc=progress, unit="img", progress=progress is not None)
    try:
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                x = preprocessing(np.asarray(images[start : start + batch_size])).to(device)
                capture[0] = True
                logits = model(x)
                if tta:
                    capture[0] = False
                    logits = (logits + model(torch.flip(x, dims=[3]))) / 2
                logits_out[start : start + len(x)] = logits.float().cpu().numpy()
                bar.update(len(x))
            feats = torch.cat(captured).numpy() if captured else np.zeros((0, 0), np.float32)
    finally:
        bar.close()
        handle.remove()
    return logits_out, feats


def feature_transform(features: np.ndarray) -> np.ndarray:
    """Signed square root: makes post-ReLU features closer to Gaussian."""
    f = np.asarray(features, dtype=np.float64)
    return np.sign(f) * np.sqrt(np.abs(f))

