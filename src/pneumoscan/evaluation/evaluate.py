"""Evaluate a model artifact on a labelled split: metrics with intervals, per cause, predictions."""
from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscan import CLASS_NAMES
from pneumoscan.data.cache import ImageSet, load_image_set
from pneumoscan.data.decode import OTHER_VIEW, view_reason
from pneumoscan.data.fingerprint import duplicate_warnings, seen_in_training, training_film_fingerprints
from pneumoscan.data.labels import Sample, cause_name
from pneumoscan.data.layout import ScoredSplit, evaluation_samples
from pneumoscan.data.patients import (CAUSE_GROUPS, REPORTING_SPLITS, PatientKeys, cause_groups, cause_of,
                                      compared_keys, dataset_keys, found_as_keyed, keys_across_folders,
                                      name_collision_warning, patient_groups, patients_in_training, shared_clause,
                                      uncompared_text, unopened_headers)
from pneumoscan.errors import (InputError, MissingImagesWarning, check_at_least_one, check_seed, counted, first_few,
                              option, shell_word, warn, words)
from pneumoscan.evaluation.bootstrap import summarize
from pneumoscan.evaluation.metrics import UndefinedMetricWarning, accuracy, recall, specificity
from pneumoscan.inference.predictor import Predictor
from pneumoscan.outputs import atomic_write
from pneumoscan.training.config import data_record


class GuardWarning(UserWarning):
    """Images the model's out-of-distribution guard would refuse were scored in an evaluation."""


class InSampleWarning(UserWarning):
    """Images the model was trained or validated on were scored in an evaluation."""


class SharedPatientWarning(UserWarning):
    """Patients the model was trained on have films in an evaluation's split."""


class LabelConflictWarning(UserWarning):
    """Byte-identical images under both labels were scored in an evaluation."""


# what a film filed under both labels does to the figures (and to a threshold set-threshold chooses on them)
SCORED_BOTH = ("one of them is scored wrong whatever the model says, which lowers the figures here (and moves a "
               "threshold chosen on them)")


@dataclass
class Evaluation:
    """Scores of one model on one split, and the summary computed from them."""

    split: str
    images: ImageSet
    probs: np.ndarray
    summary: dict[str, Any]
    patients: list[str | None] | None = None  # each film's patient key (`film_patients`), what the bootstrap resampled
    splits: dict[str, list[Sample]] | None = None  # every split of the scored data set, its patients keyed over


def write_predictions(path: str | os.PathLike, samples: list[Sample], probs: np.ndarray) -> None:
    """Per-image `path,label,prob,cause` CSV, written atomically (read back by `pneumoscan report`)."""
    atomic_write(path, predictions_writer(samples, probs))


def predictions_writer(samples: list[Sample], probs: np.ndarray) -> Callable[[Path], None]:
    """What writes the `write_predictions` CSV to a file (for `atomic_write_all`, beside other outputs).

    Probabilities are written in full (shortest exact repr): a stored threshold is one of them, and
    rounding could put that case on the wrong side of it when the file is scored again. `cause` is each PNEUMONIA
    film's cause as recall by cause counts it (`cause_of`: a manifest's, else the file name's), empty when not
    known, so the file keeps a manifest's causes for `report`."""
    def write(tmp: Path) -> None:
        # file names that are not UTF-8 (an old zip, a Windows share) keep their bytes, and read back the same
        with tmp.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label", "prob", "cause"])
            writer.writerows((str(s.path), s.label, repr(float(p)), cause_of(s) or "") for s, p in zip(samples, probs))

    return write


def read_prediction_samples(path: str | os.PathLike, bases: Sequence[Path] = ()) -> tuple[list[Sample], np.ndarray]:
    """The films (path, label and cause) and probabilities of a `write_predictions` CSV; InputError naming the line
    when a row is malformed. Relative paths missing from the working folder are looked up under each of `bases`. A
    file without the `cause` column (written before it existed) leaves the causes to the file names."""
    path = Path(path)
    samples: list[Sample] = []
    probs: list[float] = []
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"path", "label", "prob"} <= set(reader.fieldnames):
            raise InputError(f"{path}: expected the columns path,label,prob; restore the file written by pneumoscan train")
        for line_no, row in enumerate(reader, start=2):
            try:
                label, prob = int(row["label"]), float(row["prob"])
            except (TypeError, ValueError):
                raise InputError(f"{path}:{line_no}: label or prob is not a number; restore the file") from None
            if label not in (0, 1) or not 0.0 <= prob <= 1.0:
                raise InputError(f"{path}:{line_no}: label must be 0/1 and prob within [0, 1]; restore the file")
            written = (row.get("cause") or "").strip()
            film_cause = cause_name(written)
            if written and (film_cause is None or label != 1):
                raise InputError(f"{path}:{line_no}: cause {written!r} must be bacteria or virus on a PNEUMONIA row "
                                 f"(label 1), or empty; restore the file")
            file = Path(row["path"])
            if not file.is_absolute() and not file.exists():
                file = next((base / file for base in bases if (base / file).exists()), file)
            samples.append(Sample(file, label, cause=film_cause))
            probs.append(prob)
    return samples, np.asarray(probs, dtype=np.float64)


def read_predictions(path: str | os.PathLike, bases: Sequence[Path] = ()) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Paths, labels and probabilities of a `write_predictions` CSV (`read_prediction_samples`)."""
    samples, probs = read_prediction_samples(path, bases)
    return [s.path for s in samples], np.asarray([s.label for s in samples], dtype=np.int64), probs


def recall_by_cause(samples: Sequence[Sample], probs: np.ndarray, threshold: float) -> dict[str, dict[str, float]]:
    """`cause_recall` of evaluated films: each sample's `cause_of` (a manifest's, else the file name's) and
    whether its P reaches `threshold`."""
    return cause_recall([cause_of(s) for s in samples], np.asarray([s.label for s in samples]),
                        np.asarray(probs) >= threshold)


def cause_recall(causes: Sequence[str | None], labels: np.ndarray, called: np.ndarray) -> dict[str, dict[str, float]]:
    """Recall among the PNEUMONIA films (label 1) of each cause (`causes`: each film's `cause_of`, None for NORMAL
    or unknown) and among those of unknown cause, as `{cause: {"n", "recall"}}` in `CAUSE_GROUPS` order, `called`
    saying which films were called PNEUMONIA; empty when no film's cause is known (`cause_groups`). The report's
    recall by cause (`report.subgroups.by_cause`) is this too."""
    positive = np.asarray(labels) == 1
    groups = cause_groups([c for c, pos in zip(causes, positive) if pos])
    if groups is None:
        return {}
    hits = np.asarray(called, dtype=bool)[positive]
    out: dict[str, dict[str, float]] = {}
    for name in CAUSE_GROUPS:
        mask = np.array([g == name for g in groups])
        if mask.any():
            out[name] = {"n": int(mask.sum()), "recall": float(hits[mask].mean())}
    return out


def borderline_summary(predictor: Predictor, labels: np.ndarray, probs: np.ndarray) -> dict[str, Any] | None:
    """What referring the borderline films (P within `Predictor.threshold_ci95`, ends included) to a radiologist
    gives: how many films are inside the interval, overall and by class, and accuracy, recall and specificity of
    the decisions on the films outside it (NaN, with the metrics' warning, where undefined), and what the interval's
    bootstrap drew (`Predictor.threshold_resampled`). None when the
    threshold has no interval (given by hand, or not what the model's stored scores give)."""
    interval = predictor.threshold_ci95
    if interval is None:
        return None
    inside = np.array([bool(predictor.borderline(float(p))) for p in probs], dtype=bool)
    by_class = {}
    for label, name in enumerate(CLASS_NAMES):
        of_class = labels == label
        count = int((inside & of_class).sum())
        by_class[name] = {"n": count, "share": count / int(of_class.sum())}
    outside = ~inside
    kept, decided = labels[outside], (probs[outside] >= predictor.threshold).astype(int)
    return {"interval": list(interval), "n": int(inside.sum()), "share": float(inside.mean()), "by_class": by_class,
            "outside": {"n": int(outside.sum()), **_outside_metrics(kept, decided)},
            "resampled": predictor.threshold_resampled}


# each metric on the films outside the interval: its function, the class it needs there (None: any film), and what
# is missing when none is
_OUTSIDE_METRICS = (("accuracy", accuracy, None, "no film"), ("recall", recall, 1, "no PNEUMONIA film"),
                    ("specificity", specificity, 0, "no NORMAL film"))


def _outside_metrics(labels: np.ndarray, decided: np.ndarray) -> dict[str, float]:
    """Accuracy, recall and specificity of the decisions on the films outside the borderline interval; NaN where
    no film (or none of the class the metric needs) lies outside it, with one warning that says so: the metrics'
    own ('no negative cases in y_true') read as if the evaluated set had no NORMAL film."""
    values: dict[str, float] = {}
    missing: list[tuple[str, str]] = []
    for name, metric, needs, lacking in _OUTSIDE_METRICS:
        if labels.size and (needs is None or bool((labels == needs).any())):
            values[name] = metric(labels, decided)
        else:
            values[name] = float("nan")
            missing.append((name, lacking))
    if missing:
        names = [name for name, _ in missing]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        warn(f"{listed} of the films outside the borderline interval {'is' if len(names) == 1 else 'are'} "
             f"undefined: {missing[0][1]} lies outside it; returning nan.", UndefinedMetricWarning)
    return values


def check_bootstrap(n_boot: int, seed: int) -> None:
    """InputError naming --n-boot or --seed when the bootstrap cannot run with them; checked before any scoring."""
    check_at_least_one(n_boot, "n_boot")
    check_seed(seed)  # numpy's generator would refuse it after all the scoring


def evaluate(
    predictor: Predictor, data: str | os.PathLike, split: str | None = None, *, n_boot: int = 1000, seed: int = 0,
    cache_dir: str | os.PathLike | None = None, progress: bool = True, checked_unseen: bool = False,
    decoded: ImageSet | None = None, found: ScoredSplit | None = None,
) -> Evaluation:
    """Predict every image of the split (cached decode) and summarise at the predictor's threshold; `progress`: the
    decoding and scoring bars (on a terminal); `checked_unseen`: the caller has refused these films already if any
    was one the model trained or validated on (set-threshold), so they are not fingerprinted again (their patients
    are still counted: `Evaluation.patients_in_training` is `data.patients.patients_in_training`'s count);
    `decoded`: the split's films as the caller decoded them at the model's size (set-threshold's check), scored
    without a second decode (with the image cache off there is nothing to read them back from); `found`: the
    split's name and films (a `ScoredSplit`) as the caller's `evaluation_samples(data, split)` found them, so the
    data folder is not scanned again."""
    # test/'s files, unless scored, opened only when the keys of the other films may need their headers
    found = found if found is not None else found_as_keyed(lambda unopened: evaluation_samples(data, split, unopened),
                                                           key_choice(predictor.meta.training))
    split_name, samples = found
    fingerprinted = not checked_unseen and len(training_film_fingerprints(predictor.meta.training)) > 0
    images = decoded if decoded is not None else load_image_set(samples, predictor.size, cache_dir,
                                                                desc=f"decoding {split_name}", progress=progress,
                                                                film_marks=fingerprinted)
    missing = images.absent_classes
    if missing:  # recall, specificity and the AUCs need both classes
        unreadable = f" ({len(images.skipped)} unreadable: `pneumoscan audit` lists them)" if images.skipped else ""
        where = "" if split_name == "all" else f" in {split_name}/"
        raise InputError(f"{data}: no readable {' or '.join(missing)} images{where}{unreadable}; "
                         f"evaluation needs both NORMAL and PNEUMONIA images")
    colours, tones, dithers, peaks = (None if v is None else [float(x) for x in v]
                                      for v in (images.colours, images.tones, images.dithers, images.peaks))
    levels = None if images.levels is None else [int(v) for v in images.levels]
    probs, verdicts = predictor.screen(np.asarray(images.images), colours, levels, tones, dithers, peaks,
                                       progress=progress)
    refused, lateral = refused_films(images, verdicts, guarded=predictor.guard is not None)
    if refused:
        warn(GuardWarning(_refused_message(len(refused), lateral, len(images.samples), refused)))
    seen = [] if checked_unseen else seen_in_training([s.path for s in images.samples], predictor.meta.training,
                                                      images.images, cache_dir, images.film_marks)
    if seen:
        warn(InSampleWarning(
            f"{len(seen)} of {len(images.samples)} images are films this model was trained or validated on (copies, "
            f"or the same film re-encoded or resized; e.g. {seen[0]}), so the figures on them are in-sample and "
            f"flatter the model; evaluate on "
            f"films it has not seen ({listed_under()} seen_in_training)"))
    shared, keyed = patients_in_training(images.samples, predictor.meta.training, progress, predictor.path.parent)
    if shared and shared["patients"]:
        trained_on = predictor.meta.placed_data(predictor.path.parent).folder
        warn(SharedPatientWarning(_shared_message(shared, len(images.samples), split_name, data, trained_on)))
    for message in duplicate_warnings({split_name: images.samples}, str(data), SCORED_BOTH):
        warn(LabelConflictWarning(message))
    patients = film_patients(images.samples, predictor.meta.training, progress, keyed, found.splits)
    summary = summarize(images.labels, probs, predictor.threshold, n_boot=n_boot, seed=seed, groups=patients)
    summary.update(split=split_name, data=str(data), model=str(predictor.path), skipped=images.skipped,
                   refused_by_guard=refused, seen_in_training=[str(p) for p in seen], patients_in_training=shared,
                   operating_point=predictor.operating_point(),
                   recall_by_cause=recall_by_cause(images.samples, probs, predictor.threshold),
                   borderline=borderline_summary(predictor, images.labels, probs))
    return Evaluation(split_name, images, probs, summary, patients, found.splits)


class PatientKeyWarning(UserWarning):
    """Patient keys read from file names join films in different folders of an evaluation's split."""


# what evaluate does with file-name keys joining folders (`name_collision_warning`)
DRAWN_ALONE = ("the bootstrap takes their films for no known patient's and draws each alone",) * 2


def key_by_manifest() -> str:
    """What evaluate advises instead (it keys patients as the model's training did: a manifest's patient column is
    what `auto` reads first), in the command line's or the Python API's words."""
    return (f"if each folder holds one patient's films, list them in a CSV manifest with a patient column (read when "
            f"the model was trained with {option('patient_key', 'auto')}, the default)")


def key_choice(training: dict) -> str:
    """The --patient-key the model's training used (`training`: its record), which `evaluate` keys the films it
    scores by: `auto` when it records none (the shipped model: a hospital's manifest patients and DICOM IDs group its
    films; its own training films are listed as it keyed them, by name: `trained_patient_key`)."""
    return data_record(training)[0].get("patient_key") or "auto"


def film_patients(samples: Sequence[Sample], training: dict, progress: bool = True,
                  keyed: PatientKeys | None = None,
                  dataset: dict[str, list[Sample]] | None = None) -> list[str | None] | None:
    """Each film's patient key, by the --patient-key the model's training used (`auto` when it records none; a film
    with no patient folder under `folder` is keyed by its file name), for the bootstrap to resample patients; None
    when they cannot be read. The films are keyed as `audit` keys their data set (`dataset`: its splits, holding
    `samples`, as `ScoredSplit.splits` holds them; None: `samples` alone), so a placeholder PatientID is judged on that
    data only, never on the training data's, and compared as `audit` compares them (`compared_keys`: a test/ DICOM
    film named .jpg, keyed by name unopened by `train`, by its PatientID, when scored; test/'s films are set aside
    when another split is scored, `dataset_keys`: their headers unread unless they may change a key). `keyed`: keys
    already compared
    (`patients_in_training`'s), taken on when they follow that choice and were read over that very data set (the
    training data's own splits), else their DICOM headers are (`PatientKeys.headers`: none is read twice). A film
    whose key is a bare file name found in other folders too (`pt1/1.jpeg`, `pt2/1.jpeg`; `keys_across_folders`) is
    of no known patient (None, drawn alone), with `train`'s warning; Kermany's names are a patient wherever they sit."""
    import warnings

    choice = key_choice(training)
    dataset = dataset if dataset is not None else {"scored": list(samples)}
    if keyed is not None and keyed.choice == choice and _same_films(keyed.keys, dataset):
        keys = keyed
    else:
        with warnings.catch_warnings():  # a placeholder PatientID is `audit`'s and `train`'s to report
            warnings.simplefilter("ignore")
            # the films of test/ are compared only when scored: those of another split scored are set aside
            scored = set(samples)
            aside = [s for split in REPORTING_SPLITS for s in dataset.get(split, []) if s not in scored]
            try:
                keys = compared_keys(dataset_keys(dataset, choice, progress=progress,
                                                  known=keyed.headers if keyed is not None else None, aside=aside),
                                     [s for s in unopened_headers(dataset) if s in scored])
            except InputError:
                return None
    joined = keys_across_folders(samples, keys, bare=True)
    if message := name_collision_warning(samples, keys, DRAWN_ALONE, key_by_manifest(), joined):
        warn(PatientKeyWarning(message))
    return patient_groups(samples, keys, joined)


def _same_films(keyed: dict[Sample, str], dataset: dict[str, list[Sample]]) -> bool:
    """Whether keys read over the films `keyed` were read over the films of `dataset`'s splits, wherever found."""
    return {Path(s.path).resolve() for s in keyed} == {Path(s.path).resolve() for films in dataset.values()
                                                         for s in films}


def refused_films(images: ImageSet, verdicts: Sequence[Any], guarded: bool) -> tuple[list[str], int]:
    """The films `predict` would refuse, as 'path: why' (`refused_by_guard`), and how many of them for their
    DICOM view: with a guard, a DICOM of a view other than plain frontal (`not_frontal_view`, as the image cache
    kept it) is refused for it whatever the guard's `verdicts` say (`Predictor.results`' rule), else a film its
    verdict refuses."""
    views = images.views if guarded and images.views is not None else [None] * len(images.samples)
    refused: list[str] = []
    for sample, verdict, view in zip(images.samples, verdicts, views):
        if view is not None:
            refused.append(f"{sample.path}: {view_reason(view)}")
        elif verdict is not None and not verdict.in_distribution:
            refused.append(f"{sample.path}: {verdict.message}")
    return refused, sum(view is not None for view in views)


def _refused_message(n_refused: int, lateral: int, n: int, refused: list[str]) -> str:
    """The GuardWarning of an evaluation: how many films `predict` would refuse and why, that they are scored all
    the same, where they are all listed and the first few."""
    why = [f"{n_refused - lateral} look unlike chest X-rays to its guard"] if n_refused > lateral else []
    if lateral:
        why.append(f"{lateral} {'is a DICOM film' if lateral == 1 else 'are DICOM films'} {OTHER_VIEW} by the "
                   f"header")
    return (f"{n_refused} of {n} images are ones the model refuses at predict time ({'; '.join(why)}); they are "
            f"scored here anyway ({listed_under()} refused_by_guard): {first_few(refused)}")


def _shared_message(shared: dict[str, Any], n: int, split: str, data: str | os.PathLike,
                    trained_on: Path | None) -> str:
    """The warning about patients of the evaluated split who are also in the model's training data (`trained_on`,
    where it was found), with how to see them: `audit` of the data when both are its splits, else of one manifest
    listing both."""
    one = shared["patients"] == 1
    them = "that patient" if one else "them"
    if trained_on is not None and trained_on.resolve() == Path(data).resolve():
        see = f"`pneumoscan audit {shell_word(data)}` lists {them}"
    else:
        see = (f"to see {them}, list both in one CSV manifest with a split column and run `pneumoscan audit` on it "
               f"(trained on {trained_on})")
    same = ("so the figures on that patient's films are not those of a new patient" if shared["patients"] == 1
            else "so the figures on them are not those of new patients")
    # when only some films could be compared, more may be shared: as the summary line says it
    return f"{shared_clause(shared, n, f'the {split} split', its=True)}, {same}; {see}{uncompared_text(shared, n)}"


def listed_under() -> str:
    """Where a warning's films are listed in full: `evaluate --json`, or the dict the Python API's evaluate returns."""
    return words("`evaluate --json` lists them under", "the dict evaluate returns lists them under")


def evaluate_and_warn(
    predictor: Predictor, data: str | os.PathLike, split: str | None = None, *, n_boot: int = 1000, seed: int = 0,
    cache_dir: str | os.PathLike | None = None, progress: bool = True,
) -> Evaluation:
    """`evaluate`, saying as Python warnings what the `evaluate` command prints beside its figures (for the Python
    API and `report`): that these are the films the stored threshold was chosen on, and the unreadable films left
    out (their count and the first few; the Evaluation lists them all)."""
    from pneumoscan.evaluation.local_threshold import warn_if_threshold_chosen_here

    result = evaluate(predictor, data, split, n_boot=n_boot, seed=seed, cache_dir=cache_dir, progress=progress)
    if predictor.stored_threshold:
        warn_if_threshold_chosen_here(predictor.meta, data, result.split)
    skipped = result.images.skipped
    if skipped:
        warn(MissingImagesWarning(f"{counted(len(skipped), 'unreadable image')} left out: {first_few(skipped)}"))
    return result
