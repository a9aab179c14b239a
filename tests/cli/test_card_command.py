"""`pneumoscan card`: the shipped model's card, which a user who installed pneumoscan with pip had no way to read."""
from __future__ import annotations

from pathlib import Path

import pytest

from pneumoscan.card import model_card_path
from pneumoscan.cli import main

CARD = Path(__file__).resolve().parents[2] / "MODEL_CARD.md"


def test_card_prints_the_shipped_models_card_as_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["card"]) == 0
    out, err = capsys.readouterr()
    assert out == CARD.read_text(encoding="utf-8") and err == ""


def test_in_the_source_tree_the_card_is_the_one_at_its_top() -> None:
    """One source of truth: without an installed copy (pneumoscan/docs/, made by the wheel) the top file is read."""
    assert model_card_path() == CARD


def test_a_missing_card_is_one_line_naming_where_it_belongs(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("pneumoscan.card.model_card_path", lambda: None)
    assert main(["card"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("pneumoscan: error: ") and err.rstrip().endswith(
        "docs/MODEL_CARD.md: the shipped model's card is not installed; reinstall pneumoscan, or read MODEL_CARD.md "
        "at the top of its source")
