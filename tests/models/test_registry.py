from __future__ import annotations

import pytest
import torch

from pneumoscan.models.registry import create_model, get_spec, list_models


def test_registry_lists_the_families() -> None:
    names = list_models()
    assert {"mlp", "cnn", "resnet10", "resnet18"} <= set(names)


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet10", "resnet18"])
def test_single_logit_and_cam_layer(name: str) -> None:
    spec = get_spec(name)
    size = 64 if name == "mlp" else 48
    model = create_model(name, image_size=size) if name == "mlp" else create_model(name)
    model.eval()
    out = model(torch.randn(3, 1, size, size))
    assert out.shape == (3,)
    if spec.cam_layer is not None:
        layer = model.get_submodule(spec.cam_layer)
        assert any(isinstance(m, torch.nn.Conv2d) for m in layer.modules())


def test_unknown_model() -> None:
    with pytest.raises(KeyError, match="choose one of"):
        create_model("vgg99")
