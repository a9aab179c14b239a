"""Run a torch model over preprocessed uint8 images in batches (torch is imported by the functions that use it:
`sigmoid` serves the ONNX backend, which runs without it)."""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from pneumoscan.data.preprocess import Preprocessing

if TYPE_CHECKING:
    import torch
    from torch import nn


def device_for(preferred: str | torch.device | None = None) -> torch.device:
    """CUDA when present and this PyTorch build runs on it (`cuda_usable`), or when asked; else CPU. On CUDA,
    convolutions are computed in full float32: with cuDNN's default TF32 (inputs rounded to 10 mantissa bits) a GPU's
    scores, the stored validation scores and threshold of a run trained there among them, would differ from the
    CPU's and ONNX Runtime's by far more than float32 rounding."""
    import torch

    device = torch.device(preferred or ("cuda" if cuda_usable() else "cpu"))
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
    return device


def cuda_usable() -> bool:
    """Whether torch sees a CUDA (or ROCm) GPU that this PyTorch build has kernels for (`unsupported_gpu`)."""
    import torch

    return torch.cuda.is_available() and unsupported_gpu() is None


@lru_cache(maxsize=1)
def unsupported_gpu() -> str | None:
    """The GPU's name when this PyTorch build has no kernels for its CUDA capability (every command would stop at its
    first operation with 'no kernel image is available'), warned about once; None when it has, or cannot tell (a ROCm
    or CPU build lists no sm_/compute_ architectures). Compiled code (sm_XY) runs on capability X.Y and later minors of
    major X; PTX (compute_XY) is compiled for any capability from X.Y on."""
    import torch

    from pneumoscan.errors import warn

    arches = torch.cuda.get_arch_list()
    codes = [(kind, int(arch.split("_")[1].rstrip("abf"))) for arch in arches
             for kind in ("sm", "compute") if arch.startswith(f"{kind}_")]
    if not codes:
        return None
    major, minor = torch.cuda.get_device_capability()
    capability = major * 10 + minor
    if any(code <= capability and (kind == "compute" or code // 10 == major) for kind, code in codes):
        return None
    name = torch.cuda.get_device_name()
    warn(f"the GPU {name} (CUDA capability {major}.{minor}) is not supported by this PyTorch build (made for "
         f"{' '.join(arches)}): running on the CPU; install a PyTorch build for it, or hide the GPU with "
         f"CUDA_VISIBLE_DEVICES= to run on the CPU without this warning")
    return name


def predict_logits(
    model: nn.Module, images: np.ndarray, preprocessing: Preprocessing, *, batch_size: int = 128, tta: bool = False,
) -> np.ndarray:
    """Logits for uint8 images (N, S, S) preprocessed as the model was trained (`meta.preprocessing`);
    with `tta`, the mean logit of the image and its mirror."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    out = np.empty(len(images), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = preprocessing(np.asarray(images[start : start + batch_size])).to(device)
            logits = model(x)
            if tta:
                logits = (logits + model(torch.flip(x, dims=[3]))) / 2
            out[start : start + len(x)] = logits.float().cpu().numpy()
    return out


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, in float64: in float32 every logit above about 17
    gives exactly 1.0, and such ties would blur the ranking that ROC and PR AUC measure."""
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(logits, dtype=np.float64), -60, 60)))


def predict_probs(model: nn.Module, images: np.ndarray, preprocessing: Preprocessing, *, batch_size: int = 128,
                  tta: bool = False) -> np.ndarray:
    """P(PNEUMONIA) for uint8 images (N, S, S)."""
    return sigmoid(predict_logits(model, images, preprocessing, batch_size=batch_size, tta=tta))
