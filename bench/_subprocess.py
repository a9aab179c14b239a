"""What the benchmarks that run pneumoscan in a child process share: the model they run and the environment."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def model_or_shipped(parser: argparse.ArgumentParser, model: str | None) -> str:
    """`model` as given, else the shipped default model (a usage error naming --model when there is none)."""
    if model is not None:
        return model
    sys.path.insert(0, str(ROOT / "src"))
    from pneumoscan.artifact import default_model_path

    if not default_model_path().is_file():
        parser.error("no shipped default model (src/pneumoscan/weights/default.safetensors); pass --model PATH")
    return str(default_model_path())


def src_env() -> dict[str, str]:
    """This environment with the checkout's src/ first on PYTHONPATH: a child process runs this code."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
