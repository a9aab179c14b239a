"""User mistakes and failures in training that must end in one line naming the fix, never a traceback."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pneumoscan.cli import main
from pneumoscan.errors import InputError
from pneumoscan.training.config import TrainConfig
from tests.conftest import disk_full, full_safetensors

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


def test_a_last_batch_of_one_image_trains_with_batch_normalisation(tiny_dataset: Path, tmp_path: Path) -> None:
    from pneumoscan.training.run_data import prepare_data
    from pneumoscan.training.recipe import steps_per_epoch
    from pneumoscan.training.trainer import train

    n = len(prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path)), 16, False).train.labels)
    assert steps_per_epoch(n, n - 1) == 1 and steps_per_epoch(2 * n + 1, 2) == n and steps_per_epoch(n, n) == 1
    # the mlp's BatchNorm1d cannot train on one image; one view, so the batch is not doubled
    cfg = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "run"), model="mlp", image_size=16, epochs=1,
                      batch_size=n - 1, consistency=0)
    assert train(cfg, progress=False).is_file()
    with pytest.raises(InputError, match="--batch-size 1: must be at least 2"):
        TrainConfig(data="d", out="o", batch_size=1).check()


def test_train_never_replaces_a_model_it_cannot_resume(tiny_dataset: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *QUICK]) == 0
    (run / "last.pt").unlink()  # e.g. deleted to save space, or a folder `ensemble` or `set-threshold` wrote
    model = (run / "model.safetensors").read_bytes()
    for resume in ([], ["--resume"]):
        capsys.readouterr()
        assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *QUICK, *resume]) == 2
        assert "a model is already there" in capsys.readouterr().err
    assert (run / "model.safetensors").read_bytes() == model


def test_train_into_the_folder_of_every_run_is_refused(tiny_dataset: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    # train --out runs (the run's own name forgotten) trained into runs/, its files among the other runs' folders
    runs = tmp_path / "runs"
    for name, kept in (("first", "last.pt"), ("ens", "model.safetensors")):
        (runs / name).mkdir(parents=True)
        (runs / name / "config.json").write_text("{}")
        (runs / name / kept).write_bytes(b"")
    (runs / "notes").mkdir()  # a folder that is no run is not named
    assert main(["train", "--data", str(tiny_dataset), "--out", str(runs), *QUICK]) == 2
    assert capsys.readouterr().err.strip() == (
        f"pneumoscan: error: {runs}: holds other runs (ens/, first/), so it is no run of its own; give --out a new "
        f"folder for this run, such as {runs / 'NAME'}")
    assert sorted(p.name for p in runs.iterdir()) == ["ens", "first", "notes"]


def test_resume_refuses_data_with_other_images(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    run, other = tmp_path / "run", tmp_path / "other"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *QUICK]) == 0
    shutil.copytree(tiny_dataset, other)
    for path in sorted((other / "train" / "NORMAL").iterdir())[:4]:
        path.unlink()
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--data", str(other), "--epochs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds other images than the run" in err and "where the run had" in err
    assert (run / "history.csv").read_text().count("\n") == 2  # header and epoch 1: nothing trained on other data
    shutil.rmtree(other)
    shutil.copytree(tiny_dataset, other)  # the same images, moved: welcome
    assert main(["train", "--out", str(run), "--resume", "--data", str(other), "--epochs", "2", "--quiet"]) == 0


def full_torch(*_: object, **__: object) -> None:
    """What torch.save raises when the disk fills mid-write: its own error, over the OSError of the write."""
    try:
        raise disk_full()
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 444032 vs 443924")


class FullDictWriter:
    """csv.DictWriter on a full disk (history.csv)."""

    def __init__(self, *_: object, **__: object) -> None:
        raise disk_full()


def test_a_full_disk_keeps_the_last_good_files_and_says_so(tiny_dataset: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    """Whichever file the disk fills on, one line names it, says to free space and how to continue the run; the
    files already there stay whole, and the run continues once there is room."""
    import csv

    import safetensors.torch
    import torch

    from pneumoscan.training.checkpoint import load_checkpoint

    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *QUICK]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}

    # in the order a resumed epoch writes them; the model file last, as a run that has trained its epochs ends
    for module, name, fake, failed in ((csv, "DictWriter", FullDictWriter, "history.csv"),
                                       (torch, "save", full_torch, "last.pt"),
                                       (safetensors.torch, "save_file", full_safetensors, ".safetensors")):
        capsys.readouterr()
        with monkeypatch.context() as patch:
            patch.setattr(module, name, fake)
            assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
        assert len(errors) == 1 and "Traceback" not in errors[0], errors
        assert f"{failed}: cannot be written (No space left on device); free disk space; continue the run with " \
               f"`pneumoscan train --out {run} --resume`" in errors[0]
        assert not list(run.glob(".*.tmp"))
        assert (run / "model.safetensors").read_bytes() == before["model.safetensors"]
        assert load_checkpoint(run / "last.pt")["state"]["epoch"] in (1, 2)
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert load_checkpoint(run / "last.pt")["state"]["epoch"] == 2


def test_a_resume_interrupted_before_its_model_was_written_writes_it_next_time(
        tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pneumoscan.training.trainer as trainer
    from pneumoscan.artifact import read_meta

    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *QUICK]) == 0

    def ctrl_c(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # Ctrl-C after the last epoch's checkpoint, while the model is being made
        patch.setattr(trainer, "finish_artifact", ctrl_c)
        assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 130
    assert read_meta(run / "model.safetensors").training["epochs_run"] == 1
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert read_meta(run / "model.safetensors").training["epochs_run"] == 2  # not the model of the 1-epoch run


def test_a_resume_with_other_epochs_or_moved_data_says_so_and_records_it(tiny_dataset: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    import json

    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *QUICK]) == 0
    moved = tiny_dataset.rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--data", str(moved), "--epochs", "2", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "resuming" in out.out + out.err and "after epoch 1" in out.out + out.err
    assert "resuming" in out.out  # where it continues: progress, on stdout; what differs: a warning, on stderr
    assert "pneumoscan: warning: --epochs 2 (run: 1): from epoch 2 on, the learning rate follows the cosine schedule " \
           "of a 2-epoch run" in out.err
    assert "cosine schedule" not in out.out
    saved = json.loads((run / "config.json").read_text())
    assert (saved["epochs"], saved["data"], saved["model"]) == (2, str(moved), "cnn")  # what the report and a resume read
    assert main(["train", "--out", str(run), "--resume", "--epochs", "3", "--quiet"]) == 0  # the data's new home


def test_a_resume_with_more_epochs_says_from_what_to_what_the_learning_rate_moves(
        tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # it said only that a 4-epoch schedule applied from epoch 3 on: not that the rate jumps up there (0.0005 to 0.00083
    # in a tiny run), as it then follows a 4-epoch run's schedule
    import csv

    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *QUICK, "--epochs", "2"]) == 0
    end_of_2 = float(list(csv.DictReader((run / "history.csv").open()))[-1]["lr"])
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--epochs", "4", "--quiet"]) == 0
    # a 4-epoch run with 1 warm-up epoch starts epoch 3 one third into its cosine: lr 2e-3 * (1 + cos(pi / 3)) / 2
    assert (f"pneumoscan: warning: --epochs 4 (run: 2): from epoch 3 on, the learning rate follows the cosine schedule "
            f"of a 4-epoch run, so it moves from {end_of_2:.3g} (end of epoch 2) to 0.0015; the model will differ from "
            f"one of a run started with --epochs 4") in capsys.readouterr().err


def test_resuming_an_early_stopped_run_with_other_epochs_says_none_is_left(
        tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    # it warned of a new learning-rate schedule, though the stopped run trains no epoch
    import pneumoscan.training.trainer as trainer

    def ctrl_c(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    run = tmp_path / "run"
    with monkeypatch.context() as patch:  # no better validation AUC after epoch 1: stopped after epoch 2 of 4
        patch.setattr(trainer, "roc_auc", lambda *_: 0.5)
        patch.setattr(trainer, "finish_artifact", ctrl_c)  # and killed while it made the model
        assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *QUICK, "--epochs", "4",
                     "--patience", "1"]) == 130
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--epochs", "6", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert ("pneumoscan: warning: --epochs 6 (run: 4): no epoch is left to train, as the run stopped early after epoch "
            "2 (--patience); the model is made from the best of the 2 epochs trained") in err, err
    assert "cosine schedule" not in err


@pytest.mark.parametrize("killed", [True, False])
def test_a_run_that_trained_all_its_epochs_is_not_said_to_have_stopped_early(
        tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        killed: bool) -> None:
    # a 4-of-4-epoch run whose last 3 epochs did not improve (--patience 3) was said to have 'stopped early after
    # epoch 4' when resumed with more epochs, killed while it made its model or finished
    import pneumoscan.training.trainer as trainer

    def ctrl_c(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(trainer, "roc_auc", lambda *_: 0.5)
        if killed:
            patch.setattr(trainer, "finish_artifact", ctrl_c)
        assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *QUICK, "--epochs", "4",
                     "--patience", "3"]) == (130 if killed else 0)
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--epochs", "6"]) == 0
    out = capsys.readouterr()
    assert "stopped early after epoch 4 (" not in out.out + out.err and "it stopped early" not in out.out
    said = ("pneumoscan: warning: --epochs 6 (run: 4): no epoch is left to train, as validation AUC" if killed else
            "this run already finished (4 epochs, best 1); nothing to resume, as validation AUC")
    assert f"{said} did not improve in the run's last 3 epochs (--patience)" in out.out + out.err


def test_checkpoints_keep_the_cuda_generators_when_a_gpu_is_present(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    import torch

    from pneumoscan.training.checkpoint import atomic_torch_save, load_checkpoint, restore_rng_states, rng_states

    gpu = [torch.arange(8, dtype=torch.uint8)]  # one device's generator state, as torch.cuda returns it
    restored: list[tuple[torch.Tensor, int]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: gpu)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((state, device)))
    atomic_torch_save(rng_states(), tmp_path / "last.pt")
    restore_rng_states(load_checkpoint(tmp_path / "last.pt"))  # loads with weights_only=True
    assert len(restored) == 1 and restored[0][0].equal(gpu[0]) and restored[0][1] == 0
    restore_rng_states({"torch_rng": torch.get_rng_state()})  # a checkpoint from before: the CPU's only
    assert len(restored) == 1


@pytest.mark.parametrize("damage", ["truncated", "junk"])
def test_a_damaged_checkpoint_is_named_on_resume(damage: str, tiny_dataset: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *QUICK]) == 0
    last = run / "last.pt"
    last.write_bytes(last.read_bytes()[:1000] if damage == "truncated" else b"junk\n")
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "last.pt: not a readable checkpoint" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_an_unwritable_out_is_refused_before_the_data_is_read(command: str, tiny_dataset: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture) -> None:
    import tempfile

    import pneumoscan.training.trainer as trainer

    def read_only(*_: object, **__: object) -> None:  # a read-only mount: root's permission bits would not tell
        raise OSError(30, "Read-only file system")

    def too_late(*_: object, **__: object) -> None:
        raise AssertionError("the data was read (pretrain: an epoch was trained) before --out was found unwritable")

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    monkeypatch.setattr(trainer, "prepare_data", too_late)
    extra = ["--batch-size", "8"] if command == "pretrain" else []
    assert main([command, "--data", str(tiny_dataset), "--out", str(tmp_path / "ro" / "run"), "--model", "cnn",
                 "--image-size", "32", "--epochs", "1", "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert ": cannot be written (Read-only file system); choose another --out" in err and "Traceback" not in err
    assert not (tmp_path / "ro" / "run").exists()


def test_a_resume_with_fewer_epochs_than_trained_says_none_is_left(tiny_dataset: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture) -> None:
    import pneumoscan.training.trainer as trainer
    from pneumoscan.artifact import read_meta

    run = tmp_path / "run"

    def ctrl_c(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # stopped after epoch 2 of 3, before a model was made
        patch.setattr(trainer, "finish_artifact", ctrl_c)
        assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *QUICK, "--epochs", "2"]) == 130
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--epochs", "1", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "pneumoscan: warning: --epochs 1 (run: 2): no epoch is left to train" in out.err
    assert "no epoch is left" not in out.out and "cosine schedule" not in out.out + out.err
    # the record keeps the 2 epochs trained, not the --epochs 1 given
    assert json.loads((run / "config.json").read_text())["epochs"] == 2
    assert read_meta(run / "model.safetensors").training["config"]["epochs"] == 2


def test_a_second_process_cannot_train_in_a_run_folder_in_use(tiny_dataset: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    from pneumoscan.training.checkpoint import run_lock

    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *QUICK]) == 0
    history = (run / "history.csv").read_text()
    capsys.readouterr()
    with run_lock(run):  # as the first process holds it while it trains (flock: per open file, so this process too)
        assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 2
        assert "another pneumoscan process is training in this folder; wait for it to end (or stop it), then " \
               "continue with --resume" in capsys.readouterr().err
        assert main(["train", "--data", str(tiny_dataset), "--out", str(run), *QUICK]) == 2  # a new run
        assert "another pneumoscan process is training in this folder; choose another --out for this run" \
               in capsys.readouterr().err
        assert (run / "history.csv").read_text() == history
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0  # released when it ends


def test_train_and_pretrain_refused_before_writing_leave_no_empty_folder(tiny_dataset: Path, tmp_path: Path) -> None:
    """The run lock creates the folder (and its parents); a refusal before anything is written there takes them
    away again, and a folder that was there already stays."""
    for command in ("train", "pretrain"):
        out = tmp_path / command / "new"
        assert main([command, "--data", str(tiny_dataset), "--out", str(out), "--resume", "--quiet"]) == 2
        assert not (tmp_path / command).exists()
        out.mkdir(parents=True)
        assert main([command, "--data", str(tiny_dataset), "--out", str(out), "--resume", "--quiet"]) == 2
        assert out.is_dir()


def test_train_does_not_warn_about_intervals_it_only_stores(tmp_path: Path) -> None:
    """The validation metrics' bootstrap intervals are stored in the artifact, not shown: a metric undefined on
    some resamples of a small validation split (here npv: one film called NORMAL) is for `evaluate` and
    `report` to mention, not for the end of `train`."""
    import warnings

    import numpy as np
    import torch

    from pneumoscan.artifact import ArtifactMeta, read_meta
    from pneumoscan.data.cache import ImageSet
    from pneumoscan.data.labels import Sample
    from pneumoscan.evaluation.metrics import UndefinedMetricWarning
    from pneumoscan.training.finish import finish_artifact

    class Brightness(torch.nn.Module):  # the logit is the image's mean: bright films are PNEUMONIA
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(4.0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(1, 2, 3)) * self.scale

    labels = [0, 0, 0, 1, 1, 1, 1, 1]
    levels = [0, 240, 245, 220, 230, 235, 250, 255]  # one NORMAL scores low, the two others high
    images = np.stack([np.full((8, 8), v, np.uint8) for v in levels])
    val = ImageSet([Sample(tmp_path / f"{i}.png", y) for i, y in enumerate(labels)], images, [])
    meta = ArtifactMeta("cnn", {}, 8, 127.5, 64.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        finish_artifact(tmp_path, Brightness(), meta, val, 1.0)
    assert not [w for w in caught if issubclass(w.category, UndefinedMetricWarning)], [str(w.message) for w in caught]
    assert np.isfinite(read_meta(tmp_path / "model.safetensors").val_metrics["npv"]["value"])


def test_unreadable_training_images_are_warned_about_on_stderr(tiny_dataset: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    broken = tiny_dataset / "train" / "NORMAL" / "IM-9999-0001.jpeg"
    broken.write_bytes(b"not a jpeg")
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "run"), *QUICK]) == 0
    out = capsys.readouterr()
    assert "pneumoscan: warning: skipped " in out.err and "IM-9999-0001.jpeg" in out.err
    assert "IM-9999-0001.jpeg" not in out.out  # stdout keeps the epoch lines a script reads
