"""`fit_guard`: fit a model's guard on its training X-rays (never the test split)."""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pneumoscan import __version__
from pneumoscan.artifact import file_sha256, resolve_model_path
from pneumoscan.data.decode import view_reason
from pneumoscan.data.layout import check_out_of_data
from pneumoscan.errors import InputError, check_seed
from pneumoscan.inference.ood.cues import (
    BLANK_SPREAD,
    COLOUR_REFERENCE,
    DITHER_ENERGY,
    MAX_GREY_LEVELS,
    PEAK_EXCESS,
    TWO_TONE_SHARE,
    image_statistics,
    pixel_spread,
)
from pneumoscan.inference.ood.features import feature_transform, forward_with_features
from pneumoscan.inference.ood.gaussian import Gaussian
from pneumoscan.inference.ood.guard import (
    BLANK_REASON,
    GUARD_FORMAT,
    REASONS,
    OODGuard,
    check_uninterrupted,
    dithered_reason,
    grey_levels_reason,
    guard_path,
    posterised_reason,
    two_tone_reason,
)


def _fit_samples(data: str | os.PathLike | Sequence[Any]) -> tuple[list[Any], list[str]]:
    """The training films to fit on, and the refusals of those in a format not read (`set_aside_unread`: kept out of
    the --max-images draw, reported skipped)."""
    from pneumoscan.data.formats import set_aside_unread
    from pneumoscan.data.layout import discover
    from pneumoscan.data.patients import REPORTING_SPLITS

    if isinstance(data, (str, os.PathLike)):
        found = discover(data, REPORTING_SPLITS)  # test/'s files listed by name, none opened
        for split in ("train", "all"):
            if split in found:  # only this split's files are opened: never test/'s
                kept, unread, _ = set_aside_unread({split: found[split]})
                return kept[split], unread[split]
        raise InputError(f"{data}: no train/ split to fit the guard on (the test split must not be used)")
    return list(data), []


def _unfit_reason(colour: float, spread: float, levels: int, tone: float, dither: float, dither_cut: float,
                  view: str | None, peaks: float = 0.0) -> str | None:
    """Why a training file is left out of the fit (the guard or its view rule refuses its like: blank, colour, black
    and white, dithered above `dither_cut`, posterised (`peaks`: its peak excess), or a DICOM of a view other than plain frontal; the guard's order),
    or None for a film to fit on."""
    if spread < BLANK_SPREAD:
        return BLANK_REASON
    if colour > COLOUR_REFERENCE:
        return REASONS["colour"]
    if levels <= MAX_GREY_LEVELS:
        return grey_levels_reason(levels)
    if tone > TWO_TONE_SHARE:
        return two_tone_reason(tone)
    if dither > dither_cut:
        return dithered_reason(dither, dither_cut)
    if peaks > PEAK_EXCESS:
        return posterised_reason(peaks)
    return None if view is None else view_reason(view)


def chunked_statistics(images: np.ndarray, chunk: int = 256) -> np.ndarray:
    """`image_statistics` of `chunk` images at a time under a 'guard statistics' bar on a terminal: the same rows,
    with the temporaries of one chunk (all 5,216 train films at once took several seconds and gigabytes)."""
    from pneumoscan.progress import progress_bar

    parts = []
    with progress_bar(total=len(images), desc="guard statistics", unit="img") as bar:
        for start in range(0, len(images), chunk):
            parts.append(image_statistics(images[start:start + chunk]))
            bar.update(len(parts[-1]))
    return np.concatenate(parts) if parts else image_statistics(images)


def fitted_dither_cut(energies: np.ndarray) -> float:
    """The dither energy above which a guard fitted on films of these `energies` refuses a file: `DITHER_ENERGY`,
    or 4 times the median of the files the rule measures when they are grainier (NaN, a file it does not apply to,
    does not count: a 16-bit PNG or TIFF, a DICOM, an image under `DITHER_MIN_SIDE` px). The median, as a few
    dithered files among them must not raise it; the 5,216 train films span 1.9 times theirs."""
    energies = np.asarray(energies, dtype=np.float64)
    energies = energies[np.isfinite(energies)]
    return max(DITHER_ENERGY, 4 * float(np.median(energies))) if len(energies) else DITHER_ENERGY


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
    check_seed(seed)
    if max_images is not None and max_images < 1:
        raise InputError(f"--max-images {max_images}: must be at least 1")
    if max_images is not None and max_images < 5 * folds:
        raise InputError(f"--max-images {max_images}: the guard is fitted on at least {5 * folds} images; give "
                         f"{5 * folds} or more, or leave it out to fit on every training image")
    model_path = resolve_model_path(model)
    # the resume that finishes such a run puts the earlier model back: a guard fitted now would be stale at once
    check_uninterrupted(model_path)
    target = Path(out) if out is not None else guard_path(model_path)
    if isinstance(data, (str, os.PathLike)):  # written among the films, it would be read as one of them
        check_out_of_data(target, data, target.parent)
    net, meta = load_artifact(model_path)
    samples, unread = _fit_samples(data)
    rng = np.random.default_rng(seed)
    if max_images is not None and len(samples) > max_images:
        samples = [samples[i] for i in sorted(rng.permutation(len(samples))[:max_images])]
    image_set = load_image_set(samples, meta.image_size, Path(cache_dir) if cache_dir else None, desc="decoding guard")
    colour, tones = np.asarray(image_set.colours), np.asarray(image_set.tones)
    dithers = np.asarray(image_set.dithers if image_set.dithers is not None else [np.nan] * len(image_set.samples))
    peaks = np.asarray(image_set.peaks if image_set.peaks is not None else [0.0] * len(image_set.samples))
    # a colour, blank, black-and-white, dithered, posterised or lateral file among the training X-rays must not teach the guard to
    # pass such images
    spread = pixel_spread(np.asarray(image_set.images))
    levels = np.asarray(image_set.levels if image_set.levels is not None else [256] * len(image_set.samples))
    views = image_set.views if image_set.views is not None else [None] * len(image_set.samples)
    # the films the other rules pass set the dither cut: a NaN grain and no view refuse nothing
    films = np.array([_unfit_reason(c, v, int(n), t, np.nan, DITHER_ENERGY, None) is None
                      for c, v, n, t in zip(colour, spread, levels, tones)], dtype=bool)
    dither_cut = fitted_dither_cut(dithers[films])
    reasons = [_unfit_reason(c, v, int(n), t, d, dither_cut, view, p)
               for c, v, n, t, d, view, p in zip(colour, spread, levels, tones, dithers, views, peaks)]
    left_out = [f"{s.path}: {why}" for s, why in zip(image_set.samples, reasons) if why is not None]
    keep = np.array([why is None for why in reasons], dtype=bool)
    images, colour, labels = np.asarray(image_set.images)[keep], colour[keep], image_set.labels[keep]
    n = len(images)
    if n < 5 * folds:
        where = f"{data}: " if isinstance(data, (str, os.PathLike)) else ""
        raise InputError(f"{where}only {n} readable grayscale training images (of {len(samples)} used); the guard "
                         f"needs at least {5 * folds}: add training films")
    _, feats = forward_with_features(net, images, meta.preprocessing, batch_size=batch_size,
                                     progress="guard features")
    signals = {"image": chunked_statistics(images), "features": feature_transform(feats)}
    groups = {"image": None, "features": labels}
    per_dim = {"image": True, "features": False}  # statistics have mixed units; features share one
    fold = rng.permutation(n) % folds
    held_out = {k: np.empty(n) for k in signals}
    for f in range(folds):
        test = fold == f
        for name, x in signals.items():
            g = groups[name]
            fitted = Gaussian.fit(x[~test], None if g is None else g[~test], per_dim=per_dim[name])
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
        "dither_cut": dither_cut,
        "skipped": sorted(image_set.skipped + unread), "left_out": left_out,
        "held_out_rejection_rate": float((score > threshold).mean()),
        "held_out_rejection_by_signal": {k: float((held_out[k] / references[k] > threshold).mean()) for k in held_out},
    }
    models = {name: Gaussian.fit(x, groups[name], per_dim=per_dim[name]) for name, x in signals.items()}
    guard = OODGuard(guard_meta, {f"{name}.{part}": getattr(g, part) for name, g in models.items()
                                  for part in ("centers", "scale", "precision")})
    return guard.save(target)
