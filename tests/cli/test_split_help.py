"""`--split` help of evaluate, report and compare says what is used without it: test/, else the only split."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pneumoscan.cli import main


@pytest.mark.parametrize("command", [["evaluate", "--data", "D"], ["report", "RUN"], ["compare", "RUN", "--out", "c.html"]])
def test_split_help_names_the_fallback_to_the_only_split(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: test, else the only one; a folder of class folders is used whole)" in text


def test_without_test_split_evaluate_uses_the_only_split(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_data / "train", tmp_path / "data" / "train")
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(tmp_path / "data"), "--json", str(out),
                 "--n-boot", "20"]) == 0
    assert json.loads(out.read_text())["split"] == "train"
