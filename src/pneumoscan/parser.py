"""The `pneumoscan` command line's parser: the commands, each area's from its `commands` module, and the checks
argparse cannot make."""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from pneumoscan import __version__
from pneumoscan.errors import first_names, one_name, shell_word

# Each module defines `add_commands(subparsers)`; their heavy imports happen inside the handlers. These add their
# commands after those `build_parser` adds first (models to predict).
COMMAND_MODULES = (
    "pneumoscan.training.commands",
    "pneumoscan.report.commands",
    "pneumoscan.explain.commands",
    "pneumoscan.export.commands",
    "pneumoscan.service.commands",
    "pneumoscan.inference.ood_commands",
    "pneumoscan.data.cache_commands",
)


def build_parser() -> argparse.ArgumentParser:
    """Every command's parser, in the order `pneumoscan --help` lists them."""
    from pneumoscan.data import commands as data_commands
    from pneumoscan.evaluation import commands as evaluation_commands
    from pneumoscan.inference import commands as inference_commands
    from pneumoscan.models import commands as model_commands
    from pneumoscan.training.commands import add_train_command

    parser = argparse.ArgumentParser(prog="pneumoscan",
                                     description="The `pneumoscan` command line: pneumonia on chest X-rays.")
    parser.add_argument("--version", action="version", version=f"pneumoscan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model_commands.add_commands(sub)  # models, card, docs
    data_commands.add_commands(sub)  # audit
    add_train_command(sub)
    evaluation_commands.add_commands(sub)  # evaluate, set-threshold
    inference_commands.add_commands(sub)  # predict
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


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """`parser.parse_args`, except that a file name after predict's --csv or --json (which print to stdout, while
    evaluate's --json takes a file) is refused saying how to write the file: one left over (after the films) that
    is no film or folder, or one ending in .csv or .json taken for a film (before them), which no film is; a '-'
    after them (the stdout of the other commands' --json -) or an empty one (an unset `"$OUT"`) saying to leave it
    out; films left over after an option, saying to give them first; and a film given as '-', saying to give
    /dev/stdin. Arguments left over are refused by the command's own parser, whose usage shows
    what it takes (the top-level usage, `pneumoscan [-h] [--version] COMMAND ...`, does not); several films given to
    explain, which draws one, say so and how to draw each."""
    _refuse_bare_data(parser, argv)
    args, extra = parser.parse_known_args(argv)
    if args.command == "predict":
        options = _command_parser(parser, "predict")._option_string_actions
        for given, token in zip(argv, argv[1:]):
            named = [name for name in options if name.startswith(given)] if given.startswith("--") else []
            before = named[0] if len(named) == 1 else given  # --cs is --csv, as argparse takes it
            if token == "--":  # the end of the options, no file name
                continue
            if before in ("--csv", "--json") and token in ("-", ""):  # '': `--csv "$OUT"`, OUT unset
                what = "'-'" if token else 'empty argument (an unset shell variable, as in `' + before + ' "$VAR"`?)'
                _command_parser(parser, "predict").error(
                    f"{before} prints to stdout already and takes no file name; leave out the {what} after it")
            suffix = Path(token).suffix.lower()
            named = extra[:1] == [token] and not (token and Path(token).exists()) or suffix in (".csv", ".json")
            if before in ("--csv", "--json") and named:
                _command_parser(parser, "predict").error(
                    f"{before} prints to stdout and takes no file name ({token}); write the file with "
                    f"`pneumoscan predict ... {before} > {shell_word(token)}`")
        if extra and extra != ["--"] and all(token and Path(token).exists() or token == "--" for token in extra):
            _command_parser(parser, "predict").error(_films_after_options(argv, args.paths, extra))
        if "-" in args.paths and not Path("-").exists():  # the Unix way to say 'standard input'
            _command_parser(parser, "predict").error(
                "'-' is not a film: predict reads files, not standard input; for a film piped in, give /dev/stdin "
                "(`... | pneumoscan predict /dev/stdin`)")
    if "" in extra and not any(token.startswith("-") for token in extra):  # argparse: 'unrecognized arguments: '
        _command_parser(parser, args.command).error(_empty("an argument", ""))
    if extra:
        before_command = argv[:argv.index(args.command)]  # `pneumoscan --bogus models`: the program's, not models'
        command = parser if set(extra) & set(before_command) else _command_parser(parser, args.command)
        if args.command == "explain" and not any(token.startswith("-") for token in extra):
            command.error(_several_films(args, extra))
        command.error(f"unrecognized arguments: {' '.join(token or shell_word(token) for token in extra)}")
    _refuse_empty(_command_parser(parser, args.command), args)
    return args


def _films_after_options(argv: list[str], paths: list[str], extra: list[str]) -> str:
    """predict's error for films or folders given after an option (`predict a.jpeg --csv b.jpeg`), which argparse
    leaves over: they are named, with the command giving every film first. (A file name after --csv would be the
    film itself, overwritten by `--csv > b.jpeg`.)"""
    at = argv.index(paths[-1], argv.index("predict") + 1) + 1  # argparse takes the films given first together
    rest = list(argv[at:])
    for token in extra:
        rest.remove(token)
    films = [token for token in extra if token != "--"]  # argparse leaves a '--' after the films over
    fixed = " ".join(shell_word(word) for word in ["pneumoscan", *argv[:at], *films, *rest])
    names = first_names([one_name(film) for film in films], 2)
    return (f"{names} after an option {'is a film or folder' if len(films) == 1 else 'are films or folders'}; "
            f"give every film before the options: `{fixed}`")


def _refuse_empty(command: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An argument given as '' (an unset shell variable: `--out "$RUN"`) is refused: as a path it is the current
    folder, so `train --out ""` wrote its run there and `predict ""` scored every image below it. `serve --host ''`
    is every address, as its help says, and is taken."""
    for action in command._actions:
        if action.dest == "host":
            continue
        value = getattr(args, action.dest, None)
        if value == "" or (isinstance(value, list) and "" in value):
            flag = action.option_strings[-1] if action.option_strings else ""
            command.error(_empty(flag or f"the {str(action.metavar or action.dest).upper()} argument", flag))


def _empty(name: str, flag: str) -> str:
    """The refusal of an argument given as '' (`name`; `flag` the option it is the value of, or '')."""
    unset = f'{flag} "$VAR"' if flag else '"$VAR"'
    return f"{name} is empty (an unset shell variable, as in `{unset}`?); give it a value"


def _as_model(path: Path) -> tuple[Path | None, str] | None:
    """What `--model` takes for `path` given where a film goes, and what `path` is; None when it is no model's: a run
    folder or a model file is itself, an ONNX export the model it was made from (X.safetensors beside X.onnx, as
    set-threshold writes them, else its run folder's; None with 'an ONNX export, not a model' when neither is there),
    and any other file of a run folder (best.safetensors, last.pt) that run folder. A pretraining (its folder,
    weights or checkpoint) is None with what --model says of it (`pretraining_refusal`). An image is never a model."""
    from pneumoscan.artifact import ARTIFACT_NAME, BEST_WEIGHTS, pretraining_refusal
    from pneumoscan.data.formats import IMAGE_EXTENSIONS

    if (refused := pretraining_refusal(path)) is not None:
        return None, refused.removeprefix(f"{path}: ")
    if path.is_dir():
        return (path, "a model") if (path / ARTIFACT_NAME).is_file() else None
    suffix = path.suffix.lower()
    if not path.is_file() or suffix in IMAGE_EXTENSIONS:
        return None
    run = path.parent if (path.parent / ARTIFACT_NAME).is_file() else None
    if suffix == ".onnx":
        made_from = [p for p in path.parent.iterdir() if p.stem == path.stem and p.suffix.lower() == ".safetensors"
                     and p != path.parent / ARTIFACT_NAME]  # RUN/model.onnx: the run's own, answered with the run
        if made_from:
            return made_from[0], f"the ONNX export of the model {one_name(str(made_from[0]))}"
        return ((run, f"the ONNX export of the run {one_name(str(run))}") if run else
                (None, "an ONNX export, not a model; give the model it was exported from (its run folder or "
                       ".safetensors file) as --model"))
    if suffix == ".safetensors" and (path.name != BEST_WEIGHTS or run is None):
        return path, "a model"
    return (run, f"a file of the run {one_name(str(run))}") if run else None


def _several_films(args: argparse.Namespace, extra: list[str]) -> str:
    """explain's error for the films after its first (`extra`), as a shell's `*.jpeg` gives them, with the command
    to draw each keeping the options given, naming the folders among them (a glob over a folder holding one); a path
    after the film that does not exist is said to be none (one .png with no --out is taken for a meant --out), and a
    model after it or before it, with no --model, is taken for a meant --model."""
    given = " ".join(f"{flag} {shell_word(str(value))}" for flag, value in (
        ("--model", args.model), ("--threshold", args.threshold), ("--target-recall", args.target_recall),
        ("--prevalence", args.prevalence)) if value is not None)
    options = f" {given}" if given else ""
    pair = [(args.image, extra[0]), (extra[0], args.image)] if len(extra) == 1 and args.model is None else []
    # `explain FILM RUN` or `explain RUN FILM`: --model forgotten (a loop over both would draw with the shipped
    # model); before the checks of a path that is no file, which the film may be
    found = [(film, given, model) for film, given in pair
             if (model := _as_model(Path(given))) is not None and _as_model(Path(film)) is None]
    if found:
        (film, given, (model, what)), = found
        where = "after it" if given == extra[0] else "before it"
        if model is None:
            return f"explain draws one film, and {one_name(given)} {where} is {what}"
        out = f" --out {shell_word(args.out)}" if args.out is not None else ""
        return (f"explain draws one film, and {one_name(given)} {where} is {what}; to draw with it, give "
                f"--model: `pneumoscan explain {shell_word(film)} --model {shell_word(str(model))}{options}{out}`")
    missing = [path for path in extra if not Path(path).exists()]
    if missing == extra and len(extra) == 1 and extra[0].lower().endswith(".png") and args.out is None:
        return (f"explain draws one film, and {one_name(extra[0])} after it is no file; to write the heatmap to it, "
                f"give --out: `pneumoscan explain {shell_word(args.image)}{options} --out {shell_word(extra[0])}`")
    if missing:  # a mistyped path is no second film to draw
        return (f"explain draws one film, and {first_names([one_name(path) for path in missing], 2)} after "
                f"it {'is no file' if len(missing) == 1 else 'are no files'}: file not found; check the path")
    films = [args.image, *extra]
    folders = [one_name(path) for path in films if Path(path).is_dir()]
    out = "; --out names one file" if args.out is not None else ""
    one = len(folders) == 1
    noted = (f"; {first_names(folders, 2)} {'is a directory' if one else 'are directories'}, not "
             f"{'an image file' if one else 'image files'}" if folders else "")
    return (f"explain draws one film at a time, and was given {len(films)} "
            f"({first_names([one_name(film) for film in films], 2)}){noted}; "
            f"run it once per film: `for f in FILMS; do pneumoscan explain \"$f\"{options}; done` (each writes NAME_heatmap.png{out})")


def _refuse_bare_data(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """An existing folder or .csv given bare to a command that takes its data only as --data and nothing bare
    (train, evaluate, set-threshold, pretrain, fit-guard; `audit DATA` and `predict FILMS` take theirs bare) is
    refused with the command as it should read: argparse said '--data is required' or 'unrecognized arguments'.
    Not when --data is given (the bare folder is something else, as a run meant for --model), nor for a run folder,
    nor when -h, --help or --version is given (anywhere), which argparse answers before any refusal."""
    from pneumoscan.outputs import RUN_MARKERS

    command = next((token for token in argv if not token.startswith("-")), None)
    (sub,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if command not in sub.choices or any(_answered(parser._option_string_actions, token)
                                         for token in argv[:argv.index(command)]):  # `pneumoscan -h train DATA`
        return
    options = sub.choices[command]._option_string_actions
    if "--data" not in options or any(not action.option_strings for action in sub.choices[command]._actions):
        return
    rest = argv[argv.index(command) + 1:]
    bare, at = None, 0
    while at < len(rest) and rest[at] != "--":
        token = rest[at]
        if token.startswith("-"):
            named = _matching(options, token)
            if named == [options["--data"]] or _answered(options, token):  # --data, --dat, --data=DATA; -h, --he
                return
            at += 1 if "=" in token or (named and all(action.nargs == 0 for action in named)) else 2
            continue
        path = Path(token)
        if bare is None and token and (path.is_dir() and not any((path / name).is_file() for name in RUN_MARKERS)
                                       or path.is_file() and token.lower().endswith(".csv")):
            bare = at
        at += 1
    if bare is not None:
        fixed = " ".join(shell_word(word) for word in ["pneumoscan", *argv[:argv.index(command) + 1 + bare], "--data",
                                                         *rest[bare:]])
        sub.choices[command].error(f"{rest[bare]}: the data is given with --data, not bare: `{fixed}`")


def _matching(options: dict[str, argparse.Action], token: str) -> list[argparse.Action]:
    """The actions of `options` whose names `token` (an option, `--opt=VALUE` too) is or abbreviates, as argparse
    takes `--dat` for --data."""
    return [action for name, action in options.items() if name.startswith(token.split("=")[0])]


def _answered(options: dict[str, argparse.Action], token: str) -> bool:
    """Whether `token` is (an abbreviation of) -h, --help or --version among `options`, which argparse answers
    before it checks any argument."""
    named = _matching(options, token)
    return token.startswith("-") and bool(named) and all(
        isinstance(action, (argparse._HelpAction, argparse._VersionAction)) for action in named)


def _command_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of one command (`pneumoscan NAME`)."""
    (sub,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return sub.choices[name]
