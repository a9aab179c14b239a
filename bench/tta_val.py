"""Framing test-time augmentation scored on validation (ninth session's rule in results/rules.md).

Each variant averages the logits of views warped on the model input with the training augmentation's
affine warp (border padding): TZ zooms out 1/1.15, as is and in 1.15; TG adds 1.1 taller and 1.1 wider.
Scored with stress_val's clean, shifted and one-class probes; no test image is read.

    python bench/tta_val.py RUN [RUN ...]
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from _results import write_results
from stress_val import score, shared_val_files, shifted_sources

from pneumoscan.artifact import load_artifact
from pneumoscan.data.augment import affine_warp
from pneumoscan.data.preprocess import Preprocessing, resize_square
from pneumoscan.inference.batch import predict_logits, sigmoid

# (x scale, y scale) of the content: > 1 enlarges it (zoom in / stretch), < 1 shrinks it
VARIANTS: dict[str, list[tuple[float, float]]] = {
    "none": [(1.0, 1.0)],
    "TZ": [(1 / 1.15, 1 / 1.15), (1.0, 1.0), (1.15, 1.15)],
    "TG": [(1 / 1.15, 1 / 1.15), (1.0, 1.0), (1.15, 1.15), (1.0, 1.1), (1.1, 1.0)],
}


class Warped(nn.Module):
    """`model` applied to its input with the content scaled by (sx, sy), warped as training augments."""

    def __init__(self, model: nn.Module, sx: float, sy: float) -> None:
        super().__init__()
        self.model, self.theta = model, torch.tensor([[[1 / sx, 0.0, 0.0], [0.0, 1 / sy, 0.0]]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(affine_warp(x, self.theta.expand(len(x), 2, 3)))


def tta_probs(model: nn.Module, images: np.ndarray, preprocessing: Preprocessing,
              views: list[tuple[float, float]]) -> np.ndarray:
    """P(PNEUMONIA) from the mean logit over the views (the unscaled view is the image as it is)."""
    logits = [predict_logits(model if (sx, sy) == (1.0, 1.0) else Warped(model, sx, sy), images, preprocessing)
              for sx, sy in views]
    return sigmoid(np.mean(logits, axis=0))


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--name", default="tta_val")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    paths, labels = shared_val_files(args.runs)
    sources = shifted_sources(paths, labels)
    rows = []
    for run in args.runs:
        model, meta = load_artifact(run)
        arrays = {k: np.stack([resize_square(np.asarray(im), meta.image_size) for im in ims]) for k, ims in sources.items()}
        for variant, views in VARIANTS.items():
            probs = {k: tta_probs(model, a, meta.preprocessing, views) for k, a in arrays.items()}
            row = {**score(run.name, labels, probs), "tta": variant, "views": len(views)}
            rows.append(row)
            print(f"{run.name[:30]:30s} {variant:4s} val {row['val_auc']:.4f} stress {row['stress_auc_mean']:.4f} "
                  f"geometry {row['geometry_auc_mean']:.4f} (min {row['geometry_auc_min']:.4f}) "
                  f"normals flagged zoom-in {row['normals_flagged_zoom_in']:.3f} clean {row['normals_flagged_clean']:.3f}",
                  flush=True)
    columns = ["run", "tta", "views", "val_auc", "val_log_loss", "stress_auc_mean", "stress_auc_min", "geometry_auc_mean",
               "geometry_auc_min", "normals_flagged_zoom_in", "normals_flagged_clean", "texture_auc_mean"]
    write_results(args.name, rows, columns, command="python bench/tta_val.py " + shlex.join(sys.argv[1:]),
                  note="Validation only (patient-aware 15% of train, split seed 0); rule in bench/results/rules.md "
                       "(ninth session, 10:42 UTC).")


if __name__ == "__main__":
    main()
