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


def test_docs_lists_the_readme_and_every_guide_with_its_title(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(GUIDES) == 6
    listed = [ROOT / "README.md", *GUIDES]
    assert [line.split()[0] for line in lines[:-2]] == ["readme", *(path.stem for path in GUIDES)]
    for line, path in zip(lines, listed):
        assert line.split(maxsplit=1)[1] == path.read_text(encoding="utf-8").splitlines()[0].removeprefix("# ")
    assert "`pneumoscan card`" in lines[-2]


def test_the_listing_and_help_say_the_guides_paths_are_of_the_source_tree(capsys: pytest.CaptureFixture[str]) -> None:
    """The guides name bench/NAME.py, tests/, sample/ and make targets, which a pip install lacks; nothing said so."""
    assert main(["docs"]) == 0
    said = "are those of pneumoscan's source tree (a checkout)"
    assert said in capsys.readouterr().out.splitlines()[-1]
    (commands,) = [action for action in build_parser()._actions if action.dest == "command"]
    assert said in " ".join(commands.choices["docs"].format_help().split())


@pytest.mark.parametrize("typed", ["Training", "TRAINING", "training.md", "docs/training.md", "Docs/Training.MD",
                                   "./docs/training.md"])
def test_a_guide_may_be_named_by_its_file_in_any_case(typed: str, capsys: pytest.CaptureFixture[str]) -> None:
    """README says "`pneumoscan docs training` prints one (`docs/training.md`)": `docs docs/training.md` and
    `docs Training` were refused (exit 2)."""
    assert main(["docs", typed]) == 0
    assert capsys.readouterr().out == (ROOT / "docs" / "training.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("typed", ["readme", "README", "README.md"])
def test_docs_readme_prints_the_readme_the_guides_link_back_to(typed: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docs", typed]) == 0
    assert capsys.readouterr().out == (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", GUIDES, ids=lambda path: path.stem)
def test_docs_prints_a_guide_as_it_is(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docs", path.stem]) == 0
    out, err = capsys.readouterr()
    assert out == path.read_text(encoding="utf-8") and err == ""


def test_an_unknown_guide_is_one_line_naming_the_guides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docs", "../MODEL_CARD"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("pneumoscan: error: no guide '../MODEL_CARD'; the guides are readme, benchmarks, data, ")


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


def test_no_guide_sends_a_reader_to_the_sample_test_films_or_to_bench_for_the_tta_figures() -> None:
    """evaluation.md told readers to run `pneumoscan predict sample/chest_xray/test/NORMAL` (films of the official
    test split, which the wheel does not ship) and evaluation.md and training.md cited bench/results/ablation.md for
    mirror TTA's validation AUC, which `train --help` already takes from the ablation table of `pneumoscan card`."""
    texts = {path.name: " ".join(path.read_text(encoding="utf-8").split()) for path in GUIDES}
    assert {name for name, text in texts.items() if "sample/chest_xray/test" in text} == set()
    tta = {name: re.findall(r"[^.]*all 54 runs of [^.;]*", text) for name, text in texts.items()}
    assert sorted(name for name, said in tta.items() if said) == ["evaluation.md", "training.md"]
    assert all("`pneumoscan card`" in line and "bench/" not in line for said in tta.values() for line in said)


def test_every_guide_listed_prints_whatever_the_case_of_its_file_name(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A guide docs/FAQ.md was listed as `FAQ`, and `docs FAQ` then said there was no guide 'FAQ': names are
    read in any case, so the listing names guides as they are read."""
    import pneumoscan.card as card

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "FAQ.md").write_text("# Questions\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("# pneumoscan\n", encoding="utf-8")
    monkeypatch.setattr(card, "shipped_path", lambda relative: tmp_path / relative)
    assert list(card.guides()) == ["readme", "faq"]
    assert [card.guide_text(name) for name in card.guides()] == ["# pneumoscan\n", "# Questions\n"]
