"""ResNets in torchvision's layout, written in plain torch (torchvision is not importable beside this torch).

Module and tensor names follow torchvision.models.resnet exactly (conv1, bn1, layer1..layer4 of BasicBlock or
Bottleneck with downsample, fc; the Bottleneck strides in its 3x3 convolution, "ResNet v1.5"), so ImageNet
weights of torchvision (resnet18-f37072fd.pth, resnet50-0676ba61.pth) or timm (model.safetensors of resnet18 or
resnet50, same names) load by name with `train --init` (training/transfer.py). Two differences, both in shape
only: conv1 takes pneumoscan's one grey channel (64 x 1 x 7 x 7) and fc gives one logit.
"""
from __future__ import annotations

import torch
from torch import nn

from pneumoscan.models.registry import check_input, register_model


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1, no bias (batch norm follows)."""
    return nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias."""
    return nn.Conv2d(c_in, c_out, 1, stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: two 3x3 convolutions; the residual adds `downsample(x)` when given."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(c_in, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck: 1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv1x1(c_in, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class TvResNet(nn.Module):
    """torchvision's ResNet for one grey channel and one logit, with dropout before fc."""

    def __init__(self, name: str, block: type[BasicBlock | Bottleneck], layers: tuple[int, int, int, int],
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.name = name
        self.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        c_in = 64
        for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or c_in != planes * block.expansion:
                downsample = nn.Sequential(conv1x1(c_in, planes * block.expansion, stride),
                                           nn.BatchNorm2d(planes * block.expansion))
            blocks = [block(c_in, planes, stride, downsample)]
            c_in = planes * block.expansion
            blocks += [block(c_in, planes) for _ in range(1, depth)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c_in, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (BasicBlock, Bottleneck)):
                # each block starts as the identity: trains better from scratch (ImageNet weights replace it)
                nn.init.zeros_(module.last_bn().weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.name)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1))).squeeze(1)


TV_NOTE = "torchvision layout: takes ImageNet weights with train --init"
# 160 px, the registry's resnet18 size, rather than ImageNet's 224: a default-recipe training step (64 images, two
# views) of tv_resnet18 took 17 s at 160 px and 38 s at 224 px on one thread of the busy 2-core CPU (resnet10 at
# 128 px: 1.4-1.9 s), and tv_resnet50 peaked at 6.7 GB of memory at 160 px, 12.3 GB at 224 px.
# What `train --init` takes for each (the message of a file that does not fit names it).
IMAGENET_FILES = {
    "tv_resnet18": "ResNet-18 ImageNet weights (torchvision's resnet18-f37072fd.pth, or timm's resnet18 model.safetensors)",
    "tv_resnet50": "ResNet-50 ImageNet weights (torchvision's resnet50-0676ba61.pth, or timm's resnet50 model.safetensors)",
}


@register_model("tv_resnet18", description=f"ResNet-18, {TV_NOTE} (resnet18-f37072fd.pth)", image_size=160)
def tv_resnet18(dropout: float = 0.2) -> nn.Module:
    return TvResNet("tv_resnet18", BasicBlock, (2, 2, 2, 2), dropout)


@register_model("tv_resnet50", description=f"ResNet-50, {TV_NOTE} (resnet50-0676ba61.pth)", image_size=160)
def tv_resnet50(dropout: float = 0.2) -> nn.Module:
    return TvResNet("tv_resnet50", Bottleneck, (3, 4, 6, 3), dropout)
