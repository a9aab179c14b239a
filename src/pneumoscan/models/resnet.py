"""Residual networks sized for a CPU: a strided stem, basic blocks, global pooling."""
from __future__ import annotations

import torch
from torch import nn

from pneumoscan.models.registry import check_input, register_model


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem (3x3 stride-2 conv + max pool), stages of basic blocks, GAP, dropout, one logit."""

    def __init__(self, widths: tuple[int, ...], depths: tuple[int, ...], stem: int = 32, dropout: float = 0.2) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True), nn.MaxPool2d(2)
        )
        stages: list[nn.Module] = []
        c_in = stem
        for i, (width, depth) in enumerate(zip(widths, depths)):
            blocks = [BasicBlock(c_in if j == 0 else width, width, 2 if (i > 0 and j == 0) else 1) for j in range(depth)]
            stages.append(nn.Sequential(*blocks))
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, 1))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        for block in self.modules():
            if isinstance(block, BasicBlock):
                nn.init.zeros_(block.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, "resnet", min_side=3)  # the stem's stride-2 convolution and pooling need 3 px
        return self.head(self.stages(self.stem(x))).squeeze(1)


@register_model("resnet10", description="residual network, 10 layers: 4 stages of 1 block (32 to 256 channels)",
                image_size=128)
def resnet10(widths: tuple[int, ...] = (32, 64, 128, 256), depths: tuple[int, ...] = (1, 1, 1, 1), stem: int = 32, dropout: float = 0.2) -> nn.Module:
    return ResNet(tuple(widths), tuple(depths), stem, dropout)


@register_model("resnet18", description="residual network, 18 layers: 4 stages of 2 blocks (32 to 256 channels)",
                image_size=160)
def resnet18(widths: tuple[int, ...] = (32, 64, 128, 256), depths: tuple[int, ...] = (2, 2, 2, 2), stem: int = 32, dropout: float = 0.2) -> nn.Module:
    return ResNet(tuple(widths), tuple(depths), stem, dropout)
