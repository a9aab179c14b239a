"""Every registered architecture through the training commands at an input size other than its own."""
from __future__ import annotations

from pathlib import Path

import torch

from pneumoscan.cli import main
from pneumoscan.models.registry import create_model, model_config
from pneumoscan.training.config import TrainConfig
from pneumoscan.training.pretrain import pretrain
from tests.conftest import imagenet_state_dict


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


def test_a_torchvision_layout_resnet_from_imagenet_weights_exports_explains_ensembles_guards_and_serves(
        tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from pneumoscan.artifact import load_artifact
    from pneumoscan.data.preprocess import load_image
    from pneumoscan.explain.gradcam import cam_layers, gradcam_for_image
    from pneumoscan.inference.ood import guard_path
    from pneumoscan.service.app import create_app
    from pneumoscan.service.settings import Settings

    weights = tmp_path / "resnet18-f37072fd.pth"
    torch.save(imagenet_state_dict("tv_resnet18"), weights)
    run = tmp_path / "tv"  # the validation split of tiny_run (same data, --val-fraction and --split-seed)
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--init", str(weights), "--model", "tv_resnet18",
                 "--image-size", "64", "--epochs", "1", "--batch-size", "16", "--val-fraction", "0.2",
                 "--consistency", "0", "--quiet"]) == 0
    model, meta = load_artifact(run)
    assert meta.model_name == "tv_resnet18" and cam_layers(model, meta) == ["layer4"]
    assert main(["export", "--model", str(run), "--out", str(run / "model.onnx")]) == 0  # checked against torch
    assert main(["report", str(run), "--n-boot", "10"]) == 0  # its case grid and feature maps are Grad-CAMs
    assert "<td>initial weights</td><td>resnet18-f37072fd.pth (SHA-256 " in (run / "report.html").read_text()
    assert main(["fit-guard", "--model", str(run), "--data", str(tiny_data)]) == 0
    assert guard_path(run / "model.safetensors").is_file()
    ensemble = tmp_path / "ensemble"
    assert main(["ensemble", str(tiny_run), str(run), "--out", str(ensemble), "--quiet"]) == 0
    both, both_meta = load_artifact(ensemble)
    assert cam_layers(both, both_meta)[1:] == ["members.1.layer4"]  # one map per member
    assert main(["export", "--model", str(ensemble), "--out", str(ensemble / "model.onnx")]) == 0
    film = next((tiny_data / "train" / "PNEUMONIA").iterdir())
    with TestClient(create_app(Settings(model=str(run), backend="onnx"))) as client:
        body = client.post("/predict?explain=true", files={"file": (film.name, film.read_bytes(), "image/jpeg")}).json()
    assert 0 <= body["probability"] <= 1 and body["heatmap_class"] == body["label"], body
    # after one epoch the map can be all zero: the service then says it is empty rather than send the bare film
    image = load_image(film.read_bytes(), meta.image_size, name=film.name)
    cam = gradcam_for_image(model, meta, image, target=meta.class_names.index(body["label"]))
    assert body["heatmap_empty"] is (not cam.any()) and bool(body["heatmap_png_base64"]) is bool(cam.any()), body
