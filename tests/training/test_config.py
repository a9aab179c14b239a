from __future__ import annotations

import json
from pathlib import Path

import pytest

from pneumoscan.errors import InputError
from pneumoscan.training.config import TrainConfig, train_config


def test_train_config_of_a_new_run_keeps_the_given_settings_and_defaults(tmp_path: Path) -> None:
    cfg = train_config({"data": "DATA", "out": str(tmp_path / "run"), "epochs": 2})
    assert (cfg.data, cfg.epochs, cfg.model, cfg.balance) == ("DATA", 2, "resnet10", "sampler")


def test_train_config_needs_data_for_a_new_run(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^train needs --data DIR"):
        train_config({"out": str(tmp_path / "run")})
    with pytest.raises(InputError, match="config.json: no run to resume here"):
        train_config({"out": str(tmp_path / "run")}, resume=True)


def test_train_config_of_a_resume_keeps_the_runs_settings_and_refuses_others(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(TrainConfig(data="DATA", out=str(run), seed=3, image_size=48).to_dict()))
    cfg = train_config({"out": str(run), "epochs": 5}, resume=True)
    assert (cfg.seed, cfg.epochs, cfg.image_size, cfg.data) == (3, 5, 48, "DATA")
    with pytest.raises(InputError, match=r"--seed 4 \(run: 3\): a resumed run keeps its settings"):
        train_config({"out": str(run), "seed": 4}, resume=True)
    (run / "config.json").write_text("[]")
    with pytest.raises(InputError, match="config.json: not a `pneumoscan train` run"):
        train_config({"out": str(run)}, resume=True)


def test_an_unknown_balance_is_refused_rather_than_trained_unbalanced() -> None:
    """argparse limits the CLI's --balance; a Python caller's typo used to train with neither balancing."""
    with pytest.raises(InputError, match=r"^--balance Sampler: must be one of sampler, weighted, none$"):
        TrainConfig(data="DATA", out="run", balance="Sampler").check()
    TrainConfig(data="DATA", out="run", balance="none").check()
