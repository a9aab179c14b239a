"""The torchvision-layout ResNets: tensor names and shapes pinned to torchvision's, one grey channel in, one logit out."""
from __future__ import annotations

import hashlib

import pytest
import torch

from pneumoscan.models.registry import create_model, get_spec, list_models

# Transcribed from torchvision/models/resnet.py (torchvision 0.29.1): ResNet(BasicBlock, [2, 2, 2, 2]) and
# ResNet(Bottleneck, [3, 4, 6, 3]) with 3 input channels and 1000 classes.
TORCHVISION_SHAPES = {
    "tv_resnet18": {
        "conv1.weight": (64, 3, 7, 7), "bn1.running_var": (64,), "layer1.0.conv1.weight": (64, 64, 3, 3),
        "layer2.0.conv1.weight": (128, 64, 3, 3), "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer2.0.downsample.1.bias": (128,), "layer3.1.conv2.weight": (256, 256, 3, 3),
        "layer4.1.bn2.bias": (512,), "fc.weight": (1000, 512), "fc.bias": (1000,),
    },
    "tv_resnet50": {
        "conv1.weight": (64, 3, 7, 7), "layer1.0.conv1.weight": (64, 64, 1, 1), "layer1.0.conv3.weight": (256, 64, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1), "layer2.0.conv2.weight": (128, 128, 3, 3),
        "layer2.0.downsample.0.weight": (512, 256, 1, 1), "layer3.5.bn3.running_mean": (1024,),
        "layer4.2.conv3.weight": (2048, 512, 1, 1), "fc.weight": (1000, 2048), "fc.bias": (1000,),
    },
}
# Every "name shape" of torchvision's state dict, in its order, one a line: the count and SHA-256 of that text,
# computed from torchvision 0.29.1's own resnet.py (num_batches_tracked included, shape ()).
TORCHVISION_DIGESTS = {
    "tv_resnet18": (122, "84fb10d9c6905a1cbb020b284537dc97c4f4ec55fb2a780a41152a23a2dd0e9d"),
    "tv_resnet50": (320, "d7e4f8bb0a5363446a59c81c3887ccf66900a11651a0ae2dec96d1bb1eb6ea81"),
}
TV_MODELS = sorted(TORCHVISION_SHAPES)


def as_torchvision(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Our shapes with torchvision's 3-channel conv1 and 1000-class fc: the only two that differ."""
    n_features = shapes["fc.weight"][1]
    return {**shapes, "conv1.weight": (64, 3, 7, 7), "fc.weight": (1000, n_features), "fc.bias": (1000,)}


@pytest.fixture(scope="module")
def state_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    return {name: {k: tuple(v.shape) for k, v in create_model(name).state_dict().items()} for name in TV_MODELS}


@pytest.mark.parametrize("name", TV_MODELS)
def test_tensor_names_and_shapes_are_torchvisions(name: str, state_shapes: dict) -> None:
    ours = state_shapes[name]
    assert ours["conv1.weight"] == (64, 1, 7, 7) and ours["fc.weight"][0] == 1  # grey in, one logit out
    tv = as_torchvision(ours)
    for key, shape in TORCHVISION_SHAPES[name].items():
        assert tv.get(key) == shape, key
    text = "\n".join(f"{k} {v}" for k, v in tv.items())
    assert (len(tv), hashlib.sha256(text.encode()).hexdigest()) == TORCHVISION_DIGESTS[name]


def test_the_bottleneck_strides_in_its_3x3_convolution_as_torchvision_v1_5() -> None:
    block = create_model("tv_resnet50").layer2[0]
    assert (block.conv1.stride, block.conv2.stride, block.downsample[0].stride) == ((1, 1), (2, 2), (2, 2))
    assert create_model("tv_resnet18").layer2[0].conv1.stride == (2, 2)


@pytest.mark.parametrize("name", TV_MODELS)
def test_one_logit_per_grey_image_at_small_and_odd_sizes(name: str) -> None:
    model = create_model(name, dropout=0.0)
    assert name in list_models() and "takes ImageNet weights with train --init" in get_spec(name).description
    for size in (1, 33):
        assert model.eval()(torch.randn(1, 1, size, size)).shape == (1,)
    assert model.train()(torch.randn(2, 1, 40, 40)).shape == (2,)
    with pytest.raises(ValueError, match=rf"{name} takes images of shape \(N, 1, H, W\)"):
        model(torch.zeros(1, 40, 40))
