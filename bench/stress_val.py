"""Validation AUC under acquisition shifts: the model-selection signal when clean validation saturates.

Clean validation AUC of every recipe sits near 0.998, so it cannot rank recipes. The test images
differ from train in ways the validation split (same patients' hospital, same graders) does not,
so each run is also scored on the validation images re-rendered as another X-ray unit would:
other gamma and contrast, blur, noise, zoom, rotation, shift, JPEG loss, lower resolution and
histogram equalisation. The list was fixed before any recipe was scored on it, and no test image
is read. Ensembles average member probabilities.

The geometry probes (added in the sixth session, before the runs they ranked were scored) shift one
class only: normals zoomed in or stretched, pneumonia zoomed out. A model that reads framing or
aspect ratio as evidence (a tighter field of view as pneumonia) loses AUC here, although a shift of
both classes alike leaves its ranking intact. Three texture probes do the same for sharpness.

    python bench/stress_val.py RUN [RUN ...] [--ensemble NAME=RUN,RUN ...]
"""
from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from _results import write_results

from pneumoscan.artifact import load_artifact
from pneumoscan.data.preprocess import load_image, resize_square
from pneumoscan.evaluation.evaluate import read_predictions
from pneumoscan.evaluation.metrics import log_loss, roc_auc
from pneumoscan.inference.batch import predict_probs
from pneumoscan.training.config import run_folders

SOURCE_SIZE = 224
Perturb = Callable[[Image.Image, np.random.Generator], Image.Image]


def _zoom(image: Image.Image, factor: float) -> Image.Image:
    size = image.size[0]
    if factor >= 1:  # zoom in: crop the centre
        crop = int(round(size / factor))
        box = ((size - crop) // 2, (size - crop) // 2, (size + crop) // 2, (size + crop) // 2)
        return image.crop(box).resize(image.size, Image.Resampling.BILINEAR)
    small = image.resize((int(size * factor),) * 2, Image.Resampling.BILINEAR)
    canvas = Image.new("L", image.size, 0)  # zoom out: a wider field of view with black surround
    canvas.paste(small, ((size - small.size[0]) // 2,) * 2)
    return canvas


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("L")


def _point(image: Image.Image, fn: Callable[[np.ndarray], np.ndarray]) -> Image.Image:
    x = np.asarray(image, dtype=np.float32) / 255.0
    return Image.fromarray((np.clip(fn(x), 0, 1) * 255).round().astype(np.uint8), mode="L")


def _sign(rng: np.random.Generator) -> float:
    return float(rng.choice([-1.0, 1.0]))


SHIFTS: dict[str, Perturb] = {
    "gamma_0.7": lambda im, rng: _point(im, lambda x: x ** 0.7),
    "gamma_1.4": lambda im, rng: _point(im, lambda x: x ** 1.4),
    "contrast_0.75": lambda im, rng: _point(im, lambda x: (x - x.mean()) * 0.75 + x.mean()),
    "contrast_1.25": lambda im, rng: _point(im, lambda x: (x - x.mean()) * 1.25 + x.mean()),
    "blur_1.5px": lambda im, rng: im.filter(ImageFilter.GaussianBlur(1.5)),
    "noise_0.03": lambda im, rng: _point(im, lambda x: x + rng.normal(0, 0.03, x.shape)),
    "zoom_in_1.15": lambda im, rng: _zoom(im, 1.15),
    "zoom_out_0.87": lambda im, rng: _zoom(im, 0.87),
    "rotate_7deg": lambda im, rng: im.rotate(7 * _sign(rng), resample=Image.Resampling.BILINEAR),
    "shift_8pct": lambda im, rng: im.transform(im.size, Image.Transform.AFFINE,
                                               (1, 0, 0.08 * im.size[0] * _sign(rng), 0, 1, 0.08 * im.size[1] * _sign(rng))),
    "jpeg_q30": lambda im, rng: _jpeg(im, 30),
    "lowres_96px": lambda im, rng: im.resize((96, 96), Image.Resampling.BILINEAR).resize(im.size, Image.Resampling.BILINEAR),
    "equalized": lambda im, rng: ImageOps.equalize(im),
}


def _stretch(image: Image.Image, fx: float, fy: float) -> Image.Image:
    """Enlarge by fx across and fy down, keeping the centre at the original size."""
    size = image.size[0]
    w, h = int(round(size * fx)), int(round(size * fy))
    left, top = (w - size) // 2, (h - size) // 2
    return image.resize((w, h), Image.Resampling.BILINEAR).crop((left, top, left + size, top + size))


# name -> (the class it shifts: 0 NORMAL, 1 PNEUMONIA; the shift)
GEOMETRY_PROBES: dict[str, tuple[int, Callable[[Image.Image], Image.Image]]] = {
    "normal_zoom_in_1.15": (0, lambda im: _zoom(im, 1.15)),
    "normal_zoom_in_1.3": (0, lambda im: _zoom(im, 1.3)),
    "normal_taller_1.15": (0, lambda im: _stretch(im, 1.0, 1.15)),
    "normal_wider_1.15": (0, lambda im: _stretch(im, 1.15, 1.0)),
    "pneumonia_zoom_out_0.87": (1, lambda im: _zoom(im, 0.87)),
}
# The same for sharpness: in train, normals carry more fine detail (they were downscaled from larger
# films), so a model could read softness as pneumonia. Reported, not used for selection.
TEXTURE_PROBES: dict[str, tuple[int, Callable[[Image.Image], Image.Image]]] = {
    "normal_blur_1.2px": (0, lambda im: im.filter(ImageFilter.GaussianBlur(1.2))),
    "normal_half_resolution": (0, lambda im: im.resize((im.size[0] // 2,) * 2, Image.Resampling.BILINEAR)
                                           .resize(im.size, Image.Resampling.BILINEAR)),
    "pneumonia_sharpened": (1, lambda im: im.filter(ImageFilter.UnsharpMask(2, 80, 2))),
}
ONE_CLASS_PROBES = {**GEOMETRY_PROBES, **TEXTURE_PROBES}
NORMAL_SHIFTS = ["clean", *(k for k, (shifted_class, _) in ONE_CLASS_PROBES.items() if shifted_class == 0)]


def shifted_sources(paths: list[Path], labels: np.ndarray) -> dict[str, list[Image.Image]]:
    """Every validation image at source size: clean, under each shift (seeded per shift), and under
    each geometry probe (one class shifted, the other clean)."""
    clean = [Image.fromarray(load_image(p, SOURCE_SIZE), mode="L") for p in paths]
    out = {"clean": clean}
    for name, fn in SHIFTS.items():
        rng = np.random.default_rng(sum(map(ord, name)))
        out[name] = [fn(im, rng) for im in clean]
    for name, (shifted_class, fn) in ONE_CLASS_PROBES.items():
        out[name] = [fn(im) if label == shifted_class else im for im, label in zip(clean, labels)]
    return out


def run_probs(run: Path, sources: dict[str, list[Image.Image]]) -> dict[str, np.ndarray]:
    """The run's probabilities for every variant of the validation images."""
    model, meta = load_artifact(run)
    size = meta.image_size
    return {name: predict_probs(model, np.stack([resize_square(np.asarray(im), size) for im in images]),
                                meta.preprocessing, tta=meta.tta)
            for name, images in sources.items()}


def score(name: str, labels: np.ndarray, probs: dict[str, np.ndarray]) -> dict:
    shifted = {k: roc_auc(labels, probs[k]) for k in SHIFTS}
    probes = {k: roc_auc(labels, probs[k]) for k in GEOMETRY_PROBES}
    texture = {k: roc_auc(labels, probs[k]) for k in TEXTURE_PROBES}
    return {"run": name, "val_auc": roc_auc(labels, probs["clean"]), "val_log_loss": log_loss(labels, probs["clean"]),
            "stress_auc_mean": float(np.mean(list(shifted.values()))), "stress_auc_min": float(min(shifted.values())),
            "stress_worst": min(shifted, key=shifted.get),
            "stress_log_loss_mean": float(np.mean([log_loss(labels, probs[k]) for k in SHIFTS])),
            "geometry_auc_mean": float(np.mean(list(probes.values()))), "geometry_auc_min": float(min(probes.values())),
            # share of normals at P >= 0.5 when normals are zoomed in 1.15: framing read as pneumonia
            "normals_flagged_zoom_in": float(np.mean(probs["normal_zoom_in_1.15"][labels == 0] >= 0.5)),
            # the same share and the normals' median P, clean and under every probe that shifts them (JSON only)
            **{f"normals_flagged_{k}": float(np.mean(probs[k][labels == 0] >= 0.5)) for k in NORMAL_SHIFTS},
            **{f"normals_median_p_{k}": float(np.median(probs[k][labels == 0])) for k in NORMAL_SHIFTS},
            "texture_auc_mean": float(np.mean(list(texture.values()))),
            **{f"auc_{k}": v for k, v in {**shifted, **probes, **texture}.items()}}


def val_files(run: Path) -> tuple[list[Path], np.ndarray]:
    """The run's validation images and labels, from its val_predictions.csv."""
    paths, labels, _ = read_predictions(run / "val_predictions.csv", bases=run_folders(run))
    return paths, labels


def shared_val_files(runs: list[Path]) -> tuple[list[Path], np.ndarray]:
    """The validation images and labels the runs share; exits naming a run that validated on others."""
    paths, labels = val_files(runs[0])
    for run in runs[1:]:
        if val_files(run)[0] != paths:
            sys.exit(f"{run}: validated on other images than {runs[0]}; runs must share the split seed")
    return paths, labels


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with model.safetensors, val_predictions.csv)")
    parser.add_argument("--ensemble", nargs="*", default=[], help="NAME=RUN,RUN,...: average these runs' probabilities")
    parser.add_argument("--name", default="stress_val", help="results file name in bench/results/")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    paths, labels = shared_val_files(args.runs)
    sources = shifted_sources(paths, labels)
    probs = {str(run): run_probs(run, sources) for run in args.runs}
    rows = [score(run.name, labels, probs[str(run)]) for run in args.runs]
    for spec in args.ensemble:
        name, members = spec.split("=", 1)
        chosen = [probs[str(Path(m))] for m in members.split(",")]
        rows.append(score(name, labels, {k: np.mean([c[k] for c in chosen], axis=0) for k in sources}))
    for row in rows:
        print(f"{row['run']:40s} val {row['val_auc']:.4f}  ll {row['val_log_loss']:.4f}  stress mean {row['stress_auc_mean']:.4f}"
              f"  min {row['stress_auc_min']:.4f} ({row['stress_worst']})  geometry mean {row['geometry_auc_mean']:.4f}"
              f"  min {row['geometry_auc_min']:.4f}", flush=True)
    columns = ["run", "val_auc", "val_log_loss", "stress_auc_mean", "stress_auc_min", "stress_worst", "stress_log_loss_mean",
               "geometry_auc_mean", "geometry_auc_min", "normals_flagged_zoom_in", "texture_auc_mean"]
    columns += [f"auc_{k}" for k in [*SHIFTS, *ONE_CLASS_PROBES]]
    write_results(args.name, rows, columns, command="python bench/stress_val.py " + shlex.join(sys.argv[1:]),
                  note="Validation = patient-aware 15% of train (split seed 0), clean, under 13 fixed acquisition "
                       "shifts, and under 5 geometry and 3 texture probes that shift one class only. Test images are "
                       "not read.")


if __name__ == "__main__":
    main()
