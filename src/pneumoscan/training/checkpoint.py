"""Atomic training checkpoints, loaded without unpickling arbitrary objects."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pneumoscan.artifact import ArtifactMeta, save_artifact
from pneumoscan.errors import InputError
from pneumoscan.outputs import atomic_write


def atomic_torch_save(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """Write `obj` to a temp file beside `path`, fsync it, then rename over `path`."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            try:
                torch.save(obj, handle)
            except RuntimeError as err:  # torch reports a failed write (a full disk) as "unexpected pos ..."
                raise OSError(f"torch.save failed: {err}; is the disk full?") from None
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write(path, write)


def save_weights(path: str | os.PathLike, model: nn.Module, meta: ArtifactMeta) -> Path:
    """`save_artifact`, with a failed write (safetensors' own error type, e.g. a full disk) as an InputError
    naming the file; the file that was there is kept whole."""
    from safetensors import SafetensorError

    try:
        return save_artifact(path, model, meta)
    except SafetensorError as err:
        raise InputError(f"{path}: cannot be written ({err}); free disk space or check the folder, then continue "
                         f"with --resume") from None


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by `atomic_torch_save` with `weights_only=True`."""
    return torch.load(path, map_location="cpu", weights_only=True)
