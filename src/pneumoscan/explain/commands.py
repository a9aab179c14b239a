"""`pneumoscan explain IMAGE --out heatmap.png`: Grad-CAM overlay on the original image."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def add_commands(subparsers: Any) -> None:
    """Register the `explain` command."""
    p = subparsers.add_parser("explain", help="Grad-CAM heatmap of where the model looked, over the original image")
    p.add_argument("image", help="image file (JPEG, PNG, TIFF, BMP, DICOM)")
    p.add_argument("--model", help="run folder or model.safetensors (default: the model shipped with pneumoscan)")
    p.add_argument("--out", required=True, help="PNG file to write, e.g. heatmap.png")
    p.add_argument("--threshold", type=float, help="decide PNEUMONIA when P >= this (default: the model's stored threshold)")
    p.set_defaults(func=cmd_explain)


DISPLAY_SIDE = 1024  # px: the figure shows the film at most this large, whatever its size


def display_copy(gray: np.ndarray) -> np.ndarray:
    """The film shrunk to at most DISPLAY_SIDE px on its long side for the figure (the model has its own input):
    a 150 MP film would otherwise be coloured and blended at full size, gigabytes for a picture on a screen."""
    import numpy as np
    from PIL import Image

    if max(gray.shape) <= DISPLAY_SIDE:
        return gray
    image = Image.fromarray(gray)
    image.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(image)


def cmd_explain(args: argparse.Namespace) -> int:
    """Classify IMAGE, compute Grad-CAM for the predicted class and save the figure."""
    from pneumoscan.data.decode import read_file
    from pneumoscan.data.preprocess import load_image_and_original
    from pneumoscan.errors import InputError
    from pneumoscan.explain.gradcam import cam_layers, gradcam_for_image, overlay
    from pneumoscan.inference.predictor import Predictor
    from pneumoscan.outputs import atomic_write, check_output
    from pneumoscan.report.figures import explanation, printable, to_png

    out = check_output(args.out, (".png",), "the heatmap")
    if out.exists() and out.resolve() == Path(args.image).resolve():
        raise InputError(f"{out}: is the image to explain; give --out another file name, e.g. heatmap.png")
    # the label comes from `predict`'s default backend, so a film at the very threshold gets the same one here
    predictor = Predictor(args.model, threshold=args.threshold, backend="auto")
    try:
        layers = cam_layers(predictor.model, predictor.meta)
    except InputError as err:
        raise InputError(f"{predictor.path}: {err}") from None
    data = read_file(args.image, args.image)
    full, model_input, levels = load_image_and_original(data, predictor.size, name=args.image)
    original = display_copy(full)
    del full  # a large film: only its display copy is needed from here on
    # screened by the out-of-distribution guard like `predict` and the service: no heatmap without a prediction
    (result,) = predictor.results([str(args.image)], model_input[None], [data], levels=[levels])
    if result.in_distribution is False:
        raise InputError(f"{args.image}: {result.ood_reason}; no prediction or heatmap made")
    prob, label = float(result.probability), str(result.label)
    target = predictor.meta.class_names.index(label)
    cam = gradcam_for_image(predictor.model, predictor.meta, model_input, target=target, layers=layers)
    title = (f"{printable(Path(args.image).name)}: {label}  P(pneumonia) = {prob:.3f}  (threshold {predictor.threshold:.3f})\n"
             f"heatmap: evidence for {label}, model {predictor.meta.model_name}")
    figure = to_png(explanation(original, overlay(original, cam), title))
    atomic_write(out, lambda tmp: tmp.write_bytes(figure))
    print(f"{label:<10} P(pneumonia)={prob:.4f}  heatmap: {out}")
    return 0
