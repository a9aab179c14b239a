"""The Python API's own functions: thin wrappers where a command's work needs more than one call.

Reached as `pneumoscan.train`, `pneumoscan.evaluate`, ... (`pneumoscan/__init__.py` imports this module on first
use). Each does what its command does, with the same checks: a user mistake raises InputError with the message the
command prints, naming options as Python takes them (`resume=True` for `--resume`: `errors.speaks_python`), and
nothing here exits or prints beyond what the command's own work prints (training's epoch lines, unless
verbose=False).
"""
from __future__ import annotations

import functools
import inspect
import numbers
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, Union, cast

from pneumoscan.errors import ArgumentTypeError, speaks_python

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pneumoscan.artifact import ArtifactMeta
    from pneumoscan.data.labels import Sample
    from pneumoscan.explain.explanation import Explanation
    from pneumoscan.export.onnx import ExportReport
    from pneumoscan.inference.predictor import Predictor

# A model as every function takes it: a run folder, a model.safetensors, None for the shipped model, or (where it
# says so) a loaded Predictor.
ModelPath = Union[str, os.PathLike, None]
_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True)
class _Kind:
    """What an argument takes: a test of its value, and the words that say it; `many` for a list, which is also
    taken as any other iterable (a generator, a dict's keys) and handed on as a list (`_listed`)."""

    test: Callable[[Any], bool]
    text: str
    many: bool = False

    def or_none(self) -> _Kind:
        return _Kind(lambda value: value is None or self.test(value), f"{self.text} or None", self.many)


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def _is_predictor(value: Any) -> bool:
    from pneumoscan.inference.predictor import Predictor

    return isinstance(value, Predictor)


def _is_bool(value: Any) -> bool:
    """A bool, numpy's too (np.True_, as comparing arrays gives; only made once numpy is imported)."""
    numpy = sys.modules.get("numpy")
    return isinstance(value, bool) or (numpy is not None and isinstance(value, numpy.bool_))


def _plain(value: Any) -> Any:
    """A path as its str, a numpy bool or number as the Python one it holds (a run's config.json is JSON, which
    takes no numpy scalar); anything else as given."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if _is_bool(value):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value) if isinstance(value, numbers.Real) else value


def _type_name(value: Any) -> str:
    """The type of `value` as a message names it: 'int', 'numpy.int64' (qualified unless built in)."""
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _is_many(value: Any) -> bool:
    """A list as the API takes one: any iterable but a str, bytes or path (each of which is one thing)."""
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, os.PathLike))


def _listed(value: Any) -> Any:
    """`value`, an iterable a list is given as, as a list (read once: a generator is spent by reading it, and
    `if not runs` is false of an empty one); anything else as given."""
    return list(value) if _is_many(value) and not isinstance(value, Sequence) else value


def _all(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A test of a list (once `_listed`) whose items pass `test`."""
    return lambda value: _is_many(value) and all(map(test, value))


_PATH = _Kind(_is_path, "a path (a str or os.PathLike)")
_PATHS = _Kind(_all(_is_path), "a list of paths (str or os.PathLike)", many=True)
# a list of paths, or one path, which the function refuses with a message of its own saying to list it
_PATH_OR_PATHS = _Kind(lambda value: _is_path(value) or _PATHS.test(value), _PATHS.text, many=True)
_BYTES = _Kind(lambda value: isinstance(value, (bytes, bytearray)),
               "a file's bytes (bytes, as Path.read_bytes() gives them; predict(path) takes a path)")
_SOURCE = _Kind(lambda value: _is_path(value) or isinstance(value, (bytes, bytearray, memoryview)),
                "a path (a str or os.PathLike) or a file's bytes")


def _is_film(value: Any) -> bool:
    """A film as `Predictor.predict` and `gradcam` take it: a path, a file's bytes, a numpy array (a subclass too, as
    imageio's Array), a PIL image or a pydicom Dataset (the last three only once their module is imported: a value
    of theirs cannot exist before)."""
    if _is_path(value) or isinstance(value, (bytes, bytearray, memoryview)):
        return True
    kinds = [getattr(sys.modules.get(module), name, None)
             for module, name in (("numpy", "ndarray"), ("PIL.Image", "Image"), ("pydicom.dataset", "Dataset"))]
    return isinstance(value, tuple(kind for kind in kinds if isinstance(kind, type)))


_FILM = _Kind(_is_film,
              "a path (a str or os.PathLike), a file's bytes, a PIL image, a numpy array or a pydicom Dataset")
_INT = _Kind(lambda value: isinstance(value, numbers.Integral) and not isinstance(value, bool), "an int")
_NUMBER = _Kind(lambda value: isinstance(value, numbers.Real) and not isinstance(value, bool), "a number")
_TEXT = _Kind(lambda value: isinstance(value, str), "a str")
_TEXTS = _Kind(_all(lambda value: isinstance(value, str)), "a list of str", many=True)
_BOOL = _Kind(_is_bool, "a bool")
_MODEL = _Kind(lambda value: value is None or _is_path(value),
               "a run folder or a model.safetensors (a str or os.PathLike), or None for the shipped model")
_MODEL_OR_PREDICTOR = _Kind(lambda value: _MODEL.test(value) or _is_predictor(value),
                            "a run folder or a model.safetensors (a str or os.PathLike), a Predictor, or None for the "
                            "shipped model")
# `train`'s options, by their TrainConfig type (None, their default, is taken by every one)
_OPTION_KINDS = {"int": _INT, "float": _NUMBER, "bool": _BOOL, "str": _Kind(_is_path, "a str")}


def _check(function: str, name: str, value: Any, kind: _Kind) -> None:
    """ArgumentTypeError naming `function`'s argument `name`, the `value` it got and what it takes, unless `kind`
    takes `value`: one line at the call, not a TypeError from deep inside the work."""
    if not kind.test(value):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ArgumentTypeError(f"{function}: {name} takes {kind.text}, not {_type_name(value)} {shown}")


def _public(called: str | None = None, /, **kinds: _Kind) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """A function of the Python API: the arguments it is given that `kinds` names are checked before it runs
    (`_check`, naming it as `called`, default its own name: "Predictor" for that class's __init__), and its
    messages name options as Python does (`speaks_python`)."""
    def decorate(function: Callable[_P, _R]) -> Callable[_P, _R]:
        signature = inspect.signature(function)
        name = called or function.__name__

        @functools.wraps(function)
        def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:  # an argument missing or unknown: Python's own error, from the call itself
                return function(*args, **kwargs)
            for argument, value in bound.arguments.items():
                if argument in kinds:
                    if kinds[argument].many:
                        value = bound.arguments[argument] = _listed(value)
                    _check(name, argument, value, kinds[argument])
            return function(*bound.args, **bound.kwargs)

        return speaks_python(call)

    return decorate


@dataclass(frozen=True)
class TrainedRun:
    """What `train` made: the run `folder` (history.csv, config.json, split.json, checkpoints), its `model` file
    (folder/model.safetensors) and that model's `meta` (threshold, validation metrics, preprocessing). Every
    function that takes a model takes it, as its folder."""

    folder: Path
    model: Path
    meta: ArtifactMeta = field(repr=False)  # a screenful of its own (validation metrics with their intervals)

    def __fspath__(self) -> str:
        return os.fspath(self.folder)


@_public(data=_PATH)
def load_dataset(data: str | os.PathLike) -> dict[str, list[Sample]]:
    """The labelled images under `data` by split: {'train': [...], 'val': [...], 'test': [...]} for the Kaggle
    layout, {'all': [...]} for a folder of class folders or a manifest without a split column. Each Sample is
    (path, label: 0 NORMAL / 1 PNEUMONIA, patient or None, cause or None: a manifest's); nothing is decoded."""
    from pneumoscan.data.layout import discover

    return discover(Path(data))


@_public(data=_PATH.or_none(), out=_PATH)
def train(data: str | os.PathLike | None, out: str | os.PathLike, *, resume: bool = False, progress: bool = True,
          verbose: bool = True, **recipe: Any) -> TrainedRun:
    """`pneumoscan train --data DATA --out OUT`: `recipe` takes the command's options by their Python names
    (epochs=2, image_size=64, model="cnn", balance="weighted", ...; None leaves one at its default). With `resume`,
    continue the run in `out` with its own settings (`data` may then be None). `progress` shows the bars when
    stderr is a terminal; `verbose=False` drops the epoch lines too (history.csv in the run folder has them). What
    the command warns about (unreadable films skipped, patients in both train/ and val/, ...) comes as Python
    warnings."""
    from pneumoscan.artifact import read_meta
    from pneumoscan.errors import InputError, warn
    from pneumoscan.training.config import TrainConfig, train_config
    from pneumoscan.training.trainer import train as run

    fields = TrainConfig.__dataclass_fields__
    options = [name for name in fields if name not in ("data", "out")]
    unknown = [name for name in recipe if name not in options]
    if unknown:
        raise InputError(f"train has no option {unknown[0]!r}; its options are: {', '.join(options)}")
    for name, value in recipe.items():  # "int | None" -> int; None leaves every option at its default
        kind = _OPTION_KINDS.get(str(fields[name].type).split(" |")[0])
        if kind is not None:  # a field of another type is checked by train_config alone
            _check("train", name, value, kind.or_none())
    given = {name: _plain(value) for name, value in {"data": data, "out": out, **recipe}.items() if value is not None}
    cfg = train_config(given, resume=resume)
    model = run(cfg, resume=resume, progress=progress, verbose=verbose, warn=warn)
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


@_public(model=_MODEL_OR_PREDICTOR, data=_PATH, split=_TEXT.or_none(), n_boot=_INT, seed=_INT,
         backend=_TEXT.or_none(), threshold=_NUMBER.or_none(), target_recall=_NUMBER.or_none(),
         prevalence=_NUMBER.or_none(), cache_dir=_PATH.or_none())
def evaluate(model: ModelPath | Predictor, data: str | os.PathLike, *, split: str | None = None, n_boot: int = 1000,
             seed: int = 0, backend: str | None = None, threshold: float | None = None,
             target_recall: float | None = None, prevalence: float | None = None,
             cache_dir: str | os.PathLike | None = None, progress: bool = True,
             predictions: bool = False) -> dict[str, Any]:
    """`pneumoscan evaluate --model MODEL --data DATA --json F`: the dict that command writes (metrics with 95 %
    intervals: Wilson for the rates, a bootstrap of patients or films for F1, the AUCs and Brier, as 'intervals'
    records; confusion matrix, recall by cause, the borderline films and the decisions on the rest, ...;
    undefined metrics are None), with its warnings
    (unreadable films left out, films the guard refuses, the model trained on, or the stored threshold was chosen
    on, file-name patient keys joining folders) as Python warnings.
    `backend` None is the command's 'auto'; it and the operating point are for a model path, a Predictor has its own.
    `cache_dir` is the command's --cache-dir (None: its default); `progress` shows the decoding and scoring bars
    when stderr is a terminal. With `predictions`, the dict also has 'predictions': the rows --predictions F.csv
    writes, {'path', 'label' (0/1), 'prob', 'cause'} for each film scored (what `plot_roc` draws; 'cause' is
    'bacteria' or 'virus' as recall by cause counts the film, else None)."""
    from pneumoscan.data.patients import cause_of
    from pneumoscan.evaluation.evaluate import check_bootstrap, evaluate_and_warn
    from pneumoscan.outputs import json_ready

    check_bootstrap(n_boot, seed)
    predictor = _predictor(model, "evaluate", backend=backend, threshold=threshold, target_recall=target_recall,
                           prevalence=prevalence)
    result = evaluate_and_warn(predictor, data, split, n_boot=n_boot, seed=seed, cache_dir=cache_dir,
                               progress=progress)
    summary = cast(dict[str, Any], json_ready(result.summary))
    if predictions:
        summary["predictions"] = [{"path": str(sample.path), "label": sample.label, "prob": float(prob),
                                   "cause": cause_of(sample)} for sample, prob in zip(result.images.samples, result.probs)]
    return summary


@_public(runs=_PATH_OR_PATHS, data=_PATH.or_none(),
         split=_TEXT.or_none(), n_boot=_INT, seed=_INT, cache_dir=_PATH.or_none())
def compare(runs: Sequence[str | os.PathLike], data: str | os.PathLike | None = None, *, split: str | None = None,
            n_boot: int = 500, seed: int = 0, cache_dir: str | os.PathLike | None = None,
            progress: bool = True) -> list[dict[str, Any]]:
    """`pneumoscan compare RUN ... --out F.html` without the files: the rows of its table (F.json), one dict per
    run (run, model, params, image_size, loss, accuracy, precision, recall, specificity, f1, roc_auc and its 95 %
    interval, threshold, n, train_seconds, tta, init, recipe; an undefined figure is None). Each run is scored at its own threshold on `data`
    (its `split`), else on its own validation predictions."""
    from pneumoscan.errors import InputError
    from pneumoscan.evaluation.evaluate import check_bootstrap
    from pneumoscan.report.compare import comparison, table_rows

    if isinstance(runs, (str, bytes, os.PathLike)):  # a str is a sequence too: of one-letter "runs"
        raise InputError(f"compare takes a list of run folders, not one; compare([{os.fsdecode(runs)!r}]), with more "
                         f"runs to compare them")
    check_bootstrap(n_boot, seed)
    rows, *_ = comparison(runs, data, split, n_boot=n_boot, seed=seed, cache_dir=cache_dir, progress=progress)
    return table_rows(rows)


@_public(run=_PATH)
def plot_learning_curves(run: str | os.PathLike) -> Figure:
    """The learning curves `pneumoscan report` draws from the run's history.csv: training and validation loss,
    validation ROC AUC and accuracy per epoch, the kept epoch dotted. A matplotlib Figure (a notebook shows it,
    `fig.savefig(path)` writes it)."""
    from pneumoscan.errors import InputError
    from pneumoscan.report.build import training_loss_label
    from pneumoscan.report.figures import learning_curves
    from pneumoscan.report.run import load_run

    info = load_run(run)
    if not info.history:
        raise InputError(f"{info.path}: no history.csv in this run folder, so no learning curves (an ensemble's "
                         f"members each have theirs)")
    return learning_curves(info.history, info.best_epoch, training_loss_label(info.config))


def _metrics(metrics: Any, caller: str) -> dict[str, Any]:
    """`metrics` when it is a dict `evaluate` returns, else InputError saying what `caller` takes (ArgumentTypeError
    when it is no dict)."""
    from pneumoscan.errors import InputError

    if not isinstance(metrics, dict) or "confusion_matrix" not in metrics:
        error = InputError if isinstance(metrics, dict) else ArgumentTypeError
        raise error(f"{caller} takes the dict evaluate(model, data) returns, not {type(metrics).__name__}")
    return metrics


@_public()
def plot_confusion_matrix(metrics: dict[str, Any]) -> Figure:
    """The confusion matrix of `evaluate`'s dict (or of a model's meta.val_metrics) at its threshold, as
    `pneumoscan report` draws it: counts and the share of each true class. A matplotlib Figure."""
    from pneumoscan.report.figures import confusion_matrix

    metrics = _metrics(metrics, "plot_confusion_matrix")
    matrix = metrics["confusion_matrix"]
    return confusion_matrix(matrix["matrix"], matrix["labels"], metrics["threshold"])


@_public(labels=_TEXTS.or_none())
def plot_roc(*metrics: dict[str, Any], labels: Sequence[str] | None = None) -> Figure:
    """ROC curves of one or more `evaluate(..., predictions=True)` dicts on one plot, as `pneumoscan compare`
    draws them: each named (`labels`, else its model's folder) with its AUC and 95 % interval, its operating point
    circled. A matplotlib Figure."""
    from pneumoscan.errors import InputError
    from pneumoscan.report.compare import roc_curve_for
    from pneumoscan.report.figures import roc_curves

    if not metrics:
        raise InputError("plot_roc needs at least one dict of evaluate(model, data, predictions=True)")
    if labels is not None and len(labels) != len(metrics):
        raise InputError(f"plot_roc: {len(labels)} labels for {len(metrics)} evaluations; give one label each")
    curves = []
    for k, result in enumerate(metrics):
        result = _metrics(result, "plot_roc")
        if "predictions" not in result:
            raise InputError("plot_roc needs each film's probability: evaluate(model, data, predictions=True)")
        rows = result["predictions"]
        model = Path(result["model"])
        name = labels[k] if labels is not None else (model.parent if model.suffix == ".safetensors" else model).name
        curve = roc_curve_for(name, [r["label"] for r in rows], [r["prob"] for r in rows], result)
        if curve is None:
            raise InputError(f"{name}: a ROC curve needs NORMAL and PNEUMONIA films; these scored "
                             f"{result['n_negative']} and {result['n_positive']}")
        curves.append(curve)
    return roc_curves(curves, "ROC curve" if len(curves) == 1 else "ROC curves")


@_public(image=_FILM, model=_MODEL_OR_PREDICTOR, threshold=_NUMBER.or_none())
def gradcam(image: str | os.PathLike | bytes | Any, model: ModelPath | Predictor = None, *,
            threshold: float | None = None) -> Explanation:
    """`pneumoscan explain IMAGE`, without the figure: the film's prediction (screened by the model's guard, as
    `predict` does) and the Grad-CAM heatmap (S, S) in [0, 1] of the evidence for its label; RefusedFilm (an
    InputError) when the guard refuses the film. The film is what `Predictor.predict` takes: a path, a file's bytes,
    a PIL image, a numpy array or a pydicom Dataset (read as its file). Give a Predictor to explain many films with
    one loaded model."""
    from pneumoscan.explain.explanation import explain_file

    return explain_file(_predictor(model, "gradcam", threshold=threshold), image)


@_public(model=_MODEL, out=_PATH, images=_PATHS.or_none())
def export_onnx(model: ModelPath, out: str | os.PathLike, *,
                images: Sequence[str | os.PathLike] | None = None) -> ExportReport:
    """`pneumoscan export --model MODEL --out OUT.onnx`: write the ONNX model after checking it against PyTorch on
    `images` (files or folders, up to 64 images; default (None) 8 of the bundled sample; an empty list is an
    InputError); the report gives the largest difference in probability found."""
    from pneumoscan.export.onnx import export_artifact
    from pneumoscan.outputs import check_output

    check_output(out, (".onnx",), "the model")
    return export_artifact(model, out, images=None if images is None else list(images))
