"""Recall by cause (bacterial or viral: a manifest's, else from Kermany file names) and by original image size."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

# Longest side of the original file, in pixels: (upper bound exclusive, label).
SIZE_BUCKETS: tuple[tuple[float, str], ...] = (
    (500, "< 500 px"), (1000, "500-999 px"), (1500, "1000-1499 px"), (2000, "1500-1999 px"), (math.inf, ">= 2000 px"),
)
UNKNOWN = "unknown"


@dataclass
class GroupRow:
    """Rates of one subgroup: images, positives, recall among positives, specificity among negatives."""

    group: str
    n: int
    n_positive: int
    recall: float
    specificity: float


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image file from its header (full decode only for DICOM); None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception:  # noqa: BLE001 - not a Pillow format: try the full decoder (DICOM)
        pass
    from pneumoscan.data.decode import read_grayscale
    from pneumoscan.errors import InputError

    try:
        height, width = read_grayscale(path).shape
    except InputError:
        return None
    return int(width), int(height)


def size_bucket(size: tuple[int, int] | None) -> str:
    """The SIZE_BUCKETS label of an image's longest side."""
    if size is None:
        return UNKNOWN
    longest = max(size)
    return next(label for bound, label in SIZE_BUCKETS if longest < bound)


def _rates(labels: np.ndarray, preds: np.ndarray) -> tuple[float, float]:
    from pneumoscan.evaluation.metrics import UndefinedMetricWarning, recall, specificity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return recall(labels, preds), specificity(labels, preds)


def group_rows(groups: Sequence[str], labels: np.ndarray, preds: np.ndarray, order: Sequence[str]) -> list[GroupRow]:
    """One row per group name in `order` that occurs in `groups`."""
    names = np.asarray(groups, dtype=object)
    rows = []
    for name in order:
        mask = names == name
        if mask.any():
            rec, spec = _rates(labels[mask], preds[mask])
            rows.append(GroupRow(name, int(mask.sum()), int(labels[mask].sum()), rec, spec))
    return rows


def by_cause(causes: Sequence[str | None], labels: np.ndarray, preds: np.ndarray) -> list[GroupRow]:
    """Recall among PNEUMONIA images per cause (`causes`: each image's `cause_of`), those of unknown cause as
    `unknown`: `evaluate`'s `cause_recall`, as rows (all positives, so no specificity); none when it gives none."""
    from pneumoscan.evaluation.evaluate import cause_recall

    return [GroupRow(name, int(row["n"]), int(row["n"]), row["recall"], float("nan"))
            for name, row in cause_recall(causes, labels, preds).items()]


def by_size(paths: Sequence[Path], labels: np.ndarray, preds: np.ndarray) -> list[GroupRow]:
    """Recall and specificity per bucket of the original image's longest side."""
    buckets = [size_bucket(image_size(p)) for p in paths]
    return group_rows(buckets, labels, preds, [label for _, label in SIZE_BUCKETS] + [UNKNOWN])
