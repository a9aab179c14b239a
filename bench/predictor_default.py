"""Which backend should `Predictor(...)` use by default: its old "torch", or "auto" as every command?

    PYTHONPATH=src .venv/bin/python bench/predictor_default.py [--model RUN_OR_SAFETENSORS] [--per-class 200]

Each backend runs in its own fresh subprocess (a notebook's first cell): the time to construct
`Predictor(model, backend=B)`, the first `predict_files` call, then `predict_files` on --per-class train films
of each class (best of 3, decode included) and `predict_bytes` of one 224 px JPEG (p50 of 100). Then
`pneumoscan predict --csv` (the CLI, backend auto) on the same films. Agreement: the largest and mean absolute
difference in P(pneumonia), and the films whose label or guard verdict differ, for each backend against the CLI.
Train films only (never the test split). Writes bench/results/predictor_default.json and .md.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _results import write_report
from _subprocess import model_or_shipped, src_env

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT.parent / "shared" / "data" / "chest_xray" / "train"
BACKENDS = ("torch", "auto")


def films(per_class: int) -> list[Path]:
    folder = TRAIN if TRAIN.is_dir() else ROOT / "sample" / "chest_xray" / "train"
    return [p for cls in ("NORMAL", "PNEUMONIA") for p in sorted((folder / cls).glob("*.jpeg"))[:per_class]]


def worker(backend: str, model: str, paths: list[Path]) -> dict:
    """All timings and predictions of one backend (run in a fresh subprocess)."""
    t0 = time.perf_counter()
    from pneumoscan.inference.predictor import Predictor

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    predictor = Predictor(model, backend=backend)
    construct_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    predictor.predict_files(paths[:1])
    first_s = time.perf_counter() - t0
    folder = []
    for _ in range(3):
        t0 = time.perf_counter()
        results = predictor.predict_files(paths)
        folder.append(time.perf_counter() - t0)
    data = paths[0].read_bytes()
    single = []
    for _ in range(100):
        t0 = time.perf_counter()
        predictor.predict_bytes(data, paths[0].name)
        single.append(time.perf_counter() - t0)
    return {"backend": backend, "resolved": predictor.backend, "import_s": round(import_s, 2),
            "construct_s": round(construct_s, 2), "first_call_s": round(first_s, 3),
            "per_image_ms": round(1000 * min(folder) / len(paths), 2),
            "single_p50_ms": round(float(np.percentile(np.asarray(single) * 1000, 50)), 2),
            "predictions": {r.path: [r.probability, r.label, r.in_distribution] for r in results}}


def cli_predictions(model: str, paths: list[Path], env: dict[str, str]) -> dict[str, list]:
    """`pneumoscan predict --csv` (backend auto) on `paths`: path -> [probability, label, in_distribution]."""
    done = subprocess.run([sys.executable, "-m", "pneumoscan", "predict", "--model", model, "--csv",
                           *map(str, paths)], env=env, capture_output=True, text=True, timeout=900)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    if not rows:
        raise SystemExit(f"pneumoscan predict printed no rows:\n{done.stderr}")

    def verdict(value: str) -> bool | None:
        return None if value in ("", "None") else value.lower() == "true"

    return {row["path"]: [float(row["probability"]) if row["probability"] else None, row["label"] or None,
                          verdict(row.get("in_distribution", ""))] for row in rows}


def agreement(ours: dict[str, list], cli: dict[str, list]) -> dict:
    both = [p for p in ours if ours[p][0] is not None and cli.get(p, [None])[0] is not None]
    diff = np.abs(np.array([ours[p][0] for p in both]) - np.array([cli[p][0] for p in both]))
    return {"films": len(both), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "label_differs": sum(ours[p][1] != cli[p][1] for p in both),
            "guard_differs": sum(ours[p][2] != cli[p][2] for p in ours if p in cli)}


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="run folder or model.safetensors (default: the shipped model)")
    parser.add_argument("--per-class", type=int, default=200, help="train films of each class (default 200)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="results folder")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.model = model_or_shipped(parser, args.model)
    paths = films(args.per_class)
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, paths)))
        return 0
    env = src_env()
    runs = []
    for backend in BACKENDS:
        done = subprocess.run([sys.executable, __file__, "--model", args.model, "--per-class", str(args.per_class),
                               "--worker", backend], env=env, capture_output=True, text=True, timeout=900)
        if done.returncode:
            raise SystemExit(done.stderr)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    cli = cli_predictions(args.model, paths, env)
    for run in runs:
        run["vs_cli"] = agreement(run.pop("predictions"), cli)
    command = "PYTHONPATH=src .venv/bin/python bench/predictor_default.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    report = {"model": args.model, "films": len(paths), "cpus": os.cpu_count(), "load_avg_before": os.getloadavg()[0],
              "runs": runs, "command": command}
    lines = ["# Predictor's default backend", "",
             f"Model `{Path(args.model).name}`, {len(paths)} train films ({args.per_class} of each class), "
             f"{os.cpu_count()} CPU cores shared with other jobs. Each backend in a fresh process; agreement is "
             "against `pneumoscan predict FILMS --csv` (the CLI's backend auto) on the same films.", "",
             "| Predictor(backend=) | runs on | import s | construct s | first call s | ms/image (folder) | "
             "predict_bytes p50 ms | max abs diff P vs CLI | mean abs diff | labels differ | guard differs |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        a = r["vs_cli"]
        lines.append(f"| {r['backend']} | {r['resolved']} | {r['import_s']} | {r['construct_s']} | {r['first_call_s']} | "
                     f"{r['per_image_ms']} | {r['single_p50_ms']} | {a['max_abs_diff']:.2e} | {a['mean_abs_diff']:.2e} | "
                     f"{a['label_differs']} / {a['films']} | {a['guard_differs']} |")
    lines += ["", f"Command: `{command}`", ""]
    write_report(args.out, "predictor_default", report, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
