"""CLI hook: `pneumoscan ensemble` combines trained runs into one model."""
from __future__ import annotations

import argparse
from pathlib import Path


def print_validation(path: Path) -> None:
    """The artifact's path and its validation figures at the stored threshold."""
    from pneumoscan.artifact import read_meta

    meta = read_meta(path)
    val = meta.val_metrics
    print(f"model: {path}")
    print(f"validation: AUC {val['roc_auc']['value']:.4f}  recall {val['recall']['value']:.4f}  "
          f"specificity {val['specificity']['value']:.4f}  at threshold {meta.threshold:.4f} "
          f"(target recall {meta.target_recall})")


def cmd_ensemble(args: argparse.Namespace) -> int:
    from pneumoscan.training.ensemble import build_ensemble

    print_validation(build_ensemble(args.runs, args.out, target_recall=args.target_recall, cache_dir=args.cache_dir,
                                    progress=not args.quiet))
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `ensemble`."""
    p = subparsers.add_parser(
        "ensemble", help="average trained runs (same validation split) into one model; threshold re-chosen on validation")
    p.add_argument("runs", nargs="+", help="finished `pneumoscan train` run folders (at least two)")
    p.add_argument("--out", required=True, help="folder for the ensemble's model.safetensors and val_predictions.csv")
    p.add_argument("--target-recall", type=float, help="recall the threshold is chosen for (default: the members')")
    p.add_argument("--cache-dir", help="where decoded images are cached (default ~/.cache/pneumoscan)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_ensemble)
