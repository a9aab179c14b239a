"""Train every registered model on the full data and report validation and test figures.

Each model trains in its own subprocess (so wall time and peak RSS are its own) with one recipe
(COMPARISON: the class-weighted loss), on the same patient-aware split; `shipped` is the shipped
model's recipe (the TrainConfig defaults). Finished runs under --runs are reused. When the cnn and
resnet10 runs exist, their ensemble is built in RUNS/ensemble and gets a row too. The test split
is read only after training, for the final table.

    python bench/train_full.py --data ../shared/data/chest_xray --runs runs/full [--models resnet10 cnn shipped]

With --models, the rows of the other models are carried over from the recorded results file (runs
are not kept in git), and the note says so; rows are matched by name, so `--label` names the shipped
row when RUNS/shipped is not the shipped model (a rerun of its recipe, say).
"""
from __future__ import annotations

import argparse
import json
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _results import RESULTS, carry_over, write_results

from pneumoscan.artifact import ARTIFACT_NAME, read_meta
from pneumoscan.models.registry import count_parameters, create_model, list_models
from pneumoscan.training.config import EARLIER_GEOMETRY_AUGMENT, EARLIER_ONE_VIEW, TrainConfig

STATS = "bench_stats.json"


# The seeds' comparison: every architecture with one recipe (class-weighted loss, no equalisation,
# zoom +-10 %, no stretch, one view, 25 epochs: the recipe of its time; the other settings are the
# TrainConfig defaults). The shipped model (the defaults) gets its own row, and so does the
# cnn + resnet10 ensemble of the comparison runs.
COMPARISON = {"balance": "weighted", "equalize": False, **EARLIER_ONE_VIEW, **EARLIER_GEOMETRY_AUGMENT}
SHIPPED = "shipped"
ENSEMBLE = ("cnn", "resnet10")


def train_child(data: str, out: str, model: str) -> None:
    """Runs inside the subprocess: train, then record wall time and peak RSS."""
    from pneumoscan.training.trainer import train

    started = time.time()
    if model == SHIPPED:
        cfg = TrainConfig(data=data, out=out)
    else:
        cfg = TrainConfig(data=data, out=out, model=model, **COMPARISON)
    train(cfg, resume=(Path(out) / "last.pt").exists(), progress=False)
    stats = {"wall_seconds": round(time.time() - started, 1),
             "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    (Path(out) / STATS).write_text(json.dumps(stats))


def build_compared_ensemble(members: list[Path], out: Path) -> Path:
    """The ensemble of finished comparison runs; its cost is the sum of theirs."""
    from pneumoscan.training.ensemble import build_ensemble

    if not (out / ARTIFACT_NAME).exists():
        build_ensemble(members, out, progress=False)
    stats = [json.loads((m / STATS).read_text()) for m in members if (m / STATS).exists()]
    if len(stats) == len(members):
        (out / STATS).write_text(json.dumps({"wall_seconds": round(sum(s["wall_seconds"] for s in stats), 1),
                                             "peak_rss_mb": max(s["peak_rss_mb"] for s in stats)}))
    return out


def evaluate_row(model: str, run: Path, data: str, n_boot: int, shipped_label: str | None = None) -> dict:
    from pneumoscan.evaluation.evaluate import evaluate
    from pneumoscan.inference.predictor import Predictor

    meta = read_meta(run / ARTIFACT_NAME)
    stats = json.loads((run / STATS).read_text()) if (run / STATS).exists() else {}
    summary = evaluate(Predictor(run), data, "test", n_boot=n_boot).summary
    label = (shipped_label or f"{meta.model_name} (shipped)") if model == SHIPPED else model
    row = {"model": label, "balance": meta.training.get("config", {}).get("balance"),
           "params": count_parameters(create_model(meta.model_name, **meta.model_config)),
           "image_size": meta.image_size, "epochs": "+".join(f"{t.get('best_epoch')}/{t.get('epochs_run')}" for t in meta.training.get("members", [meta.training])),
           "train_wall_s": stats.get("wall_seconds"), "peak_rss_mb": stats.get("peak_rss_mb"),
           "val_auc": meta.val_metrics["roc_auc"]["value"], "threshold": meta.threshold}
    for key in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc"):
        row[f"test_{key}"] = summary[key]["value"]
        row[f"test_{key}_ci95"] = summary[key]["ci95"]
    row["test_loss_brier"] = summary["brier"]["value"]
    return row


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/chest_xray")
    parser.add_argument("--runs", default="runs/full")
    parser.add_argument("--models", nargs="*", default=None, help=f"default: every registered model and {SHIPPED!r}")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--label", help=f"row name for {SHIPPED!r} (default: 'MODEL (shipped)'), e.g. for a rerun of its recipe")
    return parser


def main(name: str = "train_full") -> None:
    parser = build_parser()
    args = parser.parse_args()
    rows = []
    for model in args.models or [*list_models(), SHIPPED]:
        run = Path(args.runs) / model
        if not (run / ARTIFACT_NAME).exists():
            code = subprocess.call([sys.executable, __file__, "--child", args.data, str(run), model])
            if code:
                sys.exit(f"training {model} failed with exit code {code}")
        rows.append(evaluate_row(model, run, args.data, args.n_boot, args.label))
        print(json.dumps(rows[-1]), flush=True)
    members = [Path(args.runs) / m for m in ENSEMBLE]
    if all((m / ARTIFACT_NAME).exists() for m in members):
        run = build_compared_ensemble(members, Path(args.runs) / "ensemble")
        rows.append(evaluate_row("ensemble", run, args.data, args.n_boot))
        print(json.dumps(rows[-1]), flush=True)
    columns = ["model", "balance", "params", "image_size", "epochs", "train_wall_s", "peak_rss_mb", "val_auc", "test_accuracy",
               "test_recall", "test_specificity", "test_roc_auc"]
    if name == "compare_models":
        columns = ["model", "balance", "params", "train_wall_s", "val_auc", "test_loss_brier"] + [
            f"test_{k}{suffix}" for k in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")
            for suffix in ("", "_ci95")]
    note = ""
    command = f"python bench/{name}.py " + shlex.join(sys.argv[1:])
    if args.models and (RESULTS / f"{name}.json").exists():
        rows, note = carry_over(name, rows, "model", command)
    write_results(name, rows, columns, command=command,
                  note="Same patient-aware validation split (15%, seed 0) for every model; threshold chosen on "
                       "validation for recall 0.95; test split read only for this table. epochs = best/run." + note)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        train_child(*sys.argv[2:])
    else:
        main()
