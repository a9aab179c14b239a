"""`report --n-boot` help says which intervals the bootstrap gives: the rates get Wilson intervals, as in evaluate."""
from __future__ import annotations

import pytest

from pneumoscan.cli import main


@pytest.mark.parametrize("command", [["evaluate", "--data", "D"], ["report", "RUN"]])
def test_n_boot_help_names_the_bootstrapped_metrics_and_the_wilson_rates(
        command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "F1, ROC AUC, average precision and Brier; the rates get Wilson intervals (default 1000)" in text
