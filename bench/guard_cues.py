"""Measure the guard's two fixed rules on the train split only (test/ is never read).

* Grey levels: every train film decoded as stored, and re-encoded as the originals users send (8-bit PNG,
  16-bit PNG/TIFF, 12-bit DICOM plain, MONOCHROME1 and windowed, at twice the size): how many distinct grey
  levels the decoder gives (the rule refuses at most `MAX_GREY_LEVELS`); dithered films for contrast.
* Upside down: the flip gain (`OODGuard.flip_gain`) of the train films (negatives) and of their 180-degree
  rotations and vertical flips (positives), with the guard's stored image model (in-sample: it was fitted on
  these films) and with 5-fold cross-fitted image models (each film scored by a model fitted without it, as a
  new film would be); false refusals and detections for a range of cuts, then the whole guard on the films and
  their flips.

    PYTHONPATH=src .venv/bin/python bench/guard_cues.py [--data ../shared/data/chest_xray] [--model RUN]

Writes bench/results/guard_cues.json and bench/results/guard_cues.md.
"""
from __future__ import annotations

import argparse
import copy
import io
import json
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from pneumoscan.artifact import load_artifact, resolve_model_path
from pneumoscan.data.cache import load_image_set
from pneumoscan.data.layout import discover
from pneumoscan.data.preprocess import load_image_with_levels
from pneumoscan.inference.ood import (
    MAX_GREY_LEVELS,
    UPSIDE_DOWN_GAIN,
    Gaussian,
    OODGuard,
    colourfulness_of,
    forward_with_features,
    image_statistics,
    load_guard,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chest_xray"
CUTS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


# --------------------------------------------------------------------------- grey levels


def _encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def _dicom(pixels: np.ndarray, photometric: str = "MONOCHROME2", window: tuple[float, float] | None = None) -> bytes:
    """A 12-bit single-frame DX DICOM file holding `pixels`, optionally with a window."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "DX"
    ds.set_pixel_data(pixels, photometric, 12, generate_instance_uid=False)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _originals(path: Path, seed: int) -> dict[str, bytes]:
    """One train film as the originals a user may send: twice the size, 12- or 16-bit with quantum noise."""
    rng = np.random.default_rng(seed)
    with Image.open(path) as im:
        gray = im.convert("L")
    big = np.asarray(gray.resize((2 * gray.width, 2 * gray.height), Image.Resampling.BICUBIC).convert("F"))
    film12 = np.clip(big * 16 + rng.normal(0, 4, big.shape), 0, 4095).astype(np.uint16)
    film16 = np.clip(big * 257 + rng.normal(0, 60, big.shape), 0, 65535).astype(np.uint16)
    lo, hi = np.percentile(film12, [5, 95])
    return {
        "8-bit PNG": _encode(gray, "PNG"),
        "16-bit PNG, 12-bit values, 2x size": _encode(Image.fromarray(film12), "PNG"),
        "16-bit PNG, full range, 2x size": _encode(Image.fromarray(film16), "PNG"),
        "16-bit TIFF, 12-bit values, 2x size": _encode(Image.fromarray(film12), "TIFF"),
        "12-bit DICOM, 2x size": _dicom(film12),
        "12-bit DICOM MONOCHROME1, 2x size": _dicom(4095 - film12, "MONOCHROME1"),
        "12-bit DICOM, window 5th-95th percentile, 2x size": _dicom(film12, window=((lo + hi) / 2, hi - lo)),
    }


def _dithered(path: Path) -> dict[str, bytes]:
    with Image.open(path) as im:
        big = im.convert("L").resize((896, 896), Image.Resampling.BICUBIC)
    four = big.convert("RGB").quantize(4, dither=Image.Dither.FLOYDSTEINBERG).convert("L")
    return {"1-bit dithered PNG, 896 px": _encode(big.convert("1"), "PNG"),
            "2-bit dithered PNG, 896 px": _encode(four, "PNG")}


def grey_levels_table(paths: list[Path], size: int, dithered_every: int) -> list[dict[str, object]]:
    """Distinct grey levels the decoder gives, per encoding: min, 1st percentile, median, and how many the rule
    refuses."""

    def levels(data: bytes | Path) -> int:
        return load_image_with_levels(data, size)[1]

    def one(i: int) -> dict[str, int]:
        row = {"as stored (JPEG, 224 px)": levels(paths[i])}
        row.update({k: levels(v) for k, v in _originals(paths[i], i).items()})
        if i % dithered_every == 0:
            row.update({k: levels(v) for k, v in _dithered(paths[i]).items()})
        return row

    with ThreadPoolExecutor() as pool:
        per_film = list(pool.map(one, range(len(paths))))
    table = []
    for name in per_film[0]:
        values = np.array([row[name] for row in per_film if name in row])
        table.append({"encoding": name, "n": len(values), "min": int(values.min()),
                      "p1": float(np.quantile(values, 0.01)), "median": float(np.median(values)),
                      "refused": int((values <= MAX_GREY_LEVELS).sum())})
    return table


# --------------------------------------------------------------------------- upside down


Flip = Callable[[np.ndarray], np.ndarray]
FLIPS: dict[str, Flip] = {"as stored": lambda x: x, "rotated 180": lambda x: x[:, ::-1, ::-1],
                          "vertical flip": lambda x: x[:, ::-1, :]}


def flip_gains(guard: OODGuard, stats: dict[str, np.ndarray], folds: int, seed: int
               ) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """(gain, flipped ratio, own image ratio) per orientation, with the stored image model ("in-sample") and with
    image models fitted without each film ("cross-fitted")."""

    def gains(g: OODGuard, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ratio = g.models["image"].distance(s) / g.references["image"]
        return (*g.flip_gain(s, ratio), ratio)

    out = {"in-sample": {k: gains(guard, s) for k, s in stats.items()}}
    n = len(stats["as stored"])
    fold = np.random.default_rng(seed).permutation(n) % folds
    crossed = {k: tuple(np.empty(n) for _ in range(3)) for k in stats}
    for f in range(folds):
        test = fold == f
        held = copy.copy(guard)
        held.models = {**guard.models, "image": Gaussian.fit(stats["as stored"][~test])}
        for k, s in stats.items():
            for target, values in zip(crossed[k], gains(held, s[test])):
                target[test] = values
    out["cross-fitted"] = crossed
    return out


def cut_table(gains: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]], threshold: float
              ) -> list[dict[str, object]]:
    rows = []
    for model, by_flip in gains.items():
        for cut in CUTS:
            fired = {k: (turned <= threshold) & (gain > cut) for k, (gain, turned, _) in by_flip.items()}
            films = fired["as stored"]
            row = {"image model": model, "cut": cut, "false refusals": int(films.sum()),
                   "false refusal rate": float(films.mean())}
            for k in ("rotated 180", "vertical flip"):
                own = by_flip[k][2]
                row[f"{k} detected"] = float(fired[k].mean())
                row[f"{k} detected, image check passed"] = float(fired[k][own <= threshold].mean())
            rows.append(row)
    return rows


def whole_guard(guard: OODGuard, model_path: Path, images: np.ndarray, colour: np.ndarray) -> dict[str, dict]:
    """The whole shipped check on the films and their flips: refused before the rule (score) and after, by reason."""
    model, meta = load_artifact(model_path)
    out = {}
    for name, flip in FLIPS.items():
        x = np.ascontiguousarray(flip(images))
        _, feats = forward_with_features(model, x, meta.preprocessing, batch_size=128)
        results = guard.check(x, features=feats, colourfulness=colour)
        out[name] = {"n": len(x), "refused_by_score": int(sum(r.score > r.threshold for r in results)),
                     "refused": int(sum(not r.in_distribution for r in results)),
                     "by_reason": dict(Counter(r.refused_by for r in results if not r.in_distribution))}
    return out


# --------------------------------------------------------------------------- report


def markdown(r: dict) -> str:
    lines = ["# The guard's fixed rules, measured on train films only", "", f"`{r['command']}`", "",
             f"{r['n_train']} train films; guard `{r['guard']}` (threshold {r['threshold']:.3f}); "
             f"rules: at most {r['max_grey_levels']} grey levels, upside-down gain above {r['upside_down_gain']}.", "",
             "## Grey levels after decoding (the rule refuses at most "
             f"{r['max_grey_levels']})", "",
             "| encoding | films | min | 1st percentile | median | refused |", "|---|---|---|---|---|---|"]
    lines += [f"| {t['encoding']} | {t['n']} | {t['min']} | {t['p1']:.0f} | {t['median']:.0f} | {t['refused']} |"
              for t in r["grey_levels"]]
    lines += ["", "## Upside down: flip gain of the films (false refusals) and of their flips (detections)", "",
              "Gain: the film's image ratio minus that of its more typical flip (180-degree rotation or vertical "
              "flip), which must also pass the image check (ratio <= threshold). In-sample: the guard's stored "
              "image model, fitted on these films; cross-fitted: 5 folds, each film scored by a model fitted "
              "without it. Quantiles of the films' gain: " + "; ".join(
                  f"{k}: 99th {v['p99']:.3f}, 99.9th {v['p999']:.3f}, max {v['max']:.3f}"
                  for k, v in r["film_gain_quantiles"].items()) + ".", "",
              "| image model | cut | false refusals | rate | rotated 180 detected | (image check passed) "
              "| vertical flip detected | (image check passed) |", "|---|---|---|---|---|---|---|---|"]
    for c in r["cuts"]:
        lines.append(f"| {c['image model']} | {c['cut']} | {c['false refusals']} | {c['false refusal rate']:.2%} | "
                     f"{c['rotated 180 detected']:.2%} | {c['rotated 180 detected, image check passed']:.2%} | "
                     f"{c['vertical flip detected']:.2%} | {c['vertical flip detected, image check passed']:.2%} |")
    lines += ["", "## The whole guard (in-sample: the shipped guard was fitted on these films)", "",
              "| input | n | refused before the rule (score) | refused now | by reason |", "|---|---|---|---|---|"]
    for name, w in r["whole_guard"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(w["by_reason"].items()))
        lines.append(f"| {name} | {w['n']} | {w['refused_by_score']} | {w['refused']} | {reasons} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="data folder with train/ (test/ is not read)")
    parser.add_argument("--model", help="run folder or artifact with a guard (default: the shipped model)")
    parser.add_argument("--dithered-every", type=int, default=20, help="dither every Nth film for contrast")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="results folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    model_path = resolve_model_path(args.model)
    guard = load_guard(model_path)
    if guard is None:
        parser.error(f"{model_path} has no guard; run `pneumoscan fit-guard` first")
    started = time.time()
    samples = discover(args.data)["train"]
    image_set = load_image_set(samples, guard.image_size, desc="decoding train")
    images = np.asarray(image_set.images)
    paths = [s.path for s in image_set.samples]
    stats = {k: image_statistics(np.ascontiguousarray(flip(images))) for k, flip in FLIPS.items()}
    gains = flip_gains(guard, stats, folds=5, seed=args.seed)
    result = {
        "command": "PYTHONPATH=src .venv/bin/python bench/guard_cues.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "guard": str(model_path), "threshold": guard.threshold, "n_train": len(paths),
        "max_grey_levels": MAX_GREY_LEVELS, "upside_down_gain": UPSIDE_DOWN_GAIN,
        "film_gain_quantiles": {model: {"p99": float(np.quantile(g["as stored"][0], 0.99)),
                                        "p999": float(np.quantile(g["as stored"][0], 0.999)),
                                        "max": float(g["as stored"][0].max())} for model, g in gains.items()},
        "cuts": cut_table(gains, guard.threshold),
        "whole_guard": whole_guard(guard, model_path, images, colourfulness_of(paths)),
        "grey_levels": grey_levels_table(paths, guard.image_size, args.dithered_every),
    }
    result["seconds"] = round(time.time() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "guard_cues.json").write_text(json.dumps(result, indent=2))
    (out / "guard_cues.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
