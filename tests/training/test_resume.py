"""Kill a training subprocess with SIGKILL, resume it, and get the same model as an uninterrupted run."""
from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from pneumoscan.artifact import read_meta
from pneumoscan.cli import main
from pneumoscan.training.checkpoint import load_checkpoint
from pneumoscan.training.run_folder import LAST_CHECKPOINT as LAST
from tests.conftest import write_xray

ARGS = ["--model", "resnet10", "--image-size", "48", "--epochs", "8", "--patience", "8", "--batch-size", "16",
        "--val-fraction", "0.25", "--mixup", "0.2", "--quiet"]  # mixup: its draws must resume exactly too


@pytest.fixture
def resume_data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for p in range(40):
        write_xray(root / "train" / "NORMAL" / f"IM-{p:04d}-0001.jpeg", 0, 2 * p, size=64)
        write_xray(root / "train" / "PNEUMONIA" / f"person{p}_virus_{p}.jpeg", 1, 2 * p + 1, size=64)
    return root


def _epochs(run: Path) -> list[int]:
    path = run / "history.csv"
    if not path.exists():
        return []
    return [int(row["epoch"]) for row in csv.DictReader(path.open())]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(resume_data: Path, tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "pneumoscan.cli", "train", "--data", str(resume_data), "--out",
                             str(killed), *ARGS], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(_epochs(killed)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _epochs(killed)
    assert 2 <= len(done) < 8 and not (killed / "model.safetensors").exists()
    assert load_checkpoint(killed / "last.pt")["state"]["epoch"] >= 1  # a kill mid-write never corrupts it

    assert main(["train", "--out", str(killed), "--resume", "--quiet"]) == 0
    assert _epochs(killed) == list(range(1, 9))
    assert not list(killed.glob(".*.tmp"))

    straight = tmp_path / "straight"
    assert main(["train", "--data", str(resume_data), "--out", str(straight), *ARGS]) == 0
    # the same weights bit for bit (same thread count), so the same validation scores, threshold and history
    a, b = load_file(str(killed / "model.safetensors")), load_file(str(straight / "model.safetensors"))
    assert a.keys() == b.keys() and all(a[key].equal(b[key]) for key in a)
    meta_a, meta_b = read_meta(killed / "model.safetensors"), read_meta(straight / "model.safetensors")
    assert (meta_a.threshold, meta_a.val_scores) == (meta_b.threshold, meta_b.val_scores)
    assert _history(killed) == _history(straight)


def _history(run: Path) -> list[dict[str, str]]:
    """history.csv without its timings."""
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")}
            for row in csv.DictReader((run / "history.csv").open())]


# `train` whose second torch.save (last.pt of epoch 2, after a whole one of epoch 1) or second safetensors write (the
# next best.safetensors, or model.safetensors) writes half its bytes and hangs, so a SIGKILL lands mid-write.
HANG_MID_WRITE = """
import io, sys, time
import safetensors.torch, torch
from pneumoscan.cli import main

module, name = (torch, "save") if sys.argv.pop(1) == "torch" else (safetensors.torch, "save_file")
real, calls = getattr(module, name), []

def half_then_hang(obj, target, *args, **kwargs):
    calls.append(target)
    if len(calls) == 2:
        data = io.BytesIO()
        real(obj, data) if module is torch else data.write(safetensors.torch.save(obj, kwargs.get("metadata")))
        handle = target if hasattr(target, "write") else open(target, "wb")
        handle.write(data.getvalue()[: len(data.getvalue()) // 2])
        handle.flush()
        print("half written", getattr(handle, "name", target), flush=True)
        time.sleep(120)
    return real(obj, target, *args, **kwargs)

setattr(module, name, half_then_hang)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("writer, written", [("torch", ".last.pt.*.tmp"), ("safetensors", ".*.safetensors.*.tmp")])
def test_a_sigkill_in_the_middle_of_a_write_resumes_from_the_whole_files_before_it(writer: str, written: str,
                                                                                    resume_data: Path,
                                                                                    tmp_path: Path) -> None:
    args = ["--model", "cnn", "--image-size", "32", "--epochs", "3", "--batch-size", "16", "--val-fraction", "0.25",
            "--lr", "1e-2", "--quiet"]
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", HANG_MID_WRITE, writer, "train", "--data", str(resume_data),
                             "--out", str(killed), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:  # the epoch lines come first
        torn = next((Path(line.split(maxsplit=2)[2].strip()) for line in proc.stdout if line.startswith("half written")),
                    None)
        assert torn is not None, proc.stderr.read()[-800:]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert torn.match(written) and torn.stat().st_size > 0  # a temp file beside the run's files, killed mid-write
    epoch = load_checkpoint(killed / LAST)["state"]["epoch"]  # whole files only: never the torn one
    assert 1 <= epoch <= 3 and len(_epochs(killed)) in (epoch, epoch + 1)
    load_file(str(killed / "best.safetensors"))

    assert main(["train", "--out", str(killed), "--resume", "--quiet"]) == 0
    assert not list(killed.glob(".*.tmp")) and _epochs(killed) == [1, 2, 3]
    straight = tmp_path / "straight"
    assert main(["train", "--data", str(resume_data), "--out", str(straight), *args]) == 0
    a, b = load_file(str(killed / "model.safetensors")), load_file(str(straight / "model.safetensors"))
    assert a.keys() == b.keys() and all(a[key].equal(b[key]) for key in a)


def test_resume_without_checkpoint_and_rerun_into_used_folder(resume_data: Path, tmp_path: Path, capsys) -> None:
    assert main(["train", "--data", str(resume_data), "--out", str(tmp_path / "none"), "--resume", "--quiet"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["train", "--data", str(resume_data), "--out", str(run), *ARGS[:4], "--epochs", "1", "--quiet"]) == 0
    assert main(["train", "--data", str(resume_data), "--out", str(run), "--epochs", "1", "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_resume_after_an_interrupt_in_the_first_epoch_starts_it_again(resume_data: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import pneumoscan.training.trainer as trainer

    args = [*ARGS[:4], "--epochs", "2", "--batch-size", "16", "--quiet"]
    run = tmp_path / "run"

    def ctrl_c(*_: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "augment_batch", ctrl_c)
        assert main(["train", "--data", str(resume_data), "--out", str(run), *args]) == 130
    assert "--resume" in capsys.readouterr().err
    assert (run / "config.json").exists() and not (run / LAST).exists()
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0  # as the interrupt message says
    assert _epochs(run) == [1, 2]
    straight = tmp_path / "straight"
    assert main(["train", "--data", str(resume_data), "--out", str(straight), *args]) == 0
    a, b = load_file(str(run / "model.safetensors")), load_file(str(straight / "model.safetensors"))
    assert all(a[key].equal(b[key]) for key in b)


def test_resume_a_moved_run_continues_in_the_given_folder(resume_data: Path, tmp_path: Path) -> None:
    run, moved = tmp_path / "run", tmp_path / "moved"
    assert main(["train", "--data", str(resume_data), "--out", str(run), *ARGS[:4], "--epochs", "1", "--quiet"]) == 0
    run.rename(moved)
    assert main(["train", "--out", str(moved), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert _epochs(moved) == [1, 2] and not run.exists()


def test_resume_in_a_folder_that_is_not_a_training_run(tmp_path: Path, capsys) -> None:
    (tmp_path / "config.json").write_text('{"ensemble_of": ["a", "b"], "members": []}')
    assert main(["train", "--out", str(tmp_path), "--resume", "--quiet"]) == 2
    assert "not a `pneumoscan train` run" in capsys.readouterr().err


def test_resume_refuses_changed_settings_and_accepts_moved_data(resume_data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(resume_data), "--out", str(run), *ARGS[:4], "--epochs", "1", "--quiet"]) == 0
    assert main(["train", "--out", str(run), "--resume", "--seed", "5", "--model", "resnet10", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--seed 5 (run: 0): a resumed run keeps its settings" in err and "--model" not in err  # same model: fine
    assert _epochs(run) == [1]
    moved = resume_data.rename(tmp_path / "data_moved")
    assert main(["train", "--out", str(run), "--resume", "--data", str(moved), "--epochs", "2", "--quiet"]) == 0
    assert _epochs(run) == [1, 2]


def test_a_run_saved_before_the_geometry_options_resumes_with_the_augmentation_it_had() -> None:
    from pneumoscan.training.config import TrainConfig

    older = {k: v for k, v in TrainConfig(data="d", out="o").to_dict().items() if k not in ("aug_zoom", "aug_aspect")}
    cfg = TrainConfig.from_saved(older)
    assert (cfg.aug_zoom, cfg.aug_aspect) == (0.10, 0.0)  # what it trained with, not today's defaults
    assert (TrainConfig(data="d", out="o").aug_zoom, TrainConfig(data="d", out="o").aug_aspect) == (0.2, 0.1)
    assert TrainConfig.resume_conflicts(older, {"seed": 0}, "run") == ""
    assert TrainConfig.resume_conflicts(older, {"aug_aspect": 0.2}, "run") == "--aug-aspect 0.2 (run: 0.0)"
    # older still: no equalisation setting (it did not equalise), and `seed` chose the validation patients
    oldest = {k: v for k, v in older.items() if k not in ("equalize", "split_seed")} | {"seed": 3}
    cfg = TrainConfig.from_saved(oldest)
    assert (cfg.equalize, cfg.split_seed, cfg.seed) == (False, 3, 3)
    assert TrainConfig.resume_conflicts(oldest, {"split_seed": 0}, "run") == "--split-seed 0 (run: 3)"


def test_resuming_a_finished_run_leaves_it_untouched(resume_data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(resume_data), "--out", str(run), *ARGS[:4], "--epochs", "1", "--quiet"]) == 0
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "already finished (1 epoch, best 1); nothing to resume" in out.out + out.err
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.iterdir() if p.is_file()} == before


def test_extending_a_finished_run_says_its_guard_and_export_are_stale_and_reads_its_checkpoint_once(
        resume_data: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    run = tmp_path / "run"
    assert main(["train", "--data", str(resume_data), "--out", str(run), *ARGS[:4], "--epochs", "1", "--quiet"]) == 0
    (run / "model.ood.safetensors").write_bytes(b"a guard made for the 1-epoch model")
    capsys.readouterr()
    read, load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda path, *args, **kw: read.append(Path(path).name) or load(path, *args, **kw))
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert read == [LAST]  # whether the run had finished, and the weights and state it continues from
    out = capsys.readouterr()
    assert "pneumoscan: warning: model.ood.safetensors in" in out.err and "fit-guard --model" in out.err
    assert "model.ood.safetensors" not in out.out


def test_a_run_saved_before_patient_key_resumes_with_the_split_it_had(tmp_path: Path, capsys) -> None:
    """Before --patient-key, patients were read from file names: a run of that time on DICOM files (whose PatientID
    `auto` now reads) resumes splitting by name, as it did, instead of being refused for other validation images."""
    import json

    from pneumoscan.data.layout import discover
    from pneumoscan.data.patients import patient_keys
    from pneumoscan.data.split import patient_split
    from tests.conftest import write_dicom_dataset

    data = write_dicom_dataset(tmp_path / "data", size=24)
    samples = discover(data)["train"]
    by_name, by_id = (patient_split(samples, 0.25, 0, patient_keys(samples, key))[1] for key in ("name", "auto"))
    assert by_name != by_id  # so resuming with today's default would change the validation images
    run = tmp_path / "run"
    common = ["--model", "cnn", "--image-size", "16", "--batch-size", "16", "--quiet"]
    assert main(["train", "--data", str(data), "--out", str(run), "--val-fraction", "0.25", "--patient-key", "name",
                 "--epochs", "1", *common]) == 0
    for name, fields in (("config.json", ("patient_key",)), ("split.json", ("patient_key", "patient_keys_from"))):
        saved = json.loads((run / name).read_text())
        (run / name).write_text(json.dumps({k: v for k, v in saved.items() if k not in fields}))
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", *common]) == 0
    assert _epochs(run) == [1, 2]
    assert main(["train", "--out", str(run), "--resume", "--patient-key", "auto", "--epochs", "3", *common]) == 2
    assert "--patient-key auto (run: name): a resumed run keeps its settings" in capsys.readouterr().err
    assert "patient_key" not in json.loads((run / "config.json").read_text())  # recorded as it was


def test_resume_refuses_another_patient_key(resume_data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    common = ["--model", "cnn", "--image-size", "16", "--batch-size", "16", "--quiet"]
    assert main(["train", "--data", str(resume_data), "--out", str(run), "--epochs", "1", *common]) == 0
    assert main(["train", "--out", str(run), "--resume", "--patient-key", "folder", *common]) == 2
    assert "--patient-key folder (run: auto): a resumed run keeps its settings" in capsys.readouterr().err


def test_split_change_compares_how_patients_were_read() -> None:
    from pneumoscan.training.split_check import split_change

    counts = {"train": {"NORMAL": 2, "PNEUMONIA": 2}, "val": {"NORMAL": 1, "PNEUMONIA": 1}}
    now = {"patient_key": "auto", "patient_keys_from": {"name": 6}, "counts": counts, "val_files": ["a", "b"]}
    before = {"counts": counts, "val_files": ["a", "b"]}  # split.json before --patient-key: read by name
    assert split_change(before, now) == ""  # auto read every patient from the name: the same split
    dicom = {**now, "patient_keys_from": {"dicom": 6}}
    assert split_change(before, dicom, "runs/r1") == ("reads patients by --patient-key auto, where the run in runs/r1 "
                                                      "read them by name")
    assert split_change(dicom, dicom) == ""


def test_resume_accepts_a_split_json_that_counted_every_image_found(resume_data: Path, tmp_path: Path) -> None:
    """split.json once counted the patient keys of every image found, so an unreadable DICOM film's PatientID made a
    run `auto` by DICOM where the images used are all keyed by file name (now recorded as by name): such a run still
    resumes, and one split otherwise is still refused."""
    from pneumoscan.training.split_check import split_change
    from tests.conftest import write_dicom

    broken = write_dicom(resume_data / "train" / "NORMAL" / "broken.dcm", 0, 99, patient_id="N99", size=16)
    broken.write_bytes(broken.read_bytes()[:-200])  # its PatientID is read, its pixels are not
    run = tmp_path / "run"
    common = ["--model", "cnn", "--image-size", "16", "--batch-size", "16", "--quiet"]
    assert main(["train", "--data", str(resume_data), "--out", str(run), "--epochs", "1", *common]) == 0
    split = json.loads((run / "split.json").read_text())
    assert split["patient_keys_from"] == {"name": 80}
    (run / "split.json").write_text(json.dumps({**split, "patient_keys_from": {"dicom": 1, "name": 80}}))  # as before
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", *common]) == 0
    assert _epochs(run) == [1, 2]
    old = {**split, "patient_keys_from": {"dicom": 1, "name": 80}}
    assert split_change(old, {**split, "val_files": split["val_files"][1:] + ["other.jpeg"]}, run).startswith(
        f"splits its images otherwise than the run in {run} was started with (other validation images")


def test_a_manifest_run_whose_rows_listed_twice_were_deleted_is_refused_with_advice_that_can_be_followed(
        resume_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run started by a version that read a file listed on two rows records one more image than the manifest with
    the row deleted. Resuming on it is refused (its validation films, known by name and count only, cannot be told
    from trained ones), and the advice does not send the user back to the manifest this version refuses: a new run.
    A lost validation film is refused too; a folder with fewer images keeps the plain advice."""
    manifest = tmp_path / "m.csv"
    films = sorted(resume_data.rglob("*.jpeg"))
    manifest.write_text("path,label\n" + "".join(f"{f},{f.parent.name}\n" for f in films))
    run = tmp_path / "run"
    common = ["--model", "cnn", "--image-size", "16", "--batch-size", "16", "--quiet"]
    assert main(["train", "--data", str(manifest), "--out", str(run), "--epochs", "1", *common]) == 0
    split = json.loads((run / "split.json").read_text())
    for part in ("train", "val"):  # as the earlier version recorded a row listed twice, in training or validation
        counts = split["counts"][part]
        twice = {**split, "counts": {**split["counts"], part: {**counts, "NORMAL": counts["NORMAL"] + 1}}}
        (run / "split.json").write_text(json.dumps(twice))
        capsys.readouterr()
        assert main(["train", "--out", str(run), "--resume", "--epochs", "2", *common]) == 2
        err = capsys.readouterr().err
        assert _epochs(run) == [1] and f"{manifest}: holds other images than the run in {run}" in err
        assert err.rstrip().endswith("start a new run with another --out (a new run if rows that listed a file twice "
                                     "were deleted from the manifest: earlier versions read such rows and trained on "
                                     "the file twice, this one refuses them, so the manifest the run was started with "
                                     "cannot be read again)")
    assert main(["train", "--data", str(resume_data), "--out", str(run), "--resume", "--epochs", "2", *common]) == 2
    assert capsys.readouterr().err.rstrip().endswith("resume with the data it was started with, or start a new run "
                                                     "with another --out")  # a folder lists no file twice


def test_split_change_tells_images_split_otherwise_from_other_images() -> None:
    """The same images whose DICOM PatientIDs changed (a re-export) fall into train and validation otherwise: the
    refusal says so, rather than that the folder holds other images."""
    from pneumoscan.training.split_check import split_change

    def record(train_normal: int, val_normal: int, sources: dict[str, int]) -> dict:
        return {"patient_key": "auto", "patient_keys_from": sources, "val_files": ["a"],
                "counts": {"train": {"NORMAL": train_normal, "PNEUMONIA": 4, "patients": 5},
                           "val": {"NORMAL": val_normal, "PNEUMONIA": 1, "patients": 2}}}

    saved = record(4, 2, {"dicom": 11})
    moved = split_change(saved, record(5, 1, {"dicom": 9, "name": 2}), "runs/r1")
    assert moved == ("splits its images otherwise than the run in runs/r1 was started with (train 5 NORMAL, "
                     "4 PNEUMONIA, 5 patients; val 1 NORMAL, 1 PNEUMONIA, 2 patients, where the run had train 4 NORMAL, "
                     "4 PNEUMONIA, 5 patients; val 2 NORMAL, 1 PNEUMONIA, 2 patients; patient keys from dicom 9, name 2, "
                     "where the run read them from dicom 11): as many images of each class, so some images or their "
                     "patients changed (a manifest's patient column, a DICOM PatientID)")
    fewer = split_change(saved, record(3, 2, {"dicom": 10}), "runs/r1")
    assert fewer.startswith("holds other images than the run in runs/r1 was started with (train 3 NORMAL")
    swapped = split_change(saved, {**saved, "val_files": ["b"]}, "runs/r1")
    assert swapped.startswith("splits its images otherwise than the run in runs/r1 was started with (other "
                              "validation images under the same counts)")


def unnamed_dicom_export(data: Path) -> Path:
    """20 DICOM films without a PatientID, one per series folder, whose folders sort the other way round from their
    names (so keys by path and by name order the patients otherwise)."""
    from tests.conftest import write_dicom

    for label, cls in enumerate(("NORMAL", "PNEUMONIA")):
        for i in range(10):
            write_dicom(data / "train" / cls / f"{chr(ord('z') - i)}{cls[0]}" / f"scan{cls[0]}{i:02d}.dcm", label,
                        10 * label + i, size=16)
    return data


def test_a_run_on_dicom_films_without_patient_ids_started_before_their_path_keys_resumes(tmp_path: Path) -> None:
    """9f99720 keyed every DICOM film without a PatientID by its path, which reordered the patients of an export
    whose names never repeat, so the run started before (its keys: the file names) was refused as 'some images or
    their patients changed'. Such a name keys its film as before."""
    data = unnamed_dicom_export(tmp_path / "data")
    run = tmp_path / "run"
    common = ["--model", "cnn", "--image-size", "16", "--batch-size", "16", "--quiet"]
    # the split of a run started before 9f99720: by file name, recorded as auto with no key rule
    assert main(["train", "--data", str(data), "--out", str(run), "--patient-key", "name", "--epochs", "1",
                 *common]) == 0
    for name in ("config.json", "split.json"):
        saved = json.loads((run / name).read_text())
        saved = {k: v for k, v in saved.items() if k != "patient_key_rule"}
        (run / name).write_text(json.dumps({**saved, "patient_key": "auto"}))
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", *common]) == 0
    assert _epochs(run) == [1, 2]


def test_a_split_changed_by_the_key_rule_is_not_blamed_on_the_data() -> None:
    """A run started before DICOM films without a PatientID were keyed by folder and name where their names repeat
    splits them otherwise now: the refusal says pneumoscan's rule changed, not the images or their patients."""
    from pneumoscan.training.split_check import resume_advice, split_change

    counts = {"train": {"NORMAL": 4, "PNEUMONIA": 4}, "val": {"NORMAL": 1, "PNEUMONIA": 1}}
    saved = {"patient_key": "auto", "patient_keys_from": {"name": 10}, "counts": counts, "val_files": ["a", "b"]}
    now = {**saved, "patient_keys_from": {"name": 2, "file": 8}, "patient_key_rule": 2, "val_files": ["a", "c"]}
    change = split_change(saved, now, "runs/r1")
    assert change.endswith("): pneumoscan now keys 8 DICOM films whose header names no patient and whose file name is "
                           "in other folders too by folder and name (patient_key_rule 2), where the run was started "
                           "by an earlier version, which keyed them otherwise, so the images need not have changed")
    assert resume_advice(saved, now) == ("resume with the pneumoscan it was started with, or start a new run with "
                                         "another --out")
    blamed = "some images or their patients changed (a manifest's patient column, a DICOM PatientID)"
    assert split_change({**saved, "patient_key_rule": 2}, now).endswith(blamed)  # started with this rule
    assert split_change(saved, {**now, "patient_keys_from": {"name": 10}}).endswith(blamed)  # no file keyed otherwise
    assert resume_advice(saved, {**now, "patient_keys_from": {"name": 10}}).startswith("resume with the data")


def test_a_split_changed_by_the_set_aside_rule_is_not_blamed_on_the_data() -> None:
    """A run or pretraining started before files named for a format not read that hold no image (an HTML page saved as
    logo.gif) were set aside before the split carved them among the films: the refusal of its resume blamed the
    data ('resume with the data it was started with', which was what failed). It says the rule changed."""
    from pneumoscan.training.split_check import resume_advice, split_change

    counts = {"train": {"NORMAL": 4, "PNEUMONIA": 4}, "val": {"NORMAL": 1, "PNEUMONIA": 1}}
    page = ("d/train/NORMAL/logo.gif: not a readable image (cannot identify image file); give a JPEG, PNG, TIFF, BMP "
            "or DICOM file")
    gif = "d/train/NORMAL/chart.GIF: GIF images are not supported; export the X-ray as PNG, JPEG or DICOM"
    saved = {"patient_key": "name", "counts": counts, "val_files": ["a", "b"], "skipped": [gif, page]}
    now = {**saved, "unread_rule": 2, "val_files": ["a", "c"]}
    change = split_change(saved, now, "runs/p", "pretraining")
    assert change.endswith("): the rule for files named for a format pneumoscan does not read (.gif, .webp, .heic, "
                           ".heif, .avif, .jp2, .j2k, .jpx) changed: pneumoscan now sets aside before the split 1 such "
                           "file holding no image (unread_rule 2; see split.json's skipped), where the pretraining was "
                           "started by an earlier version, which split it among the films, so the images need not "
                           "have changed")
    assert resume_advice(saved, now, "pretraining") == ("resume with the pneumoscan it was started with, or start a "
                                                        "new pretraining with another --out")
    blamed = "some images or their patients changed (a manifest's patient column, a DICOM PatientID)"
    assert split_change({**saved, "unread_rule": 2}, now).endswith(blamed)  # started with this rule
    assert split_change(saved, {**now, "skipped": [gif]}).endswith(blamed)  # the earlier rule set a GIF aside too
    assert resume_advice(saved, {**now, "skipped": [gif]}).startswith("resume with the data")


def _run_with_a_page_saved_as_a_gif(data: Path, tmp_path: Path) -> tuple[Path, list[str], dict]:
    """A one-epoch run on `data` with an HTML page saved as train/NORMAL/logo.gif: its folder, the options that
    started it, and its split.json."""
    (data / "train" / "NORMAL" / "logo.gif").write_bytes(b"<html><body>Not found</body></html>")
    run = tmp_path / "run"
    common = ["--data", str(data), "--out", str(run), "--model", "cnn", "--image-size", "16", "--batch-size", "16",
              "--quiet"]
    assert main(["train", *common, "--epochs", "1"]) == 0
    return run, common, json.loads((run / "split.json").read_text())


def test_a_run_carved_with_a_page_saved_as_a_gif_before_the_rule_is_told_so_on_resume(
        resume_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The run's split.json records the set-aside rule; one without it (an earlier version's, which carved the page
    among the films, so other validation films) is refused naming the rule and the pneumoscan to resume with."""
    run, common, split = _run_with_a_page_saved_as_a_gif(resume_data, tmp_path)
    assert split["unread_rule"] == 2
    trained = next(str(p) for p in sorted((resume_data / "train" / "NORMAL").glob("*.jpeg"))
                   if str(p) not in split["val_files"])
    old = {**{k: v for k, v in split.items() if k != "unread_rule"}, "val_files": [trained, *split["val_files"][1:]]}
    (run / "split.json").write_text(json.dumps(old))
    capsys.readouterr()
    assert main(["train", *common, "--epochs", "2", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "pneumoscan now sets aside before the split 1 such file holding no image (unread_rule 2" in err
    assert err.rstrip().endswith("resume with the pneumoscan it was started with, or start a new run with another "
                                 "--out")


_BY_PATH = ("20 DICOM films whose header names no patient are keyed by file name (or folder and name) by "
            "patient_key_rule 7, and the run was started by an earlier version (no patient_key_rule recorded), which "
            "may have keyed them otherwise: the same patients under other keys split otherwise, so the key rule may "
            "have changed the split, not the images; resume with the pneumoscan (or, if its images changed, the data) "
            "it was started with")
_WITHDRAWN = ("the run was started by development code of pneumoscan (3ad352f to 48cc5dd) keying by patient_key_rule "
              "6, which was withdrawn; this version keys by patient_key_rule 7: the same patients under other keys "
              "split otherwise, so the images need not have changed; start a new run with another --out, or resume "
              "with that development code of pneumoscan (and the data) it was started with")


@pytest.mark.parametrize("rule, told", [(None, _BY_PATH), (6, _WITHDRAWN)], ids=["no-rule", "withdrawn-6"])
def test_a_run_split_by_another_key_rule_is_refused_as_split_by_that_rule_not_as_changed_data(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], rule: int | None, told: str) -> None:
    """Development code between 9f99720 and 6582825 keyed a DICOM film without a PatientID by its path and recorded
    no key rule; development code from 3ad352f to 48cc5dd recorded patient_key_rule 6 (withdrawn; this version keys
    by 7, and still names 6 withdrawn). Either way the same patients are under other keys, so the split differs, and
    the refusal blamed the data
    ('some images or their patients changed'; for rule 6, 'resume with the data', which cannot help). It now says the
    key rule may have changed it, or names the withdrawn rule and what to do."""
    from pneumoscan.data.layout import discover
    from pneumoscan.data.split import patient_split

    data = unnamed_dicom_export(tmp_path / "data")
    run = tmp_path / "run"
    common = ["--model", "cnn", "--image-size", "16", "--batch-size", "16", "--quiet"]
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "1", *common]) == 0
    split = json.loads((run / "split.json").read_text())
    assert split["dicom_without_patient_id"] == 20 and split["patient_key_rule"] == 7
    by_path = patient_split(discover(data)["train"], split["val_fraction"], split["seed"], lambda s: str(s.path))[1]
    assert sorted(s.path.name for s in by_path) != sorted(Path(f).name for f in split["val_files"])
    saved = ({k: v for k, v in split.items() if k not in ("patient_key_rule", "dicom_without_patient_id")}
             if rule is None else {**split, "patient_key_rule": rule})
    (run / "split.json").write_text(json.dumps({**saved, "val_files": [str(s.path) for s in by_path]}))
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", *common]) == 2
    err = capsys.readouterr().err
    assert f"(other validation images under the same counts): {told}" in err, err
    assert "some images or their patients changed" not in err


def test_a_split_of_a_key_rule_this_version_lacks_says_which_version_made_it() -> None:
    """Rule 6 is known (withdrawn development code): the refusal said 'a development version whose rule was withdrawn,
    or a later one' of it. It now names that code for rule 6, and a later version for a rule after it."""
    from pneumoscan.training.split_check import resume_advice, split_change

    counts = {"train": {"NORMAL": 4, "PNEUMONIA": 4}, "val": {"NORMAL": 1, "PNEUMONIA": 1}}
    now = {"patient_key": "auto", "counts": counts, "val_files": ["a", "b"], "patient_key_rule": 5}
    told = {rule: f"{split_change(saved, now)}; {resume_advice(saved, now)}"
            for rule in (6, 7) for saved in [{**now, "patient_key_rule": rule, "val_files": ["a", "c"]}]}
    assert "by development code of pneumoscan (3ad352f to 48cc5dd) keying by patient_key_rule 6, which was " \
           "withdrawn;" in told[6] and told[6].endswith("resume with that development code of pneumoscan (and the "
                                                        "data) it was started with")
    assert "by a later version of pneumoscan keying by patient_key_rule 7, which this version does not have;" in \
           told[7] and told[7].endswith("resume with that later version of pneumoscan (and the data) it was started "
                                        "with")
    assert not any("or a later one" in text or "development" in told[7] for text in told.values())


def test_a_split_of_an_earlier_key_rule_with_unnamed_dicom_films_may_be_the_rule_s() -> None:
    """Rule 2 counted JPEGs among the folders of a DICOM film's name (rule 3 counts DICOM files only): a run started
    on rule 2 with DICOM films without a PatientID may be split otherwise by the rule; one on rule 3 is not."""
    from pneumoscan.training.split_check import resume_advice, split_change

    counts = {"train": {"NORMAL": 4, "PNEUMONIA": 4}, "val": {"NORMAL": 1, "PNEUMONIA": 1}}
    saved = {"patient_key": "auto", "patient_keys_from": {"name": 10}, "counts": counts, "val_files": ["a", "b"],
             "patient_key_rule": 2}
    now = {**saved, "patient_key_rule": 3, "dicom_without_patient_id": 1, "val_files": ["a", "c"]}
    assert split_change(saved, now).endswith(
        "1 DICOM film whose header names no patient is keyed by file name (or folder and name) by patient_key_rule 3, "
        "and the run was started by an earlier version (patient_key_rule 2), which may have keyed it otherwise: "
        "the same patients under other keys split otherwise, so the key rule may have changed the split, not the "
        "images")
    blamed = "some images or their patients changed (a manifest's patient column, a DICOM PatientID)"
    assert split_change({**saved, "patient_key_rule": 3}, now).endswith(blamed)
    assert split_change(saved, {k: v for k, v in now.items() if k != "dicom_without_patient_id"}).endswith(blamed)
    assert resume_advice({**saved, "patient_key_rule": 3}, now).startswith("resume with the data")


def test_a_rule_3_split_whose_placeholder_patient_id_rule_4_reads_as_a_patient_blames_the_key_rule() -> None:
    """Rule 4 judges placeholder PatientIDs over every split: 'P' on the 3 DICOM films of train/ was a placeholder
    to rule 3 (train/ only) and is a patient now that test/ holds 4 films of other IDs. The same images split
    otherwise, and the refusal blamed the data ('some images or their patients changed', 'resume with the data')."""
    from pneumoscan.training.split_check import resume_advice, split_change

    counts = {"train": {"NORMAL": 6, "PNEUMONIA": 4, "patients": 10}, "val": {"NORMAL": 3, "PNEUMONIA": 2,
                                                                               "patients": 5}}
    saved = {"patient_key": "auto", "patient_keys_from": {"name": 15}, "patient_key_rule": 3,
             "dicom_without_patient_id": 3, "counts": counts, "val_files": ["a", "b"]}
    now = {"patient_key": "auto", "patient_keys_from": {"dicom": 3, "name": 12}, "patient_key_rule": 4,
           "counts": {**counts, "train": {**counts["train"], "patients": 8}}, "val_files": ["a", "c"]}
    assert split_change(saved, now).endswith(
        "patient_key_rule 4 judges placeholder PatientIDs (one value on most DICOM films) over every split of the "
        "data, test/ too, and the run was started by an earlier version (patient_key_rule 3), which judged them "
        "over train/ and val/ at most: a PatientID taken for a placeholder then may key films now, or the other "
        "way round, so the key rule may have changed the split, not the images")
    assert resume_advice(saved, now).startswith("resume with the pneumoscan (or, if its images changed, the data)")
    # the other way round: a patient to rule 3 is a placeholder now (then 3 films are of no named patient)
    back = (now | {"patient_key_rule": 3}, saved | {"patient_key_rule": 4})
    assert split_change(*back).endswith("so the key rule may have changed the split, not the images")
    assert resume_advice(*back).startswith("resume with the pneumoscan (or, if its images changed, the data)")
    blamed = "some images or their patients changed (a manifest's patient column, a DICOM PatientID)"
    assert split_change(saved | {"patient_key_rule": 4}, now).endswith(blamed)  # the same rule: the data changed
    by_name = {"patient_keys_from": {"name": 15}}
    assert split_change(saved | by_name, now | by_name).endswith(blamed)  # no PatientID read either time
    assert resume_advice(saved | {"patient_key_rule": 4}, now).startswith("resume with the data")


def test_a_rule_4_split_changed_by_test_s_dicom_film_named_jpeg_blames_the_key_rule_not_the_data() -> None:
    """Rule 5 keys a test/ file named .jpeg or .png by name unopened: a DICOM film so named, with a placeholder
    PatientID, was counted by rule 4 among the PatientIDs (and folders) judged over every split, so a run started
    then splits otherwise now, and its resume was refused with 'some images or their patients changed'."""
    from pneumoscan.training.split_check import split_change

    counts = {"train": {"NORMAL": 6, "PNEUMONIA": 4, "patients": 10}}
    saved = {"patient_key": "auto", "patient_keys_from": {"file": 4, "name": 6}, "patient_key_rule": 4,
             "counts": counts, "val_files": ["a", "b"]}
    now = {**saved, "patient_keys_from": {"dicom": 4, "name": 6}, "patient_key_rule": 5, "val_files": ["a", "c"]}
    assert split_change(saved, now).endswith(
        "patient_key_rule 5 keys a test/ file named for another image format (.jpeg, .png, ...) by its name without "
        "opening it (test/ is for final reporting), and the run was started by an earlier version (patient_key_rule "
        "4), which read it for a DICOM header: such a file holding a DICOM film, its PatientID (a placeholder's "
        "count) or its folder may have keyed films of train/ otherwise, so the key rule may have changed the split, "
        "not the images")
    _blames_the_rule_only_when_it_may(saved, now)
    # a rule-4 run with unnamed DICOM films whose split did not change is resumed as before: nothing to say
    assert split_change(saved | {"dicom_without_patient_id": 4}, now | {"val_files": ["a", "b"]}) == ""


def _guarded_run(data: Path, tmp_path: Path) -> Path:
    """A one-epoch run on `data` with its guard fitted."""
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), *ARGS[:4], "--epochs", "1", "--quiet"]) == 0
    assert main(["fit-guard", "--model", str(run), "--data", str(data)]) == 0
    return run


@pytest.mark.parametrize("kept", [False, True])
def test_extending_a_run_keeps_its_guard_when_the_kept_epoch_stays_else_names_the_recorded_data(
        kept: bool, resume_data: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--resume --epochs 2` whose epoch 2 is not kept writes bit-equal weights: the guard was refused ('fitted for
    a different version') and the warning said to export again, with no export there. When the weights do change,
    the advice names the run's recorded data, not TRAINING_DATA."""
    import re

    import pneumoscan.training.trainer as trainer
    from pneumoscan.errors import InputError
    from pneumoscan.inference.ood.guard import load_guard

    run = _guarded_run(resume_data, tmp_path)
    weights = load_file(str(run / "model.safetensors"))
    capsys.readouterr()
    monkeypatch.setattr(trainer, "becomes_kept", lambda *_: kept)
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert read_meta(run / "model.safetensors").training["epochs_run"] == 2
    if not kept:
        assert load_file(str(run / "model.safetensors")).keys() == weights.keys()
        assert "model.ood.safetensors" not in err
        assert load_guard(run) is not None  # keyed to the new file, whose weights it was fitted on
        return
    command = f"`pneumoscan fit-guard --model {run} --data {resume_data}`"
    assert f"model.ood.safetensors in {run} belongs to the model before this resume; run {command} again" in err
    assert "export" not in err  # there is no model.onnx
    placed = f"`pneumoscan fit-guard --model {run / 'model.safetensors'} --data {resume_data}`"
    with pytest.raises(InputError, match=re.escape(f"different version of model.safetensors; run {placed} again")):
        load_guard(run)


@pytest.mark.usefixtures("ctrl_c_raises")
@pytest.mark.parametrize("signum, after", [(signal.SIGINT, 1), (signal.SIGINT, 2), (signal.SIGINT, 3),
                                           (signal.SIGINT, 4), (signal.SIGTERM, 2)])
def test_an_interruption_while_a_resume_writes_its_model_loses_no_guard(
        signum: int, after: int, resume_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl+C or SIGTERM right after each rename of a resume's last files (val_predictions.csv, the model, its
    re-keyed guard, the commit of the two): the model and its guard stay both old or both new, and the `--resume`
    the interruption advises ends with a guard keyed to the model. Before, a signal after the model's rename left the
    guard keyed to the model before, refused ('fitted for a different version') by a run that said it had finished."""
    import pneumoscan.outputs as outputs
    import pneumoscan.training.trainer as trainer
    from pneumoscan.inference.ood.guard import load_guard

    run = _guarded_run(resume_data, tmp_path)
    monkeypatch.setattr(trainer, "becomes_kept", lambda *_: False)  # epoch 2 is not kept: the guard stays valid
    replaces, real_replace, real_finish = [], os.replace, trainer.finish_artifact

    def replace(src, dst):  # noqa: ANN001
        real_replace(src, dst)
        replaces.append(dst)
        if len(replaces) == after:
            os.kill(os.getpid(), signum)

    def finish(*args, **kwargs):  # noqa: ANN002, ANN003
        monkeypatch.setattr(outputs.os, "replace", replace)  # counted from here: the files that end the run
        return real_finish(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "finish_artifact", finish)
        code = main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"])
        monkeypatch.setattr(outputs.os, "replace", real_replace)
    assert code == (0 if after > len(replaces) else 128 + signum)
    load_guard(run)  # both old or both new: never refused
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert read_meta(run / "model.safetensors").training["epochs_run"] == 2
    assert load_guard(run) is not None


def _crash_a_resume(run: Path, at: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A `--resume --epochs 2` of the guarded `run` whose epoch 2 is not kept (the guard is re-keyed and written with
    the model) killed `at` the guard's rename (after the model's) or the commit (after both): the process dies, so
    nothing is undone and the journal's lock goes. Returns the journal's name."""
    import pneumoscan.outputs as outputs
    import pneumoscan.training.trainer as trainer

    monkeypatch.setattr(trainer, "becomes_kept", lambda *_: False)
    real_replace = os.replace

    class Crash(BaseException):
        pass

    def replace(src, dst):  # noqa: ANN001
        if at == "guard's rename" and Path(dst).name == "model.ood.safetensors":
            raise Crash
        real_replace(src, dst)

    def commit(self) -> None:  # noqa: ANN001
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(outputs.os, "replace", replace)
        if at == "commit":
            patch.setattr(outputs.Journal, "commit", commit)
        patch.setattr(outputs.Journal, "undo", outputs.Journal.close)  # the process dies: its lock goes, no undo
        with pytest.raises(Crash):
            trainer.train(trainer.TrainConfig.from_saved({**json.loads((run / "config.json").read_text()),
                                                          "epochs": 2}), resume=True, progress=False, verbose=False)
    (journal,) = [p.name for p in run.iterdir() if p.name.endswith(".journal")]
    return journal


def test_a_resume_after_a_crash_among_the_renames_of_model_and_guard_puts_both_right(
        resume_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A crash (SIGKILL, power loss) after the model's rename and before its guard's leaves the new model beside the
    guard of the old one and a journal; the `--resume` after it undoes the set and makes both again. Until then,
    predict and serve refused the model with the fit-guard command, which fits a guard to a model the resume was to
    undo: they name the journal and the `--resume`."""
    from pneumoscan.errors import InputError
    from pneumoscan.inference.ood.guard import load_guard

    run = _guarded_run(resume_data, tmp_path)
    journal = _crash_a_resume(run, "guard's rename", monkeypatch)
    with pytest.raises(InputError) as refused:
        load_guard(run)
    message = str(refused.value)
    assert journal in message and "fit-guard" not in message
    film = next((resume_data / "train" / "NORMAL").iterdir())
    capsys.readouterr()
    assert main(["predict", "--model", str(run), str(film)]) == 2
    assert capsys.readouterr().err == f"pneumoscan: error: {message}\n"
    command = shlex.split(message.split("`")[1])
    assert command == ["pneumoscan", "train", "--out", str(run), "--resume"]
    assert main([*command[1:], "--quiet"]) == 0  # as the message gives it
    assert read_meta(run / "model.safetensors").training["epochs_run"] == 2
    assert load_guard(run) is not None
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("crash_at", ["guard's rename", "commit"])
def test_fit_guard_after_a_crash_among_a_resumes_renames_refuses_with_the_resume(
        crash_at: str, resume_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A crash after the model's rename and before its guard's, or after both and before the commit, left a journal
    that fit-guard's own write of the guard undid, after it had hashed the model: the model put back was the one
    before the resume, and the guard just fitted was stale at once. It refuses before the work, as predict does,
    naming the journal and the `--resume`; after that resume it fits a guard that loads."""
    from pneumoscan.inference.ood.guard import load_guard

    run = _guarded_run(resume_data, tmp_path)
    journal = _crash_a_resume(run, crash_at, monkeypatch)
    model = (run / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["fit-guard", "--model", str(run), "--data", str(resume_data)]) == 2
    err = capsys.readouterr().err
    assert journal in err and f"`pneumoscan train --out {run} --resume`" in err
    assert (run / "model.safetensors").read_bytes() == model and (run / journal).is_file()  # left to the resume
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0
    assert main(["fit-guard", "--model", str(run), "--data", str(resume_data)]) == 0
    assert load_guard(run) is not None
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]


def test_a_damaged_jpeg_named_webp_is_not_blamed_on_the_set_aside_rule(
        resume_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """split.json records how many files the set-aside rule alone set aside (`unread_no_image`); a resume of a run
    from before the rule whose data now holds a damaged JPEG named scan.webp (skipped when decoded, by earlier
    versions too) blamed that file on the rule, by the wording of its skipped entry, instead of the data."""
    from pneumoscan.training.split_check import unread_rule_change

    run, common, split = _run_with_a_page_saved_as_a_gif(resume_data, tmp_path)
    assert split["unread_no_image"] == 1 and len(split["skipped"]) == 1
    (resume_data / "logo.gif").write_bytes((resume_data / "train" / "NORMAL" / "logo.gif").read_bytes())
    (resume_data / "train" / "NORMAL" / "logo.gif").unlink()  # the rule sets nothing aside now...
    (resume_data / "train" / "PNEUMONIA" / "scan.webp").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 64)  # ...decoding does
    old = {k: v for k, v in split.items() if k not in ("unread_rule", "unread_no_image")}
    (run / "split.json").write_text(json.dumps(old))
    capsys.readouterr()
    assert main(["train", *common, "--epochs", "2", "--resume"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "sets aside before the split" not in err
    assert "some images or their patients changed" in err and "resume with the data it was started with" in err
    # a record without the count (none of this version's) falls back to the wording of its skipped entries
    page = "d/train/NORMAL/logo.gif: not a readable image (cannot identify image file); give a JPEG, PNG or DICOM file"
    assert unread_rule_change({}, {"unread_rule": 2, "skipped": [page]}) == 1
    assert unread_rule_change({}, {"unread_rule": 2, "unread_no_image": 0, "skipped": [page]}) == 0


def test_a_resume_stopped_before_it_warned_of_a_stale_guard_warns_on_the_next_resume(
        resume_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A resume whose new epoch replaced the model, stopped (Ctrl+C) after the model was written and before it warned
    that the guard belongs to the model before: the `--resume` the interruption advises found the run finished and
    said nothing of the guard, which predict then refused. It says it, with the fit-guard command."""
    import pneumoscan.training.trainer as trainer

    run = _guarded_run(resume_data, tmp_path)
    monkeypatch.setattr(trainer, "becomes_kept", lambda *_: True)

    def ctrl_c(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(trainer.Trainer, "_warn_stale", ctrl_c)
        assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 130
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert (f"model.ood.safetensors in {run} was fitted for another version of model.safetensors; run `pneumoscan "
            f"fit-guard --model {run} --data {resume_data}` again") in err
    assert main(["fit-guard", "--model", str(run), "--data", str(resume_data)]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err  # a guard fitted for it: nothing to say


def test_the_export_command_of_the_stale_export_warning_can_be_pasted_for_a_path_with_a_space(tmp_path: Path) -> None:
    """After a resume replaced the model, `pneumoscan export --model my runs/r 1 --out ...` split in a shell."""
    import shlex
    from types import SimpleNamespace

    from pneumoscan.training.trainer import Trainer

    run = tmp_path / "my runs" / "r 1"
    run.mkdir(parents=True)
    artifact = run / "model.safetensors"
    artifact.write_bytes(b"the new model")
    artifact.with_suffix(".onnx").write_bytes(b"old export")
    said: list[str] = []
    Trainer._warn_stale(SimpleNamespace(out=run, warn=said.append), artifact, kept_guard=True)
    (warning,) = said
    assert shlex.split(warning.split("`")[1]) == ["pneumoscan", "export", "--model", str(run),
                                                  "--out", str(artifact.with_suffix(".onnx"))]


def _blames_the_rule_only_when_it_may(saved: dict, now: dict) -> None:
    """A resume from the split `saved` (an earlier patient_key_rule) to `now`, split otherwise, is told to resume with
    its pneumoscan; under the same rule, or with no film keyed by a DICOM header, the data is blamed instead."""
    from pneumoscan.training.split_check import resume_advice, split_change

    assert resume_advice(saved, now).startswith("resume with the pneumoscan (or, if its images changed, the data)")
    blamed = "some images or their patients changed (a manifest's patient column, a DICOM PatientID)"
    assert split_change(saved | {"patient_key_rule": now["patient_key_rule"]}, now).endswith(blamed)
    by_name = {"patient_keys_from": {"name": 10}}
    assert split_change(saved | by_name, now | by_name).endswith(blamed)


def test_a_run_of_rule_5_split_apart_from_a_patient_s_id_is_refused_naming_rule_7(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rule 5 keyed the films without a PatientID by their Kermany file name, apart from their siblings keyed by
    PatientID; rule 7 keys them by it. Resuming a run of rule 5 that splits otherwise now says the key rule changed it
    and to resume with the pneumoscan it was started with, where it blamed the data; one whose split is the same
    resumes."""
    from pneumoscan.data.layout import discover
    from pneumoscan.data.patients import patient_id, patient_keys
    from pneumoscan.data.split import patient_split
    from tests.conftest import write_partly_identified

    data = tmp_path / "data"
    write_partly_identified(data, 12)
    run = tmp_path / "run"
    common = ["--model", "cnn", "--image-size", "16", "--batch-size", "16", "--quiet"]
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "1", *common]) == 0
    split = json.loads((run / "split.json").read_text())
    assert split["patient_key_rule"] == 7 and split["keyed_by_sibling_patient_id"] == 30
    films = discover(data)["train"]
    keys = patient_keys(films, progress=False)
    by_rule_5 = patient_split(films, split["val_fraction"], split["seed"],
                              lambda s: patient_id(s.path) if s in keys.siblings else keys(s))[1]
    assert sorted(s.path.name for s in by_rule_5) != sorted(Path(f).name for f in split["val_files"])
    old = {k: v for k, v in split.items() if k != "keyed_by_sibling_patient_id"} | {"patient_key_rule": 5}
    (run / "split.json").write_text(json.dumps({**old, "val_files": [str(s.path) for s in by_rule_5]}))
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", *common]) == 2
    err = capsys.readouterr().err
    sibling = split["keyed_by_sibling_patient_id"]
    assert (f"(other validation images under the same counts): pneumoscan now keys {sibling} films without a usable "
            f"PatientID by the PatientID of their Kermany file name's other films") in err, err
    assert err.rstrip().endswith("resume with the pneumoscan it was started with, or start a new run with another "
                                 "--out"), err
    (run / "split.json").write_text(json.dumps(old))  # rule 5's record of a split rule 7 makes alike
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", *common]) == 0
