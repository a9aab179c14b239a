"""Continuing a run from its checkpoint: a run already finished told apart, the model rebuilt with the options it
started with and given the checkpoint's weights (naming the plugin versions when they do not fit), and the resume
said and recorded in config.json (another --epochs, --data or plugin version)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from torch import nn

from pneumoscan.artifact import ARTIFACT_NAME, read_meta
from pneumoscan.errors import InputError, ModelConfigError, first_line, option
from pneumoscan.models.registry import create_model, version_change
from pneumoscan.training.checkpoint import schedule_change
from pneumoscan.training.config import RESUME_MAY_CHANGE, TrainConfig
from pneumoscan.training.run_folder import model_sources_update, recorded_model_sources, saved_config, write_json
from pneumoscan.training.selection import epochs_word, no_better, patience_stop


def finished_line(out: Path, done: dict[str, Any], cfg: TrainConfig) -> str | None:
    """The line that says the run in `out`, whose checkpoint's state is `done`, already finished, so a resume has
    nothing to do and leaves its model (and the guard and ONNX export made for it) untouched; None when it has
    epochs left to train, or its model was made before the last epochs of a resume with more --epochs."""
    if not (out / ARTIFACT_NAME).exists():
        return None
    # a model made before the last epochs of a resume with more --epochs is not this run's result
    made_after = read_meta(out / ARTIFACT_NAME).training.get("epochs_run", done["epoch"])
    if made_after != done["epoch"] or not (done["epoch"] >= cfg.epochs or done["bad_epochs"] >= cfg.patience):
        return None
    run_epochs = saved_config(out).get("epochs", cfg.epochs)
    why = (f" (pass a larger {option('epochs')} to train it further)" if done["epoch"] >= cfg.epochs else
           f", as {patience_stop(done, run_epochs, cfg.auc_tie)}")
    return (f"{out}: this run already finished ({epochs_word(done['epoch'])}, best "
            f"{done['best_epoch']}); nothing to resume{why}")


def resumed_model(name: str, out: Path, model_cfg: dict[str, Any], epoch: int) -> tuple[nn.Module, dict[str, Any]]:
    """Model `name` of the run in `out` built with the options the run started with (config.json's `model_config`,
    else `model_cfg`; a later version of its plugin may have changed its defaults), and those options, kept for the
    rest of the run; InputError naming both versions when the installed version no longer takes one of them (the
    version that trained its checkpoint, after `epoch`)."""
    saved = saved_config(out).get("model_config")
    if isinstance(saved, dict):
        model_cfg = saved
    try:
        return create_model(name, **model_cfg), model_cfg
    except ModelConfigError as err:
        changed = version_change(recorded_model_sources(out, epoch))
        if changed is None:
            raise
        raise InputError(f"{out}: {err}, as {changed[0]}; install {changed[1]} to resume it") from None


def resume_weights(model: nn.Module, name: str, ckpt: dict[str, Any], ckpt_path: Path, out: Path,
                   warn: Callable[[str], None]) -> dict[str, Any]:
    """`ckpt`, the checkpoint read from `ckpt_path` of the run in `out`, its weights loaded into `model` (model
    `name`); InputError in one line when they do not fit (naming both versions when the model's plugin is another
    version than trained them), and a warning when they fit another version."""
    changed = version_change(recorded_model_sources(out, ckpt["state"]["epoch"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:  # names, shapes or number of tensors other than this model has
        why = (f"as {changed[0]}; install {changed[1]} to resume it" if changed else
               "as the code that builds it is not the code the run started with; resume it with the versions of "
               f"pneumoscan and of the model's package it started with, or start a new run with another "
               f"{option('out')}")
        raise InputError(f"{ckpt_path}: its weights do not fit model {name!r} ({first_line(err)}), "
                         f"{why}") from None
    if changed:
        warn(f"{out}: {changed[0]}; its checkpoint loads, but the run continues with the installed "
             f"version, so its model may differ from one trained with a single version (pip install "
             f"'{changed[1]}' to continue as it started)")
    return ckpt


def note_resume(cfg: TrainConfig, out: Path, state: dict[str, Any], next_lr: float, say: Callable[[str], None],
                warn: Callable[[str], None]) -> None:
    """Say where the run in `out` continues, and record in config.json the --epochs, --data and --cache-dir it
    continues with, and the version of its model's plugin (`model_sources_update`). With another --epochs the
    learning rate follows, from the next epoch on, the cosine schedule of a run of that many epochs, at
    `next_lr` for its next step: the warning says from what to what it moves, or that no epoch is left. A --epochs
    below the epochs trained becomes that number in `cfg`."""
    saved = json.loads((out / "config.json").read_text())
    given = f"{option('epochs', cfg.epochs)} (run: {saved.get('epochs')})"
    stopped_early = state["bad_epochs"] >= cfg.patience  # the loop trains no epoch then, as for the below
    run_epochs = saved.get("epochs", cfg.epochs)
    same_epochs = run_epochs == cfg.epochs
    # said here, once: the loop, which trains no epoch, does not say it as if it had just stopped
    stopped = (f"; the run stopped early there ({no_better(cfg.auc_tie)} for {epochs_word(cfg.patience)}, "
               f"{option('patience')}), so no epoch is left to train: the model is made from epoch "
               f"{state['best_epoch']}") if same_epochs and stopped_early and state["epoch"] < cfg.epochs else ""
    say(f"resuming {out} after epoch {state['epoch']} (best so far: epoch {state['best_epoch']}, "
        f"validation AUC {state['best_auc']:.4f}){stopped}")
    if not same_epochs:
        if cfg.epochs <= state["epoch"] or stopped_early:
            why = patience_stop(state, run_epochs, cfg.auc_tie) if stopped_early else ""
            warn(f"{given}: no epoch is left to train{', as ' + why if why else ''}; the model is made "
                 f"from the best of the {epochs_word(state['epoch'])} trained")
        else:
            last = state["history"][-1]["lr"] if state["history"] else next_lr
            warn(f"{given}: {schedule_change(cfg.epochs, state['epoch'], last, next_lr, 'run')}; the "
                 f"model will differ from one of a run started with {option('epochs', cfg.epochs)}")
    if cfg.epochs < state["epoch"]:  # the run's record (config.json, the model's) keeps the epochs trained
        cfg.epochs = state["epoch"]
    now = {k: v for k, v in cfg.record().items() if k in (*RESUME_MAY_CHANGE, "data_resolved")}
    updated = {**saved, **now, **model_sources_update(cfg.model, out, saved, state["epoch"])}
    if not updated.get("earlier_model_sources"):
        updated.pop("earlier_model_sources", None)
    if updated != saved:
        write_json(out, "config.json", updated)
