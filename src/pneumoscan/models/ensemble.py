"""An ensemble of trained models as one single-logit model: the mean of the members' logits.

Each member keeps its own input size and normalisation: the ensemble's input (its largest member's
size, normalised with its `mean`/`std`) is re-normalised and, where smaller, bilinearly resized for
each member. The members' final linear layers are folded into one `head` over their concatenated
features, so the ensemble has the same shape as every other model (`head` ends in an nn.Linear whose
input is the feature vector the out-of-distribution guard scores) and exports to one ONNX graph.
Build one from trained runs with `pneumoscan ensemble`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pneumoscan.errors import ModelConfigError
from pneumoscan.models.registry import create_model, final_linear_name, register_model

# what each member's entry holds (training.ensemble.member_entry); as with the artifact's top-level fields, any other
# is a newer pneumoscan's setting, which building without it would leave out
MEMBER_KEYS = ("model", "config", "image_size", "mean", "std")


def _final_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """(parent module, attribute name, layer) of the model's final nn.Linear."""
    name = final_linear_name(model)
    parent_name, _, attr = name.rpartition(".")
    layer = model.get_submodule(name)
    assert isinstance(layer, nn.Linear)
    return model.get_submodule(parent_name), attr, layer


class Ensemble(nn.Module):
    """Mean logit of member models; see the module docstring."""

    def __init__(self, members: list[dict[str, Any]], input_mean: float, input_std: float) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        nets, widths = [], []
        for i, member in enumerate(members, 1):
            unknown = sorted(set(member) - set(MEMBER_KEYS)) if isinstance(member, dict) else []
            if unknown:
                kind = "settings" if len(unknown) > 1 else "a setting"
                raise ModelConfigError(f"ensemble member {i}: {', '.join(unknown)}: {kind} this pneumoscan does not "
                                       f"know, which its predictions would leave out")
            net = create_model(member["model"], **member.get("config", {}))
            parent, attr, linear = _final_linear(net)
            widths.append(linear.in_features)
            setattr(parent, attr, nn.Identity())  # the member now returns its feature vector
            nets.append(net)
        self.members = nn.ModuleList(nets)
        self.sizes = [int(m["image_size"]) for m in members]
        self.image_size = max(self.sizes)  # the input it takes: its largest member's
        # x_member = x * scale + shift turns the ensemble's normalisation into the member's own
        self.scales = [float(input_std / m["std"]) for m in members]
        self.shifts = [float((input_mean - m["mean"]) / m["std"]) for m in members]
        self.head = nn.Sequential(nn.Linear(sum(widths), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        for net, size, scale, shift in zip(self.members, self.sizes, self.scales, self.shifts):
            xm = x * scale + shift
            if size != self.image_size:
                xm = F.interpolate(xm, size=(size, size), mode="bilinear", align_corners=False)
            features.append(net(xm).reshape(x.shape[0], -1))
        return self.head(torch.cat(features, 1)).squeeze(1)

    @torch.no_grad()
    def load_members(self, members: list[nn.Module]) -> None:
        """Copy trained member weights in and set `head` to the mean of their final layers."""
        weights, biases = [], []
        for target, source in zip(self.members, members):
            _, _, linear = _final_linear(source)
            weights.append(linear.weight.reshape(-1))
            biases.append(linear.bias.reshape(()))
            keys = target.state_dict().keys()  # the member's weights without its folded final layer
            target.load_state_dict({k: v for k, v in source.state_dict().items() if k in keys}, strict=True)
        head = self.head[0]
        head.weight.copy_(torch.cat(weights).reshape(1, -1) / len(members))
        head.bias.copy_(torch.stack(biases).mean().reshape(1))


def ensemble_cam_scopes(config: dict[str, Any]) -> list[str]:
    """What Grad-CAM explains in an ensemble: each member on its own (members without a convolution add nothing)."""
    return [f"members.{i}" for i in range(len(config["members"]))]


@register_model("ensemble", description="mean logit of trained models (built by `pneumoscan ensemble`)",
                image_size=128, cam_scopes=ensemble_cam_scopes, trainable=False)
def ensemble(members: list[dict[str, Any]] | None = None, input_mean: float = 0.5, input_std: float = 0.25) -> nn.Module:
    if not members:
        raise ValueError("create_model('ensemble') needs members=[{model, config, image_size, mean, std}, ...]; "
                         "build one from trained runs with `pneumoscan ensemble RUN RUN --out DIR`")
    return Ensemble(members, input_mean, input_std)
