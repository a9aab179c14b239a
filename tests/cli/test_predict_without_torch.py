"""`pneumoscan predict` with the shipped model on ONNX Runtime (backend auto on a CPU machine): its export on file
serves, so torch is never imported (its import took 1.5 s of the 2.4 s one film took), and the printed
probabilities are PyTorch's to the printed digits."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from pneumoscan.inference.onnx_backend import GPU_DEVICE_FILES
from tests.conftest import SAMPLE

FILMS = [str(sorted((SAMPLE / "train" / name).glob("*.jpeg"))[0]) for name in ("NORMAL", "PNEUMONIA")]


def predict(*args: str) -> tuple[set[str], list[str]]:
    """The modules a `pneumoscan predict` process imported (`-X importtime`) and the probabilities it printed."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "pneumoscan", "predict", "--quiet", *args],
                          capture_output=True, text=True, check=True)
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return imported, re.findall(r"P\(pneumonia\)=([0-9.]+)", done.stdout)


@pytest.mark.skipif(any(os.path.exists(path) for path in GPU_DEVICE_FILES),
                    reason="a GPU shows here: backend auto asks torch whether CUDA is usable")
def test_predict_on_the_shipped_export_never_imports_torch_and_prints_pytorchs_probabilities() -> None:
    imported, printed = predict(*FILMS)
    assert "onnxruntime" in imported and "torch" not in imported
    imported_by_torch, printed_by_torch = predict("--backend", "torch", *FILMS)
    assert "torch" in imported_by_torch
    assert len(printed) == 2 and printed == printed_by_torch
