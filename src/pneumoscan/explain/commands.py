"""`pneumoscan explain IMAGE [--out heatmap.png]`: Grad-CAM overlay on the original image."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pneumoscan.inference.commands import add_model_arg, threshold_note


def add_commands(subparsers: Any) -> None:
    """Register the `explain` command."""
    from pneumoscan.inference.operating_point import add_operating_point_args

    p = subparsers.add_parser("explain", help="Grad-CAM heatmap of where the model looked, over the original image")
    p.add_argument("image", help="image file (JPEG, PNG, TIFF, BMP, DICOM)")
    add_model_arg(p)
    p.add_argument("--out", help="PNG file to write (default: IMAGE's name with _heatmap.png, in the current folder: "
                                 "xray.jpeg -> xray_heatmap.png); not in the model's training data folder "
                                 "nor one of its split or class folders")
    add_operating_point_args(p)
    p.set_defaults(func=cmd_explain)


def default_out(image: str) -> Path:
    """Where the heatmap of IMAGE goes without --out: its name, less an image extension, + `_heatmap.png`, in the
    current folder (the film's own folder may be a read-only export)."""
    from pneumoscan.data.formats import image_stem

    return Path(f"{image_stem(image)}_heatmap.png")


def _is_other_picture(path: Path) -> bool:
    """Whether `path` is a picture that a figure of explain or report did not make (those are written by
    matplotlib, which names itself in the PNG), such as another film: explain --out is not written over it."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return not str(image.info.get("Software", "")).startswith("Matplotlib")
    except (OSError, ValueError, Image.DecompressionBombError):  # not a picture: nothing to lose that a film holds
        return False


def _at_default_place(err: Exception) -> Exception:
    """The failed write of a heatmap without --out, saying where that was and how to choose another place."""
    from pneumoscan.errors import WriteError

    return WriteError(f"{err} (the heatmap's default place, the current folder); or give --out FILE.png in a folder "
                      f"you can write to")


def cmd_explain(args: argparse.Namespace) -> int:
    """Classify IMAGE, compute Grad-CAM for the predicted class and save the figure."""
    from pneumoscan.errors import InputError, WriteError, decimals
    from pneumoscan.explain.explanation import explain_file, left_out_clause
    from pneumoscan.inference.predictor import Predictor
    from pneumoscan.outputs import atomic_write, check_output
    from pneumoscan.progress import write_warning
    from pneumoscan.report.figures import to_png

    try:
        out = check_output(args.out or default_out(args.image), (".png",), "the heatmap")
    except WriteError as err:  # up front: an unwritable current folder, as the write itself below
        if args.out:
            raise
        raise _at_default_place(err) from None
    if out.exists() and out.resolve() == Path(args.image).resolve():
        raise InputError(f"{out}: is the image to explain; give --out another file name, e.g. heatmap.png")
    if out.is_file() and _is_other_picture(out):
        raise InputError(f"{out}: exists and is not a figure pneumoscan drew (an X-ray?); give --out another file "
                         f"name, or delete it first")
    # the label comes from `predict`'s default backend, so a film at the very threshold gets the same one here
    predictor = Predictor(args.model, threshold=args.threshold, target_recall=args.target_recall,
                          prevalence=args.prevalence, backend="auto")
    predictor.meta.check_out_of_training_data(out, predictor.path.parent, out.parent)
    explained = explain_file(predictor, args.image)
    print(threshold_note(predictor), file=sys.stderr)  # the label's threshold, which the terminal line does not show
    prob, label = float(explained.prediction.probability), str(explained.prediction.label)
    interval = predictor.threshold_ci95 if explained.prediction.borderline else None
    empty = f"empty: Grad-CAM found no positive evidence for {label}" if explained.empty else ""
    figure = to_png(explained.figure())
    try:
        atomic_write(out, lambda tmp: tmp.write_bytes(figure))
    except WriteError as err:
        if args.out:
            raise
        raise _at_default_place(err) from None
    marker = f"borderline (P within the threshold's 95 % interval {decimals(interval[0], 4)} to {decimals(interval[1], 4)})  " \
        if interval else ""
    print(f"{label:<10} P(pneumonia)={decimals(prob, 4)}  {marker}heatmap: {out}{f' ({empty})' if empty else ''}"
          f"{left_out_clause(explained.unmapped)}")
    if explained.prediction.size_warning:
        write_warning(f"{args.image}: {explained.prediction.size_warning}")
    return 0
