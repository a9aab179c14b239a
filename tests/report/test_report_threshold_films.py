"""`report` and `compare` warn, as `evaluate` does, when scored on the films `set-threshold` chose the threshold on."""
from __future__ import annotations

from pathlib import Path

import pytest

from pneumoscan.cli import main

IN_SAMPLE = "these are the films the threshold was chosen on"


def test_report_and_compare_warn_on_the_films_the_threshold_was_chosen_on(tiny_run: Path, tiny_data: Path,
                                                                          tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    assert main(["set-threshold", "--model", str(tiny_run), "--data", str(tiny_data), "--out", str(site),
                 "--n-boot", "20"]) == 0
    capsys.readouterr()
    assert main(["report", str(site), "--data", str(tiny_data), "--n-boot", "20", "--cases", "1"]) == 0
    assert IN_SAMPLE in capsys.readouterr().err
    assert main(["compare", str(site), str(tiny_run), "--data", str(tiny_data), "--out", str(tmp_path / "c.html"),
                 "--n-boot", "20"]) == 0
    assert capsys.readouterr().err.count(IN_SAMPLE) == 1  # the site copy only, not the run it came from

    assert main(["report", str(site), "--data", str(tiny_data), "--split", "train", "--out", str(tmp_path / "t.html"),
                 "--n-boot", "20", "--cases", "1"]) == 0
    assert IN_SAMPLE not in capsys.readouterr().err
