"""Configuration of the web service (one immutable object, built by the CLI or by tests)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from pneumoscan.errors import InputError
from pneumoscan.evaluation.thresholds import check_operating_point

MB = 1024 * 1024
ENVELOPE = 64 * 1024  # multipart boundaries and part headers allowed on top of a /predict file
UPLOAD_MEMORY_BATCHES = 4  # default upload memory: this many full /predict/batch bodies


def _above_zero(value: float, name: str, example: str, *, seconds: bool = False) -> None:
    """InputError "NAME VALUE: must be a number [of seconds] above 0, such as EXAMPLE" unless `value` is a finite
    number above 0 (NaN, infinity, 0 and below are refused); seconds are shown as `:g` formats them."""
    if not (value > 0 and math.isfinite(value)):
        shown, what = (f"{value:g}", "a number of seconds") if seconds else (f"{value}", "a number")
        raise InputError(f"{name} {shown}: must be {what} above 0, such as {example}")


@dataclass(frozen=True)
class Settings:
    """What the service loads and the limits it enforces."""

    model: str | None = None  # run folder or model.safetensors; None = the shipped default
    backend: str = "auto"  # torch | onnx | auto
    onnx_path: str | None = None  # an export of `model`; None = RUN/model.onnx if current, else built in memory
    threshold: float | None = None  # overrides the artifact's stored operating threshold
    target_recall: float | None = None  # or: the threshold for this recall on the artifact's stored scores
    prevalence: float | None = None  # probabilities re-weighted for this pneumonia prevalence; None = the model's prior
    max_upload_mb: float = 50.0  # per uploaded file (and per /predict request body): an uncompressed DICOM film too
    max_batch_files: int = 16
    max_batch_mb: float = 100.0  # whole /predict/batch request body (never below max_upload_mb)
    inference_slots: int = 2  # requests decoded + predicted at the same time (the rest wait their turn)
    upload_memory_mb: float | None = None  # upload bodies held at once, all requests together; None = 4 batches
    upload_wait_s: float = 2.0  # how long a request waits for upload memory to free up before it gets 503
    upload_idle_s: float = 30.0  # no body data for this long: 408, and the request's upload memory goes back
    upload_total_s: float | None = None  # a whole body taking longer: 408; None = no limit
    header_timeout_s: float = 10.0  # a request's line and headers not all received in this time: 408, closed;
    # also the time a client gets to finish sending a body answered before it was read (then closed, no 408),
    # and the longest lingering close after an answer that closes the connection
    audit_log: str | None = None  # a file to append one JSON line to per analysed film; None = no audit log
    shutdown_timeout_s: float = 8.0  # on SIGTERM/SIGINT, requests under way get this long to finish, then are cut off

    def __post_init__(self) -> None:
        check_operating_point(self.threshold, self.target_recall, self.prevalence)  # before the model loads
        _above_zero(self.max_upload_mb, "--max-upload-mb", "50")  # inf: every upload a 500
        if self.inference_slots < 1:
            raise InputError(f"--slots {self.inference_slots}: must be at least 1")
        if self.max_batch_files < 1:
            raise InputError(f"max_batch_files {self.max_batch_files}: must be at least 1")
        _above_zero(self.max_batch_mb, "max_batch_mb", "100")
        memory = self.upload_memory_mb
        if memory is not None and not (math.isfinite(memory) and memory >= self.batch_limit_mb):
            raise InputError(f"--upload-memory-mb {memory:g}: must be at least the batch limit of "
                             f"{self.batch_limit_mb:g} MB, so that one full /predict/batch request fits; "
                             f"such as {UPLOAD_MEMORY_BATCHES * self.batch_limit_mb:g}")
        if not (self.upload_wait_s >= 0 and math.isfinite(self.upload_wait_s)):
            raise InputError(f"upload_wait_s {self.upload_wait_s}: must be a number of seconds, 0 or more")
        _above_zero(self.upload_idle_s, "--upload-idle-s", "30", seconds=True)
        if self.upload_total_s is not None:
            _above_zero(self.upload_total_s, "--upload-total-s", "600; leave it out for no limit", seconds=True)
        _above_zero(self.header_timeout_s, "--header-timeout-s", "10", seconds=True)
        _above_zero(self.shutdown_timeout_s, "--shutdown-timeout-s", "8", seconds=True)

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

    @property
    def max_request_bytes(self) -> int:
        """The largest request body the service takes: a whole /predict/batch body, or a /predict one of a file at
        the per-file limit with its multipart envelope (what a proxy in front must let through)."""
        return max(self.max_batch_bytes, self.max_upload_bytes + ENVELOPE)

    @property
    def upload_memory_limit_mb(self) -> float:
        """Upload bodies held in memory at once, all requests together: --upload-memory-mb, else 4 full batches."""
        return self.upload_memory_mb if self.upload_memory_mb is not None else UPLOAD_MEMORY_BATCHES * self.batch_limit_mb

    @property
    def upload_memory_bytes(self) -> int:
        """The same in bytes, never below the largest request body."""
        return max(int(self.upload_memory_limit_mb * MB), self.max_request_bytes)
