"""`pneumoscan docs`: the guides of docs/, installed with the package, which a user who installed pneumoscan with pip
had no way to read, though `--help`, `pneumoscan models` and messages sent them to docs/*.md, MODEL_CARD.md and
bench/results/, files of the source tree only."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import pneumoscan
from pneumoscan.cli import main
from pneumoscan.parser import build_parser

ROOT = Path(__file__).resolve().parents[2]
GUIDES = sorted((ROOT / "docs").glob("*.md"))
# a file of the source tree named to be read: a guide, the card's file, a benchmark's script or result
SOURCE_ONLY = re.compile(r"(?<![\w/])(?:docs/[\w*-]+\.md|MODEL_CARD\.md|bench/[\w/.*-]+)")


def test_docs_lists_every_guide_with_its_title(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(GUIDES) == 6
    assert [line.split()[0] for line in lines[:-1]] == [path.stem for path in GUIDES]
    for line, path in zip(lines, GUIDES):
        assert line.split(maxsplit=1)[1] == path.read_text(encoding="utf-8").splitlines()[0].removeprefix("# ")
    assert "`pneumoscan card`" in lines[-1]


@pytest.mark.parametrize("path", GUIDES, ids=lambda path: path.stem)
def test_docs_prints_a_guide_as_it_is(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docs", path.stem]) == 0
    out, err = capsys.readouterr()
    assert out == path.read_text(encoding="utf-8") and err == ""


def test_an_unknown_guide_is_one_line_naming_the_guides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docs", "../MODEL_CARD"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("pneumoscan: error: no guide '../MODEL_CARD'; the guides are benchmarks, data, evaluation, ")


def test_missing_guides_are_one_line_naming_where_they_belong(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("pneumoscan.card.shipped_path", lambda relative: None)
    assert main(["docs", "training"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.rstrip().endswith("docs/docs: pneumoscan's guides are not installed; reinstall pneumoscan, or read "
                                 "docs/ in its source")


def test_help_models_and_the_package_docstring_cite_only_what_a_pip_install_has(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`train --help` cited 'MODEL_CARD.md row Z' and 'bench/results/ablation.md', `pneumoscan models`
    'docs/training.md' and help(pneumoscan) 'docs/python-api.md': they name `pneumoscan card` and `pneumoscan docs`."""
    parser = build_parser()
    (commands,) = [action for action in parser._actions if action.dest == "command"]
    texts = {"--help": parser.format_help(), **{f"{name} --help": sub.format_help()
                                                 for name, sub in commands.choices.items()}}
    assert main(["models"]) == 0
    texts["models"] = capsys.readouterr().out
    texts["help(pneumoscan)"] = pneumoscan.__doc__ or ""
    assert {where: SOURCE_ONLY.findall(text) for where, text in texts.items() if SOURCE_ONLY.search(text)} == {}
    assert "`pneumoscan docs training`" in texts["models"] and "`pneumoscan card`" in texts["train --help"]


def _messages(path: Path) -> list[tuple[int, str]]:
    """The string literals of a module that are not docstrings (what it prints, raises or sends)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_no_message_sends_a_user_to_a_file_of_the_source_tree() -> None:
    """registry.missing_model_message sent a user to docs/training.md and the report's --tta line to
    bench/results/ablation.md. Allowed: the card's own file name, in card.py (which finds it) and as the name of the
    file GET /model/card sends."""
    src = ROOT / "src"
    found = {f"{path.relative_to(src)}:{line}": SOURCE_ONLY.findall(text) for path in sorted(src.rglob("*.py"))
             for line, text in _messages(path) if SOURCE_ONLY.search(text)}
    allowed = {key for key, names in found.items() if names == ["MODEL_CARD.md"]
               and key.split(":")[0] in ("pneumoscan/card.py", "pneumoscan/service/routes.py")}
    assert len(allowed) == 2 and sorted(set(found) - allowed) == []
