"""pneumoscan: detect pneumonia on chest X-rays - train, evaluate, explain and serve classifiers."""
from __future__ import annotations

__version__ = "0.1.0"
CLASS_NAMES: tuple[str, str] = ("NORMAL", "PNEUMONIA")
