"""User mistakes and failures in training that must end in one line naming the fix, never a traceback."""
from __future__ import annotations

from pathlib import Path

import pytest

from pneumoscan.cli import main
from pneumoscan.errors import InputError
from pneumoscan.training.config import TrainConfig

QUICK = ["--model", "cnn", "--image-size", "32", "--epochs", "1", "--batch-size", "16", "--quiet"]


@pytest.mark.parametrize("option, value", [("lr", float("inf")), ("lr", float("nan")), ("mixup", float("inf")),
                                           ("consistency", float("inf")), ("augment", float("inf"))])
def test_non_finite_settings_are_refused(option: str, value: float) -> None:
    with pytest.raises(InputError, match=f"--{option} {value}: must be .*finite"):
        TrainConfig(data="d", out="o", **{option: value}).check()


def test_a_diverging_run_stops_with_the_fix(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *QUICK, "--lr", "1e6"]) == 2
    err = capsys.readouterr().err
    assert "training diverged in epoch 1" in err and "lower --lr" in err and "Traceback" not in err
    assert not (run / "last.pt").exists() and not (run / "best.safetensors").exists()
