"""The shipped model's card, MODEL_CARD.md: one file at the top of the source tree, installed with the package as
pneumoscan/docs/MODEL_CARD.md (pyproject.toml). `pneumoscan card` prints it and the service sends it at
GET /model/card. It describes the model shipped with pneumoscan only, never a model trained with it."""
from __future__ import annotations

from pathlib import Path

from pneumoscan.errors import InputError

MODEL_CARD = "MODEL_CARD.md"


def model_card_path() -> Path | None:
    """The shipped model's card: the installed package's copy, else the source tree's; None when neither is there."""
    here = Path(__file__).resolve().parent
    for path in (here / "docs" / MODEL_CARD, here.parents[1] / MODEL_CARD):
        if path.is_file():
            return path
    return None


def model_card_text() -> str:
    """The shipped model's card as Markdown; an InputError when this installation lacks it."""
    path = model_card_path()
    if path is None:
        here = Path(__file__).resolve().parent
        raise InputError(f"{here / 'docs' / MODEL_CARD}: the shipped model's card is not installed; reinstall "
                         f"pneumoscan, or read {MODEL_CARD} at the top of its source")
    return path.read_text(encoding="utf-8")
