"""Grad-CAM heatmaps: which parts of an X-ray pushed the model towards its decision.

The target layer is the registry's `cam_layer` of the model (a dotted module path); an ensemble's
map is the sum of its members' maps, each taken for the ensemble's logit, before scaling. The class
explained is the predicted one at the artifact's stored threshold unless `target` is given:
1 = PNEUMONIA (gradient of the logit), 0 = NORMAL (gradient of minus the logit). Test-time
augmentation is not applied to heatmaps.
"""
from __future__ import annotations

import io
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from pneumoscan.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pneumoscan.artifact import ArtifactMeta

__all__ = ["cam_layers_for", "gradcam", "gradcam_for_image", "overlay", "gradcam_overlay_png"]

DEFAULT_ALPHA = 0.55
DEFAULT_CMAP = "inferno"  # perceptually uniform, readable with colour-vision deficiency


def cam_layers_for(model_name: str, config: dict[str, Any] | None = None) -> list[str]:
    """The registry's Grad-CAM layers of `model_name` (one per member of an ensemble); InputError when
    the model has no conv layer."""
    from pneumoscan.models.registry import cam_layers

    layers = cam_layers(model_name, config or {})
    if not layers:
        raise InputError(
            f"model '{model_name}' has no convolutional layer, so Grad-CAM cannot explain it; "
            "use a cnn, resnet10 or resnet18 model"
        )
    return layers


def _resolve(model: nn.Module, layer_name: str | None) -> nn.Module:
    if layer_name is None:
        raise InputError("this model has no convolutional layer, so Grad-CAM cannot explain it; use a conv model")
    try:
        return model.get_submodule(layer_name)
    except AttributeError:
        raise ValueError(f"Grad-CAM layer {layer_name!r} does not exist in {type(model).__name__}") from None


def gradcam(model: nn.Module, x: torch.Tensor, layer_name: str | list[str] | None, target: int | None = None) -> np.ndarray:
    """Grad-CAM of one normalised image `x` (1, 1, S, S) at `layer_name` -> (S, S) float32 in [0, 1].

    Several layers (an ensemble's members) give the sum of their maps at input resolution.
    `target` 1 explains PNEUMONIA, 0 explains NORMAL, None the class the logit favours (logit >= 0).
    A map with no positive evidence is all zeros.
    """
    import torch
    import torch.nn.functional as F

    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"gradcam expects one image of shape (1, C, S, S), got {tuple(x.shape)}")
    names = [layer_name] if isinstance(layer_name, str) or layer_name is None else list(layer_name)
    layers = [_resolve(model, name) for name in names] if names else [_resolve(model, None)]
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
            logit = model(x).reshape(-1)[0]
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
        cam += F.interpolate(part, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[0, 0].cpu()
    peak = float(cam.max())
    out = (cam / peak if peak > 0 else torch.zeros_like(cam)).clamp_(0.0, 1.0)
    return out.numpy().astype(np.float32)


def gradcam_for_image(
    model: nn.Module, meta: ArtifactMeta, image_uint8: np.ndarray, target: int | None = None
) -> np.ndarray:
    """Grad-CAM (S, S) in [0, 1] for a grayscale uint8 image, resized to the model's input size if needed.

    `target` None explains the class predicted at `meta.threshold`. For a model trained with `--crop`,
    the heatmap is placed where the crop box lies on the image (zero outside it).
    """
    import torch

    from pneumoscan.data.preprocess import resize_square

    layers = cam_layers_for(meta.model_name, meta.model_config)
    image = np.asarray(image_uint8)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
    image = resize_square(image, meta.image_size)
    device = next(model.parameters()).device
    x = meta.preprocessing(image[None]).to(device)
    if target is None:
        with torch.no_grad():
            prob = float(torch.sigmoid(model.eval()(x).reshape(-1)[0]))
        target = int(prob >= meta.threshold)
    cam = gradcam(model, x, layers, target=target)
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


def gradcam_overlay_png(model: nn.Module, meta: ArtifactMeta, image_uint8: np.ndarray, target: int | None = None) -> bytes:
    """PNG bytes of the Grad-CAM overlay on `image_uint8` (grayscale, any size); `target` as in `gradcam_for_image`."""
    from PIL import Image

    cam = gradcam_for_image(model, meta, image_uint8, target=target)
    buffer = io.BytesIO()
    Image.fromarray(overlay(image_uint8, cam)).save(buffer, format="PNG")
    return buffer.getvalue()
