"""Start-up cost of `pneumoscan predict` with the shipped model (backend auto, ONNX Runtime on this CPU).

    PYTHONPATH=src:bench .venv/bin/python bench/predict_startup.py --label NAME [--repeats 5] [--src SRC]
        [--train ../shared/data/chest_xray/train]

Runs `python -m pneumoscan predict --csv` in a fresh process on 1 train film and on a folder of 50 (the first 25
train films of each class, linked into a temporary folder), `--repeats` times each under `/usr/bin/time`: wall
seconds and peak RSS (median and best); every run must print a row without error for each film. The machine's
1-minute load average (mean of before and after the runs) says how busy the shared cores were. One more run with
`-X importtime` records whether torch was imported and its import time. `--src`: the source tree to run (default
this checkout's src/; an export of an earlier commit gives the row before a change). Train films only (never the
test split). The row `--label` is merged into bench/results/predict_startup.json and .md (rows of other labels
are kept).
"""
from __future__ import annotations

import argparse
import csv
import io
import os
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
ONE = Path("NORMAL") / "IM-0115-0001.jpeg"
COLUMNS = ["label", "films", "wall s (median)", "wall s (best)", "peak RSS MB (median)", "torch imported",
           "import s (importtime, torch)", "load average", "source"]


def fifty(train: Path, folder: Path) -> Path:
    """A folder of links to the first 25 train films of each class."""
    for cls in ("NORMAL", "PNEUMONIA"):
        for film in sorted((train / cls).glob("*.jpeg"))[:25]:
            (folder / f"{cls}_{film.name}").symlink_to(film)
    return folder


def run(target: Path, films: int, src: Path, *, flags: tuple[str, ...] = (),
        prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`prefix python flags -m pneumoscan predict --csv TARGET` from `src`; RuntimeError unless it gave every film a
    row without error."""
    env = {**src_env(), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(src)}
    done = subprocess.run([*prefix, sys.executable, *flags, "-m", "pneumoscan", "predict", "--quiet", "--csv",
                           str(target)], env=env, capture_output=True, text=True)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    if len(rows) != films or any(row["error"] for row in rows):
        raise RuntimeError(f"predict {target} gave {len(rows)} rows for {films} films: {done.stderr[-500:]}")
    return done


def timed(target: Path, films: int, src: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one `pneumoscan predict TARGET`."""
    done = run(target, films, src, prefix=("/usr/bin/time", "-f", "%e %M"))
    wall, kb = done.stderr.strip().splitlines()[-1].split()
    return float(wall), int(kb) / 1024


def import_profile(target: Path, films: int, src: Path) -> tuple[bool, float | None]:
    """Whether torch was imported, and its cumulative import seconds, from `-X importtime`."""
    done = run(target, films, src, flags=("-X", "importtime"))
    torch = [int(m.group(1)) for m in re.finditer(r"\|\s*(\d+) \|\s*torch$", done.stderr, re.M)]
    return bool(torch), (torch[0] / 1e6 if torch else None)


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="the row's name, such as before or after")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the source tree to run (default: src/)")
    parser.add_argument("--train", type=Path, default=ROOT.parent / "shared" / "data" / "chest_xray" / "train",
                        help="the train split's class folders (never the test split)")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if not (args.train / ONE).is_file():
        parser.error(f"{args.train / ONE}: no such film; pass --train, the train split's class folders")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for films, target in ((1, args.train / ONE), (50, fifty(args.train, Path(tmp)))):
            load = os.getloadavg()[0]
            runs = [timed(target, films, args.src) for _ in range(args.repeats)]
            torch, import_s = import_profile(target, films, args.src)
            rows.append({"label": f"{args.label}, {films}", "films": films,
                         "wall s (median)": statistics.median(r[0] for r in runs),
                         "wall s (best)": min(r[0] for r in runs),
                         "peak RSS MB (median)": round(statistics.median(r[1] for r in runs)),
                         "torch imported": torch, "import s (importtime, torch)": import_s,
                         "load average": round((load + os.getloadavg()[0]) / 2, 1)})
    command = "PYTHONPATH=src:bench .venv/bin/python bench/predict_startup.py " + shlex.join(sys.argv[1:])
    try:
        rows, sources = carry_over("predict_startup", rows, "label", command)
    except FileNotFoundError:
        sources = ""
    write_results("predict_startup", rows, COLUMNS, command=command,
                  note=f"`pneumoscan predict` with the shipped model, backend auto (ONNX Runtime), OMP_NUM_THREADS=1, "
                       f"{args.repeats} runs each, 2 CPU cores shared with other jobs. A row labelled 'before (COMMIT)' "
                       f"runs `--src DIR/src` of `git archive COMMIT src | tar -x -C DIR`.{sources}")
    print((Path(__file__).parent / "results" / "predict_startup.md").read_text())


if __name__ == "__main__":
    main()
