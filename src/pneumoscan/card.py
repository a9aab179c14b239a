"""The texts of the source tree's top that ship with the package, installed under pneumoscan/docs/ at the same
relative paths (pyproject.toml), so that their relative links hold there too: the shipped model's card, MODEL_CARD.md
(`pneumoscan card` prints it and the service sends it at GET /model/card; it describes the model shipped with
pneumoscan only, never a model trained with it), README.md and the guides of docs/ (`pneumoscan docs GUIDE`), which a
pip install has no other copy of."""
from __future__ import annotations

from pathlib import Path

from pneumoscan.errors import InputError

MODEL_CARD = "MODEL_CARD.md"
GUIDES = "docs"  # the guides' folder: docs/GUIDE.md
README = "README.md"  # `pneumoscan docs readme`, which the guides' "Back to the README" links name
SOURCE_PATHS = ("paths in the guides (bench/, tests/, sample/, src/, make targets) are those of pneumoscan's source "
                "tree (a checkout), not of this installation")


def _installed(relative: str) -> Path:
    return Path(__file__).resolve().parent / "docs" / relative


def shipped_path(relative: str) -> Path | None:
    """The file `relative` to the source tree's top: the installed package's copy, else the source tree's; None
    when neither is there."""
    for path in (_installed(relative), Path(__file__).resolve().parents[2] / relative):
        if path.exists():
            return path
    return None


def model_card_path() -> Path | None:
    """The shipped model's card: the installed package's copy, else the source tree's; None when neither is there."""
    path = shipped_path(MODEL_CARD)
    return path if path is not None and path.is_file() else None


def model_card_text() -> str:
    """The shipped model's card as Markdown; an InputError when this installation lacks it."""
    path = model_card_path()
    if path is None:
        raise InputError(f"{_installed(MODEL_CARD)}: the shipped model's card is not installed; reinstall "
                         f"pneumoscan, or read {MODEL_CARD} at the top of its source")
    return path.read_text(encoding="utf-8")


def _guide_files() -> dict[str, Path]:
    folder = shipped_path(GUIDES)
    if folder is None or not folder.is_dir():
        return {}
    readme = shipped_path(README)
    return {**({"readme": readme} if readme is not None else {}),
            **{path.stem.lower(): path for path in sorted(folder.glob("*.md"))}}  # as guide_name reads a name


def guide_name(typed: str) -> str:
    """The guide's name as listed for `typed` as a reader may type it: in any case, with a `docs/` before or `.md`
    after it (`docs/Training.md` is `training`)."""
    name = typed.strip().replace("\\", "/").lower()
    return name.removeprefix("./").removeprefix("docs/").removesuffix(".md")


def guides() -> dict[str, str]:
    """Each guide's name (`training` for docs/training.md) and title (its first line, less the '# '), by name."""
    return {name: path.read_text(encoding="utf-8").partition("\n")[0].lstrip("# ").strip()
            for name, path in _guide_files().items()}


def guide_text(name: str) -> str:
    """The guide `name` (docs/NAME.md, or README.md for `readme`; as `guide_name` reads it) as Markdown; an
    InputError naming the guides there are when none has that name, or when this installation has none."""
    files = _guide_files()
    if not files:
        raise InputError(f"{_installed(GUIDES)}: pneumoscan's guides are not installed; reinstall pneumoscan, or read "
                         f"{GUIDES}/ in its source")
    if guide_name(name) not in files:
        raise InputError(f"no guide {name!r}; the guides are {', '.join(files)} (`pneumoscan docs` lists them)")
    return files[guide_name(name)].read_text(encoding="utf-8")
