"""`train --init` from weights pneumoscan did not write: ImageNet weights the user has on disk.

torchvision's resnet18-f37072fd.pth / resnet50-0676ba61.pth (a state dict saved with torch.save, read here with
torch.load(weights_only=True), which unpickles no code) or timm's model.safetensors of resnet18/resnet50 (same
tensor names) start a `tv_resnet18` / `tv_resnet50` (models/tv_resnet.py). Tensors load by name; the RGB first
convolution becomes a grey one; the file's classifier (ImageNet's 1000 classes) is left out and the model keeps
its new one-logit head. A file that does not hold every tensor of the model below its head, with the right
shape, or holds tensors the model has no place for (another architecture), is refused. Nothing is downloaded.
Files pneumoscan wrote (pretrain's pretrained.safetensors, a model) keep their own path, pretrain.load_pretrained.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pneumoscan.errors import InputError, option, shell_word, words
from pneumoscan.models.registry import final_linear_name

PNEUMOSCAN_KEYS = {"pneumoscan_pretrained": "pneumoscan pretrain", "pneumoscan": "pneumoscan model"}
NESTED_KEYS = ("state_dict", "model")  # training checkpoints that wrap the state dict


def _safetensors_metadata(path: str | os.PathLike) -> dict[str, str] | None:
    """The metadata of a safetensors file (empty when it has none); None when `path` is not one."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            return handle.metadata() or {}
    except Exception:  # safetensors raises its own error types for other files
        return None


def written_by_pneumoscan(path: str | os.PathLike) -> bool:
    """Whether `path` is a safetensors file pneumoscan wrote (pretrain's weights or a model)."""
    return any(key in (_safetensors_metadata(path) or {}) for key in PNEUMOSCAN_KEYS)


def init_source(path: str | os.PathLike) -> dict[str, Any]:
    """What a run records about its --init file: name, SHA-256 and what wrote it."""
    from pneumoscan.artifact import file_sha256

    meta = _safetensors_metadata(path) or {}
    kind = next((label for key, label in PNEUMOSCAN_KEYS.items() if key in meta), "weights file matched by name")
    return {"file": Path(path).name, "path": os.path.abspath(path), "sha256": file_sha256(path), "kind": kind}


def _advice(model_name: str) -> str:
    from pneumoscan.models.tv_resnet import IMAGENET_FILES

    pretrain = f"the pretrained.safetensors of `pneumoscan pretrain --model {shell_word(model_name)}`"
    if model_name in IMAGENET_FILES:
        return f"pass {IMAGENET_FILES[model_name]}, or {pretrain}"
    fitting = words(f"--model {' or '.join(IMAGENET_FILES)}", " or ".join(f"model={name!r}" for name in IMAGENET_FILES))
    return f"ImageNet weights fit only {fitting}; for {model_name} pass {pretrain}"


def read_weights(path: str | os.PathLike, model_name: str) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file or of a state dict saved with torch.save (unwrapped from a checkpoint's
    'state_dict' or 'model' entry, and from DataParallel's 'module.' prefix); InputError naming the file else."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; {_advice(model_name)}")
    if _safetensors_metadata(path) is not None:
        data = load_file(str(path))
        if not data:
            raise InputError(f"{path}: holds no tensors; {_advice(model_name)}")
        return data
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on the way to refusing a file
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, a truncated one, or one holding code (refused by weights_only)
        pickled = re.search(r"GLOBAL (\S+)", str(exc))  # torch's own message is pages long and suggests unsafe loading
        why = (f"it holds Python objects ({pickled.group(1)}), not only tensors: save model.state_dict() instead; "
               if pickled else "")
        raise InputError(f"{path}: not a weights file (a state dict saved with torch.save, or .safetensors); {why}"
                         f"{_advice(model_name)}") from None
    for key in NESTED_KEYS:
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise InputError(f"{path}: holds no state dict (a mapping of tensor names to tensors); {_advice(model_name)}")
    if all(str(k).startswith("module.") for k in data):
        data = {k[len("module."):]: v for k, v in data.items()}
    return {str(k): v for k, v in data.items()}


# torchvision's ResNets by block kind and blocks per stage (timm's resnet18/34/50/101/152 use the same names)
_RESNETS = {(False, (2, 2, 2, 2)): 18, (False, (3, 4, 6, 3)): 34, (True, (3, 4, 6, 3)): 50,
            (True, (3, 4, 23, 3)): 101, (True, (3, 8, 36, 3)): 152}


def resnet_in_file(weights: dict[str, torch.Tensor]) -> str | None:
    """'ResNet-50' and the like when `weights` name a standard-width ResNet in torchvision's layout, else None."""
    first = weights.get("layer1.0.conv1.weight")
    if first is None or first.ndim != 4 or first.shape[0] != 64 or "conv1.weight" not in weights:
        return None  # not torchvision's names, or a wide ResNet (128 channels there)
    blocks = tuple(len({k.split(".")[1] for k in weights if k.startswith(f"layer{i}.") and k.count(".") >= 2})
                   for i in range(1, 5))
    depth = _RESNETS.get(("layer1.0.conv3.weight" in weights, blocks))
    return f"ResNet-{depth}" if depth else None


def _architecture(weights: dict[str, torch.Tensor], model_name: str) -> str:
    """What a refusal says the file is: the ResNet it holds and the --model that takes it, when it can tell."""
    from pneumoscan.models.registry import list_models

    held = resnet_in_file(weights)
    if held is None:
        return "another architecture"
    fitting = f"tv_resnet{held.split('-')[1]}"
    if fitting == model_name:
        return f"a {held} with other shapes"
    if fitting in list_models():
        return f"a {held}, which {option('model', fitting)} takes"
    return f"a {held}, which pneumoscan has no model for"


def _fit(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """`source` as a value for a model tensor shaped like `target`, or None when it cannot be."""
    if not source.is_floating_point():
        return None
    if source.shape == target.shape:
        return source
    if source.ndim == target.ndim == 4 and source.shape[1] == 3 and target.shape[1] == 1 and \
            (source.shape[0], *source.shape[2:]) == (target.shape[0], *target.shape[2:]):
        # An RGB network sees a grey image as three equal channels, and a convolution of three equal channels
        # is one convolution with the kernels summed over the channels: summing keeps its response exactly.
        return source.sum(1, keepdim=True)
    return None


def load_transfer(model: nn.Module, path: str | os.PathLike, model_name: str) -> str:
    """Copy the tensors of `path` into `model` by name (see the module docstring); return a one-line summary.
    InputError naming the file, how many tensors matched and what to pass when it does not fit."""
    weights = read_weights(path, model_name)
    head = final_linear_name(model) + "."

    def counted(key: str) -> bool:  # the head is new; batch counters are bookkeeping, not weights
        return not key.startswith(head) and not key.endswith("num_batches_tracked")

    own = {k: v for k, v in model.state_dict().items() if counted(k)}
    loaded = {k: fit for k, v in own.items() if k in weights and (fit := _fit(weights[k], v)) is not None}
    missing = [k for k in own if k not in loaded]
    foreign = [k for k in weights if counted(k) and k not in own]
    if missing or foreign:
        if missing:
            example = missing[0]
            found = f"; the file has {tuple(weights[example].shape)}" if example in weights else ""
            detail = f"e.g. {example} {tuple(own[example].shape)}{found}; the file's first: {next(iter(weights))}"
        else:
            detail = f"but the file also holds {len(foreign)} tensors it has no place for, e.g. {foreign[0]}"
        raise InputError(f"{path}: {len(loaded)} of the {len(own)} tensors of {model_name} (below its head) match "
                         f"it by name and shape ({detail}): {_architecture(weights, model_name)}; {_advice(model_name)}")
    broken = [k for k, v in loaded.items() if not torch.isfinite(v).all()]
    if broken:
        raise InputError(f"{path}: holds NaN or infinite weights (e.g. {broken[0]}); pass an intact copy")
    model.load_state_dict(loaded, strict=False)
    grey = [k for k in loaded if loaded[k].shape != weights[k].shape]
    return (f"init: {len(loaded)} tensors from {path}" + (f" ({', '.join(grey)} summed over its RGB channels)" if grey
            else "") + f"; {head[:-1]} starts anew")
