"""Which changes to one class of the validation images move a run's answers: a map of its shortcuts.

Every acquisition shift of `stress_val.py` is applied to the normals only and to the pneumonia films
only; further framing changes are applied to the normals only (moved 8 % each way, zoomed out to
0.75 on a black surround, 30 % taller or wider, mirrored; with, for a table in one place, zoom in 1.3
and zoom out 0.87, which the selection probes and shifts also use). For each, at the run's stored
threshold: the share of validation normals flagged, their median P(pneumonia), the share of
pneumonia missed, and the AUC. Reported, not used to choose anything; test images are not read.

    python bench/one_class_scan.py RUN [RUN ...] [--name one_class_scan]
"""
from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from _results import write_results
from stress_val import SHIFTS, SOURCE_SIZE, _stretch, _zoom, run_probs, shared_val_files

from pneumoscan.artifact import load_artifact
from pneumoscan.data.preprocess import load_image
from pneumoscan.evaluation.metrics import roc_auc


def _translate(dx: float, dy: float) -> Callable[[Image.Image], Image.Image]:
    """Content moved by dx, dy of the width and height (positive: right and down), black where it left."""
    return lambda im: im.transform(im.size, Image.Transform.AFFINE, (1, 0, -dx * im.size[0], 0, 1, -dy * im.size[1]))


FRAMING: dict[str, Callable[[Image.Image], Image.Image]] = {
    "moved_down_8pct": _translate(0, 0.08),
    "moved_up_8pct": _translate(0, -0.08),
    "moved_right_8pct": _translate(0.08, 0),
    "moved_left_8pct": _translate(-0.08, 0),
    "zoom_out_0.87_black": lambda im: _zoom(im, 0.87),
    "zoom_out_0.75_black": lambda im: _zoom(im, 0.75),
    "zoom_in_1.3": lambda im: _zoom(im, 1.3),
    "taller_1.3": lambda im: _stretch(im, 1.0, 1.3),
    "wider_1.3": lambda im: _stretch(im, 1.3, 1.0),
    "mirrored": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
}


def one_class_sources(paths: list[Path], labels: np.ndarray) -> dict[tuple[str, str], list[Image.Image]]:
    """(class shifted, change) -> the validation images with that class changed and the other clean."""
    clean = [Image.fromarray(load_image(p, SOURCE_SIZE), mode="L") for p in paths]
    out: dict[tuple[str, str], list[Image.Image]] = {("none", "clean"): clean}
    for cls, label in (("normal", 0), ("pneumonia", 1)):
        for name, fn in SHIFTS.items():
            rng = np.random.default_rng(sum(map(ord, name)))
            out[(cls, name)] = [fn(im, rng) if y == label else im for im, y in zip(clean, labels)]
    for name, fn in FRAMING.items():
        out[("normal", name)] = [fn(im) if y == 0 else im for im, y in zip(clean, labels)]
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with model.safetensors, val_predictions.csv)")
    parser.add_argument("--name", default="one_class_scan", help="results file name in bench/results/")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    paths, labels = shared_val_files(args.runs)
    sources = one_class_sources(paths, labels)
    keyed = {f"{cls}:{name}": images for (cls, name), images in sources.items()}
    rows = []
    for run in args.runs:
        threshold = load_artifact(run)[1].threshold
        probs = run_probs(run, keyed)
        for key, p in probs.items():
            cls, change = key.split(":", 1)
            normals, pneumonia = p[labels == 0], p[labels == 1]
            rows.append({"run": run.name, "class_changed": cls, "change": change, "threshold": threshold,
                         "auc": roc_auc(labels, p), "normals_flagged": float(np.mean(normals >= threshold)),
                         "normals_median_p": float(np.median(normals)),
                         "pneumonia_missed": float(np.mean(pneumonia < threshold))})
        flagged = {r["change"]: r["normals_flagged"] for r in rows if r["run"] == run.name and r["class_changed"] != "pneumonia"}
        worst = sorted(flagged.items(), key=lambda kv: -kv[1])[:4]
        print(f"{run.name}: normals flagged at threshold {threshold:.3f}: "
              + ", ".join(f"{k} {v:.3f}" for k, v in worst), flush=True)
    write_results(args.name, rows, ["run", "class_changed", "change", "auc", "normals_flagged", "normals_median_p",
                                    "pneumonia_missed"],
                  command="python bench/one_class_scan.py " + shlex.join(sys.argv[1:]),
                  note="Validation = patient-aware 15% of train (split seed 0); one class changed, the other clean; "
                       "shares at each run's stored threshold. Reported, not used for selection. Test images are not "
                       "read.")


if __name__ == "__main__":
    main()
