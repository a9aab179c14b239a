"""The prior the model's probabilities answer to: where `--prevalence`'s Bayes adjustment starts from."""
from __future__ import annotations

import math
from typing import Any

from pneumoscan.artifact import ArtifactMeta
from pneumoscan.errors import InputError

# `train --balance` settings that train as if both classes were equally common (balanced batches, or a loss
# weighting each class by the other's count)
_BALANCED = ("sampler", "weighted")


def model_prior(meta: ArtifactMeta) -> float:
    """P(PNEUMONIA) the model's probabilities assume: the p_train of the `--prevalence` adjustment.

    Class-balanced batches and the class-weighted loss train the model as if half the films showed
    pneumonia, so its probabilities answer to 0.5, not to the training prevalence stored in the artifact;
    with `--balance none` they answer to the share of PNEUMONIA they trained on. An ensemble's mean logit carries the mean of its
    members' prior log-odds. Artifacts that do not record their balancing keep the stored prevalence."""
    problem = prior_problem(meta)
    if problem is not None:
        raise InputError(f"its stored training prevalence is unusable ({problem}), as in an edited file; restore the "
                         f"model file or train the model again")
    logits = [math.log(prior) - math.log1p(-prior) for prior in _member_priors(meta)]
    return 1.0 / (1.0 + math.exp(-sum(logits) / len(logits)))


def _member_priors(meta: ArtifactMeta) -> list[object]:
    """Each member's prior as recorded (a lone model is its own member), unchecked; a record edited out of shape
    (not a JSON object where one belongs) counts as not recorded."""
    members = meta.training.get("members")
    priors: list[object] = []
    for member in members if members and isinstance(members, list) else [meta.training]:
        balance = _record(member, "config").get("balance")
        priors.append(0.5 if balance in _BALANCED else _share_of_pneumonia(member) or meta.train_prevalence)
    return priors


def _record(record: Any, key: str) -> dict[str, Any]:
    """`record[key]` when both are JSON objects, else {} (not recorded)."""
    value = record.get(key) if isinstance(record, dict) else None
    return value if isinstance(value, dict) else {}


def prior_problem(meta: ArtifactMeta) -> str | None:
    """What makes the prior `model_prior` reads unusable (a stored training prevalence of 0 or 1, or not a number,
    as in an edited file); None when it is usable, or not read (class-balanced training answers to 0.5)."""
    for prior in _member_priors(meta):
        if isinstance(prior, bool) or not isinstance(prior, (int, float)) or not 0.0 < prior < 1.0:
            return f"{prior!r}, not a share strictly between 0 and 1"
    return None


def _share_of_pneumonia(training: Any) -> float | None:
    """PNEUMONIA's share of the training films a `training` record counts (None when it counts none)."""
    counts = _record(_record(training, "data"), "train")
    normal, pneumonia = counts.get("NORMAL"), counts.get("PNEUMONIA")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in (normal, pneumonia)):
        return None
    return pneumonia / (normal + pneumonia)
