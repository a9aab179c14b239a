"""What `audit`, `evaluate` and `set-threshold` write besides their report: `--json` (a file, or '-': stdout, the
text report then going to stderr) and `--predictions`, checked before the work."""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Callable


def write_json(path: str, data: object) -> None:
    """JSON to `path` ('-': stdout), already checked by `check_outputs`."""
    if path == "-":
        print(_json_text(data))
    else:
        from pneumoscan.outputs import atomic_write

        atomic_write(path, json_writer(data))


def _json_text(data: object) -> str:
    """`data` as JSON; undefined (NaN) values become null, as other JSON readers need."""
    from pneumoscan.outputs import json_ready

    return json.dumps(json_ready(data), indent=2, allow_nan=False)


def json_writer(data: object) -> Callable[[Path], object]:
    """What writes `data` as JSON to a file (for `atomic_write_all`, beside other outputs)."""
    text = _json_text(data)
    return lambda tmp: tmp.write_text(text)


def report_stream(json_path: str | None) -> contextlib.AbstractContextManager:
    """Where the human-readable report goes: stderr when `--json -` takes stdout, which then holds JSON only."""
    return contextlib.redirect_stdout(sys.stderr) if json_path == "-" else contextlib.nullcontext()


def check_outputs(json_path: str | None = None, csv_path: str | None = None) -> None:
    """Check the output files (`--json`, '-' being stdout; `--predictions`) up front, so a bad path fails before
    the work; their folders are made when they are written, so a command that fails leaves none behind."""
    from pneumoscan.errors import InputError
    from pneumoscan.outputs import check_output

    if csv_path == "-":
        raise InputError("--predictions -: the per-image table is written to a file, not to stdout; give a file name "
                         "ending in .csv (only --json takes '-')")
    for path, suffix, what, option in ((json_path, ".json", "JSON", "--json"),
                                       (csv_path, ".csv", "the per-image table", "--predictions")):
        if path and (path != "-" or option != "--json"):  # only JSON can go to stdout
            check_output(path, (suffix,), what, option)
