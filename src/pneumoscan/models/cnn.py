"""A small convolutional network: conv-BN-ReLU-pool blocks and global pooling."""
from __future__ import annotations

import torch
from torch import nn

from pneumoscan.models.registry import check_input, register_model


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """Four conv blocks with max pooling, global average pooling and a dropout head."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), dropout: float = 0.3) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        c_in = 1
        for width in widths:
            blocks += [conv_bn_relu(c_in, width), nn.MaxPool2d(2)]
            c_in = width
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, 1))
        self.min_side = 2 ** len(widths)  # each block halves the side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, "cnn", min_side=self.min_side)
        return self.head(self.features(x)).squeeze(1)


@register_model("cnn", description="small convolutional network: 4 convolution blocks (16 to 128 channels)",
                image_size=96)
def cnn(widths: tuple[int, ...] = (16, 32, 64, 128), dropout: float = 0.3) -> nn.Module:
    return SmallCNN(tuple(widths), dropout)
