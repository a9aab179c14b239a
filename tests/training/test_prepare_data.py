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

