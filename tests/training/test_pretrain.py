"""Self-supervised pretraining: weights without the head, exact resume, `train --init`, clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from pneumoscan.artifact import file_sha256
from pneumoscan.cli import main
from pneumoscan.errors import InputError
from pneumoscan.models.registry import create_model
from pneumoscan.training import pretrain as pretrain_module
from pneumoscan.training.config import TrainConfig
from pneumoscan.training.pretrain import PRETRAIN_CHECKPOINT, PRETRAINED_NAME, load_pretrained, pretrain
from tests.conftest import full_safetensors


def _cfg(data: Path, out: Path) -> TrainConfig:
    return TrainConfig(data=str(data), out=str(out), model="resnet10", image_size=32, epochs=2, batch_size=8,
                       lr=0.05, val_fraction=0.2)


def test_pretrain_writes_backbone_weights_that_train_init_starts_from(tiny_data: Path, tmp_path: Path) -> None:
    path = pretrain(_cfg(tiny_data, tmp_path / "pre"), progress=False)
    assert path.name == PRETRAINED_NAME
    assert path.stat().st_mode & 0o777 == 0o644  # readable like model.safetensors (safetensors writes 0600)
    weights = load_file(str(path))
    with safe_open(str(path), "pt") as handle:
        info = json.loads(handle.metadata()["pneumoscan_pretrained"])
    assert info["model_name"] == "resnet10" and info["epochs"] == 2 and len(info["history"]) == 2
    assert all(row["spread"] > 0 for row in info["history"])
    fresh = create_model("resnet10").state_dict()
    assert "head.3.weight" not in weights and "head.3.weight" in fresh
    assert set(weights) == set(fresh) - {"head.3.weight", "head.3.bias"}
    assert not torch.equal(weights["stem.0.weight"], fresh["stem.0.weight"])

    model = create_model("resnet10")
    head = model.head[3].weight.detach().clone()
    load_pretrained(model, path)
    assert torch.equal(model.state_dict()["stages.2.0.conv1.weight"], weights["stages.2.0.conv1.weight"])
    assert torch.equal(model.head[3].weight, head)

    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--init", str(path), "--model", "resnet10",
                 "--image-size", "32", "--epochs", "1", "--batch-size", "16", "--val-fraction", "0.2", "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["init"] == str(path) and (run / "model.safetensors").exists()
    assert config["init_source"] == {"file": PRETRAINED_NAME, "path": str(path), "kind": "pneumoscan pretrain",
                                     "sha256": file_sha256(path)}


def test_interrupted_pretraining_resumes_to_the_same_weights(tiny_data: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    straight = load_file(str(pretrain(_cfg(tiny_data, tmp_path / "a"), progress=False)))

    def crash(_message: str) -> None:  # called once per epoch, after the checkpoint is written
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrain_module.tqdm, "write", crash)
    with pytest.raises(KeyboardInterrupt):
        pretrain(_cfg(tiny_data, tmp_path / "b"), progress=False)
    monkeypatch.undo()
    assert not (tmp_path / "b" / PRETRAINED_NAME).exists()
    with pytest.raises(InputError, match="--resume"):
        pretrain(_cfg(tiny_data, tmp_path / "b"), progress=False)
    changed = _cfg(tiny_data, tmp_path / "b")
    changed.seed, changed.batch_size = 7, changed.batch_size * 2
    with pytest.raises(InputError, match=r"--batch-size 16 \(pretraining: 8\), --seed 7 \(pretraining: 0\): resume with the options"):
        pretrain(changed, resume=True, progress=False)
    ckpt_path = tmp_path / "b" / PRETRAIN_CHECKPOINT  # as saved before --crop existed: no such key
    ckpt = torch.load(ckpt_path, weights_only=True)
    del ckpt["config"]["crop"]
    ckpt["config"]["consistency"] = 0.0  # a supervised-training default of its time: must not block the resume
    torch.save(ckpt, ckpt_path)
    cropped = _cfg(tiny_data, tmp_path / "b")
    cropped.crop = True
    with pytest.raises(InputError, match=r"pt: --crop True \(pretraining: False\): resume"):
        pretrain(cropped, resume=True, progress=False)
    (tmp_path / "b" / f".{PRETRAIN_CHECKPOINT}.999.tmp").write_bytes(b"half-written by a killed run")
    resumed = load_file(str(pretrain(_cfg(tiny_data, tmp_path / "b"), resume=True, progress=False)))
    assert not list((tmp_path / "b").glob(".*.tmp"))
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert torch.allclose(resumed[key].float(), straight[key].float(), atol=1e-6), key


def test_a_full_disk_at_the_pretrained_weights_says_so_and_resume_writes_them(tiny_data: Path, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch,
                                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """safetensors' own error for a full disk ended pretraining in a traceback; the checkpoint is whole, so
    `--resume` writes the weights without training again."""
    out = tmp_path / "pre"
    args = ["pretrain", "--data", str(tiny_data), "--out", str(out), "--model", "cnn", "--image-size", "32",
            "--epochs", "1", "--batch-size", "8", "--quiet"]
    with monkeypatch.context() as patch:
        patch.setattr(pretrain_module, "save_file", full_safetensors)
        assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{out / PRETRAINED_NAME}: cannot be written (No space left on device); free disk space; continue it " \
           f"with `pneumoscan pretrain --data {tiny_data} --out {out} --resume`" in err and "Traceback" not in err
    assert not (out / PRETRAINED_NAME).exists() and not list(out.glob(".*.tmp"))
    assert main([*args, "--resume"]) == 0
    assert "pretrain epoch" not in capsys.readouterr().out and (out / PRETRAINED_NAME).is_file()


def test_init_errors_name_the_file_and_the_fix(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(InputError, match="pneumoscan pretrain"):
        load_pretrained(create_model("resnet10"), missing)
    path = pretrain(_cfg(tiny_data, tmp_path / "pre"), progress=False)
    with pytest.raises(InputError, match="same --model"):
        load_pretrained(create_model("cnn"), path)
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_text("not weights")
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), "--init", str(bogus), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(bogus) in err and "Traceback" not in err


def test_diverged_pretraining_stops_and_its_weights_are_refused(tiny_data: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pre"
    assert main(["pretrain", "--data", str(tiny_data), "--out", str(out), "--model", "cnn", "--image-size", "32",
                 "--epochs", "1", "--batch-size", "8", "--lr", "1e30", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "pretraining diverged in epoch 1" in err and "lower --lr" in err and "Traceback" not in err
    assert not (out / PRETRAINED_NAME).exists()
    model = create_model("cnn")
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    weights[next(iter(weights))].fill_(float("nan"))  # such a file, written before the guard existed
    from safetensors.torch import save_file

    save_file(weights, str(tmp_path / "nan.safetensors"))
    with pytest.raises(InputError, match="NaN or infinite weights"):
        load_pretrained(create_model("cnn"), tmp_path / "nan.safetensors")


def test_train_init_warns_when_the_pretraining_left_out_other_validation_patients(tiny_data: Path, tmp_path: Path,
                                                                                  capsys: pytest.CaptureFixture[str]
                                                                                  ) -> None:
    path = pretrain(TrainConfig(data=str(tiny_data), out=str(tmp_path / "pre"), model="resnet10", image_size=32,
                                epochs=1, batch_size=8, val_fraction=0.2), progress=False)
    common = ["train", "--data", str(tiny_data), "--init", str(path), "--model", "resnet10", "--image-size", "32",
              "--epochs", "1", "--batch-size", "16", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "same"), "--val-fraction", "0.2"]) == 0
    assert "pretrained with" not in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "other"), "--val-fraction", "0.3", "--no-equalize"]) == 0
    captured = capsys.readouterr()
    err = captured.err  # with every other warning, not in the training log on stdout
    # the film record counts the validation films it trained on: the split settings themselves are not compared
    assert "equalize False (pretrained with True): the pretraining prepared its inputs otherwise" in err
    assert "(pretrained with 0.2)" not in err and "the pretraining trained on" in err
    assert "pretrained with" not in captured.out
    _without_film_record(path)  # a file from before the film record: its split settings are what can be compared
    assert main([*common, "--out", str(tmp_path / "older"), "--val-fraction", "0.3", "--no-equalize"]) == 0
    err = capsys.readouterr().err
    assert "pneumoscan: warning: " in err and "val-fraction 0.3 (pretrained with 0.2)" in err
    assert "equalize False (pretrained with True)" in err and "--split-seed, --val-fraction" in err


def test_a_second_process_cannot_pretrain_in_a_folder_in_use(tiny_data: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from pneumoscan.training.checkpoint import run_lock

    out = tmp_path / "pre"
    common = ["pretrain", "--data", str(tiny_data), "--out", str(out), "--model", "cnn", "--image-size", "32",
              "--batch-size", "8", "--quiet"]
    assert main([*common, "--epochs", "1"]) == 0
    checkpoint = (out / PRETRAIN_CHECKPOINT).read_bytes()
    writing = out / f".{PRETRAIN_CHECKPOINT}.4242.tmp"  # the first process's checkpoint, half written
    capsys.readouterr()
    with run_lock(out):  # as the first process holds it while it pretrains (flock: per open file, so this process too)
        writing.write_bytes(b"half-written")
        assert main([*common, "--epochs", "2", "--resume"]) == 2
        assert "another pneumoscan process is training in this folder" in capsys.readouterr().err
        assert writing.exists() and (out / PRETRAIN_CHECKPOINT).read_bytes() == checkpoint
        writing.unlink()
    assert main([*common, "--epochs", "2", "--resume"]) == 0  # released when it ends
    with safe_open(str(out / PRETRAINED_NAME), "pt") as handle:
        assert json.loads(handle.metadata()["pneumoscan_pretrained"])["epochs"] == 2


def _record(path: Path) -> dict:
    with safe_open(str(path), "pt") as handle:
        return json.loads(handle.metadata()["pneumoscan_pretrained"])


def _without_film_record(path: Path) -> None:
    """Rewrite pretraining `path` as one recorded before the film fingerprints were."""
    from safetensors.torch import save_file

    record = {k: v for k, v in _record(path).items() if not k.startswith("film_fingerprint")}
    save_file(load_file(str(path)), str(path), metadata={"pneumoscan_pretrained": json.dumps(record)})


def _drop_patient_key(path: Path) -> None:
    from safetensors.torch import save_file

    record = {k: v for k, v in _record(path).items() if k != "patient_key"}
    save_file(load_file(str(path)), str(path), metadata={"pneumoscan_pretrained": json.dumps(record)})


def test_train_init_compares_how_the_pretraining_read_patients(tiny_data: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import write_dicom_dataset

    dicom = write_dicom_dataset(tmp_path / "dicom", size=16)
    pre = pretrain(TrainConfig(data=str(dicom), out=str(tmp_path / "pre"), model="cnn", image_size=16, epochs=1,
                               batch_size=8, val_fraction=0.25), progress=False)
    assert _record(pre)["patient_key"] == "auto"
    _without_film_record(pre)  # the settings are compared for files that do not record their films
    common = ["train", "--data", str(dicom), "--init", str(pre), "--model", "cnn", "--image-size", "16",
              "--epochs", "1", "--batch-size", "16", "--val-fraction", "0.25", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "same")]) == 0
    assert "pretrained with" not in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "by_name"), "--patient-key", "name"]) == 0
    err = capsys.readouterr().err
    assert "patient-key name (pretrained with auto)" in err and "--val-fraction, --patient-key and" in err
    _drop_patient_key(pre)  # as a pretraining recorded before --patient-key: it read patients by name
    assert main([*common, "--out", str(tmp_path / "after_old")]) == 0
    assert "patient-key auto (pretrained with name)" in capsys.readouterr().err

    # Kermany names: `auto` reads them as `name` does, and as a pretraining recorded before --patient-key did
    kermany = pretrain(_cfg(tiny_data, tmp_path / "k"), progress=False)
    assert _record(kermany)["patient_key"] == "name"
    _without_film_record(kermany)
    _drop_patient_key(kermany)
    common = ["train", "--data", str(tiny_data), "--init", str(kermany), "--model", "resnet10", "--image-size", "32",
              "--epochs", "1", "--batch-size", "16", "--val-fraction", "0.2", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "k_auto")]) == 0
    assert "pretrained with" not in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "k_folder"), "--patient-key", "folder"]) == 2  # no patient folders
    assert "--patient-key folder reads the patient from the folder" in capsys.readouterr().err


def test_a_pretraining_saved_before_patient_key_resumes_splitting_by_name(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import write_dicom_dataset

    data = write_dicom_dataset(tmp_path / "data", size=16)
    out = tmp_path / "pre"
    common = ["pretrain", "--data", str(data), "--out", str(out), "--model", "cnn", "--image-size", "16",
              "--batch-size", "8", "--val-fraction", "0.25", "--quiet"]
    assert main([*common, "--epochs", "1", "--patient-key", "name"]) == 0
    ckpt = torch.load(out / PRETRAIN_CHECKPOINT, weights_only=True)
    del ckpt["config"]["patient_key"]  # as saved before the option existed
    torch.save(ckpt, out / PRETRAIN_CHECKPOINT)
    assert main([*common, "--epochs", "2", "--resume", "--patient-key", "auto"]) == 2
    assert "--patient-key auto (pretraining: name): resume with the options" in capsys.readouterr().err
    assert main([*common, "--epochs", "2", "--resume"]) == 0
    assert "--patient-key name" in capsys.readouterr().out  # the next step trains on the same split
    assert _record(out / PRETRAINED_NAME)["patient_key"] == "name" and _record(out / PRETRAINED_NAME)["epochs"] == 2


def test_resume_refuses_data_holding_other_images_and_accepts_a_moved_copy(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """As `train --resume` does: other images would mix two splits' training images into one pretraining."""
    import shutil

    from tests.conftest import write_xray

    data = tmp_path / "data"
    for p in range(12):
        write_xray(data / "train" / "NORMAL" / f"IM-{p:04d}-0001.jpeg", 0, 2 * p, size=24)
        write_xray(data / "train" / "PNEUMONIA" / f"person{p}_virus_{p}.jpeg", 1, 2 * p + 1, size=24)
    out = tmp_path / "pre"
    common = ["pretrain", "--out", str(out), "--model", "cnn", "--image-size", "16", "--batch-size", "8", "--quiet"]
    assert main([*common, "--data", str(data), "--epochs", "1"]) == 0
    fewer = shutil.copytree(data, tmp_path / "fewer")
    (fewer / "train" / "NORMAL" / "IM-0000-0001.jpeg").unlink()
    before = (out / PRETRAIN_CHECKPOINT).read_bytes()
    capsys.readouterr()
    assert main([*common, "--data", str(fewer), "--epochs", "2", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pneumoscan: error: {fewer}: holds other images than the pretraining in {out} was started "
                          f"with (train ") and "where the pretraining had train" in err
    assert err.rstrip().endswith("resume with the data it was started with, or start a new pretraining with another "
                                 "--out") and len(err.strip().splitlines()) == 1
    rows = tmp_path / "fewer.csv"  # a manifest with fewer films may be one whose rows listed twice were deleted
    rows.write_text("path,label\n" + "".join(f"{f},{f.parent.name}\n" for f in sorted(fewer.rglob("*.jpeg"))))
    assert main([*common, "--data", str(rows), "--epochs", "2", "--resume"]) == 2
    assert capsys.readouterr().err.rstrip().endswith(
        "or start a new pretraining with another --out (a new pretraining if rows that listed a file twice were "
        "deleted from the manifest: earlier versions read such rows and trained on the file twice, this one refuses "
        "them, so the manifest the pretraining was started with cannot be read again)")
    assert (out / PRETRAIN_CHECKPOINT).read_bytes() == before
    moved = data.rename(tmp_path / "moved")
    assert main([*common, "--data", str(moved), "--epochs", "2", "--resume"]) == 0
    assert _record(out / PRETRAINED_NAME)["epochs"] == 2


def test_pretrain_into_a_train_run_and_train_into_a_pretraining_are_refused(tiny_run: Path, tiny_data: Path,
                                                                           tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`pretrain --out RUN` wrote its checkpoint and weights among a train run's files, and `train --out PRE` a run
    among a pretraining's: each is refused in one line naming the folder, and leaves the folder as it was."""
    import shutil

    run, pre = tmp_path / "run", tmp_path / "pre"
    shutil.copytree(tiny_run, run)
    common = ["--data", str(tiny_data), "--model", "cnn", "--image-size", "32", "--batch-size", "8", "--epochs", "1",
              "--quiet"]
    before = sorted(p.name for p in run.iterdir())
    assert main(["pretrain", *common, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"{run}: holds a `pneumoscan train` run or model (last.pt, model.safetensors), beside whose files" in err
    assert "give --out a folder of its own for the pretraining" in err and "Traceback" not in err
    assert sorted(p.name for p in run.iterdir()) == before
    assert main(["pretrain", *common, "--out", str(pre)]) == 0
    before = sorted(p.name for p in pre.iterdir())
    capsys.readouterr()
    assert main(["train", *common, "--out", str(pre)]) == 2
    err = capsys.readouterr().err
    assert (f"{pre}: holds a `pneumoscan pretrain` pretraining ({PRETRAIN_CHECKPOINT}, {PRETRAINED_NAME}), beside "
            f"whose files the run would write; give --out a folder of its own for the run") in err
    assert sorted(p.name for p in pre.iterdir()) == before


def test_train_init_tells_a_split_by_folder_and_file_name_from_one_by_file_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """DICOM films without a PatientID whose names repeat in other folders are keyed by folder and name with `auto`,
    which `name` does not do: a pretraining split by name saw other validation films, and `train --init` said nothing,
    taking such an `auto` split for one by file name."""
    from tests.conftest import write_dicom

    data = tmp_path / "export"
    for label, cls in enumerate(("NORMAL", "PNEUMONIA")):
        for p in range(8):  # IM0_N.dcm in folders N0 and N4, ...: one patient by name, two by folder and name
            write_dicom(data / "train" / cls / f"{cls[0]}{p}" / f"IM{p % 4}_{cls[0]}.dcm", label, 10 * label + p,
                        size=16)
    pre = pretrain(TrainConfig(data=str(data), out=str(tmp_path / "pre"), model="cnn", image_size=16, epochs=1,
                               batch_size=8, val_fraction=0.25, patient_key="name"), progress=False)
    assert _record(pre)["patient_key"] == "name"
    _without_film_record(pre)  # as recorded before the films were; with them, the films seen are counted instead
    assert main(["train", "--data", str(data), "--init", str(pre), "--out", str(tmp_path / "run"), "--model", "cnn",
                 "--image-size", "16", "--epochs", "1", "--batch-size", "16", "--val-fraction", "0.25", "--quiet"]) == 0
    assert "patient-key auto (pretrained with name)" in capsys.readouterr().err


def test_train_init_warns_when_the_pretraining_trained_on_its_validation_films(tiny_data: Path, tmp_path: Path,
                                                                                capsys: pytest.CaptureFixture[str]
                                                                                ) -> None:
    """--max-images caps each class before the patient carve, so a pretraining under another cap trained on some of
    the run's validation patients: counted from the film fingerprints the pretraining records."""
    import re

    from pneumoscan.training.run_data import prepare_data

    pre = tmp_path / "pre"
    assert main(["pretrain", "--data", str(tiny_data), "--out", str(pre), "--model", "cnn", "--image-size", "32",
                 "--epochs", "1", "--batch-size", "8", "--val-fraction", "0.2", "--max-images", "12", "--quiet"]) == 0
    hint = capsys.readouterr().out.split("next: pneumoscan ")[1].split()
    assert hint[hint.index("--max-images") + 1] == "12"  # the hint keeps the cap, which chooses patients too
    extra = ["--image-size", "32", "--epochs", "1", "--batch-size", "16", "--quiet"]
    assert main([*[str(tmp_path / "same") if a == "RUN" else a for a in hint], *extra]) == 0
    assert "validation films" not in capsys.readouterr().err  # the command it suggests validates on unseen films

    init = str(pre / PRETRAINED_NAME)
    common = ["train", "--data", str(tiny_data), "--init", init, "--model", "cnn", "--val-fraction", "0.2", *extra]
    assert main([*common, "--out", str(tmp_path / "uncapped")]) == 0
    err = capsys.readouterr().err
    assert "pretrained with" not in err  # the count below is the truth, not the cap's difference
    seen = {str(s.path) for s in prepare_data(TrainConfig(data=str(tiny_data), out="x", val_fraction=0.2,
                                                          max_images=12), 32, progress=False).train.samples}
    val = json.loads((tmp_path / "uncapped" / "split.json").read_text())["val_files"]
    expected = sum(f in seen for f in val)
    assert expected > 0
    found = re.search(r"the pretraining trained on (\d+) of this run's (\d+) validation films", err)
    assert found and (int(found[1]), int(found[2])) == (expected, len(val)) and "--max-images" in err

    _without_film_record(Path(init))
    assert main([*common, "--max-images", "12", "--out", str(tmp_path / "old")]) == 0
    err = capsys.readouterr().err
    assert "cannot be checked" in err and len([line for line in err.splitlines() if "cannot be checked" in line]) == 1


def test_pretrain_says_what_train_says_about_the_data_but_labels(tiny_dataset: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`pretrain` said nothing of unreadable films skipped or of file-name keys joining folders, which choose the
    validation patients it leaves out; a film under both labels does not matter to it (it reads no labels)."""
    for label in ("NORMAL", "PNEUMONIA"):
        for i, film in enumerate(sorted((tiny_dataset / "train" / label).iterdir())):
            film.rename(film.parent / f"{i + 1:04d}.jpeg")
    normal = tiny_dataset / "train" / "NORMAL"
    (tiny_dataset / "train" / "PNEUMONIA" / "9999.jpeg").write_bytes((normal / "0001.jpeg").read_bytes())
    (normal / "broken.jpeg").write_bytes(b"not an image")
    assert main(["pretrain", "--data", str(tiny_dataset), "--out", str(tmp_path / "pre"), "--model", "cnn",
                 "--image-size", "16", "--epochs", "1", "--batch-size", "8", "--quiet"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("pneumoscan: warning: ")]
    assert any(line.startswith(f"pneumoscan: warning: skipped {normal / 'broken.jpeg'}") for line in warned), warned
    assert sum("patient keys read from file names join images in different folders" in line for line in warned) == 1
    assert not any("both labels" in line for line in warned), warned


def _init_warnings(err: str, init: Path) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"pneumoscan: warning: {init}")]


def test_train_init_is_silent_when_the_pretraining_saw_none_of_its_validation_films(
        tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A cap at or above the class sizes splits as no cap does, and a given val/ folder is one pretrain never
    carves: with the films recorded, the film count (none seen) is what counts, not the settings' difference."""
    import shutil

    pre = tmp_path / "pre"
    assert main(["pretrain", "--data", str(tiny_data), "--out", str(pre), "--model", "cnn", "--image-size", "32",
                 "--epochs", "1", "--batch-size", "8", "--val-fraction", "0.2", "--max-images", "1000", "--quiet"]) == 0
    init = pre / PRETRAINED_NAME
    common = ["train", "--init", str(init), "--model", "cnn", "--image-size", "32", "--epochs", "1",
              "--batch-size", "16", "--val-fraction", "0.2", "--quiet"]
    capsys.readouterr()
    assert main([*common, "--data", str(tiny_data), "--out", str(tmp_path / "uncapped")]) == 0
    assert _init_warnings(capsys.readouterr().err, init) == []
    given = tmp_path / "given"  # its val/ holds the test films, which the pretraining never saw
    shutil.copytree(tiny_data / "train", given / "train")
    shutil.copytree(tiny_data / "test", given / "val")
    assert main([*common, "--data", str(given), "--use-given-val", "--out", str(tmp_path / "given_run")]) == 0
    assert _init_warnings(capsys.readouterr().err, init) == []


def test_train_init_blames_the_data_when_the_pretraining_split_as_the_run_does(
        tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Pretrained on the run's data plus copies of its films under other patients' names, with the run's settings:
    pretraining again with those settings would change nothing, so the warning names the data as the cause."""
    import re
    import shutil

    data = tmp_path / "more"
    shutil.copytree(tiny_data / "train", data / "train")
    for film in sorted((data / "train" / "NORMAL").iterdir()):  # IM-0007-0001.jpeg as IM-1007-0001.jpeg
        shutil.copy(film, film.with_name(film.name.replace("IM-0", "IM-1")))
    pre = pretrain(TrainConfig(data=str(data), out=str(tmp_path / "pre"), model="cnn", image_size=32, epochs=1,
                               batch_size=8, val_fraction=0.2), progress=False)
    assert main(["train", "--data", str(tiny_data), "--init", str(pre), "--out", str(tmp_path / "run"), "--model",
                 "cnn", "--image-size", "32", "--epochs", "1", "--batch-size", "16", "--val-fraction", "0.2",
                 "--quiet"]) == 0
    warned = _init_warnings(capsys.readouterr().err, pre)
    assert len(warned) == 1 and re.search(r"the pretraining trained on [1-9]\d* of this run's", warned[0])
    assert "its split settings are this run's" in warned[0] and "`pneumoscan audit`" in warned[0]
    assert "pretrain again with this run's --split-seed" not in warned[0]


def test_train_init_from_a_model_checks_the_films_the_model_recorded(tiny_run: Path, tiny_data: Path,
                                                                      tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A model file given to --init is not a pretraining from an earlier pneumoscan: its training record holds
    the films it was trained and validated on, which are counted."""
    model = tiny_run / "model.safetensors"
    assert main(["train", "--data", str(tiny_data), "--init", str(model), "--out", str(tmp_path / "run"), "--model",
                 "resnet10", "--image-size", "32", "--epochs", "1", "--batch-size", "16", "--val-fraction", "0.2",
                 "--quiet"]) == 0
    warned = _init_warnings(capsys.readouterr().err, model)
    val = json.loads((tmp_path / "run" / "split.json").read_text())["val_files"]
    assert len(warned) == 1, warned
    assert f"the model given to --init was trained or validated on {len(val)} of this run's {len(val)}" in warned[0]
    assert "earlier pneumoscan" not in warned[0]


def test_an_unreadable_pretraining_record_is_one_line_before_any_image_is_decoded(
        tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import save_file

    from pneumoscan.training import trainer

    pre = pretrain(TrainConfig(data=str(tiny_data), out=str(tmp_path / "pre"), model="cnn", image_size=32, epochs=1,
                               batch_size=8), progress=False)
    save_file(load_file(str(pre)), str(pre), metadata={"pneumoscan_pretrained": "{not json"})

    def decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded the images before reading --init")

    monkeypatch.setattr(trainer, "prepare_data", decode)
    assert main(["train", "--data", str(tiny_data), "--init", str(pre), "--out", str(tmp_path / "run"), "--model",
                 "cnn", "--image-size", "32", "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pneumoscan: error: {pre}: its record of the pretraining is unreadable")
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_the_train_command_pretrain_suggests_keeps_its_image_size(tiny_data: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # its `next:` left out --image-size: train then built the model at its default size, which the mlp's pretrained
    # weights do not fit ("weights do not fit this model"), and a network with convolutions took silently
    pre = tmp_path / "pre"
    assert main(["pretrain", "--data", str(tiny_data), "--out", str(pre), "--model", "mlp", "--image-size", "24",
                 "--epochs", "1", "--batch-size", "8", "--quiet"]) == 0
    hint = capsys.readouterr().out.split("next: pneumoscan ")[1].split()
    run = tmp_path / "run"
    assert main([*[str(run) if a == "RUN" else a for a in hint], "--epochs", "1", "--batch-size", "16", "--quiet"]) == 0
    assert json.loads((run / "config.json").read_text())["image_size"] == 24


def test_train_init_names_the_image_size_the_pretraining_learned_at(tiny_data: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # a cnn pretrained at 32 px started a 48 px run without a word; the mlp's refusal named the model, not the size
    for model in ("cnn", "mlp"):
        assert main(["pretrain", "--data", str(tiny_data), "--out", str(tmp_path / model), "--model", model,
                     "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--quiet"]) == 0
    capsys.readouterr()
    train = ["train", "--data", str(tiny_data), "--image-size", "48", "--epochs", "1", "--batch-size", "16", "--quiet"]
    assert main([*train, "--model", "cnn", "--init", str(tmp_path / "cnn" / PRETRAINED_NAME),
                 "--out", str(tmp_path / "run")]) == 0
    assert ("image-size 48 (pretrained with 32): the pretraining prepared its inputs otherwise; pretrain again with "
            "this run's --image-size, --equalize/--no-equalize and --crop/--no-crop") in capsys.readouterr().err
    assert main([*train, "--model", "mlp", "--init", str(tmp_path / "mlp" / PRETRAINED_NAME),
                 "--out", str(tmp_path / "refused")]) == 2
    assert "; pretrained for --model mlp at 32 px); pretrain with the same --model, --image-size" in \
        capsys.readouterr().err
    assert main([*train, "--image-size", "32", "--model", "cnn", "--init", str(tmp_path / "cnn" / PRETRAINED_NAME),
                 "--out", str(tmp_path / "same")]) == 0
    assert "pretrained with" not in capsys.readouterr().err


def test_the_pretrain_epoch_line_rounds_once(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # it formatted the record's 5-decimal means to 4: 0.66575003 was stored as 0.66575 and shown as 0.6657, where
    # the bar, formatting the mean itself, showed 0.6658
    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zero = sum(p.sum() for p in self.parameters()) * 0
        return zero.double() + 0.66575003, torch.tensor(0.66575003, dtype=torch.float64)

    monkeypatch.setattr(pretrain_module.SimSiam, "forward", forward)
    assert main(["pretrain", "--data", str(tiny_data), "--out", str(tmp_path / "pre"), "--model", "cnn",
                 "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--quiet"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("pretrain epoch"))
    assert line.startswith("pretrain epoch   1  loss 0.6658  spread 0.6658 "), line


def test_pretrain_ends_counting_the_unreadable_files_it_skipped(tiny_dataset: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # each was named in a warning before the epochs, which a long pretraining scrolls away; the end said nothing
    for name in ("IM-0990-0001.jpeg", "IM-0991-0001.jpeg"):
        (tiny_dataset / "train" / "NORMAL" / name).write_bytes(b"\xff\xd8\xff")  # cut off after its first bytes
    out = tmp_path / "pre"
    assert main(["pretrain", "--data", str(tiny_dataset), "--out", str(out), "--model", "cnn", "--image-size", "32",
                 "--epochs", "1", "--batch-size", "8", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("skipped ") == 2, captured.err
    assert (f"pretrained weights: {out / PRETRAINED_NAME}; 2 unreadable files skipped (named in the warnings before "
            f"the epochs)\n") in captured.out
    assert pretrain_module.pretraining_record(out / PRETRAINED_NAME)["skipped"] == 2


def test_a_pretraining_resumed_with_other_epochs_says_what_its_learning_rate_does(
        tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # train warned of it; pretrain followed another cosine schedule silently, and `--resume` without --epochs took its
    # default 15 for a pretraining started with --epochs 1
    out = tmp_path / "pre"
    args = ["pretrain", "--data", str(tiny_data), "--out", str(out), "--model", "cnn", "--image-size", "32",
            "--batch-size", "8", "--lr", "0.1", "--quiet"]
    assert main([*args, "--epochs", "2"]) == 0
    capsys.readouterr()
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    assert "warning" not in capsys.readouterr().err  # the same --epochs: the same schedule
    assert main([*args, "--epochs", "3", "--resume"]) == 0
    # SGD at 0.1 x 8 / 256 = 0.003125: epoch 2 of 2 at (1 + cos(pi / 2)) / 2 of it, epoch 3 of 3 at (1 + cos(2 pi / 3)) / 2
    assert ("pneumoscan: warning: --epochs 3 (pretraining: 2): from epoch 3 on, the learning rate follows the cosine "
            "schedule of a 3-epoch pretraining, so it moves from 0.00156 (end of epoch 2) to 0.000781; the weights "
            "will differ from those of a pretraining started with --epochs 3") in capsys.readouterr().err
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    err = capsys.readouterr().err
    assert ("pneumoscan: warning: --epochs 2 (pretraining: 3): no epoch is left to train; pretrained.safetensors "
            "holds the 3 epochs trained") in err, err


def test_a_pretraining_resumed_without_epochs_keeps_its_own(tiny_data: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # `--resume` without --epochs trained to the parser's default 15 (a 2-epoch pretraining 13 epochs more, its
    # learning rate going up) and warned of an `--epochs 15` the user never typed
    args = ["pretrain", "--data", str(tiny_data), "--model", "cnn", "--image-size", "32", "--batch-size", "8",
            "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a"), "--epochs", "2"]) == 0
    straight = load_file(str(tmp_path / "a" / PRETRAINED_NAME))

    def crash(_message: str) -> None:  # called once per epoch, after the checkpoint is written
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(pretrain_module.tqdm, "write", crash)
        assert main([*args, "--out", str(tmp_path / "b"), "--epochs", "2"]) == 130
        assert main([*args, "--out", str(tmp_path / "c")]) == 130  # a new pretraining: 15 epochs
    assert torch.load(tmp_path / "c" / PRETRAIN_CHECKPOINT, weights_only=True)["config"]["epochs"] == 15
    capsys.readouterr()
    # without --image-size: '--image-size None (pretraining: 32)' named a value nobody typed
    assert main([*[a for a in args if a not in ("--image-size", "32")], "--out", str(tmp_path / "b"), "--resume"]) == 2
    assert "pt: --image-size left out (pretraining: 32): resume with the options" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b"), "--resume"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert pretrain_module.pretraining_record(tmp_path / "b" / PRETRAINED_NAME)["epochs"] == 2
    resumed = load_file(str(tmp_path / "b" / PRETRAINED_NAME))
    assert resumed.keys() == straight.keys()
    assert all(torch.allclose(resumed[key].float(), straight[key].float(), atol=1e-6) for key in straight)


def test_an_interrupted_resume_with_more_epochs_is_continued_to_them_by_a_plain_resume(
        tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # `--resume --epochs 3` interrupted before its first epoch ended left the checkpoint's --epochs 1 (rewritten only
    # at an epoch's end), so a plain `--resume` after it ended the pretraining at epoch 1
    out = tmp_path / "pre"
    args = ["pretrain", "--data", str(tiny_data), "--out", str(out), "--model", "cnn", "--image-size", "32",
            "--batch-size", "8", "--quiet"]
    assert main([*args, "--epochs", "1"]) == 0
    save = pretrain_module.atomic_torch_save

    def interrupted(checkpoint: dict, path: Path) -> None:  # Ctrl+C in epoch 2, before its checkpoint
        if checkpoint["state"]["epoch"] > 1:
            raise KeyboardInterrupt
        save(checkpoint, path)

    with monkeypatch.context() as patch:
        patch.setattr(pretrain_module, "atomic_torch_save", interrupted)
        assert main([*args, "--epochs", "3", "--resume"]) == 130
    assert torch.load(out / PRETRAIN_CHECKPOINT, weights_only=True)["config"]["epochs"] == 3
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    assert "warning" not in capsys.readouterr().err  # the --epochs 3 it continues with are its own now
    assert pretrain_module.pretraining_record(out / PRETRAINED_NAME)["epochs"] == 3


def test_the_train_command_pretrain_suggests_can_be_pasted_for_paths_with_a_space(
        tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`next: pneumoscan train --data my data --init my pre/pretrained.safetensors ...` split both in a shell."""
    import shlex
    import shutil

    data, pre = tmp_path / "my data", tmp_path / "my pre"
    shutil.copytree(tiny_data, data)
    assert main(["pretrain", "--data", str(data), "--out", str(pre), "--model", "mlp", "--image-size", "24",
                 "--epochs", "1", "--batch-size", "8", "--quiet"]) == 0
    hint = shlex.split(capsys.readouterr().out.split("next: ")[1])
    assert hint[:6] == ["pneumoscan", "train", "--data", str(data), "--init", str(pre / PRETRAINED_NAME)]
