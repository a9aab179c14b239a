"""Which epoch a run keeps: the highest validation AUC, or with --auc-tie an online rule that trades AUC within the
tie for validation loss, decided epoch by epoch (`becomes_kept`)."""
from __future__ import annotations

from typing import Any


def becomes_kept(state: dict[str, Any], auc: float, loss: float, tie: float) -> bool:
    """Whether an epoch with validation `auc` and `loss` replaces the kept one in `state` (its best_auc and
    best_loss, and top_auc, the highest AUC so far, before this epoch). With `tie` 0, only a higher AUC does. Else
    an AUC within `tie` of the highest so far (this epoch's included) is a tie: the epoch replaces the kept one when
    its loss is lower, or when the kept one's AUC has fallen more than `tie` below the highest. Only the kept
    epoch's weights are saved, so the run may end on an epoch whose loss is higher than that of an earlier one that
    is still within `tie` of the highest AUC (not the lowest loss among the epochs within the tie of the run's
    highest)."""
    if tie <= 0:
        return auc > state["best_auc"]
    top = max(state["top_auc"], auc)
    if auc < top - tie:
        return False
    return loss < state["best_loss"] or state["best_auc"] < top - tie


def selection_state(history: list[dict[str, Any]], best_epoch: int) -> dict[str, float]:
    """best_loss and top_auc of a run saved before they were kept, from its history (inf and -1 when empty)."""
    kept = [row for row in history if row["epoch"] == best_epoch]
    return {"best_loss": kept[0]["val_loss"] if kept else float("inf"),
            "top_auc": max((row["val_auc"] for row in history), default=-1.0)}
