"""Typed JSON responses of the web service (they make up the OpenAPI schema)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from pneumoscan.data.decode import MIN_SIDE, OTHER_VIEW


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong with the request and what to do")


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    model_loaded: bool = Field(description="always true: the model is loaded before the service listens")
    backend: str


class WarmUp(BaseModel):
    explain_available: bool = Field(description="as GET /model's")
    explain_loaded: bool = Field(description="as GET /model's: false while the load started (or under way) goes on")
    explain_problem: str | None = Field(description="as GET /model's")


class Ready(BaseModel):
    status: Literal["ready"]
    backend: str = Field(description="inference engine: torch or onnx")
    model_sha256: str = Field(description="first 12 hex digits of the model file's SHA-256")
    test_ms: float = Field(description="time this probe waited for the model to score a grey test image")


class Normalization(BaseModel):
    mean: float
    std: float
    equalize: bool = Field(False, description="each image is histogram-equalised before (pixel / 255 - mean) / std")
    crop: bool = Field(False, description="each image is first cropped to a square as wide as the body")


_INTERVAL = ("95 % bootstrap interval [low, high] of the threshold in use, on the films it was chosen on (1,000 "
             "resamples of the validation films, or of a site's films after `pneumoscan set-threshold`; each patient "
             "drawn with all of their films when the model stores which films are one patient's, else film by film), "
             "moved with "
             "the probabilities to the prevalence as the threshold is; a P within it is borderline. null for a "
             "threshold set by `serve --threshold`, and for a model whose stored scores do not give its threshold")
_BORDERLINE = ("true: P lies within the threshold's 95 % interval (threshold_ci95), so the label stands but a "
               "threshold re-chosen on a plausible resample of the films it was chosen on would give the other one; "
               "false: outside it; null when there is no probability or no interval (`serve --threshold`)")


def _interval(description: str) -> Any:
    return Field(min_length=2, max_length=2, description=description)


class OperatingPoint(BaseModel):
    threshold: float = Field(description="threshold in use: PNEUMONIA when P >= threshold")
    threshold_ci95: list[float] | None = _interval(_INTERVAL)
    threshold_from: Literal["model", "target_recall", "threshold"] = Field(
        description="model: the threshold stored in the model (see stored_threshold, threshold_source); target_recall: "
                    "chosen at start-up by `serve --target-recall` on the model's stored scores; threshold: set by "
                    "`serve --threshold`. With a prevalence, a threshold chosen for a recall is mapped to the "
                    "re-weighted probabilities, so the decisions stay those of that recall")
    target_recall: float | None = Field(description="recall the threshold in use was chosen for on `chosen_on`; null "
                                                    "for --threshold or a model that records none")
    chosen_on: Literal["validation", "local"] | None = Field(
        description="the scores that threshold was chosen on: validation (the training run's validation films) or "
                    "local (a site's own labelled films, `pneumoscan set-threshold`; see threshold_source); null for "
                    "--threshold")
    prevalence: float = Field(gt=0, lt=1, description="pneumonia prevalence the probabilities assume")
    prevalence_from: Literal["model_prior", "prevalence"] = Field(
        description="model_prior: none was set, so P assumes the prior the model was trained to (0.5 after "
                    "class-balanced training, such as the shipped model's); prevalence: `serve --prevalence`, P "
                    "re-weighted for it by Bayes' rule")


class ModelInfo(BaseModel):
    name: str
    version: str
    input_size: int
    normalization: Normalization
    class_names: list[str]
    threshold: float = Field(description="operating threshold in use: PNEUMONIA when P >= threshold")
    threshold_ci95: list[float] | None = _interval(_INTERVAL)
    stored_threshold: float = Field(description="threshold stored in the model artifact")
    target_recall: float | None = Field(description="recall the stored threshold was chosen for")
    operating_point: OperatingPoint = Field(description="the threshold in use, where it came from, and the "
                                                        "prevalence the probabilities assume")
    threshold_source: dict[str, Any] = Field(
        default_factory=dict, description="where the stored threshold was chosen: empty for the validation split of "
                                          "training; after `pneumoscan set-threshold`, the local data, its image "
                                          "counts and the date")
    tta: bool
    val_metrics: dict[str, Any]
    test_metrics: dict[str, Any]
    backend: str = Field(description="inference engine: torch or onnx")
    explain_available: bool = Field(description="whether ?explain=true can return a Grad-CAM heatmap (until the "
                                                "first heatmap loads PyTorch: whether Grad-CAM and PyTorch are "
                                                "installed)")
    explain_loaded: bool = Field(description="whether Grad-CAM's PyTorch model is loaded; false: the service "
                                             "started without it and the next heatmap loads it first (seconds)")
    explain_problem: str | None = Field(description="why heatmaps are not available: PyTorch not installed, or "
                                                    "what the first heatmap found (PyTorch or the model that could "
                                                    "not be loaded, a model file changed since start-up, a model "
                                                    "Grad-CAM cannot explain; for lack of memory, when it will be "
                                                    "tried again); null otherwise")
    explain_retry_s: int | None = Field(None, description="after a load of Grad-CAM's model that ran out of memory: "
                                                          "the seconds until it is tried again (0: the next heatmap "
                                                          "asked for tries); null otherwise")
    max_upload_mb: float = Field(description="per-file upload limit")
    max_batch_files: int = Field(description="files per /predict/batch request")
    max_batch_mb: float = Field(description="whole /predict/batch request body limit")
    max_request_mb: float = Field(description="the largest request body the service takes: a whole /predict/batch "
                                              "body, or a /predict file of max_upload_mb with its multipart envelope; "
                                              "a proxy in front must let bodies this large through")
    upload_memory_mb: float = Field(description="upload bodies held in memory at once, all requests together; "
                                                "beyond it requests get 503 with Retry-After")
    upload_idle_s: float = Field(description="an upload that sends no data for this many seconds gets 408")
    upload_total_s: float | None = Field(description="an upload not all sent within this many seconds gets 408; "
                                                     "null: no limit")
    sha256: str = Field(description="SHA-256 of the model file: identifies the exact weights and threshold in use")
    shipped: bool = Field(description="whether it holds the weights shipped with pneumoscan (a set-threshold copy "
                                      "with a threshold of its own too), which GET /model/card (and `pneumoscan "
                                      "card`) describes; that card is not about any other model")
    ood_guard: bool = Field(description="whether uploads are screened by an out-of-distribution guard that refuses "
                                        "to predict on images that do not look like chest X-rays")


_IN_DISTRIBUTION = ("true: the upload looks like a chest X-ray; false: it does not, or it is one the model cannot "
                    "read as sent (black-and-white, dithered, posterised, upside down), and no prediction was made (probability and label "
                    "are null); null: the model has no out-of-distribution guard")
_PREVALENCE = ("pneumonia prevalence the probabilities assume: `serve --prevalence`, else the model's prior "
               "(GET /model, operating_point)")
_MODEL_SHA = "first 12 hex digits of the model file's SHA-256 (GET /model gives all 64): which weights answered"
_REQUEST_ID = ("this request's id, also in the X-Request-ID response header and the audit log (`serve --audit-log`): "
               "the client's X-Request-ID when it is 1 to 64 letters, digits or ._:-, else a new one")
_ANALYSED_AT = "when the answer was made, in UTC (ISO 8601, to the millisecond): 2026-11-27T09:31:02.123Z"
_THRESHOLD_FROM = ("where the threshold in use came from (GET /model, operating_point, says more): model, the one "
                   "stored in the model file; target_recall, `serve --target-recall`; threshold, `serve --threshold`")
_STRETCHED = ("true: the film is a PNG whose 16-bit grey levels (such as a 12-bit film's) were stretched from its "
              "darkest to its brightest value to be read, so a viewer that draws the file's stored values, such as a "
              "web browser, shows it otherwise (often near black) than the model read it: by more than 2 grey levels "
              "of 255 at some pixel. false for any other file, an 8-bit film saved with 16 bits (v x 257 or v << 8) "
              "and 16-bit levels spanning about 0-65535 among them, which a browser draws as read")
_SHOWN = ("how a web browser draws a `stretched` film against the film as read: 'darker' (its brightest drawn darker: a "
          "12-bit film stored low, drawn near black), 'paler' (its darkest drawn paler: one stored high, drawn nearly "
          "white) or 'flatter' (both: levels spanning a narrow middle range, drawn flat grey); null when not stretched")
_SIZE_WARNING = (f"set when the image is under {MIN_SIDE} px on a side (a thumbnail), e.g. \"20 x 20 px, under "
                 f"{MIN_SIDE} px on a side: too small to read reliably; send the original film\": the result is given all the same, but "
                 "the original film should be sent and read instead; null otherwise")
_OOD_REASON = ("why no prediction was made, in words for the reader (only when in_distribution is false): "
               "\"not a chest X-ray: colour image ...\", \"unlike the chest X-rays this model was trained on (image "
               "statistics: ...); if it is a frontal chest X-ray, read it without the model\" (\"frontal pediatric chest "
               "X-ray\" for the shipped model) or \"the image looks upside down; rotate it and send it again\"")
_REFUSED_BY = ("what refused the film, set with ood_reason: blank or colour (not a chest X-ray); grey_levels, two_tone, "
               "dithered, posterised or upside_down (a chest X-ray the model cannot read as sent); view (a DICOM film "
               f"{OTHER_VIEW} by its header: send the frontal film); image or features (unlike the chest "
               "X-rays the model was trained on, as 17 of the shipped model's 5,216 real train films are: a chest film "
               "so refused is read without the model)")

_REFUSAL_KIND = ("what a refusal means, from refused_by (null when in_distribution is not false): not_a_chest_xray "
                 "(blank, colour: no radiograph was sent); as_sent (grey_levels, two_tone, dithered, posterised, upside_down, view: a "
                 "chest X-ray the model cannot read as sent, ood_reason says what to send instead); unlike (image, features: "
                 "unlike the chest X-rays the model was trained on; a chest film so refused is read without the model)")
_REFUSAL_CAUSE = ("what the guard found, in words for the reader: ood_reason less the \"not a chest X-ray: \" a refusal "
                  "of kind not_a_chest_xray starts with (e.g. \"colour image (chest X-rays are grayscale)\"), else "
                  "ood_reason itself; null when in_distribution is not false")
RefusalKind = Literal["not_a_chest_xray", "as_sent", "unlike"]


class Answered(BaseModel):
    """The operating point an answer of POST /predict or /predict/batch was made at, and the model and request that
    made it. An answer lists its other fields in a base class named after this one: pydantic gives a base's fields
    after those of the bases after it, so these follow the film's or the batch's fields, as they always have."""

    threshold: float
    threshold_from: Literal["model", "target_recall", "threshold"] = Field(description=_THRESHOLD_FROM)
    threshold_ci95: list[float] | None = _interval(_INTERVAL)
    prevalence: float = Field(gt=0, lt=1, description=_PREVALENCE)
    model_name: str
    model_version: str = Field(description="version of pneumoscan that wrote the model file")
    model_sha256: str = Field(description=_MODEL_SHA)
    latency_ms: float
    request_id: str = Field(description=_REQUEST_ID)
    analysed_at: str = Field(description=_ANALYSED_AT)


class _FilmResult(BaseModel):
    probability: float | None = Field(ge=0, le=1, description="P(PNEUMONIA); null when in_distribution is false")
    label: str | None = Field(description="class at the operating threshold; null when in_distribution is false")
    in_distribution: bool | None = Field(description=_IN_DISTRIBUTION)
    ood_reason: str | None = Field(default=None, description=_OOD_REASON)
    refused_by: str | None = Field(default=None, description=_REFUSED_BY)
    refusal_kind: RefusalKind | None = Field(default=None, description=_REFUSAL_KIND)
    refusal_cause: str | None = Field(default=None, description=_REFUSAL_CAUSE)
    borderline: bool | None = Field(default=None, description=_BORDERLINE)
    size_warning: str | None = Field(default=None, description=_SIZE_WARNING)


class PredictionResponse(Answered, _FilmResult):
    latency_ms: float = Field(description="server time for this request: reading, decoding, inference")
    heatmap_png_base64: str | None = Field(
        default=None, description="Grad-CAM overlay on the film as the model read it, in the film's proportions, "
                                  "as a base64 PNG (only with ?explain=true; null when heatmap_empty is true)")
    heatmap_class: str | None = Field(
        default=None, description="the class whose evidence the heatmap shows: the returned label (only with "
                                  "?explain=true and a prediction)")
    heatmap_empty: bool | None = Field(
        default=None, description="true: Grad-CAM found no positive evidence for heatmap_class (the map is all zero, "
                                  "as a briefly trained model can give), so no overlay is sent, rather than the bare "
                                  "film as if it were evidence; false: heatmap_png_base64 holds the overlay; null "
                                  "without ?explain=true or a prediction")
    heatmap_unmapped: list[str] | None = Field(
        default=None, description="the members of an ensemble the heatmap leaves out, by model name (such as "
                                  "[\"mlp\"]: no feature map to draw, so their share of the score is not in it), as "
                                  "`pneumoscan explain` names them; [] when it leaves out none; null without "
                                  "?explain=true or a prediction")
    stretched: bool = Field(default=False, description=_STRETCHED + "; the heatmap is drawn on the film as read")
    shown: Literal["darker", "paler", "flatter"] | None = Field(default=None, description=_SHOWN)


class BatchItem(BaseModel):
    filename: str | None = Field(description="as sent by the client")
    ok: bool = Field(description="the file was read and screened; also true when the guard refused it "
                                 "(in_distribution false)")
    status: int = Field(description="HTTP status this file alone would have got (200, 413, 415 or 422; 503 when its "
                                    "decoding ran out of memory while other work held memory: other "
                                    "requests, Grad-CAM's model loading)")
    probability: float | None = Field(default=None, ge=0, le=1,
                                      description="P(PNEUMONIA); null for failed files and when in_distribution is false")
    label: str | None = Field(default=None, description="null for failed files and when in_distribution is false")
    in_distribution: bool | None = Field(default=None, description=_IN_DISTRIBUTION + "; null for failed files")
    ood_reason: str | None = Field(default=None, description=_OOD_REASON)
    refused_by: str | None = Field(default=None, description=_REFUSED_BY)
    refusal_kind: RefusalKind | None = Field(default=None, description=_REFUSAL_KIND)
    refusal_cause: str | None = Field(default=None, description=_REFUSAL_CAUSE)
    borderline: bool | None = Field(default=None, description=_BORDERLINE + "; null for failed files")
    size_warning: str | None = Field(default=None, description=_SIZE_WARNING)
    stretched: bool | None = Field(default=None, description=_STRETCHED + "; null for failed files")
    shown: Literal["darker", "paler", "flatter"] | None = Field(default=None, description=_SHOWN)
    error: str | None = None


class _BatchResults(BaseModel):
    results: list[BatchItem]
    n_ok: int
    n_failed: int
    n_out_of_distribution: int = Field(description="files read fine but refused as not chest X-rays (counted in n_ok)")


class BatchResponse(Answered, _BatchResults):
    pass
