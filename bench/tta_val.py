"""Framing test-time augmentation scored on validation (ninth session's rule in results/rules.md).

Each variant averages the logits of views warped on the model input with the training augmentation's
affine warp (border padding): TZ zooms out 1/1.15, as is and in 1.15; TG adds 1.1 taller and 1.1 wider.
Scored with stress_val's clean, shifted and one-class probes; no test image is read.

    python bench/tta_val.py RUN [RUN ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _results import write_results
from stress_val import score, shared_val_files, shifted_sources

from pneumoscan.artifact import load_artifact
from pneumoscan.data.preprocess import resize_square
from pneumoscan.inference.batch import sigmoid

# (x scale, y scale) of the content: > 1 enlarges it (zoom in / stretch), < 1 shrinks it
VARIANTS: dict[str, list[tuple[float, float]]] = {
    "none": [(1.0, 1.0)],
    "TZ": [(1 / 1.15, 1 / 1.15), (1.0, 1.0), (1.15, 1.15)],
    "TG": [(1 / 1.15, 1 / 1.15), (1.0, 1.0), (1.15, 1.15), (1.0, 1.1), (1.1, 1.0)],
}


def warp(x: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    if sx == 1.0 and sy == 1.0:
        return x
    theta = torch.tensor([[1 / sx, 0.0, 0.0], [0.0, 1 / sy, 0.0]], dtype=x.dtype).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@torch.inference_mode()
def tta_probs(model, images: np.ndarray, preprocessing, views: list[tuple[float, float]]) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(images), 128):
        x = preprocessing(images[start:start + 128])
        out.append(torch.stack([model(warp(x, sx, sy)) for sx, sy in views]).mean(0).float().numpy())
    return sigmoid(np.concatenate(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--name", default="tta_val")
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
    write_results(args.name, rows, columns, command="python bench/tta_val.py " + " ".join(sys.argv[1:]),
                  note="Validation only (patient-aware 15% of train, split seed 0); rule in bench/results/rules.md "
                       "(ninth session, 10:42 UTC).")


if __name__ == "__main__":
    main()
