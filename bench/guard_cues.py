"""Measure the guard's fixed rules on the train split only (test/ is never read).

* Grey levels: every train film decoded as stored, and re-encoded as the originals users send (8-bit PNG,
  16-bit PNG/TIFF, 12-bit DICOM plain, MONOCHROME1 and windowed, at twice the size): how many distinct grey
  levels the decoder gives (the rule refuses at most `MAX_GREY_LEVELS`); dithered films for contrast.
* Upside down: the flip gain (`OODGuard.flip_gain`) of the train films (negatives) and of their 180-degree
  rotations and vertical flips (positives), with the guard's stored image model (in-sample: it was fitted on
  these films) and with 5-fold cross-fitted image models (each film scored by a model fitted without it, as a
  new film would be); false refusals and detections for a range of cuts, then the whole guard on the films and
  their flips.
* Two tones: the share of pixels near black or white (`two_tone_share`) of every train film as stored and
  re-encoded as a JPEG at twice the size (quality 75 and 95): false refusals at `TWO_TONE_SHARE`; and of
  black-and-white pictures made from every Nth film (1-bit Floyd-Steinberg and ordered dithering, a plain
  threshold; 2-bit dithering for contrast) saved as JPEG at several sizes and qualities: how many the rule
  catches, and how many the whole guard passed without it (grey levels, score, upside down) and passes now.

    PYTHONPATH=src .venv/bin/python bench/guard_cues.py [--data ../shared/data/chest_xray] [--model RUN]

Writes bench/results/guard_cues.json and bench/results/guard_cues.md.
"""
from __future__ import annotations

import argparse
import copy
import io
import shlex
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from _results import write_report

from pneumoscan.artifact import load_artifact, resolve_model_path
from pneumoscan.data.cache import load_image_set
from pneumoscan.data.layout import discover
from pneumoscan.data.preprocess import load_image_with_levels
from pneumoscan.inference.ood import (
    MAX_GREY_LEVELS,
    TWO_TONE_BAND,
    TWO_TONE_MAX_PIXELS,
    TWO_TONE_SHARE,
    UPSIDE_DOWN_GAIN,
    Gaussian,
    OODGuard,
    colourfulness,
    colourfulness_of,
    forward_with_features,
    image_statistics,
    load_guard,
    two_tone_share,
    two_tone_share_of,
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


# --------------------------------------------------------------------------- two tones


def _bayer(gray: Image.Image) -> Image.Image:
    """Ordered (4 x 4 Bayer) dithering to black and white."""
    matrix = (np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]]) + 0.5) * 16
    pixels = np.asarray(gray, dtype=np.float32)
    h, w = pixels.shape
    threshold = np.tile(matrix, (h // 4 + 1, w // 4 + 1))[:h, :w]
    return Image.fromarray(np.where(pixels > threshold, 255, 0).astype(np.uint8))


PICTURES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "1-bit Floyd-Steinberg dithered": lambda g: g.convert("1").convert("L"),
    "1-bit ordered (Bayer) dithered": _bayer,
    "1-bit threshold at mid-grey": lambda g: g.point(lambda v: 255 if v > 127 else 0),
    "2-bit Floyd-Steinberg dithered (4 tones, contrast)":
        lambda g: g.convert("RGB").quantize(4, dither=Image.Dither.FLOYDSTEINBERG).convert("L"),
}
PICTURE_SIDES = (224, 448, 896, 1792)
QUALITIES = (30, 50, 75, 95)
LARGE_SIDE = 4608  # above TWO_TONE_MAX_PIXELS: measured at half size


def _summary(values: np.ndarray) -> dict[str, float]:
    return {"n": len(values), "min": float(values.min()), "median": float(np.median(values)),
            "p99": float(np.quantile(values, 0.99)), "p999": float(np.quantile(values, 0.999)),
            "max": float(values.max()), "refused": int((values > TWO_TONE_SHARE).sum())}


def two_tone_films(paths: list[Path]) -> list[dict[str, object]]:
    """`two_tone_share` of every train film as stored and as a JPEG at twice the size: the rule's false refusals."""

    def bigger(path: Path, quality: int) -> float:
        with Image.open(path) as im:
            gray = im.convert("L")
        big = gray.resize((2 * gray.width, 2 * gray.height), Image.Resampling.BICUBIC)
        return two_tone_share(_encode_jpeg(big, quality))

    rows = [{"encoding": "as stored (JPEG, 224 px)", **_summary(two_tone_share_of(paths))}]
    for quality in (75, 95):
        with ThreadPoolExecutor() as pool:
            values = np.array(list(pool.map(lambda p: bigger(p, quality), paths)))
        rows.append({"encoding": f"JPEG quality {quality}, 2x size", **_summary(values)})
    return rows


def _encode_jpeg(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def two_tone_pictures(guard: OODGuard, model_path: Path, paths: list[Path], every: int) -> list[dict[str, object]]:
    """Black-and-white pictures of every `every`th film saved as JPEG: the rule's share, what it catches, and the
    whole guard's verdict without the rule and with it."""
    model, meta = load_artifact(model_path)
    films = paths[::every]
    cells = [(kind, side, q) for kind in PICTURES for side in PICTURE_SIDES for q in QUALITIES]
    cells += [(kind, LARGE_SIDE, 75) for kind in list(PICTURES)[:3]]  # on a fifth of the films: slow to make

    def one(path: Path, kind: str, side: int, quality: int) -> tuple[np.ndarray, float, int, float]:
        with Image.open(path) as im:
            big = im.convert("L").resize((side, side), Image.Resampling.BICUBIC)
        data = _encode_jpeg(PICTURES[kind](big), quality)
        image, levels = load_image_with_levels(data, guard.image_size)
        return image, colourfulness(data), levels, two_tone_share(data)

    rows = []
    for kind, side, quality in cells:
        chosen = films[::5] if side == LARGE_SIDE else films
        with ThreadPoolExecutor() as pool:
            decoded = list(pool.map(lambda p: one(p, kind, side, quality), chosen))
        images = np.stack([d[0] for d in decoded])
        colour, levels, tones = (np.array([d[i] for d in decoded]) for i in (1, 2, 3))
        _, feats = forward_with_features(model, images, meta.preprocessing, batch_size=128)
        before = guard.check(images, features=feats, colourfulness=colour, grey_levels=levels)
        after = guard.check(images, features=feats, colourfulness=colour, grey_levels=levels, two_tone=tones)
        rows.append({"picture": kind, "side": side, "quality": quality, "n": len(chosen),
                     "min share": float(tones.min()), "median share": float(np.median(tones)),
                     "caught by the rule": int((tones > TWO_TONE_SHARE).sum()),
                     "passed before the rule": int(sum(r.in_distribution for r in before)),
                     "passed now": int(sum(r.in_distribution for r in after)),
                     "refused now by reason": dict(Counter(r.refused_by for r in after if not r.in_distribution))})
    return rows


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


def whole_guard(guard: OODGuard, model_path: Path, images: np.ndarray, colour: np.ndarray, tones: np.ndarray
                ) -> dict[str, dict]:
    """The whole shipped check on the films and their flips: refused before the rules (score) and after, by reason
    (a flip keeps the file's share of pixels near black or white)."""
    model, meta = load_artifact(model_path)
    out = {}
    for name, flip in FLIPS.items():
        x = np.ascontiguousarray(flip(images))
        _, feats = forward_with_features(model, x, meta.preprocessing, batch_size=128)
        results = guard.check(x, features=feats, colourfulness=colour, two_tone=tones)
        out[name] = {"n": len(x), "refused_by_score": int(sum(r.score > r.threshold for r in results)),
                     "refused": int(sum(not r.in_distribution for r in results)),
                     "by_reason": dict(Counter(r.refused_by for r in results if not r.in_distribution))}
    return out


# --------------------------------------------------------------------------- report


def markdown(r: dict) -> str:
    lines = ["# The guard's fixed rules, measured on train films only", "", f"`{r['command']}`", "",
             f"{r['n_train']} train films; guard `{r['guard']}` (threshold {r['threshold']:.3f}); "
             f"rules: at most {r['max_grey_levels']} grey levels, more than {r['two_tone_share']:.0%} of a JPEG's "
             f"pixels within {r['two_tone_band']} grey levels of black or white, upside-down gain above "
             f"{r['upside_down_gain']}.", "",
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
    lines += ["", f"## Two tones: share of a JPEG's pixels within {r['two_tone_band']} grey levels of black or white "
              f"(the rule refuses above {r['two_tone_share']})", "",
              f"Decoded at full size up to {r['two_tone_max_pixels'] / 1e6:.1f} megapixels (larger JPEGs at half "
              "size or less). Real films (false refusals):", "",
              "| encoding | films | median | 99th percentile | 99.9th percentile | max | refused |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {t['encoding']} | {t['n']} | {t['median']:.3f} | {t['p99']:.3f} | {t['p999']:.3f} | {t['max']:.3f} "
              f"| {t['refused']} |" for t in r["two_tone_films"]]
    lines += ["", f"Black-and-white pictures of every {r['two_tone_every']}th train film saved as JPEG (side x side "
              "px; the whole shipped guard with the rule and without it, the image as the decoder gives it):", "",
              "| picture | side | quality | n | min share | median share | caught by the rule | "
              "passed the guard before | passes now | refused now by reason |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for t in r["two_tone_pictures"]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(t["refused now by reason"].items()))
        lines.append(f"| {t['picture']} | {t['side']} | {t['quality']} | {t['n']} | {t['min share']:.3f} | "
                     f"{t['median share']:.3f} | {t['caught by the rule']} | {t['passed before the rule']} | "
                     f"{t['passed now']} | {reasons} |")
    lines += ["", "## The whole guard (in-sample: the shipped guard was fitted on these films)", "",
              "| input | n | refused before the rules (score) | refused now | by reason |", "|---|---|---|---|---|"]
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
    parser.add_argument("--pictures-every", type=int, default=20,
                        help="make the black-and-white JPEGs of the two-tone rule from every Nth film")
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
        "command": "PYTHONPATH=src .venv/bin/python bench/guard_cues.py " + shlex.join(
            sys.argv[1:] if argv is None else argv),
        "guard": str(model_path), "threshold": guard.threshold, "n_train": len(paths),
        "max_grey_levels": MAX_GREY_LEVELS, "upside_down_gain": UPSIDE_DOWN_GAIN,
        "two_tone_share": TWO_TONE_SHARE, "two_tone_band": TWO_TONE_BAND, "two_tone_max_pixels": TWO_TONE_MAX_PIXELS,
        "two_tone_every": args.pictures_every,
        "film_gain_quantiles": {model: {"p99": float(np.quantile(g["as stored"][0], 0.99)),
                                        "p999": float(np.quantile(g["as stored"][0], 0.999)),
                                        "max": float(g["as stored"][0].max())} for model, g in gains.items()},
        "cuts": cut_table(gains, guard.threshold),
        "whole_guard": whole_guard(guard, model_path, images, colourfulness_of(paths), two_tone_share_of(paths)),
        "two_tone_films": two_tone_films(paths),
        "two_tone_pictures": two_tone_pictures(guard, model_path, paths, args.pictures_every),
        "grey_levels": grey_levels_table(paths, guard.image_size, args.dithered_every),
    }
    result["seconds"] = round(time.time() - started, 1)
    write_report(args.out, "guard_cues", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
