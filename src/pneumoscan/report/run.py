"""Read what a training run folder holds: artifact metadata, config, split record and history."""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pneumoscan.artifact import ARTIFACT_NAME, ArtifactMeta, read_meta
from pneumoscan.errors import InputError, words


@dataclass
class RunInfo:
    """The files of one run folder, parsed; missing optional files are empty."""

    path: Path
    artifact: Path
    meta: ArtifactMeta
    config: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def best_epoch(self) -> int | None:
        best = self.meta.training.get("best_epoch")
        return int(best) if best else None

    @property
    def train_seconds(self) -> float | None:
        seconds = self.meta.training.get("train_seconds")
        return float(seconds) if seconds is not None else None

    def parameter_count(self) -> int:
        """Number of weights of the run's architecture (built empty, weights not loaded); InputError saying what to
        install when it is a plugin's that is missing here."""
        from pneumoscan.models.registry import count_parameters, create_model, require_registered

        require_registered(self.meta.model_sources, self.artifact)
        return count_parameters(create_model(self.meta.model_name, **self.meta.model_config))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path}: not valid JSON; restore the file written by pneumoscan train or delete it") from None
    return data if isinstance(data, dict) else {}


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


# history.csv's columns (training's HISTORY_FIELDS) as a reader names them, in every table and figure of them.
HISTORY_NAMES = {"epoch": "epoch", "lr": "learning rate", "train_loss": "training loss", "val_loss": "validation loss",
                 "val_auc": "validation ROC AUC", "val_accuracy": "validation accuracy (P >= 0.5)",
                 "seconds": "seconds (this epoch)", "images_per_s": "training images per second"}


def read_history(path: Path) -> list[dict[str, float]]:
    """history.csv as a list of rows of floats (missing or non-numeric cells are NaN)."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [{k: _number(v) for k, v in row.items() if k} for row in csv.DictReader(handle)]
    return [row for row in rows if math.isfinite(row.get("epoch", math.nan))]


def _run_folder() -> str:
    """A run folder as a message asks for it: 'the --out folder of pneumoscan train'."""
    return words("--out folder of pneumoscan train", "`out` folder of train (its TrainedRun)")


def run_folder(run_dir: str | os.PathLike) -> Path:
    """The run folder `run_dir` names: itself, or the folder of a run's model.safetensors (which --model takes
    for a run everywhere else); InputError for any other path."""
    path = Path(run_dir)
    if path.is_file() and path.name == ARTIFACT_NAME:
        return path.parent
    if path.is_file():
        raise InputError(f"{path}: a file, not a run folder; pass the {_run_folder()} (a model file without its run, "
                         f"such as one written by set-threshold, is scored by {words('pneumoscan evaluate', 'evaluate')})")
    if not path.is_dir():
        raise InputError(f"{path}: not a run folder; pass the {_run_folder()}")
    return path


def load_run(run_dir: str | os.PathLike) -> RunInfo:
    """Parse a run folder written by `pneumoscan train` (or given by its model.safetensors); InputError when it
    holds no model."""
    path = run_folder(run_dir)
    artifact = path / ARTIFACT_NAME
    if not artifact.is_file():
        raise InputError(f"{path}: no {ARTIFACT_NAME} in this run folder; finish training (or resume it) first")
    return RunInfo(
        path=path,
        artifact=artifact,
        meta=read_meta(artifact),
        config=_read_json(path / "config.json"),
        split=_read_json(path / "split.json"),
        history=read_history(path / "history.csv"),
    )
