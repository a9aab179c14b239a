"""Progress bars for every command: on stderr, and only when stderr is a terminal, so logs get no bar text; in a
Jupyter notebook (whose stderr is no terminal) as a widget, or as text where ipywidgets is missing."""
from __future__ import annotations

import os
import sys
from typing import Any, Iterable, cast

from tqdm import tqdm


def stderr_is_terminal() -> bool:
    """Whether the current stderr is a terminal (not a pipe, a file or a closed stream)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (notebook, lab, VS Code, Colab), as tqdm.autonotebook tells it."""
    return "ipykernel.zmqshell" in sys.modules


def progress_bar(iterable: Iterable | None = None, *, progress: bool = True, **options: Any) -> tqdm:
    """A tqdm bar on stderr, cleared when done; shown when `progress` (no --quiet, progress=True) and stderr is a
    terminal or this is a notebook, else a silent pass-through over `iterable`."""
    if progress and in_notebook() and not stderr_is_terminal():
        from tqdm.notebook import IProgress
        from tqdm.notebook import tqdm as widget_bar

        if IProgress is not None:  # ipywidgets is installed
            return cast(tqdm, widget_bar(iterable, leave=False, **options))
        return tqdm(iterable, file=sys.stderr, leave=False, **options)
    shown = progress and stderr_is_terminal()
    if shown and _terminal_columns() == 0:  # a terminal of unknown size (`script`, some CI): tqdm would print nothing
        options = {"ncols": 80, "nrows": 24, **options}
    return tqdm(iterable, file=sys.stderr, leave=False, disable=not shown, **options)


def _terminal_columns() -> int | None:
    """The width stderr's terminal reports (0 when it was never set), None when it cannot be asked."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (AttributeError, ValueError, OSError):  # no file descriptor (a test's stream), or not a terminal
        return None


def write_warning(message: str) -> None:
    """`pneumoscan: warning: MESSAGE` on stderr, as every command's warnings, above any progress bar."""
    tqdm.write(f"pneumoscan: warning: {message}", file=sys.stderr)
