"""The bundled sample's test/ holds films of the official test split, which is for final reporting only: only
tests/test_shipped_model.py, which reports on it, may name it. Other tests use `sample_films` (tests/conftest.py)."""
from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPORTING = {TESTS / "test_shipped_model.py"}

# the ways a test names the sample's test/: `sample_dir / "test"`, `SAMPLE / "test"` (or `sample`), `"sample" /
# "chest_xray" / "test"`, "sample/chest_xray/test" and `discover(sample_dir)["test"]`
Q = r"""["']"""
NAMES_SAMPLE_TEST = re.compile(
    rf"\b(?:sample_dir|SAMPLE|sample)\s*/\s*{Q}test{Q}"
    rf"|{Q}sample{Q}\s*/\s*{Q}chest_xray{Q}\s*/\s*{Q}test{Q}"
    r"|sample/chest_xray/test"
    rf"|\b(?:discover|load_dataset)\(\s*(?:sample_dir|SAMPLE)\s*\)\s*\[\s*{Q}test{Q}")


def sample_test_lines(text: str) -> list[str]:
    """The lines of a test file's `text` that name the bundled sample's test/ folder."""
    return [line.strip() for line in text.splitlines() if NAMES_SAMPLE_TEST.search(line)]


def test_the_ways_of_naming_the_sample_test_folder_are_caught() -> None:
    named = ['films = sorted((sample_dir / "test" / "PNEUMONIA").iterdir())', "SAMPLE / 'test'", 'sample / "test"',
             'ROOT / "sample" / "chest_xray" / "test"', 'data = "sample/chest_xray/test/NORMAL"',
             'discover(sample_dir)["test"]']
    assert sample_test_lines("\n".join(named)) == named
    unnamed = ['sample_dir / "train"', 'tiny_data / "test"', 'root / "chest_xray" / "test" / "PNEUMONIA"',
               '"chest_xray/test" not in help_text', 'discover(data)["test"]', "sample_films / 'NORMAL'"]
    assert sample_test_lines("\n".join(unnamed)) == []


def test_only_the_shipped_model_test_names_the_sample_test_folder() -> None:
    named = {str(path.relative_to(TESTS)): lines for path in sorted(TESTS.rglob("*.py"))
             if path not in REPORTING | {Path(__file__).resolve()} and (lines := sample_test_lines(path.read_text()))}
    assert named == {}, "the sample's test/ is for final reporting only: use the `sample_films` fixture"
    assert all(sample_test_lines(path.read_text()) for path in REPORTING)  # the check still sees what it allows
