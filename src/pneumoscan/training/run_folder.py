"""A training run's folder: which folder may hold a run, and the records the run keeps there (config.json,
split.json, history.csv, the epoch of last.pt) with where its model comes from (`model_sources`)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pneumoscan.artifact import ARTIFACT_NAME, BEST_WEIGHTS, PRETRAINING_FILES, read_meta
from pneumoscan.errors import InputError, option, switch
from pneumoscan.models.registry import model_sources
from pneumoscan.outputs import atomic_write
from pneumoscan.training.checkpoint import files_in, load_checkpoint

LAST_CHECKPOINT = "last.pt"
HISTORY_FIELDS = ["epoch", "lr", "train_loss", "val_loss", "val_auc", "val_accuracy", "seconds", "images_per_s"]


def recorded_model_sources(out: Path, epoch: int | None = None) -> dict[str, dict[str, str]]:
    """Where the model of the run in `out` comes from (`model_sources`): its config.json's record, else (a run
    started before config.json kept one) its model files'; {} when none says. With `epoch`, the epoch its
    checkpoint ends, where its weights were trained: the record a resume with another version replaced after that
    very epoch (`earlier_model_sources`) when that resume stopped before it finished an epoch."""
    saved = saved_config(out)
    replaced = replaced_at(saved, epoch)
    if replaced is not None:
        return replaced
    sources = saved.get("model_sources")
    if isinstance(sources, dict) and all(isinstance(source, dict) for source in sources.values()):
        return sources
    for path in (out / BEST_WEIGHTS, out / ARTIFACT_NAME):
        if path.is_file():
            try:
                return read_meta(path).model_sources
            except InputError:  # a damaged file: the next one may say
                continue
    return {}


def replaced_at(saved: dict[str, Any], epoch: int | None) -> dict[str, dict[str, str]] | None:
    """The `model_sources` that config.json `saved` says a resume replaced after `epoch` (its last
    `earlier_model_sources` entry, when it ends at `epoch`: the version recorded since has trained no epoch), else
    None."""
    earlier = saved.get("earlier_model_sources")
    last = earlier[-1] if isinstance(earlier, list) and earlier else None
    if epoch is None or not isinstance(last, dict) or last.get("until_epoch") != epoch:
        return None
    sources = last.get("model_sources")
    return sources if isinstance(sources, dict) else None


def model_sources_update(model: str, out: Path, saved: dict[str, Any], epoch: int) -> dict[str, Any]:
    """config.json's record of where `model` comes from, for the run in `out` resumed after `epoch` with another
    version of its plugin than trained its checkpoint (which the resume has warned about): `model_sources` as
    installed now, so a later resume does not warn again, and the record of the version that trained the checkpoint
    appended to `earlier_model_sources` as {'until_epoch': E, 'model_sources': ...}. A version recorded by a resume
    that stopped before it finished an epoch trained none, so it is named nowhere: a run continued with the version
    before it again records no change. {} when nothing changes."""
    now = model_sources([model])
    trained = recorded_model_sources(out, epoch)
    earlier = list(saved.get("earlier_model_sources") or [])
    if replaced_at(saved, epoch) is not None:
        earlier.pop()
    elif trained.get(model) == now.get(model):
        return {}
    if trained and trained.get(model) != now.get(model):
        earlier.append({"until_epoch": epoch, "model_sources": trained})
    return {"model_sources": now, "earlier_model_sources": earlier}


def checkpoint_epoch(out: Path) -> int | None:
    """The epoch the checkpoint of the run in `out` ends; None without a readable one."""
    try:
        return load_checkpoint(out / LAST_CHECKPOINT)["state"]["epoch"] if (out / LAST_CHECKPOINT).is_file() else None
    except (InputError, KeyError, TypeError):
        return None


def saved_config(out: Path) -> dict[str, Any]:
    """The run's config.json, or {} when it is missing or unreadable."""
    try:
        saved = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def write_history(out: Path, history: list[dict[str, float]]) -> None:
    """OUT/history.csv: a row of figures per epoch trained."""
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS)
            writer.writeheader()
            writer.writerows(history)

    atomic_write(out / "history.csv", write)


def write_json(out: Path, name: str, data: Any) -> None:
    """OUT/`name`, `data` as indented JSON."""
    text = json.dumps(data, indent=2)
    atomic_write(out / name, lambda tmp: tmp.write_text(text))


def runs_inside(folder: Path, shown: int = 3) -> list[str]:
    """The first `shown` sub-folders of `folder` that are training runs (`train --out runs`, the folder of every
    run, would put this run's files among them), as `first/`; then `...` when there are more."""
    if not folder.is_dir():
        return []
    runs = [f"{p.name}/" for p in sorted(folder.iterdir()) if p.is_dir() and (p / "config.json").is_file()
            and ((p / LAST_CHECKPOINT).is_file() or (p / ARTIFACT_NAME).is_file())]
    return runs[:shown] + (["..."] if len(runs) > shown else [])


def run_resumes(out: Path, resume: bool) -> bool:
    """Whether the run in `out` continues from its checkpoint: `resume`, save for a run interrupted before its first
    epoch ended, which starts again. InputError when there is nothing to resume, or when a new run would write
    beside another's files (an earlier run, a model, a pretraining, other runs)."""
    ckpt_path = out / LAST_CHECKPOINT
    if resume and not ckpt_path.exists():
        if not (out / "config.json").exists():
            raise InputError(f"{ckpt_path}: nothing to resume; run without {switch('resume')} to start training")
        resume = False  # interrupted before its first epoch ended: start the run again
    if not resume and ckpt_path.exists():
        raise InputError(f"{out}: holds an earlier run; pass {switch('resume')} to continue it or choose "
                         f"another {option('out')}")
    if not resume and (out / ARTIFACT_NAME).exists():  # an ensemble, a set-threshold copy, a run without last.pt
        raise InputError(f"{out / ARTIFACT_NAME}: a model is already there and has no {LAST_CHECKPOINT} to "
                         f"resume from; choose another {option('out')} (training would replace it)")
    if not resume and (held := files_in(out, PRETRAINING_FILES)):
        raise InputError(f"{out}: holds a `pneumoscan pretrain` pretraining ({held}), beside whose files the "
                         f"run would write; give {option('out')} a folder of its own for the run")
    if not resume and (others := runs_inside(out)):
        raise InputError(f"{out}: holds other runs ({', '.join(others)}), so it is no run of its own; give "
                         f"{option('out')} a new folder for this run, such as {out / 'NAME'}")
    return resume
