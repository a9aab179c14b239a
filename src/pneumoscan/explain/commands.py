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
    from pneumoscan.errors import InputError
    from pneumoscan.explain.explanation import explain_file
    from pneumoscan.inference.predictor import Predictor
    from pneumoscan.outputs import atomic_write, check_output
    from pneumoscan.progress import write_warning
    from pneumoscan.report.figures import to_png

    out = check_output(args.out, (".png",), "the heatmap")
    if out.exists() and out.resolve() == Path(args.image).resolve():
        raise InputError(f"{out}: is the image to explain; give --out another file name, e.g. heatmap.png")
    # the label comes from `predict`'s default backend, so a film at the very threshold gets the same one here
    predictor = Predictor(args.model, threshold=args.threshold, backend="auto")
    explained = explain_file(predictor, args.image)
    prob, label = float(explained.prediction.probability), str(explained.prediction.label)
    interval = predictor.threshold_ci95 if explained.prediction.borderline else None
    empty = f"empty: Grad-CAM found no positive evidence for {label}" if explained.empty else ""
    figure = to_png(explained.figure())
    atomic_write(out, lambda tmp: tmp.write_bytes(figure))
    marker = f"borderline (P within the threshold's 95 % interval {interval[0]:.4f} to {interval[1]:.4f})  " \
        if interval else ""
    print(f"{label:<10} P(pneumonia)={prob:.4f}  {marker}heatmap: {out}{f' ({empty})' if empty else ''}")
    if explained.prediction.size_warning:
        write_warning(f"{args.image}: {explained.prediction.size_warning}")
    return 0
