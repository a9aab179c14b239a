"""FastAPI application factory: the model is loaded once, before the first request."""
from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from pneumoscan import __version__
from pneumoscan.service.audit import AuditLog
from pneumoscan.service.budget import UploadBudget
from pneumoscan.service.engine import Engine
from pneumoscan.service.readiness import Readiness
from pneumoscan.service.routes import router
from pneumoscan.service.settings import Settings
from pneumoscan.service.tracking import RequestCounts, RequestTracker

STATIC_DIR = Path(__file__).parent / "static"
log = logging.getLogger("pneumoscan.service")
# The multipart parser logs malformed bodies with bytes of the upload in the message; the client gets 400.
logging.getLogger("python_multipart").setLevel(logging.ERROR)
logging.getLogger("multipart").setLevel(logging.ERROR)

_PAGE_POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
                "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def _app_path(request: Request) -> str:
    """The request's path within this app: without the prefix it is mounted under (root_path), if any."""
    path, root = request.scope["path"], request.scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Marks the app as served (`app.state.serving`): a server has started it (not when mounted in another app)."""
    app.state.serving = True
    yield


def create_app(settings: Settings | None = None) -> FastAPI:
    """The web service for `settings` (raises InputError when the audit log cannot be opened or the model loaded)."""
    from pneumoscan.data.decode import quiet_decoder_warnings

    quiet_decoder_warnings()
    settings = settings or Settings()
    audit = AuditLog(settings.audit_log) if settings.audit_log else None  # a bad path is told before the model loads
    engine = Engine(settings)
    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN, and the service runs offline.
    app = FastAPI(title="pneumoscan", version=__version__, docs_url=None, redoc_url=None, lifespan=_lifespan,
                  description="Pneumonia decision support on chest X-rays. Decision support only - not a diagnosis.")
    app.state.settings = settings
    app.state.engine = engine
    app.state.audit = audit
    app.state.readiness = Readiness(engine)
    app.state.limiter = anyio.CapacityLimiter(settings.inference_slots)
    app.state.upload_budget = UploadBudget(settings.upload_memory_bytes, settings.upload_wait_s)
    app.state.serving = False
    app.state.requests = RequestCounts()
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # Fetching the page loads nothing: an uptime monitor's GET would load PyTorch for nobody. Its script, run in a
    # doctor's browser, asks POST /warm-up.
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)  # HEAD: uptime monitors
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": _PAGE_POLICY})

    @app.middleware("http")
    async def private_responses(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = _app_path(request)  # before routing: a mount (/static) moves its prefix into the scope's root_path
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if path.startswith("/predict"):
            response.headers["Cache-Control"] = "no-store"  # results are patient data
        elif path == "/" or path.startswith("/static/"):
            # Revalidated (ETag) on every load: without it browsers keep the page for 10 % of its files' age
            # (RFC 9111 heuristic freshness), so after an upgrade they could run an old app.js on a new page.
            response.headers["Cache-Control"] = "no-cache"
        return response

    app.add_middleware(RequestTracker, counts=app.state.requests)  # added last: the outermost of the app's own

    @app.exception_handler(RequestValidationError)
    async def invalid_parameters(request: Request, err: RequestValidationError) -> JSONResponse:
        # A string `detail` like every other error (the documented ErrorResponse), not FastAPI's list;
        # where and what, never the offending value.
        problems = "; ".join(f"{' '.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
                             for e in err.errors())
        return JSONResponse({"detail": f"invalid request ({problems})"}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        # Only the exception type and code locations: messages may quote file names or header values.
        # Answered outside RequestTracker (Starlette's outermost middleware): the id is added here.
        frames = "".join(traceback.format_tb(err.__traceback__))
        rid = getattr(request.state, "request_id", "-")
        log.error("internal error %s in %s (request %s)\n%s", type(err).__name__, request.url.path, rid, frames)
        return JSONResponse({"detail": f"internal error; the request was not processed, please retry or report it "
                                       f"with its request id {rid}"}, status_code=500, headers={"X-Request-ID": rid})

    meta = engine.meta
    log.info("model %s (pneumoscan %s, %d px) ready, backend %s", meta.model_name, meta.version,
             meta.image_size, engine.predictor.backend)
    if not engine.guarded:  # the page and /model say so too, but only to those who look
        model, none_fits = engine.predictor.path, engine.predictor.no_guard_fits()
        log.warning("no chest X-ray guard beside %s: every upload gets a probability, a photo or an upside-down film "
                    "too; %s", model, none_fits or f"fit one with {meta.fit_guard_command(model, model.parent)} and "
                                                  f"restart")
    if audit is not None:
        log.info("audit log: one line per analysed film appended to %s", audit.path)
    return app
