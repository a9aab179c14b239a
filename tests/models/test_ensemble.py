from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pneumoscan.inference.ood import final_linear
from pneumoscan.models.ensemble import Ensemble
from pneumoscan.models.registry import create_model, list_models


def _members() -> tuple[list[torch.nn.Module], list[dict]]:
    torch.manual_seed(0)
    nets = [create_model("cnn").eval(), create_model("resnet10").eval()]
    entries = [{"model": "cnn", "config": {}, "image_size": 24, "mean": 0.45, "std": 0.2},
               {"model": "resnet10", "config": {}, "image_size": 32, "mean": 0.5, "std": 0.25}]
    return nets, entries


def test_ensemble_is_the_mean_member_logit_with_each_members_input() -> None:
    nets, entries = _members()
    model = create_model("ensemble", members=entries, input_mean=0.5, input_std=0.25)
    assert isinstance(model, Ensemble)
    model.load_members(nets)
    model.eval()
    pixels = torch.rand(3, 1, 32, 32)
    x = (pixels - 0.5) / 0.25
    small = F.interpolate(pixels, size=(24, 24), mode="bilinear", align_corners=False)
    expected = (nets[0]((small - 0.45) / 0.2) + nets[1]((pixels - 0.5) / 0.25)) / 2
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
    # the guard's features are the members' concatenated penultimate features
    assert final_linear(model).in_features == 128 + 256


def test_ensemble_state_dict_round_trips() -> None:
    nets, entries = _members()
    model = create_model("ensemble", members=entries, input_mean=0.5, input_std=0.25)
    model.load_members(nets)
    again = create_model("ensemble", members=entries, input_mean=0.5, input_std=0.25)
    again.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), model.eval()(x))


def test_ensemble_needs_members_and_is_not_a_trainable_architecture() -> None:
    with pytest.raises(ValueError, match="pneumoscan ensemble"):
        create_model("ensemble")
    assert "ensemble" not in list_models() and "ensemble" in list_models(composite=True)


def test_ensemble_cam_layers_are_the_members_conv_layers() -> None:
    from pneumoscan.artifact import ArtifactMeta
    from pneumoscan.explain.gradcam import cam_layers

    _, entries = _members()
    entries = [{**entries[0], "model": "mlp", "config": {"image_size": 24}}, entries[1]]
    model = create_model("ensemble", members=entries, input_mean=0.5, input_std=0.25)
    meta = ArtifactMeta(model_name="ensemble", model_config={"members": entries}, image_size=32, mean=0.5, std=0.25)
    layers = cam_layers(model, meta)
    # the mlp member has no convolution; at 32 px the resnet's last stage is 1 x 1 px, the one before 2 x 2
    assert layers == ["members.1.stages.2"]
    assert any(isinstance(m, torch.nn.Conv2d) for m in model.get_submodule(layers[0]).modules())


def test_an_ensemble_file_with_another_input_size_is_refused_not_fed_to_its_largest_member(tmp_path) -> None:
    """Its forward pass resizes the input for members smaller than its largest; an edited input size would reach
    that member unresized."""
    from pneumoscan.artifact import ArtifactMeta, load_artifact, save_artifact
    from pneumoscan.errors import InputError

    nets, entries = _members()
    model = create_model("ensemble", members=entries, input_mean=0.5, input_std=0.25)
    model.load_members(nets)
    config = {"members": entries, "input_mean": 0.5, "input_std": 0.25}
    for size in (32, 48):
        path = save_artifact(tmp_path / f"{size}.safetensors", model,
                             ArtifactMeta(model_name="ensemble", model_config=config, image_size=size, mean=0.5, std=0.25))
        if size == 32:
            load_artifact(path, "cpu")
        else:
            with pytest.raises(InputError, match="its stored input size 48 px is not the 32 px its model 'ensemble' "
                                                 "is built for"):
                load_artifact(path, "cpu")
