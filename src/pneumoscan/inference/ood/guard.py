"""The fitted guard: its verdict on a batch (`OODGuard.check`), its file (safetensors, no pickle) and where it lives."""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from pneumoscan.artifact import (
    GUARD_META_KEY, ArtifactMeta, file_sha256, finish_command, is_finite_number, pixel_count_problem,
    is_shipped, read_meta, resolve_model_path,
)
from pneumoscan.data.preprocess import Preprocessing
from pneumoscan.errors import InputError
from pneumoscan.inference.ood.cues import (
    BLANK_SPREAD,
    DITHER_ENERGY,
    MAX_GREY_LEVELS,
    PEAK_EXCESS,
    TWO_TONE_SHARE,
    UPSIDE_DOWN_GAIN,
    flipped_statistics,
    image_statistics,
    pixel_spread,
)
from pneumoscan.inference.ood.features import feature_transform, forward_with_features
from pneumoscan.inference.ood.gaussian import Gaussian
from pneumoscan.outputs import atomic_write, interrupted_write, os_error_of

GUARD_FORMAT = 1
if TYPE_CHECKING:
    from torch import nn

_META_KEY = GUARD_META_KEY
# The score's signals are quantile limits fitted on the training X-rays, so they also refuse a few real chest X-rays
# (the shipped guard 17 of its 5,216 train films): their reasons say what was measured, not "not a chest X-ray".
REASONS = {
    "colour": "colour image (chest X-rays are grayscale)",
    "image": "unlike the chest X-rays this model was trained on (image statistics: layout, contrast or texture)",
    "features": "unlike the chest X-rays this model was trained on (the features the model extracts from it)",
}


def unlike_reason(refused_by: str, shipped: bool) -> str:
    """The reason of a film refused as unlike the training X-rays by `refused_by` ("image" or "features"), with what to
    do: the films the model was trained on are pediatric only for the shipped model (its card says so); a site's own
    model may have been trained on adults'."""
    films = "frontal pediatric chest X-ray" if shipped else "frontal chest X-ray"
    return f"{REASONS[refused_by]}; if it is a {films}, read it without the model"
BLANK_REASON = "blank or nearly constant image"
_UPSIDE_DOWN = "the image looks upside down; rotate it and send it again"
# What a refusal means, by its cause (`refused_by`): no radiograph was sent ("not a chest X-ray", only these say it);
# a chest X-ray the model cannot read as sent (what to send instead); or unlike the training X-rays, as a few real
# chest X-rays are (read it without the model). The service sends it with each refusal (`refusal_kind`).
REFUSAL_KINDS = {"blank": "not_a_chest_xray", "colour": "not_a_chest_xray", "grey_levels": "as_sent",
                 "two_tone": "as_sent", "dithered": "as_sent", "posterised": "as_sent", "upside_down": "as_sent", "view": "as_sent",
                 "image": "unlike", "features": "unlike"}
NOT_A_CHEST_XRAY = "not a chest X-ray: "  # what the message of a refusal of kind not_a_chest_xray starts with


def refusal_kind(refused_by: str | None) -> str | None:
    """What a refusal by `refused_by` means (`REFUSAL_KINDS`); None for no refusal."""
    return None if refused_by is None else REFUSAL_KINDS.get(refused_by, "unlike")


def refusal_cause(message: str | None, refused_by: str | None) -> str | None:
    """A refusal's message (`OODResult.message`) less the "not a chest X-ray: " its kind puts first: what the guard
    found, for a reader who is told the kind apart."""
    if message is None or refusal_kind(refused_by) != "not_a_chest_xray":
        return message
    return message.removeprefix(NOT_A_CHEST_XRAY)


@dataclass(frozen=True)
class OODResult:
    """The guard's verdict on one image; `components` are ratios to the 99th percentile of training X-rays."""

    in_distribution: bool
    score: float
    threshold: float
    reason: str | None = None
    components: dict[str, float] = field(default_factory=dict)
    # what refused the image, the first that holds: "blank", "colour" (its ratio above the threshold), "grey_levels",
    # "two_tone", "dithered", "posterised", "upside_down", else the largest of `components` ("image" or "features")
    refused_by: str | None = None

    @property
    def message(self) -> str:
        if self.in_distribution:
            return "looks like a chest X-ray"
        return f"{NOT_A_CHEST_XRAY}{self.reason}" if refusal_kind(self.refused_by) == "not_a_chest_xray" \
            else str(self.reason)

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


def dithered_reason(energy: float, cut: float = DITHER_ENERGY) -> str:
    """Why a JPEG with this dither energy is refused by a guard refusing above `cut`, and what to send instead: both
    with one decimal, or as many more as tell them apart (12.04 above 12 is not "12.0 ... above 12.0")."""
    digits = next((d for d in range(1, 4) if f"{energy:.{d}f}" != f"{cut:.{d}f}"), 4)
    return (f"dithered or grainy image: pixel-to-pixel grain of {energy:.{digits}f} grey levels (the guard refuses "
            f"above {cut:.{digits}f}), as in a printed-and-scanned, GIF or palette copy; send the original radiograph")


def posterised_reason(excess: float) -> str:
    """Why a JPEG with this peak excess (`peak_excess`) is refused, and what to send instead."""
    percent = int(excess * 100)  # floored, as the cut is PEAK_EXCESS = 15 %: 15.9 % shows as above it
    return (f"posterised image: {percent}% of its pixels in a few flat grey tones (the guard refuses above "
            f"{PEAK_EXCESS:.0%}), as in a GIF or palette copy; send the original radiograph")


def guard_path(model: str | os.PathLike | None) -> Path:
    """Where the guard of a model lives: `<artifact stem>.ood.safetensors` beside the artifact."""
    return guard_beside(resolve_model_path(model))


def guard_beside(artifact: Path) -> Path:
    """The guard file of the artifact file ARTIFACT, which need not exist yet (`set-threshold`'s new copy)."""
    return artifact.with_name(artifact.name.removesuffix(".safetensors") + ".ood.safetensors")


def no_guard_fits(model: nn.Module | None) -> str | None:
    """'no chest X-ray guard can be fitted to this model (why)' for a model the guard cannot take (no nn.Linear, as a
    plugin's may lack), said where `pneumoscan fit-guard` would otherwise be suggested; None when one can. `model`
    None: a model served from its ONNX export, which has the feature layer (the export takes it)."""
    if model is None:
        return None
    from pneumoscan.models.registry import feature_layer_problem  # imports torch, which `model` already needed

    lacks = feature_layer_problem(model)
    return f"no chest X-ray guard can be fitted to this model ({lacks})" if lacks else None


def _per_image(values: Sequence[float] | np.ndarray | None, dtype: type, n: int, what: str) -> np.ndarray | None:
    """`values`, one per image of a batch of `n`, as a flat array of `dtype`; None when not given; ValueError naming
    `what` they are when their count is not `n`."""
    if values is None:
        return None
    flat = np.asarray(values, dtype=dtype).reshape(-1)
    if len(flat) != n:
        raise ValueError(f"got {len(flat)} {what} for {n} images")
    return flat


class OODGuard:
    """A fitted guard: call `check` on the batch that is being classified."""

    def __init__(self, meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        self.meta = meta
        self.preprocessing = Preprocessing(meta["mean"], meta["std"], meta.get("equalize", False), meta.get("crop", False))
        self.threshold = float(meta["threshold"])
        self.references: dict[str, float] = {k: float(v) for k, v in meta["references"].items()}
        self.models = {name: Gaussian(tensors[f"{name}.centers"], tensors[f"{name}.scale"], tensors[f"{name}.precision"])
                       for name in ("image", "features") if f"{name}.centers" in tensors}
        self.shipped = False  # the shipped model's guard (its films are pediatric): `load_guard` knows, and sets it

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def dither_cut(self) -> float:
        """The dither energy above which a file (JPEG, 8-bit lossless) is refused: the fit's (`fitted_dither_cut`), else `DITHER_ENERGY`
        (guards fitted before the rule)."""
        return float(self.meta.get("dither_cut", DITHER_ENERGY))

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
            out["features"] = self.models["features"].distance(feature_transform(features))
        colour = _per_image(colourfulness, np.float64, len(images), "colourfulness values")
        if colour is not None:
            out["colour"] = colour
        return out

    def scores(self, components: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The combined score (largest ratio) and the per-signal ratios."""
        ratios = {k: np.asarray(v, dtype=np.float64) / self.references[k] for k, v in components.items()}
        return np.max(np.stack(list(ratios.values())), 0), ratios

    def flip_gain(self, stats: np.ndarray, image_ratio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """From each image's `image_statistics` and `image` ratio: the `image` ratio of its more typical flip
        (180-degree rotation or vertical flip), and how much lower that is than the image's own."""
        turned = np.min([self.models["image"].distance(flipped) for flipped in flipped_statistics(stats)], 0)
        turned = turned / self.references["image"]
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
        dither: Sequence[float] | np.ndarray | None = None,
        peaks: Sequence[float] | np.ndarray | None = None,
    ) -> list[OODResult]:
        """One verdict per image of the (N, S, S) uint8 batch; see the module docstring for the arguments
        (`grey_levels`: of each decoded file before resizing, `pneumoscan.data.preprocess.load_image_with_levels`;
        `two_tone`, `dither` and `peaks`: `jpeg_cues` of each file)."""
        images = np.asarray(images)
        if len(images) == 0:
            return []
        levels = _per_image(grey_levels, np.int64, len(images), "grey level counts")
        tones = _per_image(two_tone, np.float64, len(images), "two-tone shares")
        grain = _per_image(dither, np.float64, len(images), "dither energies")
        excess = _per_image(peaks, np.float64, len(images), "peak excesses")
        stats = self._statistics(images)
        score, ratios = self.scores(self._components(images, stats, features, model, colourfulness))
        flipped = self.upside_down(stats, ratios["image"])
        spread = pixel_spread(images)
        results = []
        for i, value in enumerate(score):
            parts = {k: round(float(v[i]), 4) for k, v in ratios.items()}
            passed = bool(value <= self.threshold)
            few_levels = levels is not None and levels[i] <= MAX_GREY_LEVELS
            two_tones = tones is not None and tones[i] > TWO_TONE_SHARE
            dithered = grain is not None and grain[i] > self.dither_cut
            posterised = excess is not None and excess[i] > PEAK_EXCESS
            colourful = parts.get("colour", 0.0) > self.threshold
            if (not passed or few_levels or two_tones or dithered or posterised) and spread[i] < BLANK_SPREAD:
                refused_by, reason = "blank", BLANK_REASON
            elif colourful:  # no radiograph, whatever the as-sent rules or the largest signal say
                refused_by, reason = "colour", REASONS["colour"]
            elif few_levels:
                refused_by, reason = "grey_levels", grey_levels_reason(int(levels[i]))
            elif two_tones:
                refused_by, reason = "two_tone", two_tone_reason(float(tones[i]))
            elif dithered:
                refused_by, reason = "dithered", dithered_reason(float(grain[i]), self.dither_cut)
            elif posterised:
                refused_by, reason = "posterised", posterised_reason(float(excess[i]))
            elif flipped[i]:
                refused_by, reason = "upside_down", _UPSIDE_DOWN
            elif not passed:
                refused_by = max(parts, key=parts.__getitem__)
                reason = unlike_reason(refused_by, self.shipped)
            else:
                refused_by = reason = None
            results.append(OODResult(refused_by is None, float(value), self.threshold, reason, parts, refused_by))
        return results

    def problem(self) -> str | None:
        """What makes this guard unusable (an edited file), checked when it is read rather than at the first
        prediction; None when it is usable."""
        def positive(value: Any) -> bool:
            return is_finite_number(value) and value > 0

        size = self.meta.get("image_size")
        if (size_problem := pixel_count_problem(size)) is not None:
            return f"image_size {size!r}: {size_problem}"
        for name in ("threshold", "std", *(("dither_cut",) if "dither_cut" in self.meta else ())):
            if not positive(self.meta.get(name)):
                return f"{name} {self.meta.get(name)!r}: not a finite number above 0"
        if not is_finite_number(self.meta.get("mean")):
            return f"mean {self.meta.get('mean')!r}: not a finite number"
        needed = sorted({"colour", *self.models})
        if not all(positive(self.references.get(name)) for name in needed):
            return f"references: {', '.join(needed)} must each be a number above 0"
        for name, g in self.models.items():
            shapes = (g.centers.shape, g.scale.shape, g.precision.shape)
            dim = g.centers.shape[-1]
            if g.centers.ndim != 2 or shapes[1:] != ((dim,), (dim, dim)):
                return f"{name} tensors of shapes {', '.join(map(str, shapes))}: not a Gaussian"
        statistics = image_statistics(np.zeros((1, 8, 8), np.uint8)).shape[1]
        if self.models["image"].scale.shape[0] != statistics:
            return f"image tensors of {self.models['image'].scale.shape[0]} values, not the {statistics} image statistics"
        return None

    def save(self, path: str | os.PathLike) -> Path:
        """Write tensors + JSON metadata as safetensors, atomically."""
        # readable like model.safetensors (e.g. by a service user), not safetensors' 0600
        return atomic_write(Path(path), self.write, mode=0o644)

    def write(self, tmp: Path) -> None:
        """Write tensors + JSON metadata as safetensors to the file `tmp` (for `atomic_write`, `atomic_write_all`)."""
        from safetensors.numpy import save_file

        tensors = {}
        for name, g in self.models.items():
            tensors.update({f"{name}.centers": g.centers, f"{name}.scale": g.scale, f"{name}.precision": g.precision})
        try:
            save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()}, str(tmp),
                      metadata={_META_KEY: json.dumps(self.meta, sort_keys=True)})
        except OSError as err:  # atomic_write names PATH and the fix its errno points to (a full disk: free space)
            raise OSError(err.errno, re.sub(r'\s*at path "[^"]*"', "", err.strerror or str(err))) from None
        except Exception as err:  # safetensors' own error type for I/O failures, naming the temp file
            raise os_error_of(err) from None

    def save_for(self, model: str | os.PathLike) -> Path:
        """Save as the guard of the artifact `model`, which must hold the weights this guard was fitted on
        (a copy with another threshold): keyed to that file and written beside it."""
        self.key_to(resolve_model_path(model))
        return self.save(guard_path(model))

    def key_to(self, model_file: str | os.PathLike) -> None:
        """Key this guard to the artifact file `model_file` (its SHA-256), which holds the weights it was fitted on."""
        self.meta = {**self.meta, "model_sha256": file_sha256(model_file)}

    def keyed_to(self, model_file: str | os.PathLike) -> bool:
        """Whether this guard is keyed to the artifact file `model_file` as it is now."""
        return self.meta.get("model_sha256") == file_sha256(model_file)

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
            if "image" not in guard.models:
                raise ValueError("incomplete guard")
            problem = guard.problem()
            if problem is not None:
                raise ValueError(problem)
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


def check_uninterrupted(model_path: Path, state: str = "so they may not match") -> None:
    """InputError when a run stopped (a crash or power loss) among the renames of the model file `model_path` and its
    guard, leaving their journal (`interrupted_write`): the `train --resume` that finishes it puts the earlier pair
    back first, so a guard fitted or a model read now would be undone under it; `state`: what the pair is said to
    be."""
    path = guard_beside(model_path)
    if (journal := interrupted_write([model_path, path])) is not None:
        raise InputError(f"{model_path}: a run stopped (a crash or power loss) while replacing it and its guard "
                         f"{path.name}, leaving {journal.name}, {state}; finish the run with "
                         f"{finish_command(model_path.parent)}, which puts the earlier files back first")


def load_guard(model: str | os.PathLike | None, meta: ArtifactMeta | None = None, *,
               model_sha256: str | None = None) -> OODGuard | None:
    """The guard fitted for this model artifact, or None when there is none; InputError when it is stale. `meta` and
    `model_sha256`: the artifact's header and hash when the caller holds them (a `Predictor`), so that they are not
    read again."""
    model_path = resolve_model_path(model)
    path = guard_beside(model_path)
    if not path.is_file():
        return None
    guard = OODGuard.read(path)
    meta = meta if meta is not None else read_meta(model_path)
    if guard.meta.get("model_sha256") != (model_sha256 or file_sha256(model_path)):
        check_uninterrupted(model_path, "so they do not match")  # not refitted: the run's own undoes it
        raise InputError(f"{path}: guard was fitted for a different version of {model_path.name}; "
                         f"run {meta.fit_guard_command(model_path, model_path.parent)} again, or delete "
                         f"{path.name} to use the model without a guard")
    guard.shipped = is_shipped(model_path)
    size = meta.image_size
    if guard.image_size != size:  # only by an edit: the guard is keyed to this very model file
        raise InputError(f"{path}: not a usable pneumoscan guard file (fitted for {guard.image_size} px images, its "
                         f"model takes {size} px); run `pneumoscan fit-guard` again")
    return guard

