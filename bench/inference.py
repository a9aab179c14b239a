"""Inference speed, torch vs ONNX Runtime: folder throughput, single-image latency, peak memory.

    PYTHONPATH=src .venv/bin/python bench/inference.py [--model RUN_OR_SAFETENSORS] [--data DIR] [--limit N]

Writes bench/results/inference.json and bench/results/inference.md. Each backend runs in its own
subprocess so that its peak RSS is its own. Measured:

* folder throughput over --limit films (default 624) spread over DATA (default the train split,
  ../shared/data/chest_xray/train, else the bundled sample's train folder: timing needs no test film, and
  the test split is kept for final reports): images/s for `Predictor.predict_files` (parallel decode +
  batched inference) and for inference alone on already-decoded images; best of --repeats runs after a
  warm-up;
* single-image latency p50/p99 of `Predictor.predict_bytes` (decode included) for a 224 px JPEG
  of those films and a 2000 px JPEG made by upscaling it (JPEG reduced-size decoding applies);
* peak RSS of the process.

Targets: >= 300 images/s (decode included), p50 <= 30 ms at 224 px and <= 80 ms at 2000 px.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _results import write_report
from _subprocess import model_or_shipped, src_env

ROOT = Path(__file__).resolve().parents[1]
DATA_DIRS = (ROOT.parent / "shared" / "data" / "chest_xray" / "train", ROOT / "sample" / "chest_xray" / "train")
FILMS = 624  # films timed by default: as many as the test split holds, which the benchmark timed before
RESULTS = ROOT / "bench" / "results"
TARGETS = {"folder_images_per_s": 300.0, "p50_ms_224": 30.0, "p50_ms_2000": 80.0}


def percentiles(times_s: list[float]) -> dict[str, float]:
    ms = np.asarray(times_s) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_ms": round(float(ms.mean()), 2), "n": len(ms)}


def make_large_jpeg(source: Path, out: Path, size: int = 2000) -> Path:
    """An upscaled copy of `source` as a `size` px JPEG (stands in for an original-resolution X-ray)."""
    from PIL import Image

    with Image.open(source) as im:
        im.convert("L").resize((size, size), Image.Resampling.BICUBIC).save(out, quality=92)
    return out


def default_data() -> Path | None:
    """The first of DATA_DIRS that exists (None: neither)."""
    return next((folder for folder in DATA_DIRS if folder.is_dir()), None)


def films(data: Path, limit: int) -> list[Path]:
    """Up to `limit` image files of the folder `data`, spread evenly over its sorted files (both classes)."""
    from pneumoscan.inference.inputs import expand_paths

    files = expand_paths([data])
    count = min(limit, len(files))
    return [files[i * len(files) // count] for i in range(count)]  # a stride of len/count, fractional


def run_backend(backend: str, model: str, data: Path, limit: int, repeats: int, n_latency: int,
                workdir: Path) -> dict:
    """All measurements for one backend (runs inside a fresh subprocess)."""
    from pneumoscan.data.preprocess import load_image
    from pneumoscan.inference.predictor import Predictor

    t0 = time.perf_counter()
    predictor = Predictor(model, backend=backend)
    load_s = time.perf_counter() - t0
    files = films(data, limit)
    decoded = np.stack([load_image(f, predictor.size) for f in files])
    predictor.predict_images(decoded[:64])  # warm-up

    folder, network = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        results = predictor.predict_files(files)
        folder.append(time.perf_counter() - t0)
        assert all(r.error is None for r in results), "unreadable image"
        t0 = time.perf_counter()
        predictor.predict_images(decoded)
        network.append(time.perf_counter() - t0)

    small = files[0]
    large = make_large_jpeg(small, workdir / "large_2000.jpeg")
    latency = {}
    for key, path, n in (("jpeg_224", small, n_latency), ("jpeg_2000", large, max(20, n_latency // 2))):
        for _ in range(5):
            predictor.predict_bytes(path.read_bytes())
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            predictor.predict_bytes(path.read_bytes())  # file read + decode + resize + inference
            times.append(time.perf_counter() - t0)
        latency[key] = percentiles(times)

    import torch

    return {
        "backend": predictor.backend, "model": predictor.meta.model_name, "input_size": predictor.size,
        "load_s": round(load_s, 2), "n_images": len(files),
        "folder_images_per_s": round(len(files) / min(folder), 1),
        "network_images_per_s": round(len(files) / min(network), 1),
        "latency": latency,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(),
    }


def to_markdown(report: dict) -> str:
    lines = [
        "# Inference benchmark", "",
        f"Model `{report['model']}` ({report['model_name']}, {report['input_size']} px input) on "
        f"{report['n_images']} images of `{report['data']}`; {report['cpus']} CPU cores, load average "
        f"{report['load_avg_before']:.2f} before the run (other jobs share the machine).", "",
        "| backend | folder img/s (decode incl.) | network-only img/s | 224 px p50 / p99 ms | 2000 px p50 / p99 ms | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["backends"]:
        a, b = r["latency"]["jpeg_224"], r["latency"]["jpeg_2000"]
        lines.append(f"| {r['backend']} | {r['folder_images_per_s']} | {r['network_images_per_s']} | "
                     f"{a['p50_ms']} / {a['p99_ms']} | {b['p50_ms']} / {b['p99_ms']} | {r['peak_rss_mb']} |")
    lines += ["", "Targets (best backend): " + ", ".join(
        f"{k} {'met' if v else 'MISSED'}" for k, v in report["targets_met"].items()), "",
        "Single-image latency is `Predictor.predict_bytes` on the file's bytes (read, decode, resize, infer), "
        "one request at a time. Folder throughput is `Predictor.predict_files` (thread-pool decode, batches of 64).",
        "", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="run folder or model.safetensors (default: the shipped model)")
    parser.add_argument("--data", help="folder of the films to time, searched recursively (default: the train split, "
                                       "../shared/data/chest_xray/train, else sample/chest_xray/train)")
    parser.add_argument("--limit", type=int, default=FILMS,
                        help="films timed, spread over --data (default %(default)s)")
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx"])
    parser.add_argument("--repeats", type=int, default=3, help="folder runs per backend; the best counts")
    parser.add_argument("--n-latency", type=int, default=200, help="single-image requests (half at 2000 px)")
    parser.add_argument("--out", default=str(RESULTS), help="results folder (default: %(default)s)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one backend, print JSON
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.limit < 1:
        parser.error(f"--limit {args.limit}: time 1 film or more")

    data = Path(args.data) if args.data else default_data()
    if data is None or not data.is_dir():
        print(f"bench/inference.py: {data or ' or '.join(map(str, DATA_DIRS))} not found; skipping (pass --data DIR "
              f"with films)")
        return 0
    args.model = model_or_shipped(parser, args.model)

    if args.worker:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_backend(args.worker, args.model, data, args.limit, args.repeats, args.n_latency,
                                         Path(tmp))))
        return 0

    env = src_env()
    load_before = os.getloadavg()[0]
    backends = []
    for backend in args.backends:
        print(f"benchmarking {backend} ...", flush=True)
        cmd = [sys.executable, __file__, "--model", args.model, "--data", str(data), "--limit", str(args.limit),
               "--repeats", str(args.repeats), "--n-latency", str(args.n_latency), "--worker", backend]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        backends.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(backends[-1]), flush=True)

    best = max(backends, key=lambda r: r["folder_images_per_s"])
    fastest_224 = min(r["latency"]["jpeg_224"]["p50_ms"] for r in backends)
    fastest_2000 = min(r["latency"]["jpeg_2000"]["p50_ms"] for r in backends)
    report = {
        "model": args.model, "model_name": best["model"], "input_size": best["input_size"], "data": str(data),
        "n_images": best["n_images"], "cpus": os.cpu_count(), "load_avg_before": load_before,
        "backends": backends, "targets": TARGETS,
        "targets_met": {
            "folder_images_per_s>=300": best["folder_images_per_s"] >= TARGETS["folder_images_per_s"],
            "p50_224<=30ms": fastest_224 <= TARGETS["p50_ms_224"],
            "p50_2000<=80ms": fastest_2000 <= TARGETS["p50_ms_2000"],
        },
        "command": "PYTHONPATH=src .venv/bin/python bench/inference.py " + shlex.join(argv or sys.argv[1:]),
    }
    write_report(args.out, "inference", report, to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
