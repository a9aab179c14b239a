"""Progress bars for every command: on stderr, and only when stderr is a terminal, so logs get no bar text."""
from __future__ import annotations

import sys
from typing import Any, Iterable

from tqdm import tqdm


def stderr_is_terminal() -> bool:
    """Whether the current stderr is a terminal (not a pipe, a file or a closed stream)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False


def progress_bar(iterable: Iterable | None = None, *, progress: bool = True, **options: Any) -> tqdm:
    """A tqdm bar on stderr, cleared when done; shown when `progress` (no --quiet) and stderr is a terminal, else
    a silent pass-through over `iterable`."""
    return tqdm(iterable, file=sys.stderr, leave=False, disable=not (progress and stderr_is_terminal()), **options)


def write_warning(message: str) -> None:
    """`pneumoscan: warning: MESSAGE` on stderr, as every command's warnings, above any progress bar."""
    tqdm.write(f"pneumoscan: warning: {message}", file=sys.stderr)
