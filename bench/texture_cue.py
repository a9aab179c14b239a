"""How well fine detail alone separates the classes in train: the cue the texture probes of stress_val.py test.

Per image, the mean absolute difference between the image and its 2x2 box blur (high-pass energy),
as stored (224 px) and as the shipped model sees it (equalised, 128 px); its ROC AUC for NORMAL
against PNEUMONIA (higher energy = normal). Train split only; no model is involved.

    python bench/texture_cue.py --data ../shared/data/chest_xray
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from _results import write_results

from pneumoscan.evaluation.metrics import roc_auc


def high_pass_energy(image: np.ndarray) -> float:
    """Mean |image - its 2x2 box blur| of a grey image (H, W)."""
    a = image.astype(np.float32)
    blur = (a[:-1, :-1] + a[1:, :-1] + a[:-1, 1:] + a[1:, 1:]) / 4
    return float(np.abs(a[:-1, :-1] - blur).mean())


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/chest_xray"))
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    views = {"as stored (224 px)": lambda im: im,
             "equalised, 128 px": lambda im: ImageOps.equalize(im.resize((128, 128), Image.Resampling.BILINEAR))}
    energy: dict[str, list[float]] = {name: [] for name in views}
    normal: list[int] = []
    for cls in ("NORMAL", "PNEUMONIA"):
        for path in sorted((args.data / "train" / cls).iterdir()):
            image = Image.open(path).convert("L")
            for name, view in views.items():
                energy[name].append(high_pass_energy(np.asarray(view(image))))
            normal.append(int(cls == "NORMAL"))
    labels = np.array(normal)
    rows = [{"view": name, "n": len(labels), "auc_normal_vs_pneumonia": roc_auc(labels, np.array(values)),
             "median_normal": float(np.median(np.array(values)[labels == 1])),
             "median_pneumonia": float(np.median(np.array(values)[labels == 0]))} for name, values in energy.items()]
    for row in rows:
        print(row)
    write_results("texture_cue", rows, ["view", "n", "auc_normal_vs_pneumonia", "median_normal", "median_pneumonia"],
                  command="python bench/texture_cue.py " + shlex.join(sys.argv[1:]),
                  note="High-pass energy (mean |image - 2x2 box blur|) of every train image; AUC of that number alone "
                       "for NORMAL (higher) against PNEUMONIA. Train split only, no model.")


if __name__ == "__main__":
    main()
