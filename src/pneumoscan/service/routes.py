"""HTTP endpoints: liveness (/health), readiness (/ready), the model (/model) and the shipped model's card
(/model/card), single and batch prediction.

Uploads are read into memory by `service.uploads` (never spooled to disk), each request's body
within its reservation of the service's upload memory (`service.budget`), held until it is answered.
Decoding and inference run in worker threads, at most `Settings.inference_slots` at a time, never
on the event loop; a request's audit lines are written (and fsynced) after it has given its slot back,
and before its answer is sent.
Nothing about an upload (file name, DICOM header, pixels) is logged; the audit log (`serve --audit-log`) gets
one line per analysed film, of the model, operating point and result.

When the model has an out-of-distribution guard, an upload that decodes fine but does not look like
a chest X-ray (or is one in a form the model cannot read: black-and-white, upside down) is answered 200
with `in_distribution: false`, `ood_reason` and no probability, label or heatmap: the request was
valid, the image is just not one the model can judge.
"""
from __future__ import annotations

import base64
import logging
import time
from typing import Any, Callable, TypeVar

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from pneumoscan.card import model_card_text
from pneumoscan.data.decode import DEFAULT_MAX_PIXELS, EXPORT_AS, unsupported_format
from pneumoscan.errors import (DamagedModel, DecodeOutOfMemory, ImageTooLarge, InputError, MissingDecoder,
                               ModelFileChanged, NotAnImage, decimals, first_line, gpu_out_of_memory, one_name)
from pneumoscan.inference.ood import refusal_cause, refusal_kind
from pneumoscan.inference.prediction import Prediction
from pneumoscan.service.audit import AuditError, AuditLog, utc_now
from pneumoscan.service.engine import (BUSY_RETRY_S, Decoded, Engine, ExplainUnavailable, host_short, log_gpu_full,
                                       model_fault)
from pneumoscan.service.budget import Reservation
from pneumoscan.service.readiness import NotReady
from pneumoscan.service.schemas import (BatchItem, BatchResponse, ErrorResponse, Health, ModelInfo, PredictionResponse,
                                        Ready, WarmUp)
from pneumoscan.service.settings import ENVELOPE
from pneumoscan.service.uploads import Part, read_multipart, sniff_image

router = APIRouter()
log = logging.getLogger("pneumoscan.service")
T = TypeVar("T")
_NOT_IMAGE = "not an image file ({what}); send a JPEG, PNG, TIFF, BMP or DICOM chest X-ray"


def _unavailable(also: str = "") -> dict[str, Any]:
    """The OpenAPI entry of an upload route's 503, `also` naming the route's own cause after the memory's."""
    return {"model": ErrorResponse,
            "description": f"the memory set aside for uploads is full, or the GPU ran out of memory{also}; retry after "
                           "the Retry-After header's seconds. Without Retry-After: the model file changed, was removed "
                           "or cannot be read since start-up (restart the service), the model gave no probability "
                           "(damaged weights), or the audit log cannot be written (the detail says which)",
            "headers": {"Retry-After": {"description": "seconds to wait before retrying",
                                        "schema": {"type": "integer"}}}}


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "malformed multipart body"},
    408: {"model": ErrorResponse, "description": "the upload stalled: no data for the idle timeout (30 s by "
                                                 "default), or not all sent within the total limit if one is set"},
    413: {"model": ErrorResponse, "description": "upload larger than the configured limit (for /predict/batch: the "
                                                 "whole body, or more files than max_batch_files), an image over "
                                                 f"{DEFAULT_MAX_PIXELS // 1_000_000} megapixels, or a film whose "
                                                 "decoding ran out of the server's memory while nothing else held "
                                                 "memory (no other request, no Grad-CAM model loading; readiness "
                                                 "checks do not count): downscale it, retrying would fail for ever"},
    415: {"model": ErrorResponse, "description": "not multipart/form-data, or the file is not an image (a DICOM "
                                                 "report or DICOMDIR too)"},
    422: {"model": ErrorResponse, "description": "missing file, empty, corrupt or undecodable image (a DICOM image "
                                                 "without its pixel data too: cut short, or a header-only export)"},
    500: {"model": ErrorResponse, "description": "internal error: the request was not processed; retry or report it"},
    503: _unavailable(),
}
# /predict's: ?explain=true while heatmaps are off for a while is a 503 too
_PREDICT_503 = _unavailable(", or (?explain=true) heatmaps are off for a while because memory ran short loading "
                            "Grad-CAM's model (or retry without ?explain=true now)")


def _upload_body(field: str, many: bool) -> dict[str, Any]:
    binary = {"type": "string", "format": "binary", "minLength": 1}  # empty files are refused (422)
    schema = {"type": "array", "items": binary, "minItems": 1} if many else binary
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": [field], "properties": {field: schema}}}}}}


def _engine(request: Request) -> Engine:
    return request.app.state.engine


async def _in_worker(request: Request, func: Callable[[], T], explain: bool = False) -> T:
    """Run blocking work in the thread pool, limited to the configured inference slots (`explain`: the route's
    parsed ?explain=, whose heatmap the log line of a GPU out-of-memory offers to do without).

    A request whose client has gone by the time a slot frees up is dropped: the page cancels the
    request of an upload it has replaced, and its decode would otherwise hold a slot for nothing.
    """
    async with request.app.state.limiter:
        if await request.is_disconnected():
            raise HTTPException(499, "client closed the request before it was processed")
        try:
            return await anyio.to_thread.run_sync(func)
        except (ModelFileChanged, DamagedModel) as err:  # the model's fault, not the upload's
            rid = getattr(request.state, "request_id", "-")
            log.error("request %s: %s", rid, err)  # the answer names no server path: the log line does
            raise HTTPException(503, _model_problem(err, rid)) from None
        # the GPU, or the host, short of memory or file handles (re-reading the model file, say; a library's loader
        # says "too many open files" in an ImportError; torch's CPU allocator fails with a RuntimeError): it passes
        except (RuntimeError, OSError, ImportError, MemoryError) as err:
            if gpu_out_of_memory(err):
                log_gpu_full(f"{_request_line(request)}: ", err,
                             "; or ask without ?explain=true" if explain else "")
                raise _busy(GPU_FULL) from None
            if not host_short(err):
                raise
            log.error("%s: %s", _request_line(request), first_line(err, 300) or type(err).__name__)
            raise _busy(HOST_BUSY) from None


def _others_under_way(request: Request, reservation: Reservation) -> bool:
    """Whether anything but this request (which holds an inference slot and `reservation`) holds memory: another slot
    in use, upload bytes not this request's (a request waiting for a slot holds its own), a request waiting for upload
    memory, or Grad-CAM's model loading after the page's warm-up (a readiness check's test image is not: it measured
    +0 MB peak memory, the shipped model's and a ResNet-50's). Reads counters and flags only, copies nothing, so a
    worker thread may ask."""
    budget = reservation.budget
    return (request.app.state.limiter.borrowed_tokens > 1 or budget.waiting > 0
            or budget.capacity - budget.available > reservation.held
            or _engine(request).warming)


def _arrivals(request: Request) -> tuple[int, int]:
    """How many holders of memory have started so far: upload reservations granted, loads of Grad-CAM's model. One
    that came and went while a film was decoded changed them."""
    return request.app.state.upload_budget.grants, _engine(request).warm_starts


def _decode(request: Request, reservation: Reservation, part: Part) -> Decoded:
    """The part's film decoded. Its decoding running out of memory is an HTTPException: 503 to retry while other work
    held memory (`_others_under_way` at its start or its failure), else 413, since that film alone is too large for
    this server's memory and retrying would fail for ever. When others only came and went meanwhile (`_arrivals`),
    whose memory it may have missed, it is decoded once more, and that reading decides: a steady stream of small
    uploads never keeps a film from its 413, and readiness probes do not change the answer. The decoder's other
    InputErrors are raised as they are."""
    again = False
    while True:
        crowded, arrivals = _others_under_way(request, reservation), _arrivals(request)
        try:  # the upload's own buffer: a copy would hold it twice while it is decoded
            return _engine(request).decode(part.data, _label(part))
        except DecodeOutOfMemory as err:
            if crowded or _others_under_way(request, reservation):
                log.error("%s: MemoryError decoding a film while other work held memory; answered 503",
                          _request_line(request))
                raise _busy(HOST_BUSY) from None
            if not again and _arrivals(request) != arrivals:
                log.warning("%s: MemoryError decoding a film while other uploads or a Grad-CAM load came and went; "
                            "decoding it again", _request_line(request))
                again = True
                continue
            size = "the film" if err.width is None else f"{err.width} x {err.height} px"
            log.error("%s: MemoryError decoding a film of %s with nothing else holding memory; answered 413",
                      _request_line(request), size)
            raise HTTPException(413, f"{err.label}: {size} is too large for this server's memory; downscale it and "
                                     "send it again") from None


def _model_problem(err: ModelFileChanged | DamagedModel, rid: str) -> str:
    """The answer's words for a request the model file failed: what to do, and the request id whose log line names
    the file."""
    return (f"{model_fault(err)}. The request was not processed (nothing is wrong with the uploaded film); the "
            f"service's log names the model file at request id {rid}")


HOST_BUSY = (f"server busy: the server ran short of memory or open files; the request was not processed, retry in "
             f"{BUSY_RETRY_S} s (nothing is wrong with the file)")
GPU_FULL = (f"server busy: the GPU ran out of memory; the request was not processed, retry in {BUSY_RETRY_S} s "
            "(nothing is wrong with the file)")


def _busy(detail: str) -> HTTPException:
    """A 503 for a shortage that passes (the GPU's memory, the host's), to retry after BUSY_RETRY_S."""
    return HTTPException(503, detail, headers={"Retry-After": str(BUSY_RETRY_S)})


def _request_line(request: Request) -> str:
    """How a log line names a request: 'request ID, POST /predict'."""
    return f"request {getattr(request.state, 'request_id', '-')}, {request.method} {request.url.path}"


def _audit_line(request: Request, endpoint: str, item: int | None, when: str, upload: Decoded,
                result: Prediction) -> dict[str, object]:
    """The audit log's record of one analysed film: which model and operating point gave which result, when, for
    which request; of the image only its size (never its pixels, file name or DICOM header)."""
    engine = _engine(request)
    predictor = engine.predictor
    guard = {True: "passed", False: "refused", None: "none"}[result.in_distribution]
    width, height = upload.size or (None, None)
    return {"time": when, "request_id": request.state.request_id, "endpoint": endpoint, "item": item,
            "model_sha256": engine.model_sha256, "model_version": engine.meta.version,
            "threshold": predictor.threshold, "threshold_from": predictor.threshold_from,
            "prevalence": predictor.assumed_prevalence, "probability": result.probability, "decision": result.label,
            "borderline": result.borderline, "guard": guard, "width": width, "height": height}


async def _record(request: Request, lines: list[dict[str, object]]) -> None:
    """Append LINES to the audit log, if there is one, and return once they are on disk; 503 when they cannot be
    written (no unrecorded result). Called after the inference slot is given back: the write and its fsync wait for
    the disk in a thread of their own, not in a slot another request's model run could use."""
    audit: AuditLog | None = request.app.state.audit
    if audit is not None and lines:
        try:
            await anyio.to_thread.run_sync(audit.write, lines)
        except AuditError as err:
            raise HTTPException(503, str(err)) from None


def _upload_memory(request: Request) -> Reservation:
    return request.app.state.upload_budget.reservation()


def _refusal(result: Prediction) -> dict[str, Any]:
    """The answer's refusal_kind and refusal_cause: what the guard's refusal means and what it found (the page shows
    them as they come, so the guard's causes and words live here alone); None each for a film not refused."""
    if result.in_distribution is not False:
        return {"refusal_kind": None, "refusal_cause": None}
    return {"refusal_kind": refusal_kind(result.refused_by),
            "refusal_cause": refusal_cause(result.ood_reason, result.refused_by)}


def _label(part: Part) -> str:
    return part.filename or "upload"


def _detail(err: InputError) -> str:
    """What an answer says of a file decoding refused: the error, a missing decoder's with whom to ask rather than
    a pip command (a doctor reads it on the page)."""
    return err.for_staff if isinstance(err, MissingDecoder) else str(err)


def _status(err: InputError) -> int:
    """The status of a file decoding refused: 413 over the pixel limit, 415 a file that holds no image (a DICOM
    report or DICOMDIR, as for any other file that is not an image), 422 a corrupt or unusable image (a DICOM image
    without its pixel data: cut short, or a header-only export)."""
    return 413 if isinstance(err, ImageTooLarge) else 415 if isinstance(err, NotAnImage) else 422


def _check_part(part: Part, limit_mb: float) -> tuple[int, str] | None:
    """(status, message) when a part cannot be an image, before any decoding; its name as decoding's errors give it
    (`one_name`: a newline or a right-to-left override escaped)."""
    name = one_name(_label(part))
    if part.too_large:
        return 413, f"{name}: larger than the limit of {limit_mb:g} MB; send a smaller file"
    if not part.data:
        return 422, f"{name}: empty file (0 bytes); send a JPEG, PNG, TIFF, BMP or DICOM chest X-ray"
    if sniff_image(part.data) is None:
        other = unsupported_format(part.data)
        if other:
            return 415, f"{name}: {other} images are not supported; {EXPORT_AS} and send that"
        return 415, f"{name}: " + _NOT_IMAGE.format(what="unrecognised file content")
    return None


@router.get("/health", response_model=Health,
            summary="liveness: the service answers (the model is loaded before it listens); touches no model")
async def health(request: Request) -> Health:
    engine = _engine(request)
    return Health(status="ok", model_loaded=True, backend=engine.predictor.backend)


@router.head("/health", include_in_schema=False)
async def health_head(request: Request) -> JSONResponse:
    """GET /health's status and headers for uptime monitors, which send HEAD (the server sends no body)."""
    return JSONResponse((await health(request)).model_dump())


@router.get("/ready", response_model=Ready, responses={503: {
    "model": ErrorResponse, "description": "not ready: the model did not score a test image in time, or failed; "
                                           "with Retry-After, the GPU ran out of memory or the host short of memory "
                                           "or open files for it (retry then)",
    "headers": {"Retry-After": {"description": "seconds to wait before probing again",
                                "schema": {"type": "integer"}}}}},
    summary="readiness: the model scores a test image now (outside the request queue)")
async def ready(request: Request) -> Ready:
    engine = _engine(request)
    try:
        took = await request.app.state.readiness.check()
    except NotReady as err:
        retry = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else None
        raise HTTPException(503, f"not ready: {err}", headers=retry) from None
    return Ready(status="ready", backend=engine.predictor.backend, model_sha256=engine.model_sha256[:12],
                 test_ms=took)


@router.head("/ready", include_in_schema=False)
async def ready_head(request: Request) -> JSONResponse:
    """GET /ready's status and headers for HEAD probes."""
    return JSONResponse((await ready(request)).model_dump())


@router.get("/model", response_model=ModelInfo, summary="the loaded model, its operating threshold and metrics")
async def model_info(request: Request) -> dict[str, object]:
    return _engine(request).model_info()


@router.post("/warm-up", response_model=WarmUp, status_code=202,
             summary="start loading Grad-CAM's torch model in the background, if it is not loaded: the page asks once "
                     "it has opened, so that its first heatmap does not wait seconds for PyTorch (GET / does not, "
                     "nor any probe)")
async def warm_up(request: Request) -> WarmUp:
    engine = _engine(request)
    engine.warm_explain()
    return WarmUp(explain_available=engine.explain_available(), explain_loaded=engine.explain_loaded,
                  explain_problem=engine.explain_problem)


class MarkdownResponse(PlainTextResponse):
    media_type = "text/markdown"


# heads the card when the service runs another model: the card must not pass for that model's
_NOT_SHIPPED = ("> **This card is not about the model of this service.** This service runs a model other than the one "
                "shipped with pneumoscan (weights {sha}); the card below describes the shipped model only, and its "
                "data, figures and limits are not those of the model that answers here.\n\n")

# heads the card when the service runs the shipped weights at an operating point of its own (a set-threshold copy,
# --threshold, --target-recall): the card's sensitivity and specificity are at the shipped threshold
_OWN_OPERATING_POINT = ("> **This service runs the shipped model at an operating point of its own** (threshold {used} "
                        "on the probabilities it answers with, {why}); the card's sensitivity, specificity and the other "
                        "figures at a threshold are measured at the shipped threshold {stored}, and differ here. Its "
                        "data, ROC AUC and limits are this model's.\n\n")


def _own_operating_point(engine: Engine) -> str:
    """The note heading the card of a service that runs the shipped weights at another operating point; '' when it
    runs them at the card's own threshold (a prevalence given moves the probabilities, not the decisions)."""
    from pneumoscan.artifact import shipped_threshold

    predictor = engine.predictor
    stored = shipped_threshold()
    if predictor.threshold_from == "model" and abs(predictor.meta.threshold - stored) <= 1e-12:
        return ""
    # the card's own point given again (--target-recall 0.95, or its threshold as the card prints it): without a
    # prevalence, the threshold the decisions use is the one shown
    if predictor.prevalence is None and decimals(predictor.threshold, 4) == decimals(stored, 4):
        return ""
    why = {"threshold": "set with --threshold", "target_recall": "chosen with --target-recall"}.get(
        predictor.threshold_from, "stored with the copy of the model it runs, as set-threshold stores one")
    return _OWN_OPERATING_POINT.format(used=decimals(predictor.threshold, 4), why=why, stored=decimals(stored, 4))


# its 404 is JSON, as every error is: "model" would document it as the route's Markdown
_CARD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the card, as Markdown"},
    404: {"description": "the card is not installed with this service's pneumoscan",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}}


@router.get("/model/card", response_class=MarkdownResponse, responses=_CARD_RESPONSES,
            summary="the model card of the model shipped with pneumoscan (Markdown); when the service runs another "
                    "model, headed by a note that it describes the shipped model only")
async def model_card(request: Request) -> MarkdownResponse:
    engine = _engine(request)
    try:
        text = model_card_text()
    except InputError:
        raise HTTPException(404, "the shipped model's card is not installed with this service's pneumoscan; "
                                 "reinstall it") from None
    if not engine.shipped:
        text = _NOT_SHIPPED.format(sha=engine.model_sha256[:12]) + text
    else:
        text = _own_operating_point(engine) + text
    return MarkdownResponse(text, headers={"Content-Disposition": 'inline; filename="MODEL_CARD.md"'})


def _no_heatmap(problem: str | None, retry_s: int | None) -> HTTPException:
    """The answer to ?explain=true when Grad-CAM cannot give a heatmap for `problem`: 501 for good, or 503 with
    Retry-After for `retry_s`, the seconds left of its back-off after a load that ran out of memory (read with
    `problem`: a load that succeeds meanwhile does not make it a 501)."""
    why = f" ({problem})" if problem else ""
    if retry_s is None:
        return HTTPException(501, f"Grad-CAM heatmaps are not available for this model or installation{why}; "
                                  "retry without ?explain=true")
    return HTTPException(503, f"Grad-CAM heatmaps are off for a while{why}; retry without ?explain=true now, or with "
                              "it after the Retry-After header's seconds",
                         headers={"Retry-After": str(max(1, retry_s))})


@router.post("/predict", response_model=PredictionResponse, responses={**_ERRORS, 503: _PREDICT_503, 501: {
    "model": ErrorResponse, "description": "Grad-CAM requested but not available for this model or installation "
                                           "(for good: retry without ?explain=true; the detail says why). While "
                                           "heatmaps are off for a while because memory ran short loading Grad-CAM's "
                                           "model, the answer is 503 with Retry-After instead"}},
    openapi_extra=_upload_body("file", many=False), summary="P(pneumonia) for one X-ray (multipart field 'file')")
async def predict(request: Request, explain: bool = Query(False, description="add a Grad-CAM heatmap overlay PNG")
                  ) -> PredictionResponse:
    start = time.perf_counter()
    engine, settings = _engine(request), request.app.state.settings
    if explain and (refusal := engine.explain_refusal()) is not None:
        raise _no_heatmap(*refusal)
    async with _upload_memory(request) as reservation:
        parts = await read_multipart(request, reservation=reservation,
                                     body_limit=settings.max_upload_bytes + ENVELOPE,
                                     part_limit=settings.max_upload_bytes, body_label="upload",
                                     shown_limit=settings.max_upload_bytes, idle_s=settings.upload_idle_s,
                                     total_s=settings.upload_total_s)
        files = [p for p in parts if p.name == "file"]
        if len(files) != 1:
            raise HTTPException(422, "send exactly one X-ray in the multipart form field 'file' "
                                     "(several files go to /predict/batch as 'files')")
        part = files[0]
        problem = _check_part(part, settings.max_upload_mb)
        if problem:
            raise HTTPException(*problem)

        def work() -> tuple[Prediction, bool, bytes | None, list[str] | None, Decoded, str, dict[str, object]]:
            upload = _decode(request, reservation, part)
            (result,) = engine.results([upload])
            explained = explain and result.in_distribution is not False  # a refused film has no prediction to explain
            heatmap = engine.explain_png(upload, result.label) if explained else None
            unmapped = engine.unmapped_members() if explained else None
            when = utc_now()
            line = _audit_line(request, "predict", None, when, upload, result)
            return result, explained, heatmap, unmapped, upload, when, line

        try:
            result, explained, heatmap, unmapped, upload, when, line = await _in_worker(request, work, explain)
        except ExplainUnavailable as err:
            raise _no_heatmap(str(err), err.retry_s) from None
        except InputError as err:
            raise HTTPException(_status(err), _detail(err)) from None
        await _record(request, [line])
    return PredictionResponse(
        probability=result.probability, label=result.label, in_distribution=result.in_distribution,
        ood_reason=result.ood_reason, refused_by=result.refused_by, **_refusal(result), borderline=result.borderline,
        size_warning=result.size_warning, **_answered(request, engine, start, when),
        heatmap_png_base64=base64.b64encode(heatmap).decode("ascii") if heatmap else None,
        heatmap_class=result.label if explained else None, heatmap_empty=heatmap is None if explained else None,
        heatmap_unmapped=unmapped, stretched=upload.stretched, shown=upload.shown)


@router.post("/predict/batch", response_model=BatchResponse, responses=_ERRORS,
             openapi_extra=_upload_body("files", many=True),
             summary="P(pneumonia) for several X-rays (multipart field 'files'); per-file errors, 200 overall")
async def predict_batch(request: Request) -> BatchResponse:
    start = time.perf_counter()
    engine, settings = _engine(request), request.app.state.settings
    async with _upload_memory(request) as reservation:
        parts = await read_multipart(request, reservation=reservation, body_limit=settings.max_batch_bytes,
                                     part_limit=settings.max_upload_bytes, oversize="mark",
                                     body_label="batch request", idle_s=settings.upload_idle_s,
                                     total_s=settings.upload_total_s)
        files = [p for p in parts if p.name in ("files", "file")]
        if not files:
            raise HTTPException(422, "send the X-rays in the multipart form field 'files' (one part per file)")
        if len(files) > settings.max_batch_files:
            raise HTTPException(413, f"{len(files)} files in one batch, the limit is {settings.max_batch_files}; "
                                     "split them into several requests")
        items = [BatchItem(filename=p.filename, ok=False, status=0) for p in files]
        todo: list[int] = []
        for i, part in enumerate(files):
            problem = _check_part(part, settings.max_upload_mb)
            if problem:
                items[i].status, items[i].error = problem
            else:
                todo.append(i)

        def work() -> tuple[str, list[dict[str, object]]]:
            good: list[tuple[int, Decoded]] = []
            for i in todo:
                try:
                    good.append((i, _decode(request, reservation, files[i])))
                except InputError as err:
                    items[i].status, items[i].error = _status(err), _detail(err)
                except HTTPException as err:  # this film ran out of memory: the others are scored
                    items[i].status, items[i].error = err.status_code, err.detail
            results = engine.results([upload for _, upload in good]) if good else []
            for (i, upload), result in zip(good, results):
                items[i].ok, items[i].status = True, 200
                items[i].probability, items[i].label = result.probability, result.label
                items[i].in_distribution, items[i].ood_reason = result.in_distribution, result.ood_reason
                items[i].refused_by = result.refused_by
                refusal = _refusal(result)
                items[i].refusal_kind, items[i].refusal_cause = refusal["refusal_kind"], refusal["refusal_cause"]
                items[i].borderline, items[i].size_warning = result.borderline, result.size_warning
                items[i].stretched, items[i].shown = upload.stretched, upload.shown
            when = utc_now()
            return when, [_audit_line(request, "predict/batch", i, when, upload, result)
                          for (i, upload), result in zip(good, results)]

        when, lines = await _in_worker(request, work)
        await _record(request, lines)
    n_ok = sum(item.ok for item in items)
    return BatchResponse(results=items, n_ok=n_ok, n_failed=len(items) - n_ok,
                         n_out_of_distribution=sum(item.in_distribution is False for item in items),
                         **_answered(request, engine, start, when))


def _answered(request: Request, engine: Engine, start: float, when: str) -> dict[str, Any]:
    """An answer's `Answered` fields: its operating point, model and request (`start`: its perf_counter at the
    start; `when`: its UTC time, as its audit lines give it)."""
    predictor, meta = engine.predictor, engine.meta
    return {"threshold": predictor.threshold, "threshold_from": predictor.threshold_from,
            "threshold_ci95": predictor.threshold_ci95, "prevalence": predictor.assumed_prevalence,
            "model_name": meta.model_name, "model_version": meta.version, "model_sha256": engine.model_sha256[:12],
            "latency_ms": round((time.perf_counter() - start) * 1000, 2), "request_id": request.state.request_id,
            "analysed_at": when}
