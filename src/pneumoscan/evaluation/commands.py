"""CLI hooks: `pneumoscan evaluate` gives a model's metrics with their intervals on a labelled split, and prints
them; `pneumoscan set-threshold` chooses the operating threshold on a site's own films."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pneumoscan.command_outputs import check_outputs, json_writer, report_stream, write_json
from pneumoscan.errors import decimals
from pneumoscan.inference.operating_point import operating_point_text

if TYPE_CHECKING:
    from pneumoscan.evaluation.evaluate import Evaluation
    from pneumoscan.inference.predictor import Predictor


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pneumoscan.evaluation.evaluate import check_bootstrap, evaluate, predictions_writer
    from pneumoscan.inference.predictor import Predictor
    from pneumoscan.outputs import atomic_write_all

    check_bootstrap(args.n_boot, args.seed)
    check_outputs(args.json, args.predictions)
    predictor = Predictor(args.model, backend=args.backend, threshold=args.threshold, target_recall=args.target_recall,
                          prevalence=args.prevalence)
    result = evaluate(predictor, args.data, args.split, n_boot=args.n_boot, seed=args.seed, cache_dir=args.cache_dir)
    summary = result.summary
    # the files first: printing fails once a reader such as `| head` has gone, and they must not be lost with it;
    # written together, so a failure (a full disk) leaves neither new and both old ones as they were
    files: dict[str, Callable[[Path], object]] = {}
    if args.predictions:
        files[args.predictions] = predictions_writer(result.images.samples, result.probs)
    if args.json and args.json != "-":
        files[args.json] = json_writer(summary)
    atomic_write_all(files)
    if args.json == "-":
        write_json(args.json, summary)
    with report_stream(args.json):
        _print_evaluation(args, predictor, result)
    return 0


def _print_evaluation(args: argparse.Namespace, predictor: "Predictor", result: "Evaluation") -> None:
    """The evaluation as text: where the threshold came from, metrics with intervals, confusion, per-class report."""
    from pneumoscan.evaluation.bootstrap import SUMMARY_ORDER, classification_report_text, intervals_text
    from pneumoscan.progress import write_warning

    summary = result.summary
    print(f"{summary['split']}: {summary['n']} images ({summary['n_negative']} NORMAL, {summary['n_positive']} PNEUMONIA), "
          f"threshold {decimals(summary['threshold'], 4)}")
    print(f"  {operating_point_text(summary['operating_point'])}")
    if predictor.stored_threshold:
        from pneumoscan.evaluation.local_threshold import source_notes

        for kind, text in source_notes(predictor.meta, args.data, summary["split"]):
            if kind == "note":
                print(f"  {text}")
            else:
                write_warning(text)
    if "patients_in_training" in summary:
        from pneumoscan.data.patients import shared_text, uncompared_text, uncounted_reason

        shared = summary["patients_in_training"]
        why = uncounted_reason(shared, predictor.meta.training, predictor.path.parent)
        if why or uncompared_text(shared, summary["n"]):  # a full count is silent: a shared patient is warned about
            print(f"  patients also in the training data: {shared_text(shared, summary['n'], why)}")
    print(f"  {intervals_text(summary)}.")
    for key in SUMMARY_ORDER:
        value, (lo, hi) = summary[key]["value"], summary[key]["ci95"]
        print(f"  {key:<12} {decimals(value, 4):>7}   95% CI [{decimals(lo, 4)}, {decimals(hi, 4)}]")
    print(f"  {'ece':<12} {decimals(summary['ece']['value'], 4):>7}")
    (tn, fp), (fn, tp) = summary["confusion_matrix"]["matrix"]
    print(f"  confusion    TN {tn}  FP {fp}  FN {fn}  TP {tp}")
    for name, info in summary["recall_by_cause"].items():
        print(f"  recall {name:<9}{decimals(info['recall'], 4)} (n={info['n']})")
    for line in _borderline_lines(summary["borderline"]):
        print(f"  {line}")
    print(classification_report_text(result.images.labels, (result.probs >= predictor.threshold).astype(int)))
    for message in result.images.skipped:
        write_warning(f"skipped {message}")


def _borderline_lines(borderline: dict | None) -> list[str]:
    """The evaluation's `borderline` entry as one to three lines: the films within the threshold's interval, how
    that interval's bootstrap drew (in the words of the report and set-threshold), and the decisions on the others
    (what referring the borderline films to a radiologist would leave)."""
    from pneumoscan.evaluation.bootstrap import resampled_words

    if borderline is None:
        return ["borderline   none marked: this threshold has no 95 % interval (given by --threshold, or not "
                "what the model's stored scores give)"]
    lo, hi = borderline["interval"]
    normal, pneumonia = borderline["by_class"]["NORMAL"], borderline["by_class"]["PNEUMONIA"]
    outside = borderline["outside"]
    total = borderline["n"] + outside["n"]
    # an entry made without `resampled` (a summary from before it was recorded) says nothing of it
    drawn = [f"{'':13}the interval {resampled_words(borderline['resampled'])}"] if borderline.get("resampled") else []
    return [f"borderline   P within the threshold's 95 % interval [{decimals(lo, 4)}, {decimals(hi, 4)}]: "
            f"{borderline['n']} of {total} "
            f"films ({100 * borderline['share']:.1f} %; NORMAL {normal['n']}, PNEUMONIA {pneumonia['n']})",
            *drawn,
            f"outside it   accuracy {decimals(outside['accuracy'], 4)}  recall {decimals(outside['recall'], 4)}  "
            f"specificity {decimals(outside['specificity'], 4)} (n={outside['n']})"]


def cmd_set_threshold(args: argparse.Namespace) -> int:
    from pneumoscan.evaluation.evaluate import check_bootstrap
    from pneumoscan.evaluation.local_threshold import out_artifact_path, print_local_threshold, set_threshold
    from pneumoscan.inference.ood.guard import guard_beside
    from pneumoscan.outputs import undone_on_failure

    check_bootstrap(args.n_boot, args.seed)
    check_outputs(args.json)
    model = out_artifact_path(args.out)
    # a --json that cannot be written (a full disk) takes the new model copy, its guard, its export and their folders
    # with it
    with undone_on_failure(model.parent, [model, guard_beside(model), model.with_suffix(".onnx")]):
        result = set_threshold(args.model, args.data, args.out, split=args.split, target_recall=args.target_recall,
                               backend=args.backend, n_boot=args.n_boot, seed=args.seed, cache_dir=args.cache_dir)
        record = {"threshold": result.threshold, "threshold_ci95": list(result.interval),
                  "target_recall": result.target_recall, "model": str(result.out),
                  "guard_copied": result.guard_copied, "before": result.before, "after": result.after,
                  "onnx": None if result.onnx is None else str(result.onnx)}  # the copy's export, if one was written
        if args.json and args.json != "-":
            write_json(args.json, record)
    if args.json == "-":  # outside: a closed pipe must not take the model with it
        write_json(args.json, record)
    with report_stream(args.json):
        print_local_threshold(result)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`evaluate` and `set-threshold`."""
    from pneumoscan.data.cache_commands import add_cache_dir_arg
    from pneumoscan.inference.commands import add_backend_arg, add_model_arg
    from pneumoscan.inference.operating_point import add_operating_point_args
    p = sub.add_parser("evaluate", help="metrics with 95%% intervals on a labelled split")
    add_model_arg(p)
    p.add_argument("--data", required=True, help="data folder (uses test/ when present) or CSV manifest")
    p.add_argument("--split", help="which split folder to evaluate (default: test, else the only one; a folder of "
                                    "class folders is used whole)")
    p.add_argument("--json", help="write the metrics as JSON to this file ('-': stdout, and the text report goes to stderr)")
    p.add_argument("--predictions", help="write per-image probabilities to this CSV (columns path, label, prob, cause)")
    p.add_argument("--n-boot", type=int, default=1000,
                   help="bootstrap resamples (of patients within each class when films share a patient) for the "
                        "intervals of F1, ROC AUC, average precision and Brier; the rates get Wilson intervals "
                        "(default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    add_cache_dir_arg(p)
    add_backend_arg(p)
    add_operating_point_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("set-threshold", help="choose the operating threshold on your own labelled images and save "
                                             "it with a copy of the model")
    add_model_arg(p)
    p.add_argument("--data", required=True,
                   help="your labelled images: NORMAL/ and PNEUMONIA/ folders (or train/ val/ test/ with them), or a "
                        "CSV manifest; not the films you will report results on")
    p.add_argument("--split", help="which split folder to choose on when DATA has several (then required; val, not the "
                                    "test films you report results on); a folder of class folders is used whole")
    p.add_argument("--out", required=True,
                   help="new model file (.safetensors) or folder (gets model.safetensors); the original is kept; "
                        "its ONNX export beside it too when the original had a current one (an ONNX file already there is "
                        "refused); neither in the data folder itself nor in its split or class folders")
    p.add_argument("--target-recall", type=float,
                   help="recall to reach on these images (default: the model's own, 0.95 for the shipped model)")
    p.add_argument("--n-boot", type=int, default=1000,
                   help="bootstrap resamples (of patients within each class when films share a patient, as in "
                        "`evaluate`) for the intervals and the threshold's (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0), as in `evaluate`")
    p.add_argument("--json", help="also write the threshold, its interval, the figures before and after and the "
                                  "new model (with guard_copied, and onnx: its export or null) as JSON to this file "
                                  "('-': stdout, and the text report goes to stderr)")
    add_cache_dir_arg(p)
    add_backend_arg(p)
    p.set_defaults(func=cmd_set_threshold)
