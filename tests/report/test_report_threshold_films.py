"""`report` and `compare` warn, as `evaluate` does, when scored on the films `set-threshold` chose the threshold on."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pneumoscan.cli import main

IN_SAMPLE = "these are the films the threshold was chosen on"


def test_report_and_compare_warn_on_the_films_the_threshold_was_chosen_on(tiny_site: Path, tiny_run: Path,
                                                                          tiny_data: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    site = tiny_site
    assert main(["report", str(site), "--data", str(tiny_data), "--out", str(tmp_path / "r.html"), "--n-boot", "20",
                 "--cases", "1"]) == 0
    assert IN_SAMPLE in capsys.readouterr().err
    assert main(["compare", str(site), str(tiny_run), "--data", str(tiny_data), "--out", str(tmp_path / "c.html"),
                 "--n-boot", "20"]) == 0
    err = capsys.readouterr().err
    assert err.count(IN_SAMPLE) == 1  # the site copy only, not the run it came from
    assert f"{site}: {IN_SAMPLE}" in err  # named: with several runs, 'these are the films' said not whose

    assert main(["report", str(site), "--data", str(tiny_data), "--split", "train", "--out", str(tmp_path / "t.html"),
                 "--n-boot", "20", "--cases", "1"]) == 0
    assert IN_SAMPLE not in capsys.readouterr().err


def test_compare_names_the_run_in_each_of_its_warnings(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs trained on the films given as --data: each warned '... images are byte-identical to images this
    model was trained or validated on', and nothing said which warning was whose."""
    other = tmp_path / "other"
    shutil.copytree(tiny_run, other)
    assert main(["compare", str(tiny_run), str(other), "--data", str(tiny_data), "--split", "train",
                 "--out", str(tmp_path / "c.html"), "--n-boot", "5"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "trained or validated on" in line]
    assert len(lines) == 2
    assert lines[0].startswith(f"pneumoscan: warning: {tiny_run}: ") and lines[1].startswith(f"pneumoscan: warning: {other}: ")
