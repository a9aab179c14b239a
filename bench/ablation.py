"""Recipe ablation for the default model, judged on the patient-aware validation split only.

Each variant trains (or resumes, or reuses a finished run) under --runs; its validation metrics,
clean and under the acquisition shifts of stress_val.py, are collected with those of small
ensembles of the runs into bench/results/ablation.json and ablation.md. No test image is read.

    python bench/ablation.py --data ../shared/data/chest_xray --runs runs/ablation [--only NAME ...]
    python bench/ablation.py ... --add NAME ...   # train and score just these, merge into the recorded table
`J_cnn_96` and `K_resnet18_160` are the default-recipe runs of train_full.py (link them from
runs/full to save their training).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from _results import carry_over, write_results
from stress_val import run_probs, score, shifted_sources, val_files

from pneumoscan.artifact import ARTIFACT_NAME, read_meta
from pneumoscan.training.checkpoint import load_checkpoint
from pneumoscan.training.ensemble import build_ensemble
from pneumoscan.training.config import EARLIER_GEOMETRY_AUGMENT, EARLIER_ONE_VIEW, TrainConfig
from pneumoscan.training.trainer import LAST_CHECKPOINT, train

# The first rows predate the sampler, equalisation, geometry-augmentation and consistency defaults, so the base
# recipe pins them to what those rows ran with.
BASE = dict(patience=8, seed=0, balance="weighted", equalize=False, **EARLIER_ONE_VIEW, **EARLIER_GEOMETRY_AUGMENT)
# The recipes of runs W (shipped in the sixth and seventh sessions) and AC (shipped from the eighth):
# the bases of the later rows.
W_RECIPE = dict(model="resnet10", image_size=128, balance="sampler", equalize=True, aug_zoom=0.2, aug_aspect=0.1)
AC_RECIPE = {**W_RECIPE, "consistency": 10.0, "epochs": 30}
VARIANTS: dict[str, dict] = {
    "A_resnet10_128": dict(model="resnet10", image_size=128),
    "B_resnet10_128_ema_ls_aug": dict(model="resnet10", image_size=128, ema_decay=0.998, label_smoothing=0.1, augment=1.5),
    "A1_resnet10_128_seed1": dict(model="resnet10", image_size=128, seed=1),
    "A2_resnet10_128_seed2": dict(model="resnet10", image_size=128, seed=2),
    "D_resnet10_128_aug2": dict(model="resnet10", image_size=128, augment=2.0),
    "E_resnet10_128_sampler": dict(model="resnet10", image_size=128, balance="sampler"),
    "F_resnet10_160": dict(model="resnet10", image_size=160),
    "G_resnet10_128_ls": dict(model="resnet10", image_size=128, label_smoothing=0.1),
    "H_resnet10_128_ema": dict(model="resnet10", image_size=128, ema_decay=0.998),
    "I_resnet10_128_unweighted": dict(model="resnet10", image_size=128, balance="none"),
    "J_cnn_96": dict(model="cnn", image_size=96),
    "K_resnet18_160": dict(model="resnet18", image_size=160),
    "E1_resnet10_128_sampler_seed1": dict(model="resnet10", image_size=128, balance="sampler", seed=1),
    "E2_resnet10_128_sampler_seed2": dict(model="resnet10", image_size=128, balance="sampler", seed=2),
    "L_resnet10_96_sampler": dict(model="resnet10", image_size=96, balance="sampler"),
    "M_cnn_96_sampler": dict(model="cnn", image_size=96, balance="sampler"),
    "N_resnet10_128_sampler_mixup": dict(model="resnet10", image_size=128, balance="sampler", mixup=0.2),
    "P_resnet10_128_sampler_simsiam": dict(model="resnet10", image_size=128, balance="sampler"),
    "Q_resnet10_224_sampler": dict(model="resnet10", image_size=224, balance="sampler"),
    "R_resnet10_128_sampler_equalize": dict(model="resnet10", image_size=128, balance="sampler", equalize=True),
    "R1_resnet10_128_sampler_equalize_seed1": dict(model="resnet10", image_size=128, balance="sampler", equalize=True, seed=1),
    "R2_resnet10_128_sampler_equalize_seed2": dict(model="resnet10", image_size=128, balance="sampler", equalize=True, seed=2),
    "S_resnet10_128_sampler_equalize_aug0.5": dict(model="resnet10", image_size=128, balance="sampler", equalize=True,
                                                   augment=0.5),
    "T_resnet10_128_sampler_equalize_40ep": dict(model="resnet10", image_size=128, balance="sampler", equalize=True,
                                                 epochs=40),
    "U_resnet10_96_sampler_equalize": dict(model="resnet10", image_size=96, balance="sampler", equalize=True),
    "V_resnet10_128_sampler_equalize_geom": dict(model="resnet10", image_size=128, balance="sampler", equalize=True,
                                                 aug_zoom=0.25, aug_aspect=0.15),
    "W_resnet10_128_sampler_equalize_geom0.2": W_RECIPE,
    "W1_resnet10_128_sampler_equalize_geom0.2_seed1": {**W_RECIPE, "seed": 1},
    "X_resnet10_128_sampler_equalize_geom_40ep": dict(model="resnet10", image_size=128, balance="sampler",
                                                      equalize=True, aug_zoom=0.25, aug_aspect=0.15, epochs=40),
    "X1_resnet10_128_sampler_equalize_geom_40ep_seed1": dict(model="resnet10", image_size=128, balance="sampler",
                                                             equalize=True, aug_zoom=0.25, aug_aspect=0.15, epochs=40,
                                                             seed=1),
    "Y_resnet10_128_sampler_equalize_zoom0.3": dict(model="resnet10", image_size=128, balance="sampler",
                                                    equalize=True, aug_zoom=0.3, aug_aspect=0.1),
    "Y1_resnet10_128_sampler_equalize_zoom0.3_seed1": dict(model="resnet10", image_size=128, balance="sampler",
                                                           equalize=True, aug_zoom=0.3, aug_aspect=0.1, seed=1),
    "W2_resnet10_128_sampler_equalize_geom0.2_seed2": {**W_RECIPE, "seed": 2},
    "Z_resnet10_128_sampler_equalize_geom0.2_crop": {**W_RECIPE, "crop": True},
    "AA_resnet10_128_sampler_equalize_geom0.2_consistency10": {**W_RECIPE, "consistency": 10.0},
    "AA1_resnet10_128_sampler_equalize_geom0.2_consistency10_seed1": {**W_RECIPE, "consistency": 10.0, "seed": 1},
    "AC_resnet10_128_sampler_equalize_geom0.2_consistency10_30ep": AC_RECIPE,
    "AC1_resnet10_128_sampler_equalize_geom0.2_consistency10_30ep_seed1": {**AC_RECIPE, "seed": 1},
    "AD_resnet10_128_sampler_equalize_geom0.2_consistency10_30ep_ema": {**AC_RECIPE, "ema_decay": 0.998},
    "AD1_resnet10_128_sampler_equalize_geom0.2_consistency10_30ep_ema_seed1": {**AC_RECIPE, "ema_decay": 0.998,
                                                                               "seed": 1},
    "AE_resnet10_128_sampler_equalize_geom0.2_consistency20_30ep": {**AC_RECIPE, "consistency": 20.0},
    "AE1_resnet10_128_sampler_equalize_geom0.2_consistency20_30ep_seed1": {**AC_RECIPE, "consistency": 20.0,
                                                                           "seed": 1},
    "AF_resnet10_128_sampler_equalize_geom0.2_consistency10_40ep": {**AC_RECIPE, "epochs": 40},
    "AF1_resnet10_128_sampler_equalize_geom0.2_consistency10_40ep_seed1": {**AC_RECIPE, "epochs": 40, "seed": 1},
    "AG_resnet10_128_sampler_equalize_geom0.3_consistency10_40ep": {**AC_RECIPE, "epochs": 40, "aug_zoom": 0.3,
                                                                    "aug_aspect": 0.15},
    "AG1_resnet10_128_sampler_equalize_geom0.3_consistency10_40ep_seed1": {**AC_RECIPE, "epochs": 40, "aug_zoom": 0.3,
                                                                           "aug_aspect": 0.15, "seed": 1},
    "AH_resnet10_128_sampler_equalize_geom0.2_consistency10_30ep_sharp0.5": {**AC_RECIPE, "aug_sharpness": 0.5},
    "AH1_resnet10_128_sampler_equalize_geom0.2_consistency10_30ep_sharp0.5_seed1": {**AC_RECIPE, "aug_sharpness": 0.5,
                                                                                    "seed": 1},
    "AI_resnet10_64_sampler_equalize_geom0.2_consistency10_30ep": {**AC_RECIPE, "image_size": 64},
    "AI1_resnet10_64_sampler_equalize_geom0.2_consistency10_30ep_seed1": {**AC_RECIPE, "image_size": 64, "seed": 1},
    "AJ_resnet10_160_sampler_equalize_geom0.2_consistency10_30ep": {**AC_RECIPE, "image_size": 160},
    "AJ1_resnet10_160_sampler_equalize_geom0.2_consistency10_30ep_seed1": {**AC_RECIPE, "image_size": 160, "seed": 1},
    "AK_resnet10_128_sampler_equalize_geom0.2_consistency10_30ep_tie0.002": {**AC_RECIPE, "auc_tie": 0.002},
    "AK1_resnet10_128_sampler_equalize_geom0.2_consistency10_30ep_tie0.002_seed1": {**AC_RECIPE, "auc_tie": 0.002,
                                                                                   "seed": 1},
}
# Variants that start from `pneumoscan pretrain` weights (SimSiam on their training split; the
# pretraining's seconds count in their training time). Settings as `pneumoscan pretrain`'s defaults.
PRETRAIN: dict[str, dict] = {"P_resnet10_128_sampler_simsiam": dict(epochs=15, batch_size=128, lr=0.05)}
# Mean of the members' probabilities (`pneumoscan ensemble` builds such a model).
ENSEMBLES: dict[str, list[str]] = {
    "ENS_cnn_resnet10": ["J_cnn_96", "A_resnet10_128"],
    "ENS_resnet10_3_seeds": ["A_resnet10_128", "A1_resnet10_128_seed1", "A2_resnet10_128_seed2"],
    "ENS_cnn_resnet10_2_seeds": ["J_cnn_96", "A_resnet10_128", "A1_resnet10_128_seed1"],
    "ENS_cnn_resnet10_resnet18": ["J_cnn_96", "A_resnet10_128", "K_resnet18_160"],
    "ENS_cnn_resnet10_sampler": ["J_cnn_96", "E_resnet10_128_sampler"],
    "ENS_sampler_cnn_resnet10": ["M_cnn_96_sampler", "E_resnet10_128_sampler"],
    "ENS_sampler_resnet10_2_seeds": ["E_resnet10_128_sampler", "E1_resnet10_128_sampler_seed1"],
    "ENS_sampler_resnet10_3_seeds": ["E_resnet10_128_sampler", "E1_resnet10_128_sampler_seed1",
                                     "E2_resnet10_128_sampler_seed2"],
    "ENS_equalize_resnet10_2_seeds": ["R_resnet10_128_sampler_equalize", "R1_resnet10_128_sampler_equalize_seed1"],
    "ENS_equalize_resnet10_3_seeds": ["R_resnet10_128_sampler_equalize", "R1_resnet10_128_sampler_equalize_seed1",
                                      "R2_resnet10_128_sampler_equalize_seed2"],
    "ENS_geom_resnet10_2_seeds": ["W_resnet10_128_sampler_equalize_geom0.2",
                                  "W1_resnet10_128_sampler_equalize_geom0.2_seed1"],
}

# Built with `pneumoscan ensemble` (mean logit, threshold re-chosen on validation) and scored as built.
BUILT_ENSEMBLES: dict[str, list[str]] = {
    "ENS_AC_AI": ["AC_resnet10_128_sampler_equalize_geom0.2_consistency10_30ep",
                  "AI_resnet10_64_sampler_equalize_geom0.2_consistency10_30ep"],
    "ENS_AC1_AI1": ["AC1_resnet10_128_sampler_equalize_geom0.2_consistency10_30ep_seed1",
                    "AI1_resnet10_64_sampler_equalize_geom0.2_consistency10_30ep_seed1"],
    "ENS_AA_AA1": ["AA_resnet10_128_sampler_equalize_geom0.2_consistency10",
                   "AA1_resnet10_128_sampler_equalize_geom0.2_consistency10_seed1"],
    "ENS_AC_AC1": ["AC_resnet10_128_sampler_equalize_geom0.2_consistency10_30ep",
                   "AC1_resnet10_128_sampler_equalize_geom0.2_consistency10_30ep_seed1"],
    "ENS_AF_AF1": ["AF_resnet10_128_sampler_equalize_geom0.2_consistency10_40ep",
                   "AF1_resnet10_128_sampler_equalize_geom0.2_consistency10_40ep_seed1"],
}


def val_auc_with_tta(run: Path) -> float:
    """Validation AUC of the run's final model when each image is averaged with its mirror."""
    from pneumoscan.artifact import load_artifact
    from pneumoscan.data.cache import load_image_set
    from pneumoscan.data.labels import Sample
    from pneumoscan.evaluation.metrics import roc_auc
    from pneumoscan.inference.batch import predict_probs

    model, meta = load_artifact(run)
    paths, labels = val_files(run)
    images = load_image_set([Sample(p, int(label)) for p, label in zip(paths, labels)], meta.image_size)
    probs = predict_probs(model, np.asarray(images.images), meta.preprocessing, tta=True)
    return roc_auc(images.labels, probs)


def pretrained_weights(name: str, overrides: dict, data: str, runs: Path) -> tuple[Path, float]:
    """Pretrain (or resume, or reuse) the variant's SimSiam weights; their path and pretraining seconds."""
    from safetensors import safe_open

    from pneumoscan.training.pretrain import PRETRAIN_CHECKPOINT, PRETRAINED_NAME, pretrain

    out = runs / name / "pretrain"
    path = out / PRETRAINED_NAME
    if not path.exists():
        cfg = TrainConfig(data=data, out=str(out), model=overrides["model"], image_size=overrides.get("image_size"),
                          equalize=overrides.get("equalize", BASE["equalize"]),
                          seed=overrides.get("seed", 0), **PRETRAIN[name])
        # a pretraining interrupted before --patient-key existed continues splitting by name, as it began
        pretrain(cfg, resume=(out / PRETRAIN_CHECKPOINT).exists(), progress=sys.stderr.isatty(), keep_patient_key=True)
    with safe_open(str(path), "pt") as handle:
        return path, float(json.loads(handle.metadata()["pneumoscan_pretrained"])["seconds"])


def run_variant(name: str, overrides: dict, data: str, runs: Path) -> dict:
    out = runs / name
    artifact = out / ARTIFACT_NAME
    pretrain_seconds = 0.0
    if name in PRETRAIN:
        path, pretrain_seconds = pretrained_weights(name, overrides, data, runs)
        overrides = {**overrides, "init": str(path)}
    if not artifact.exists():
        cfg = TrainConfig(data=data, out=str(out), **{**BASE, **overrides})
        train(cfg, resume=(out / LAST_CHECKPOINT).exists(), progress=sys.stderr.isatty())
    meta = read_meta(artifact)
    val = meta.val_metrics
    if name in PRETRAIN:
        overrides = {**overrides, "pretrain": f"SimSiam {PRETRAIN[name]['epochs']} epochs, {pretrain_seconds:.0f} s"}
    return {
        "variant": name, **overrides, "best_epoch": meta.training.get("best_epoch"),
        "epochs_run": meta.training.get("epochs_run"),
        "train_seconds": round(meta.training.get("train_seconds") + pretrain_seconds, 1),
        "val_auc": val["roc_auc"]["value"], "val_auc_ci95": val["roc_auc"]["ci95"],
        "val_specificity_at_recall_0.95": val["specificity"]["value"], "val_brier": val["brier"]["value"],
        "val_ece": val["ece"]["value"], "threshold": meta.threshold, "val_auc_tta": val_auc_with_tta(out),
        "best_val_loss": min(row["val_loss"] for row in load_checkpoint(out / LAST_CHECKPOINT)["state"]["history"]),
    }


def add_stress(rows: list[dict], runs: Path) -> None:
    """Add clean and shifted validation scores to every row, then one row per complete ensemble."""
    done = [row["variant"] for row in rows]
    paths, labels = val_files(runs / done[0])
    sources = shifted_sources(paths, labels)
    probs = {}
    for row in rows:
        if val_files(runs / row["variant"])[0] != paths:
            sys.exit(f"{row['variant']}: validated on other images; every variant must use split seed 0")
        probs[row["variant"]] = run_probs(runs / row["variant"], sources)
        row.update({k: v for k, v in score(row["variant"], labels, probs[row["variant"]]).items() if k != "run"})
    for name, members in ENSEMBLES.items():
        if all(m in probs for m in members):
            mean = {k: np.mean([probs[m][k] for m in members], axis=0) for k in sources}
            seconds = sum(float(r["train_seconds"]) for r in rows if r["variant"] in members)
            rows.append({"variant": name, "model": "+".join(members), "train_seconds": round(seconds, 1),
                         **{k: v for k, v in score(name, labels, mean).items() if k != "run"}})
    for name, members in BUILT_ENSEMBLES.items():
        if all(m in probs for m in members):
            if not (runs / name / ARTIFACT_NAME).exists():
                build_ensemble([runs / m for m in members], runs / name, progress=sys.stderr.isatty())
            meta = read_meta(runs / name / ARTIFACT_NAME)
            rows.append({"variant": name, "model": "+".join(members), "train_seconds": meta.training["train_seconds"],
                         "val_specificity_at_recall_0.95": meta.val_metrics["specificity"]["value"],
                         "threshold": meta.threshold,
                         **{k: v for k, v in score(name, labels, run_probs(runs / name, sources)).items() if k != "run"}})


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/chest_xray")
    parser.add_argument("--runs", default="runs/ablation")
    parser.add_argument("--only", nargs="*", help="train just these variants and print their rows (no table)")
    parser.add_argument("--add", nargs="*", help="train and score just these variants and merge their rows into the "
                                                 "recorded results (runs are not kept in git)")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    runs = Path(args.runs)
    if args.only:  # train (or resume) just these; the table is written by a run without --only
        for name in args.only:
            print(json.dumps(run_variant(name, VARIANTS[name], args.data, runs)), flush=True)
        return
    names = args.add or list(VARIANTS)
    rows = [run_variant(name, VARIANTS[name], args.data, runs) for name in names]
    add_stress(rows, runs)
    note = ""
    command = "python bench/ablation.py " + shlex.join(sys.argv[1:])
    if args.add:
        rows, note = carry_over("ablation", rows, "variant", command)
        order = [*VARIANTS, *ENSEMBLES, *BUILT_ENSEMBLES]
        rows.sort(key=lambda row: order.index(row["variant"]))
        note += " The stress shifts are seeded, so the scores are comparable."
    columns = ["variant", "model", "image_size", "ema_decay", "label_smoothing", "mixup", "augment", "aug_zoom", "aug_aspect",
               "aug_sharpness", "balance", "equalize", "crop", "consistency",
               "epochs", "auc_tie", "pretrain", "seed", "best_epoch", "epochs_run", "train_seconds", "val_auc", "val_auc_tta", "val_specificity_at_recall_0.95",
               "val_brier", "val_ece", "val_log_loss", "stress_auc_mean", "stress_auc_min", "stress_log_loss_mean",
               "geometry_auc_mean", "geometry_auc_min", "normals_flagged_zoom_in", "texture_auc_mean"]
    write_results("ablation", rows, columns, command=command,
                  note="Validation = patient-aware 15% of train (split seed 0); stress = the same images under the 13 "
                       "acquisition shifts of stress_val.py (mean and worst AUC); geometry and texture = its one-class "
                       f"probes. ENS rows average member probabilities ({', '.join(BUILT_ENSEMBLES)}: built with "
                       "`pneumoscan ensemble`, mean logit, scored as built); their train_seconds is the members' sum. "
                       "Blank settings are the base recipe's (balance weighted, no equalisation, 25 epochs, augment "
                       "1.0, zoom 0.10, no stretch). Test images are not read by this script." + note)
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
