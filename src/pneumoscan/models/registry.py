"""Model registry: `create_model(name, **cfg)` and `list_models()`."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from pneumoscan.errors import ModelConfigError, UnknownModelError


@dataclass(frozen=True)
class ModelSpec:
    """How to build a registered model and what it needs around it."""

    name: str
    builder: Callable[..., nn.Module]
    description: str
    image_size: int
    # composite models: a function of the config giving the submodules (members) that Grad-CAM explains
    # one by one; None: the whole model. The target layer inside each is found from the network's structure.
    cam_scopes: Callable[[dict[str, Any]], list[str]] | None
    defaults: dict[str, Any] = field(default_factory=dict)
    trainable: bool = True  # False: built from trained models (an ensemble), not by `train`


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str, *, description: str, image_size: int,
    cam_scopes: Callable[[dict[str, Any]], list[str]] | None = None, trainable: bool = True, **defaults: Any
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a model builder under `name`."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, builder, description, image_size, cam_scopes, dict(defaults), trainable)
        return builder

    return decorate


def list_models(*, composite: bool = False) -> list[str]:
    """Names of the trainable architectures, sorted; with `composite`, also models built from
    trained ones (the ensemble)."""
    _load_builtin()
    return sorted(name for name, spec in _REGISTRY.items() if spec.trainable or composite)


def cam_scopes(name: str, config: dict[str, Any]) -> list[str]:
    """The submodules of model `name` built with `config` that Grad-CAM explains one by one (an ensemble's
    members); [""], the whole model, for every other model."""
    scopes = get_spec(name).cam_scopes
    return [""] if scopes is None else list(scopes(config))


def get_spec(name: str) -> ModelSpec:
    """The registry entry for `name`; UnknownModelError (a KeyError) lists the known names."""
    _load_builtin()
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; choose one of: {', '.join(sorted(_REGISTRY))} "
                                "(`pneumoscan models` describes them)")
    return _REGISTRY[name]


def model_options(name: str) -> list[str]:
    """The keyword options the builder of model `name` takes, in its order."""
    return list(inspect.signature(get_spec(name).builder).parameters)


def create_model(name: str, **cfg: Any) -> nn.Module:
    """Build the registered model `name` (single-logit output), overriding its defaults with `cfg`;
    ModelConfigError (a TypeError) names an option the builder does not take and lists the ones it does."""
    spec = get_spec(name)
    options = model_options(name)
    unknown = [key for key in cfg if key not in options]
    if unknown:
        raise ModelConfigError(f"model {name!r} has no option {unknown[0]!r}; its options are: "
                               f"{', '.join(options) or 'none'}")
    return spec.builder(**{**spec.defaults, **cfg})


def final_linear_name(model: nn.Module) -> str:
    """Dotted name of the classifier's last nn.Linear (inside `model.head` when there is one): its
    input is the model's feature vector. ValueError when the model has none."""
    head = getattr(model, "head", None)
    scopes = ([("head", head)] if isinstance(head, nn.Module) else []) + [("", model)]
    for prefix, scope in scopes:
        names = [name for name, module in scope.named_modules() if isinstance(module, nn.Linear)]
        if names:
            return ".".join(part for part in (prefix, names[-1]) if part)
    raise ValueError(f"{type(model).__name__} has no nn.Linear layer to take features from")


def check_input(x: torch.Tensor, model: str, *, min_side: int = 1, side: int | None = None) -> None:
    """ValueError naming `model` unless `x` is a batch (N, C, H, W) of images at least `min_side` px on each
    side (exactly `side` when given), rather than a shape error deep inside a layer. Skipped while tracing
    for ONNX export, where the input is the model's own size."""
    if torch.jit.is_tracing():
        return
    if x.ndim != 4:
        raise ValueError(f"{model} takes images of shape (N, 1, H, W), got {tuple(x.shape)}")
    height, width = int(x.shape[-2]), int(x.shape[-1])
    if side is not None and (height, width) != (side, side):
        raise ValueError(f"{model} is built for {side} x {side} px images, got {height} x {width}; resize them to "
                         f"{side} px, or build it with image_size= their size")
    if min(height, width) < min_side:
        raise ValueError(f"{model} needs images of at least {min_side} x {min_side} px, got {height} x {width}")


def count_parameters(model: nn.Module) -> int:
    """Number of weights of a model."""
    return sum(p.numel() for p in model.parameters())


def model_config(name: str, image_size: int | None = None, **cfg: Any) -> dict[str, Any]:
    """The full keyword config `create_model(name, ...)` uses, for storing in an artifact; `image_size` is
    passed on to builders whose model is made for one input size (the MLP) and left out for the others."""
    sized = {"image_size": image_size} if image_size is not None and "image_size" in model_options(name) else {}
    return {**get_spec(name).defaults, **sized, **cfg}


def _load_builtin() -> None:
    from pneumoscan.models import cnn, ensemble, mlp, resnet, tv_resnet  # noqa: F401  (registers on import)
