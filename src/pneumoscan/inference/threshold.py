"""A loaded model's operating threshold: chosen from a `threshold` given by hand, a `target_recall` on the model's
stored scores or the model's own, moved with the probabilities to a `prevalence` (Bayes' rule from the model's prior),
and its bootstrap 95 % interval on the scores it was chosen on (what makes a probability borderline)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pneumoscan.artifact import ArtifactMeta
from pneumoscan.errors import InputError
from pneumoscan.evaluation.thresholds import adjust_for_prevalence, threshold_ci95, threshold_for_recall
from pneumoscan.inference.prevalence import model_prior

# Resamples and seed of the threshold's bootstrap interval: set-threshold's defaults, so a site's model gets the
# interval set-threshold printed for it (about 0.05 s for the shipped model's 785 validation films).
INTERVAL_BOOT, INTERVAL_SEED = 1000, 0


def prevalence_adjusted(probs: np.ndarray, meta: ArtifactMeta, prevalence: float | None) -> np.ndarray:
    """`probs` of the model of `meta` moved from its prior to `prevalence` (Bayes' rule); as they are without one."""
    if prevalence is None:
        return probs
    return adjust_for_prevalence(probs, model_prior(meta), prevalence)


def chosen_threshold(meta: ArtifactMeta, path: Path, threshold: float | None, target_recall: float | None,
                     prevalence: float | None) -> tuple[str, float | None, float]:
    """Where the threshold of the model at `path` comes from ("threshold", "target_recall" or "model"), the recall it
    is chosen for (None for a threshold given by hand) and the threshold: `threshold` as given, else the one for
    `target_recall` on the stored scores (InputError naming the model file without usable ones) or the model's own,
    moved with the probabilities to `prevalence` (a recall-based threshold does not depend on prevalence)."""
    threshold_from = "threshold" if threshold is not None else "target_recall" if target_recall is not None \
        else "model"
    target = target_recall if target_recall is not None else (meta.target_recall if threshold is None else None)
    if threshold is not None:
        return threshold_from, target, float(threshold)
    try:
        raw = meta.threshold_for_recall(target_recall) if target_recall is not None else meta.threshold
    except InputError as err:
        raise InputError(f"{path}: {err}") from None
    return threshold_from, target, float(prevalence_adjusted(np.array([raw]), meta, prevalence)[0])


def threshold_interval(meta: ArtifactMeta, threshold_from: str, target_recall: float | None,
                       prevalence: float | None) -> tuple[float, float] | None:
    """95 % bootstrap interval of the threshold in use (`chosen_threshold`), on the scores it was chosen on
    (validation, or a site's films after set-threshold), moved with the probabilities to `prevalence` as the
    threshold is. None for a threshold given by hand, and for a model whose stored scores do not give its stored
    threshold (none stored, unusable ones as in an edited file, no recall recorded, or a threshold set otherwise)."""
    scores = meta.val_scores
    if threshold_from == "threshold" or target_recall is None or meta.scores_problem() is not None \
            or not scores.get("labels"):
        return None
    labels, probs = scores["labels"], scores["probs"]
    if threshold_from == "model" and threshold_for_recall(labels, probs, target_recall) != meta.threshold:
        return None
    # by patient when the model stores its films' patients (`ArtifactMeta.score_groups`), else film by film
    lo, hi = threshold_ci95(labels, probs, target_recall, n_boot=INTERVAL_BOOT, seed=INTERVAL_SEED,
                            groups=meta.score_groups())
    lo, hi = prevalence_adjusted(np.array([lo, hi]), meta, prevalence)
    return float(lo), float(hi)


def interval_resampled(meta: ArtifactMeta) -> dict[str, Any]:
    """What the bootstrap of `threshold_interval` draws (`resampled_unit`: patients or films, how many), with
    `known`: whether the model stores the patients of its scored films."""
    from pneumoscan.evaluation.bootstrap import resampled_unit

    groups = meta.score_groups()
    return {**resampled_unit(meta.val_scores["labels"], groups), "known": groups is not None}
