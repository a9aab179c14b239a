"""Benchmark the out-of-distribution guard: real chest X-rays against generated non-X-ray inputs.

Fits the guard of `--model` on the real train split (writing `<model>.ood.safetensors` beside it,
or `--guard-out`), then scores the real test split (used only to measure the false-rejection rate
and as the in-distribution side of the AUROC, never to choose anything) and families of generated
negatives, each encoded as a file and sent through the same decoder as user uploads. AUROCs rank the
guard's score; "rejected" counts the whole check: the score above the threshold, or one of the fixed
rules (at most 16 grey levels in the decoded file, a JPEG in two tones, dithered grain, a posterised JPEG, upside
down), each file's cues measured as the Predictor measures them (`jpeg_cues`).

    PYTHONPATH=src .venv/bin/python bench/ood.py --model RUN_DIR [--per-family 60]

Writes bench/results/ood.json and bench/results/ood.md.
"""
from __future__ import annotations

import argparse
import io
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps
from _results import write_report

from pneumoscan.artifact import default_model_path, load_artifact, resolve_model_path
from pneumoscan.data.layout import discover
from pneumoscan.data.preprocess import load_image_with_levels
from pneumoscan.evaluation.metrics import roc_auc
from pneumoscan.inference.ood import OODGuard, colourfulness, fit_guard, forward_with_features, jpeg_cues

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chest_xray"
Rng = np.random.Generator


# --------------------------------------------------------------------------- generated negatives


def _size(rng: Rng) -> tuple[int, int]:
    side = int(rng.integers(160, 520))
    return side, int(side * rng.uniform(0.7, 1.4))


def _gray(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")


def _grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:h, :w]
    return xx / w, yy / h


def _fractal(rng: Rng, w: int, h: int, beta: float) -> np.ndarray:
    """1/f^beta noise in [0, 1]: clouds, bark, sand - natural-looking textures."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    amp = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / max(w, h)) ** (beta / 2)
    spec = amp * np.exp(2j * np.pi * rng.random(amp.shape)) * rng.normal(1, 0.1, amp.shape)
    field = np.fft.irfft2(spec, s=(h, w))
    return (field - field.min()) / (np.ptp(field) + 1e-9)


def blank(rng: Rng) -> Image.Image:
    w, h = _size(rng)
    level = rng.uniform(0, 255)
    return _gray(level + rng.normal(0, rng.uniform(0, 2), (h, w)))


def gradient(rng: Rng) -> Image.Image:
    w, h = _size(rng)
    xx, yy = _grid(w, h)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(angle) + yy * math.sin(angle)
    else:
        cx, cy = rng.uniform(0.2, 0.8, 2)
        t = np.hypot(xx - cx, yy - cy)
    t = (t - t.min()) / (np.ptp(t) + 1e-9)
    lo, hi = np.sort(rng.uniform(0, 255, 2))
    return _gray(lo + (hi - lo) * t ** rng.uniform(0.5, 2))


def noise(rng: Rng) -> Image.Image:
    w, h = _size(rng)
    kind = rng.integers(4)
    if kind == 0:
        a = rng.normal(rng.uniform(60, 190), rng.uniform(10, 70), (h, w))
    elif kind == 1:
        a = rng.uniform(0, 255, (h, w))
    elif kind == 2:
        a = np.where(rng.random((h, w)) < rng.uniform(0.05, 0.5), 255.0, rng.uniform(0, 128))
    else:
        a = rng.normal(128, 60, (h, w))
        return _gray(a).filter(ImageFilter.GaussianBlur(rng.uniform(1, 6)))
    return _gray(a)


def pattern(rng: Rng) -> Image.Image:
    w, h = _size(rng)
    yy, xx = np.mgrid[:h, :w]
    cell = int(rng.integers(2, 60))
    kind = rng.integers(3)
    if kind == 0:
        a = ((xx // cell + yy // cell) % 2) * 255.0
    elif kind == 1:
        angle = rng.uniform(0, math.pi)
        a = (np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / cell) > 0) * 255.0
    else:
        a = (((xx % cell) < 2) | ((yy % cell) < 2)) * 255.0
    lo, hi = np.sort(rng.uniform(0, 255, 2))
    return _gray(lo + (hi - lo) * a / 255)


def texture(rng: Rng) -> Image.Image:
    w, h = _size(rng)
    t = _fractal(rng, w, h, rng.uniform(1.5, 3.5))
    if rng.random() < 0.3:
        t = np.abs(np.sin(t * rng.uniform(6, 20)))  # wood-grain / marble bands
    return _gray(255 * t ** rng.uniform(0.6, 1.6))


_WORDS = ("patient name date of birth address signature insurance number report findings lab result "
          "total amount invoice please sign here the quick brown fox jumps over lazy dog 2024 form "
          "section page reference clinic department phone email").split()


def document(rng: Rng) -> Image.Image:
    """A scanned form: text lines on near-white paper, sometimes boxes, rules and a grey scan tint."""
    w = int(rng.integers(300, 700))
    h = int(w * rng.uniform(1.2, 1.5))
    paper = int(rng.integers(215, 256))
    im = Image.new("L", (w, h), paper)
    draw = ImageDraw.Draw(im)
    size = int(rng.integers(9, 22))
    font = ImageFont.load_default(size=size)
    y = int(rng.integers(10, 40))
    while y < h - size - 10:
        x = int(rng.integers(10, 40))
        if rng.random() < 0.15:
            draw.rectangle([x, y, w - x, y + 2 * size], outline=0, width=1)
        text = " ".join(rng.choice(_WORDS, int(rng.integers(2, 12))))
        draw.text((x + 4, y), text.upper() if rng.random() < 0.2 else text, fill=int(rng.integers(0, 80)), font=font)
        if rng.random() < 0.2:
            draw.line([x, y + size + 3, w - x, y + size + 3], fill=0, width=1)
        y += int(size * rng.uniform(1.3, 2.5))
    a = np.asarray(im, dtype=np.float64) + rng.normal(0, rng.uniform(0, 6), (h, w))
    return _gray(a).rotate(rng.uniform(-3, 3), fillcolor=paper, resample=Image.Resampling.BILINEAR)


def colour_photo(rng: Rng) -> Image.Image:
    """A 'photo' from random shapes: sky/ground gradient, coloured blobs, blur and sensor noise."""
    w, h = _size(rng)
    _, yy = _grid(w, h)
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    base = top[None, None] * (1 - yy[..., None]) + bottom[None, None] * yy[..., None]
    im = Image.fromarray(base.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 25))):
        x0, y0 = rng.uniform(-0.2, 1, 2) * (w, h)
        x1, y1 = (x0, y0) + rng.uniform(0.05, 0.6, 2) * (w, h)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0, 3)))
    a = np.asarray(im, dtype=np.float64) + rng.normal(0, rng.uniform(1, 8), (h, w, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def _radiograph(rng: Rng, a: np.ndarray) -> Image.Image:
    """Attenuation map -> radiograph look: blur, quantum noise, exposure."""
    im = _gray(a).filter(ImageFilter.GaussianBlur(rng.uniform(1, 3)))
    b = np.asarray(im, dtype=np.float64)
    return _gray(b * rng.uniform(0.8, 1.1) + rng.normal(0, rng.uniform(2, 8), b.shape))


def _capsule(mask_x: np.ndarray, mask_y: np.ndarray, p: np.ndarray, q: np.ndarray, r: float) -> np.ndarray:
    """Distance-based soft capsule between points p and q with radius r (in pixels)."""
    d = q - p
    t = np.clip(((mask_x - p[0]) * d[0] + (mask_y - p[1]) * d[1]) / (d @ d + 1e-9), 0, 1)
    dist = np.hypot(mask_x - (p[0] + t * d[0]), mask_y - (p[1] + t * d[1]))
    return np.clip(1 - dist / r, 0, 1) ** 0.5


def hand(rng: Rng) -> Image.Image:
    """A hand / limb radiograph: dark background, grey soft tissue, bright tubular bones."""
    w, h = _size(rng)
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    a = np.full((h, w), rng.uniform(5, 40))
    palm = np.array([w * rng.uniform(0.4, 0.6), h * rng.uniform(0.65, 0.8)])
    if rng.random() < 0.3:  # a single long bone (forearm / leg)
        p, q = np.array([w * rng.uniform(0.3, 0.7), -10.0]), np.array([w * rng.uniform(0.3, 0.7), h + 10.0])
        a += 70 * (_capsule(xx, yy, p, q, w * 0.18) > 0)
        a += 110 * _capsule(xx, yy, p + (w * 0.03, 0), q + (w * 0.03, 0), w * 0.05)
        a += 90 * _capsule(xx, yy, p - (w * 0.05, 0), q - (w * 0.05, 0), w * 0.035)
        return _radiograph(rng, a)
    a += 80 * (_capsule(xx, yy, palm - (0, h * 0.1), palm + (0, h * 0.4), w * 0.22) > 0)
    for k in range(5):
        angle = math.radians(-60 + 30 * k + rng.uniform(-8, 8))
        length = h * rng.uniform(0.3, 0.45) * (0.6 if k == 0 else 1.0)
        base = palm + np.array([w * 0.12 * (k - 2), -h * 0.05])
        tip = base + length * np.array([math.sin(angle), -math.cos(angle)])
        a += 80 * (_capsule(xx, yy, base, tip, w * 0.045) > 0)
        for j in range(3):  # phalanges
            p = base + (tip - base) * (0.05 + 0.32 * j)
            q = base + (tip - base) * (0.32 + 0.32 * j)
            a += 110 * _capsule(xx, yy, p, q, w * 0.02)
        a += 100 * _capsule(xx, yy, palm, base, w * 0.022)  # metacarpal
    return _radiograph(rng, np.minimum(a, 255))


def skull(rng: Rng) -> Image.Image:
    """A skull radiograph: bright cranial vault ring, textured brain case, dark orbits, jaw."""
    w, h = _size(rng)
    xx, yy = _grid(w, h)
    cx, cy = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.55)
    rx, ry = rng.uniform(0.3, 0.42), rng.uniform(0.32, 0.45)
    r = np.hypot((xx - cx) / rx, (yy - cy) / ry)
    a = np.full(r.shape, rng.uniform(5, 40))
    a += 90 * (r < 1.08)  # soft tissue
    a += 120 * np.exp(-((r - 1.0) / 0.05) ** 2)  # cortical bone of the vault
    a += 40 * _fractal(rng, w, h, 2.5) * (r < 0.95)
    for side in (-1, 1):  # orbits
        a -= 60 * (np.hypot((xx - cx - side * rx * 0.4) / (rx * 0.2), (yy - cy - ry * 0.2) / (ry * 0.15)) < 1)
    jaw = np.hypot((xx - cx) / (rx * 0.7), (yy - cy - ry * 0.75) / (ry * 0.45))
    a += 110 * np.exp(-((jaw - 1.0) / 0.08) ** 2) * (yy > cy + ry * 0.6)
    return _radiograph(rng, a)


FAMILIES: dict[str, Callable[[Rng], Image.Image]] = {
    "blank": blank, "gradient": gradient, "noise": noise, "pattern": pattern, "texture": texture,
    "document": document, "colour_photo": colour_photo, "hand_limb": hand, "skull": skull,
}


# Real train X-rays, transformed: informative only (not in the AUROC); shows which near-misses pass.
TRANSFORMS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "inverted": lambda im: ImageOps.invert(im),
    "rotated_90": lambda im: im.rotate(90, expand=True),
    "upside_down": lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    "centre_crop_50pct": lambda im: im.crop((im.width // 4, im.height // 4, 3 * im.width // 4, 3 * im.height // 4)),
    "sepia_tint": lambda im: ImageOps.colorize(im, (40, 20, 0), (255, 235, 200)),
    "low_contrast": lambda im: im.point(lambda v: 100 + v * 0.3),
    # black and white at the size of an original (saved as a 1-bit PNG): grey again at the model's size
    "dithered_1bit": lambda im: im.resize((4 * im.width, 4 * im.height), Image.Resampling.BICUBIC).convert("1"),
}


def encode(im: Image.Image, rng: Rng) -> bytes:
    """Save as JPEG (quality 60-95) or PNG, as an upload would arrive."""
    buf = io.BytesIO()
    if rng.random() < 0.6:
        im.save(buf, "JPEG", quality=int(rng.integers(60, 96)))
    else:
        im.save(buf, "PNG")
    return buf.getvalue()


# images, raw-file colourfulness, grey levels, and `jpeg_cues`' two-tone share, dither energy and peak excess
Decoded = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def decode(datas: list[bytes], size: int, name: str) -> Decoded:
    """Files decoded as the Predictor decodes uploads, with the raw-file signals the guard takes."""
    decoded = [load_image_with_levels(data, size, name=name) for data in datas]
    tones, dither, peaks = (np.array(cue) for cue in zip(*(jpeg_cues(d) for d in datas)))
    return (np.stack([image for image, _ in decoded]), np.array([colourfulness(d) for d in datas]),
            np.array([levels for _, levels in decoded]), tones, dither, peaks)


def generate(family: str, n: int, size: int, seed: int) -> Decoded:
    """`n` generated files of a family, decoded."""
    rng = np.random.default_rng([seed, list(FAMILIES).index(family)])
    return decode([encode(FAMILIES[family](rng), rng) for _ in range(n)], size, family)


def transformed(paths: list[Path], name: str, size: int, seed: int) -> Decoded:
    """Train X-rays through one of TRANSFORMS, re-encoded as JPEG or PNG (1-bit images as PNG), decoded."""
    rng = np.random.default_rng(seed)
    datas = []
    for path in paths:
        with Image.open(path) as im:
            out = TRANSFORMS[name](im.convert("L"))
        datas.append(_png(out) if out.mode == "1" else encode(out.convert("RGB"), rng))
    return decode(datas, size, name)


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- benchmark


def score(guard: OODGuard, model, meta, decoded: Decoded) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Combined score, per-signal ratios and whether the whole check refuses, through the Predictor's calls."""
    images, colour, levels, tones, dither, peaks = decoded
    _, feats = forward_with_features(model, images, meta.preprocessing, batch_size=64)
    values, parts = guard.scores(guard.components(images, features=feats, colourfulness=colour))
    verdicts = guard.check(images, features=feats, colourfulness=colour, grey_levels=levels, two_tone=tones,
                           dither=dither, peaks=peaks)
    return values, parts, np.array([not v.in_distribution for v in verdicts])


def timing(guard: OODGuard, model, meta, images: np.ndarray, colour: np.ndarray) -> dict[str, float]:
    """Milliseconds per image: forward pass with the feature hook, and the guard's own work on top."""
    from pneumoscan.inference.batch import predict_logits

    forward_with_features(model, images[:64], meta.preprocessing, batch_size=64)  # warm-up
    t0 = time.perf_counter()
    predict_logits(model, images, meta.preprocessing, batch_size=64)
    t1 = time.perf_counter()
    _, feats = forward_with_features(model, images, meta.preprocessing, batch_size=64)
    t2 = time.perf_counter()
    guard.check(images, features=feats, colourfulness=colour)
    t3 = time.perf_counter()
    n = len(images) / 1000
    return {"forward_ms": round((t1 - t0) / n, 3), "forward_with_features_ms": round((t2 - t1) / n, 3),
            "check_ms": round((t3 - t2) / n, 3)}


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUROC with the negatives (generated inputs) as the positive class: higher score = more out of distribution."""
    return float(roc_auc(np.r_[np.zeros(len(pos)), np.ones(len(neg))], np.r_[pos, neg]))


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="run folder or artifact (default: the shipped model)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="data folder with train/ and test/")
    parser.add_argument("--per-family", type=int, default=60, help="generated images per negative family")
    parser.add_argument("--max-train", type=int, help="fit the guard on at most this many train images")
    parser.add_argument("--guard-out", help="where to write the guard (default: beside the model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="results folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.model is None and not default_model_path().is_file():
        parser.error("no shipped model installed; pass --model RUN_DIR")
    model_path = resolve_model_path(args.model)

    started = time.time()
    guard_file = fit_guard(model_path, args.data, out=args.guard_out, max_images=args.max_train, seed=args.seed)
    fit_seconds = time.time() - started
    guard = OODGuard.read(guard_file)
    model, meta = load_artifact(model_path)

    test = [s.path for s in discover(args.data)["test"]]
    decoded_test = decode([p.read_bytes() for p in test], meta.image_size, "test")
    id_score, id_parts, id_refused = score(guard, model, meta, decoded_test)
    costs = timing(guard, model, meta, decoded_test[0][:256], decoded_test[1][:256])

    families: dict[str, dict[str, object]] = {}
    all_neg, all_refused, all_parts = [], [], {k: [] for k in id_parts}
    for family in FAMILIES:
        neg, parts, refused = score(guard, model, meta, generate(family, args.per_family, meta.image_size, args.seed))
        all_neg.append(neg)
        all_refused.append(refused)
        for k in parts:
            all_parts[k].append(parts[k])
        families[family] = {
            "n": len(neg), "auroc": round(auroc(id_score, neg), 4),
            "rejected": round(float(refused.mean()), 4),
            "auroc_by_signal": {k: round(auroc(id_parts[k], parts[k]), 4) for k in parts},
        }
    neg, neg_refused = np.concatenate(all_neg), np.concatenate(all_refused)
    train_paths = [s.path for s in discover(args.data)["train"]]
    picks = np.random.default_rng(args.seed).permutation(len(train_paths))[: args.per_family]
    stress = {}
    for name in TRANSFORMS:
        _, _, refused = score(guard, model, meta, transformed([train_paths[i] for i in picks], name, meta.image_size,
                                                              args.seed))
        stress[name] = round(float(refused.mean()), 4)
    result = {
        "model": str(model_path), "model_name": meta.model_name, "image_size": meta.image_size,
        "guard": str(guard_file), "fit": {k: guard.meta[k] for k in (
            "n_images", "threshold", "references", "max_false_rejection", "held_out_rejection_rate",
            "held_out_rejection_by_signal")},
        "fit_seconds": round(fit_seconds, 1), "cost_per_image": costs,
        "test_xrays": {"n": len(id_score), "false_rejection_rate": round(float(id_refused.mean()), 4),
                       "false_rejections": int(id_refused.sum())},
        "negatives": {"n": len(neg), "auroc": round(auroc(id_score, neg), 4),
                      "rejected": round(float(neg_refused.mean()), 4),
                      "auroc_by_signal": {k: round(auroc(id_parts[k], np.concatenate(v)), 4) for k, v in all_parts.items()}},
        "families": families, "transformed_train_xrays_rejected": stress,
        "per_family": args.per_family, "seed": args.seed,
        "command": "PYTHONPATH=src .venv/bin/python bench/ood.py " + shlex.join(sys.argv[1:] if argv is None else argv),
    }
    write_report(args.out, "ood", result, markdown(result))
    ok = result["test_xrays"]["false_rejection_rate"] <= 0.01 and result["negatives"]["auroc"] >= 0.99
    return 0 if ok else 1


def markdown(r: dict) -> str:
    t, n = r["test_xrays"], r["negatives"]
    lines = [
        "# Out-of-distribution guard", "", f"`{r['command']}`", "",
        f"Model `{r['model_name']}` at {r['image_size']} px (`{r['model']}`); guard fitted on "
        f"{r['fit']['n_images']} real train X-rays in {r['fit_seconds']} s, threshold {r['fit']['threshold']:.3f} "
        f"(held-out train rejection {r['fit']['held_out_rejection_rate']:.2%}).", "",
        f"- False rejections on the real test split: **{t['false_rejection_rate']:.2%}** "
        f"({t['false_rejections']} of {t['n']}; target <= 1%)",
        f"- AUROC, real test X-rays vs all {n['n']} generated negatives: **{n['auroc']:.4f}** (target >= 0.99); "
        f"rejected by the guard: {n['rejected']:.2%}",
        f"- Cost per image: forward {r['cost_per_image']['forward_ms']} ms, forward with feature hook "
        f"{r['cost_per_image']['forward_with_features_ms']} ms, guard check {r['cost_per_image']['check_ms']} ms", "",
        "AUROC: higher score = more out of distribution; the generated negatives are the positive class. "
        "The per-signal columns score each signal alone. Rejected: by the whole check (score above the threshold, "
        "or a fixed rule: at most 16 grey levels in the decoded file, a JPEG in two tones, dithered grain, a "
        "posterised JPEG, upside down).", "",
        "| family | n | AUROC | rejected | " + " | ".join(f"AUROC {k}" for k in n["auroc_by_signal"]) + " |",
        "|---|---|---|---|" + "---|" * len(n["auroc_by_signal"]),
    ]
    for name, f in r["families"].items():
        lines.append(f"| {name} | {f['n']} | {f['auroc']:.4f} | {f['rejected']:.2%} | "
                     + " | ".join(f"{v:.4f}" for v in f["auroc_by_signal"].values()) + " |")
    lines.append(f"| **all** | {n['n']} | {n['auroc']:.4f} | {n['rejected']:.2%} | "
                 + " | ".join(f"{v:.4f}" for v in n["auroc_by_signal"].values()) + " |")
    lines += ["", "Real train X-rays, transformed (informative; not in the AUROC): share rejected", "",
              "| transform | rejected |", "|---|---|"]
    lines += [f"| {k} | {v:.2%} |" for k, v in r["transformed_train_xrays_rejected"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
