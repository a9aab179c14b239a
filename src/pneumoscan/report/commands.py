"""`pneumoscan report` and `pneumoscan compare`: HTML reports of one run and comparisons of several."""
from __future__ import annotations

import argparse
import time
from typing import Any

from pneumoscan.data.cache_commands import add_cache_dir_arg
from pneumoscan.errors import check_at_least_one


def add_commands(subparsers: Any) -> None:
    """Register the `report` and `compare` commands."""
    p = subparsers.add_parser("report", help="self-contained HTML report of a run: curves, thresholds, calibration, Grad-CAM")
    p.add_argument("run_dir", help="run folder written by pneumoscan train (or its model.safetensors)")
    p.add_argument("--data", help="evaluate on this data folder or CSV manifest (default: the run's validation "
                                  "predictions; for a set-threshold copy, the films its threshold was chosen on, "
                                  "where it recorded them)")
    p.add_argument("--split", help="split of --data to evaluate (default: test, else the only one; a folder of class "
                                    "folders is used whole)")
    p.add_argument("--out", help="HTML file to write (default: RUN_DIR/report.html); figures go to <name>_files/; "
                                 "not in the run's training data or --data folder nor one of its split or class "
                                 "folders")
    p.add_argument("--n-boot", type=int, default=1000,
                   help="bootstrap resamples for the intervals of F1, ROC AUC, average precision and Brier; the rates "
                        "get Wilson intervals (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0), as in `evaluate`")
    p.add_argument("--cases", type=int, default=4, help="examples per TP/TN/FP/FN grid, 8 to a row (default 4)")
    add_cache_dir_arg(p)
    p.set_defaults(func=cmd_report)

    p = subparsers.add_parser("compare", help="compare runs: metrics table (HTML, CSV, JSON) and overlaid ROC curves")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders written by pneumoscan train (or their model.safetensors); the first is the reference: each "
                        "other run's AUC is tested against it (DeLong's paired test)")
    p.add_argument("--out", required=True, help="HTML file to write, e.g. compare.html (CSV and JSON go next to it, the "
                                                    "ROC figure to <name>_files/); not in the runs' training data or "
                                                    "--data folder nor one of its split or class folders")
    p.add_argument("--data", help="evaluate every run on this data folder or CSV manifest (default: each run's validation predictions)")
    p.add_argument("--split", help="split of --data to evaluate (default: test, else the only one; a folder of class "
                                    "folders is used whole)")
    p.add_argument("--n-boot", type=int, default=500, help="bootstrap resamples for the AUC intervals (default 500)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0), as in `evaluate`")
    add_cache_dir_arg(p)
    p.set_defaults(func=cmd_compare)


def cmd_report(args: argparse.Namespace) -> int:
    """Build the report and say where it is."""
    from pneumoscan.evaluation.evaluate import check_bootstrap
    from pneumoscan.report.build import build_report, files_folder

    check_bootstrap(args.n_boot, args.seed)
    check_at_least_one(args.cases, "cases")
    started = time.time()
    path = build_report(args.run_dir, data=args.data, split=args.split, out=args.out, n_boot=args.n_boot,
                        seed=args.seed, per_group=args.cases, cache_dir=args.cache_dir)
    print(f"report: {path}  (figures in {files_folder(path)}/, {time.time() - started:.1f} s)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Build the comparison and say where it is."""
    from pneumoscan.evaluation.evaluate import check_bootstrap
    from pneumoscan.report.build import files_folder
    from pneumoscan.report.compare import compare_runs

    check_bootstrap(args.n_boot, args.seed)
    path = compare_runs(args.run_dirs, out=args.out, data=args.data, split=args.split, n_boot=args.n_boot,
                         seed=args.seed, cache_dir=args.cache_dir)
    print(f"comparison: {path}  (table also in {path.with_suffix('.csv').name} and {path.with_suffix('.json').name}, "
          f"ROC figure in {files_folder(path)}/)")
    return 0
