"""`train --compile`: the training step through torch.compile. Same model, same recipe, faster epochs."""
from __future__ import annotations

import os
import shutil
import warnings

import torch
from torch import nn

CXX_CANDIDATES = ("g++", "clang++", "c++")


class CompileWarning(UserWarning):
    """--compile was asked for but training goes on without it."""


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile would build CPU kernels with ($CXX first), or None."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else []
    for name in (*names, *CXX_CANDIDATES):
        found = shutil.which(name)
        if found:
            return found
    return None


def compile_for_training(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` compiled for its training steps, or `model` itself (with a CompileWarning) when it cannot be.

    The compiled module shares `model`'s parameters and buffers, so checkpoints and the artifact are written from
    `model` unchanged. A kernel that fails to build falls back to eager execution instead of stopping the run.
    """
    if device.type == "cpu" and cxx_compiler() is None:
        warnings.warn("--compile: no C++ compiler (g++, clang++ or $CXX) on PATH for torch.compile's CPU kernels; "
                      "training without it (install one, e.g. `apt install g++`, to use --compile)", CompileWarning,
                      stacklevel=2)
        return model
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True  # a failed compile runs that code eagerly; the run goes on
    return torch.compile(model, dynamic=False)
