"""The labels and probabilities a report is computed from: a fresh evaluation or the run's validation predictions."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pneumoscan.errors import InputError, MissingImagesWarning, in_python, option, shell_word, warn, words
from pneumoscan.report.run import RunInfo
from pneumoscan.training.config import run_folders

if TYPE_CHECKING:
    from pneumoscan.data.labels import Sample
    from pneumoscan.inference.predictor import Predictor

VAL_PREDICTIONS = "val_predictions.csv"


@dataclass
class Scores:
    """Per-image labels and P(pneumonia) at one operating threshold, with the evaluation summary."""

    source: str
    split: str
    paths: list[Path]
    labels: np.ndarray
    probs: np.ndarray
    threshold: float
    summary: dict[str, Any]
    causes: list[str | None]  # each film's cause of pneumonia (`cause_of`), None when not known or NORMAL
    images: np.ndarray | None = None  # model inputs (N, S, S) aligned with paths, when images were decoded
    skipped: list[str] = field(default_factory=list)
    patients: int | None = None  # patients among the images, keyed as the run's split keyed them; None: not counted
    guarded: bool = False  # the images went through the model's out-of-distribution guard (--data, a guard fitted)
    no_guard_fits: str | None = None  # unguarded: why none can be fitted to the model (`no_guard_fits`), else None
    own_validation: bool = False  # the run's own validation predictions, on which training chose its epoch
    threshold_films: bool = False  # a set-threshold copy's films its stored threshold was chosen on
    groups: list[str | None] | None = None  # each film's patient key as the bootstrap resampled them; None: not known

    @property
    def films(self) -> str:
        """Which films these are, for figure titles (a PNG in the figures folder is read without the page)."""
        which = "validation" if self.own_validation else "all" if self.split == "all" else f"{self.split} split"
        return f"{which} films (n={self.summary.get('n', len(self.labels))})"

    @property
    def preds(self) -> np.ndarray:
        return (self.probs >= self.threshold).astype(np.int64)


def count_patients(run: RunInfo, samples: list["Sample"], progress: bool = True,
                   dataset: dict[str, list["Sample"]] | None = None) -> int | None:
    """How many patients `samples` hold, by the --patient-key the run's split used (split.json; `name` before the
    option existed), keyed over `dataset` (every split of their data set, holding `samples`, as `train` and `audit`
    key it; None: `samples` alone); None when that key cannot be read from these images (`folder` without patient
    folders). `progress`: the bar of reading their DICOM PatientIDs."""
    from pneumoscan.data.patients import dataset_keys

    try:
        keys = dataset_keys(dataset or {"scored": samples}, run.split.get("patient_key", "name"), samples,
                            progress=progress)
    except InputError:
        return None
    return len({keys(s) for s in samples})


def read_val_predictions(run: RunInfo) -> tuple[list["Sample"], np.ndarray]:
    """The films (path, label, cause) and probabilities of RUN_DIR/val_predictions.csv."""
    from pneumoscan.evaluation.evaluate import read_prediction_samples

    path = run.path / VAL_PREDICTIONS
    if not path.is_file():
        raise InputError(_site_copy_message(run) or
                         f"{path}: missing; {_pass_data()} to evaluate the run on a labelled split instead")
    samples, probs = read_prediction_samples(path, bases=run_folders(run.path))
    if not samples:
        raise InputError(f"{path}: lists no predictions; {_pass_data()} to evaluate the run instead")
    return samples, probs


def _site_copy_message(run: RunInfo, gone: str = "") -> str | None:
    """What to pass for a model folder written by `set-threshold` (it has no val_predictions.csv: it keeps the scores
    and labels of the site's films its threshold was chosen on, but not which files they were, which the case
    images, feature maps and size groups need): films it has not seen, or the --data of those films, unless they
    are `gone` from where it records them (why, as 'DATA, where they were, is not found'); None for any other
    folder."""
    from pneumoscan.evaluation.local_threshold import chosen_on_place

    source = run.meta.threshold_source
    if not source.get("data"):
        return None
    n = source["n_normal"] + source["n_pneumonia"]
    said = (f"{run.path}: a model written by set-threshold, which keeps the scores of the {n} films its threshold was "
            f"chosen on but not their files, and it has no {VAL_PREDICTIONS}")
    if gone:
        return f"{said}; {gone}; {_pass_data()} with labelled films it has not seen"
    split = None if source["split"] == "all" else source["split"]
    place = chosen_on_place(source)
    data = _data_options(place if place is not None else source["data"], split) + (
        "" if place is not None else " (as given to set-threshold, relative to the folder it ran in)")
    return (f"{said}; {_pass_data()} with labelled films it has not seen, or {data} for the films its threshold was "
            f"chosen on (in-sample)")


def _pass_data() -> str:
    """'pass --data DIR' on the command line, 'pass `data`' in the Python API."""
    return words("pass --data DIR", "pass `data`")


def _data_options(data: str | os.PathLike, split: str | None) -> str:
    """'--data DATA --split SPLIT' on the command line, "data='DATA', split='SPLIT'" in the Python API (no split:
    none)."""
    if in_python():
        return f"data={os.fspath(data)!r}" + (f", split={split!r}" if split else "")
    return f"--data {shell_word(data)}" + (f" --split {shell_word(split)}" if split else "")


def threshold_film_scores(run: RunInfo, *, n_boot: int = 1000, seed: int = 0,
                          cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Scores:
    """A set-threshold copy's films its threshold was chosen on, scored where it records them (`chosen_on_place`)
    as `data_scores` scores --data, when they are still those films: the same labels and P(pneumonia) as the copy
    stores; else an InputError saying what to pass (`_site_copy_message`)."""
    import warnings

    from pneumoscan.evaluation.local_threshold import chosen_on_place

    source = run.meta.threshold_source
    place = chosen_on_place(source)
    if place is None:  # an older copy: its --data as typed, relative to a folder it does not record
        raise InputError(_site_copy_message(run))
    films = place if source["split"] == "all" else f"the {source['split']}/ split of {place}"
    if not place.exists():
        raise InputError(_site_copy_message(run, f"{place}, where they were, is not found"))
    with warnings.catch_warnings(record=True) as caught:  # said only when these are the films
        warnings.simplefilter("always")
        try:
            scores = data_scores(run, place, source["split"], n_boot=n_boot, seed=seed, cache_dir=cache_dir,
                                 progress=progress)
        except InputError as err:
            raise InputError(_site_copy_message(run, f"{films}, where they were, no longer holds them ({err})")
                             ) from None
    if not _same_scores(scores.labels, scores.probs, run.meta.val_scores):
        then = source["n_normal"] + source["n_pneumonia"]
        now = f"{len(scores.labels)} now, {then} then" if len(scores.labels) != then else "as many, scored otherwise"
        raise InputError(_site_copy_message(run, f"{films}, where they were, holds other films now ({now})"))
    for caught_warning in caught:
        warnings.warn_explicit(caught_warning.message, caught_warning.category, caught_warning.filename,
                               caught_warning.lineno)
    scores.source = f"the films set-threshold chose the threshold on ({scores.source})"
    scores.threshold_films = True
    return scores


def _same_scores(labels: np.ndarray, probs: np.ndarray, val_scores: dict[str, Any]) -> bool:
    """Whether `labels` and `probs` are, film by film, the labels and, to 1e-4 (the ONNX and PyTorch backends differ
    by less), the probabilities a model stores (`ArtifactMeta.val_scores`)."""
    try:
        stored_labels = np.asarray(val_scores.get("labels"), dtype=np.int64)
        stored = np.asarray(val_scores.get("probs"), dtype=np.float64)
    except (TypeError, ValueError):  # scores edited out of shape
        return False
    return (stored_labels.shape == labels.shape == stored.shape and np.array_equal(stored_labels, labels)
            and bool(np.allclose(stored, probs, rtol=0.0, atol=1e-4)))


def _stored_patients(run: RunInfo, labels: np.ndarray, probs: np.ndarray) -> list[str | None] | None:
    """Each validation film's patient as the model stores them with its scores (`ArtifactMeta.score_groups`: keyed
    as its training keyed them, by a manifest's patient column too, which val_predictions.csv does not keep), when
    the CSV's `labels` and `probs` are those very films; None when it stores none or they are other films."""
    groups = run.meta.score_groups()
    return groups if groups is not None and _same_scores(labels, probs, run.meta.val_scores) else None


def validation_scores(run: RunInfo, *, n_boot: int = 1000, seed: int = 0, progress: bool = True) -> Scores:
    """Scores of the run's own validation split (no model needed), at the stored threshold, their intervals drawn by
    patient as the model's `val_metrics` were (`_stored_patients`), else as `evaluate` reads them from the files
    (`film_patients`); `progress`: the bar of reading their patients."""
    from pneumoscan.data.patients import cause_of, in_training_data
    from pneumoscan.evaluation.bootstrap import summarize
    from pneumoscan.evaluation.evaluate import film_patients

    samples, probs = read_val_predictions(run)
    paths, labels = [s.path for s in samples], np.asarray([s.label for s in samples], dtype=np.int64)
    missing = [p for p in paths if not p.exists()]
    if missing:  # scored all the same (the CSV holds the scores); only the pictures of cases need the files
        warn(MissingImagesWarning(
            f"{len(missing)} of {len(paths)} validation images in {run.path / VAL_PREDICTIONS} are not found from "
            f"here (e.g. {missing[0]}), so the report shows no case images or feature maps of them; run it from the "
            f"folder the run was trained in, or {_pass_data()}"))
    threshold = float(run.meta.threshold)
    # a patient's several films are not independent: resampled one by one, they gave intervals much too narrow
    stored = _stored_patients(run, labels, probs)
    counted = stored is not None and None not in stored  # the stored groups count a manifest's patients too
    # else they are read from the files, keyed over the training data's every split as `train` keyed them
    films, dataset = (None, None) if counted else in_training_data(samples, run.meta.training, run.path) or (None, None)
    groups = stored if stored is not None else film_patients(films or samples, run.meta.training, progress,
                                                             dataset=dataset)
    summary = summarize(labels, probs, threshold, n_boot=n_boot, seed=seed, groups=groups)
    patients = len(set(stored)) if counted else count_patients(run, films or samples, progress, dataset)
    return Scores(f"validation predictions of the run ({VAL_PREDICTIONS})", "val", paths, labels, probs, threshold,
                  summary, [cause_of(s) for s in samples], patients=patients, own_validation=True,
                  groups=list(groups) if groups is not None else None)


def data_scores(run: RunInfo, data: str | os.PathLike, split: str | None, *, n_boot: int = 1000, seed: int = 0,
                cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Scores:
    """Evaluate the run's model on a split of `data` at the stored threshold (`progress`: its bars)."""
    from pneumoscan.data.patients import cause_of
    from pneumoscan.evaluation.evaluate import evaluate_and_warn
    from pneumoscan.inference.predictor import Predictor

    # the backend `evaluate` uses by default, so a film scored at the very threshold is called alike by both
    predictor = Predictor(run.artifact, backend="auto")
    result = evaluate_and_warn(predictor, data, split, n_boot=n_boot, seed=seed, cache_dir=cache_dir,
                               progress=progress)
    where = f"all images of {data} (no split folders)" if result.split == "all" else f"{result.split} split of {data}"
    return Scores(where, result.split, [s.path for s in result.images.samples],
                  result.images.labels.astype(np.int64), np.asarray(result.probs, dtype=np.float64),
                  float(predictor.threshold), result.summary, [cause_of(s) for s in result.images.samples],
                  np.asarray(result.images.images),
                  list(result.images.skipped), count_patients(run, result.images.samples, progress,
                                                                 result.splits),
                  guarded=predictor.guard is not None,
                  no_guard_fits=None if predictor.guard is not None else predictor.no_guard_fits(),
                  groups=result.patients)


def _check_threshold_films_split(run: RunInfo, split: str | None) -> None:
    """InputError when --split asks a set-threshold copy, without --data, for other films than those its threshold
    was chosen on (the report's films then): it keeps no validation predictions."""
    chosen = run.meta.threshold_source.get("split")
    if split is None or split == chosen:
        return
    raise InputError(f"--split {split}: {run.path} is a set-threshold copy without validation predictions; without "
                     f"--data its report is of the films its threshold was chosen on (split {chosen}), so leave out "
                     f"--split, or pass --data DIR --split {split} to score that split")


def run_scores(run: RunInfo, data: str | os.PathLike | None, split: str | None, *, n_boot: int = 1000, seed: int = 0,
               cache_dir: str | os.PathLike | None = None, progress: bool = True,
               threshold_films: bool = False) -> Scores:
    """Evaluation scores when `data` is given (decoded through the cache in `cache_dir`, `progress` the bars), else
    the validation predictions, or with `threshold_films` for a set-threshold copy the films its threshold was chosen
    on (`threshold_film_scores`); their intervals from `n_boot` resamples drawn with `seed`."""
    if data is None:
        if threshold_films and run.meta.threshold_source.get("data") and not (run.path / VAL_PREDICTIONS).is_file():
            _check_threshold_films_split(run, split)
            return threshold_film_scores(run, n_boot=n_boot, seed=seed, cache_dir=cache_dir, progress=progress)
        if split not in (None, "val"):
            raise InputError(f"{option('split', split)}: needs {words('--data DIR', '`data`')}; without "
                             f"{option('data')} the run's validation predictions are used")
        return validation_scores(run, n_boot=n_boot, seed=seed, progress=progress)
    return data_scores(run, data, split, n_boot=n_boot, seed=seed, cache_dir=cache_dir, progress=progress)
