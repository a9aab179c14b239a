"""Grad-CAM sanity checks on a registered cnn trained for a few seconds on a task with a known answer.

Positive images carry a bright blob somewhere in the top-left quadrant and negatives none, so the
evidence for PNEUMONIA lies only there. The heatmap must concentrate in that quadrant far above
chance (1/4), must change when the weights are re-initialised (Adebayo et al., 2018, model
randomisation), and must land on the blob in the original image's coordinates for non-square images.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pneumoscan.artifact import ArtifactMeta
from pneumoscan.explain.gradcam import gradcam_for_image, overlay
from pneumoscan.models.registry import create_model

SIZE = 64
META = ArtifactMeta(model_name="cnn", model_config={}, image_size=SIZE, mean=0.4, std=0.2)


def quadrant_image(rng: np.random.Generator, positive: bool, shape: tuple[int, int] = (SIZE, SIZE),
                   centre: tuple[int, int] | None = None) -> np.ndarray:
    """Noise, plus (if positive) a Gaussian blob at `centre` or at random in the top-left quadrant."""
    height, width = shape
    img = rng.normal(0.4, 0.1, shape)
    if positive:
        cy, cx = centre or (int(rng.integers(height // 10, 4 * height // 10)), int(rng.integers(width // 10, 4 * width // 10)))
        yy, xx = np.mgrid[:height, :width]
        img += 0.8 * np.exp(-(((yy - cy) / (height / 20)) ** 2 + ((xx - cx) / (width / 20)) ** 2) / 2)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    """The registry's cnn, 6 epochs on 192 quadrant images (about 3 s on one CPU thread)."""
    rng = np.random.default_rng(0)
    labels = np.arange(192) % 2
    x = META.preprocessing(np.stack([quadrant_image(rng, bool(y)) for y in labels]))
    y = torch.tensor(labels, dtype=torch.float32)
    torch.manual_seed(0)
    model = create_model("cnn")
    optimiser = torch.optim.Adam(model.parameters(), 5e-3)
    for _ in range(6):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            batch = order[i : i + 32]
            loss = nn.functional.binary_cross_entropy_with_logits(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def positives() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [quadrant_image(rng, True) for _ in range(12)]


def quadrant_mass(cam: np.ndarray) -> float:
    half = cam.shape[0] // 2, cam.shape[1] // 2
    return float(cam[: half[0], : half[1]].sum() / max(cam.sum(), 1e-12))


def test_trained_model_separates_the_task(trained: nn.Module) -> None:
    rng = np.random.default_rng(2)
    labels = np.arange(40) % 2
    with torch.no_grad():
        logits = trained(META.preprocessing(np.stack([quadrant_image(rng, bool(y)) for y in labels])))
    assert ((logits >= 0).numpy() == labels).mean() >= 0.9


def test_heatmap_mass_is_in_the_evidence_quadrant(trained: nn.Module, positives: list[np.ndarray]) -> None:
    masses = [quadrant_mass(gradcam_for_image(trained, META, image, target=1)) for image in positives]
    assert np.mean(masses) > 0.6, f"mass in the blob's quadrant {np.round(masses, 2)} (chance 0.25)"
    assert np.median(masses) > 0.5


def test_randomised_weights_change_the_heatmap(trained: nn.Module, positives: list[np.ndarray]) -> None:
    torch.manual_seed(123)
    random_model = create_model("cnn").eval()
    trained_cams = [gradcam_for_image(trained, META, image, target=1) for image in positives]
    random_cams = [gradcam_for_image(random_model, META, image, target=1) for image in positives]
    correlations = [np.corrcoef(a.ravel(), b.ravel())[0, 1] if a.std() > 0 and b.std() > 0 else 0.0
                    for a, b in zip(trained_cams, random_cams)]
    assert np.mean(correlations) < 0.7, f"heatmaps barely depend on the weights: r = {np.round(correlations, 2)}"
    assert np.mean([np.abs(a - b).mean() for a, b in zip(trained_cams, random_cams)]) > 0.1


@pytest.mark.parametrize("shape", [(64, 160), (160, 64)])
def test_overlay_lands_on_the_blob_in_the_original(trained: nn.Module, shape: tuple[int, int]) -> None:
    height, width = shape
    centre = (int(0.12 * height), int(0.35 * width))  # off the diagonal: a transposed map would miss it
    image = quadrant_image(np.random.default_rng(3), True, shape, centre)
    cam = gradcam_for_image(trained, META, image, target=1)
    heat = overlay(image, cam).astype(float) - overlay(image, np.zeros_like(cam)).astype(float)
    assert heat.shape[:2] == shape
    strength = np.abs(heat).sum(axis=2)
    hot = np.array(np.unravel_index(np.argmax(strength), shape))
    assert abs(hot[0] - centre[0]) <= 0.15 * height and abs(hot[1] - centre[1]) <= 0.15 * width, (hot, centre)
    assert quadrant_mass(strength) > 0.5
