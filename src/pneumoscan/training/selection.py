"""Which epoch a run keeps: the highest validation AUC, or with --auc-tie an online rule that trades AUC within the
tie for validation loss, decided epoch by epoch (`becomes_kept`); and, in words, why --patience stops a run whose
kept epoch has not changed."""
from __future__ import annotations

from typing import Any

from pneumoscan.errors import option


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


def epochs_word(n: int) -> str:
    """'1 epoch', '3 epochs'."""
    return f"{n} epoch{'' if n == 1 else 's'}"


def patience_stop(state: dict[str, Any], run_epochs: int, tie: float) -> str:
    """Why a run whose kept epoch has not changed for --patience epochs trains no more: 'the run stopped early
    after epoch 2 (--patience)' when it stopped before its `run_epochs`, else (it trained them all) that its last
    epochs did not replace the kept one (`no_better`, in the words of its --auc-tie `tie`)."""
    if state["epoch"] < run_epochs:
        return f"the run stopped early after epoch {state['epoch']} ({option('patience')})"
    return f"{no_better(tie, past=True)} in the run's last {epochs_word(state['bad_epochs'])} ({option('patience')})"


def no_better(tie: float, past: bool = False) -> str:
    """What --patience counts, in the words of the run's --auc-tie: 'validation AUC has not improved' (`past`: 'did
    not improve')."""
    if tie <= 0:
        return f"validation AUC {'did not improve' if past else 'has not improved'}"
    return (f"no epoch {'replaced' if past else 'has replaced'} the kept one (by the {option('auc_tie', tie)} rule of "
            f"validation AUC and loss)")
