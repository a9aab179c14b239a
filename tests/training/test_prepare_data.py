from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pneumoscan.errors import InputError
from pneumoscan.training.config import TrainConfig
from pneumoscan.training.trainer import prepare_data


def test_given_val_counts_patient_ids_shared_with_train(tiny_dataset: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_dataset / "test", tiny_dataset / "val")  # IM-0000..0003 and person0..3 are also in train/
    given = prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), use_given_val=True), 16, False)
    assert given.split_record["method"] == "given val/ folder"
    assert given.split_record["patient_ids_in_train_and_val"] == 8
    carved = prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), val_fraction=0.3), 16, False)
    assert carved.split_record["patient_ids_in_train_and_val"] == 0


def test_one_class_after_the_carve_names_the_carve_not_the_data(tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), max_images=1)
    with pytest.raises(InputError) as info:
        prepare_data(cfg, 16, False)
    message = str(info.value)
    assert "carving 15% of patients for validation" in message and "--max-images 1" in message
    assert "1 NORMAL" in message and "add images of both classes" not in message
    assert "raise --max-images" in message and "no --val-fraction can help" in message  # one image: one patient


def _one_pneumonia_patient(data: Path) -> None:
    for i, film in enumerate(sorted((data / "train" / "PNEUMONIA").iterdir())):
        film.rename(film.with_name(f"person7_virus_{i}.jpeg"))


def test_a_class_of_one_patient_names_it_and_what_helps(tiny_dataset: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The carve cannot put one patient on both sides: changing --val-fraction cannot help, so it is not offered."""
    from pneumoscan.cli import main

    _one_pneumonia_patient(tiny_dataset)
    for fraction in ("0.15", "0.05"):
        assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--val-fraction", fraction,
                     "--image-size", "16", "--epochs", "1", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "all PNEUMONIA images are of one patient (person7)" in err and "no --val-fraction can help" in err
        assert "change --val-fraction" not in err and "--max-images" not in err
        assert "add films of more patients" in err and "a val/ folder beside train/" in err and "--use-given-val" in err
        assert len(err.strip().splitlines()) == 1
    shutil.copytree(tiny_dataset / "train", tiny_dataset / "val")  # the remedy the message offers
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--use-given-val",
                 "--image-size", "16", "--epochs", "1", "--quiet"]) == 0


def test_pretrain_offers_only_its_own_options_for_a_class_of_one_patient(tiny_dataset: Path, tmp_path: Path) -> None:
    from pneumoscan.cli import build_parser

    _one_pneumonia_patient(tiny_dataset)
    cfg = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "p"))
    with pytest.raises(InputError, match="no --val-fraction can help: add films of more patients") as info:
        prepare_data(cfg, 16, False, command="pretrain")
    pretrain_options = build_parser()._subparsers._group_actions[0].choices["pretrain"].format_help()
    assert "--use-given-val" not in str(info.value) and "--use-given-val" not in pretrain_options

