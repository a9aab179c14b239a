"""`pneumoscan explain IMAGE --out heatmap.png`: Grad-CAM overlay on the original image."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_commands(subparsers: Any) -> None:
    """Register the `explain` command."""
    p = subparsers.add_parser("explain", help="Grad-CAM heatmap of where the model looked, over the original image")
    p.add_argument("image", help="image file (JPEG, PNG, TIFF, BMP, DICOM)")
    p.add_argument("--model", help="run folder or model.safetensors (default: the model shipped with pneumoscan)")
    p.add_argument("--out", required=True, help="PNG file to write, e.g. heatmap.png")
    p.add_argument("--threshold", type=float, help="decide PNEUMONIA when P >= this (default: the model's stored threshold)")
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    """Classify IMAGE, compute Grad-CAM for the predicted class and save the figure."""
    from pneumoscan.data.decode import read_grayscale
    from pneumoscan.data.preprocess import load_image
    from pneumoscan.errors import InputError
    from pneumoscan.explain.gradcam import cam_layers_for, gradcam_for_image, overlay
    from pneumoscan.inference.predictor import Predictor
    from pneumoscan.report.figures import explanation, to_png

    predictor = Predictor(args.model, threshold=args.threshold)
    try:
        cam_layers_for(predictor.meta.model_name, predictor.meta.model_config)
    except InputError as err:
        raise InputError(f"{predictor.path}: {err}") from None
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise InputError(f"{out}: the heatmap is written as PNG; give an --out file name ending in .png")
    original = read_grayscale(args.image)
    model_input = load_image(args.image, predictor.size)
    # screened by the out-of-distribution guard like `predict` and the service: no heatmap without a prediction
    (result,) = predictor.results([str(args.image)], model_input[None], [Path(args.image).read_bytes()])
    if result.in_distribution is False:
        raise InputError(f"{args.image}: {result.ood_reason}; no prediction or heatmap made")
    prob, label = float(result.probability), str(result.label)
    target = predictor.meta.class_names.index(label)
    cam = gradcam_for_image(predictor.model, predictor.meta, model_input, target=target)
    title = (f"{Path(args.image).name}: {label}  P(pneumonia) = {prob:.3f}  (threshold {predictor.threshold:.3f})\n"
             f"heatmap: evidence for {label}, model {predictor.meta.model_name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(to_png(explanation(original, overlay(original, cam), title)))
    print(f"{label:<10} P(pneumonia)={prob:.4f}  heatmap: {out}")
    return 0
