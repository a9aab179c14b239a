"""Write a benchmark's rows as bench/results/NAME.json and a markdown table NAME.md."""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, float) for v in value):
        return f"[{value[0]:.3f}, {value[1]:.3f}]"
    return "" if value is None else str(value)


def write_results(name: str, rows: list[dict[str, Any]], columns: list[str], *, command: str, note: str = "") -> Path:
    """Write JSON (rows plus provenance) and a markdown table; returns the JSON path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, "
            f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}", "note": note}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# {name}", "", f"`{command}` ({meta['date']}, {meta['machine']})", ""]
    if note:
        lines += [note, ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    return path


def write_report(out: str | Path, name: str, report: dict[str, Any], markdown: str) -> None:
    """Write a benchmark's whole `report` as OUT/NAME.json and its `markdown` as OUT/NAME.md, and print the latter."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2))
    (out / f"{name}.md").write_text(markdown)
    print(markdown)


def carry_over(name: str, rows: list[dict[str, Any]], key: str, command: str) -> tuple[list[dict[str, Any]], str]:
    """`rows`, just made by `command`, merged into the recorded bench/results/NAME.json (same `key` replaces
    in place; new ones follow). Every row keeps its `source`, the command and date that made it; a
    recorded row without one was made by the recorded file's command. Returns the rows and a sentence
    for the note naming the rows of each source."""
    recorded = json.loads((RESULTS / f"{name}.json").read_text())
    earlier = f"`{recorded['meta']['command']}` ({recorded['meta']['date']})"
    fresh = {row[key]: {**row, "source": f"`{command}` ({time.strftime('%Y-%m-%d %H:%M')})"} for row in rows}
    merged = [fresh.pop(row[key], {"source": earlier, **row}) for row in recorded["rows"]] + list(fresh.values())
    by_source: dict[str, list[str]] = {}
    for row in merged:
        by_source.setdefault(row["source"], []).append(str(row[key]))
    return merged, " Rows by the command that made them: " + "; ".join(
        f"{source}: {', '.join(names)}" for source, names in by_source.items()) + "."


def picture_bench_parser(description: str, default_data: Path, default_out: Path) -> argparse.ArgumentParser:
    """The command line of a benchmark that measures every train film and pictures made of every Nth
    (bench/dither_cue.py, bench/few_grey_levels.py; tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", default=str(default_data), help="data folder with train/ (test/ is not read)")
    parser.add_argument("--every", type=int, default=20, help="make pictures of every Nth train film")
    parser.add_argument("--out", default=str(default_out), help="results folder")
    return parser


# what to do when DATA/train holds no films (image_files_under's advice for a folder that --data chooses)
GIVE_DATA = ("give --data the data folder whose train/ holds NORMAL/ and PNEUMONIA/ (the default, "
             "../shared/data/chest_xray, is beside the project folder)")


def image_files_under(folder: Path, *, advice: str) -> list[Path]:
    """The files in the class folders of `folder` (a split such as DATA/train), sorted; none is a one-line exit
    naming the folder and `advice`, the fix for the folder the caller chose (the measurements would end in a
    traceback on no films)."""
    files = sorted(p for p in folder.glob("*/*") if p.is_file())
    if not files:
        raise SystemExit(f"{folder}: no films in class folders here; {advice}")
    return files


def recorded_report(out: str | Path, name: str, option: str) -> dict[str, Any]:
    """OUT/NAME.json, which `option` (a run of one part alone) adds to; its absence is a one-line exit."""
    path = Path(out) / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"{path}: no recorded results for {option} to keep; run without {option} first, or give "
                         f"--out the folder holding them")
    return json.loads(path.read_text())
