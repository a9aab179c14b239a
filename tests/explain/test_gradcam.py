from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from pneumoscan.artifact import ArtifactMeta
from pneumoscan.errors import InputError
from pneumoscan.explain.gradcam import (NoCamLayer, cam_layers, find_cam_layers, gradcam, gradcam_for_image,
                                        gradcam_overlay_png, overlay)
from pneumoscan.models.registry import create_model, list_models


class BrightnessNet(nn.Module):
    """Train-free: the logit is the mean of ReLU(local brightness - offset), so bright blobs raise it."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1))
        with torch.no_grad():
            self.features[0].weight.fill_(1 / 9)
            self.features[0].bias.fill_(-1.0)
            self.head[2].weight.fill_(1.0)
            self.head[2].bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


def blob_image(cy: int, cx: int, size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = rng.normal(60, 8, (size, size)) + 180 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 4.0**2))
    return np.clip(img, 0, 255).astype(np.uint8)


def as_input(image: np.ndarray) -> torch.Tensor:
    return ((torch.from_numpy(image).float() / 255 - 0.3) / 0.25)[None, None]


def peak(cam: np.ndarray) -> np.ndarray:
    return np.array(np.unravel_index(np.argmax(cam), cam.shape))


def test_heatmap_follows_the_bright_blob() -> None:
    model = BrightnessNet().eval()
    peaks = []
    for centre in ((14, 16), (46, 44), (16, 48)):
        cam = gradcam(model, as_input(blob_image(*centre)), "features", target=1)
        assert cam.shape == (64, 64) and cam.dtype == np.float32
        assert cam.min() >= 0.0 and cam.max() == pytest.approx(1.0)
        assert cam.std() > 0.05, "heatmap is constant"
        assert np.linalg.norm(peak(cam) - np.array(centre)) <= 4
        assert cam[centre] > 5 * np.median(cam) + 1e-6
        peaks.append(peak(cam))
    assert np.linalg.norm(peaks[0] - peaks[1]) > 30


def test_hooks_removed_and_mode_restored() -> None:
    model = BrightnessNet().train()
    gradcam(model, as_input(blob_image(32, 32)), "features", target=None)
    assert model.training
    assert not model.features._forward_hooks
    assert all(p.grad is None for p in model.parameters())


def test_works_inside_inference_mode() -> None:
    model = BrightnessNet().eval()
    expected = gradcam(model, as_input(blob_image(20, 20)), "features", target=1)
    with torch.inference_mode():
        cam = gradcam(model, as_input(blob_image(20, 20)), "features", target=1)
    assert np.allclose(cam, expected)


def test_no_positive_evidence_gives_zeros() -> None:
    model = BrightnessNet().eval()
    cam = gradcam(model, as_input(blob_image(32, 32)), "features", target=0)  # NORMAL: evidence against brightness
    assert cam.shape == (64, 64) and not cam.any()


def test_bad_layer_and_shape() -> None:
    model = BrightnessNet().eval()
    with pytest.raises(ValueError, match="does not exist"):
        gradcam(model, as_input(blob_image(32, 32)), "features.7")
    with pytest.raises(ValueError, match="one image"):
        gradcam(model, torch.zeros(2, 1, 8, 8), "features")


# (model, config, input size, the module whose output is the last feature map before pooling)
CAM_CASES = [
    ("cnn", {}, 96, lambda m: m.features[6]),
    ("cnn", {"widths": (8, 16, 32)}, 64, lambda m: m.features[4]),  # three blocks: there is no features.6
    ("cnn", {"widths": (4, 8, 8, 16, 16)}, 64, lambda m: m.features[8]),  # five: features.6 is the fourth block
    ("resnet10", {}, 128, lambda m: m.stages[3]),
    ("resnet18", {}, 160, lambda m: m.stages[3]),
    ("resnet10", {"widths": (16, 32, 64), "depths": (1, 1, 1)}, 64, lambda m: m.stages[2]),  # no stages.3
    ("resnet18", {"widths": (8,) * 5, "depths": (2,) * 5}, 128, lambda m: m.stages[4]),  # stages.3 is not the last
    ("resnet10", {"widths": (8,) * 6, "depths": (1,) * 6}, 64, lambda m: m.stages[3]),  # stages 4 and 5: 1 x 1 px
    ("tv_resnet18", {}, 64, lambda m: m.layer4),  # 2 x 2 px at 64: the smallest size with a map
    ("tv_resnet50", {}, 64, lambda m: m.layer4),
]


def _output_of(model: nn.Module, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    kept: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: kept.append(out.detach().clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return kept[-1]


@pytest.mark.parametrize(("name", "config", "size", "expected"), CAM_CASES)
def test_the_cam_layer_is_the_last_feature_map_whatever_the_width_and_depth(name, config, size, expected) -> None:
    torch.manual_seed(0)
    model = create_model(name, **config).eval()
    meta = ArtifactMeta(model_name=name, model_config=config, image_size=size, mean=0.3, std=0.25)
    (layer,) = cam_layers(model, meta)
    x = torch.randn(1, 1, size, size)
    chosen, wanted = _output_of(model, model.get_submodule(layer), x), _output_of(model, expected(model), x)
    assert torch.equal(chosen, wanted) and chosen.shape[-1] > 1, f"{name} {config}: {layer} is not the last feature map"
    image = blob_image(size // 3, size // 2, size=size + 16)  # not the model size: resized inside
    for target in (None, 0, 1):
        cam = gradcam_for_image(model, meta, image, target=target)
        assert cam.shape == (size, size) and np.isfinite(cam).all()
        assert cam.min() >= 0.0 and cam.max() <= 1.0


def test_every_registered_model_is_covered() -> None:
    assert {name for name, *_ in CAM_CASES} | {"mlp", "ensemble"} == set(list_models(composite=True))


def test_an_ensemble_sums_its_convolutional_members_maps() -> None:
    torch.manual_seed(0)
    entries = [{"model": "cnn", "config": {"widths": [8, 16, 32]}, "image_size": 24, "mean": 0.45, "std": 0.2},
               {"model": "mlp", "config": {"image_size": 24}, "image_size": 24, "mean": 0.45, "std": 0.2},
               {"model": "resnet10", "config": {"widths": [8, 16, 32], "depths": [1, 1, 1]}, "image_size": 32,
                "mean": 0.5, "std": 0.25}]
    model = create_model("ensemble", members=entries, input_mean=0.5, input_std=0.25).eval()
    meta = ArtifactMeta(model_name="ensemble", model_config={"members": entries}, image_size=32, mean=0.5, std=0.25)
    assert cam_layers(model, meta) == ["members.0.features.4", "members.2.stages"]
    cam = gradcam_for_image(model, meta, blob_image(10, 20, size=32), target=1)
    assert cam.shape == (32, 32) and np.isfinite(cam).all()


def test_a_tta_models_heatmap_is_that_of_the_mean_logit_of_the_film_and_its_mirror() -> None:
    """A model trained with --tta is scored on the mean logit of the film and its mirror, but its heatmap was that of
    the film alone: the map of a mirrored film was not the mirror of the film's map, though its P is the same."""
    torch.manual_seed(3)
    model = create_model("cnn", widths=[8, 16, 32]).eval()
    image = blob_image(10, 8, size=32)  # off-centre: the film and its mirror differ
    mirrored = np.ascontiguousarray(image[:, ::-1])
    maps = {}
    for tta in (False, True):
        meta = ArtifactMeta(model_name="cnn", model_config={"widths": [8, 16, 32]}, image_size=32, mean=0.3,
                            std=0.25, tta=tta)
        maps[tta] = [gradcam_for_image(model, meta, film, target=1) for film in (image, mirrored)]
    film, of_mirror = maps[True]
    assert film.max() == pytest.approx(1.0) and np.allclose(film, of_mirror[:, ::-1], atol=1e-5)
    assert not np.allclose(maps[False][0], maps[False][1][:, ::-1], atol=1e-2)  # the film alone: not so
    own = gradcam(model, as_input(image), cam_layers(model, meta), target=1)
    assert not np.allclose(film, own, atol=1e-2)  # it is not the film's own map either


def test_gradcam_finds_the_layer_itself() -> None:
    model = BrightnessNet().eval()
    x = as_input(blob_image(20, 40))
    assert find_cam_layers(model, x) == ["features"]
    assert np.array_equal(gradcam(model, x, target=1), gradcam(model, x, "features", target=1))
    assert not model.features._forward_hooks and not model.features[0]._forward_hooks


class OnePixelNet(nn.Module):
    """A convolution as large as its 8 px input: its output is one pixel, so there is no map to explain."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 8)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x)).squeeze(1)


def test_a_model_without_a_feature_map_is_a_clear_error() -> None:
    meta = ArtifactMeta(model_name="mlp", model_config={"image_size": 32}, image_size=32, mean=0.3, std=0.25)
    model = create_model("mlp", image_size=32).eval()
    with pytest.raises(NoCamLayer, match="model 'mlp' has no convolutional layer, so Grad-CAM cannot explain it"):
        cam_layers(model, meta)
    with pytest.raises(InputError, match="Grad-CAM"):
        gradcam_overlay_png(model, meta, blob_image(10, 10, size=32))
    with pytest.raises(NoCamLayer, match=r"OnePixelNet: every convolution's output is 1 x 1 px for 8 x 8 px images"):
        gradcam(OnePixelNet().eval(), torch.zeros(1, 1, 8, 8))


def test_overlay_keeps_size_and_plain_where_no_evidence() -> None:
    gray = blob_image(30, 50, size=90)[:, :70]  # 90 x 70, any size
    cam = np.zeros((16, 16), dtype=np.float32)
    cam[2:6, 10:14] = 1.0
    rgb = overlay(gray, cam)
    assert rgb.shape == (90, 70, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[-5:, :5], np.repeat(gray[-5:, :5, None], 3, axis=2))  # cam 0 there: plain image
    assert not np.array_equal(rgb[15, 50], np.repeat(gray[15, 50], 3))  # under the hot spot: coloured


def test_overlay_png_for_trained_run(tiny_run, tiny_data) -> None:
    from pneumoscan.artifact import load_artifact
    from pneumoscan.data.decode import read_grayscale

    model, meta = load_artifact(tiny_run)
    original = read_grayscale(next((tiny_data / "test" / "PNEUMONIA").iterdir()))
    png = gradcam_overlay_png(model, meta, original)
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == original.shape[::-1]


def test_explain_draws_a_large_film_at_display_size() -> None:
    import numpy as np

    from pneumoscan.explain.explanation import DISPLAY_SIDE, display_copy

    big = np.random.default_rng(0).integers(0, 255, (3000, 2000), dtype=np.uint8)
    shown = display_copy(big)
    assert shown.shape == (DISPLAY_SIDE, 683) and shown.dtype == np.uint8
    small = big[:300, :200]
    assert display_copy(small) is small


@pytest.mark.parametrize("shape", [(400, 150), (150, 400), (300, 300)])
def test_explanation_title_fits_the_figure(shape: tuple[int, int]) -> None:
    """A tall film made a narrow figure, and its title (file name, label, P, threshold) was cut at both sides."""
    from pneumoscan.report.figures import explanation

    image = np.full(shape, 128, dtype=np.uint8)
    title = ("a_rather_long_film_name_0001.jpeg: PNEUMONIA  P(pneumonia) = 0.997  (threshold 0.617)\n"
             "heatmap: evidence for PNEUMONIA, model resnet10")
    fig = explanation(image, np.repeat(image[..., None], 3, axis=2), title)
    fig.canvas.draw()
    box = fig._suptitle.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width, (box, fig.bbox.width)
