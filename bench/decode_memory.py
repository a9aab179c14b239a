"""Peak memory and time of decoding one very large upload, as `predict` and the service do.

    PYTHONPATH=src:bench .venv/bin/python bench/decode_memory.py [--sides 4000 8000 12000]

For each side, a random 12-bit grayscale image stored as a 16-bit PNG (what detector exports look like)
and a random 8-bit JPEG are written to a temporary folder; each is then decoded to the model's input
(`load_image(..., 128)`) in a fresh subprocess, which reports its peak RSS (VmHWM) before and after the decode.
The increase is the decode's own memory. Writes bench/results/decode_memory.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from _results import write_results

CHILD = """
import json, sys, time
from pneumoscan.data.preprocess import load_image

def peak_mb():  # this process's own high-water mark (ru_maxrss would carry the forking parent's over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

data = open(sys.argv[1], "rb").read()
before = peak_mb()
started = time.perf_counter()
load_image(data, 128, name=sys.argv[1])
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_before_mb": before, "peak_after_mb": peak_mb()}))
"""

def write_image(folder: Path, side: int, kind: str) -> Path:
    rng = np.random.default_rng(side)
    if kind == "png16":
        path = folder / f"{side}.png"
        Image.fromarray(rng.integers(0, 4096, (side, side)).astype(np.uint16)).save(path)
    else:
        path = folder / f"{side}.jpeg"
        Image.fromarray(rng.integers(0, 256, (side, side)).astype(np.uint8)).save(path, quality=90)
    return path


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[4000, 8000, 12000])
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sides:
            for kind in ("png16", "jpeg8"):
                path = write_image(Path(tmp), side, kind)
                out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True,
                                     check=True)
                got = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append({"image": f"{side} x {side} {'16-bit PNG' if kind == 'png16' else '8-bit JPEG'}",
                             "megapixels": side * side / 1e6, "file_mb": path.stat().st_size / 1e6,
                             "decode_s": got["seconds"],
                             "peak_rss_increase_mb": got["peak_after_mb"] - got["peak_before_mb"]})
                print(json.dumps(rows[-1]), flush=True)
    write_results("decode_memory", rows, ["image", "megapixels", "file_mb", "decode_s", "peak_rss_increase_mb"],
                  command="python bench/decode_memory.py " + shlex.join(sys.argv[1:]),
                  note="Peak RSS increase of one decode to the model's 128 px input, measured in a fresh process "
                       "after the file's bytes are read (MiB). JPEGs are decoded at reduced size (Pillow draft); "
                       "PNGs are decoded whole, then scaled to 8 bits in float32.")


if __name__ == "__main__":
    main()
