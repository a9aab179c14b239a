"""A fully connected baseline: flattened pixels through dense layers."""
from __future__ import annotations

import torch
from torch import nn

from pneumoscan.models.registry import check_input, register_model


class MLP(nn.Module):
    """Flatten a (N, 1, S, S) image and classify with dense layers; fixed input size."""

    def __init__(self, image_size: int, hidden: tuple[int, ...] = (256, 64), dropout: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = image_size * image_size
        for units in hidden:
            layers += [nn.Linear(width, units), nn.BatchNorm1d(units), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = units
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, "mlp", side=self.image_size)
        return self.net(x).squeeze(1)


@register_model("mlp", description="multilayer perceptron baseline: the pixels through two dense layers (256 and 64 units)",
                image_size=64)
def mlp(image_size: int = 64, hidden: tuple[int, ...] = (256, 64), dropout: float = 0.3) -> nn.Module:
    return MLP(image_size, tuple(hidden), dropout)
