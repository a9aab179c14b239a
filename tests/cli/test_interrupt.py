"""Ctrl+C: exit code 130 and, for a training or pretraining run, the command that continues it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pneumoscan.cli import main


def _interrupt_after(files: tuple[str, ...]) -> Any:
    """A stand-in for train or pretrain that writes `files` in the run folder, then is interrupted."""
    def run(cfg: Any, **_: Any) -> Path:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        for name in files:
            (Path(cfg.out) / name).write_text("{}")
        raise KeyboardInterrupt
    return run


def test_an_interrupted_pretraining_is_continued_with_pretrain_not_train(tiny_dataset: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import pneumoscan.training.pretrain as pretrain

    monkeypatch.setattr(pretrain, "pretrain", _interrupt_after((pretrain.PRETRAIN_CHECKPOINT,)))
    out = tmp_path / "pre"
    assert main(["pretrain", "--data", str(tiny_dataset), "--out", str(out), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert f"pneumoscan pretrain --data {tiny_dataset} --out {out} --resume" in err
    assert "pneumoscan train" not in err


def test_an_interrupted_training_names_its_own_run_folder(tiny_dataset: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import pneumoscan.training.trainer as trainer

    monkeypatch.setattr(trainer, "train", _interrupt_after(("config.json",)))
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(out), "--quiet"]) == 130
    assert f"pneumoscan train --out {out} --resume" in capsys.readouterr().err

    monkeypatch.setattr(trainer, "train", _interrupt_after(()))  # stopped while decoding: nothing to resume
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "early"), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "--resume" not in err and "start the run again" in err


def test_an_interrupted_evaluation_does_not_talk_of_training(tiny_run: Path, tiny_data: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import pneumoscan.evaluation.evaluate as evaluate

    def interrupted(*_: Any, **__: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "evaluate", interrupted)
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(tiny_data)]) == 130
    assert capsys.readouterr().err.strip() == "pneumoscan: interrupted"
