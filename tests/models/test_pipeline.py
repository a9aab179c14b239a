"""Every registered architecture through the training commands at an input size other than its own."""
from __future__ import annotations

from pathlib import Path

from pneumoscan.cli import main
from pneumoscan.models.registry import create_model, model_config
from pneumoscan.training.config import TrainConfig
from pneumoscan.training.pretrain import pretrain


def test_model_config_passes_the_input_size_only_to_fixed_size_models() -> None:
    assert model_config("mlp", image_size=32) == {"image_size": 32}
    assert model_config("cnn", image_size=32) == {} and model_config("resnet10") == {}
    create_model("cnn", **model_config("cnn", image_size=32))


def test_mlp_pretrains_at_another_size_and_train_init_starts_from_it(tiny_data: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(data=str(tiny_data), out=str(tmp_path / "pre"), model="mlp", image_size=32, epochs=1,
                      batch_size=8, val_fraction=0.2)
    path = pretrain(cfg, progress=False)
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--init", str(path), "--model",
                 "mlp", "--image-size", "32", "--epochs", "1", "--batch-size", "16", "--val-fraction", "0.2",
                 "--quiet"]) == 0
