"""Labelled images: the `Sample` record, the label values read as a class and the causes of pneumonia they name,
and the splits a data set has."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pneumoscan import CLASS_NAMES
from pneumoscan.errors import InputError

# the splits of a data set, as its split folders and a manifest's split column name them
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One labelled image: path and label (0 = NORMAL, 1 = PNEUMONIA), its patient when a manifest's
    `patient` column names it (`data.patients` reads it from the file otherwise), and the cause of its pneumonia
    (`bacteria` or `virus`) when a manifest's label or `cause` column says it (`data.patients.cause_of` reads it
    from the file name otherwise)."""

    path: Path
    label: int
    patient: str | None = None
    cause: str | None = None


# Label values read as a class (any case): the class names, and Kermany's causes of pneumonia as exports label them.
CAUSES = {"bacteria": "bacteria", "bacterial": "bacteria", "virus": "virus", "viral": "virus"}  # value -> cause
PNEUMONIA_CAUSES = tuple(CAUSES)  # the values, as messages list them
UNKNOWN_CAUSES = frozenset({"", "unknown"})  # `cause` column values that leave the cause to the file name
LABELS = {**{name.lower(): index for index, name in enumerate(CLASS_NAMES)},
          **dict.fromkeys(PNEUMONIA_CAUSES, CLASS_NAMES.index("PNEUMONIA"))}
# Label values refused with a message of their own: exports differ in which of them means pneumonia.
UNCLEAR_LABELS = frozenset({"0", "1", "true", "false", "yes", "no", "positive", "negative"})


def label_index(name: str, where: str) -> int:
    """Map a label (a class name or a cause of pneumonia, `LABELS`, in any case) to its class index, or raise
    InputError naming `where`."""
    key = name.strip().lower()
    if key in UNCLEAR_LABELS:
        raise InputError(f"{where}: label {name!r} does not say which class it is (exports differ in which value "
                         f"means pneumonia); write NORMAL or PNEUMONIA in the label column")
    if key not in LABELS:
        raise InputError(f"{where}: unknown label {name!r}; use one of {', '.join(CLASS_NAMES)} (or for PNEUMONIA "
                         f"its cause: {', '.join(PNEUMONIA_CAUSES)})")
    return LABELS[key]


def cause_name(value: str) -> str | None:
    """The cause (`bacteria` or `virus`) a label or `cause` value names (`Bacterial` -> `bacteria`), else None."""
    return CAUSES.get(value.strip().lower())


def manifest_cause(label: str, written: str | None, where: str) -> str | None:
    """The cause of a manifest row from its `label` and its `cause` cell (`written`; None without the column), or
    None when neither names one; InputError naming `where` for an unknown cause, a cause on a NORMAL row, or a
    label and a cause cell that disagree."""
    from_label = cause_name(label)
    if written is None or written.strip().lower() in UNKNOWN_CAUSES:
        return from_label
    from_cell = cause_name(written)
    if from_cell is None:
        raise InputError(f"{where}: unknown cause {written!r}; use one of {', '.join(PNEUMONIA_CAUSES)}, or leave it "
                         f"empty when the cause is not known")
    if LABELS[label.strip().lower()] != CLASS_NAMES.index("PNEUMONIA"):
        raise InputError(f"{where}: cause {written!r} on a {label.strip()} row; leave the cause empty for NORMAL "
                         f"images, or correct the label")
    if from_label is not None and from_label != from_cell:
        raise InputError(f"{where}: label {label.strip()!r} and cause {written!r} disagree; correct one of them")
    return from_cell
