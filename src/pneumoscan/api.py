"""The Python API's own functions: thin wrappers where a command's work needs more than one call.

Reached as `pneumoscan.train`, `pneumoscan.evaluate`, ... (`pneumoscan/__init__.py` imports this module on first
use). Each does what its command does, with the same checks: a user mistake raises InputError with the message the
command prints, and nothing here exits or prints beyond what the command's own work prints (training's epoch lines,
unless verbose=False).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, cast

if TYPE_CHECKING:
    from pneumoscan.artifact import ArtifactMeta
    from pneumoscan.data.layout import Sample
    from pneumoscan.explain.explanation import Explanation
    from pneumoscan.export.onnx import ExportReport
    from pneumoscan.inference.predictor import Predictor

# A model as every function takes it: a run folder, a model.safetensors, None for the shipped model, or (where it
# says so) a loaded Predictor.
ModelPath = Union[str, os.PathLike, None]


@dataclass(frozen=True)
class TrainedRun:
    """What `train` made: the run `folder` (history.csv, config.json, split.json, checkpoints), its `model` file
    (folder/model.safetensors) and that model's `meta` (threshold, validation metrics, preprocessing)."""

    folder: Path
    model: Path
    meta: ArtifactMeta


def load_dataset(data: str | os.PathLike) -> dict[str, list[Sample]]:
    """The labelled images under `data` by split: {'train': [...], 'val': [...], 'test': [...]} for the Kaggle
    layout, {'all': [...]} for a folder of class folders or a manifest without a split column. Each Sample is
    (path, label: 0 NORMAL / 1 PNEUMONIA, patient or None); nothing is decoded."""
    from pneumoscan.data.layout import discover

    return discover(Path(data))


def train(data: str | os.PathLike | None, out: str | os.PathLike, *, resume: bool = False, progress: bool = True,
          verbose: bool = True, **recipe: Any) -> TrainedRun:
    """`pneumoscan train --data DATA --out OUT`: `recipe` takes the command's options by their Python names
    (epochs=2, image_size=64, model="cnn", balance="weighted", ...; None leaves one at its default). With `resume`,
    continue the run in `out` with its own settings (`data` may then be None). `progress` shows the bars when
    stderr is a terminal; `verbose=False` drops the epoch lines too (history.csv in the run folder has them)."""
    from pneumoscan.artifact import read_meta
    from pneumoscan.errors import InputError
    from pneumoscan.training.config import TrainConfig, train_config
    from pneumoscan.training.trainer import train as run

    options = [name for name in TrainConfig.__dataclass_fields__ if name not in ("data", "out")]
    unknown = [name for name in recipe if name not in options]
    if unknown:
        raise InputError(f"train has no option {unknown[0]!r}; its options are: {', '.join(options)}")
    given = {name: os.fspath(value) if isinstance(value, os.PathLike) else value
             for name, value in {"data": data, "out": out, **recipe}.items() if value is not None}
    cfg = train_config(given, resume=resume)
    model = run(cfg, resume=resume, progress=progress, verbose=verbose)
    return TrainedRun(Path(cfg.out), model, read_meta(model))


def _predictor(model: ModelPath | Predictor, caller: str, **options: Any) -> Predictor:
    """`model` itself when it is a Predictor (then `options` must be unset: it has its own), else a Predictor of
    it with `options` (backend None: 'auto', as the CLI)."""
    from pneumoscan.errors import InputError
    from pneumoscan.inference.predictor import Predictor

    if isinstance(model, Predictor):
        given = [name for name, value in options.items() if value is not None]
        if given:
            raise InputError(f"{caller}: a Predictor has its own {', '.join(given)}; give them to Predictor(...), "
                             f"or pass the model's path instead")
        return model
    return Predictor(model, **{**options, "backend": options.get("backend") or "auto"})


def evaluate(model: ModelPath | Predictor, data: str | os.PathLike, *, split: str | None = None, n_boot: int = 1000,
             seed: int = 0, backend: str | None = None, threshold: float | None = None,
             target_recall: float | None = None, prevalence: float | None = None,
             cache_dir: str | os.PathLike | None = None, progress: bool = True) -> dict[str, Any]:
    """`pneumoscan evaluate --model MODEL --data DATA --json F`: the dict that command writes (metrics with 95 %
    bootstrap intervals, confusion matrix, recall by cause, the borderline films and the decisions on the rest, ...;
    undefined metrics are None), with its warnings
    (unreadable films left out, films the guard refuses, the model trained on, or the stored threshold was chosen
    on) as Python warnings.
    `backend` None is the command's 'auto'; it and the operating point are for a model path, a Predictor has its own.
    `cache_dir` is the command's --cache-dir (None: its default); `progress` shows the decoding and scoring bars
    when stderr is a terminal."""
    from pneumoscan.evaluation.evaluate import check_bootstrap, evaluate_and_warn
    from pneumoscan.outputs import json_ready

    check_bootstrap(n_boot, seed)
    predictor = _predictor(model, "evaluate", backend=backend, threshold=threshold, target_recall=target_recall,
                           prevalence=prevalence)
    result = evaluate_and_warn(predictor, data, split, n_boot=n_boot, seed=seed, cache_dir=cache_dir,
                               progress=progress)
    return cast(dict[str, Any], json_ready(result.summary))


def gradcam(image: str | os.PathLike, model: ModelPath | Predictor = None, *,
            threshold: float | None = None) -> Explanation:
    """`pneumoscan explain IMAGE`, without the figure: the film's prediction (screened by the model's guard, as
    `predict` does) and the Grad-CAM heatmap (S, S) in [0, 1] of the evidence for its label; RefusedFilm (an
    InputError) when the guard refuses the film. Give a Predictor to explain many films with one loaded model."""
    from pneumoscan.explain.explanation import explain_file

    return explain_file(_predictor(model, "gradcam", threshold=threshold), image)


def export_onnx(model: ModelPath, out: str | os.PathLike, *,
                images: Sequence[str | os.PathLike] | None = None) -> ExportReport:
    """`pneumoscan export --model MODEL --out OUT.onnx`: write the ONNX model after checking it against PyTorch on
    `images` (files or folders, up to 64 images; default 8 of the bundled sample); the report gives the largest
    difference in probability found."""
    from pneumoscan.export.onnx import export_artifact
    from pneumoscan.outputs import check_output

    check_output(out, (".onnx",), "the model")
    return export_artifact(model, out, images=None if images is None else list(images))
