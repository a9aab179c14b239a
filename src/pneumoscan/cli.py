"""The `pneumoscan` command line: audit, train, evaluate, predict and the rest of the pipeline."""
from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import json
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from pneumoscan import __version__
from pneumoscan.errors import (MAX_REASON, PneumoscanError, RefusedFilm, WriteError, cli_words, decimals,
                               gpu_out_of_memory, host_out_of_memory, interruption, memory_reason, one_line, one_name,
                               option, out_of_memory_text, raise_terminated, shell_word, warn)

if TYPE_CHECKING:
    from pneumoscan.evaluation.evaluate import Evaluation
    from pneumoscan.inference.predictor import Predictor

Handler = Callable[[argparse.Namespace], int]
# Each module defines `add_commands(subparsers)`; their heavy imports happen inside the handlers.
COMMAND_MODULES = (
    "pneumoscan.training.commands",
    "pneumoscan.report.commands",
    "pneumoscan.explain.commands",
    "pneumoscan.export.commands",
    "pneumoscan.service.commands",
    "pneumoscan.inference.ood_commands",
    "pneumoscan.data.cache_commands",
)


def _write_json(path: str, data: object) -> None:
    """JSON to `path` ('-': stdout), already checked by `_output_folders`."""
    if path == "-":
        print(_json_text(data))
    else:
        from pneumoscan.outputs import atomic_write

        atomic_write(path, _json_writer(data))


def _json_text(data: object) -> str:
    """`data` as JSON; undefined (NaN) values become null, as other JSON readers need."""
    from pneumoscan.outputs import json_ready

    return json.dumps(json_ready(data), indent=2, allow_nan=False)


def _json_writer(data: object) -> Callable[[Path], object]:
    """What writes `data` as JSON to a file (for `atomic_write_all`, beside other outputs)."""
    text = _json_text(data)
    return lambda tmp: tmp.write_text(text)


def _report_stream(json_path: str | None) -> contextlib.AbstractContextManager:
    """Where the human-readable report goes: stderr when `--json -` takes stdout, which then holds JSON only."""
    return contextlib.redirect_stdout(sys.stderr) if json_path == "-" else contextlib.nullcontext()


def _output_folders(json_path: str | None = None, csv_path: str | None = None) -> None:
    """Check the output files (`--json`, '-' being stdout; `--predictions`) up front, so a bad path fails before
    the work; their folders are made when they are written, so a command that fails leaves none behind."""
    from pneumoscan.errors import InputError
    from pneumoscan.outputs import check_output

    if csv_path == "-":
        raise InputError("--predictions -: the per-image table is written to a file, not to stdout; give a file name "
                         "ending in .csv (only --json takes '-')")
    for path, suffix, what, option in ((json_path, ".json", "JSON", "--json"),
                                       (csv_path, ".csv", "the per-image table", "--predictions")):
        if path and (path != "-" or option != "--json"):  # only JSON can go to stdout
            check_output(path, (suffix,), what, option)


def _backend_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                        help="inference engine; auto = PyTorch on a CUDA GPU, else ONNX Runtime when installed, else PyTorch "
                             "(default auto)")


def _model_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="run folder or model.safetensors (default: the model shipped with pneumoscan)")


# -- commands ------------------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    from pneumoscan.models.registry import PLUGIN_GROUP, get_spec, list_models

    names = list_models()
    sources = {name: get_spec(name).origin.describe() if get_spec(name).origin else "pneumoscan" for name in names}
    width, source_width = max(12, *(len(n) + 2 for n in names)), max(len(s) for s in sources.values()) + 2
    print(f"{'name':<{width}}{'params':>11}{'size':>6}  {'from':<{source_width}}description")
    for name in names:
        spec = get_spec(name)
        print(f"{name:<{width}}{_parameters_shown(name):>11}{spec.image_size:>6}  {sources[name]:<{source_width}}"
              f"{spec.description}")
    print("ensemble: the mean of trained models; build one with `pneumoscan ensemble RUN RUN --out DIR`")
    print(f"plugins: installed packages add models through the entry point group {PLUGIN_GROUP} (`pneumoscan docs "
          f"training`: Your own architecture); a built-in name cannot be replaced by one")
    return 0


def _parameters_shown(name: str) -> str:
    """The number of weights of model `name` as `train` builds it by default (its options' defaults, at its
    registered input size), or '?' (with a warning) for a plugin's model that cannot be built so."""
    from pneumoscan.models.registry import count_parameters, create_model, get_spec, model_config

    try:
        return f"{count_parameters(create_model(name, **model_config(name, image_size=get_spec(name).image_size))):,}"
    except Exception as err:  # noqa: BLE001 - a plugin's builder may fail in any way
        warn(f"model {name!r} cannot be built with its default options ({type(err).__name__}: {err})")
        return "?"


def cmd_card(args: argparse.Namespace) -> int:
    from pneumoscan.card import model_card_text

    sys.stdout.write(model_card_text())
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from pneumoscan.card import guide_text, guides

    if args.guide is not None:
        sys.stdout.write(guide_text(args.guide))
        return 0
    known = guides()
    width = max(12, *(len(name) + 2 for name in known)) if known else 12
    for name, title in known.items():
        print(f"{name:<{width}}{title}")
    print("`pneumoscan docs GUIDE` prints one; `pneumoscan card` prints the shipped model's card")
    return 0


EXIT_AUDIT_PROBLEMS = 3  # `audit --strict` found a problem; 1 and 2 are taken (some inputs failed; a user mistake)
EXIT_WARNING_AS_ERROR = 4  # a warning that Python's warnings filter makes an error (-W error, PYTHONWARNINGS=error)


def cmd_audit(args: argparse.Namespace) -> int:
    from pneumoscan.data.audit import audit, audit_problems, format_audit

    _output_folders(args.json)
    report = audit(args.data, patient_key=args.patient_key or "auto")
    with _report_stream(args.json):
        print(format_audit(report))
    if args.json:
        _write_json(args.json, report)
    problems = audit_problems(report)
    if args.strict and problems:
        print(f"pneumoscan: audit --strict: {args.data}: {', '.join(problems)} (exit code {EXIT_AUDIT_PROBLEMS})",
              file=sys.stderr)
        return EXIT_AUDIT_PROBLEMS
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pneumoscan.evaluation.evaluate import check_bootstrap, evaluate, predictions_writer
    from pneumoscan.inference.predictor import Predictor
    from pneumoscan.outputs import atomic_write_all

    check_bootstrap(args.n_boot, args.seed)
    _output_folders(args.json, args.predictions)
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
        files[args.json] = _json_writer(summary)
    atomic_write_all(files)
    if args.json == "-":
        _write_json(args.json, summary)
    with _report_stream(args.json):
        _print_evaluation(args, predictor, result)
    return 0


def _print_evaluation(args: argparse.Namespace, predictor: "Predictor", result: "Evaluation") -> None:
    """The evaluation as text: where the threshold came from, metrics with intervals, confusion, per-class report."""
    from pneumoscan.evaluation.bootstrap import SUMMARY_ORDER, classification_report_text, intervals_text

    summary = result.summary
    print(f"{summary['split']}: {summary['n']} images ({summary['n_negative']} NORMAL, {summary['n_positive']} PNEUMONIA), "
          f"threshold {decimals(summary['threshold'], 4)}")
    print(f"  {operating_point_text(summary['operating_point'])}")
    if predictor.stored_threshold:
        from pneumoscan.evaluation.local_threshold import source_notes
        from pneumoscan.progress import write_warning

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
    from pneumoscan.progress import write_warning

    for message in result.images.skipped:
        write_warning(f"skipped {message}")


def operating_point_text(point: dict) -> str:
    """`Predictor.operating_point` in one line: where the threshold came from and the prevalence P assumes."""
    on = {"local": " on this site's films (set-threshold)", "validation": " on the validation films"}.get(
        point["chosen_on"] or "", "")
    recall = point["target_recall"]
    if point["threshold_from"] == "threshold":
        source = "--threshold"
    elif point["threshold_from"] == "target_recall":
        source = f"--target-recall {recall:g}{on}"
    else:
        source = "the model's own" + (f" (for recall {recall:g}{on})" if recall is not None else "")
    if point["prevalence_from"] == "prevalence":
        moved = "" if point["threshold_from"] == "threshold" else ", the threshold moved with it"
        prior = f"{point['prevalence']:g} (--prevalence{moved})"
    else:
        prior = f"{point['prevalence']:g} (the model's prior; no --prevalence)"
    return f"operating point: threshold from {source}; P for a prevalence of {prior}"


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
    _output_folders(args.json)
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
            _write_json(args.json, record)
    if args.json == "-":  # outside: a closed pipe must not take the model with it
        _write_json(args.json, record)
    with _report_stream(args.json):
        print_local_threshold(result)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from pneumoscan.inference.inputs import input_files
    from pneumoscan.inference.predict_stream import stream_predictions
    from pneumoscan.inference.predictor import Predictor

    predictor = Predictor(args.model, backend=args.backend, threshold=args.threshold, target_recall=args.target_recall,
                          prevalence=args.prevalence)
    files = input_files(args.paths)  # a request with no film is refused before any note
    fmt = "json" if args.json else "csv" if args.csv else "text"
    if fmt == "text" and not args.quiet:  # CSV and JSON have it in a column; stdout's lines stay as scripts parse them
        print(f"pneumoscan: note: {predictor.meta.class_names[1]} at P(pneumonia) >= "
              f"{decimals(predictor.threshold, 4)}; {operating_point_text(predictor.operating_point())}",
              file=sys.stderr)
    predictor.warn_unguarded()  # once, before the progress bar
    complete = stream_predictions(predictor, files, fmt, progress=not args.quiet, notes=not args.quiet)
    # a script must see that some input got no prediction: unreadable, or refused by the guard
    return 0 if complete else 1


# -- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from pneumoscan.data.cache_commands import add_cache_dir_arg
    from pneumoscan.inference.operating_point import add_operating_point_args
    from pneumoscan.training.commands import add_patient_key_arg, add_train_command

    parser = argparse.ArgumentParser(prog="pneumoscan", description=__doc__.split(":")[0] + ": pneumonia on chest X-rays.")
    parser.add_argument("--version", action="version", version=f"pneumoscan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list the registered model architectures, installed plugins' too, and the "
                                       "package each comes from")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("card", help="print the model card (Markdown) of the model shipped with pneumoscan: what it is "
                                     "for, its data, recipe, test figures and known failure modes; it describes that "
                                     "model only, not one you train (the service sends it at GET /model/card)")
    p.set_defaults(func=cmd_card)

    p = sub.add_parser("docs", help="print one of pneumoscan's guides (Markdown: training, evaluation, the service, "
                                     "the Python API, ...), installed with it from its source's docs folder; without "
                                     "GUIDE, list them")
    p.add_argument("guide", nargs="?", metavar="GUIDE", help="the guide's name, as listed: e.g. training")
    p.set_defaults(func=cmd_docs)

    p = sub.add_parser("audit", help="count images, patients, sizes, unreadable, colour and lateral-view files and duplicates in a dataset")
    p.add_argument("data", help="data folder (train/ val/ test/ with NORMAL/ PNEUMONIA/) or CSV manifest")
    p.add_argument("--json", help="also write the audit as JSON to this file ('-': stdout, and the text report goes to stderr)")
    add_patient_key_arg(p, "default auto, as in `train`")
    p.add_argument("--strict", action="store_true",
                   help=f"exit with code {EXIT_AUDIT_PROBLEMS} (after the report) when the audit finds a problem: "
                        "unreadable files, byte-identical files in two splits, with both labels or under two patient "
                        "IDs, images under 32 px, colour images, DICOM films of a lateral, decubitus or oblique view "
                        "(View Position), (with --patient-key folder) images with no patient "
                        "folder, or a patient in two splits by DICOM PatientID, manifest patient column or folder (IDs "
                        "from file names in two splits are only reported: Kermany's restart in each split); for a CI "
                        "gate (default: exit 0)")
    p.set_defaults(func=cmd_audit)

    add_train_command(sub)

    p = sub.add_parser("evaluate", help="metrics with 95%% intervals on a labelled split")
    _model_arg(p)
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
    _backend_arg(p)
    add_operating_point_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("set-threshold", help="choose the operating threshold on your own labelled images and save "
                                             "it with a copy of the model")
    _model_arg(p)
    p.add_argument("--data", required=True,
                   help="your labelled images: NORMAL/ and PNEUMONIA/ folders (or train/ val/ test/ with them), or a "
                        "CSV manifest; not the films you will report results on")
    p.add_argument("--split", help="which split folder to choose on when DATA has several (then required; val, not the "
                                    "test films you report results on); a folder of class folders is used whole")
    p.add_argument("--out", required=True,
                   help="new model file (.safetensors) or folder (gets model.safetensors); the original is kept; "
                        "its ONNX export beside it too when the original had a current one (an ONNX file already there is "
                        "refused)")
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
    _backend_arg(p)
    p.set_defaults(func=cmd_set_threshold)

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
                                   "view: a DICOM whose View Position is lateral, decubitus or oblique, send the "
                                   "frontal film).")
    _model_arg(p)
    p.add_argument("paths", nargs="+", help="image files (JPEG, PNG, TIFF, BMP, DICOM) or folders; a labelled CSV "
                                            "manifest is scored with `pneumoscan evaluate --data manifest.csv`")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print a JSON array of every input's result")
    fmt.add_argument("--csv", action="store_true", help="print CSV (one header line, then a row per input)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (it is shown on stderr only when stderr is a terminal) and no notes (the "
                        "threshold line, what borderline means); warnings and errors still show")
    _backend_arg(p)
    add_operating_point_args(p)
    p.set_defaults(func=cmd_predict)

    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        module.add_commands(sub)
    _describe_commands(sub)
    return parser


def _describe_commands(sub: argparse._SubParsersAction) -> None:
    """Each command's `--help` opens with the line `pneumoscan --help` gives it, unless it has a longer one."""
    for action in sub._choices_actions:
        parser = sub.choices[action.dest]
        if parser.description is None and action.help:
            line = action.help.replace("%%", "%")  # a help string escapes % for argparse; a description does not
            parser.description = line[:1].upper() + line[1:] + "."


def _one_line_warnings() -> Callable[..., None]:
    """A `warnings.showwarning` for one command: each warning as one line like the errors, without the source file
    and line that raised it, and a warning repeated word for word (an unwritable image cache's, given by each set of
    images decoded) only the first time."""
    shown: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: object = None, line: str | None = None) -> None:
        text = f"pneumoscan: warning: {message}"
        if text not in shown:
            shown.add(text)
            print(text, file=sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user mistakes become one line on stderr and exit code 2, never a traceback."""
    args = _parse_args(build_parser(), list(sys.argv[1:] if argv is None else argv))
    if sys.stdout is None and _result_on_stdout(args):  # `>&-`: the output would be lost
        print(f"pneumoscan: error: stdout is closed, so the output of {args.command} would be lost; send it to a "
              f"file (> out.txt) or to /dev/null", file=sys.stderr)
        return 2
    if sys.stdout is None:
        _fill_closed_descriptor(1)
    from pneumoscan.data.decode import quiet_decoder_warnings
    from pneumoscan.stdout import whole_writes

    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 prints escaped (\udcf6), not as a traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")

    quiet_decoder_warnings()
    shown, warnings.showwarning = warnings.showwarning, _one_line_warnings()
    try:
        # messages name --flags, even from the code a notebook calls (a Predictor); stdout is written whole or fails
        with cli_words(), whole_writes():
            return _run(args)
    finally:
        warnings.showwarning = shown


def _result_on_stdout(args: argparse.Namespace) -> bool:
    """Whether what the command is run for is what it prints (a closed stdout would lose it): `predict`, `models`,
    `card`, `docs`, `cache` without --clear, `--json -`, and `audit` and `evaluate` without `--json FILE` (evaluate's
    --predictions CSV is a by-product: the printout is what it is run for); not a command whose result is files
    (`export`, `set-threshold`, `report`, `train`, ...: its stdout only tells of them)."""
    if getattr(args, "json", None) == "-" or args.command in ("predict", "models", "card", "docs"):
        return True
    if args.command == "cache":
        return not args.clear
    if args.command in ("audit", "evaluate"):
        return not args.json
    return False


def _fill_closed_descriptor(fd: int) -> None:
    """Open /dev/null as file descriptor FD when it is closed (`>&-`): else the first file the command opens (its
    output's temporary file) would take it, and whatever a library prints to it would go into that file."""
    try:
        os.fstat(fd)
    except OSError:
        _to_devnull(fd)


def _to_devnull(fd: int) -> None:
    """Point file descriptor FD at /dev/null: what is written to it goes nowhere, without an error."""
    null = os.open(os.devnull, os.O_WRONLY)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def _parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """`parser.parse_args`, except that a file name after predict's --csv or --json (which print to stdout, while
    evaluate's --json takes a file) is refused saying how to write the file: one left over (after the films), or
    one ending in .csv or .json taken for a film (before them), which no film is; and a '-' after them (the stdout
    of the other commands' --json -) saying to leave it out; and a film given as '-', saying to give /dev/stdin."""
    args, extra = parser.parse_known_args(argv)
    if args.command == "predict":
        for before, token in zip(argv, argv[1:]):
            if before in ("--csv", "--json") and token == "-":
                _command_parser(parser, "predict").error(
                    f"{before} prints to stdout already and takes no file name; leave out the '-' after it")
            named = extra[:1] == [token] or Path(token).suffix.lower() in (".csv", ".json")
            if before in ("--csv", "--json") and named:
                _command_parser(parser, "predict").error(
                    f"{before} prints to stdout and takes no file name ({token}); write the file with "
                    f"`pneumoscan predict ... {before} > {shell_word(token)}`")
        if "-" in args.paths and not Path("-").exists():  # the Unix way to say 'standard input'
            _command_parser(parser, "predict").error(
                "'-' is not a film: predict reads files, not standard input; for a film piped in, give /dev/stdin "
                "(`... | pneumoscan predict /dev/stdin`)")
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _command_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of one command (`pneumoscan NAME`)."""
    (sub,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return sub.choices[name]


def _resume_hint(args: argparse.Namespace) -> str:
    """After Ctrl+C or a failed write: the command that continues this training or pretraining run, if it saved
    something to continue."""
    if args.command not in ("train", "pretrain"):
        return ""
    from pneumoscan.artifact import PRETRAIN_CHECKPOINT

    if args.command == "train" and (Path(args.out) / "config.json").is_file():
        return f"; continue the run with `pneumoscan train --out {shell_word(args.out)} --resume`"
    if args.command == "pretrain" and (Path(args.out) / PRETRAIN_CHECKPOINT).is_file():
        return (f"; continue it with `pneumoscan pretrain --data {shell_word(args.data)} --out {shell_word(args.out)} "
                f"--resume` and the options it was started with")
    return f"; nothing was saved in {args.out} yet: start the run again"


def _run(args: argparse.Namespace) -> int:
    """The chosen command, with its failures turned into one line and an exit code; `train` and `pretrain` take
    SIGTERM (`kill PID`, a scheduler's stop) as Ctrl+C, saying so and how to resume, with exit code 143."""
    stops = args.command in ("train", "pretrain") and threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    if stops:
        signal.signal(signal.SIGTERM, raise_terminated)
    try:
        return _run_command(args)
    finally:
        if stops:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_command(args: argparse.Namespace) -> int:
    """`_run` without its SIGTERM handler."""
    try:
        code = args.func(args)
        if sys.stdout is not None:  # None: closed (`>&-`), for a command whose result is files
            sys.stdout.flush()  # here, not at exit: a full disk under `> FILE` must get its line too
        return code
    except WriteError as err:  # e.g. a full disk: the files written before are whole, so a run can continue
        _tell(f"pneumoscan: error: {err}{_resume_hint(args)}")
        return 2
    except RefusedFilm as err:  # the guard's verdict on the film, not a mistake: exit 1 as `predict` does
        _tell(f"pneumoscan: error: {err}")
        return 1
    except PneumoscanError as err:
        _tell(f"pneumoscan: error: {err}")
        return 2
    except Warning as err:  # the user asked to stop on warnings: the warning's one line, not a traceback
        _tell(f"pneumoscan: error: {one_line(str(err)) or type(err).__name__} (a warning, which -W error or "
              f"PYTHONWARNINGS=error makes an error: exit code {EXIT_WARNING_AS_ERROR}){_resume_hint(args)}")
        return EXIT_WARNING_AS_ERROR
    except BrokenPipeError:  # e.g. `pneumoscan predict DIR | head`
        _to_devnull(sys.stdout.fileno())
        return 1
    except OSError as err:  # e.g. --out or --json in a folder that cannot be created or written
        if err.filename is None and err.errno in _DISK_FULL:  # files written by name say so: this is stdout
            _tell(f"pneumoscan: error: {_stdout_name()}: {err.strerror}; the output is cut short: "
                  f"{_DISK_FULL_FIX.get(err.errno, _DISK_FULL_FIX[errno.ENOSPC])}"
                  f"{_resume_hint(args) or ' and run the command again'}")
            _to_devnull(sys.stdout.fileno())  # no second failure at exit
            return 2
        if err.filename is None:
            raise
        reason = "a file where a folder is needed" if isinstance(err, (FileExistsError, NotADirectoryError)) and \
            Path(err.filename).is_file() else (err.strerror or str(err))
        _tell(f"pneumoscan: error: {err.filename}: {reason}; check the path and its permissions")
        return 2
    except KeyboardInterrupt as err:  # a command may say what was done before it ('after FILE was written: ...')
        by, code = interruption(err)
        if by and signal.getsignal(signal.SIGTERM) is raise_terminated:  # a second one must not cut this report
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        done = f" {err}" if str(err) else ""
        _tell(f"pneumoscan: interrupted{by}{done}{_resume_hint(args)}")
        return code
    except (RuntimeError, MemoryError) as err:
        if gpu_out_of_memory(err):
            _tell(f"pneumoscan: error: {_out_of_memory_advice(args, err)}{_resume_hint(args)}")
            return 2
        if not host_out_of_memory(err):
            raise
        # numpy's allocations and torch's CPU allocator say how much they wanted
        reason = f" ({one_line(memory_reason(err), MAX_REASON)})" if str(err) else ""
        _tell(f"pneumoscan: error: the machine ran out of memory{reason}; close other programs, or "
              f"{_host_memory_way(args)}, and try again{_resume_hint(args)}")
        return 2


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# what frees room for the rest, by errno: a size limit per file is not lifted by free space
_DISK_FULL_FIX = {errno.ENOSPC: "free space (or write it elsewhere)",
                  errno.EDQUOT: "free space within your disk quota (or write it elsewhere)",
                  errno.EFBIG: "the file reached a size limit (a `ulimit -f` limit, or FAT32's 4 GB per file): raise "
                               "the limit (or write it to another disk)"}


def _tell(line: str) -> None:
    """LINE on stderr, for the command's outcome: a stderr that cannot take it (on the same full disk as stdout,
    `> log 2>&1`) is passed over, so the exit code still says what happened."""
    try:
        print(line, file=sys.stderr)
    except (OSError, ValueError, AttributeError):  # a full disk; a closed or missing stderr
        with contextlib.suppress(OSError, ValueError, AttributeError):
            _to_devnull(sys.stderr.fileno())
            sys.stderr.flush()  # what the failed write left, into /dev/null rather than a failure at exit


def _stdout_name() -> str:
    """What stdout writes to, as a message names it: 'stdout (/home/amy/out.csv)', its full path, for `> out.csv`; else
    'stdout'."""
    try:
        return f"stdout ({one_name(os.readlink(f'/proc/self/fd/{sys.stdout.fileno()}'))})"
    except (OSError, ValueError, AttributeError):  # no /proc (macOS, Windows), or no file descriptor
        return "stdout"


def _smaller_batch(args: argparse.Namespace) -> str | None:
    """The command's smaller batch as a way out of memory ('lower --batch-size ...'), None when it has no batch size."""
    if not hasattr(args, "batch_size"):
        return None
    if args.command in ("train", "pretrain"):  # each film's memory grows with the square of --image-size
        return (f"lower {option('batch_size')} or {option('image_size')} in a new {option('out')} (a resume keeps "
                f"the run's)")
    return f"lower {option('batch_size')}"


def _host_memory_way(args: argparse.Namespace) -> str:
    """What the user can change for the command the machine ran out of memory in: its batch size, else how many films
    it reads (fit-guard's --max-images), else the films given."""
    if hasattr(args, "max_images") and not hasattr(args, "batch_size"):
        return f"fit on fewer films ({option('max_images')})"
    return _smaller_batch(args) or "give fewer or smaller films"


def _out_of_memory_advice(args: argparse.Namespace, err: BaseException) -> str:
    """One line for a command the GPU ran out of memory in: torch's reason, and the ways out (the command's smaller
    batch, ONNX Runtime, or the CPU with the GPU hidden)."""
    ways = ["free it (`nvidia-smi` lists the processes holding it)"]
    batch = _smaller_batch(args)
    if batch:
        ways.append(batch)
    if hasattr(args, "backend"):
        ways.append(f"pass {option('backend', 'onnx')} (ONNX Runtime, on the CPU)")
    ways.append(f"run it on the CPU with the GPU hidden: `CUDA_VISIBLE_DEVICES= pneumoscan {args.command} ...`")
    return out_of_memory_text(err, ways)


def entry() -> None:
    """The `pneumoscan` program (and `python -m pneumoscan`): `main`, then exit with its code.

    Ctrl+C is ignored once the command is done: in the second or so Python then takes to shut down (torch's clean-up)
    it killed the process silently with exit code 130 after a finished command, or printed a traceback.
    """
    code = None
    try:
        code = main()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt as err:  # while the command line was read, or just after the command returned its code
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if code is None:
            by, code = interruption(err)
            print(f"pneumoscan: interrupted{by}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    entry()
