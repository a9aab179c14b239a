"""Atomic training checkpoints, loaded without unpickling arbitrary objects."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from pneumoscan.outputs import atomic_write


def atomic_torch_save(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """Write `obj` to a temp file beside `path`, fsync it, then rename over `path`."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write(path, write)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by `atomic_torch_save` with `weights_only=True`."""
    return torch.load(path, map_location="cpu", weights_only=True)
