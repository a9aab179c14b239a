"""The self-describing model artifact: safetensors weights plus a JSON header that says how to use them."""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from pneumoscan import CLASS_NAMES, __version__
from pneumoscan.data.preprocess import Preprocessing
from pneumoscan.errors import (InputError, ModelConfigError, ModelFileChanged, ModelOptionError, PluginVersionWarning,
                               UnknownModelError, first_line, option, shell_word, warn, words)
from pneumoscan.training.config import MAX_IMAGE_SIZE

if TYPE_CHECKING:  # torch is imported where weights are loaded or saved: reading a header needs none of it
    import torch
    from torch import nn

ARTIFACT_NAME = "model.safetensors"
# the best epoch's weights so far, kept by `train` beside its checkpoint: an artifact whose threshold is not chosen yet
BEST_WEIGHTS = "best.safetensors"
# what `pneumoscan pretrain` writes in its --out (training.pretrain), and the header key of its weights: starting
# weights for `train --init`, not a model, which a model's messages say
PRETRAINED_NAME = "pretrained.safetensors"
PRETRAIN_CHECKPOINT = "pretrain_last.pt"
PRETRAINING_FILES = (PRETRAIN_CHECKPOINT, PRETRAINED_NAME)
PRETRAINED_META_KEY = "pneumoscan_pretrained"
_META_KEY = "pneumoscan"
GUARD_META_KEY = "pneumoscan_ood"  # what a guard file's header is under (inference.ood.guard)


class TrainingData(NamedTuple):
    """Where a model's training `--data` is (`ArtifactMeta.placed_data`)."""

    folder: Path | None  # the folder as found now (`training_data_folder`); None when not found
    # for messages (`fit-guard --data ...`): as typed when it names `folder` from the current folder too, else
    # `folder`, else where it was (`data_places`); None when not recorded, or recorded as a relative path that cannot
    # be placed (from the current folder it could name another one: `ArtifactMeta.fit_guard_command`)
    shown: str | None
    recorded: str | None  # `--data` as recorded; None when not recorded


# How the header grows (tests/training/test_artifact.py pins the top-level fields): a header holding a top-level field
# this version lacks is refused as a newer pneumoscan's (`NewerHeaderError`), since reading it without that field would
# prepare or decide films otherwise. So a new field here must be a setting that changes predictions, with a default
# that gives older files the old behaviour; new informational data (dates, counts, notes) goes under `training` (or
# `val_metrics`), which any version reads past. An ensemble's member entries (`model_config["members"]`) follow the
# same rule (`models.ensemble.MEMBER_KEYS`).
@dataclass
class ArtifactMeta:
    """Everything needed to run a model on a new image, and what is known about how good it is."""

    model_name: str
    model_config: dict[str, Any]
    image_size: int
    mean: float
    std: float
    threshold: float = 0.5
    target_recall: float | None = None
    train_prevalence: float = 0.5
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    # the run's record: recipe, data counts, each training film's fingerprint (thousands), history; not in the repr,
    # so that a notebook showing `run.meta` or `predictor.meta` shows a screenful, not the shipped model's 480,000 chars
    training: dict[str, Any] = field(default_factory=dict, repr=False)
    val_metrics: dict[str, Any] = field(default_factory=dict)
    test_metrics: dict[str, Any] = field(default_factory=dict)
    # labels and probabilities the threshold is chosen on: validation, or a site's images after `set-threshold`; with
    # "groups", each film's patient as an integer (`stored_scores`), when known
    val_scores: dict[str, list[float]] = field(default_factory=dict, repr=False)
    threshold_source: dict[str, Any] = field(default_factory=dict)  # empty: chosen on validation in training
    tta: bool = False
    equalize: bool = False  # histogram-equalise each image before normalising (trained with --equalize)
    crop: bool = False  # crop each image to a square as wide as the body first (trained with --crop)
    # where each model it needs that is not built in comes from (registry.model_sources): a plugin package, or a module
    model_sources: dict[str, dict[str, str]] = field(default_factory=dict)
    version: str = __version__

    @property
    def preprocessing(self) -> Preprocessing:
        """What every prediction with these weights must do to its uint8 images first."""
        return Preprocessing(self.mean, self.std, self.equalize, self.crop)

    def placed_data(self, run_dir: str | os.PathLike | None = None) -> TrainingData:
        """Where the training run's `--data` is (`TrainingData`), from one reading of the record (`data_record`, which
        reads each ensemble member's config.json; `run_dir`: the model file's folder)."""
        from pneumoscan.training.config import data_places, data_record, training_data_folder

        config, here = data_record(self.training, run_dir)
        if not config:
            return TrainingData(None, None, None)
        found = training_data_folder(config, here)
        if found is not None:
            shown = str(config["data"] if Path(config["data"]).resolve() == found.resolve() else found)
            return TrainingData(found, shown, config["data"])
        places = data_places(config, here)
        return TrainingData(None, str(places[0]) if places else None, config["data"])

    def check_out_of_training_data(self, out: str | os.PathLike, run_dir: str | os.PathLike | None = None,
                                   folder: str | os.PathLike | None = None) -> None:
        """InputError when `out` (what a command writes from this model: a heatmap, a report and its figures; in
        `folder`) is in the model's training data, if found, or its split or class folders (`check_out_of_data`),
        where the next training would take its images for films."""
        from pneumoscan.data.layout import check_out_of_data

        placed = self.placed_data(run_dir)
        if placed.folder is not None:
            check_out_of_data(out, placed.shown or placed.folder, folder)

    def fit_guard_command(self, model: str | os.PathLike, run_dir: str | os.PathLike | None = None, *,
                          placed: TrainingData | None = None) -> str:
        """'`pneumoscan fit-guard --model MODEL --data DATA`' for messages: DATA the training data
        (`TrainingData.shown`), else the placeholder TRAINING_DATA, followed by what was recorded when that is a
        relative path that cannot be placed. `placed`: the training data as `placed_data` already found it (else it is placed from `run_dir`)."""
        _, data, recorded = placed if placed is not None else self.placed_data(run_dir)
        command = f"`pneumoscan fit-guard --model {shell_word(model)} --data {shell_word(data or 'TRAINING_DATA')}`"
        if data is None and recorded:
            command += f" (TRAINING_DATA: recorded as {recorded}, relative to the folder training ran in)"
        return command

    def threshold_for_recall(self, target_recall: float) -> float:
        """Operating threshold for `target_recall`, chosen on the stored scores (validation, or local after `set-threshold`)."""
        from pneumoscan.evaluation.thresholds import threshold_for_recall

        problem = self.scores_problem()
        if problem is not None:
            raise InputError(f"its stored validation scores are unusable ({problem}), as in an edited file; pass "
                             f"{option('threshold')} instead of {option('target_recall')}, or re-run set-threshold or "
                             f"retrain the model to store them again")
        if not self.val_scores.get("labels"):
            raise InputError(f"this model stores no validation scores; pass {option('threshold')} instead of "
                             f"{option('target_recall')}")
        return float(threshold_for_recall(self.val_scores["labels"], self.val_scores["probs"], target_recall))

    def score_groups(self) -> list[str | None] | None:
        """Each stored score's patient (`stored_scores`' integer, as a key; None: of no known patient, drawn alone), for
        the bootstrap to draw a patient's films together; None when no usable groups are stored (a model from before
        they were, or an edited file): its films are then drawn one by one."""
        labels, groups = self.val_scores.get("labels"), self.val_scores.get("groups")
        if not isinstance(groups, list) or not isinstance(labels, list) or len(groups) != len(labels) or any(
                isinstance(g, bool) or not isinstance(g, int) or g < -1 for g in groups):
            return None
        width = len(str(max(groups, default=0)))  # zero-padded: sorted as the keys they stand for
        return [None if g == -1 else f"{g:0{width}d}" for g in groups]

    def scores_problem(self) -> str | None:
        """What makes the stored scores unusable to choose a threshold on (an edited file); None when they are usable
        or none are stored."""
        scores = self.val_scores
        if not isinstance(scores, dict):
            return "not a table of labels and probabilities"
        labels, probs = scores.get("labels"), scores.get("probs")
        if not labels and not probs:
            return None
        if not isinstance(labels, list) or not isinstance(probs, list):
            return "labels and probabilities are not both lists"
        if len(labels) != len(probs):
            return f"{len(labels)} labels but {len(probs)} probabilities"
        if any(isinstance(v, bool) or v not in (0, 1) for v in labels):
            return "labels other than 0 (NORMAL) and 1 (PNEUMONIA)"
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0 for v in probs):
            return "probabilities that are not numbers from 0 to 1"
        if 1 not in labels:
            return "no PNEUMONIA (1) label"
        if 0 not in labels:
            return "no NORMAL (0) label"
        return None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ArtifactMeta":
        """The settings of a JSON header; ValueError saying what is wrong with one that is unusable (an edited file)."""
        try:
            data = json.loads(text)
        except ValueError:
            raise ValueError("not JSON") from None
        problem = header_problem(data)
        if problem is not None:
            raise (NewerHeaderError if isinstance(data, dict) and unknown_settings(data) else ValueError)(problem)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def stored_scores(labels: Iterable[int], probs: Iterable[float],
                  patients: Sequence[str | None] | None) -> dict[str, list[Any]]:
    """The `val_scores` a model stores: labels, probabilities and, when known, each film's patient as an integer, which
    says which films are one patient's without naming any: its key's rank among the keys sorted (-1: no known
    patient), so that `ArtifactMeta.score_groups` gives the bootstrap its keys' order and the same draws."""
    scores: dict[str, list[Any]] = {"labels": [int(v) for v in labels], "probs": [float(p) for p in probs]}
    if patients is not None:
        rank = {key: i for i, key in enumerate(sorted({key for key in patients if key is not None}))}
        scores["groups"] = [-1 if key is None else rank[key] for key in patients]
    return scores


class NewerHeaderError(ValueError):
    """A model header holding settings this version does not know: a newer pneumoscan wrote it."""


NEWER_ADVICE = "upgrade pneumoscan, or load it with the version that wrote it"


def unknown_settings(data: dict[str, Any]) -> list[str]:
    """The top-level fields of a decoded header this version does not know (a newer pneumoscan's), sorted."""
    return sorted(set(data) - set(ArtifactMeta.__dataclass_fields__))


def is_finite_number(value: Any) -> bool:
    """Whether a value read from JSON is a finite number (not a bool, NaN or infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


PIXEL_COUNT_RULE = f"not a whole number of pixels from 1 to {MAX_IMAGE_SIZE}"
TOO_LARGE = f"larger than the {MAX_IMAGE_SIZE} px this version of pneumoscan takes"
TOO_LARGE_ADVICE = (f"load it with the version that wrote it, or train the model again at --image-size "
                    f"{MAX_IMAGE_SIZE} or less")
"""The way out for a file `TOO_LARGE` (a model's or its export's): made at that size, it cannot be made again at it."""


def is_pixel_count(value: Any) -> bool:
    """Whether a value read from JSON is a whole number of pixels from 1 to `MAX_IMAGE_SIZE` (not a bool)."""
    return _whole_pixels(value) and value <= MAX_IMAGE_SIZE


def pixel_count_problem(value: Any) -> str | None:
    """What is wrong with an image size read from a file (a model header's, a guard's, an ONNX export's), in the
    words every reader of one uses: `TOO_LARGE` for a whole number of pixels above `MAX_IMAGE_SIZE` (versions
    before the limit trained at such sizes), else `PIXEL_COUNT_RULE`; None when it is a pixel count."""
    if is_pixel_count(value):
        return None
    return TOO_LARGE if _whole_pixels(value) else PIXEL_COUNT_RULE


def _whole_pixels(value: Any) -> bool:
    """Whether a value read from JSON is a whole number above 0 (not a bool), however large."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# what each stored setting must be for every prediction to honour it: (test, what it is not when it fails)
_HEADER_RULES: dict[str, tuple[Callable[[Any], bool], str | Callable[[Any], str | None]]] = {
    "model_name": (lambda v: isinstance(v, str) and bool(v), "not a model name"),
    "model_config": (lambda v: isinstance(v, dict), "not a JSON object"),
    "image_size": (is_pixel_count, pixel_count_problem),
    "mean": (is_finite_number, "not a finite number"),
    "std": (lambda v: is_finite_number(v) and v > 0, "not a finite number above 0"),
    "threshold": (lambda v: is_finite_number(v) and 0 <= v <= 1, "not a number from 0 to 1"),
    "target_recall": (lambda v: v is None or (is_finite_number(v) and 0 < v <= 1),
                      "neither null nor a number above 0 and at most 1"),
    "train_prevalence": (is_finite_number, "not a finite number"),
    "class_names": (lambda v: isinstance(v, list) and len(v) == 2 and all(isinstance(c, str) and c for c in v)
                    and v[0] != v[1], "not two different names"),
    **{name: (lambda v: isinstance(v, dict), "not a JSON object") for name in ("training", "val_metrics", "test_metrics")},
    "threshold_source": (lambda v: v == {} or _is_local_source(v), "neither empty nor where set-threshold chose the "
                         "threshold (data, split, n_normal, n_pneumonia, date, previous_threshold)"),
    **{name: (lambda v: isinstance(v, bool), "not true or false") for name in ("tta", "equalize", "crop")},
    "model_sources": (lambda v: isinstance(v, dict) and all(
        isinstance(source, dict) and all(isinstance(s, str) for s in source.values()) for source in v.values()),
        "not a JSON object of where each model comes from"),
}
_REQUIRED = ("model_name", "model_config", "image_size", "mean", "std")


def _is_local_source(source: Any) -> bool:
    """Whether `source` is set-threshold's record of the films it chose the threshold on, as evaluate, report and
    the service read it."""
    counts = [source.get(key) for key in ("n_normal", "n_pneumonia")] if isinstance(source, dict) else [None]
    return (isinstance(source, dict) and all(isinstance(source.get(key), str) and source[key]
                                             for key in ("data", "split", "date"))
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts)
            and is_finite_number(source.get("previous_threshold")))


def header_problem(data: Any) -> str | None:
    """What makes a model file's decoded JSON header unusable (an edited file), or None. The stored validation
    scores and training prevalence are checked where they are used (`scores_problem`, the Predictor's prior)."""
    if not isinstance(data, dict):
        return "not a JSON object"
    unknown = unknown_settings(data)
    if unknown:  # a newer pneumoscan's: read without them, its films would be prepared or decided otherwise
        return (f"{', '.join(unknown)}: {'settings' if len(unknown) > 1 else 'a setting'} this pneumoscan does not "
                f"know, which its predictions would leave out")
    missing = [name for name in _REQUIRED if name not in data]
    if missing:
        return f"{', '.join(missing)} missing"
    for name, (valid, what) in _HEADER_RULES.items():
        if name in data and not valid(data[name]):
            return f"{name} {data[name]!r}: {what(data[name]) if callable(what) else what}"
    return None


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file: identifies a model artifact (guards, ONNX exports and the service refer to it)."""
    return _sha256(path)


def _sha256(path: str | os.PathLike, start: int = 0, prefix: bytes = b"") -> str:
    """Hex SHA-256 of `prefix` followed by the bytes of file `path` from offset `start` on (read by the MB)."""
    digest = hashlib.sha256(prefix)
    with open(path, "rb") as handle:
        handle.seek(start)
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_model_path() -> Path:
    """The model shipped inside the package."""
    return Path(__file__).parent / "weights" / "default.safetensors"


def is_shipped(model: str | os.PathLike | None) -> bool:
    """Whether model file `model` holds the weights shipped with pneumoscan (the shipped file, a copy, or a
    set-threshold copy with a threshold of its own): the model whose card says which films it was trained on (frontal
    pediatric chest X-rays). Decided by the tensors alone, not the whole file, whose header a set-threshold rewrites."""
    shipped = default_model_path()
    if model is None or not shipped.is_file():
        return False
    try:
        return _tensor_index(model) == _tensor_index(shipped) and weights_sha256(model) == weights_sha256(shipped)
    except (OSError, ValueError):  # unreadable, or no safetensors file: not the shipped model
        return False


# by the file's stat (device, inode, size, modification and change times): computed again once the file changes, and
# a Predictor's start-up reads the shipped file's index and hashes its weights once per process
_TENSOR_INDEX: dict[tuple[int, ...], tuple[str, int]] = {}
_WEIGHTS_SHA256: dict[tuple[int, ...], str] = {}
_SHIPPED_THRESHOLD: dict[tuple[int, ...], float] = {}


def shipped_threshold() -> float:
    """The threshold stored in the shipped model (`read_meta`), its header read again only once the file changes;
    InputError as `read_meta` gives it when the file is gone or unreadable."""
    path = default_model_path()
    try:
        key = _stat_key(path)
    except OSError:
        return read_meta(path).threshold
    if key not in _SHIPPED_THRESHOLD:
        _SHIPPED_THRESHOLD[key] = read_meta(path).threshold
    return _SHIPPED_THRESHOLD[key]


def _stat_key(path: str | os.PathLike) -> tuple[int, ...]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def _tensor_index(path: str | os.PathLike) -> tuple[str, int]:
    """A safetensors file's tensor index (names, dtypes, shapes, offsets: its JSON header without the metadata) and
    the length of its tensor data: equal for two files whose weights may be equal, read without the data."""
    key = _stat_key(path)
    if key not in _TENSOR_INDEX:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if length > 100_000_000:  # safetensors' own limit on a header
                raise ValueError(f"{path}: not a safetensors file")
            header = json.loads(handle.read(length))
        if not isinstance(header, dict):
            raise ValueError(f"{path}: not a safetensors file")
        header.pop("__metadata__", None)
        _TENSOR_INDEX[key] = json.dumps(header, sort_keys=True), key[2] - 8 - length
    return _TENSOR_INDEX[key]


def weights_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a safetensors file's tensors (their index, then their bytes), not of its metadata: the same for
    a model and a copy of its weights with other settings."""
    key = _stat_key(path)
    if key not in _WEIGHTS_SHA256:
        index, length = _tensor_index(path)
        _WEIGHTS_SHA256[key] = _sha256(path, key[2] - length, index.encode())
    return _WEIGHTS_SHA256[key]


def resolve_model_path(model: str | os.PathLike | None) -> Path:
    """An artifact path from a run directory, an artifact file, or None (the shipped default)."""
    if model is None:
        path = default_model_path()
        if not path.is_file():
            raise InputError(f"{path}: the default model is not installed; pass {_model_option()}")
        return path
    path = Path(model)
    if path.is_dir():
        path = path / ARTIFACT_NAME
        if not path.is_file() and (path.parent / BEST_WEIGHTS).is_file():  # a training running, or interrupted
            raise InputError(f"{model}: a training run that has not finished (its {ARTIFACT_NAME} is written at the "
                             f"end); wait for it to end, or finish it with {finish_command(path.parent)} if it was "
                             f"interrupted, then pass the run folder again")
        if not path.is_file() and any((path.parent / name).is_file() for name in PRETRAINING_FILES):
            raise InputError(_pretraining_message(model, path.parent / PRETRAINED_NAME))
        if not path.is_file():
            raise InputError(f"{model}: no {ARTIFACT_NAME} in this folder; train first or point {option('model')} at "
                             f"an artifact")
    elif not path.is_file():
        raise InputError(f"{path}: no such model file or run folder; pass {_model_option()}")
    elif path.suffix.lower() == ".onnx":
        raise InputError(f"{path}: an ONNX export, not a model; {option('model')} takes a run folder or a "
                         f"model.safetensors (or nothing: the shipped model), and with ONNX Runtime "
                         f"({words('--backend auto or onnx', 'backend auto or onnx')}) the export "
                         f"beside it (RUN/model.onnx) is used by itself when it was made from that very file")
    elif _is_image_name(path):  # the film given where the model goes (gradcam(model, film) in Python)
        raise InputError(f"{path}: an image, not a model; {option('model')} takes a run folder or a model.safetensors "
                         f"(or {words('nothing', 'None')}: the shipped model), and the "
                         f"{words('films come after the options', 'film goes to predict(image) or gradcam(image)')}")
    elif path.name == PRETRAIN_CHECKPOINT:  # an interrupted or running pretraining's checkpoint
        raise InputError(_pretraining_message(path, path.parent / PRETRAINED_NAME))
    elif path.name == BEST_WEIGHTS and not read_meta(path).val_scores:
        raise InputError(_best_weights_message(path))
    elif path.suffix.lower() != ".safetensors" and (path.parent / BEST_WEIGHTS).is_file():
        raise InputError(_run_file_message(path, f"{path}: a file of a training run, not a model"))
    return path


def _pretraining_message(given: str | os.PathLike, weights: Path) -> str:
    """Why a pretraining's folder or weights (`given`) is no model, and how to train one from its `weights`."""
    unfinished = "" if weights.is_file() else (f" once the pretraining has finished (`pneumoscan pretrain --data DATA --out "
                                               f"{shell_word(weights.parent)} --resume` with the options it was started with "
                                               f"continues it)")
    return (f"{os.fspath(given)}: a pretraining (`pneumoscan pretrain`), not a trained model: its weights are a starting "
            f"point, without the classifier or threshold a prediction needs; train from them with `pneumoscan train "
            f"--data DATA --init {shell_word(weights)} --out RUN`{unfinished}, then pass RUN as {option('model')}")


def pretraining_refusal(path: Path) -> str | None:
    """What --model says of `path` when it is a pretraining's (its folder, its checkpoint, or weights whose header
    names a pretraining, read without the weights), else None."""
    if path.is_dir():
        found = not (path / ARTIFACT_NAME).is_file() and any((path / name).is_file() for name in PRETRAINING_FILES)
        return _pretraining_message(path, path / PRETRAINED_NAME) if found else None
    if path.name == PRETRAIN_CHECKPOINT and path.is_file():
        return _pretraining_message(path, path.parent / PRETRAINED_NAME)
    if path.suffix.lower() != ".safetensors":
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
    except Exception:  # no safetensors file: not a pretraining's, whatever else it is
        return None
    return _pretraining_message(path, path) if PRETRAINED_META_KEY in metadata and _META_KEY not in metadata else None


def _is_image_name(path: Path) -> bool:
    """Whether a file's name ends as an image file's does (.jpeg, .png, .dcm, ...)."""
    from pneumoscan.data.formats import IMAGE_EXTENSIONS

    return path.suffix.lower() in IMAGE_EXTENSIONS


def _best_weights_message(path: Path) -> str:
    """Why a run's best.safetensors is not a model to predict with, and what to pass instead."""
    return _run_file_message(path, f"{path}: the best epoch's weights as training keeps them, without the threshold "
                                   f"chosen on validation (every film would be decided at 0.5)",
                             f" (its {ARTIFACT_NAME}: these weights with that threshold)")


def _run_file_message(path: Path, what: str, model_is: str = "") -> str:
    """`what` a file of a training run is, then the run folder to pass instead (`model_is`: what its model is), or
    how to finish the run first."""
    if (path.parent / ARTIFACT_NAME).is_file():
        return f"{what}; pass the run folder {path.parent}{model_is}"
    return f"{what}, of a run that has not finished; finish it with {finish_command(path.parent)}, then pass the run folder"


def finish_command(run: Path) -> str:
    """How to finish the training run in folder `run`: its `train --resume` command, or train call in Python."""
    return words(f"`pneumoscan train --out {shell_word(run)} --resume`", f"pneumoscan.train(None, {str(run)!r}, resume=True)")


def _model_option() -> str:
    """How a message asks for a model: '--model RUN_DIR or a .safetensors file' on the command line."""
    return words("--model RUN_DIR or a .safetensors file", "a run folder or a .safetensors file as `model`")


def save_artifact(path: str | os.PathLike, model: nn.Module, meta: ArtifactMeta) -> Path:
    """Write weights and metadata atomically (temp file + rename); a failed write (a full disk) is a WriteError
    naming PATH, and the file that was there is kept whole."""
    from pneumoscan.outputs import atomic_write

    return atomic_write(path, artifact_writer(model, meta), mode=0o644)


def artifact_writer(model: nn.Module, meta: ArtifactMeta) -> Callable[[Path], None]:
    """What writes `model`'s weights (as they are now) and `meta` as an artifact to a file (for `atomic_write` and
    `atomic_write_all`)."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from pneumoscan.outputs import os_error_of

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}

    def write(tmp: Path) -> None:
        try:
            save_file(tensors, str(tmp), metadata={_META_KEY: meta.to_json()})
        except SafetensorError as err:
            raise os_error_of(err) from None

    return write


def read_meta(path: str | os.PathLike) -> ArtifactMeta:
    """Only the metadata of an artifact (no weights loaded)."""
    from safetensors import safe_open

    try:  # numpy: the header alone, without importing torch (framework="pt" does)
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for corrupt files
        kind = _file_kind(path)
        if kind == "zip":
            raise InputError(_zip_message(path)) from None
        what = ("a pickle as torch.save writes, which pneumoscan never loads: unpickling can run code"
                if kind == "pickle" else err)
        raise InputError(f"{path}: not a pneumoscan model file ({what}); pass a model.safetensors written by pneumoscan") from None
    if _META_KEY not in metadata and PRETRAINED_META_KEY in metadata:
        raise InputError(_pretraining_message(path, Path(path)))
    if _META_KEY not in metadata and GUARD_META_KEY in metadata:
        raise InputError(f"{path}: the chest X-ray guard of a model (fit-guard writes it beside the model), not a "
                         f"model; {_guarded_model(Path(path))}")
    return _meta_of(metadata.get(_META_KEY), path)


def _file_kind(path: str | os.PathLike) -> str | None:
    """What file `path`, unreadable as safetensors, starts as: 'safetensors' (a header's 8-byte length and its JSON's
    `{`: a damaged or truncated one, checked first, as its length may begin with the bytes of a pickle's protocol),
    'pickle' (what torch.save writes: a zip archive holding a `data.pkl`, or a pickle of protocol 2 or later, torch's
    legacy format or pickle.dump), 'zip' (any other zip archive), else None."""
    import zipfile

    try:
        with open(path, "rb") as handle:
            start = handle.read(9)
    except OSError:
        return None
    if len(start) == 9 and start[8:] == b"{":
        return "safetensors"
    if start.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (OSError, zipfile.BadZipFile):  # a torn archive: its entries cannot be listed
            return "zip"
        return "pickle" if any(name.rsplit("/", 1)[-1] == "data.pkl" for name in names) else "zip"
    return "pickle" if len(start) > 1 and start[0] == 0x80 and 2 <= start[1] <= 5 else None


def _zip_message(path: str | os.PathLike) -> str:
    """The refusal of a zip archive given as the model (not torch.save's): unzip it, naming the model file inside."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            inside = [name for name in archive.namelist() if name.endswith(".safetensors")]
    except (OSError, zipfile.BadZipFile):  # torn: whose it was cannot be told
        return f"{path}: a damaged zip archive, not a model file; pass a model.safetensors written by pneumoscan"
    found = f" ({inside[0]})" if len(inside) == 1 else ""
    return f"{path}: a zip archive, not a model file; unzip it and pass the model.safetensors inside{found}"


def _guarded_model(guard: Path) -> str:
    """What to pass instead of guard file `guard`: the model beside it whose guard it is by name (`guard_path`), when
    there is one; a guard saved under another name (fit-guard --out) names no model."""
    if guard.name.endswith(".ood.safetensors"):
        model = guard.with_name(guard.name.removesuffix(".ood.safetensors") + ".safetensors")
        if model.is_file():
            return f"pass the model it guards, {model}, which reads its guard by itself"
    return "pass the model it was fitted for"


def _meta_of(header: str | None, path: str | os.PathLike) -> ArtifactMeta:
    """The settings of model file `path` from its pneumoscan header (None: it has none); InputError when unusable."""
    if header is None:
        raise InputError(f"{path}: safetensors file without pneumoscan metadata; pass a model written by pneumoscan train")
    try:
        return ArtifactMeta.from_json(header)
    except NewerHeaderError as err:  # whatever version it names: every file so far says 0.1.0
        raise InputError(f"{path}: written by a newer pneumoscan than {__version__} ({err}); {NEWER_ADVICE}") from None
    except ValueError as err:
        size = _stored_size(header)
        if pixel_count_problem(size) == TOO_LARGE:  # not an edit: the version that wrote it took such sizes
            raise InputError(f"{path}: image_size {size}: {TOO_LARGE}; {TOO_LARGE_ADVICE}") from None
        other = _written_by_another(header)
        advice = ("as in an edited file; restore the model file or train the model again" if other is None else
                  f"written by pneumoscan {other}, this is {__version__}; load it with the version that wrote it")
        raise InputError(f"{path}: its stored settings are unusable ({err}), {advice}") from None


def _stored_size(header: str) -> Any:
    """The input size a model file's header stores, whatever it is; None when it cannot be read."""
    try:
        return json.loads(header).get("image_size")
    except (ValueError, AttributeError):  # not JSON, or not an object
        return None


def _written_by_another(header: str) -> str | None:
    """The pneumoscan version a model file's header says wrote it, when not this one; None when this one, or unsaid."""
    try:
        version = json.loads(header).get("version")
    except (ValueError, AttributeError):  # not JSON, or not an object
        return None
    return version if isinstance(version, str) and version != __version__ else None


def read_unchanged(path: Path, sha256: str) -> tuple[bytes, ArtifactMeta]:
    """Model file `path`'s bytes and settings, checked to be the file whose SHA-256 was `sha256` when a Predictor
    (the service's too) read it; ModelFileChanged naming the file when it changed since (a new `train` into its
    folder): weights loaded now would not be those its threshold, export and guard were checked against."""
    try:
        data = path.read_bytes()
    except OSError as err:
        if err.filename is None:  # a failed read (EIO) names no file, unlike a failed open
            err.filename = str(path)
        raise
    found = hashlib.sha256(data).hexdigest()
    if found != sha256:
        raise ModelFileChanged(f"{path}: changed since the service or Predictor loaded it (sha256 {sha256[:12]}... "
                               f"then, {found[:12]}... now: a new `train` into its folder does that), so its weights "
                               f"are not those predicting here; restart the service (in Python: make a new "
                               f"Predictor) to use the new file")
    size = int.from_bytes(data[:8], "little")  # safetensors: the JSON header's length, then the header
    header = json.loads(data[8 : 8 + size]).get("__metadata__") or {}
    return data, _meta_of(header.get(_META_KEY), path)


def load_artifact(path: str | os.PathLike | None, device: str | torch.device | None = None, *,
                  sha256: str | None = None) -> tuple[nn.Module, ArtifactMeta]:
    """Build the model described by an artifact and load its weights onto `device` (None: CUDA when present; on
    CUDA, asked for or not, convolutions in full float32 as `device_for` sets them); never unpickles anything. A
    PluginVersionWarning names both versions when a plugin's model comes from another version of its package than it
    was trained with and its weights still load. `sha256`: the file's as the caller read it before; the bytes loaded
    must be that file's (`read_unchanged`)."""
    from safetensors.torch import load, load_file

    from pneumoscan.inference.batch import device_for
    from pneumoscan.models.registry import create_model, require_registered, version_change

    path = resolve_model_path(path)
    if sha256 is None:
        meta, weights = read_meta(path), partial(load_file, str(path))
    else:
        data, meta = read_unchanged(path, sha256)
        weights = partial(load, data)
    edited = "as in an edited file; restore the model file or train the model again"
    require_registered(meta.model_sources, path)
    changed = version_change(meta.model_sources)
    if changed is not None:  # the weights may then not fit, or be built otherwise
        edited = f"as {changed[0]}; install {changed[1]} to load it"
    try:
        model = create_model(meta.model_name, **meta.model_config)
    except (UnknownModelError, ModelConfigError) as err:  # a model or option of a newer version (its plugin's)
        newer = changed is None and meta.model_name not in meta.model_sources  # a plugin as it was: an edit
        tail = f": written by a newer pneumoscan than {__version__}; {NEWER_ADVICE}" if newer else f", {edited}"
        raise InputError(f"{path}: {err}{tail}") from None
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError) as err:  # an option's value edited
        why = err.problem if isinstance(err, ModelOptionError) else f"{type(err).__name__}: {first_line(err)}"
        raise InputError(f"{path}: model {meta.model_name!r} cannot be built from its stored config ({why}), "
                         f"{edited}") from None
    built_for = getattr(model, "image_size", None)  # models made for one input size (the MLP, an ensemble)
    if isinstance(built_for, int) and built_for != meta.image_size:
        raise InputError(f"{path}: its stored input size {meta.image_size} px is not the {built_for} px its model "
                         f"{meta.model_name!r} is built for, {edited}")
    try:
        model.load_state_dict(weights())  # into the model as built, on the CPU; then moved once
    except RuntimeError as err:  # names, shapes or number of tensors other than the stored config builds
        raise InputError(f"{path}: its weights do not fit its stored config ({first_line(err)}), {edited}") from None
    if changed is not None:
        warn(PluginVersionWarning(f"{path}: {changed[0]}; its weights load, but its results may differ from the ones "
                                  f"it was validated with (pip install '{changed[1]}' for the version it was trained "
                                  f"with)"))
    return model.to(device_for(device)).eval(), meta  # device_for: a CUDA asked for by name computes in float32 too

