"""Grad-CAM heatmaps: which parts of an X-ray pushed the model towards its decision.

The target layer is found from the network's structure on the image explained (`find_cam_layers`): the
output of the last convolution whose feature map is larger than 1 x 1 px, with the layers after it that keep
its shape (batch norm, activation, a residual block's sum), up to the pooling. So a model built with any
depth or width works. An ensemble's map is the sum of its members' maps (the registry's `cam_scopes`), each
taken for the ensemble's logit, before scaling. The class explained is the predicted one at the
artifact's stored threshold unless `target` is given: 1 = PNEUMONIA (gradient of the logit), 0 = NORMAL
(gradient of minus the logit). A model with test-time augmentation scores the mean logit of the image and its
mirror: its map is taken for that logit, the mirror's map mirrored back and added, as an ensemble's members' are.
"""
from __future__ import annotations

import io
import threading
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from pneumoscan.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pneumoscan.artifact import ArtifactMeta

__all__ = ["NoCamLayer", "cam_layers", "find_cam_layers", "gradcam", "gradcam_for_image", "overlay", "overlay_png", "gradcam_overlay_png",
           "unmapped_members"]

DEFAULT_ALPHA = 0.55
DEFAULT_CMAP = "inferno"  # perceptually uniform, readable with colour-vision deficiency


class NoCamLayer(InputError):
    """The model has no convolution whose output is a feature map of more than one pixel: nothing to explain.
    `reason` says why; the message adds what to do, `hint()`, worked out only when the message is shown."""

    def __init__(self, reason: str, hint: Callable[[], str] | None = None) -> None:
        super().__init__(reason)
        self.reason, self.hint = reason, hint

    def __str__(self) -> str:
        return f"{self.reason}; {self.hint()}" if self.hint is not None else self.reason


def find_cam_layers(model: nn.Module, x: torch.Tensor, scopes: Sequence[str] = ("",),
                    name: str | None = None) -> list[str]:
    """The Grad-CAM target layer in each of `scopes` (submodule names, "" = the whole model) for input `x`.

    One forward pass records the shape of every module's output, in the order the outputs are made. The
    target is the outermost module (the last made) in the run of outputs of one shape that starts at the last
    nn.Conv2d with more than 1 x 1 px of output; a module called again later (such as a residual block's
    shared ReLU) is passed over, as its hook would keep its last output. Scopes without one are skipped;
    NoCamLayer, naming the model (`name`, else its class), when none has one.
    """
    import torch
    from torch import nn

    events: list[tuple[str, tuple[int, ...]]] = []
    owner = threading.get_ident()  # a shared model may run other threads' forwards meanwhile: ignore them

    def recorder(key: str):  # noqa: ANN202
        def record(_module: nn.Module, _inputs: object, out: object) -> None:
            if threading.get_ident() == owner:
                events.append((key, tuple(out.shape) if isinstance(out, torch.Tensor) else ()))
        return record

    handles = [module.register_forward_hook(recorder(key)) for key, module in model.named_modules() if key]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    convs = {key for key, module in model.named_modules() if isinstance(module, nn.Conv2d)}
    layers = [layer for scope in scopes if (layer := _last_feature_map(events, convs, scope))]
    if layers:
        return layers
    shown = f"model '{name}'" if name else type(model).__name__
    if not convs:
        raise NoCamLayer(f"{shown} has no convolutional layer, so Grad-CAM cannot explain it",
                         lambda: _models_with_convolutions(name))
    side = " x ".join(str(v) for v in x.shape[2:])
    raise NoCamLayer(f"{shown}: every convolution's output is 1 x 1 px for {side} px images, so Grad-CAM has no "
                     "feature map to draw", lambda: "build it with fewer stages or for larger images (image_size)")


def _models_with_convolutions(name: str | None) -> str:
    """What to use instead of model `name`, which has no convolution: the built-in models that have one, and the
    plugins' models other than `name`, unchecked, as building one could load (or download) its weights."""
    from torch import nn

    from pneumoscan.models.registry import get_spec, list_models, models_with

    plugins = [other for other in list_models() if get_spec(other).origin is not None and other != name]
    also = f"; plugins' models (not checked): {', '.join(plugins)}" if plugins else ""
    return f"use a model that has: {', '.join(models_with(nn.Conv2d))}{also} (`pneumoscan models` describes them)"


def _last_feature_map(events: list[tuple[str, tuple[int, ...]]], convs: set[str], scope: str) -> str | None:
    """The target layer of `find_cam_layers` inside `scope`, from the recorded (module name, output shape)
    `events`; None when the scope has no convolution with more than 1 x 1 px of output."""
    inside = [(key, shape) for key, shape in events if key != scope and (not scope or key.startswith(scope + "."))]
    maps = [i for i, (key, shape) in enumerate(inside) if key in convs and len(shape) == 4 and shape[2] * shape[3] > 1]
    if not maps:
        return None
    last_call = {key: i for i, (key, _) in enumerate(inside)}
    chosen = None
    for i in range(maps[-1], len(inside)):
        key, shape = inside[i]
        if shape != inside[maps[-1]][1]:
            break  # pooling, or the head, begins
        if last_call[key] == i:
            chosen = key
    return chosen


def cam_layers(model: nn.Module, meta: ArtifactMeta) -> list[str]:
    """The Grad-CAM target layers of a model described by `meta`, at its input size (one per convolutional
    member of an ensemble); NoCamLayer, naming the model, when it has none."""
    import torch

    from pneumoscan.models.registry import cam_scopes

    x = torch.zeros(1, 1, meta.image_size, meta.image_size, device=next(model.parameters()).device)
    return find_cam_layers(model, x, cam_scopes(meta.model_name, meta.model_config), meta.model_name)


def unmapped_members(meta: ArtifactMeta, layers: Sequence[str]) -> list[str]:
    """The members of an ensemble described by `meta` that none of its Grad-CAM `layers` (`cam_layers`) lies in, by
    model name (an mlp: no convolution): their share of the logit is not in the heatmap; [] for any other model."""
    from pneumoscan.models.registry import cam_scopes

    scopes = cam_scopes(meta.model_name, meta.model_config)
    if scopes == [""]:
        return []
    members = meta.model_config.get("members") or []
    names = [m.get("model", s) for m, s in zip(members, scopes)] if len(members) == len(scopes) else scopes
    return [name for name, scope in zip(names, scopes) if not any(layer.startswith(scope + ".") for layer in layers)]


def _resolve(model: nn.Module, layer_name: str) -> nn.Module:
    try:
        return model.get_submodule(layer_name)
    except AttributeError:
        raise ValueError(f"Grad-CAM layer {layer_name!r} does not exist in {type(model).__name__}") from None


def _views(x: torch.Tensor, mirror: bool) -> torch.Tensor:
    """The image `x` (1, C, S, S), with its left-right mirror after it when `mirror` (test-time augmentation)."""
    import torch

    return torch.cat([x, torch.flip(x, dims=[3])]) if mirror else x


def gradcam(model: nn.Module, x: torch.Tensor, layer_name: str | list[str] | None = None,
            target: int | None = None, mirror: bool = False) -> np.ndarray:
    """Grad-CAM of one normalised image `x` (1, 1, S, S) at `layer_name` -> (S, S) float32 in [0, 1].

    None finds the layer in the whole model (`find_cam_layers`; an ensemble's are its members' layers, which
    `cam_layers` gives). Several layers give the sum of their maps at input resolution.
    `target` 1 explains PNEUMONIA, 0 explains NORMAL, None the class the logit favours (logit >= 0).
    `mirror`: the logit is the mean of the image's and its left-right mirror's (test-time augmentation, as
    `predict_logits` scores it), and the mirror's map is mirrored back and added.
    A map with no positive evidence is all zeros.
    """
    import torch
    import torch.nn.functional as F

    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"gradcam expects one image of shape (1, C, S, S), got {tuple(x.shape)}")
    if layer_name is None:
        layer_name = find_cam_layers(model, x)
    names = [layer_name] if isinstance(layer_name, str) else list(layer_name)
    if not names:
        raise ValueError("gradcam needs at least one layer name")
    layers = [_resolve(model, name) for name in names]
    captured: dict[int, torch.Tensor] = {}
    owner = threading.get_ident()  # a shared model (web service) may run other forwards meanwhile: ignore them

    def keeper(index: int):  # noqa: ANN202
        def keep(_module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
            if threading.get_ident() == owner:
                captured[index] = out
        return keep

    handles = [layer.register_forward_hook(keeper(i)) for i, layer in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)
            logit = model(_views(x, mirror)).reshape(-1).mean()  # one pass: each hook sees both views
            missing = [names[i] for i in range(len(layers)) if i not in captured]
            if missing:
                raise ValueError(f"Grad-CAM layer {missing[0]!r} was not used in the forward pass")
            activations = [captured[i] for i in range(len(layers))]
            positive = bool(logit.item() >= 0) if target is None else bool(target)
            score = logit if positive else -logit
            grads = torch.autograd.grad(score, activations)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    cam = torch.zeros(tuple(x.shape[-2:]))
    for name, activation, grad in zip(names, activations, grads):
        if activation.ndim != 4:
            raise ValueError(f"Grad-CAM layer {name!r} outputs shape {tuple(activation.shape)}, not a feature map")
        weights = grad.mean(dim=(2, 3), keepdim=True)
        part = torch.relu((weights * activation).sum(dim=1, keepdim=True)).detach()
        maps = F.interpolate(part, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0].cpu()
        cam += maps[0] + (torch.flip(maps[1], dims=[1]) if mirror else 0)
    peak = float(cam.max())
    out = (cam / peak if peak > 0 else torch.zeros_like(cam)).clamp_(0.0, 1.0)
    return out.numpy().astype(np.float32)


def gradcam_for_image(
    model: nn.Module, meta: ArtifactMeta, image_uint8: np.ndarray, target: int | None = None,
    layers: Sequence[str] | None = None,
) -> np.ndarray:
    """Grad-CAM (S, S) in [0, 1] for a grayscale uint8 image, resized to the model's input size if needed.

    `target` None explains the class predicted at `meta.threshold`. `layers` are the model's `cam_layers`,
    found here when not given (callers explaining many images find them once). For a model trained with
    `--crop`, the heatmap is placed where the crop box lies on the image (zero outside it); with `meta.tta`, it is
    that of the mean logit of the image and its mirror, which the model's predictions are (`gradcam`'s `mirror`).
    """
    import torch

    from pneumoscan.data.preprocess import resize_square
    from pneumoscan.models.registry import cam_scopes

    image = np.asarray(image_uint8)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
    image = resize_square(image, meta.image_size)
    device = next(model.parameters()).device
    x = meta.preprocessing(image[None]).to(device)
    if target is None:
        with torch.no_grad():
            prob = float(torch.sigmoid(model.eval()(_views(x, meta.tta)).reshape(-1).mean()))
        target = int(prob >= meta.threshold)
    if layers is None:
        layers = find_cam_layers(model, x, cam_scopes(meta.model_name, meta.model_config), meta.model_name)
    cam = gradcam(model, x, list(layers), target=target, mirror=meta.tta)
    return _uncropped(cam, image) if meta.crop else cam


def _uncropped(cam: np.ndarray, image: np.ndarray) -> np.ndarray:
    """A heatmap of the body crop of `image` (H, W) laid back where the crop came from (zero outside it)."""
    from PIL import Image

    from pneumoscan.data.framing import body_boxes

    left, top, right, bottom = (float(v) for v in body_boxes(image[None])[0])
    heat = np.asarray(cam, dtype=np.float32)
    sx, sy = heat.shape[1] / (right - left), heat.shape[0] / (bottom - top)
    # the inverse of the crop's resize: image coordinates -> heatmap coordinates, at sub-pixel precision
    placed = Image.fromarray(heat).transform((image.shape[1], image.shape[0]), Image.Transform.AFFINE,
                                             (sx, 0, -left * sx, 0, sy, -top * sy), Image.Resampling.BILINEAR,
                                             fillcolor=0.0)
    return np.clip(np.asarray(placed, dtype=np.float32), 0.0, 1.0)


def overlay(
    image_uint8_gray: np.ndarray, cam: np.ndarray, *, alpha: float = DEFAULT_ALPHA, cmap: str = DEFAULT_CMAP
) -> np.ndarray:
    """RGB uint8 (H, W, 3): the grayscale image with `cam` (any size) upsampled and blended on top.

    Opacity follows the heatmap (alpha * cam), so regions without evidence show the plain image.
    """
    from matplotlib import colormaps
    from PIL import Image

    gray = np.asarray(image_uint8_gray, dtype=np.uint8)
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {gray.shape}")
    height, width = gray.shape
    heat = np.clip(np.nan_to_num(np.asarray(cam, dtype=np.float32)), 0.0, 1.0)
    if heat.shape != (height, width):
        heat = np.asarray(Image.fromarray(heat).resize((width, height), Image.Resampling.BILINEAR))
        heat = np.clip(heat, 0.0, 1.0)
    colour = colormaps[cmap](heat)[..., :3]
    weight = (alpha * heat)[..., None]
    base = np.repeat(gray[..., None].astype(np.float32) / 255.0, 3, axis=2)
    blended = base * (1.0 - weight) + colour * weight
    return np.rint(np.clip(blended, 0.0, 1.0) * 255.0).astype(np.uint8)


def gradcam_overlay_png(model: nn.Module, meta: ArtifactMeta, image_uint8: np.ndarray, target: int | None = None,
                        layers: Sequence[str] | None = None) -> bytes:
    """PNG bytes of the Grad-CAM overlay on `image_uint8` (grayscale, any size); `target` and `layers` as in
    `gradcam_for_image`."""
    return overlay_png(image_uint8, gradcam_for_image(model, meta, image_uint8, target=target, layers=layers))


def overlay_png(image_uint8: np.ndarray, cam: np.ndarray) -> bytes:
    """PNG bytes of `overlay(image_uint8, cam)`."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(overlay(image_uint8, cam)).save(buffer, format="PNG")
    return buffer.getvalue()
