"""pneumoscan: detect pneumonia on chest X-rays - train, evaluate, explain and serve classifiers."""
from __future__ import annotations

__version__ = "0.1.0"
CLASS_NAMES: tuple[str, str] = ("NORMAL", "PNEUMONIA")
# Where the patient of an image is read, `--patient-key` (data/patients.py); here so the CLI parser needs no imports.
PATIENT_KEYS: tuple[str, str, str] = ("auto", "name", "folder")
