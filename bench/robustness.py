"""Test AUC of a model under input perturbations a hospital produces, against the clean figure.

    python bench/robustness.py [--model MODEL] --data ../shared/data/chest_xray
Perturbations are applied to the file bytes, which then go through the normal loading path.
"""
from __future__ import annotations

import argparse
import io
import shlex
import sys

import numpy as np
from PIL import Image, ImageEnhance

from _results import write_results

from pneumoscan.data.layout import evaluation_samples
from pneumoscan.data.preprocess import load_image
from pneumoscan.evaluation.metrics import roc_auc
from pneumoscan.inference.predictor import Predictor


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def perturbations(rng: np.random.Generator) -> dict:
    return {
        "clean": lambda im: None,
        "jpeg_q50": lambda im: _jpeg(im, 50),
        "rotate_5deg": lambda im: _jpeg(im.rotate(float(rng.choice([-5.0, 5.0])), resample=Image.Resampling.BILINEAR), 95),
        "brightness_10pct": lambda im: _jpeg(ImageEnhance.Brightness(im).enhance(float(rng.choice([0.9, 1.1]))), 95),
        "upscaled_1024px": lambda im: _jpeg(im.resize((1024, 1024), Image.Resampling.BICUBIC), 95),
    }


def run(model: str | None, data: str) -> list[dict]:
    predictor = Predictor(model)
    _, samples = evaluation_samples(data, "test")
    labels = np.array([s.label for s in samples])
    rows, clean_auc = [], None
    for name, perturb in perturbations(np.random.default_rng(0)).items():
        images = []
        for sample in samples:
            raw = sample.path.read_bytes()
            changed = perturb(Image.open(io.BytesIO(raw)).convert("L"))
            images.append(load_image(raw if changed is None else changed, predictor.size, name=sample.path.name))
        auc = roc_auc(labels, predictor.predict_images(np.stack(images)))
        clean_auc = auc if clean_auc is None else clean_auc
        rows.append({"perturbation": name, "test_roc_auc": auc, "delta_vs_clean": auc - clean_auc,
                     "within_0.01": abs(auc - clean_auc) <= 0.01})
        print(rows[-1], flush=True)
    return rows


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--data", default="../shared/data/chest_xray")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    rows = run(args.model, args.data)
    write_results("robustness", rows, ["perturbation", "test_roc_auc", "delta_vs_clean", "within_0.01"],
                  command="python bench/robustness.py " + shlex.join(sys.argv[1:]),
                  note="Rotation and brightness direction drawn per image (seed 0); every variant re-encoded as JPEG.")


if __name__ == "__main__":
    main()
