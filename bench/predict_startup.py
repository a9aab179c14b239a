"""Start-up cost of `pneumoscan predict` with the shipped model (backend auto, ONNX Runtime on this CPU).

    PYTHONPATH=src:bench .venv/bin/python bench/predict_startup.py --label NAME [--repeats 5]

Runs `python -m pneumoscan predict` in a fresh process on 1 train film and on a folder of 50 (the first 25 train
films of each class, linked into a temporary folder), `--repeats` times each under `/usr/bin/time`: wall seconds
and peak RSS (median and best). One more run with `-X importtime` records whether torch was imported and the
import time of `pneumoscan.cli`'s predict path. Train films only (never the test split). The row `--label` is
merged into bench/results/predict_startup.json and .md (rows of other labels are kept: before and after a change).
"""
from __future__ import annotations

import argparse
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import carry_over, write_results
from _subprocess import src_env

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT.parent / "shared" / "data" / "chest_xray" / "train"
ONE = TRAIN / "NORMAL" / "IM-0115-0001.jpeg"
COLUMNS = ["label", "films", "wall s (median)", "wall s (best)", "peak RSS MB (median)", "torch imported",
           "import s (importtime, torch)", "source"]


def fifty(folder: Path) -> Path:
    """A folder of links to the first 25 train films of each class."""
    for cls in ("NORMAL", "PNEUMONIA"):
        for film in sorted((TRAIN / cls).glob("*.jpeg"))[:25]:
            (folder / f"{cls}_{film.name}").symlink_to(film)
    return folder


def timed(target: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one `pneumoscan predict TARGET`."""
    command = ["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "pneumoscan", "predict", "--quiet", str(target)]
    done = subprocess.run(command, env={**src_env(), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    wall, kb = done.stderr.strip().splitlines()[-1].split()
    return float(wall), int(kb) / 1024


def import_profile(target: Path) -> tuple[bool, float | None]:
    """Whether torch was imported, and its cumulative import seconds, from `-X importtime`."""
    command = [sys.executable, "-X", "importtime", "-m", "pneumoscan", "predict", "--quiet", str(target)]
    done = subprocess.run(command, env={**src_env(), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    torch = [int(m.group(1)) for m in re.finditer(r"\|\s*(\d+) \|\s*torch$", done.stderr, re.M)]
    return bool(torch), (torch[0] / 1e6 if torch else None)


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="the row's name, such as before or after")
    parser.add_argument("--repeats", type=int, default=5)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for films, target in ((1, ONE), (50, fifty(Path(tmp)))):
            runs = [timed(target) for _ in range(args.repeats)]
            torch, import_s = import_profile(target)
            rows.append({"label": f"{args.label}, {films}", "films": films,
                         "wall s (median)": statistics.median(r[0] for r in runs),
                         "wall s (best)": min(r[0] for r in runs),
                         "peak RSS MB (median)": round(statistics.median(r[1] for r in runs)),
                         "torch imported": torch, "import s (importtime, torch)": import_s})
    command = "PYTHONPATH=src:bench .venv/bin/python bench/predict_startup.py " + shlex.join(sys.argv[1:])
    try:
        rows, sources = carry_over("predict_startup", rows, "label", command)
    except FileNotFoundError:
        sources = ""
    write_results("predict_startup", rows, COLUMNS, command=command,
                  note=f"`pneumoscan predict` with the shipped model, backend auto (ONNX Runtime), OMP_NUM_THREADS=1, "
                       f"{args.repeats} runs each, 2 CPU cores shared with other jobs.{sources}")
    print((Path(__file__).parent / "results" / "predict_startup.md").read_text())


if __name__ == "__main__":
    main()
