"""Make a finished run the model shipped inside the package, with its final test-split report.

    python bench/ship_default.py RUN_DIR --data ../shared/data/chest_xray

The run's recipe must already be chosen (on validation, see bench/ablation.py). This evaluates it
once on the test split, stores the figures in the artifact (`test_metrics`), copies it to
src/pneumoscan/weights/default.safetensors and writes bench/results/default_model.{json,md}.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from _results import write_results
from _rewrite import rewrite_artifact

from pneumoscan.artifact import default_model_path, load_artifact, resolve_model_path
from pneumoscan.evaluation.evaluate import evaluate
from pneumoscan.inference.predictor import Predictor

KEYS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc", "brier")
CARD = Path(__file__).resolve().parents[1] / "MODEL_CARD.md"
START, END = "<!-- metrics:start -->", "<!-- metrics:end -->"


def metrics_block(test: dict) -> str:
    """The model card's test-metrics table, generated from the artifact (tests/test_shipped_model.py checks it)."""
    lines = [START, "| metric | value | 95% CI |", "|---|---|---|"]
    for key in KEYS:
        lo, hi = test[key]["ci95"]
        lines.append(f"| {key} | {test[key]['value']:.4f} | [{lo:.4f}, {hi:.4f}] |")
    for cause, info in test["recall_by_cause"].items():
        lines.append(f"| recall, {cause} (n={info['n']}) | {info['recall']:.4f} | |")
    (tn, fp), (fn, tp) = test["confusion_matrix"]["matrix"]
    lines += ["", f"Threshold {test['threshold']:.4f}; confusion matrix on {test['n']} images: "
              f"TN {tn}, FP {fp}, FN {fn}, TP {tp}.", END]
    return "\n".join(lines)


def class_score_rows(split: str, labels: np.ndarray, probs: np.ndarray, threshold: float) -> list[dict]:
    """Where each class's films score: median P(pneumonia), share at or above 0.5 and above the threshold."""
    rows = []
    for name, value in ((0, "normal"), (1, "pneumonia")):
        p = probs[labels == name]
        rows += [{"metric": f"{split}_{value}_median_p", "value": float(np.median(p)), "ci95": None},
                 {"metric": f"{split}_{value}_share_p_at_least_0.5", "value": float(np.mean(p >= 0.5)), "ci95": None},
                 {"metric": f"{split}_{value}_share_at_or_above_threshold", "value": float(np.mean(p >= threshold)),
                  "ci95": None}]
    return rows


def update_card(test: dict) -> None:
    text = CARD.read_text()
    head, rest = text.split(START, 1)
    CARD.write_text(head + metrics_block(test) + rest.split(END, 1)[1])


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run")
    parser.add_argument("--data", default="../shared/data/chest_xray")
    parser.add_argument("--n-boot", type=int, default=2000)
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    model, meta = load_artifact(args.run)
    result = evaluate(Predictor(args.run), args.data, "test", n_boot=args.n_boot)
    summary = result.summary
    meta.test_metrics = {k: summary[k] for k in (*KEYS, "n", "n_positive", "n_negative", "threshold",
                                                 "confusion_matrix", "recall_by_cause", "ece")}
    meta.test_metrics["data"] = "official Kermany test split (624 images), 224 px copies"
    target = default_model_path()
    print(f"{target}: {rewrite_artifact(target, model, meta, source=resolve_model_path(args.run))}")
    rows = [{"metric": k, "value": summary[k]["value"], "ci95": summary[k]["ci95"]} for k in KEYS]
    rows += [{"metric": f"recall_{c}", "value": v["recall"], "ci95": None} for c, v in summary["recall_by_cause"].items()]
    val_labels, val_probs = np.array(meta.val_scores["labels"]), np.array(meta.val_scores["probs"])
    for split, labels, probs in (("test", result.images.labels, result.probs), ("val", val_labels, val_probs)):
        rows += class_score_rows(split, np.asarray(labels), np.asarray(probs), meta.threshold)
    (tn, fp), (fn, tp) = summary["confusion_matrix"]["matrix"]
    write_results("default_model", rows, ["metric", "value", "ci95"],
                  command="python bench/ship_default.py " + shlex.join(sys.argv[1:]),
                  note=f"{meta.model_name} at {meta.image_size} px, threshold {meta.threshold:.4f} chosen on validation "
                       f"for recall {meta.target_recall}; TN {tn} FP {fp} FN {fn} TP {tp}; shipped as {target.name} "
                       f"({target.stat().st_size / 1e6:.1f} MB).")
    update_card(meta.test_metrics)
    print(Path("bench/results/default_model.md").read_text())


if __name__ == "__main__":
    main()
