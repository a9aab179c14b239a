"""Example cases for the report: the most confident TP/TN/FP/FN with Grad-CAM, and first-layer feature maps."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pneumoscan.errors import InputError, MissingImagesWarning, counted, first_few, warn
from pneumoscan.report.figures import Tile, printable, shortened
from pneumoscan.report.html import fmt

if TYPE_CHECKING:
    from pathlib import Path

    from torch import nn

    from pneumoscan.artifact import ArtifactMeta
    from pneumoscan.report.scores import Scores

DISPLAY_SIZE = 256  # longest side of the originals shown in the grids, in pixels

# name, true label, predicted label, most confident = highest P (True) or lowest P (False)
CATEGORIES: tuple[tuple[str, str, int, int, bool], ...] = (
    ("TP", "true positives (PNEUMONIA called PNEUMONIA)", 1, 1, True),
    ("TN", "true negatives (NORMAL called NORMAL)", 0, 0, False),
    ("FP", "false positives (NORMAL called PNEUMONIA)", 0, 1, True),
    ("FN", "false negatives (PNEUMONIA called NORMAL)", 1, 0, False),
)


@dataclass
class CaseGroup:
    """The selected cases of one category, as figure tiles."""

    key: str
    title: str
    indices: list[int]
    tiles: list[Tile]


def tile_label(path: Path, prob: float) -> str:
    """A case tile's caption: the file name and P, with the decimals that keep P short of certainty off 0 and 1
    (the most confident cases are where P = 0.99998 would read "1.000")."""
    return f"{printable(shortened(path.name))}\nP(pneumonia) = {fmt(prob)}"


def most_confident(labels: np.ndarray, probs: np.ndarray, threshold: float, per_group: int) -> dict[str, list[int]]:
    """Indices of the `per_group` most confident cases of each category (TP, TN, FP, FN)."""
    preds = (probs >= threshold).astype(np.int64)
    out: dict[str, list[int]] = {}
    for key, _title, true, pred, highest in CATEGORIES:
        members = np.flatnonzero((labels == true) & (preds == pred))
        order = np.argsort(-probs[members] if highest else probs[members], kind="stable")
        out[key] = [int(i) for i in members[order][:per_group]]
    return out


def display_image(path: object) -> np.ndarray | None:
    """The original file as grayscale, shrunk so its longest side is at most DISPLAY_SIZE; None if unreadable."""
    from PIL import Image

    from pneumoscan.data.decode import read_grayscale

    try:
        gray = read_grayscale(path, draft_size=DISPLAY_SIZE)  # type: ignore[arg-type]
    except InputError:
        return None
    height, width = gray.shape
    scale = DISPLAY_SIZE / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        gray = np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BILINEAR), dtype=np.uint8)
    return gray


def model_input(scores: Scores, index: int, size: int) -> np.ndarray | None:
    """The preprocessed model input of case `index` (from the evaluation, else decoded again)."""
    from pneumoscan.data.preprocess import load_image

    if scores.images is not None:
        return np.asarray(scores.images[index])
    try:
        return load_image(scores.paths[index], size)
    except InputError:
        return None


def overlay_layers(model: nn.Module, meta: ArtifactMeta) -> tuple[list[str] | None, str]:
    """The Grad-CAM layers of the case overlays (`cam_layers`; None when the model has none) and what the overlays
    show, for the page: the evidence for the predicted class, what of an ensemble they leave out, or why there are
    none."""
    from pneumoscan.explain.explanation import left_out_clause
    from pneumoscan.explain.gradcam import NoCamLayer, cam_layers, unmapped_members

    try:
        layers = cam_layers(model, meta)
    except NoCamLayer as err:
        return None, f"no Grad-CAM overlay: {err.reason}"
    unmapped = unmapped_members(meta, layers)
    return layers, ("its Grad-CAM overlay, showing the evidence for the predicted class"
                    + (f", of model {meta.model_name}{left_out_clause(unmapped)}" if unmapped else ""))


def case_groups(model: nn.Module, meta: ArtifactMeta, scores: Scores, per_group: int = 4,
                layers: list[str] | None = None) -> list[CaseGroup]:
    """Tiles of the most confident cases per category; Grad-CAM at `layers` (`overlay_layers`; None: no overlays)
    explains the predicted class."""
    from pneumoscan.explain.gradcam import gradcam_for_image, overlay

    chosen = most_confident(scores.labels, scores.probs, scores.threshold, per_group)
    groups, unshown = [], []
    for key, title, _true, pred, _highest in CATEGORIES:
        tiles, used = [], []
        for index in chosen[key]:
            original = display_image(scores.paths[index])
            if original is None:
                unshown.append(scores.paths[index])
                continue
            tile = Tile(original, None, tile_label(scores.paths[index], float(scores.probs[index])))
            inputs = model_input(scores, index, meta.image_size)
            if layers and inputs is not None:
                cam = gradcam_for_image(model, meta, inputs, target=pred, layers=layers)
                tile.overlay = overlay(original, cam)
                if not cam.any():
                    tile.overlay_label = "Grad-CAM: no positive evidence"
            tiles.append(tile)
            used.append(index)
        groups.append(CaseGroup(key, title, used, tiles))
    unreadable = [str(p) for p in unshown if p.exists()]  # files not found at all are warned about with the scores
    if unreadable:
        warn(MissingImagesWarning(f"{counted(len(unreadable), 'case image')} could not be read and "
                                  f"{'is' if len(unreadable) == 1 else 'are'} not shown: "
                                  f"{first_few(unreadable)}"))
    return groups


def first_conv_maps(model: nn.Module, meta: ArtifactMeta, image_uint8: np.ndarray) -> tuple[str, np.ndarray] | None:
    """Name and (C, H, W) output of the model's first Conv2d for one model input; None without a conv layer."""
    import torch
    from torch import nn

    layer = next(((name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if layer is None:
        return None
    name, module = layer
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model.eval()(meta.preprocessing(np.asarray(image_uint8)[None]).to(device))
    finally:
        handle.remove()
    return name, captured[0][0].cpu().numpy()
