"""Configuration of the web service (one immutable object, built by the CLI or by tests)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from pneumoscan.errors import InputError

MB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """What the service loads and the limits it enforces."""

    model: str | None = None  # run folder or model.safetensors; None = the shipped default
    backend: str = "auto"  # torch | onnx | auto
    onnx_path: str | None = None  # an export of `model`; None = RUN/model.onnx if current, else built in memory
    threshold: float | None = None  # overrides the artifact's stored operating threshold
    max_upload_mb: float = 20.0  # per uploaded file (and per /predict request body)
    max_batch_files: int = 16
    max_batch_mb: float = 100.0  # whole /predict/batch request body (never below max_upload_mb)
    inference_slots: int = 2  # requests decoded + predicted at the same time (the rest wait their turn)

    def __post_init__(self) -> None:
        if not (self.max_upload_mb > 0 and math.isfinite(self.max_upload_mb)):  # inf: every upload would be a 500
            raise InputError(f"--max-upload-mb {self.max_upload_mb}: must be a number above 0, such as 20")
        if self.inference_slots < 1:
            raise InputError(f"--slots {self.inference_slots}: must be at least 1")
        if self.max_batch_files < 1:
            raise InputError(f"max_batch_files {self.max_batch_files}: must be at least 1")
        if not (self.max_batch_mb > 0 and math.isfinite(self.max_batch_mb)):
            raise InputError(f"max_batch_mb {self.max_batch_mb}: must be a number above 0, such as 100")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def batch_limit_mb(self) -> float:
        """The /predict/batch body limit: a batch can always carry one file the per-file limit allows."""
        return max(self.max_batch_mb, self.max_upload_mb)

    @property
    def max_batch_bytes(self) -> int:
        return int(self.batch_limit_mb * MB)
