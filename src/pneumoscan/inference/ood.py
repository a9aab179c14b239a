"""Out-of-distribution guard: does an input look like the frontal chest X-rays the model was trained on?

How to call it (Predictor, CLI, service) - one forward pass serves both the prediction and the guard::

    from pneumoscan.inference.ood import colourfulness, forward_with_features, load_guard
    guard = load_guard(model_path)     # once, beside the model: OODGuard, or None when no guard file
    # per batch of files: read each file once, use the bytes twice
    datas = [Path(f).read_bytes() for f in files]
    images, levels = zip(*(load_image_with_levels(d, meta.image_size, name=str(f)) for f, d in zip(files, datas)))
    images = np.stack(images)                            # load_image_with_levels: data.preprocess
    colours = [colourfulness(d) for d in datas]          # measured on the raw bytes: decoding drops colour
    logits, feats = forward_with_features(model, images, meta.preprocessing, batch_size=64, tta=meta.tta)
    probs = sigmoid(logits)            # the same logits as predict_logits(...) gives
    tones = [two_tone_share(d) for d in datas]           # JPEGs: decoded again at full size
    results = guard.check(images, features=feats, colourfulness=colours, grey_levels=levels,
                          two_tone=tones)                # list[OODResult]
    # not results[i].in_distribution -> report results[i].message (e.g. "not a chest X-ray: <reason>"),
    # results[i].to_dict() for JSON; keep the probability out of the verdict for such inputs

`guard.check(images, model=model, colourfulness=...)` also works (it runs its own forward pass), and
`colourfulness=None` / `grey_levels=None` / `two_tone=None` skip those signals. A guard is tied to the
exact model file it was fitted for (SHA-256); `load_guard` raises InputError for a stale guard.

Signals, each turned into a ratio to its 99th percentile on held-out training X-rays:

* ``image``: Mahalanobis distance of cheap statistics of the (S, S) grayscale input (intensity
  moments, dark/bright fractions, histogram entropy, edge and fine-texture energy, left-right symmetry,
  and the 8x8 layout of the standardised image) to the training X-rays.
* ``features``: class-conditional Mahalanobis distance (Lee et al., NeurIPS 2018; tied, Ledoit-Wolf
  shrunk covariance) of the classifier's penultimate features - the input of the model's final
  ``nn.Linear``, taken with a forward hook, so it works for every registered model.
* ``colour``: Hasler & Suesstrunk (2003) colourfulness of the raw file, referenced to
  max(99th percentile, 15) - 15 is their bound for "not colourful"; X-rays are grayscale.

The score is the largest ratio. The threshold is the held-out (5-fold cross-fitted) quantile of the
score that rejects half of the allowed false-rejection rate, leaving margin for new scanners.

Three rules refuse chest X-rays in a form the model cannot read, whatever the score (their message
says what to do instead of "not a chest X-ray"); all use fixed constants measured on the training
films (`bench/guard_cues.py`), so guards fitted before them need no refit:

* grey levels: a file that decodes to at most ``MAX_GREY_LEVELS`` distinct grey levels at its own
  resolution (before resizing) is binary (black-and-white, dithered) or posterised. Dithering averages
  to grey at the model's size, so the other signals pass such a film.
* two tones: a JPEG with more than ``TWO_TONE_SHARE`` of its pixels, decoded at full size, within
  ``TWO_TONE_BAND`` grey levels of black or white is a black-and-white picture whose compression
  artefacts hide its two levels from the grey-level count (the decoder's reduced-size JPEG decoding
  also averages the dither to grey, hence the second, full-size decode).
* upside down: the ``image`` distance of the image's 180-degree rotation and vertical flip, from the
  stored image model (the global statistics do not change under these flips; the 8x8 layout is flipped).
  The image is refused when a flipped version would pass the image check and is more typical than the
  image by more than ``UPSIDE_DOWN_GAIN`` (in units of the image signal's 99th percentile).
"""
from __future__ import annotations

import io
import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from pneumoscan import __version__
from pneumoscan.artifact import file_sha256, resolve_model_path
from pneumoscan.data.decode import DEFAULT_MAX_PIXELS, is_dicom
from pneumoscan.data.preprocess import Preprocessing
from pneumoscan.errors import InputError
from pneumoscan.models.registry import final_linear_name
from pneumoscan.outputs import atomic_write

GUARD_FORMAT = 1
_META_KEY = "pneumoscan_ood"
COLOUR_REFERENCE = 15.0  # Hasler & Suesstrunk: below 15 an image is "not colourful"
BLANK_SPREAD = 3.0  # pixel standard deviation (0-255) under which an image is blank
_LAYOUT = 8  # the standardised image's layout is summarised as LAYOUT x LAYOUT block means
# `python bench/guard_cues.py` (train films only; bench/results/guard_cues.md) measured both constants:
# - the 5,216 train films decode to 113 to 256 grey levels (1st percentile 171), and as 16-bit PNG/TIFF and
#   12-bit DICOM (plain, windowed, MONOCHROME1) to at least as many; a 1-bit dithered film has 2.
MAX_GREY_LEVELS = 16
# - upside-down gain of unflipped train films: 99.9th percentile 0.13 (5-fold cross-fitted image model), 2 of
#   5,216 above 0.2 (0.04 %); of their 180-degree rotations 98.7 % and vertical flips 98.0 % are above 0.2.
UPSIDE_DOWN_GAIN = 0.2
# - share of pixels within TWO_TONE_BAND levels of black or white: at most 0.57 among the train films (JPEGs;
#   99.9th percentile 0.37); at least 0.84 for 1-bit dithered or thresholded films saved as JPEG at quality 30 to
#   95, 224 to 1,792 px.
TWO_TONE_BAND = 32  # an eighth of the 0-255 range at each end
TWO_TONE_SHARE = 0.75
TWO_TONE_MAX_PIXELS = 4096 * 4096  # larger JPEGs are measured at half size or less (the decoder's memory stays low)
_REASONS = {
    "colour": "colour image (chest X-rays are grayscale)",
    "image": "image statistics unlike chest X-rays (layout, contrast or texture)",
    "features": "the model's features are unlike those of its training X-rays",
}
_BLANK = "blank or nearly constant image"
_UPSIDE_DOWN = "the image looks upside down; rotate it and send it again"
_AS_SENT = ("grey_levels", "two_tone", "upside_down")  # refusals of a chest X-ray in a form the model cannot read


@dataclass(frozen=True)
class OODResult:
    """The guard's verdict on one image; `components` are ratios to the 99th percentile of training X-rays."""

    in_distribution: bool
    score: float
    threshold: float
    reason: str | None = None
    components: dict[str, float] = field(default_factory=dict)
    # what refused the image: "blank", "grey_levels", "two_tone", "upside_down" or the largest of `components`
    refused_by: str | None = None

    @property
    def message(self) -> str:
        if self.in_distribution:
            return "looks like a chest X-ray"
        return str(self.reason) if self.refused_by in _AS_SENT else f"not a chest X-ray: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def grey_levels_reason(levels: int) -> str:
    """Why a film with this few grey levels is refused, and what to send instead."""
    kind = "binary (black-and-white) image" if levels <= 2 else "posterised or dithered image"
    return f"{kind}: {levels} grey level{'' if levels == 1 else 's'}; send the original radiograph"


def two_tone_reason(share: float) -> str:
    """Why a JPEG with this share of pixels near black or white is refused, and what to send instead."""
    percent = int(share * 100)  # floored: 99.9 % is not "100 %"
    return f"binary (black-and-white) image: {percent}% of its pixels near black or white; send the original radiograph"


# --------------------------------------------------------------------------- signals


def _spread(images: np.ndarray) -> np.ndarray:
    """Standard deviation of each image's pixels (0-255)."""
    return np.asarray(images, dtype=np.float32).reshape(len(images), -1).std(1)


def guard_path(model: str | os.PathLike | None) -> Path:
    """Where the guard of a model lives: `<artifact stem>.ood.safetensors` beside the artifact."""
    path = resolve_model_path(model)
    return path.with_name(path.name.removesuffix(".safetensors") + ".ood.safetensors")


def colourfulness(source: str | os.PathLike | bytes | bytearray, size: int = 64) -> float:
    """Hasler-Suesstrunk colourfulness (0 = gray, 15 = barely, 109 = extremely colourful) of a raw file.

    Cheap: grayscale modes return 0 without decoding, JPEGs are decoded in draft mode at about
    `size` px. DICOM, unreadable or oversized files return 0.0 (the decoder reports those).
    """
    from PIL import Image

    try:
        data = source if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes()
        if is_dicom(bytes(data[:132])):
            return 0.0
        with Image.open(io.BytesIO(data), formats=("JPEG", "PNG", "TIFF", "BMP")) as im:
            if im.mode not in ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                return 0.0
            if im.size[0] * im.size[1] > DEFAULT_MAX_PIXELS:
                return 0.0
            im.draft("RGB", (size, size))
            im.thumbnail((size, size))
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
    except Exception:  # noqa: BLE001 - any unreadable input: the decoder raises the user-facing error
        return 0.0
    rgb = rgba[..., :3] * (rgba[..., 3:] / 255.0)  # composite on black, as the decoder does
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def colourfulness_of(sources: Sequence[str | os.PathLike]) -> np.ndarray:
    """`colourfulness` of every file, in order (read in parallel)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return np.array(list(pool.map(colourfulness, sources)), dtype=np.float64)


def two_tone_share(source: str | os.PathLike | bytes | bytearray) -> float:
    """Share of a JPEG's pixels, decoded at full size, within `TWO_TONE_BAND` grey levels of black or white.

    Only JPEGs are measured (lossless formats keep a black-and-white picture's grey levels, which the
    grey-level rule counts); those above `TWO_TONE_MAX_PIXELS` at the largest reduced size under it.
    Other, unreadable or oversized files return 0.0 (the decoder reports those).
    """
    from PIL import Image

    try:
        data = source if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes()
        if bytes(data[:3]) != b"\xff\xd8\xff":
            return 0.0
        with Image.open(io.BytesIO(data), formats=("JPEG", "MPO")) as im:
            width, height = im.size
            if width * height > DEFAULT_MAX_PIXELS:
                return 0.0
            scale = next((s for s in (1, 2, 4) if width * height <= TWO_TONE_MAX_PIXELS * s * s), 8)
            im.draft("L", (width // scale, height // scale))  # grey straight from the decoder
            histogram = im.convert("L").histogram()
    except Exception:  # noqa: BLE001 - any unreadable input: the decoder raises the user-facing error
        return 0.0
    near = sum(histogram[:TWO_TONE_BAND]) + sum(histogram[-TWO_TONE_BAND:])
    return near / max(sum(histogram), 1)


def two_tone_share_of(sources: Sequence[str | os.PathLike]) -> np.ndarray:
    """`two_tone_share` of every file, in order (read in parallel)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return np.array(list(pool.map(two_tone_share, sources)), dtype=np.float64)


def image_statistics(images: np.ndarray) -> np.ndarray:
    """(N, S, S) uint8 -> (N, 11 + 64) float64: global statistics and the 8x8 standardised layout."""
    x = torch.from_numpy(np.array(images, dtype=np.uint8)).float().div_(255.0)
    if x.ndim != 3:
        raise ValueError(f"images must be (N, S, S) uint8, got shape {tuple(x.shape)}")
    n = x.shape[0]
    flat = x.reshape(n, -1)
    mean, std = flat.mean(1), flat.std(1, correction=0)
    soft = std + 0.02
    z = (x - mean[:, None, None]) / soft[:, None, None]
    zf = z.reshape(n, -1)
    bins = (flat * 31.999).long() + 32 * torch.arange(n)[:, None]
    hist = torch.bincount(bins.reshape(-1), minlength=32 * n).reshape(n, 32).float() / flat.shape[1]
    entropy = -(hist * torch.log(hist.clamp_min(1e-12))).sum(1) / np.log(32)
    grad = 0.5 * ((x[:, :, 1:] - x[:, :, :-1]).abs().mean((1, 2)) + (x[:, 1:] - x[:, :-1]).abs().mean((1, 2)))
    blur = nn.functional.avg_pool2d(x[:, None], 3, 1, 1, count_include_pad=False)[:, 0]
    fine = (x - blur).abs().mean((1, 2))
    mirror = (z * z.flip(2)).mean((1, 2)) / (zf.pow(2).mean(1) + 1e-6)
    layout = nn.functional.adaptive_avg_pool2d(z[:, None], _LAYOUT).reshape(n, -1)
    stats = torch.stack([
        mean, torch.log(soft), (flat < 0.04).float().mean(1).sqrt(), (flat > 0.96).float().mean(1).sqrt(), entropy,
        torch.log(grad + 1e-3), torch.log(grad / soft + 1e-3), torch.log(fine / soft + 1e-3), mirror,
        zf.pow(3).mean(1).clamp(-20, 20), torch.log(zf.pow(4).mean(1) + 1e-3),
    ], 1)
    return torch.cat([stats, layout], 1).double().numpy()


def final_linear(model: nn.Module) -> nn.Linear:
    """The classifier's last nn.Linear (inside `model.head` when there is one): its input is the feature."""
    layer = model.get_submodule(final_linear_name(model))
    assert isinstance(layer, nn.Linear)
    return layer


@torch.inference_mode()
def forward_with_features(
    model: nn.Module, images: np.ndarray, preprocessing: Preprocessing, *, batch_size: int = 128, tta: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (same as `predict_logits`) and penultimate features (N, D) of the unmirrored pass, in one pass."""
    model.eval()
    device = next(model.parameters()).device
    captured: list[torch.Tensor] = []
    capture = [True]
    owner = threading.get_ident()  # the model may be shared: other threads' forward passes fire this hook too

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if capture[0] and threading.get_ident() == owner:
            captured.append(inputs[0].detach().reshape(len(inputs[0]), -1).float().cpu())

    handle = final_linear(model).register_forward_pre_hook(hook)
    logits_out = np.empty(len(images), dtype=np.float32)
    try:
        for start in range(0, len(images), batch_size):
            x = preprocessing(np.asarray(images[start : start + batch_size])).to(device)
            capture[0] = True
            logits = model(x)
            if tta:
                capture[0] = False
                logits = (logits + model(torch.flip(x, dims=[3]))) / 2
            logits_out[start : start + len(x)] = logits.float().cpu().numpy()
    finally:
        handle.remove()
    feats = torch.cat(captured).numpy() if captured else np.zeros((0, 0), np.float32)
    return logits_out, feats


def _feature_transform(features: np.ndarray) -> np.ndarray:
    """Signed square root: makes post-ReLU features closer to Gaussian."""
    f = np.asarray(features, dtype=np.float64)
    return np.sign(f) * np.sqrt(np.abs(f))


# --------------------------------------------------------------------------- Gaussian model


@dataclass
class _Gaussian:
    """Standardise by `scale`, then squared Mahalanobis distance to the nearest of `centers` (tied precision)."""

    centers: np.ndarray  # (C, D) in standardised units
    scale: np.ndarray  # (D,)
    precision: np.ndarray  # (D, D)

    @classmethod
    def fit(cls, x: np.ndarray, groups: np.ndarray | None = None, *, per_dim: bool = True) -> "_Gaussian":
        """`per_dim`: standardise each column (mixed units); else one common scale, so the shrinkage
        towards a scaled identity also tames near-constant columns (e.g. rarely active ReLU channels)."""
        loc = x.mean(0)
        raw_scale = x.std(0)
        common = max(float(np.sqrt(np.mean(raw_scale**2))), 1e-9)
        scale = np.maximum(raw_scale, 0.1 * float(np.median(raw_scale)) + 1e-9) if per_dim else np.full(x.shape[1], common)
        z = (x - loc) / scale
        labels = np.zeros(len(x), int) if groups is None else np.asarray(groups)
        keys, index = np.unique(labels, return_inverse=True)
        if len(keys) < 2 or np.bincount(index).min() < 2:
            index = np.zeros(len(x), int)
        centers = np.stack([z[index == g].mean(0) for g in range(index.max() + 1)])
        resid = z - centers[index]
        cov = _ledoit_wolf(resid)
        precision = np.linalg.inv(cov + 1e-6 * np.eye(len(cov)))
        return cls(centers + loc / scale, scale, (precision + precision.T) / 2)

    def distance(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, dtype=np.float64) / self.scale
        best = np.full(len(z), np.inf)
        for center in self.centers:
            d = z - center
            best = np.minimum(best, ((d @ self.precision) * d).sum(1))
        return best


def _ledoit_wolf(x: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf (2004) shrinkage of the covariance of centred rows `x` towards a scaled identity."""
    n, p = x.shape
    s = x.T @ x / n
    mu = np.trace(s) / p
    delta = np.sum((s - mu * np.eye(p)) ** 2)
    beta = (np.sum(np.sum(x**2, 1) ** 2) / n - np.sum(s**2)) / n
    shrink = 1.0 if delta <= 0 else float(np.clip(beta / delta, 0.0, 1.0))
    return shrink * mu * np.eye(p) + (1 - shrink) * s


# --------------------------------------------------------------------------- the guard


class OODGuard:
    """A fitted guard: call `check` on the batch that is being classified."""

    def __init__(self, meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        self.meta = meta
        self.preprocessing = Preprocessing(meta["mean"], meta["std"], meta.get("equalize", False), meta.get("crop", False))
        self.threshold = float(meta["threshold"])
        self.references: dict[str, float] = {k: float(v) for k, v in meta["references"].items()}
        self.models = {name: _Gaussian(tensors[f"{name}.centers"], tensors[f"{name}.scale"], tensors[f"{name}.precision"])
                       for name in ("image", "features") if f"{name}.centers" in tensors}

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    def components(
        self,
        images: np.ndarray,
        *,
        features: np.ndarray | None = None,
        model: nn.Module | None = None,
        colourfulness: Sequence[float] | np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Raw signal values per image: squared distances (`image`, `features`) and `colour`."""
        images = np.asarray(images)
        return self._components(images, self._statistics(images), features, model, colourfulness)

    def _statistics(self, images: np.ndarray) -> np.ndarray:
        if images.ndim != 3 or images.shape[1:] != (self.image_size, self.image_size):
            raise ValueError(f"images must be (N, {self.image_size}, {self.image_size}) uint8, got {images.shape}")
        return image_statistics(images)

    def _components(
        self,
        images: np.ndarray,
        stats: np.ndarray,
        features: np.ndarray | None,
        model: nn.Module | None,
        colourfulness: Sequence[float] | np.ndarray | None,
    ) -> dict[str, np.ndarray]:
        out = {"image": self.models["image"].distance(stats)}
        if "features" in self.models:
            if features is None:
                if model is None:
                    raise ValueError("check() needs `features` (from forward_with_features) or the `model`")
                _, features = forward_with_features(model, images, self.preprocessing)
            features = np.asarray(features)
            if features.shape != (len(images), self.models["features"].scale.shape[0]):
                raise ValueError(f"features must be (N, {self.models['features'].scale.shape[0]}), got {features.shape}")
            out["features"] = self.models["features"].distance(_feature_transform(features))
        if colourfulness is not None:
            colour = np.asarray(colourfulness, dtype=np.float64).reshape(-1)
            if len(colour) != len(images):
                raise ValueError(f"got {len(colour)} colourfulness values for {len(images)} images")
            out["colour"] = colour
        return out

    def scores(self, components: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The combined score (largest ratio) and the per-signal ratios."""
        ratios = {k: np.asarray(v, dtype=np.float64) / self.references[k] for k, v in components.items()}
        return np.max(np.stack(list(ratios.values())), 0), ratios

    def flip_gain(self, stats: np.ndarray, image_ratio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """From each image's `image_statistics` and `image` ratio: the `image` ratio of its more typical flip
        (180-degree rotation or vertical flip), and how much lower that is than the image's own."""
        n, cells = len(stats), _LAYOUT * _LAYOUT
        layout = stats[:, -cells:].reshape(n, _LAYOUT, _LAYOUT)
        # the global statistics (left-right symmetry included) are the same for the flipped image
        turned = np.min([self.models["image"].distance(np.concatenate([stats[:, :-cells], flip.reshape(n, cells)], 1))
                         for flip in (layout[:, ::-1, ::-1], layout[:, ::-1, :])], 0) / self.references["image"]
        return image_ratio - turned, turned

    def upside_down(self, stats: np.ndarray, image_ratio: np.ndarray) -> np.ndarray:
        """Whether each image's more typical flip would pass the image check and beats it by more than
        UPSIDE_DOWN_GAIN (see `flip_gain` for the arguments)."""
        gain, turned = self.flip_gain(stats, image_ratio)
        return (turned <= self.threshold) & (gain > UPSIDE_DOWN_GAIN)

    def check(
        self,
        images: np.ndarray,
        *,
        features: np.ndarray | None = None,
        model: nn.Module | None = None,
        colourfulness: Sequence[float] | np.ndarray | None = None,
        grey_levels: Sequence[int] | np.ndarray | None = None,
        two_tone: Sequence[float] | np.ndarray | None = None,
    ) -> list[OODResult]:
        """One verdict per image of the (N, S, S) uint8 batch; see the module docstring for the arguments
        (`grey_levels`: of each decoded file before resizing, `pneumoscan.data.preprocess.load_image_with_levels`;
        `two_tone`: `two_tone_share` of each file)."""
        images = np.asarray(images)
        if len(images) == 0:
            return []
        levels = None if grey_levels is None else np.asarray(grey_levels, dtype=np.int64).reshape(-1)
        if levels is not None and len(levels) != len(images):
            raise ValueError(f"got {len(levels)} grey level counts for {len(images)} images")
        tones = None if two_tone is None else np.asarray(two_tone, dtype=np.float64).reshape(-1)
        if tones is not None and len(tones) != len(images):
            raise ValueError(f"got {len(tones)} two-tone shares for {len(images)} images")
        stats = self._statistics(images)
        score, ratios = self.scores(self._components(images, stats, features, model, colourfulness))
        flipped = self.upside_down(stats, ratios["image"])
        spread = _spread(images)
        results = []
        for i, value in enumerate(score):
            parts = {k: round(float(v[i]), 4) for k, v in ratios.items()}
            passed = bool(value <= self.threshold)
            few_levels = levels is not None and levels[i] <= MAX_GREY_LEVELS
            two_tones = tones is not None and tones[i] > TWO_TONE_SHARE
            if (not passed or few_levels or two_tones) and spread[i] < BLANK_SPREAD:
                refused_by, reason = "blank", _BLANK
            elif few_levels:
                refused_by, reason = "grey_levels", grey_levels_reason(int(levels[i]))
            elif two_tones:
                refused_by, reason = "two_tone", two_tone_reason(float(tones[i]))
            elif flipped[i]:
                refused_by, reason = "upside_down", _UPSIDE_DOWN
            elif not passed:
                refused_by = max(parts, key=parts.__getitem__)
                reason = _REASONS[refused_by]
            else:
                refused_by = reason = None
            results.append(OODResult(refused_by is None, float(value), self.threshold, reason, parts, refused_by))
        return results

    def save(self, path: str | os.PathLike) -> Path:
        """Write tensors + JSON metadata as safetensors, atomically."""
        from safetensors.numpy import save_file

        path = Path(path)
        tensors = {}
        for name, g in self.models.items():
            tensors.update({f"{name}.centers": g.centers, f"{name}.scale": g.scale, f"{name}.precision": g.precision})
        def write(tmp: Path) -> None:
            try:
                save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()}, str(tmp),
                          metadata={_META_KEY: json.dumps(self.meta, sort_keys=True)})
            except Exception as err:  # safetensors reports I/O failures as its own error type, naming the temp file
                reason = re.sub(r'\s*at path "[^"]*"', "", " ".join(str(err).split()))
                raise InputError(f"{path}: cannot write the guard ({reason}); choose a writable --out") from None

        # readable like model.safetensors (e.g. by a service user), not safetensors' 0600
        return atomic_write(path, write, mode=0o644)

    def save_for(self, model: str | os.PathLike) -> Path:
        """Save as the guard of the artifact `model`, which must hold the weights this guard was fitted on
        (a copy with another threshold): keyed to that file and written beside it."""
        self.meta = {**self.meta, "model_sha256": file_sha256(resolve_model_path(model))}
        return self.save(guard_path(model))

    @classmethod
    def read(cls, path: str | os.PathLike) -> "OODGuard":
        """Load a guard file (no pickle); InputError when it is not one."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as handle:
                header = (handle.metadata() or {}).get(_META_KEY)
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}
            if header is None:
                raise ValueError("no guard metadata")
            meta = json.loads(header)
            if meta.get("format") != GUARD_FORMAT:
                raise ValueError(f"guard format {meta.get('format')}, this pneumoscan reads {GUARD_FORMAT}")
            guard = cls(meta, tensors)
            if "image" not in guard.models or not set(guard.models) <= set(guard.references):
                raise ValueError("incomplete guard")
            return guard
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            reason = " ".join(str(err).split())[:120] or type(err).__name__
            raise InputError(
                f"{path}: not a usable pneumoscan guard file ({reason}); run `pneumoscan fit-guard` again") from None


def is_guard_file(path: str | os.PathLike) -> bool:
    """Whether PATH is a guard file of any pneumoscan version (its metadata carries the guard's key)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return _META_KEY in (handle.metadata() or {})
    except Exception:  # noqa: BLE001 - safetensors raises its own error types
        return False


def load_guard(model: str | os.PathLike | None) -> OODGuard | None:
    """The guard fitted for this model artifact, or None when there is none; InputError when it is stale."""
    model_path = resolve_model_path(model)
    path = guard_path(model_path)
    if not path.is_file():
        return None
    guard = OODGuard.read(path)
    if guard.meta.get("model_sha256") != file_sha256(model_path):
        raise InputError(f"{path}: guard was fitted for a different version of {model_path.name}; "
                         f"run `pneumoscan fit-guard --model {model_path} --data TRAINING_DATA` again, or delete "
                         f"{path.name} to use the model without a guard")
    return guard


# --------------------------------------------------------------------------- fitting


def _fit_samples(data: str | os.PathLike | Sequence[Any]) -> list[Any]:
    from pneumoscan.data.layout import discover

    if isinstance(data, (str, os.PathLike)):
        found = discover(data)
        for split in ("train", "all"):
            if split in found:
                return found[split]
        raise InputError(f"{data}: no train/ split to fit the guard on (the test split must not be used)")
    return list(data)


def fit_guard(
    model: str | os.PathLike | None,
    data: str | os.PathLike | Sequence[Any],
    *,
    out: str | os.PathLike | None = None,
    max_images: int | None = None,
    max_false_rejection: float = 0.01,
    folds: int = 5,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
) -> Path:
    """Fit the guard of `model` on training X-rays (a data folder's train/ split, or `Sample`s).

    Each signal's reference is its 99th percentile under `folds`-fold cross-fitting (every image
    scored by a Gaussian fitted without it); the threshold rejects `max_false_rejection / 2` of them.
    Writes `out` (default: beside the model) and returns its path.
    """
    from pneumoscan.artifact import load_artifact
    from pneumoscan.data.cache import load_image_set

    if not 0.0 < max_false_rejection < 0.5:
        raise InputError(f"--max-false-rejection {max_false_rejection}: must be above 0 and below 0.5")
    if max_images is not None and max_images < 1:
        raise InputError(f"--max-images {max_images}: must be at least 1")
    model_path = resolve_model_path(model)
    net, meta = load_artifact(model_path)
    samples = _fit_samples(data)
    rng = np.random.default_rng(seed)
    if max_images is not None and len(samples) > max_images:
        samples = [samples[i] for i in sorted(rng.permutation(len(samples))[:max_images])]
    image_set = load_image_set(samples, meta.image_size, Path(cache_dir) if cache_dir else None, desc="decoding guard")
    colour = colourfulness_of([s.path for s in image_set.samples])
    tones = two_tone_share_of([s.path for s in image_set.samples])
    # a colour, blank or black-and-white file among the training X-rays must not teach the guard to pass such images
    spread = _spread(np.asarray(image_set.images))
    levels = np.asarray(image_set.levels if image_set.levels is not None else [256] * len(image_set.samples))
    left_out = [f"{s.path}: " + (_REASONS["colour"] if c > COLOUR_REFERENCE else _BLANK if v < BLANK_SPREAD
                                 else grey_levels_reason(int(n)) if n <= MAX_GREY_LEVELS else two_tone_reason(t))
                for s, c, v, n, t in zip(image_set.samples, colour, spread, levels, tones)
                if c > COLOUR_REFERENCE or v < BLANK_SPREAD or n <= MAX_GREY_LEVELS or t > TWO_TONE_SHARE]
    keep = ((colour <= COLOUR_REFERENCE) & (spread >= BLANK_SPREAD) & (levels > MAX_GREY_LEVELS)
            & (tones <= TWO_TONE_SHARE))
    images, colour, labels = np.asarray(image_set.images)[keep], colour[keep], image_set.labels[keep]
    n = len(images)
    if n < 5 * folds:
        raise InputError(f"only {n} readable grayscale training images; the guard needs at least {5 * folds}")
    _, feats = forward_with_features(net, images, meta.preprocessing, batch_size=batch_size)
    signals = {"image": image_statistics(images), "features": _feature_transform(feats)}
    groups = {"image": None, "features": labels}
    per_dim = {"image": True, "features": False}  # statistics have mixed units; features share one
    fold = rng.permutation(n) % folds
    held_out = {k: np.empty(n) for k in signals}
    for f in range(folds):
        test = fold == f
        for name, x in signals.items():
            g = groups[name]
            fitted = _Gaussian.fit(x[~test], None if g is None else g[~test], per_dim=per_dim[name])
            held_out[name][test] = fitted.distance(x[test])
    references = {k: float(np.quantile(v, 0.99)) for k, v in held_out.items()}
    references["colour"] = max(float(np.quantile(colour, 0.99)), COLOUR_REFERENCE)
    held_out["colour"] = colour
    score = np.max(np.stack([held_out[k] / references[k] for k in held_out]), 0)
    alpha = max_false_rejection / 2
    rank = min(n, int(np.ceil((n + 1) * (1 - alpha))))  # conformal quantile: P(new score > t) <= alpha
    threshold = float(np.sort(score)[rank - 1])
    guard_meta = {
        "format": GUARD_FORMAT, "version": __version__, "model_sha256": file_sha256(model_path),
        "model_name": meta.model_name, "image_size": meta.image_size, **asdict(meta.preprocessing),
        "feature_dim": int(feats.shape[1]), "threshold": threshold, "references": references,
        "max_false_rejection": max_false_rejection, "folds": folds, "seed": seed, "n_images": n,
        "skipped": image_set.skipped, "left_out": left_out,
        "held_out_rejection_rate": float((score > threshold).mean()),
        "held_out_rejection_by_signal": {k: float((held_out[k] / references[k] > threshold).mean()) for k in held_out},
    }
    models = {name: _Gaussian.fit(x, groups[name], per_dim=per_dim[name]) for name, x in signals.items()}
    guard = OODGuard(guard_meta, {f"{name}.{part}": getattr(g, part) for name, g in models.items()
                                  for part in ("centers", "scale", "precision")})
    return guard.save(out if out is not None else guard_path(model_path))
