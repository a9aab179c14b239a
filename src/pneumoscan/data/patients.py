"""Patient and cause parsed from Kermany-style file names."""
from __future__ import annotations

import re
from pathlib import Path

from pneumoscan.data.layout import IMAGE_SUFFIXES

_NORMAL = re.compile(r"^(?P<patient>(?:NORMAL2-)?IM-\d+)(?:-\d+)+$", re.IGNORECASE)
_PNEUMONIA = re.compile(r"^(?P<patient>person\d+)_(?P<cause>bacteria|virus)(?:_\d+)+$", re.IGNORECASE)


def patient_id(path: str | Path) -> str:
    """Patient key of an image: `IM-0115-0001.jpeg` -> `IM-0115`, `person19_virus_50.jpeg` -> `person19`.

    Unknown names are their own patient: the file name without its image extension (a DICOM UID name such
    as `1.2.840.113619.2.55.3.12345` is kept whole; its last number is not an extension). Only the name
    counts: not the folder, and not the DICOM PatientID.
    """
    path = Path(path)
    stem = path.stem if path.suffix.lower() in IMAGE_SUFFIXES else path.name
    match = _NORMAL.match(stem)
    if match:  # in the dataset's own case, so `im-0115-0002` is the same child as `IM-0115-0001`
        return match.group("patient").upper()
    match = _PNEUMONIA.match(stem)
    if match:
        return match.group("patient").lower()
    return stem


def cause(path: str | Path) -> str | None:
    """`bacteria` or `virus` for Kermany pneumonia file names, None otherwise."""
    match = _PNEUMONIA.match(Path(path).stem)
    return match.group("cause").lower() if match else None
