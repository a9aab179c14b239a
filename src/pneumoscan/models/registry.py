"""Model registry: `create_model(name, **cfg)` and `list_models()`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """How to build a registered model and what it needs around it."""

    name: str
    builder: Callable[..., nn.Module]
    description: str
    image_size: int
    cam_layer: str | None  # dotted module path of the Grad-CAM target layer, None if no conv layer
    defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str, *, description: str, image_size: int, cam_layer: str | None, **defaults: Any
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a model builder under `name`."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, builder, description, image_size, cam_layer, dict(defaults))
        return builder

    return decorate


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The registry entry for `name`; KeyError lists the known names."""
    _load_builtin()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, **cfg: Any) -> nn.Module:
    """Build the registered model `name` (single-logit output), overriding its defaults with `cfg`."""
    spec = get_spec(name)
    return spec.builder(**{**spec.defaults, **cfg})


def count_parameters(model: nn.Module) -> int:
    """Number of weights of a model."""
    return sum(p.numel() for p in model.parameters())


def model_config(name: str, **cfg: Any) -> dict[str, Any]:
    """The full keyword config `create_model(name, ...)` uses, for storing in an artifact."""
    return {**get_spec(name).defaults, **cfg}


def _load_builtin() -> None:
    from pneumoscan.models import cnn, mlp, resnet  # noqa: F401  (registers on import)
