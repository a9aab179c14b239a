"""Model registry: `create_model(name, **cfg)` and `list_models()`.

Besides the built-in models, installed packages add their own through the entry point group
`pneumoscan.models` (PLUGIN_GROUP): each entry point names a module that registers models with
`@register_model` when imported, or a callable that does when called. They are loaded once, after the
built-ins; a plugin that fails to load is left out with one PluginWarning.
"""
from __future__ import annotations

import collections.abc
import inspect
import math
import numbers
import os
import reprlib
import types
import typing
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from pneumoscan.errors import (InputError, ModelBuildError, ModelConfigError, ModelOptionError, ModelOptionValueError,
                               PluginWarning, UnknownModelError, first_line, gpu_out_of_memory, host_out_of_memory,
                               raise_if_interrupted, warn)

PLUGIN_GROUP = "pneumoscan.models"
_BUILTIN_PACKAGE = "pneumoscan.models."


@dataclass(frozen=True)
class ModelOrigin:
    """Where a model that is not built into pneumoscan comes from: an installed distribution's entry point, or
    (`distribution` None) a module that registered it in its own process, such as a notebook's `__main__`."""

    module: str
    distribution: str | None = None
    version: str | None = None
    entry_point: str | None = None

    def describe(self) -> str:
        """'acme-models 1.0' or 'module mynotebook' (the `pneumoscan models` column and messages)."""
        if self.distribution:
            return f"{self.distribution} {self.version}" if self.version else self.distribution
        return f"module {self.module}"

    def to_record(self) -> dict[str, str]:
        """The JSON object an artifact stores (`ArtifactMeta.model_sources`)."""
        return {k: v for k, v in (("distribution", self.distribution), ("version", self.version),
                                  ("entry_point", self.entry_point), ("module", self.module)) if v}


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
    origin: ModelOrigin | None = None  # None: built into pneumoscan


_REGISTRY: dict[str, ModelSpec] = {}
_LOADED = {"builtin": False, "plugins": False}
_PLUGIN: list[ModelOrigin] = []  # the entry point being loaded: what its registrations come from


def register_model(
    name: str, *, description: str, image_size: int,
    cam_scopes: Callable[[dict[str, Any]], list[str]] | None = None, trainable: bool = True, **defaults: Any
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a model builder under `name`: the builder takes the model's options as keyword
    arguments (`defaults` override its own defaults) and returns an nn.Module that maps normalised images
    (N, 1, H, W) to one logit each, shape (N,); `image_size` is the input size `train` uses by default.
    A built-in name cannot be registered again; another name only by the same builder (a notebook cell run again
    replaces its model)."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        builtin = builder.__module__.startswith(_BUILTIN_PACKAGE)
        if not builtin:
            _load_builtin()  # so a name of pneumoscan's own is refused here, not when the built-ins load
        origin = None if builtin else (_PLUGIN[-1] if _PLUGIN else _origin_of(builder.__module__))
        existing = _REGISTRY.get(name)
        if existing is not None and existing.origin is None:
            raise ValueError(f"model {name!r} is built into pneumoscan and cannot be replaced; register yours under "
                             f"another name")
        if existing is not None and (existing.origin, existing.builder.__qualname__) != (origin, builder.__qualname__):
            raise ValueError(f"model {name!r} is registered twice (first by {existing.origin.describe()})")
        _REGISTRY[name] = ModelSpec(name, builder, description, image_size, cam_scopes, dict(defaults), trainable,
                                    origin)
        return builder

    return decorate


def list_models(*, composite: bool = False) -> list[str]:
    """Names of the trainable architectures (plugins' too), sorted; with `composite`, also models built from
    trained ones (the ensemble)."""
    _load_models()
    return sorted(name for name, spec in _REGISTRY.items() if spec.trainable or composite)


def cam_scopes(name: str, config: dict[str, Any]) -> list[str]:
    """The submodules of model `name` built with `config` that Grad-CAM explains one by one (an ensemble's
    members); [""], the whole model, for every other model."""
    scopes = get_spec(name).cam_scopes
    return [""] if scopes is None else list(scopes(config))


def get_spec(name: str) -> ModelSpec:
    """The registry entry for `name`; UnknownModelError (a KeyError) lists the known names."""
    _load_models()
    if name not in _REGISTRY:
        built = [n for n, spec in sorted(_REGISTRY.items()) if not spec.trainable]
        also = f"; {', '.join(built)}: built from trained runs" if built else ""
        raise UnknownModelError(f"unknown model {name!r}; choose one of: {', '.join(list_models())} "
                                f"(`pneumoscan models` describes them{also})")
    return _REGISTRY[name]


def model_options(name: str) -> list[str]:
    """The keyword options the builder of model `name` takes, in its order."""
    return list(inspect.signature(get_spec(name).builder).parameters)


def create_model(name: str, **cfg: Any) -> nn.Module:
    """Build the registered model `name` (single-logit output), overriding its defaults with `cfg`;
    ModelConfigError (a TypeError) names an option the builder does not take and lists the ones it does,
    ModelOptionError (a TypeError) a value of a kind its annotation does not take (`check_option_values`), and
    ModelOptionValueError (a ValueError too, chained to the builder's error) one the builder refuses (`dropout=1.5`):
    after a refusal with options set against their registered defaults, the builder is called again (a normal build,
    on the CPU, its warnings silenced) with those defaults and the options without one as given; when that builds,
    the options set are named.
    Else ModelBuildError names the options without a default given, if any; with none, the builder's error is
    raised unchanged (its own bug), as is an error from an inner `create_model` (an ensemble's member's)."""
    spec = get_spec(name)
    options = model_options(name)
    unknown = [key for key in cfg if key not in options]
    if unknown:
        raise ModelConfigError(f"model {name!r} has no option {unknown[0]!r}; its options are: "
                               f"{', '.join(options) or 'none'}")
    check_option_values(name, cfg)
    try:
        return spec.builder(**{**spec.defaults, **cfg})
    except (ValueError, RuntimeError) as err:  # torch's: a dropout above 1, a negative width, ...
        refusal = None
        if not (getattr(err, _PASSED, False) or host_out_of_memory(err) or gpu_out_of_memory(err)
                or isinstance(err, InputError)):  # a member's (an ensemble's) is said already; the machine's
            refusal = _refusal(spec, cfg, err)
        _mark(err)
        if refusal is None:
            raise
        _mark(refusal)
        raise refusal from err


_PASSED = "_pneumoscan_create_model"  # set on an error leaving `create_model`: an outer one raises it unchanged
_SHORT = reprlib.Repr()  # option values in messages: an ensemble's members would make them grow without end
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxlevel = 40, 40, 6, 4, 1


def _refusal(spec: ModelSpec, cfg: dict[str, Any], err: Exception) -> ModelOptionValueError | None:
    """What `create_model` raises when the builder of `spec` raised `err` with the options `cfg`, or None for `err`
    itself (nothing set, or the model does not build with its registered defaults either: the builder's fault)."""
    defaults = _registered_defaults(spec)
    required = {key: value for key, value in cfg.items() if key not in defaults}
    refused = _set_options(defaults, cfg)
    if refused and _builds(spec, {**defaults, **required}):
        return ModelOptionValueError(spec.name, f"option{'s' if len(refused) > 1 else ''} {_said(refused)}: "
                                                f"refused by its builder ({first_line(err)})")
    if required:  # a refusal of theirs cannot be told from a bug of the builder's
        return ModelBuildError(spec.name, f"does not build with {_said(required)} ({first_line(err)})")
    return None


def _said(options: dict[str, Any]) -> str:
    """'dropout=1.5, width=-3', long values shortened."""
    return ", ".join(f"{key}={_SHORT.repr(value)}" for key, value in options.items())


def _mark(err: BaseException) -> None:
    try:
        setattr(err, _PASSED, True)
    except AttributeError:  # an exception class with __slots__
        pass


def _builds(spec: ModelSpec, options: dict[str, Any]) -> bool:
    """Whether the builder of `spec` builds a model with `options`: a normal build on the CPU (not the meta device,
    where a builder reading a value, `.item()`, or loading weights fails or warns), its warnings silenced; it runs
    only after a refusal."""
    try:
        with warnings.catch_warnings(), torch.device("cpu"):
            warnings.simplefilter("ignore")
            spec.builder(**options)
    except Exception:  # noqa: BLE001 - a plugin's builder may fail in any way
        return False
    return True


def _registered_defaults(spec: ModelSpec) -> dict[str, Any]:
    """The options model `spec` is built with when none is given: its builder's own defaults, overridden by those
    `register_model` was given; options without a default are left out."""
    own = {key: p.default for key, p in inspect.signature(spec.builder).parameters.items()
           if p.default is not inspect.Parameter.empty}
    return {**own, **spec.defaults}


def _set_options(defaults: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """The options of `cfg` set to another value than their default in `defaults` (a list for a tuple counts as the
    same, as JSON stores one); options without a default are left out."""

    return {key: value for key, value in cfg.items() if key in defaults and not _same(value, defaults[key])}


def _same(value: Any, default: Any) -> bool:
    """Whether an option's `value` is its `default` (a list for a tuple counts as the same, as JSON stores one)."""
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return list(value) == list(default)
    if type(value) is not type(default):
        return False
    try:
        return bool(value == default)
    except (ValueError, TypeError):  # numpy arrays compare element by element: not one truth value
        return bool(np.array_equal(value, default)) if hasattr(value, "shape") else value is default


def check_option_values(name: str, cfg: dict[str, Any]) -> None:
    """ModelOptionError naming the option, its value and what it takes for the first value of `cfg` that its
    annotation in the builder of model `name` does not take (a list for a tuple too, as JSON stores one), rather
    than a TypeError from inside the builder. Unannotated options, annotations that cannot be read and values equal
    to the option's own default (registered or in the signature) are passed."""
    spec = get_spec(name)
    try:
        params = inspect.signature(spec.builder, eval_str=True).parameters
    except Exception:  # noqa: BLE001 - a plugin's annotation may name what its module imports only for type checkers
        return
    for key, value in cfg.items():
        param = params.get(key)
        if param is None or param.annotation is inspect.Parameter.empty:
            continue
        defaults = [param.default, spec.defaults.get(key, param.default)]
        if any(_same(value, default) for default in defaults):
            continue
        if not _takes(param.annotation, value):
            raise ModelOptionError(name, f"option {key} takes {_kind(param.annotation)}, not {value!r}")


def _takes(hint: Any, value: Any) -> bool:
    """Whether `value` is of the annotated type `hint`; any type this cannot check counts as taken."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_takes(arg, value) for arg in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:  # numpy's integers too (numbers.Integral), as a config read from arrays holds them
        return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if hint in (tuple, list) or origin in (tuple, list):  # any sequence but a string: an ndarray too
        if isinstance(value, (str, bytes)) or not isinstance(value, (collections.abc.Sequence, np.ndarray)) or (
                isinstance(value, np.ndarray) and value.ndim != 1):  # a 0-d array holds one value, not a list
            return False
        if args[-1:] == (Ellipsis,) or origin is list:
            return all(_takes(args[0], item) for item in value) if args else True
        return not args or (len(args) == len(value) and all(_takes(a, v) for a, v in zip(args, value)))
    return isinstance(value, hint) if isinstance(hint, type) else True


def _kind(hint: Any) -> str:
    """What an annotation takes, in words: 'an integer', 'a list of integers', 'a number or None'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_kind(arg) for arg in args)
    if hint is None or hint is type(None):
        return "None"
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in words:
        return words[hint]
    if hint in (tuple, list) or origin in (tuple, list):
        if args[-1:] == (Ellipsis,) or (origin is list and args):
            return f"a list of {_kind(args[0]).removeprefix('an ').removeprefix('a ')}s"
        return f"a list of {len(args)} items" if args else "a list"
    return f"a {getattr(hint, '__name__', hint)}"


class NoFeatureLayer(InputError, ValueError):
    """A model without an nn.Linear layer: it has no feature vector for the guard, ONNX export, pretraining or an
    ensemble to take."""


def final_linear_name(model: nn.Module) -> str:
    """Dotted name of the classifier's last nn.Linear (inside `model.head` when there is one): its
    input is the model's feature vector. NoFeatureLayer (a ValueError) when the model has none."""
    head = getattr(model, "head", None)
    scopes = ([("head", head)] if isinstance(head, nn.Module) else []) + [("", model)]
    for prefix, scope in scopes:
        names = [name for name, module in scope.named_modules() if isinstance(module, nn.Linear)]
        if names:
            return ".".join(part for part in (prefix, names[-1]) if part)
    raise NoFeatureLayer(f"{type(model).__name__} has no nn.Linear layer, whose input is the feature vector that the "
                         f"out-of-distribution guard, ONNX export, pretraining and ensembles take; end the model "
                         f"with an nn.Linear classifier")


def feature_layer_problem(model: nn.Module) -> str | None:
    """Why `model` has no feature vector for the guard, ONNX export, pretraining or an ensemble (`NoFeatureLayer`'s
    message), or None when it has one."""
    try:
        final_linear_name(model)
    except NoFeatureLayer as err:
        return str(err)
    return None


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


def models_with(layer: type[nn.Module]) -> list[str]:
    """The built-in trainable models whose network, built with its defaults, holds a `layer` (such as nn.Conv2d,
    which Grad-CAM needs), for messages naming the alternatives. Built on the meta device: no weights are made.
    Plugins' models are not built: a builder could load, or download, weights."""
    found = []
    for name in (name for name in list_models() if get_spec(name).origin is None):
        try:
            with torch.device("meta"):
                model = create_model(name)
        except Exception:  # noqa: BLE001 - not named then
            continue
        if any(isinstance(module, layer) for module in model.modules()):
            found.append(name)
    return found


def count_parameters(model: nn.Module) -> int:
    """Number of weights of a model."""
    return sum(p.numel() for p in model.parameters())


def model_config(name: str, image_size: int | None = None, **cfg: Any) -> dict[str, Any]:
    """The full keyword config `create_model(name, ...)` uses, for storing in an artifact; `image_size` is
    passed on to builders whose model is made for one input size (the MLP) and left out for the others. A plugin's
    model also keeps its builder's own defaults that are plain values (`plain_defaults`), so the model it was
    trained as is built again where a later version of its package changed one."""
    spec = get_spec(name)
    own = plain_defaults(spec.builder) if spec.origin is not None else {}
    sized = {"image_size": image_size} if image_size is not None and "image_size" in model_options(name) else {}
    return {**own, **spec.defaults, **sized, **cfg}


def plain_defaults(builder: Callable[..., nn.Module]) -> dict[str, Any]:
    """The defaults of `builder`'s options that JSON stores and gives back as they are: finite numbers, strings,
    booleans and None (a tuple would come back a list)."""
    return {name: p.default for name, p in inspect.signature(builder).parameters.items()
            if p.default is None or type(p.default) in (bool, int, str)
            or (type(p.default) is float and math.isfinite(p.default))}


def is_registered(name: str) -> bool:
    """Whether model `name` is known here (built in, from an installed plugin, or registered in this process)."""
    _load_models()
    return name in _REGISTRY


def model_sources(names: list[str]) -> dict[str, dict[str, str]]:
    """Where each of the models `names` that is not built in comes from, as an artifact records it; {} when all are."""
    return {name: origin.to_record() for name in names if (origin := get_spec(name).origin) is not None}


def missing_model_message(name: str, source: dict[str, Any]) -> str:
    """What to do about model `name`, recorded as coming from `source` (`model_sources`), that is not registered
    here: install its package, or register it as its module did."""
    dist, version, module = source.get("distribution"), source.get("version"), source.get("module") or "?"
    if dist:
        pin = f"=={version}" if version else ""
        return (f"model {name!r} comes from the plugin package {dist}{' ' + version if version else ''} (module "
                f"{module}), which is not installed here; install it (pip install '{dist}{pin}') and run the command "
                f"again")
    where = "in a notebook or script (__main__)" if module == "__main__" else f"by the Python module {module}"
    return (f"model {name!r} was registered {where}, not by an installed package; in Python, import or run that "
            f"{'code' if module == '__main__' else 'module'} before loading the model, or package it as a plugin "
            f"(`pneumoscan docs training`: Your own architecture)")


def require_registered(sources: dict[str, dict[str, Any]], where: str | os.PathLike) -> None:
    """InputError '`where`: ...', saying what to install (`missing_model_message`), for the first model of
    `sources` (`model_sources`, as recorded) that is not registered here."""
    for name, source in sources.items():
        if not is_registered(name):
            raise InputError(f"{where}: {missing_model_message(name, source)}")


def version_change(sources: dict[str, dict[str, Any]]) -> tuple[str, str] | None:
    """For the first model of `sources` (`model_sources`, as recorded) that comes here from another package or
    version than recorded: what changed ("model 'tinynet' was trained with acme-models 0.1 and acme-models 0.2 is
    installed here") and the requirement that restores it ("acme-models==0.1"); None when every one matches (or is
    not registered here, or its record names no version)."""
    for name, source in sources.items():
        dist, version = source.get("distribution"), source.get("version")
        origin = get_spec(name).origin if is_registered(name) else None
        if dist and version and origin is not None and (origin.distribution, origin.version) != (dist, version):
            return (f"model {name!r} was trained with {dist} {version} and {origin.describe()} is installed here",
                    f"{dist}=={version}")
    return None


def check_model_output(model: nn.Module, name: str, image_size: int) -> None:
    """InputError in one line unless `model` (the registered `name`) takes a batch of normalised one-channel images
    (2, 1, S, S) and returns one logit per image, shape (2,), and keeps only tensors in its state (artifacts and
    checkpoints are safetensors and weights-only files): what every command expects of a model."""
    contract = "a pneumoscan model takes normalised images (N, 1, H, W) and returns one logit per image, shape (N,)"
    x = torch.zeros(2, 1, image_size, image_size, device=next(iter(model.parameters()), torch.zeros(0)).device)
    was_training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(x)
    except Exception as err:  # noqa: BLE001 - a plugin's builder may fail in any way
        if host_out_of_memory(err) or gpu_out_of_memory(err):
            raise  # the images are too large for this machine, not the model wrong: the CLI's out-of-memory advice
        raise InputError(f"model {name!r} fails on a batch of {image_size} px images ({type(err).__name__}: "
                         f"{first_line(err, 200)}); {contract}") from None
    finally:
        model.train(was_training)
    other = [key for key, value in model.state_dict().items() if not isinstance(value, torch.Tensor)]
    if other:
        raise InputError(f"model {name!r} keeps state that is not a tensor ({other[0]}); pneumoscan stores models as "
                         f"safetensors, without pickling: keep its state in parameters and buffers")
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != (2,):
        raise InputError(f"model {name!r} returns {shape} for 2 images of {image_size} px; {contract} (e.g. end "
                         f"forward() with .squeeze(1))")


def _load_models() -> None:
    """The built-in models, then the installed plugins' (once)."""
    _load_builtin()
    if not _LOADED["plugins"]:
        _LOADED["plugins"] = True  # first: a plugin that itself asks for a model must not load them all again
        try:
            _load_plugins()
        except BaseException:  # Ctrl+C: the next call (a notebook's next cell) loads the plugins again, not none
            _LOADED["plugins"] = False
            raise


def _load_builtin() -> None:
    if _LOADED["builtin"]:
        return
    _LOADED["builtin"] = True
    from pneumoscan.models import cnn, ensemble, mlp, resnet, tv_resnet  # noqa: F401  (registers on import)


def _load_plugins() -> None:
    """Load every entry point of PLUGIN_GROUP; one that fails (an import error, a name registered twice) is left
    out, with the models it had registered, and a PluginWarning naming it, its distribution and the error. One a
    Ctrl+C interrupts leaves none of its models registered either, so that it loads whole the next time."""
    from importlib.metadata import entry_points

    for point in entry_points(group=PLUGIN_GROUP):
        dist = point.dist
        origin = _point_origin(point)
        before = set(_REGISTRY)
        _PLUGIN.append(origin)
        try:
            loaded = point.load()
            if callable(loaded) and not isinstance(loaded, ModuleType):
                loaded()
        except BaseException as err:  # noqa: BLE001 - a broken plugin must not break pneumoscan
            for name in set(_REGISTRY) - before:
                del _REGISTRY[name]
            if not isinstance(err, Exception):  # Ctrl+C, or an exit
                raise
            if isinstance(err, ImportError):
                raise_if_interrupted(err)
            warn(PluginWarning(
                f"model plugin {point.name!r} ({point.value}) of {dist.name if dist else 'an unknown distribution'} "
                f"was not loaded, so its models are unavailable: {type(err).__name__}: {first_line(err, 200)}"))
        finally:
            _PLUGIN.pop()


def _point_origin(point: Any) -> ModelOrigin:
    """The origin of the models an entry point (importlib.metadata.EntryPoint) registers."""
    dist = point.dist
    return ModelOrigin(point.module, dist.name if dist else None, dist.version if dist else None, point.name)


def _origin_of(module: str) -> ModelOrigin:
    """Where a model registered outside a plugin's loading comes from: the installed plugin whose top-level package
    holds `module` (imported before pneumoscan loaded the plugins, as a notebook may), else the module itself."""
    from importlib.metadata import entry_points

    package = module.partition(".")[0]
    for point in entry_points(group=PLUGIN_GROUP):
        if point.module.partition(".")[0] == package:
            return _point_origin(point)
    return ModelOrigin(module)
