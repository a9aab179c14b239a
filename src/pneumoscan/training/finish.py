"""The end of a run: the threshold chosen on validation and the final artifact written, with the guard beside it
kept (re-keyed to the new file) when the model is the one it was fitted on, and the warnings for a guard or an ONNX
export that belongs to the model before."""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from pneumoscan.artifact import ARTIFACT_NAME, ArtifactMeta, artifact_writer, read_meta, save_artifact, stored_scores
from pneumoscan.data.cache import ImageSet
from pneumoscan.errors import InputError, shell_word
from pneumoscan.evaluation.bootstrap import summarize
from pneumoscan.evaluation.evaluate import write_predictions
from pneumoscan.evaluation.metrics import UndefinedMetricWarning
from pneumoscan.evaluation.thresholds import threshold_for_recall
from pneumoscan.inference.batch import predict_logits, sigmoid
from pneumoscan.inference.ood.guard import guard_beside
from pneumoscan.outputs import atomic_write_all

if TYPE_CHECKING:
    from pneumoscan.inference.ood.guard import OODGuard


# The span of log-odds over the validation films under which a model gives them all one probability but for float
# rounding (a collapsed run: 0 exactly, or about 1e-7 from batch-norm noise; a model that ranks films spans units).
ONE_OUTPUT_SPAN = 1e-4


def one_output(probs: Sequence[float]) -> float | None:
    """The probability a model gives every film of `probs` (its validation films), when their log-odds span less
    than ONE_OUTPUT_SPAN, as a run that diverged or whose units all died gives; else None."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-300, 1 - 1e-16)  # 0 and 1 (saturated) kept finite
    log_odds = np.log(p) - np.log1p(-p)
    return float(np.median(probs)) if len(p) > 1 and float(np.ptp(log_odds)) < ONE_OUTPUT_SPAN else None


def one_output_warning(out: Path, probability: float, advice: tuple[str, str]) -> str:
    """What to tell about a run whose kept model gives every validation film `probability` (`one_output`), with
    its config's likely cause and change (`TrainConfig.collapse_advice`)."""
    cause, change = advice
    return (f"{out}: the kept model gives every validation film the same P(pneumonia), {probability:.4g}, so it tells "
            f"no film from another and its AUC and threshold mean nothing ({cause}); {change}")


def fitted_guard(artifact: Path) -> tuple[OODGuard, dict[str, torch.Tensor]] | None:
    """The guard beside `artifact` with the tensors of `artifact`, when the guard was fitted for that very file;
    None otherwise (no guard, or a stale or unreadable one)."""
    from safetensors.torch import load_file

    from pneumoscan.inference.ood.guard import OODGuard

    path = guard_beside(artifact)
    if not (path.is_file() and artifact.is_file()):
        return None
    try:
        guard = OODGuard.read(path)
    except InputError:
        return None
    return (guard, load_file(str(artifact))) if guard.keyed_to(artifact) else None


def kept_guard(model: nn.Module, meta: ArtifactMeta,
               fitted: tuple[OODGuard, dict[str, torch.Tensor]] | None) -> OODGuard | None:
    """The guard of `fitted` (`fitted_guard` of the file the artifact of `model` and `meta` replaces) when the
    tensors and preprocessing it was fitted on are `model`'s and `meta`'s (a resume that kept the same epoch: only
    the training record changed), as its features are then the same; None otherwise. Decided before the artifact
    is written, so the guard is written with it (`finish_artifact`)."""
    if fitted is None:
        return None
    guard, before = fitted
    now = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if now.keys() != before.keys() or not all(torch.equal(now[k], before[k]) for k in now) or \
            (guard.image_size, guard.preprocessing, guard.meta.get("model_name")) != \
            (meta.image_size, meta.preprocessing, meta.model_name):
        return None
    return guard


def finish_artifact(out: Path, model: nn.Module, meta: ArtifactMeta, val: ImageSet, target_recall: float,
                    *, seed: int = 0, guard: OODGuard | None = None,
                    patients: list[str | None] | None = None) -> Path:
    """Score `val` with `model`, store the threshold for `target_recall`, the validation scores (with `patients`, each
    film's patient key, as integers: `stored_scores`) and metrics in `meta`, their intervals drawn by patient as
    `evaluate` draws them (of films without `patients`), write OUT/val_predictions.csv and the artifact
    OUT/model.safetensors. `guard`: one fitted on `model`'s very weights and preprocessing (`kept_guard`), keyed to
    the new artifact and written with it, both or neither (`atomic_write_all`), so no interruption leaves the model
    new and its guard keyed to the one before."""
    probs = sigmoid(predict_logits(model, val.images, meta.preprocessing, tta=meta.tta))
    labels = val.labels
    meta.target_recall = target_recall
    meta.threshold = float(threshold_for_recall(labels, probs, target_recall))
    # unrounded, so the stored threshold reaches the target recall on the stored scores exactly
    meta.val_scores = stored_scores(labels, probs, patients)
    with warnings.catch_warnings():  # stored, not printed: `evaluate` and `report` warn where they show them
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        # a patient's several films are not independent: resampled one by one, they gave intervals much too narrow
        meta.val_metrics = summarize(labels, probs, meta.threshold, n_boot=500, seed=seed, groups=patients)
    # absolute, so `report` finds the films from any folder (older runs hold paths relative to where they trained)
    write_predictions(out / "val_predictions.csv", [replace(s, path=Path(os.path.abspath(s.path))) for s in val.samples],
                      probs)
    if guard is None:
        return save_artifact(out / ARTIFACT_NAME, model, meta)
    written: list[Path] = []  # the artifact's temp file, which the guard is keyed to (a rename keeps its bytes)
    write_artifact = artifact_writer(model, meta)

    def artifact(tmp: Path) -> None:
        write_artifact(tmp)
        written.append(tmp)

    def keyed_guard(tmp: Path) -> None:
        guard.key_to(written[-1])
        guard.write(tmp)

    return atomic_write_all({out / ARTIFACT_NAME: artifact, guard_beside(out / ARTIFACT_NAME): keyed_guard},
                            mode=0o644)[0]


def stale_after_resume(out: Path, artifact: Path, kept: bool) -> str | None:
    """After a resume of the run in `out` replaced `artifact`: which of its guard and ONNX export, of those there
    are, belong to the model before, with the command that makes each again (the guard's with the run's recorded
    data); None when neither does. A guard `kept` (`kept_guard`) is not stale."""
    guard, onnx = guard_beside(artifact), artifact.with_suffix(".onnx")
    stale = {}
    if guard.exists() and not kept:
        stale[guard] = read_meta(artifact).fit_guard_command(out, out)
    if onnx.exists():
        stale[onnx] = f"`pneumoscan export --model {shell_word(out)} --out {shell_word(onnx)}`"
    if not stale:
        return None
    return (f"{' and '.join(p.name for p in stale)} in {out} belong{'s' if len(stale) == 1 else ''} "
            f"to the model before this resume; run {' and '.join(stale.values())} again")


def stale_guard(out: Path, artifact: Path) -> str | None:
    """For the finished run in `out`: that its guard is keyed to another model file than `artifact` (a resume that
    replaced the model was stopped before its own warning said so), with the command that fits it again; None when
    it is not (or is unreadable: predict and serve say so, with the fix)."""
    from pneumoscan.inference.ood.guard import OODGuard

    guard = guard_beside(artifact)
    try:
        stale = guard.is_file() and not OODGuard.read(guard).keyed_to(artifact)
    except InputError:  # unreadable: predict and serve say so, with the fix
        return None
    if not stale:
        return None
    return (f"{guard.name} in {out} was fitted for another version of {artifact.name}; run "
            f"{read_meta(artifact).fit_guard_command(out, out)} again")
