"""CLI hook: `pneumoscan predict` gives P(pneumonia) and a label for image files; the --model and --backend options
the commands that run a model share."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from pneumoscan.data.view_wording import OTHER_VIEW
from pneumoscan.errors import decimals
from pneumoscan.inference.operating_point import add_operating_point_args, operating_point_text

if TYPE_CHECKING:
    from pneumoscan.inference.predictor import Predictor


def add_backend_arg(parser: argparse.ArgumentParser) -> None:
    """`--backend`: the inference engine of a command that runs a model."""
    parser.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                        help="inference engine; auto = PyTorch on a CUDA GPU, else ONNX Runtime when installed, else PyTorch "
                             "(default auto)")


def add_model_arg(parser: argparse.ArgumentParser) -> None:
    """`--model`: the trained model a command runs (default: the shipped one)."""
    parser.add_argument("--model", help="run folder or model.safetensors (default: the model shipped with pneumoscan)")


def threshold_note(predictor: Predictor) -> str:
    """The stderr note of a command printing labels as text: the threshold it labels at, and where that came from."""
    return (f"pneumoscan: note: {predictor.meta.class_names[1]} at P(pneumonia) >= "
            f"{decimals(predictor.threshold, 4)}; {operating_point_text(predictor.operating_point())}")


def cmd_predict(args: argparse.Namespace) -> int:
    from pneumoscan.inference.inputs import input_files
    from pneumoscan.inference.predict_stream import stream_predictions
    from pneumoscan.inference.predictor import Predictor

    predictor = Predictor(args.model, backend=args.backend, threshold=args.threshold, target_recall=args.target_recall,
                          prevalence=args.prevalence)
    files = input_files(args.paths)  # a request with no film is refused before any note
    fmt = "json" if args.json else "csv" if args.csv else "text"
    if fmt == "text" and not args.quiet:  # CSV and JSON have it in a column; stdout's lines stay as scripts parse them
        print(threshold_note(predictor), file=sys.stderr)
    predictor.warn_unguarded()  # once, before the progress bar
    complete = stream_predictions(predictor, files, fmt, progress=not args.quiet, notes=not args.quiet)
    # a script must see that some input got no prediction: unreadable, or refused by the guard
    return 0 if complete else 1


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`predict`."""
    p = sub.add_parser("predict", help="P(pneumonia) and label for image files or folders",
                       description="P(pneumonia) and label for image files or folders. Files are read and predicted "
                                   "in chunks of a few hundred, in the order given, and each chunk's rows are "
                                   "printed as soon as it is done, its warnings and errors too (stderr); memory "
                                   "stays that of one chunk. The text's first stderr line names the threshold in "
                                   "use and where it came from (a note: --quiet hides it); a model without a chest "
                                   "X-ray guard is warned about once. Ctrl+C keeps the rows printed so far (exit "
                                   "code 130; an interrupted --json array lacks its closing ']'). A film whose P lies "
                                   "within the 95 % bootstrap interval of the threshold, on the films it was chosen on, is "
                                   "borderline: its label stands, but a threshold re-chosen on a plausible resample "
                                   "of those films would give the other one (marked in the text, column borderline "
                                   "in --csv and --json; empty with --threshold, which has no interval, and for a model that "
                                   "records none). A film under 32 px on a side (a thumbnail) is predicted all the "
                                   "same, with a warning on stderr to send the original film (marked too-small in "
                                   "the text, column size_warning in --csv and --json); it does not change the exit "
                                   "code. A film the model's guard refuses gets no probability or label (exit code "
                                   "1): its reason is on stderr and in column ood_reason, its cause in refused_by "
                                   "(blank, colour: not a chest X-ray; image, features: unlike the chest X-rays the "
                                   "model was trained on, as a few real ones are, so read it without the model; "
                                   "grey_levels, two_tone, dithered, posterised, upside_down: send the film as the scanner saved "
                                   "it; "
                                   f"view: a DICOM whose Modality, View Position or view codes say it is {OTHER_VIEW}, "
                                   "send the plain frontal film).")
    add_model_arg(p)
    p.add_argument("paths", nargs="+", help="image files (JPEG, PNG, TIFF, BMP, DICOM) or folders; a labelled CSV "
                                            "manifest is scored with `pneumoscan evaluate --data manifest.csv`")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print a JSON array of every input's result")
    fmt.add_argument("--csv", action="store_true", help="print CSV (one header line, then a row per input)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (it is shown on stderr only when stderr is a terminal) and no notes (the "
                        "threshold line, what borderline means); warnings and errors still show")
    add_backend_arg(p)
    add_operating_point_args(p)
    p.set_defaults(func=cmd_predict)
