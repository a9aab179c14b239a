"""A run's data: its films found, split by patient (or a given val/), decoded through the image cache, and what to
warn about them before training."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from pneumoscan import CLASS_NAMES
from pneumoscan.data.cache import ImageSet, load_image_set
from pneumoscan.data.fingerprint import TAUGHT_BOTH, duplicate_warnings
from pneumoscan.data.formats import UNREAD_RULE, set_aside_unread
from pneumoscan.data.labels import Sample
from pneumoscan.data.layout import discover
from pneumoscan.data.patients import (REPORTING_SPLITS, PatientKeys, dataset_keys, describe, listed_unopened,
                                      name_collision_warning)
from pneumoscan.data.split import patient_split
from pneumoscan.errors import DecodeOutOfMemory, InputError, counted, first_few, option, switch
from pneumoscan.training.config import TrainConfig


@dataclass
class RunData:
    """The images a run trains and validates on."""

    train: ImageSet
    val: ImageSet
    split_record: dict[str, Any]
    patients: PatientKeys


def decoded_film_marks(data: RunData) -> list[str | None] | None:
    """The film fingerprints the decode of train and validation gave (`ImageSet.film_marks`), as far as it gave
    them: None when neither set was decoded here (read from the image cache)."""
    if data.train.film_marks is None and data.val.film_marks is None:
        return None
    return [*(data.train.film_marks or [None] * len(data.train.samples)),
            *(data.val.film_marks or [None] * len(data.val.samples))]


def _cap_per_class(samples: list[Sample], cap: int | None, seed: int) -> list[Sample]:
    if cap is None:
        return samples
    rng = np.random.default_rng(seed)
    kept: list[Sample] = []
    for label in (0, 1):
        group = [s for s in samples if s.label == label]
        kept += [group[i] for i in sorted(rng.permutation(len(group))[:cap])]
    return kept


def _patients_by_class(samples: list[Sample], keys: PatientKeys) -> list[dict[str, Sample]]:
    """The patient keys of each class's images, in CLASS_NAMES order, each with its first image."""
    return [{keys(s): s for s in reversed(samples) if s.label == label} for label in range(len(CLASS_NAMES))]


def _one_class_message(cfg: TrainConfig, name: str, train: list[Sample], val: list[Sample], found: list[Sample],
                       command: str, keys: PatientKeys) -> str:
    """A split lacking a class: `discover` found both in every folder, so the patient carve took one away. When
    a class has images of one patient only, who cannot be on both sides, says so instead of a --val-fraction that
    cannot help; `found` are the images before --max-images, `command` the one running (only `train` has
    --use-given-val)."""
    def counts(part: list[Sample]) -> str:
        return ", ".join(f"{sum(s.label == label for s in part)} {cls}" for label, cls in enumerate(CLASS_NAMES))

    cap = f" ({option('max_images', cfg.max_images)} per class)" if cfg.max_images is not None else ""
    start = (f"{cfg.data}: carving {cfg.val_fraction:.0%} of patients for validation left the {name} split with one "
             f"class (training: {counts(train)}; validation: {counts(val)}){cap}; ")
    by_class = _patients_by_class(train + val, keys)
    # first: one film per patient folder, all named 1.jpeg, makes each class one 'patient' `1`, of both classes
    if both := _in_both_classes(train + val, keys, by_class):
        return start + both
    single = [(cls, keys.shown(next(iter(ids.values())))) for cls, ids in zip(CLASS_NAMES, by_class) if len(ids) == 1]
    if not single:
        return (start + f"each class needs images of at least two patients: add images, or change "
                         f"{option('val_fraction')}" + (f" or {option('max_images')}" if cap else ""))
    who = " and ".join(f"all {cls} images are of one patient ({pid})" for cls, pid in single)
    fixes = ([f"raise {option('max_images')}"] if cap and min(map(len, _patients_by_class(found, keys))) > 1 else [])
    fixes.append(f"add films of more patients ({describe(cfg.patient_key)}: {option('patient_key', cfg.patient_key)})")
    if command == "train":
        fixes.append("validate on films of your own: a val/ folder beside train/ (in a CSV, rows with split 'val') "
                     f"and {switch('use_given_val')}")
    return start + f"{who}, and a patient is never split, so no {option('val_fraction')} can help: " + ", or ".join(fixes)


def _unreadable_class_message(cfg: TrainConfig, samples: list[Sample], keys: PatientKeys) -> str | None:
    """When the carve left a split with one class (decoding comes after it) because a class has images of one patient
    only, none of which can be read: that, as the decode would have said it, rather than advice on splitting films
    that cannot be trained on; None otherwise. Decodes only such a patient's images, up to the first readable one."""
    for (label, cls), ids in zip(enumerate(CLASS_NAMES), _patients_by_class(samples, keys)):
        errors = _unreadable(s for s in samples if s.label == label) if len(ids) == 1 else None
        if errors:
            what = errors[0] if len(errors) == 1 else f"{counted(len(errors), 'unreadable file')}, e.g. {first_few(errors)}"
            return (f"{cfg.data}: no {cls} image can be read (all are of one patient, "
                    f"{keys.shown(next(iter(ids.values())))}): {what}; replace {'it' if len(errors) == 1 else 'them'} with "
                    f"readable films, of at least two patients (a patient is never split between training and validation)")
    return None


def _unreadable(films: Iterable[Sample], size: int = 32) -> list[str] | None:
    """The decode errors of `films` (each naming its file) when none can be read; None at the first that can. The
    machine running out of memory (DecodeOutOfMemory) is no fault of the file: it stops the run, as decoding does."""
    from pneumoscan.data.preprocess import load_image

    errors = []
    for film in films:
        try:
            load_image(film.path, size)
            return None
        except DecodeOutOfMemory:
            raise
        except InputError as err:
            errors.append(str(err))
    return errors


def _in_both_classes(samples: list[Sample], keys: PatientKeys, by_class: list[dict[str, Sample]]) -> str:
    """Why the carve failed when most images are of patients with images of both classes (their key, not a
    patient, as `1.jpeg` in every patient folder keyed by file name makes): which key and what reads patients
    instead; '' otherwise."""
    both = set(by_class[0]) & set(by_class[1])
    count = Counter(keys(s) for s in samples if keys(s) in both)
    if sum(count.values()) * 2 <= len(samples):
        return ""
    key, n = count.most_common(1)[0]
    shown = keys.shown(next(s for s in samples if keys(s) == key))
    total = len(set(by_class[0]) | set(by_class[1]))
    who = "the one patient has" if total == 1 else f"{len(both)} of the {total} patients have"
    return (f"{who} images of both classes, "
            f"{sum(count.values())} of the {len(samples)} images ({n} of patient {shown}), and a patient is never "
            f"split ({describe(keys.choice)}: {option('patient_key', keys.choice)}); if these are not patients, key "
            f"them otherwise: each patient's films in a folder of their own and {option('patient_key', 'folder')}, "
            f"or a CSV manifest with a patient column")


def data_warnings(cfg: TrainConfig, data: RunData, labels_used: bool = True) -> list[str]:
    """What `train` (and `pretrain`, which uses no labels: `labels_used` False) says about its data before it
    starts: unreadable files skipped, validation films copied in training (with `labels_used`, films under both
    labels), file-name patient keys joining folders, and patients in both train/ and a given val/."""
    found = [f"skipped {message}" for message in data.train.skipped + data.val.skipped]
    found += duplicate_warnings({"train": data.train.samples, "val": data.val.samples}, str(cfg.data),
                                TAUGHT_BOTH if labels_used else None)
    # the carve's own films (train/'s; a given val/ is another split, where file names restart)
    carved = data.train.samples + ([] if cfg.use_given_val else data.val.samples)
    if collision := name_collision_warning(carved, data.patients):
        found.append(collision)
    if cfg.use_given_val and (few := _few_given_val(cfg, data.val)):
        found.append(few)
    if data.split_record["patient_ids_in_train_and_val"]:
        found.append(f"{data.split_record['patient_ids_in_train_and_val']} patient IDs have images in both "
                     f"train/ and val/, so validation (early stopping, threshold) may be optimistic; drop "
                     f"{switch('use_given_val')} to split train/ by patient")
    return found


def given_val_name(data: str | Path) -> str:
    """The given validation films of the data `data`: its val/ folder, or a CSV manifest's val rows."""
    return f"the val rows of {data}" if Path(data).is_file() else str(Path(data) / "val")


def _few_given_val(cfg: TrainConfig, val: ImageSet) -> str | None:
    """A warning when a class of the given validation films has fewer than `FEW_IMAGES` (as `set-threshold` warns):
    early stopping, the kept epoch and the threshold all rest on them. None otherwise."""
    from pneumoscan.evaluation.local_threshold import FEW_IMAGES

    n_neg, n_pos = int((val.labels == 0).sum()), int((val.labels == 1).sum())
    if min(n_neg, n_pos) >= FEW_IMAGES:
        return None
    return (f"{given_val_name(cfg.data)} holds only {n_neg} NORMAL and {n_pos} PNEUMONIA images: the kept epoch and "
            f"the threshold are chosen on them, so validation AUC and recall are coarse estimates; {FEW_IMAGES} or "
            f"more of each class is better, or drop {switch('use_given_val')} to validate on a patient split of train")


def prepare_data(cfg: TrainConfig, image_size: int, progress: bool = True, command: str = "train") -> RunData:
    """Find, split and decode (through the cache) the training and validation images; `command` (train or
    pretrain) chooses which options a message may suggest."""
    # test/ kept whole, unopened (with --patient-key name or folder not even listed by its files' first bytes)
    found, unread, no_image = set_aside_unread(discover(cfg.data, listed_unopened(cfg.patient_key)), REPORTING_SPLITS)
    train_split = "train" if "train" in found else "all"
    if train_split not in found:
        raise InputError(f"{cfg.data}: no train/ folder to train on; add DATA/train/NORMAL and DATA/train/PNEUMONIA")
    # keyed over every split, as `audit` keys them (`dataset_keys`), so --max-images does not change a key; of test/
    # only the headers of files that may be DICOM by name are read (`unopened_headers`)
    keys = dataset_keys(found, cfg.patient_key, found[train_split] + found.get("val", []), progress=progress)
    samples = _cap_per_class(found[train_split], cfg.max_images, cfg.split_seed)
    if cfg.use_given_val:
        if "val" not in found:
            raise InputError(f"{cfg.data}: {switch('use_given_val')} needs a val/ folder; drop it to carve validation "
                             f"from train by patient")
        train, val = samples, _cap_per_class(found["val"], cfg.max_images, cfg.split_seed)
    else:
        train, val = patient_split(samples, cfg.val_fraction, cfg.split_seed, keys)
    for name, part in (("training", train), ("validation", val)):
        if len({s.label for s in part}) < 2:
            raise InputError(_unreadable_class_message(cfg, train + val, keys)
                             or _one_class_message(cfg, name, train, val, found[train_split], command, keys))
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else None
    # film_marks: the run records their film fingerprints
    train_set = load_image_set(train, image_size, cache_dir, desc="decoding train", progress=progress, film_marks=True)
    val_set = load_image_set(val, image_size, cache_dir, desc="decoding val", progress=progress, film_marks=True)
    train_set.skipped = sorted(train_set.skipped + unread[train_split])  # the folders' films in formats not read
    if cfg.use_given_val:
        val_set.skipped = sorted(val_set.skipped + unread["val"])
    for name, part in (("training", train_set), ("validation", val_set)):
        absent = part.absent_classes
        if absent:
            raise InputError(f"{cfg.data}: the {name} split has no readable {' or '.join(absent)} images: "
                             f"{counted(len(part.skipped), 'unreadable file')} left out, e.g. "
                             f"{first_few(part.skipped)}; "
                             f"replace or remove them")
    record = {
        "method": "given val/ folder" if cfg.use_given_val else "patient-aware stratified split of train",
        "val_fraction": cfg.val_fraction,
        "seed": cfg.split_seed,
        # over the images used, as `counts`: not unreadable files (under `skipped`) nor those --max-images left out
        **keys.record(train_set.samples + val_set.samples),
        "counts": {
            name: {"NORMAL": int((s.labels == 0).sum()), "PNEUMONIA": int((s.labels == 1).sum()),
                   "patients": len({keys(x) for x in s.samples})}
            for name, s in (("train", train_set), ("val", val_set))
        },
        "skipped": train_set.skipped + val_set.skipped,
        "unread_rule": UNREAD_RULE,  # which files were set aside before the split (`split_check.unread_rule_change`)
        # of those under `skipped`, how many that rule alone set aside (named for a format not read, holding no image)
        "unread_no_image": no_image[train_split] + (no_image["val"] if cfg.use_given_val else 0),
        # with --use-given-val nothing keeps a patient out of both folders
        "patient_ids_in_train_and_val": len({keys(s) for s in train_set.samples} & {keys(s) for s in val_set.samples}),
        "val_files": [str(s.path) for s in val_set.samples],
        # the given val/ (a manifest's val rows) found but not validated on, for the `split:` line to say
        **({"given_val_unused": len(found["val"])} if "val" in found and not cfg.use_given_val else {}),
    }
    return RunData(train_set, val_set, record, keys)
