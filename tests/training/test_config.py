from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from pneumoscan.cli import main
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
    # a run started without --image-size (the model's own): '--image-size 32 (run: None)' named a value never typed
    (run / "config.json").write_text(json.dumps(TrainConfig(data="DATA", out=str(run)).to_dict()))
    with pytest.raises(InputError, match=r"--image-size 32 \(run: left out\): a resumed run keeps its settings"):
        train_config({"out": str(run), "image_size": 32}, resume=True)
    (run / "config.json").write_text("[]")
    with pytest.raises(InputError, match="config.json: not a `pneumoscan train` run"):
        train_config({"out": str(run)}, resume=True)


def test_an_unknown_balance_is_refused_rather_than_trained_unbalanced() -> None:
    """argparse limits the CLI's --balance; a Python caller's typo used to train with neither balancing."""
    with pytest.raises(InputError, match=r"^--balance Sampler: must be one of sampler, weighted, none$"):
        TrainConfig(data="DATA", out="run", balance="Sampler").check()
    TrainConfig(data="DATA", out="run", balance="none").check()


def test_a_run_records_where_its_data_resolved_beside_the_path_as_typed(tiny_run: Path, tiny_data: Path) -> None:
    """config.json and the model file's training record keep `--data` as typed and, new, the absolute path it
    resolved to, so the training data is found again from any folder."""
    from pneumoscan.artifact import read_meta

    for config in (json.loads((tiny_run / "config.json").read_text()),
                   read_meta(tiny_run / "model.safetensors").training["config"]):
        assert (config["data"], config["data_resolved"]) == (str(tiny_data), str(tiny_data.resolve()))


def test_a_resume_without_data_from_another_folder_reads_the_data_the_run_started_with(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An older run records `--data data` relative to where it was started (lab/); resumed from another folder
    without --data, `data` was read from there (an unrelated folder, or none); its config.json's `out` places it."""
    run = tmp_path / "lab" / "runs" / "old"
    run.mkdir(parents=True)
    (tmp_path / "lab" / "data").mkdir()
    (tmp_path / "elsewhere" / "data").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(TrainConfig(data="data", out="runs/old").to_dict()))
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert train_config({"out": str(run)}, resume=True).data == str(tmp_path / "lab" / "data")
    monkeypatch.chdir(tmp_path / "lab")  # where it was started: kept as typed
    assert train_config({"out": "runs/old"}, resume=True).data == "data"


@pytest.mark.parametrize("setting, value, message", [
    ("warmup_epochs", float("nan"), "warmup_epochs=nan: must be 0 (none) or more, and finite"),
    ("warmup_epochs", -3.0, "warmup_epochs=-3.0: must be 0 (none) or more"),
    ("weight_decay", -1.0, "weight_decay=-1.0: must be 0 (off) or more, and finite"),
    ("weight_decay", float("inf"), "weight_decay=inf: must be 0 (off) or more, and finite"),
    ("seed", -1, "seed=-1: must be 0 to 4294967295"),
    ("split_seed", 2**32, "split_seed=4294967296: must be 0 to 4294967295"),
    ("image_size", 4097, "image_size=4097: must be from 16 to 4096"),  # its model file would be refused
])
def test_api_train_refuses_out_of_range_settings_before_decoding(setting: str, value: float, message: str,
                                                                  tiny_data: Path, tmp_path: Path) -> None:
    """Once: nan warmup failed after decoding with numpy's bare ValueError, negative weight decay with torch's,
    an infinite one trained to 'training diverged', a negative warmup or seed went through or failed in numpy."""
    from pneumoscan import api

    with pytest.raises(InputError, match=f"^{re.escape(message)}"):
        api.train(tiny_data, tmp_path / "run", progress=False, verbose=False, **{setting: value})
    assert not (tmp_path / "run").exists()
    TrainConfig(data="DATA", out="run", warmup_epochs=0.0, weight_decay=0.0, seed=2**32 - 1, image_size=4096).check()


def test_a_run_saved_with_a_negative_warmup_resumes_on_the_command_line(tiny_data: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The Python API took warmup_epochs=-3 before it was checked, and its learning-rate schedule was made with it;
    a resume cannot change it, so refusing one stranded the run (naming a --warmup-epochs flag `train` lacks)."""
    from pneumoscan import api
    from pneumoscan.cli import main

    run = tmp_path / "run"
    api.train(tiny_data, run, progress=False, verbose=False, model="cnn", image_size=32, epochs=1, batch_size=16)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "warmup_epochs": -3.0}))  # as that API saved it
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert json.loads((run / "config.json").read_text())["warmup_epochs"] == -3.0
    # a new run is refused, naming the setting as the Python API takes it: `train` has no flag for it
    with pytest.raises(InputError, match=r"^warmup_epochs=-3\.0: must be 0 \(none\) or more"):
        TrainConfig(data="DATA", out="new", warmup_epochs=-3.0).check()
    with pytest.raises(InputError, match=r"^weight_decay=-1\.0: must be"):
        TrainConfig(data="DATA", out="new", weight_decay=-1.0).check()
    with pytest.raises(InputError, match=r"^--epochs 0: must be at least 1"):
        TrainConfig(data="DATA", out="new", epochs=0).check()


def test_api_train_warns_when_weight_decay_times_lr_would_collapse_the_model(tiny_data: Path, tmp_path: Path) -> None:
    """weight_decay=1000 at lr=0.002 flipped every weight each step and trained a collapsed model without a word."""
    from pneumoscan import api

    with pytest.warns(UserWarning, match=r"^weight_decay=1000\.0 with lr=0\.002: AdamW scales every weight by "
                                         r"1 - lr x weight_decay \(-1\) each step"):
        api.train(tiny_data, tmp_path / "run", progress=False, verbose=False, model="cnn", image_size=32, epochs=1,
                  batch_size=16, lr=0.002, weight_decay=1000.0, warmup_epochs=0)
    assert TrainConfig(data="DATA", out="run").decay_warning() == ""
    assert TrainConfig(data="DATA", out="run", lr=1e30).decay_warning().startswith("weight_decay=0.05 with --lr 1e+30")


@pytest.mark.parametrize("out", [".", "NORMAL/run", "train/PNEUMONIA/run", "Train"])
def test_train_refuses_an_out_in_the_data_folder_before_writing(out: str, tiny_data: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`train --data D --out D` (or --out inside a class folder) wrote the run's files among the class folders
    silently; a folder of its own in the data folder (D/runs/) is no split or class folder."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    given = data / out
    assert main(["train", "--data", str(data), "--out", str(given), "--model", "cnn", "--epochs", "1",
                 "--image-size", "32", "--quiet"]) == 2
    said = "is" if out == "." else "is inside"
    assert capsys.readouterr().err == (
        f"pneumoscan: error: {given}: {said} the data folder {data}, where what is written would sit among its "
        f"labelled films; give --out a folder outside it, e.g. --out runs/data\n")
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
    TrainConfig(data=str(data), out=str(data / "runs" / "r")).check()


def test_resuming_a_run_made_in_the_data_folder_says_to_move_it_out(
        tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A run made in a class folder before train refused one there was refused on --resume with 'e.g. --out
    runs/data', where a resume then found no run; a resume may change --out, so the run moved out resumes."""
    import pneumoscan.data.layout as layout

    run = tiny_dataset / "train" / "NORMAL" / "r"
    with monkeypatch.context() as patched:  # as before the check
        patched.setattr(layout, "check_out_of_data", lambda *args, **kwargs: None)
        assert main(["train", "--data", str(tiny_dataset), "--out", str(run), "--model", "cnn", "--epochs", "1",
                     "--image-size", "32", "--quiet"]) == 0
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"pneumoscan: error: {run}: is inside the data folder {tiny_dataset}, where what is written would sit among "
        f"its labelled films; move the run out of it and resume it there with --resume --out runs/r: mkdir -p runs && "
        f"mv {run} runs/r\n")
    (tmp_path / "runs").mkdir()
    shutil.move(run, tmp_path / "runs" / "r")
    assert main(["train", "--resume", "--out", "runs/r", "--epochs", "2", "--quiet"]) == 0
    assert json.loads((tmp_path / "runs" / "r" / "config.json").read_text())["epochs"] == 2
