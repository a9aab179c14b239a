from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pneumoscan.artifact import load_artifact, read_meta


def test_tiny_run_writes_everything(tiny_run: Path) -> None:
    for name in ("model.safetensors", "best.safetensors", "last.pt", "history.csv", "config.json", "split.json",
                 "val_predictions.csv"):
        assert (tiny_run / name).is_file(), name
    rows = list(csv.DictReader((tiny_run / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    meta = read_meta(tiny_run / "model.safetensors")
    assert meta.image_size == 32 and meta.class_names == ["NORMAL", "PNEUMONIA"]
    assert 0.0 <= meta.threshold <= 1.0
    assert meta.val_metrics["recall"]["value"] >= 0.95 or meta.val_metrics["n_positive"] < 20
    split = json.loads((tiny_run / "split.json").read_text())
    assert split["method"].startswith("patient-aware")
    model, meta2 = load_artifact(tiny_run)
    assert meta2 == meta and not model.training


def test_ema_averages_parameters_and_copies_batchnorm_statistics() -> None:
    import torch

    from pneumoscan.models.registry import create_model
    from pneumoscan.training.recipe import update_ema

    model, ema = create_model("cnn"), create_model("cnn")
    ema.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        for name, b in model.named_buffers():
            if "running_var" in name:
                b.fill_(0.05)
    before = [p.clone() for p in ema.parameters()]
    update_ema(ema, model, decay=0.9, step=10_000)
    for old, new, cur in zip(before, ema.parameters(), model.parameters()):
        assert torch.allclose(new, 0.9 * old + 0.1 * cur, atol=1e-6)
    for (name, e), (_, b) in zip(ema.named_buffers(), model.named_buffers()):
        assert torch.equal(e, b), name


def test_a_run_syncs_what_a_power_loss_must_not_lose_and_the_image_cache_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only last.pt was fsynced, and no folder: a power loss could leave a renamed model.safetensors empty. The
    decoded-image cache is not synced: an entry lost is decoded again, and syncing would slow its writes."""
    import os

    from pneumoscan.data.cache import load_image_set
    from pneumoscan.data.layout import discover
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.trainer import train
    from tests.conftest import write_xray

    data = tmp_path / "data"
    for p in range(8):
        write_xray(data / "train" / "NORMAL" / f"IM-{p:04d}-0001.jpeg", 0, 2 * p, size=24)
        write_xray(data / "train" / "PNEUMONIA" / f"person{p}_virus_{p}.jpeg", 1, 2 * p + 1, size=24)
    synced: list[int] = []  # inodes: a temp file's is its file's after the rename
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_ino), real(fd))[1])
    cache = tmp_path / "cache"
    load_image_set(discover(data)["train"], 16, cache, progress=False)
    assert list(cache.iterdir()) and synced == []
    run = tmp_path / "run"
    train(TrainConfig(data=str(data), out=str(run), model="cnn", image_size=16, epochs=1, batch_size=8,
                      val_fraction=0.25, cache_dir=str(cache)), progress=False)
    for name in ("model.safetensors", "best.safetensors", "last.pt", "history.csv", "config.json", "split.json",
                 "val_predictions.csv"):
        assert (run / name).stat().st_ino in synced, name
    assert run.stat().st_ino in synced
    assert not {p.stat().st_ino for p in (cache, *cache.iterdir())} & set(synced)


def test_a_runs_best_weights_are_refused_as_a_model_naming_the_run_to_pass(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # best.safetensors holds no threshold chosen on validation: evaluate and predict decided every film at 0.5
    import shutil

    from pneumoscan.artifact import resolve_model_path
    from pneumoscan.cli import main
    from pneumoscan.errors import InputError

    film = next((tiny_run.parent / "data" / "test" / "NORMAL").iterdir())
    assert main(["predict", "--model", str(tiny_run / "best.safetensors"), str(film)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"pneumoscan: error: {tiny_run / 'best.safetensors'}: the best epoch's weights as training keeps them, without "
        f"the threshold chosen on validation (every film would be decided at 0.5); pass the run folder {tiny_run} "
        f"(its model.safetensors: these weights with that threshold)")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(tiny_run / "best.safetensors", unfinished)
    with pytest.raises(InputError, match=r"of a run that has not finished; finish it with `pneumoscan train --out "
                                         r".*unfinished --resume`, then pass the run folder$"):
        resolve_model_path(unfinished / "best.safetensors")
    chosen = tmp_path / "best.safetensors"  # a finished model saved under that name is a model like any other
    shutil.copy(tiny_run / "model.safetensors", chosen)
    assert resolve_model_path(chosen) == chosen


def test_the_folder_of_a_run_that_has_not_finished_is_refused_saying_to_wait_or_resume(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--model RUN while RUN was still training said 'no model.safetensors in this folder; train first or point
    --model at an artifact', as for an empty folder."""
    import shutil

    import pneumoscan
    from pneumoscan.cli import main

    running = tmp_path / "running"
    running.mkdir()
    for kept in ("best.safetensors", "last.pt", "config.json"):  # a run's files before its model.safetensors
        shutil.copy(tiny_run / kept, running)
    film = next((tiny_run.parent / "data" / "test" / "NORMAL").iterdir())
    assert main(["predict", "--model", str(running), str(film)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"pneumoscan: error: {running}: a training run that has not finished (its model.safetensors is written at "
        f"the end); wait for it to end, or finish it with `pneumoscan train --out {running} --resume` if it was "
        f"interrupted, then pass the run folder again")
    with pytest.raises(pneumoscan.InputError, match=r"finish it with pneumoscan\.train\(None, '.*running', "
                                                    r"resume=True\) if it was interrupted"):
        pneumoscan.Predictor(running)


@pytest.mark.parametrize("name", ["last.pt", "config.json", "history.csv"])
def test_a_runs_other_files_are_refused_as_a_model_naming_the_run_to_pass(
        tiny_run: Path, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    # --model RUN/last.pt said "not a pneumoscan model file (Error while deserializing header: header too large)"
    import shutil

    from pneumoscan.artifact import resolve_model_path
    from pneumoscan.cli import main
    from pneumoscan.errors import InputError

    film = next((tiny_run.parent / "data" / "test" / "NORMAL").iterdir())
    assert main(["predict", "--model", str(tiny_run / name), str(film)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"pneumoscan: error: {tiny_run / name}: a file of a training run, not a model; pass the run folder {tiny_run}")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for kept in ("best.safetensors", name):
        shutil.copy(tiny_run / kept, unfinished)
    with pytest.raises(InputError, match=rf"{name}: a file of a training run, not a model, of a run that has not "
                                         r"finished; finish it with `pneumoscan train --out .*unfinished --resume`"):
        resolve_model_path(unfinished / name)


def test_the_epoch_line_rounds_the_training_loss_once_as_the_progress_bar_does(
        tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # the line formatted history.csv's 6-decimal loss to 4: a mean of 0.66575003 was 0.66575 there, shown as
    # 0.6657, while the bar, formatting the mean itself, ended at 0.6658
    import torch

    from pneumoscan.cli import main
    from pneumoscan.training import trainer

    monkeypatch.setattr(trainer.Trainer, "_loss", lambda self, logits, targets, pos_weight:
                        logits.sum() * 0 + torch.tensor(0.66575003, dtype=torch.float64))
    bars: list[str] = []
    real_bar = trainer.progress_bar

    def recorded_bar(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        bar = real_bar(*args, **kwargs)
        real_postfix = bar.set_postfix
        bar.set_postfix = lambda **values: (bars.append(values["loss"]), real_postfix(**values))
        return bar

    monkeypatch.setattr(trainer, "progress_bar", recorded_bar)
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "run"), "--model", "cnn",
                 "--image-size", "32", "--epochs", "1", "--batch-size", "16", "--consistency", "0"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch   1"))
    assert bars[-1] == "0.6658" and line.startswith("epoch   1  loss 0.6658  "), (bars, line)
    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    assert float(rows[0]["train_loss"]) == 0.66575


def test_stored_validation_figures_draw_a_patients_films_together(shared_patient_run: Path) -> None:
    """Every validation patient has two films: the stored figures (`val_metrics`, served at GET /model) resampled
    them one by one as independent films, with intervals too narrow, where `evaluate` draws patients. The stored
    scores say which films are one patient's, by an index: no PatientID is written."""
    import warnings

    from pneumoscan.evaluation.bootstrap import summarize
    from pneumoscan.evaluation.metrics import UndefinedMetricWarning

    meta = read_meta(shared_patient_run / "model.safetensors")
    paths = [row["path"] for row in csv.DictReader((shared_patient_run / "val_predictions.csv").open())]
    patients = [Path(path).name.rsplit(".", 1)[0] for path in paths]  # 1.2.<label>.<patient>.<film>: PatientID
    groups = meta.val_scores["groups"]
    assert len(groups) == len(patients) == 2 * len(set(patients))
    assert [[g == h for h in groups] for g in groups] == [[a == b for b in patients] for a in patients]
    assert sorted(set(groups)) == list(range(len(set(patients))))
    assert set(meta.val_scores) == {"labels", "probs", "groups"}
    info = meta.val_metrics["intervals"]
    assert info["resampled"] == "patients" and info["n_resampled"] == len(set(patients))
    with warnings.catch_warnings():  # NPV undefined at the stored threshold: not what is compared
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        expected = summarize(meta.val_scores["labels"], meta.val_scores["probs"], meta.threshold, n_boot=500,
                             groups=patients)
    assert meta.val_metrics["roc_auc"] == expected["roc_auc"] and meta.val_metrics["brier"] == expected["brier"]
