"""README.md, docs/*.md and MODEL_CARD.md against the code: every command line they show (`pneumoscan ...`, `python bench/X.py
...`, `make ...`) parses with the real parser, never run; every flag, `make` target, `PNEUMOSCAN_*` variable and
bench/, src/ or sample/ path they name exists; README.md and docs/*.md together name every subcommand and flag that
`--help` offers and every `PNEUMOSCAN_*` variable src/ reads; every default a `--help` text or a guide states is the
one the code uses; every relative link leads to a file and heading that exist; the commands bench/results/*.md show
parse; and the figures the docs state (the model card's tables, the comparison table of docs/benchmarks.md, the prose
that restates a benchmark or the shipped model file) are those recorded in bench/results/*.json and in the shipped
model, as rounded in the doc. Each check reads the file that states its fact. Failures name the doc, the line and the
problem."""
from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import importlib
import inspect
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from pneumoscan.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
GUIDES = ("README.md", *sorted(f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md")))  # the user's guides
DOCS = (*GUIDES, "MODEL_CARD.md")
DATA_DOC, TRAINING_DOC, EVALUATION_DOC = "docs/data.md", "docs/training.md", "docs/evaluation.md"
SERVICE_DOC, API_DOC, BENCHMARKS_DOC = "docs/service.md", "docs/python-api.md", "docs/benchmarks.md"
SHELL_SEPARATORS = {"&&", "||", ";", "|", "&"}
REDIRECTIONS = {">", ">>", "<", ">&", "&>", ">|"}
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*")  # IMAGE, RUN, DIR, N
ENV_VAR = re.compile(r"PNEUMOSCAN_[A-Z0-9_]+")
COMMAND_WORD = re.compile(r"(^|[\s/])((pneumoscan|make)\s+\S|python3?\s+bench/)")  # also after `VAR=x`, `&&`, `.venv/bin/`
# a span of prose that is a command: `pneumoscan ...`, `OMP_NUM_THREADS=1 pneumoscan ...`, `/usr/bin/time -v pneumoscan
# ...`, `.venv/bin/python bench/X.py`, `make demo`, or a bench script named bare with its flags (`ablation.py --add ...`)
INLINE_COMMAND = re.compile(r"(\w+=\S*\s+)*((\S*/)?time\s+(-\S+\s+)*)?(\S*/)?((pneumoscan|make)\s+\S|python3?\s+bench/|\w+\.py\s+-)")


@dataclass(frozen=True)
class DocCommand:
    """One command line shown in a doc: `kind` is pneumoscan, bench or make; `args` follow the command word (for
    bench, the script first)."""
    doc: str
    line: int
    shown: str
    kind: str
    args: tuple[str, ...]
    elided: bool  # written with `...` (or as a bare `pneumoscan SUB` in prose): required arguments may be left out

    def where(self) -> str:
        return f"{self.doc}:{self.line}: `{self.shown}`"


# -- extraction ----------------------------------------------------------------------------------
def line_of(text: str, part: str) -> int:
    """The 1-based line of `text` on which `part` first starts."""
    assert part in text, f"{part!r} is not in the text"
    return text[:text.index(part)].count("\n") + 1


def split_doc(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(code lines, prose lines), each as (1-based line number, text): fenced blocks and indented blocks after a
    blank line are code."""
    code, prose = [], []
    fence = None
    previous_blank, in_indented = True, False
    for number, line in enumerate(text.splitlines(), 1):
        marker = re.match(r"\s*(```|~~~)", line)
        if fence is None and marker:
            fence = marker.group(1)
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            else:
                code.append((number, line))
        elif re.match(r"( {4,}|\t)\S", line) and (previous_blank or in_indented):
            in_indented = True
            code.append((number, line))
        else:
            in_indented = False
            prose.append((number, line))
        previous_blank = not line.strip()
    return code, prose


def code_lines(code: list[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """Logical shell lines: comments (`#` at a word's start) removed, `\\` continuations joined, blank ones left out;
    each numbered by its first line."""
    start, parts = None, []
    for number, line in code:
        line = re.sub(r"(^|\s)#.*$", "", line).rstrip()
        if start is None:
            start = number
        continued = line.endswith("\\")
        parts.append(line[:-1] if continued else line)
        if not continued:
            joined = " ".join(p.strip() for p in parts).strip()
            if joined:
                yield start, joined
            start, parts = None, []
    if parts and " ".join(parts).strip():
        yield start, " ".join(p.strip() for p in parts)


def inline_spans(prose: list[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """`code` spans of the prose, also those wrapped over lines within a paragraph, with the line they start on."""
    paragraphs: list[list[tuple[int, str]]] = [[]]
    for number, line in prose:
        follows = paragraphs[-1] and paragraphs[-1][-1][0] == number - 1
        if paragraphs[-1] and (not line.strip() or not follows):  # a blank line or a code block ends a paragraph
            paragraphs.append([])
        if line.strip():
            paragraphs[-1].append((number, line))
    for paragraph in paragraphs:
        text = "\n".join(line for _, line in paragraph)
        for match in re.finditer(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", text, re.S):
            yield paragraph[text.count("\n", 0, match.start())][0], " ".join(match.group(2).split())


def shell_words(line: str) -> list[str]:
    """The words of a shell line, with `&&`, `|`, `>` and the like as words of their own."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    return list(lexer)


def segments(words: list[str]) -> Iterator[list[str]]:
    """The simple commands of a shell line: split at `&&`, `||`, `;`, `|`, without redirections."""
    current: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in SHELL_SEPARATORS:
            yield current
            current = []
        elif word in REDIRECTIONS:
            skip = True  # and its target
            if current and current[-1].isdigit():
                current.pop()  # the 2 of 2>
        else:
            current.append(word)
    yield current


def as_command(doc: str, line: int, shown: str, words: list[str], bare_ok: bool) -> DocCommand | None:
    """The DocCommand of one simple command, or None when it runs neither pneumoscan, a bench script nor make.
    Leading `VAR=value` words and `time` are skipped; `...` marks an elision; `[...]` brackets (optional parts) are
    dropped and their contents kept."""
    i = 0
    while i < len(words) and re.fullmatch(r"[A-Za-z_]\w*=\S*", words[i]):
        i += 1
    if i < len(words) and words[i].rsplit("/", 1)[-1] == "time":
        i += 1
        while i < len(words) and words[i].startswith("-"):
            i += 1
    rest = words[i:]
    if not rest:
        return None
    head = rest[0].rsplit("/", 1)[-1]
    words = [w.strip("[]") for w in rest[1:]]
    elided = any(w.endswith(("...", "…")) for w in words)
    args = [a for a in (w.rstrip(".…") if w.endswith(("...", "…")) else w for w in words) if a]
    if head == "pneumoscan":
        kind = "pneumoscan"
        elided = elided or (bare_ok and len(args) == 1)
    elif head in ("python", "python3") and args and args[0].startswith("bench/"):
        kind = "bench"
    elif head == "make":
        kind = "make"
    elif bare_ok and re.fullmatch(r"\w+\.py", rest[0]) and (BENCH / rest[0]).is_file():
        kind, args = "bench", [f"bench/{rest[0]}", *args]
    else:
        return None
    return DocCommand(doc, line, shown, kind, tuple(args), elided)


def doc_commands(doc: str, text: str) -> list[DocCommand]:
    """Every pneumoscan, `python bench/...` and `make` command line of a markdown doc: in code blocks, and in inline
    `code` spans that start with one."""
    code, prose = split_doc(text)
    sources = [(n, line, False) for n, line in code_lines(code)]
    sources += [(n, span, True) for n, span in inline_spans(prose)]
    return shell_commands(doc, sources)


def shell_commands(doc: str, sources: list[tuple[int, str, bool]]) -> list[DocCommand]:
    """The commands in (line number, shell line, inline) sources; inline ones must start with the command."""
    commands = []
    for number, line, inline in sources:
        if inline and not INLINE_COMMAND.match(line):
            continue  # a span that is no command: `pneumoscan.cli`, `--resume`
        if not inline and not COMMAND_WORD.search(line):
            continue  # a code line that runs none: the layout tree, `mkdir`
        try:
            words = shell_words(line)
        except ValueError as err:
            commands.append(DocCommand(doc, number, line, "unsplittable", (str(err),), False))
            continue
        for segment in segments(words):
            command = as_command(doc, number, line, segment, bare_ok=inline)
            if command is not None:
                commands.append(command)
    return commands


# -- checks --------------------------------------------------------------------------------------
class ParseFailure(Exception):
    """argparse's error message, raised instead of printing it and exiting."""


def _all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def _fill_placeholders(parser: argparse.ArgumentParser, args: list[str]) -> list[str]:
    """`args` with a placeholder (N, SEED) given to a number-valued option replaced by 1, so it parses."""
    actions = {o: a for p in _all_parsers(parser) for o, a in p._option_string_actions.items()}
    filled = list(args)
    for i, arg in enumerate(args):
        option, _, value = arg.partition("=")
        action = actions.get(option)
        if action is None or action.type not in (int, float):
            continue
        if value and PLACEHOLDER.fullmatch(value):
            filled[i] = f"{option}=1"
        elif not value and i + 1 < len(args) and PLACEHOLDER.fullmatch(args[i + 1]):
            filled[i + 1] = "1"
    return filled


def parse_problem(parser: argparse.ArgumentParser, args: list[str], elided: bool) -> str | None:
    """What argparse says against `args` (parsed, never run), or None. Abbreviated flags count as unknown: the docs
    must name a flag in full. With `elided`, missing required arguments are fine."""

    def fail(message: str) -> None:
        raise ParseFailure(message)

    for each in _all_parsers(parser):
        each.error = fail  # type: ignore[method-assign]
        each.allow_abbrev = False
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            parser.parse_args(_fill_placeholders(parser, args))
    except ParseFailure as err:
        message = str(err)
        if elided and message.startswith("the following arguments are required"):
            return None
        return message
    except SystemExit as err:  # --help, --version
        return None if err.code in (0, None) else f"exit code {err.code}: {out.getvalue().strip()}"
    return None


@contextlib.contextmanager
def bench_importable() -> Iterator[None]:
    """bench/ on sys.path (its scripts import each other by bare name, such as `load` or `ood`): other modules of
    those names are set aside meanwhile, and the scripts' modules forgotten afterwards."""
    names = {path.stem for path in BENCH.glob("*.py")}
    aside = {name: sys.modules.pop(name) for name in names & set(sys.modules)}
    sys.path.insert(0, str(BENCH))
    try:
        yield
    finally:
        sys.path.remove(str(BENCH))
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(aside)


@functools.cache
def bench_build_parser(script: str) -> Callable[[], argparse.ArgumentParser] | None:
    """The `build_parser` of bench/SCRIPT.py, or None when it has none; each script imported once."""
    with bench_importable():
        return getattr(importlib.import_module(script), "build_parser", None)


def bench_problem(command: DocCommand) -> str | None:
    """A `python bench/X.py ...` command: the script exists and its own parser accepts the arguments."""
    script, args = command.args[0], list(command.args[1:])
    path = ROOT / script
    if PLACEHOLDER.fullmatch(path.stem) and path.parent == BENCH:
        return None  # `bench/NAME.py`: any benchmark
    if path.parent != BENCH or not path.is_file():
        return f"{script} does not exist"
    build = bench_build_parser(path.stem)
    if build is None:
        return f"{script} has no build_parser() to check its arguments against"
    return parse_problem(build(), args, command.elided)


def make_targets() -> set[str]:
    targets = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"([^\s#=:][^=:#]*?)\s*::?(?!=)", line)
        if match:
            targets.update(match.group(1).split())
    return targets


def makefile_commands(text: str) -> list[DocCommand]:
    """The pneumoscan commands of the Makefile's recipes (`make demo`'s), its `$(VARIABLES)` expanded."""
    variables = dict(re.findall(r"(?m)^(\w+)\s*[:?]?=\s*(.*?)\s*$", text))

    def expand(line: str) -> str:
        for _ in range(5):  # BIN := $(VENV)/bin
            line = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(1)), line)
        return line.replace("$$", "$")

    recipe = [(n, expand(line[1:].lstrip("@"))) for n, line in enumerate(text.splitlines(), 1) if line.startswith("\t")]
    return shell_commands("Makefile", [(n, line, False) for n, line in code_lines(recipe)])


def make_problem(command: DocCommand) -> str | None:
    wanted = [a for a in command.args if not a.startswith("-") and "=" not in a]
    missing = [t for t in wanted if t not in make_targets()]
    return f"no Makefile target {', '.join(missing)}" if missing else None


def command_problem(command: DocCommand) -> str | None:
    if command.kind == "unsplittable":
        return f"cannot be split like a shell line ({command.args[0]})"
    if command.kind == "pneumoscan":
        return parse_problem(build_parser(), list(command.args), command.elided)
    if command.kind == "bench":
        return bench_problem(command)
    return make_problem(command)


@functools.cache
def env_vars_read_in_src() -> frozenset[str]:
    """The `PNEUMOSCAN_*` names that src/ spells as a whole string (the way `os.environ.get` takes them)."""
    names = set()
    for path in (ROOT / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and ENV_VAR.fullmatch(node.value):
                names.add(node.value)
    return frozenset(names)


@functools.cache
def known_options() -> frozenset[str]:
    """Every flag of pneumoscan and of the bench scripts."""
    options = {o for p in _all_parsers(build_parser()) for o in p._option_string_actions}
    for path in sorted(BENCH.glob("[!_]*.py")):
        build = bench_build_parser(path.stem)
        if build is not None:
            options.update(build()._option_string_actions)
    return frozenset(options)


def doc_problems(doc: str, text: str) -> list[str]:
    """Every mismatch between one doc's text and the code, each as `DOC:LINE: what: problem`."""
    problems = [f"{c.where()}: {problem}" for c in doc_commands(doc, text) if (problem := command_problem(c))]
    options = known_options()
    read = env_vars_read_in_src()
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", line):  # also in prose: "`--aug-zoom` sets ..."
            if flag not in options:
                problems.append(f"{doc}:{number}: {flag} is an option of neither pneumoscan nor a bench script")
        for name in sorted(set(ENV_VAR.findall(line)) - read):
            problems.append(f"{doc}:{number}: ${name} is read nowhere in src/")
        for path in re.findall(r"(?<![\w/.])(?:(?:bench|src|sample)/[\w./-]*\w|pneumoscan/[\w/]+\.py)", line):
            local = ROOT / ("src/" if path.startswith("pneumoscan/") else "") / path
            if not any(PLACEHOLDER.fullmatch(Path(part).stem) for part in Path(path).parts) and not local.exists():
                problems.append(f"{doc}:{number}: {path} does not exist")
        if line.startswith("|"):  # the benchmark table names scripts without bench/
            for script in re.findall(r"`(\w+)\.py`", line):
                if not (BENCH / f"{script}.py").is_file():
                    problems.append(f"{doc}:{number}: `{script}.py`: no such script in bench/")
    return problems


def mentioned(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def guides_text() -> str:
    """README.md and docs/*.md as one text: where a command or flag is documented."""
    return "\n".join((ROOT / doc).read_text() for doc in GUIDES)


def undocumented(readme: str) -> list[str]:
    """The subcommands and flags that `pneumoscan --help` and `pneumoscan SUB --help` offer and the guides (README.md
    and docs/*.md, as `guides_text()`) never name (a flag counts when any of its spellings does: --crop / --no-crop,
    -h / --help)."""
    parser = build_parser()
    missing = []
    commands = {"": parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            commands.update(action.choices)
    for name, sub in commands.items():
        if name and not re.search(rf"pneumoscan {re.escape(name)}(?![\w-])", readme):
            missing.append(f"pneumoscan {name}")
        for action in sub._actions:
            if action.option_strings and action.help != argparse.SUPPRESS and \
                    not any(mentioned(readme, o) for o in action.option_strings):
                missing.append(f"pneumoscan {name + ' ' if name else ''}{'/'.join(action.option_strings)}")
    return missing


def env_vars_undocumented(readme: str) -> list[str]:
    return sorted(env_vars_read_in_src() - set(ENV_VAR.findall(readme)))


RESULTS = BENCH / "results"
UNQUOTED_ARGV = re.compile(r"\" \"\.join\(\s*(sys\.argv|argv)")  # `" ".join(sys.argv[1:])`: a label with spaces splits


def results_problems(name: str, text: str) -> list[str]:
    """The commands a bench/results/NAME.md shows (the one that wrote it, the sources of carried-over rows) that do
    not parse with their script's parser, as for the docs."""
    return [f"{c.where()}: {problem}" for c in doc_commands(name, text) if (problem := command_problem(c))]


def unquoted_argv_joins(text: str) -> list[int]:
    """Lines of a bench script that record its command line by joining argv with spaces instead of shlex.join."""
    return [text.count("\n", 0, m.start()) + 1 for m in UNQUOTED_ARGV.finditer(text)]


NUMBER = r"([0-9][0-9,]*(?:\.[0-9]+)?)"  # a number in prose, not the full stop after it
METRICS_BLOCK = re.compile(r"<!-- metrics:start -->(.*?)<!-- metrics:end -->", re.S)


def shown_as(value: float, text: str) -> bool:
    """`text` is `value` rounded to the decimals `text` shows (`0.9848` for 0.98479; `1,600` for 1600.0)."""
    decimals = len(text.partition(".")[2])
    return abs(value - float(text.replace(",", ""))) <= 0.5 * 10 ** -decimals + 1e-9


def default_model_results() -> tuple[dict[str, dict], dict[str, str]]:
    """bench/results/default_model.json: its rows by metric, and the numbers of its note (threshold, TN FP FN TP)."""
    recorded = json.loads((RESULTS / "default_model.json").read_text())
    note = recorded["meta"]["note"]
    numbers = dict(re.findall(r"\b(threshold|TN|FP|FN|TP) ([0-9]+(?:\.[0-9]+)?)", note))
    return {row["metric"]: row for row in recorded["rows"]}, numbers


def metrics_table_problems(card: str) -> list[str]:
    """MODEL_CARD.md's test table (between the metrics markers) against bench/results/default_model.json: every value
    and interval as rounded there, the threshold and the confusion counts."""
    rows, note = default_model_results()
    block = METRICS_BLOCK.search(card)
    if block is None:
        return ["MODEL_CARD.md: no <!-- metrics:start --> ... <!-- metrics:end --> table"]
    problems, seen = [], set()
    for line in block.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("metric", "---"):
            continue
        cause = re.fullmatch(r"recall, (\w+) \(n=\d+\)", cells[0])
        key = f"recall_{cause.group(1)}" if cause else cells[0]
        seen.add(key)
        row = rows.get(key)
        if row is None:
            problems.append(f"MODEL_CARD.md: test table row {cells[0]!r} is not in default_model.json")
            continue
        if not shown_as(row["value"], cells[1]):
            problems.append(f"MODEL_CARD.md: test table {cells[0]} {cells[1]}, default_model.json {row['value']:.6f}")
        interval = re.findall(NUMBER, cells[2])
        if row["ci95"] is not None and (len(interval) != 2 or
                                        not all(shown_as(v, s) for v, s in zip(row["ci95"], interval))):
            problems.append(f"MODEL_CARD.md: test table {cells[0]} interval {cells[2]}, default_model.json "
                            f"[{row['ci95'][0]:.6f}, {row['ci95'][1]:.6f}]")
    missing = [k for k, row in rows.items() if row["ci95"] is not None or k.startswith("recall_")]
    problems += [f"MODEL_CARD.md: test table lacks {k} of default_model.json" for k in missing if k not in seen]
    counts = re.search(rf"Threshold {NUMBER}; confusion matrix on {NUMBER} images: TN {NUMBER}, FP {NUMBER}, "
                       rf"FN {NUMBER}, TP {NUMBER}\.", block.group(1))
    if counts is None:
        return problems + ["MODEL_CARD.md: the test table has no 'Threshold T; confusion matrix on N images: ...' line"]
    threshold, n, *matrix = counts.groups()
    if threshold != note["threshold"]:
        problems.append(f"MODEL_CARD.md: test table threshold {threshold}, default_model.json {note['threshold']}")
    recorded = [note[k] for k in ("TN", "FP", "FN", "TP")]
    if matrix != recorded or int(n) != sum(map(int, recorded)):
        problems.append(f"MODEL_CARD.md: test table confusion matrix {n} images {matrix}, default_model.json {recorded}")
    return problems


def card_prose_problems(card: str) -> list[str]:
    """The MODEL_CARD.md sentences that restate default_model.json figures, against it (as rounded there)."""
    rows, _ = default_model_results()
    value = {k: row["value"] for k, row in rows.items()}
    pct = {k: 100 * v for k, v in value.items()}
    statements = [  # (pattern with NUMBER groups, the recorded values they state)
        (rf"this model meets two: sensitivity {NUMBER} and accuracy {NUMBER}\. AUC {NUMBER} is",
         [value["recall"], value["accuracy"], value["roc_auc"]]),
        (rf"its interval, \[{NUMBER}, {NUMBER}\], holds it\), and specificity {NUMBER} falls short",
         [*rows["roc_auc"]["ci95"], value["specificity"]]),
        (rf"the shipped model moved them a little further: median P {NUMBER}, {NUMBER} % at or above 0\.5, {NUMBER} % "
         rf"at or above the threshold; validation normals: median {NUMBER}, {NUMBER} % at or above 0\.5, {NUMBER} % at "
         rf"or above the threshold",
         [value["test_normal_median_p"], pct["test_normal_share_p_at_least_0.5"],
          pct["test_normal_share_at_or_above_threshold"], value["val_normal_median_p"],
          pct["val_normal_share_p_at_least_0.5"], pct["val_normal_share_at_or_above_threshold"]]),
        (rf"Bacterial pneumonia is missed more often than viral on test \(recall {NUMBER} vs {NUMBER};",
         [value["recall_bacteria"], value["recall_virus"]]),
        (rf"\(specificity {NUMBER}\), and {NUMBER} % score at or above 0\.5",
         [value["specificity"], pct["test_normal_share_p_at_least_0.5"]]),
    ]
    text = " ".join(card.split())
    problems = []
    for pattern, recorded in statements:
        match = re.search(pattern, text)
        if match is None:
            problems.append(f"MODEL_CARD.md no longer says {pattern!r}: update this check with it")
        elif not all(shown_as(v, s) for v, s in zip(recorded, match.groups())):
            problems.append(f"MODEL_CARD.md states {match.group(0)!r}; default_model.json: "
                            + ", ".join(f"{v:.4f}" for v in recorded))
    return problems


HELP_DEFAULT = re.compile(r"\bdefault:? ([\w.+-]*\w)")  # "(default 30)", "(default: resnet10)", "(default on)"
README_DEFAULT = re.compile(  # "`--batch-size` (64)", "`--consistency`, 10", "`--epochs` 15", "`--lr` (AdamW's ..., 2e-3)",
    # "`--n-boot` resamples, 1000", and a table row "| `--slots` | 2 |" (option, then its default)
    r"`(--[a-z][\w-]*)`(?: \((?:[^()`,]*, )?(?:default )?|, | (?:bootstrap )?resamples[ ,(]+| \| | )"
    r"([0-9][0-9.e-]*[0-9]|[0-9])(?![\w.-]*[a-zA-Z/%])")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    commands = {}
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            commands.update(action.choices)
    return commands


def effective_default(command: str, action: argparse.Action) -> object:
    """The value a command runs with when the option is left out: argparse's default, or for the options `train` and
    `pretrain` leave unset (None), TrainConfig's (pretrain's --epochs its own); None when the code computes it
    (`--upload-memory-mb`)."""
    from dataclasses import MISSING, fields

    from pneumoscan.training.config import DEFAULT_CONSISTENCY, PRETRAIN_EPOCHS, TrainConfig

    if action.default not in (None, argparse.SUPPRESS):
        return action.default
    if (command, action.dest) == ("pretrain", "epochs"):
        return PRETRAIN_EPOCHS
    if command in ("train", "pretrain", "audit"):
        if action.dest == "consistency":
            return DEFAULT_CONSISTENCY
        field = {f.name: f for f in fields(TrainConfig)}.get(action.dest)
        if field is not None and field.default is not MISSING:
            return field.default
    return None


def same_default(stated: str, default: object) -> bool | None:
    """Whether a default stated in words equals `default`; None when the words are not a value to compare."""
    if stated in ("on", "off"):
        return (stated == "on") == bool(default) if isinstance(default, (bool, int, float)) else None
    if isinstance(default, bool) or default is None:
        return None
    if isinstance(default, (int, float)):
        try:
            return float(stated) == float(default)
        except ValueError:
            return None
    return stated == str(default)


def help_default_problems(parser: argparse.ArgumentParser, command: str) -> list[str]:
    """Options whose help names a default other than the one the command runs with."""
    problems = []
    for action in parser._actions:
        for stated in HELP_DEFAULT.findall(action.help or ""):
            default = effective_default(command, action)
            if same_default(stated, default) is False:
                problems.append(f"pneumoscan {command} {'/'.join(action.option_strings)}: --help says default "
                                f"{stated}, it runs with {default!r}")
    return problems


def heading_anchor(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation (backticks too) dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def headings_of(text: str) -> list[tuple[int, int, str]]:
    """(line, level, anchor) of a markdown text's headings, outside code blocks."""
    return [(number, len(m.group(1)), heading_anchor(m.group(2))) for number, line in split_doc(text)[1]
            if (m := re.match(r"(#{1,6}) (.+)", line))]


def contents_problems(doc: str, text: str) -> list[str]:
    """A guide's contents (the list after its `**Contents**` line) against its ## and ### headings after it, and
    every `](#anchor)` link in it against the anchors of its headings."""
    headings = headings_of(text)
    anchors = {anchor for _, _, anchor in headings}
    lines = text.splitlines()
    start = next((n for n, line in enumerate(lines, 1) if line.strip() == "**Contents**"), None)
    problems = []
    if start is None:
        start = len(lines) + 1
        if any(level in (2, 3) for _, level, _ in headings):
            problems.append(f"{doc}: no **Contents** list of its sections")
    end = next((n for n in range(start, len(lines)) if not lines[n].strip()), len(lines))  # the first blank line
    listed = {a for line in lines[start:end] for a in re.findall(r"\]\(#([^)]+)\)", line)}
    problems += [f"{doc}:{number}: its section is not in the contents at the top (add a link to #{anchor})"
                 for number, level, anchor in headings if level in (2, 3) and number > start and anchor not in listed]
    problems += [f"{doc}:{number}: link to #{anchor}, which no heading has"
                 for number, line in enumerate(lines, 1) for anchor in re.findall(r"\]\(#([^)]+)\)", line)
                 if anchor not in anchors]
    return problems


def link_problems(doc: str, text: str) -> list[str]:
    """Every relative link of a doc's prose (`[x](docs/data.md#inputs)`, `[x](../README.md)`) leads to a file that
    exists and, when it names an anchor in a markdown file, to a heading of that file."""
    problems = []
    for number, line in split_doc(text)[1]:
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"[a-z][\w+.-]*:", target) or target.startswith("#"):
                continue  # https://..., mailto:; anchors in the doc itself are contents_problems'
            path, _, anchor = target.partition("#")
            file = (ROOT / doc).parent / path
            if not file.exists():
                problems.append(f"{doc}:{number}: link to {target}: {path} does not exist")
            elif anchor and file.suffix == ".md" and \
                    anchor not in {a for _, _, a in headings_of(file.read_text())}:
                problems.append(f"{doc}:{number}: link to {target}: {path} has no heading #{anchor}")
    return problems


def default_problems(doc: str, text: str) -> list[str]:
    """A guide's "`--flag` (N)" and the like: N is the default of that flag in some pneumoscan command."""
    defaults: dict[str, list[object]] = {}
    for command, sub in subcommands().items():
        for action in sub._actions:
            for option in action.option_strings:
                defaults.setdefault(option, []).append(effective_default(command, action))
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        for option, stated in README_DEFAULT.findall(line):
            if option in defaults and not any(same_default(stated, d) for d in defaults[option]):
                problems.append(f"{doc}:{number}: `{option}` {stated}: its default is "
                                f"{' or '.join(map(repr, defaults[option]))}")
    return problems


def help_option_problems(parser: argparse.ArgumentParser, command: str) -> list[str]:
    """Flags and `pneumoscan ...` commands that a command's --help text names but pneumoscan does not have."""
    texts = [parser.description or "", parser.epilog or ""] + [a.help or "" for a in parser._actions]
    texts = [t for t in texts if t != argparse.SUPPRESS]
    options = {o for p in _all_parsers(build_parser()) for o in p._option_string_actions}
    problems = [f"pneumoscan {command} --help names {flag}, an option of no command"
                for text in texts for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", text) if flag not in options]
    spans = [(0, span) for text in texts for span in re.findall(r"`([^`]+)`", text)]
    for c in shell_commands(f"pneumoscan {command} --help", [(n, s, True) for n, s in spans]):
        if c.kind == "pneumoscan" and (problem := parse_problem(build_parser(), list(c.args), elided=True)):
            problems.append(f"pneumoscan {command} --help shows `{c.shown}`: {problem}")
    return problems


@functools.cache
def shipped_facts() -> dict[str, float]:
    """What the shipped model file says about itself (loaded with the package's loader: safetensors, no pickle)."""
    from pneumoscan.artifact import default_model_path, load_artifact

    path = default_model_path()
    model, meta = load_artifact(path, device="cpu")
    data = meta.training["data"]
    return {"megabytes": path.stat().st_size / 1e6,
            "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "films": sum(n for split in data.values() for key, n in split.items() if key != "patients"),
            "distinct": len(set(meta.training["fingerprints"])),
            "threshold": meta.threshold, "validation_film": meta.val_metrics["threshold"],
            "val_auc": meta.val_metrics["roc_auc"]["value"], "val_films": len(meta.val_scores["labels"]),
            "val_pneumonia": sum(meta.val_scores["labels"]),
            "val_normal": len(meta.val_scores["labels"]) - sum(meta.val_scores["labels"]),
            "train_normal": sum(split["NORMAL"] for split in data.values()),
            "train_pneumonia": sum(split["PNEUMONIA"] for split in data.values()),
            "test_normal": meta.test_metrics["n_negative"], "test_pneumonia": meta.test_metrics["n_positive"]}


ARTIFACT_STATEMENTS = [  # (doc, pattern with NUMBER groups, the shipped_facts() keys they state)
    ("MODEL_CARD.md", rf"`src/pneumoscan/weights/default\.safetensors` \({NUMBER} MB\)", ["megabytes"]),
    ("MODEL_CARD.md", rf"{NUMBER} M parameters; {NUMBER} MB file", ["parameters_m", "megabytes"]),
    ("MODEL_CARD.md", rf"fingerprints of its {NUMBER} training and validation films \({NUMBER} distinct",
     ["films", "distinct"]),
    ("MODEL_CARD.md", rf"validation film it is chosen on \({NUMBER}: between that film's {NUMBER}",
     ["threshold", "validation_film"]),
    ("MODEL_CARD.md", rf"bootstrap interval on the {NUMBER} stored validation films \({NUMBER} pneumonia, {NUMBER} "
                      rf"normal;", ["val_films", "val_pneumonia", "val_normal"]),
    ("MODEL_CARD.md", rf"official `train/` split \({NUMBER} NORMAL / {NUMBER} PNEUMONIA\)",
     ["train_normal", "train_pneumonia"]),
    ("MODEL_CARD.md", rf"official test split \({NUMBER} NORMAL / {NUMBER} PNEUMONIA\)", ["test_normal", "test_pneumonia"]),
    (EVALUATION_DOC, rf"fingerprints of its {NUMBER} training and validation films, the official `train/` folder: "
                  rf"{NUMBER} distinct", ["films", "distinct"]),
    (DATA_DOC, rf"around its threshold {NUMBER} \({NUMBER} of its {NUMBER} validation films",
     ["threshold", None, "val_films"]),
    (BENCHMARKS_DOC, rf"\| \*\*the same \+ consistency loss, 30 epochs \(shipped\)\*\* \| {NUMBER} M \| [^|]+ \| {NUMBER} \|",
     ["parameters_m", "val_auc"]),
]


def artifact_statement_problems(texts: dict[str, str]) -> list[str]:
    """The docs' statements about the shipped model file (size, parameters, fingerprints, threshold) against it."""
    facts = shipped_facts()
    problems = []
    for doc, pattern, keys in ARTIFACT_STATEMENTS:
        match = re.search(pattern, " ".join(texts[doc].split()))
        if match is None or match.lastindex is None:
            problems.append(f"{doc} no longer says {pattern!r}: update this check with it")
            continue
        for key, stated in zip(keys, match.groups()):
            if key is not None and not shown_as(facts[key], stated):
                problems.append(f"{doc}: `{match.group(0)}`: {stated}, the shipped model's is {facts[key]:.6g}")
    return problems


def ablation_table_problems(card: str) -> list[str]:
    """MODEL_CARD.md's ablation table (between its markers) against bench/results/ablation.json, as rounded there."""
    rows = {r["variant"]: r for r in json.loads((RESULTS / "ablation.json").read_text())["rows"]}
    columns = ["train_seconds", "val_auc", "val_auc_tta", "val_log_loss", "stress_auc_mean", "stress_auc_min",
               "geometry_auc_mean"]
    block = re.search(r"<!-- ablation:start -->(.*?)<!-- ablation:end -->", card, re.S)
    if block is None:
        return ["MODEL_CARD.md: no <!-- ablation:start --> ... <!-- ablation:end --> table"]
    problems, seen = [], set()
    for line in block.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or cells[0] in ("variant", "---"):
            continue
        seen.add(cells[0])
        row = rows.get(cells[0])
        if row is None or len(cells) != 2 + len(columns):
            problems.append(f"MODEL_CARD.md: ablation row {cells[0]} is not a row of ablation.json with {columns}")
            continue
        for column, stated in zip(columns, cells[2:]):
            value = row.get(column)
            if (value is None) != (stated == "") or (stated and not shown_as(value, stated)):
                problems.append(f"MODEL_CARD.md: ablation row {cells[0]} {column} {stated!r}, ablation.json {value}")
    problems += [f"MODEL_CARD.md: ablation table lacks {name}" for name in rows if name not in seen]
    return problems


README_COMPARISON = {  # docs/benchmarks.md's comparison row -> (its compare_models.json row, the row its train wall time is from)
    "mlp (64 px)": ("mlp", "mlp"),
    "cnn (96 px)": ("cnn", "cnn"),
    "resnet10 (128 px)": ("resnet10", "resnet10"),
    "resnet18 (160 px)": ("resnet18", "resnet18"),
    "ensemble cnn + resnet10": ("ensemble", "ensemble"),
    "resnet10, balanced batches (shipped three models ago)": ("resnet10, no equalisation (shipped three models ago)",) * 2,
    "resnet10, balanced batches, equalised (shipped two models ago)": ("resnet10, equalised (shipped two models ago)",) * 2,
    "resnet10, balanced, equalised, zoom +-20 % + stretch 10 % (shipped before)": (
        "resnet10, equalised, zoom and stretch (shipped before)", "resnet10, recipe shipped before, run alone (2 threads)"),
    "**the same + consistency loss, 30 epochs (shipped)**": (
        "resnet10 (shipped)", "resnet10, shipped recipe, run alone (2 threads)"),
}


def comparison_problems(text: str) -> list[str]:
    """docs/benchmarks.md's model-comparison table against bench/results/compare_models.json, as rounded there."""
    rows = {r["model"]: r for r in json.loads((RESULTS / "compare_models.json").read_text())["rows"]}
    problems, seen = [], set()
    for number, line in enumerate(text.splitlines(), 1):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or len(cells) != 8 or cells[0] == "model":
            continue
        if cells[0] not in README_COMPARISON:
            problems.append(f"{BENCHMARKS_DOC}:{number}: comparison row {cells[0]!r} is not mapped to compare_models.json")
            continue
        seen.add(cells[0])
        name, wall_name = README_COMPARISON[cells[0]]
        row, wall = rows[name], rows[wall_name]
        auc = re.fullmatch(rf"{NUMBER} \[{NUMBER}, {NUMBER}\]", cells[7])
        stated = [cells[1].removesuffix(" M"), cells[2].removesuffix(" s"), *cells[3:7], *(auc.groups() if auc else ())]
        recorded = [row["params"] / 1e6, wall["train_wall_s"], row["val_auc"], row["test_accuracy"], row["test_recall"],
                    row["test_specificity"], row["test_roc_auc"], *row["test_roc_auc_ci95"]]
        if len(stated) != len(recorded) or not all(shown_as(v, s) for v, s in zip(recorded, stated)):
            problems.append(f"{BENCHMARKS_DOC}:{number}: comparison row {cells[0]!r} {stated}, compare_models.json "
                            + ", ".join(f"{v:.4f}" for v in recorded))
    problems += [f"{BENCHMARKS_DOC}: comparison table lacks {name!r}" for name in README_COMPARISON if name not in seen]
    return problems


def recorded(name: str, **where: object) -> dict:
    """The one row of bench/results/NAME.json whose fields equal `where` (or its whole record without rows)."""
    data = json.loads((RESULTS / f"{name}.json").read_text())
    if "rows" not in data:
        return data
    (row,) = [r for r in data["rows"] if all(r.get(k) == v for k, v in where.items())]
    return row


def _recorded_statements() -> list[tuple]:
    """(doc, pattern with NUMBER groups, the recorded figures they state (None: not checked)[, the step they are
    rounded to, when coarser than their decimals show]) for the docs' prose figures that bench/results/*.json hold."""
    border = recorded("borderline", **{"operating point": "stored"})
    border_02 = recorded("borderline", **{"operating point": "--prevalence 0.2"})
    low, high = border["interval"]
    n_normal, n_pneumonia = (int(border[f"borderline {c}"].split(" /")[0]) for c in ("normal", "pneumonia"))
    alone = recorded("train_full", model="resnet10, shipped recipe, run alone (2 threads)")
    channels_last = recorded("train_full", model="resnet10, shipped recipe, run alone (2 threads, channels-last trainer)")
    before_alone = recorded("train_full", model="resnet10, recipe shipped before, run alone (2 threads)")
    shipped = recorded("train_full", model="resnet10 (shipped)")
    local_stored = recorded("local_threshold", operating_point="stored threshold (validation)")
    local = recorded("local_threshold", operating_point="local, its whole half", target_recall=0.97)
    local_25 = recorded("local_threshold", operating_point="local, 25 films per class", target_recall=0.97)
    ood = recorded("ood")
    robustness = [recorded("robustness", perturbation=p)["delta_vs_clean"] for p in
                  ("jpeg_q50", "rotate_5deg", "brightness_10pct", "upscaled_1024px")]
    inference = recorded("inference")
    onnx, torch_ = ({b["backend"]: b for b in inference["backends"]}[k] for k in ("onnx", "torch"))
    load = recorded("load")
    upload = {r["label"]: r["peak_minus_idle_mb"] for r in json.loads((RESULTS / "upload_memory.json").read_text())["rows"]}
    before_8 = [v for k, v in upload.items() if k.startswith("before (e94a2e0) #")]
    after = [v for k, v in upload.items() if k.startswith("after, default 400 MB")]
    film = recorded("film_fingerprint")
    card = "MODEL_CARD.md"
    return [
        (EVALUATION_DOC, rf"within {NUMBER} bits of it; on the {NUMBER} train films every such copy was recognised and no two "
                 rf"distinct films were closer than {NUMBER} bits",
         [film["max_distance"] if all(r["recognised_as_itself"] == r["n"] for r in film["rule"]) else -1,
          film["n_train"], film["closest_distinct_pair"]]),
        (card, rf"is \*\*{NUMBER} to {NUMBER}\*\*", [low, high]),
        (card, rf"{NUMBER} validation films lie within it \({NUMBER} normal, {NUMBER} pneumonia\)",
         [n_normal + n_pneumonia, n_normal, n_pneumonia]),
        (card, rf"\({NUMBER} below it, {NUMBER} above\)", [border["threshold"] - low, high - border["threshold"]]),
        (card, rf"in {NUMBER} s on this 2-core CPU \(median of 5\)", [border["seconds"]]),
        (card, rf"`--prevalence` \({NUMBER} to {NUMBER} at 0\.2\)", border_02["interval"]),
        (card, rf"\({NUMBER} to {NUMBER} and {NUMBER} to {NUMBER} over seeds 0-9\)",
         [*border["low end, seeds 0-9"], *border["high end, seeds 0-9"]]),
        (DATA_DOC, rf"interval is {NUMBER} to {NUMBER} around its threshold {NUMBER} \({NUMBER} of its",
         [low, high, border["threshold"], n_normal + n_pneumonia]),
        (DATA_DOC, rf"by `serve` at start-up, in {NUMBER} s;", [border["seconds"]]),
        (card, rf"{NUMBER} s wall time for the full training \({NUMBER} epochs, best epoch {NUMBER}\), peak RSS {NUMBER} MiB",
         [alone["train_wall_s"], *map(float, alone["epochs"].split("/")[::-1]), alone["peak_rss_mb"]]),
        (card, rf"W's one-view recipe took {NUMBER} s for {NUMBER} epochs", [before_alone["train_wall_s"],
                                                                           float(before_alone["epochs"].split("/")[1])]),
        (card, rf"validation AUC {NUMBER} against {NUMBER};", [alone["val_auc"], shipped["val_auc"]]),
        (card, rf"{NUMBER} s wall, peak RSS {NUMBER} MiB, the same validation AUC and threshold \({NUMBER}, {NUMBER}\): "
               rf"{NUMBER} % of the budget", [channels_last["train_wall_s"], channels_last["peak_rss_mb"],
                                             channels_last["val_auc"], channels_last["threshold"],
                                             100 * channels_last["train_wall_s"] / 1800]),
        (BENCHMARKS_DOC, rf"alone with two threads took {NUMBER} s, peak RSS {NUMBER} MiB .*?validation AUC {NUMBER}, test AUC "
                 rf"{NUMBER}, recall {NUMBER}, specificity {NUMBER};",
         [channels_last["train_wall_s"], channels_last["peak_rss_mb"], channels_last["val_auc"],
          channels_last["test_roc_auc"], channels_last["test_recall"], channels_last["test_specificity"]]),
        (card, rf"the held-out half recall {NUMBER} and specificity {NUMBER} on average \(stored threshold on the same "
               rf"halves: {NUMBER} and {NUMBER}\)", [local["recall"], local["specificity"], local_stored["recall"],
                                                    local_stored["specificity"]]),
        (card, rf"met together on only {NUMBER} % of the held-out halves", [100 * local["share_both"]]),
        (card, rf"its 95 % interval spanned {NUMBER} to {NUMBER} for recall 0\.97", local_25["threshold_95"]),
        (card, rf"\(AUROC {NUMBER} on {NUMBER} generated negatives; {NUMBER} of {NUMBER} real test X-rays, {NUMBER} %",
         [ood["negatives"]["auroc"], ood["negatives"]["n"], ood["test_xrays"]["false_rejections"],
          ood["test_xrays"]["n"], 100 * ood["test_xrays"]["false_rejections"] / ood["test_xrays"]["n"]]),
        (card, rf"Every perturbation is within {NUMBER} of the clean figure", [max(abs(d) for d in robustness)]),
        (BENCHMARKS_DOC, rf"ONNX Runtime {NUMBER} images/s end to end .*?; {NUMBER} images/s network only\), PyTorch {NUMBER} "
                 rf"images/s; single-image latency p50 {NUMBER} ms \(224 px JPEG\) and {NUMBER} ms \(2000 px JPEG\)",
         [onnx["folder_images_per_s"], onnx["network_images_per_s"], torch_["folder_images_per_s"],
          onnx["latency"]["jpeg_224"]["p50_ms"], onnx["latency"]["jpeg_2000"]["p50_ms"]]),
        (BENCHMARKS_DOC, rf"under 16 concurrent clients \(`bench/results/load.md`\): {NUMBER} requests/s, p99 {NUMBER} ms, "
                 rf"{NUMBER} errors, {NUMBER} MB peak RSS",
         [load["requests_per_s"], load["p99_ms"], load["errors"], load["server_rss_max_sampled_mb"]]),
        (SERVICE_DOC, rf"raised the service's peak memory by {NUMBER}-{NUMBER} MB before this limit \(16 uploads: {NUMBER} MB\), "
                 rf"and by {NUMBER}-{NUMBER} MB with it",
         [min(before_8), max(before_8), upload["before (e94a2e0), 16 clients"], min(after), max(after)], 10),
    ]


def recorded_statement_problems(texts: dict[str, str]) -> list[str]:
    """The docs' prose figures against the bench/results/*.json that hold them, as rounded in the prose."""
    problems = []
    for doc, pattern, figures, *step in _recorded_statements():
        match = re.search(pattern, " ".join(texts[doc].split()))
        if match is None:
            problems.append(f"{doc} no longer says {pattern!r}: update this check with it")
            continue
        for figure, stated in zip(figures, match.groups()):
            rounded = figure if figure is None or not step else round(figure / step[0]) * step[0]
            if rounded is not None and not shown_as(rounded, stated):
                problems.append(f"{doc}: `{match.group(0)}`: {stated}, recorded {figure:.6g}")
    return problems


def api_signature_problems(text: str) -> list[str]:
    """docs/python-api.md's table shows `name(params)`: every parameter of the real function, in its order, of its
    kind (positional or keyword-only) and with its default (a `**` catch-all may be named otherwise)."""
    import inspect

    import pneumoscan

    problems = []
    for name, params in re.findall(r"^\| `(\w+)\(([^`]*)\)`", text, re.M):
        shown = ast.parse(f"def f({params}): pass").body[0].args  # type: ignore[attr-defined]
        try:
            real = inspect.signature(getattr(pneumoscan, name)).parameters
        except AttributeError:
            problems.append(f"{API_DOC}: `{name}` is not in pneumoscan")
            continue
        positional = [a.arg for a in shown.args]
        defaults = dict(zip(positional[len(positional) - len(shown.defaults):], shown.defaults))
        defaults.update({a.arg: d for a, d in zip(shown.kwonlyargs, shown.kw_defaults) if d is not None})
        order = list(real)
        for arg, keyword in [(a.arg, False) for a in shown.args] + [(a.arg, True) for a in shown.kwonlyargs]:
            param = real.get(arg)
            if param is None:
                problems.append(f"{API_DOC}: `{name}` has no parameter {arg}")
            elif (param.kind == param.KEYWORD_ONLY) != keyword:
                problems.append(f"{API_DOC}: `{name}`'s {arg} is shown {'keyword-only' if keyword else 'positional'}")
            elif arg in defaults and ast.literal_eval(defaults[arg]) != param.default:
                problems.append(f"{API_DOC}: `{name}`'s {arg} is shown defaulting to {ast.unparse(defaults[arg])}, "
                                f"it defaults to {param.default!r}")
        named = {a.arg for a in shown.args + shown.kwonlyargs}
        left_out = [arg for arg, param in real.items() if arg not in named
                    and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)]
        if left_out:
            problems.append(f"{API_DOC}: `{name}` leaves out {', '.join(left_out)}")
        kept = [a.arg for a in shown.args + shown.kwonlyargs if a.arg in real]
        if kept != sorted(kept, key=order.index):
            problems.append(f"{API_DOC}: `{name}` shows its parameters out of order: {kept}")
        for var, kind in ((shown.vararg, inspect.Parameter.VAR_POSITIONAL), (shown.kwarg, inspect.Parameter.VAR_KEYWORD)):
            if var is not None and not any(p.kind == kind for p in real.values()):
                problems.append(f"{API_DOC}: `{name}` takes no {'*' if kind == inspect.Parameter.VAR_POSITIONAL else '**'}{var.arg}")
    return problems


BENCH_DEFAULTS = [  # (pattern in docs/benchmarks.md's benchmark table, with NUMBER groups; the (script, option dest) they state)
    (rf"\| `load\.py` \| {NUMBER} concurrent clients against `pneumoscan serve` on loopback for {NUMBER} s\b",
     [("load", "clients"), ("load", "seconds")]),
    (rf"\| `upload_memory\.py` \| peak memory of `pneumoscan serve` while {NUMBER} batch uploads of {NUMBER} MB",
     [("upload_memory", "clients"), ("upload_memory", "batch_mb")]),
    (rf"`delong_coverage\.\*`, `recall_near_one_coverage\.\*` and `ap_coverage\.\*` \(`--datasets`, {NUMBER}, for the "
     rf"first two; `--ap-datasets`, {NUMBER}, for the last\)",
     [("interval_coverage", "datasets"), ("interval_coverage", "ap_datasets")]),
]


def bench_default_problems(text: str) -> list[str]:
    """docs/benchmarks.md's benchmark table states some scripts' defaults: they are the defaults of the scripts'
    parsers."""
    problems = []
    for pattern, options in BENCH_DEFAULTS:
        match = re.search(pattern, text)
        if match is None:
            problems.append(f"{BENCHMARKS_DOC} no longer says {pattern!r}: update this check with it")
            continue
        for (script, dest), stated in zip(options, match.groups()):
            default = bench_build_parser(script)().get_default(dest)
            if not shown_as(float(default), stated):
                problems.append(f"{BENCHMARKS_DOC}: `{match.group(0)}`: {stated}, bench/{script}.py's default {dest} is {default}")
    return problems


SEED_MEANS = [  # (pattern in MODEL_CARD.md with one NUMBER group, ablation.json column, the runs it averages)
    (rf"histogram equalisation \(stress AUC 0\.9963 -> {NUMBER}, three-seed means\)", "stress_auc_mean", ["R", "R1", "R2"]),
    (rf"histogram equalisation \(stress AUC {NUMBER} -> ", "stress_auc_mean", ["E", "E1", "E2"]),
    (rf"three seeds scored 0\.9979, 0\.9975 and 0\.9973 \(mean {NUMBER}\)", "stress_auc_mean", ["R", "R1", "R2"]),
    (rf"The three-seed mean is {NUMBER}, against", "stress_auc_mean", ["E", "E1", "E2"]),
    (rf"The three-seed mean is 0\.9963, against {NUMBER} for the class-weighted loss", "stress_auc_mean", ["A", "A1", "A2"]),
    (rf"beat the shipped recipe's three-seed mean \({NUMBER}\)", "geometry_auc_mean", ["R", "R1", "R2"]),
    (rf"W \(mean {NUMBER}\) beat X", "geometry_auc_mean", ["W", "W1"]),
    (rf"beat X \({NUMBER}\)", "geometry_auc_mean", ["X", "X1"]),
    (rf"0\.9874 \(mean {NUMBER}, within 0\.002 of W's", "geometry_auc_mean", ["Y", "Y1"]),
    (rf"geometry 0\.9831 to 0\.9881, mean {NUMBER}, the reference", "geometry_auc_mean", ["W", "W1", "W2"]),
    (rf"0\.9893 \(AA1\), mean {NUMBER}:", "geometry_auc_mean", ["AA", "AA1"]),
    (rf"\(29 of 30\); mean geometry {NUMBER}\.", "geometry_auc_mean", ["AC", "AC1"]),
    (rf"0\.9914 \(AD1\), mean {NUMBER};", "geometry_auc_mean", ["AD", "AD1"]),
    (rf"0\.9871 \(AE1\), mean {NUMBER}, below AC", "geometry_auc_mean", ["AE", "AE1"]),
    (rf"0\.9916 \(AF1\), mean {NUMBER}, short of", "geometry_auc_mean", ["AF", "AF1"]),
    (rf"0\.9907 \(AG1\), mean {NUMBER};", "geometry_auc_mean", ["AG", "AG1"]),
    (rf"Texture 0\.9961 and 0\.9976 \(mean {NUMBER}: level with AC\)", "texture_auc_mean", ["AH", "AH1"]),
    (rf"texture-probe mean above AC's {NUMBER}", "texture_auc_mean", ["AC", "AC1"]),
    (rf"and 0\.9872 \(mean {NUMBER}; pneumonia zoomed out", "geometry_auc_mean", ["AH", "AH1"]),
    (rf"Geometry 0\.9932 and 0\.9926 \(mean {NUMBER},", "geometry_auc_mean", ["AJ", "AJ1"]),
    (rf"Geometry rose from {NUMBER} at 64 px", "geometry_auc_mean", ["AI", "AI1"]),
]


def seed_mean_problems(card: str) -> list[str]:
    """The seed means MODEL_CARD.md states, recomputed from bench/results/ablation.json (a mean of rounded figures
    can round otherwise: 0.9918 and 0.9907 are 0.99121 and 0.99065, mean 0.9912, not 0.9913)."""
    rows = {r["variant"].split("_")[0]: r for r in json.loads((RESULTS / "ablation.json").read_text())["rows"]}
    text = " ".join(card.split())
    problems = []
    for pattern, column, runs in SEED_MEANS:
        match = re.search(pattern, text)
        mean = sum(rows[run][column] for run in runs) / len(runs)
        if match is None:
            problems.append(f"MODEL_CARD.md no longer says {pattern!r}: update this check with it")
        elif not shown_as(mean, match.group(1)):
            problems.append(f"MODEL_CARD.md: `{match.group(0)}`: the mean {column} of {', '.join(runs)} is {mean:.6f}")
    return problems


def recipe_problems(card: str) -> list[str]:
    """MODEL_CARD.md's recipe ("`pneumoscan train ...` with the defaults: AdamW (lr 2e-3, ...") against the defaults
    train runs with: TrainConfig's, and AugmentConfig's for what training does not set."""
    from pneumoscan.data.augment import AugmentConfig
    from pneumoscan.training.config import DEFAULT_CONSISTENCY, DEFAULT_MODEL, TrainConfig

    cfg, aug = TrainConfig(data="DATA", out="RUN"), AugmentConfig()
    stated = [  # (pattern with NUMBER groups, the defaults they state)
        (rf"with the defaults: AdamW \(lr {NUMBER}e-3, weight decay {NUMBER}\), one warm-up epoch then cosine decay, "
         rf"batch {NUMBER}, at most {NUMBER} epochs, early stopping on validation ROC AUC \(patience {NUMBER}\)",
         [cfg.lr * 1e3, cfg.weight_decay, cfg.batch_size, cfg.epochs, cfg.patience]),
        (rf"augmentation: rotation \+-{NUMBER} degrees, \*\*zoom \+-{NUMBER} % and a stretch, one axis multiplied and the "
         rf"other divided by up to {NUMBER}\*\*", [aug.rotation_deg, 100 * cfg.aug_zoom, 1 + cfg.aug_aspect]),
        (rf"translation \+-{NUMBER} %, brightness and contrast \+-{NUMBER} %", [100 * aug.translate, 100 * aug.brightness]),
        (rf"\(`--consistency {NUMBER}`, the default since the eighth session\)", [DEFAULT_CONSISTENCY]),
        (rf"seed {NUMBER}, split seed {NUMBER}\.", [cfg.seed, cfg.split_seed]),
    ]
    problems = []
    if (cfg.warmup_epochs, cfg.balance, cfg.equalize, DEFAULT_MODEL) != (1.0, "sampler", True, "resnet10") or \
            aug.contrast != aug.brightness:
        problems.append("MODEL_CARD.md: the recipe names one warm-up epoch, class-balanced batches, equalisation, "
                        "resnet10 and equal brightness and contrast ranges; the defaults differ")
    text = " ".join(card.split())
    for pattern, defaults in stated:
        match = re.search(pattern, text)
        if match is None:
            problems.append(f"MODEL_CARD.md no longer says {pattern!r}: update this check with it")
        elif not all(shown_as(float(d), s) for d, s in zip(defaults, match.groups())):
            problems.append(f"MODEL_CARD.md: `{match.group(0)}`: the defaults are {defaults}")
    return problems


# -- the docs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("doc", DOCS)
def test_the_doc_matches_the_code(doc: str) -> None:
    problems = doc_problems(doc, (ROOT / doc).read_text())
    assert not problems, f"{doc} does not match the code:\n" + "\n".join(problems)


def test_the_docs_show_commands_of_every_kind() -> None:
    """Guards the extraction itself: were it to find nothing, the test above would pass on any docs."""
    commands = [c for doc in DOCS for c in doc_commands(doc, (ROOT / doc).read_text())]
    kinds = {c.kind for c in commands}
    assert {"pneumoscan", "bench", "make"} <= kinds
    assert len([c for c in commands if c.kind == "pneumoscan"]) >= 30


def test_the_makefile_runs_pneumoscan_with_options_it_has() -> None:
    commands = makefile_commands((ROOT / "Makefile").read_text())
    assert len(commands) >= 5  # make demo's audit, train, fit-guard, evaluate, predict, report
    problems = [f"{c.where()}: {problem}" for c in commands if (problem := command_problem(c))]
    assert not problems, "\n".join(problems)


def test_guides_name_every_subcommand_and_flag_of_the_cli() -> None:
    missing = undocumented(guides_text())
    assert not missing, "neither README.md nor docs/*.md mentions these (document them, e.g. in the section of their " \
        "command):\n" + "\n".join(missing)


def test_guides_name_every_environment_variable_src_reads() -> None:
    missing = env_vars_undocumented(guides_text())
    assert not missing, f"neither README.md nor docs/*.md mentions {', '.join(missing)}, which src/ reads"


def test_bench_results_show_commands_that_parse() -> None:
    """Each bench/results/*.md names the command that wrote it (rules.md, dated rules in prose, aside)."""
    problems, without = [], []
    for path in sorted(RESULTS.glob("*.md")):
        if path.name == "rules.md":
            continue
        text = path.read_text()
        if not any(c.kind == "bench" for c in doc_commands(path.name, text)):
            without.append(path.name)
        problems += results_problems(path.name, text)
    assert not without, f"no `python bench/X.py ...` command in {without}"
    assert not problems, "\n".join(problems)


def test_bench_scripts_record_their_command_line_quoted() -> None:
    problems = [f"bench/{path.name}:{line}" for path in sorted(BENCH.glob("*.py"))
                for line in unquoted_argv_joins(path.read_text())]
    assert not problems, "record the command with shlex.join(argv), so that it parses again: " + ", ".join(problems)


def test_model_card_test_table_is_the_recorded_test_report() -> None:
    problems = metrics_table_problems((ROOT / "MODEL_CARD.md").read_text())
    assert not problems, "\n".join(problems)


def test_model_card_prose_states_the_recorded_test_report() -> None:
    problems = card_prose_problems((ROOT / "MODEL_CARD.md").read_text())
    assert not problems, "\n".join(problems)


def test_help_states_the_defaults_the_commands_use() -> None:
    problems = [p for command, sub in subcommands().items() for p in help_default_problems(sub, command)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", GUIDES)
def test_guides_state_the_defaults_the_commands_use(doc: str) -> None:
    problems = default_problems(doc, (ROOT / doc).read_text())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", GUIDES)
def test_guides_contents_list_every_section_and_their_links_lead_somewhere(doc: str) -> None:
    problems = contents_problems(doc, (ROOT / doc).read_text())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_lead_to_files_and_headings_that_exist(doc: str) -> None:
    problems = link_problems(doc, (ROOT / doc).read_text())
    assert not problems, "\n".join(problems)


def test_readme_links_every_guide() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(GUIDES) >= 6  # README.md and the docs/*.md it links
    assert not [doc for doc in GUIDES[1:] if f"]({doc})" not in readme], "README.md links no such guide"


def test_readme_says_which_commands_json_takes_a_file_and_which_is_a_switch() -> None:
    # README said "`--json -` writes JSON alone to stdout" of every command; predict's --json is a switch
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    kinds: dict[bool, list[str]] = {True: [], False: []}
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if "--json" in action.option_strings:
                kinds[action.nargs == 0].append(name)
    readme = " ".join((ROOT / "README.md").read_text().split())
    takes = [f"`{name}`" for name in kinds[False]]
    assert f"{', '.join(takes[:-1])} and {takes[-1]} write JSON to the file `--json` names; `--json -` writes JSON " \
           f"alone to stdout" in readme
    assert kinds[True] == ["predict"] and "`predict --json` (like `--csv`) is a switch" in readme


def test_help_names_only_options_and_commands_that_exist() -> None:
    problems = [p for command, sub in subcommands().items() for p in help_option_problems(sub, command)]
    assert not problems, "\n".join(problems)


def test_docs_state_the_shipped_model_file_as_it_is() -> None:
    problems = artifact_statement_problems({doc: (ROOT / doc).read_text() for doc in DOCS})
    assert not problems, "\n".join(problems)


def test_model_card_ablation_table_is_the_recorded_one() -> None:
    problems = ablation_table_problems((ROOT / "MODEL_CARD.md").read_text())
    assert not problems, "\n".join(problems)


def test_benchmarks_comparison_table_is_the_recorded_one() -> None:
    problems = comparison_problems((ROOT / BENCHMARKS_DOC).read_text())
    assert not problems, "\n".join(problems)


def test_docs_prose_states_the_recorded_benchmarks() -> None:
    problems = recorded_statement_problems({doc: (ROOT / doc).read_text() for doc in DOCS})
    assert not problems, "\n".join(problems)


def test_python_api_guide_shows_the_signatures_as_they_are() -> None:
    text = (ROOT / API_DOC).read_text()
    assert len(re.findall(r"^\| `(\w+)\(([^`]*)\)`", text, re.M)) >= 9
    problems = api_signature_problems(text)
    assert not problems, "\n".join(problems)


def test_benchmarks_guide_states_the_benchmarks_defaults() -> None:
    problems = bench_default_problems((ROOT / BENCHMARKS_DOC).read_text())
    assert not problems, "\n".join(problems)


def test_interval_coverage_results_were_made_with_the_scripts_defaults() -> None:
    """docs/evaluation.md cites bench/results/ap_coverage.md's 2,000 data sets as what bench/interval_coverage.py
    measures, but its --ap-datasets default was 1000: run as documented, it wrote other figures. Each results file the
    docs cite records the data sets its part was run with, which must be the script's default for that part."""
    parser = bench_build_parser("interval_coverage")()
    for name, option in (("delong_coverage", "datasets"), ("recall_near_one_coverage", "datasets"),
                         ("ap_coverage", "ap_datasets")):
        command = json.loads((BENCH / "results" / f"{name}.json").read_text())["meta"]["command"]
        used = re.search(rf"--{option.replace('_', '-')} (\d+)", command)
        assert used and int(used.group(1)) == parser.get_default(option), (name, command, parser.get_default(option))


def test_the_load_benchmark_times_train_films_not_the_test_split() -> None:
    """bench/load.py posted the test split's films by default: timing needs none of them, and the test split is kept
    for final reports. Its default is now the train split (the sample's train folder without the data set), as
    its help and docs/benchmarks.md say."""
    with bench_importable():
        load = importlib.import_module("load")
        help_text = load.build_parser().format_help()
    assert [folder.name for folder in load.IMAGE_DIRS] == ["train", "train"]
    assert "chest_xray/test" not in help_text and "chest_xray/test" not in load.__doc__
    row = next(line for line in (ROOT / BENCHMARKS_DOC).read_text().splitlines() if line.startswith("| `load.py`"))
    assert "train split" in row


def test_benchmarks_guide_names_the_data_folder_the_benchmarks_read() -> None:
    """docs/benchmarks.md says where the benchmarks take their films without --data (--train): every script's
    default is that folder or its train/ or test/ split, placed from the project root (commands_full_train.py's was
    this machine's /work/shared/..., which another clone's ../shared is not)."""
    import os

    stated = re.search(r"take the Kermany data set from `([^`]+)`", (ROOT / BENCHMARKS_DOC).read_text())
    assert stated, f"{BENCHMARKS_DOC} no longer says where the benchmarks take their films: update this check"
    folder = os.path.normpath(ROOT / stated.group(1))
    wrong = []
    for path in sorted(BENCH.glob("[!_]*.py")):
        build = bench_build_parser(path.stem)
        for dest in ("data", "train") if build else ():
            default = build().get_default(dest)
            if default is not None and os.path.normpath(ROOT / default) not in (
                    folder, os.path.join(folder, "train"), os.path.join(folder, "test")):
                wrong.append(f"bench/{path.name}: --{dest} defaults to {default}")
    assert not wrong, "\n".join(wrong)


DATA_OPTIONS = ("--data", "--train", "--images")  # the options by which a benchmark is given its films


def bench_io_rows(text: str) -> dict[str, tuple[int, str, str]]:
    """docs/benchmarks.md's table of the films each script reads and the results it writes: script (without .py) ->
    (line, films cell, results cell)."""
    rows: dict[str, tuple[int, str, str]] = {}
    in_table = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("| script | films it reads"):
            in_table = True
        elif in_table and not line.startswith("|"):
            break
        elif in_table and (match := re.fullmatch(r"\| `(\w+)\.py` \| (.*) \| (.*) \|", line)):
            rows[match.group(1)] = (number, match.group(2), match.group(3))
    return rows


def calls(function: Callable[..., object], name: str) -> bool:
    """Whether the source of `function` calls the function `name`."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
               for node in ast.walk(tree))


def string_constants(path: Path) -> set[str]:
    """The string literals of a script ("sample" and "shared" as path parts: `ROOT / "sample" / ...`)."""
    return {node.value for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def bench_io_problems(text: str) -> list[str]:
    """What docs/benchmarks.md's table says each script reads and writes, against the script: a row for every script;
    the film options it names (--data, --train, --images) are those its parser has, with the stated default; a
    folder it reads without an option is one it names; the bundled sample and ../shared named where the code names
    them; every other option named exists; `--out` named where the parser has it; 'merges' where its main() merges
    rows (carry_over), 'keeps its other recorded parts' where it adds to the recorded report (recorded_report), and
    'none' where it writes no results."""
    rows = bench_io_rows(text)
    scripts = sorted(path.stem for path in BENCH.glob("[!_]*.py"))
    problems = [f"{BENCHMARKS_DOC}: bench/{script}.py has no row in the table of the films it reads"
                for script in scripts if script not in rows]
    problems += [f"{BENCHMARKS_DOC}:{rows[script][0]}: `{script}.py`: no such script in bench/"
                 for script in rows if script not in scripts]
    for script in (s for s in scripts if s in rows):
        number, films, results = rows[script]
        where = f"{BENCHMARKS_DOC}:{number}: `{script}.py`"
        with bench_importable():
            module = importlib.import_module(script)
        parser = module.build_parser()
        options = {option for action in parser._actions for option in action.option_strings}
        constants = string_constants(BENCH / f"{script}.py")
        for option in DATA_OPTIONS:
            if mentioned(films, option) != (option in options):
                problems.append(f"{where}: says it {'takes' if option not in options else 'does not take'} {option}")
        for option in sorted(set(re.findall(r"(?<![\w-])--[a-z][\w-]*", films + " " + results)) - options):
            problems.append(f"{where}: names {option}, which bench/{script}.py does not take")
        stated = re.match(r"`(--[\w-]+)`: `([^`]+)`", films)
        if stated and stated.group(1) in options:
            default = parser.get_default(stated.group(1)[2:].replace("-", "_"))
            if default is not None and os.path.normpath(ROOT / default) != os.path.normpath(ROOT / stated.group(2)):
                problems.append(f"{where}: {stated.group(1)} defaults to {default}, not {stated.group(2)}")
        elif (stated := re.match(r"no option: [^`]*`([^`]+)`", films)) is not None:
            folders = {os.path.normpath(value) for value in vars(module).values() if isinstance(value, Path)}
            if os.path.normpath(ROOT / stated.group(1)) not in folders:
                problems.append(f"{where}: bench/{script}.py names no folder {stated.group(1)}")
        if ("bundled sample" in films) != ("sample" in constants):
            problems.append(f"{where}: {'says' if 'sample' not in constants else 'does not say'} it reads the bundled "
                            f"sample")
        if ("../shared" in films) != any(value == "shared" or value.startswith("../shared/") for value in constants):
            problems.append(f"{where}: {'names' if '../shared' in films else 'does not name'} ../shared, which the "
                            f"script {'does not read' if '../shared' in films else 'reads'}")
        if mentioned(results, "--out") != ("--out" in options):
            problems.append(f"{where}: {'does not name' if '--out' in options else 'names'} --out for its results")
        merges = calls(module.main, "carry_over")
        if ("merges" in results) != merges:
            problems.append(f"{where}: says it {'replaces' if merges else 'merges'} rows; its main() "
                            f"{'merges them (carry_over)' if merges else 'does not (no carry_over)'}")
        if ("keeps its other recorded parts" in results) != calls(module.main, "recorded_report"):
            problems.append(f"{where}: says wrongly whether a run keeps its other recorded parts (recorded_report)")
        writes = calls(module.main, "write_results") or calls(module.main, "write_report")
        if results.startswith("none") == writes:
            problems.append(f"{where}: says it writes "
                            f"{'no results; its main() writes some' if writes else 'results; its main() writes none'}")
    return problems


def test_benchmarks_guide_says_which_films_each_script_reads_and_what_it_writes() -> None:
    """docs/benchmarks.md said every benchmark takes its films from ../shared/data/chest_xray unless --data (--train,
    --images) and that a run replaces bench/results/: concurrency.py and predictor_default.py take no --data,
    serve_startup.py and upload_memory.py read only a bundled sample film, and predict_startup.py, serve_startup.py,
    upload_memory.py and train_full.py --models merge their rows. Its table now says so per script, checked here."""
    problems = bench_io_problems((ROOT / BENCHMARKS_DOC).read_text())
    assert not problems, "\n".join(problems)


def absolute_defaults(source: str) -> list[str]:
    """The `add_argument(..., default=...)` calls of a script's `source` whose default holds an absolute path literal
    ("/..." or Path("/..."), also through a module-level name), each as 'line N: the default': one machine's folder,
    which another clone lacks."""
    tree = ast.parse(source)
    assigned = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}

    def absolute(node: ast.AST, depth: int = 0) -> bool:
        for part in ast.walk(node):
            if isinstance(part, ast.Constant) and isinstance(part.value, str) and part.value.startswith("/"):
                return True
            if isinstance(part, ast.Name) and part.id in assigned and depth < 5 and absolute(assigned[part.id], depth + 1):
                return True
        return False

    return [f"line {call.lineno}: {ast.unparse(keyword.value)}" for call in ast.walk(tree)
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "add_argument"
            for keyword in call.keywords if keyword.arg == "default" and absolute(keyword.value)]


def test_no_benchmark_option_defaults_to_an_absolute_path() -> None:
    """The check above places a relative default from the project root, so /work/main's ../shared is /work/shared and
    commands_full_train.py's old default, Path("/work/shared/data/chest_xray/train"), passed it there; this one reads
    the scripts' code: a default is relative, or placed from the script's own folder, never one machine's path."""
    old = 'parser.add_argument("--train", type=Path, default=Path("/work/shared/data/chest_xray/train"))'
    assert absolute_defaults(old) == ['line 1: Path(\'/work/shared/data/chest_xray/train\')']
    assert absolute_defaults(f'DATA = "/data"\nparser.add_argument("--data", default=DATA)') == ["line 2: DATA"]
    assert absolute_defaults('parser.add_argument("--data", default=ROOT.parent / "shared")') == []
    wrong = [f"bench/{path.name}: {found}" for path in sorted(BENCH.glob("*.py"))
             for found in absolute_defaults(path.read_text())]
    assert not wrong, "option defaults that are one machine's folder:\n" + "\n".join(wrong)


def test_a_benchmark_without_its_films_or_recorded_results_says_so_in_one_line(tmp_path: Path) -> None:
    """bench/dither_cue.py without the data set ended in numpy's traceback (argmax of an empty sequence), and
    bench/few_grey_levels.py --framed-only without recorded results in a FileNotFoundError traceback."""
    with bench_importable():
        dither_cue = importlib.import_module("dither_cue")
        few_grey_levels = importlib.import_module("few_grey_levels")
        with pytest.raises(SystemExit, match=rf"^{re.escape(str(tmp_path / 'train'))}: no films in class folders "
                                             r"here; give --data the data folder whose train/ holds"):
            dither_cue.main(["--data", str(tmp_path), "--out", str(tmp_path / "out")])
        with pytest.raises(SystemExit, match=r"few_grey_levels.json: no recorded results for --framed-only to keep; "
                                             r"run without --framed-only first"):
            few_grey_levels.main(["--data", str(ROOT / "sample" / "chest_xray"), "--framed-only",
                                  "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_a_benchmark_without_the_bundled_sample_says_how_to_get_it_back(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/few_grey_levels.py also measures the bundled sample's train films; without them it advised "give --data
    ...", which does not choose that folder."""
    with bench_importable():
        few_grey_levels = importlib.import_module("few_grey_levels")
    monkeypatch.setattr(few_grey_levels, "ROOT", tmp_path)  # a checkout whose sample/ is gone
    with pytest.raises(SystemExit) as stop:
        few_grey_levels.main(["--data", str(ROOT / "sample" / "chest_xray"), "--out", str(tmp_path / "out")])
    assert str(stop.value) == (f"{tmp_path / 'sample' / 'chest_xray' / 'train'}: no films in class folders here; the "
                               f"bundled sample ships with the project: restore it with `git checkout -- sample`")
    assert not (tmp_path / "out").exists()


def test_model_card_seed_means_are_those_of_the_recorded_runs() -> None:
    problems = seed_mean_problems((ROOT / "MODEL_CARD.md").read_text())
    assert not problems, "\n".join(problems)


def test_model_card_recipe_is_the_default_one() -> None:
    problems = recipe_problems((ROOT / "MODEL_CARD.md").read_text())
    assert not problems, "\n".join(problems)


def test_benchmarks_guide_lists_every_benchmark() -> None:
    text = (ROOT / BENCHMARKS_DOC).read_text()
    listed = {name for line in text.splitlines() if line.startswith("| `") for name in re.findall(r"`(\w+)\.py`", line)}
    scripts = {path.stem for path in BENCH.glob("[!_]*.py")}
    assert len(listed & scripts) >= 15
    assert not scripts - listed, f"{BENCHMARKS_DOC}'s benchmark table lacks {sorted(scripts - listed)}"


# -- the checks themselves -----------------------------------------------------------------------
def test_extraction_joins_continuations_drops_comments_ellipses_and_redirections() -> None:
    text = "\n".join([
        "Prose with `pneumoscan train ... --init W.safetensors` and `pneumoscan predict` and `pneumoscan.cli`,",
        "and a span `pneumoscan evaluate --data DATA",
        "--json -` over two lines.",
        "",
        "```bash",
        "pneumoscan predict x.jpeg --csv > out.csv   # a comment, with an apostrophe's quote",
        "OMP_NUM_THREADS=1 python bench/ood.py \\",
        "  --per-family 5      # comment after a continued line",
        "mkdir -p runs && make demo",
        "/usr/bin/time -v pneumoscan models 2>&1 | tee log",
        "```",
        "",
        "    pneumoscan set-threshold --data D --out M [--target-recall 0.95]",
    ])
    commands = doc_commands("X.md", text)
    assert [(c.line, c.kind, c.args, c.elided) for c in commands] == [
        (6, "pneumoscan", ("predict", "x.jpeg", "--csv"), False),
        (7, "bench", ("bench/ood.py", "--per-family", "5"), False),
        (9, "make", ("demo",), False),
        (10, "pneumoscan", ("models",), False),
        (13, "pneumoscan", ("set-threshold", "--data", "D", "--out", "M", "--target-recall", "0.95"), False),
        (1, "pneumoscan", ("train", "--init", "W.safetensors"), True),
        (1, "pneumoscan", ("predict",), True),
        (2, "pneumoscan", ("evaluate", "--data", "DATA", "--json", "-"), False),
    ]
    assert doc_problems("X.md", text) == []


BROKEN = [  # (a guide, text in it, the same broken, what the failure must name)
    ("README.md", "pneumoscan audit DATA --strict", "pneumoscan audit DATA --stirct", "unrecognized arguments: --stirct"),
    ("README.md", "pneumoscan cache ", "pneumoscan cahce ", "invalid choice: 'cahce'"),
    ("README.md", "pneumoscan serve ", "pneumoscan serve --max-upload 5 ", "unrecognized arguments: --max-upload"),
    ("README.md", "pneumoscan evaluate --model runs/r1 --data DATA", "pneumoscan evaluate --model runs/r1",
     "the following arguments are required: --data"),
    ("README.md", "make demo ", "make dmeo ", "no Makefile target dmeo"),
    (TRAINING_DOC, "`--aug-zoom` and", "`--aug-zom` and", "--aug-zom is an option of neither pneumoscan nor a bench script"),
    (DATA_DOC, "PNEUMOSCAN_CACHE_MAX_GB", "PNEUMOSCAN_CACHE_MAXGB", "$PNEUMOSCAN_CACHE_MAXGB is read nowhere in src/"),
    (BENCHMARKS_DOC, "| `ood.py` |", "| `odd.py` |", "`odd.py`: no such script in bench/"),
    (SERVICE_DOC, "(`bench/results/upload_memory.md`", "(`bench/results/upload_mem.md`",
     "bench/results/upload_mem.md does not exist"),
    (BENCHMARKS_DOC, "bench/NAME.py", "bench/NAME.py`; `python bench/ood.py --max-trian 5",
     "unrecognized arguments: --max-trian"),
]


@pytest.mark.parametrize(("doc", "original", "broken", "expected"), BROKEN, ids=[b[3] for b in BROKEN])
def test_a_broken_guide_fails_naming_the_doc_line_and_problem(doc: str, original: str, broken: str,
                                                              expected: str) -> None:
    text = (ROOT / doc).read_text()
    assert original in text, f"{doc} no longer contains {original!r}: pick another line to break"
    line = line_of(text, original)
    problems = doc_problems(doc, text.replace(original, broken, 1))
    assert problems and all(p.startswith(f"{doc}:{line}: ") for p in problems), problems
    assert any(expected in p for p in problems), problems


def test_a_broken_makefile_command_is_named() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--n-boot 200" in makefile
    broken = makefile_commands(makefile.replace("--n-boot 200", "--nboot 200", 1))
    problems = [f"{c.where()}: {problem}" for c in broken if (problem := command_problem(c))]
    assert len(problems) == 1 and "--nboot" in problems[0] and problems[0].startswith("Makefile:"), problems


def test_a_flag_missing_from_the_guides_is_listed() -> None:
    readme = guides_text()
    assert mentioned(readme, "--strict")
    assert undocumented(readme.replace("--strict", "--stern")) == ["pneumoscan audit --strict"]
    assert env_vars_undocumented(readme.replace("PNEUMOSCAN_ORT_THREADS", "ORT_THREADS")) == ["PNEUMOSCAN_ORT_THREADS"]


def test_a_results_header_with_an_unquoted_label_is_named() -> None:
    text = (RESULTS / "train_full.md").read_text()
    quoted = "--label 'resnet10, shipped recipe, run alone (2 threads, channels-last trainer)'"
    assert quoted in text
    problems = results_problems("train_full.md", text.replace(quoted, quoted.replace("'", ""), 1))
    assert problems and problems[0].startswith("train_full.md:3: ") and "unrecognized arguments: shipped" in problems[0]


def test_an_argv_joined_with_spaces_is_found() -> None:
    assert unquoted_argv_joins('x = 1\ncommand = "python bench/x.py " + " ".join(sys.argv[1:])\n') == [2]
    assert unquoted_argv_joins('command = "python bench/x.py " + shlex.join(argv or sys.argv[1:])\n') == []


@pytest.mark.parametrize(("original", "planted", "expected"), [
    ("| specificity | 0.8718 |", "| specificity | 0.8719 |", "test table specificity 0.8719"),
    ("| roc_auc | 0.9848 | [0.9769, 0.9914] |", "| roc_auc | 0.9848 | [0.9769, 0.9915] |", "roc_auc interval"),
    ("| recall, virus (n=148) | 0.9932 |", "| recall, virus (n=148) | 0.9923 |", "recall, virus (n=148) 0.9923"),
    ("TN 204, FP 30", "TN 203, FP 31", "confusion matrix"),
    ("Threshold 0.6151;", "Threshold 0.6172;", "threshold 0.6172"),
    ("| brier | 0.0509 | [0.0376, 0.0647] |\n", "", "lacks brier"),
])
def test_a_planted_test_table_mismatch_is_named(original: str, planted: str, expected: str) -> None:
    card = (ROOT / "MODEL_CARD.md").read_text()
    assert original in card
    problems = metrics_table_problems(card.replace(original, planted, 1))
    assert len(problems) == 1 and expected in problems[0], problems


def test_a_planted_prose_mismatch_is_named() -> None:
    card = (ROOT / "MODEL_CARD.md").read_text()
    assert "sensitivity 0.982 and accuracy 0.941" in card
    problems = card_prose_problems(card.replace("sensitivity 0.982 and accuracy 0.941", "sensitivity 0.982 and accuracy 0.944"))
    assert len(problems) == 1 and "accuracy 0.944" in problems[0], problems


def _subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    (sub,) = [a.choices[name] for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub


def test_a_planted_help_default_or_option_is_named() -> None:
    train = _subcommand(build_parser(), "train")
    epochs = train._option_string_actions["--epochs"]
    assert help_default_problems(train, "train") == []
    epochs.help = "maximum epochs (default 25)"
    assert help_default_problems(train, "train") == ["pneumoscan train --epochs: --help says default 25, it runs with 30"]
    serve = _subcommand(build_parser(), "serve")
    serve._option_string_actions["--slots"].help = "requests at a time (default 2; see --max-slots)"
    assert help_default_problems(serve, "serve") == []
    assert help_option_problems(serve, "serve") == ["pneumoscan serve --help names --max-slots, an option of no command"]
    serve.description = "scored as by `pneumoscan evaluat --data DATA`"
    assert "invalid choice: 'evaluat'" in help_option_problems(serve, "serve")[-1]


@pytest.mark.parametrize("doc, original, planted, said", [
    (TRAINING_DOC, "`--batch-size` (64)", "`--batch-size` (65)", "`--batch-size` 65: its default is 64 or 128"),
    (SERVICE_DOC, "| `--upload-idle-s` | 30 |", "| `--upload-idle-s` | 20 |", "`--upload-idle-s` 20: its default is 30.0"),
])
def test_a_planted_guide_default_is_named(doc: str, original: str, planted: str, said: str) -> None:
    """In a guide's text (`--batch-size` (64)) and in its option tables (| `--upload-idle-s` | 30 |)."""
    text = (ROOT / doc).read_text()
    assert original in text
    line = line_of(text, original)
    problems = default_problems(doc, text.replace(original, planted, 1))
    assert problems == [f"{doc}:{line}: {said}"], problems


def test_a_section_missing_from_the_contents_and_a_dead_link_are_named() -> None:
    text = (ROOT / DATA_DOC).read_text()
    assert heading_anchor("Transfer learning (offline)") == "transfer-learning-offline"
    assert heading_anchor("Your own operating point: `pneumoscan set-threshold`") == \
        "your-own-operating-point-pneumoscan-set-threshold"
    inputs, link = line_of(text, "\n## Inputs\n") + 1, line_of(text, "[Inputs](#inputs)")
    problems = contents_problems(DATA_DOC, text.replace("\n## Inputs\n", "\n## Inputs\n\n### Input formats\n", 1))
    assert problems == [f"{DATA_DOC}:{inputs + 2}: its section is not in the contents at the top (add a link to "
                        "#input-formats)"], problems
    problems = contents_problems(DATA_DOC, text.replace("[Inputs](#inputs)", "[Inputs](#input)", 1))
    assert problems == [f"{DATA_DOC}:{inputs}: its section is not in the contents at the top (add a link to #inputs)",
                        f"{DATA_DOC}:{link}: link to #input, which no heading has"], problems
    readme = (ROOT / "README.md").read_text()
    assert contents_problems("README.md", readme.replace("**Contents**", "Contents", 1)) == \
        ["README.md: no **Contents** list of its sections"]


def test_a_link_to_a_missing_file_or_heading_is_named() -> None:
    readme = (ROOT / "README.md").read_text()
    original = "[docs/data.md](docs/data.md)"
    assert original in readme
    line = line_of(readme, original)
    assert link_problems("README.md", readme.replace(original, "[docs/data.md](docs/dat.md)", 1)) == \
        [f"README.md:{line}: link to docs/dat.md: docs/dat.md does not exist"]
    assert link_problems("README.md", readme.replace(original, "[docs/data.md](docs/data.md#input)", 1)) == \
        [f"README.md:{line}: link to docs/data.md#input: docs/data.md has no heading #input"]
    text = (ROOT / SERVICE_DOC).read_text()
    original = "(evaluation.md#operating-points-and-prevalence)"
    assert original in text
    (problem,) = link_problems(SERVICE_DOC, text.replace(original, "(evaluation.md#operating-point)", 1))
    assert problem.startswith(f"{SERVICE_DOC}:{line_of(text, original)}: ") and "has no heading" in problem


def test_planted_artifact_ablation_and_comparison_mismatches_are_named() -> None:
    texts = {doc: (ROOT / doc).read_text() for doc in DOCS}
    assert "(5,190 distinct" in texts["MODEL_CARD.md"]
    planted = {**texts, "MODEL_CARD.md": texts["MODEL_CARD.md"].replace("(5,190 distinct", "(5,216 distinct", 1)}
    (problem,) = artifact_statement_problems(planted)
    assert problem.startswith("MODEL_CARD.md: ") and "5,216, the shipped model's is 5190" in problem
    card = texts["MODEL_CARD.md"]
    row = "| AC_resnet10_128_sampler_equalize_geom0.2_consistency10_30ep |"
    assert row in card and "| 3206.8 | 0.9965 |" in card
    (problem,) = ablation_table_problems(card.replace("| 3206.8 | 0.9965 |", "| 3206.8 | 0.9966 |", 1))
    assert "AC_resnet10_128_sampler_equalize_geom0.2_consistency10_30ep val_auc '0.9966'" in problem
    table = texts[BENCHMARKS_DOC]
    assert "| 0.9965 | 0.941 | 0.982 | 0.872 | 0.9848 [0.977, 0.992] |" in table
    (problem,) = comparison_problems(table.replace("0.872 | 0.9848 [0.977, 0.992]", "0.872 | 0.9848 [0.977, 0.991]"))
    assert "the same + consistency loss" in problem


def test_a_planted_benchmark_figure_is_named() -> None:
    texts = {doc: (ROOT / doc).read_text() for doc in DOCS}
    assert "(0.108 below it, 0.129 above)" in texts["MODEL_CARD.md"]
    planted = {**texts, "MODEL_CARD.md": texts["MODEL_CARD.md"].replace("0.129 above", "0.130 above", 1)}
    (problem,) = recorded_statement_problems(planted)
    assert problem.startswith("MODEL_CARD.md: `(0.108 below it, 0.130 above)`: 0.130, recorded 0.129")


@pytest.mark.parametrize(("original", "planted", "expected"), [
    ("n_boot=1000, seed=0, backend=None", "n_boot=2000, seed=0, backend=None", "n_boot is shown defaulting to 2000"),
    ("`gradcam(image, model=None, *, threshold=None)`", "`gradcam(image, model=None, *, threshold=None, cam=1)`",
     "has no parameter cam"),
    ("`export_onnx(model, out, *, images=None)`", "`export_onnx(model, out, images=None)`", "images is shown positional"),
    ("cache_dir=None, progress=True, predictions=False)", "cache_dir=None, predictions=False)",
     "`evaluate` leaves out progress"),
])
def test_a_planted_api_signature_is_named(original: str, planted: str, expected: str) -> None:
    text = (ROOT / API_DOC).read_text()
    assert original in text
    (problem,) = api_signature_problems(text.replace(original, planted, 1))
    assert expected in problem


def test_a_planted_benchmark_default_is_named() -> None:
    text = (ROOT / BENCHMARKS_DOC).read_text()
    assert "| 16 concurrent clients against" in text
    (problem,) = bench_default_problems(text.replace("| 16 concurrent clients against", "| 8 concurrent clients against"))
    assert "8, bench/load.py's default clients is 16" in problem


def test_a_mean_of_rounded_figures_is_named() -> None:
    card = (ROOT / "MODEL_CARD.md").read_text()
    assert "0.9907 (AG1), mean 0.9912;" in card
    (problem,) = seed_mean_problems(card.replace("0.9907 (AG1), mean 0.9912;", "0.9907 (AG1), mean 0.9913;"))
    assert "the mean geometry_auc_mean of AG, AG1 is 0.991215" in problem


def test_a_planted_recipe_default_is_named() -> None:
    card = (ROOT / "MODEL_CARD.md").read_text()
    assert "(patience 8)" in card
    (problem,) = recipe_problems(card.replace("(patience 8)", "(patience 10)", 1))
    assert "(patience 10)`: the defaults are [2.0, 0.05, 64, 30, 8]" in problem


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_installs_pneumoscan_without_the_test_tools(tmp_path: Path) -> None:
    """`make demo` installed the dev extras (pytest, playwright, schemathesis, ...) that only `make test` runs."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)

    def dry_run(target: str) -> list[str]:
        done = subprocess.run(["make", "-n", target], cwd=tmp_path, capture_output=True, text=True, check=True)
        return [line for line in done.stdout.splitlines() if "pip install" in line]

    assert dry_run("demo") == [".venv/bin/pip install --quiet --upgrade pip", ".venv/bin/pip install --quiet -e ."]
    assert dry_run("test")[-1] == ".venv/bin/pip install --quiet -e '.[dev]'"


def test_the_resume_learning_rate_example_holds_at_any_number_of_batches_per_epoch() -> None:
    """It said 'from 0.001 at the end of epoch 2 of 2', which holds only at 2 batches per epoch (11: 4e-05)."""
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.recipe import lr_at

    text = " ".join((ROOT / TRAINING_DOC).read_text().split())
    lr, warmup = TrainConfig.lr, TrainConfig.warmup_epochs
    for batches in (2, 11):
        end_of_2 = lr_at(2 * batches - 1, 2 * batches, int(warmup * batches), lr)
        assert f"{end_of_2:.1g} at {batches}" in text or f"{end_of_2:.1g} at {batches} batches per epoch" in text
        assert f"{lr_at(2 * batches, 4 * batches, int(warmup * batches), lr):.2g} at epoch 3 of 4" in text
    assert lr_at(2 * 82 - 1, 2 * 82, 82, lr) < 1e-6 and "from near 0 at the end of epoch 2 of 2" in text  # Kermany


def test_the_inference_benchmark_times_train_films_not_the_test_split(tmp_path: Path) -> None:
    """bench/inference.py timed the shipped model over the test split by default: timing needs none of its films,
    and the test split is kept for final reports. Its default is now the train split (the sample's train folder
    without the data set), 624 films spread over it, as its help and docs/benchmarks.md say; --data times another."""
    with bench_importable():
        inference = importlib.import_module("inference")
        help_text = inference.build_parser().format_help()
        timed = inference.films(inference.default_data(), 10)
        film = sorted((ROOT / "sample" / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0]
        for i in range(6):
            shutil.copy(film, tmp_path / f"{i}.jpeg")
        mine = inference.films(tmp_path, 3)
    assert [folder.name for folder in inference.DATA_DIRS] == ["train", "train"]
    assert len(timed) == 10 and all("train" in film.parts and "test" not in film.parts for film in timed)
    assert {film.parent.name for film in timed} == {"NORMAL", "PNEUMONIA"}
    assert mine == [tmp_path / "0.jpeg", tmp_path / "2.jpeg", tmp_path / "4.jpeg"]
    assert "chest_xray/test" not in help_text and "chest_xray/test" not in inference.__doc__
    row = next(line for line in (ROOT / BENCHMARKS_DOC).read_text().splitlines() if line.startswith("| `inference.py`"))
    assert "train split" in row


def test_the_inference_benchmark_spreads_its_films_over_the_whole_folder_for_any_limit(tmp_path: Path) -> None:
    """films(DATA, N) took every (len // N)-th film and kept the first N: for N above half the folder, the first N
    sorted films (3,000 of the official train split: its 1,341 NORMAL films and the first 1,659 PNEUMONIA)."""
    film = sorted((ROOT / "sample" / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0]
    for i in range(10):
        shutil.copy(film, tmp_path / f"{i}.jpeg")
    with bench_importable():
        inference = importlib.import_module("inference")
        picked = {limit: [int(path.stem) for path in inference.films(tmp_path, limit)] for limit in (1, 4, 6, 9, 10, 50)}
    assert picked == {1: [0], 4: [0, 2, 5, 7], 6: [0, 1, 3, 5, 6, 8], 9: [0, 1, 2, 3, 4, 5, 6, 7, 8],
                      10: list(range(10)), 50: list(range(10))}


@pytest.mark.parametrize(("command", "said"), [
    ("train", "not a pretrain folder, nor the data folder or one of its split or class folders"),
    ("pretrain", "not a train run, nor the data folder or one of its split or class folders"),
    ("set-threshold", "neither in the data folder itself nor in its split or class folders"),
    ("ensemble", "not in the members' data folder nor one of its split or class folders"),
    ("explain", "not in the model's training data folder nor one of its split or class folders"),
    ("report", "not in the run's training data or --data folder nor one of its split or class folders"),
    ("compare", "not in the runs' training data or --data folder nor one of its split or class folders"),
], ids=["train", "pretrain", "set-threshold", "ensemble", "explain", "report", "compare"])
def test_out_help_names_the_data_folder_it_is_refused_in(command: str, said: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Each command refuses an --out that is the data folder or in its split or class folders (`check_out_of_data`):
    pretrain's --help did not say so, and set-threshold's named the split and class folders alone."""
    from pneumoscan.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert said in " ".join(capsys.readouterr().out.split())
