"""Typed JSON responses of the web service (they make up the OpenAPI schema)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong with the request and what to do")


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    model_loaded: bool
    backend: str


class Normalization(BaseModel):
    mean: float
    std: float


class ModelInfo(BaseModel):
    name: str
    version: str
    input_size: int
    normalization: Normalization
    class_names: list[str]
    threshold: float = Field(description="operating threshold in use: PNEUMONIA when P >= threshold")
    stored_threshold: float = Field(description="threshold stored in the model artifact")
    target_recall: float | None
    tta: bool
    val_metrics: dict[str, Any]
    test_metrics: dict[str, Any]
    backend: str = Field(description="inference engine: torch or onnx")
    explain_available: bool = Field(description="whether ?explain=true can return a Grad-CAM heatmap")
    max_upload_mb: float


class PredictionResponse(BaseModel):
    probability: float = Field(ge=0, le=1, description="P(PNEUMONIA)")
    label: str
    threshold: float
    model_name: str
    model_version: str
    latency_ms: float = Field(description="server time for this request: reading, decoding, inference")
    heatmap_png_base64: str | None = Field(
        default=None, description="Grad-CAM overlay as a base64 PNG (only with ?explain=true)")


class BatchItem(BaseModel):
    filename: str | None = Field(description="as sent by the client")
    ok: bool
    status: int = Field(description="HTTP status this file alone would have got (200, 413, 415 or 422)")
    probability: float | None = None
    label: str | None = None
    error: str | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]
    n_ok: int
    n_failed: int
    threshold: float
    model_name: str
    model_version: str
    latency_ms: float
