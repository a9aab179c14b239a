"""Each HTTP request's id (X-Request-ID), and the count of requests under way for what `serve` says when it
stops, as plain ASGI middleware.

The id is the client's `X-Request-ID` when it is a safe token (a proxy's or the hospital system's own id), else a
new one, so that a support ticket, the proxy's log and the service's audit log name the same request. It is
returned in the response's `X-Request-ID` header and kept in the request's state (`request.state.request_id`) for
the JSON answers, the audit log and the log line of an internal error. It is also the context variable
`CURRENT_REQUEST_ID` while the request is answered, which `log_config` has uvicorn write at the end of each access
line (`request_id=ID`), so that the id of a support ticket finds its request in the ordinary log too. The answers the
app never sees (uvicorn's 400 for a malformed request, the 408 for a head not received in time: service/protocol.py)
get an access line of their own, with the id given as the record's `request_id`, and `-` for a request line that
is not known (`access_formatter`).
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import io
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
RETRY_AFTER_STOP_S = 5
REQUEST_ID_MAX = 64
_SAFE_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{REQUEST_ID_MAX}}}")
_STOPPING = json.dumps({"detail": "the service is stopping and could not finish this request in time; nothing is "
                                  "wrong with the file, send it again"}).encode()
# Set in the request's own task (uvicorn runs each in a new one), and not reset: the 500 of an internal error is
# sent, and logged, by Starlette's outermost middleware after RequestTracker has returned.
CURRENT_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("pneumoscan_request_id", default="-")
log = logging.getLogger("pneumoscan.service")


def request_id(sent: bytes | None) -> str:
    """The client's X-Request-ID when it is 1 to 64 letters, digits or `._:-` (a UUID, a proxy's hex id), else a
    new random one (32 hex digits): anything else could forge log lines or carry patient data into the logs."""
    if sent is not None:
        text = sent.decode("latin-1").strip()
        if _SAFE_ID.fullmatch(text):
            return text
    return uuid.uuid4().hex


class RequestCounts:
    """HTTP requests cut off: cancelled from outside, as uvicorn cancels the ones still running when its graceful
    shutdown time is up."""

    def __init__(self) -> None:
        self.cut_off = 0


class RequestTracker:
    """ASGI middleware giving each HTTP request its id (`request_id`, returned in the X-Request-ID header) and
    keeping `counts` of the app's HTTP requests. A request cut off before its answer began gets
    503 with Retry-After (another instance, or this one restarted, can take it), not uvicorn's 500."""

    def __init__(self, app: ASGIApp, counts: RequestCounts) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((value for name, value in scope.get("headers", ()) if name == b"x-request-id"), None)
        state = scope.setdefault("state", {})  # the dict Request.state reads, in this app and outside it
        rid = state.get("request_id") or request_id(sent)  # one given already: the protocol's 400 answered with it
        CURRENT_REQUEST_ID.set(rid)
        state["request_id"] = rid
        started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode("ascii"))]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except asyncio.CancelledError:
            self.counts.cut_off += 1
            if started:
                raise
            await _send_stopping(send_noting_start)  # the request ends here, answered: the cancellation did its job


async def _send_stopping(send: Send) -> None:
    """503 for a request the service stopped before answering; the connection closes after it."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_STOPPING)).encode()),
               (b"retry-after", str(RETRY_AFTER_STOP_S).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": _STOPPING})


class RequestIdFilter(logging.Filter):
    """Gives each log record a `request_id`: its own when it was logged with one (`extra=`), else that of the HTTP
    request being answered, `-` outside one."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = getattr(record, "request_id", None) or CURRENT_REQUEST_ID.get()
        return True


def access_formatter(*args: Any, **kwargs: Any) -> logging.Formatter:
    """uvicorn's access-line formatter (ARGS, KWARGS: its own), which also formats the line of an answer whose
    request line is not known, logged with None as its method: `"-"` in place of the request line."""
    from uvicorn.logging import AccessFormatter, ColourizedFormatter

    class Formatter(AccessFormatter):
        def formatMessage(self, record: logging.LogRecord) -> str:
            if not (isinstance(record.args, tuple) and len(record.args) == 5 and record.args[1] is None):
                return super().formatMessage(record)
            unknown = copy.copy(record)
            unknown.__dict__.update(client_addr=record.args[0], request_line="-",
                                    status_code=self.get_status_code(int(record.args[4])))  # type: ignore[arg-type]
            return ColourizedFormatter.formatMessage(self, unknown)

    return Formatter(*args, **kwargs)


class AccessHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """uvicorn's handler of access lines (stdout), which says in one line on stderr what stops them, the service
    serving on: logging printed a 60-line "--- Logging error ---" traceback on stderr for each request. Once stdout's
    reader is gone (a broken pipe: `serve | head -1`, a log shipper stopped) or its file reached a size limit, stdout
    points at /dev/null; on a full disk or quota (`serve > serve.log`) each line is tried again, and a line says when
    they are written again (space freed), on a line of its own after one the full disk cut."""

    full = False  # a line was lost to a full disk, and none written since

    def format(self, record: logging.LogRecord) -> str:
        return _after_cut(self.stream) + super().format(record)

    def emit(self, record: logging.LogRecord) -> None:
        was_full, self.failed = self.full, False
        # unbuffered (`python -u`, PYTHONUNBUFFERED=1 as container images set), a write a full disk cuts keeps the part
        # written and drops the rest (a buffer would keep it): the first line written once there was room was glued on
        unbuffered = not isinstance(getattr(self.stream, "buffer", None), io.BufferedWriter)
        start = _offset(self.stream) if unbuffered else None
        super().emit(record)
        if not self.failed:
            _note_cut(self.stream, False)
            if was_full:
                self.full = False
                log.warning("stdout: access lines are written again")
        elif self.full and start is not None and (end := _offset(self.stream)) is not None and end > start:
            _note_cut(self.stream, True)

    def handleError(self, record: logging.LogRecord) -> None:
        import errno

        from pneumoscan.stream_failures import (DISK_FULL, DISK_FULL_FIX, reader_gone, reader_gone_why, stdout_name,
                                                to_devnull)

        err = sys.exc_info()[1]
        self.failed = True
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):  # space may be freed
            if not self.full:
                self.full = True
                log.warning("%s: %s (%s): access lines are lost until there is room; the service serves on",
                            stdout_name(), err.strerror, DISK_FULL_FIX[err.errno])
            return
        if err is not None and reader_gone(err):
            why = reader_gone_why(err)
        elif isinstance(err, OSError) and err.errno in DISK_FULL:  # a size limit per file: room does not lift it
            why = f"{stdout_name()}: {err.strerror} ({DISK_FULL_FIX[err.errno]}, then restart to log again)"
        else:
            super().handleError(record)
            return
        to_devnull(self.stream.fileno())
        log.warning("%s: access lines are no longer written; the service serves on", why)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler of the service's lines on stderr (its own and uvicorn's), silent when a full disk, quota or file
    size limit refuses one: stderr holds it until there is room (dropped at the stop), and logging's "--- Logging
    error ---" line, held with it, went into the log (`serve > serve.log 2>&1`) once there was. On the file of an
    access line the full disk cut (`2>&1`), its first line written starts a line of its own, as the next access
    line does, after the rest of that line when stdout's buffer held it: it was glued to the cut one ('... 200
    INFO:     Shutting down')."""

    failed = False

    def format(self, record: logging.LogRecord) -> str:
        return _after_cut(self.stream) + super().format(record)

    def emit(self, record: logging.LogRecord) -> None:
        self.failed = False
        # what stdout's buffer held on a full disk, the rest of a cut access line, goes first: with `2>&1`, this line
        # was written inside that one once there was room
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stdout.flush()
        super().emit(record)
        if not self.failed:
            _note_cut(self.stream, False)

    def handleError(self, record: logging.LogRecord) -> None:
        from pneumoscan.stream_failures import DISK_FULL

        self.failed = True
        err = sys.exc_info()[1]
        if not (isinstance(err, OSError) and err.errno in DISK_FULL):
            super().handleError(record)


# Files (device, inode) whose last access line a full disk cut short, its rest dropped (an unbuffered stdout): the
# next line written to one, an access line or a stderr line on the same file (`> serve.log 2>&1`), starts a new line.
_CUT_FILES: set[tuple[int, int]] = set()


def _file_id(stream: Any) -> tuple[int, int] | None:
    """The device and inode STREAM writes to (None without a file descriptor)."""
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return stat.st_dev, stat.st_ino


def _note_cut(stream: Any, cut: bool) -> None:
    """Note whether the last line written to STREAM's file is one a full disk cut short."""
    if cut or _CUT_FILES:
        file = _file_id(stream)
        if file is not None:
            (_CUT_FILES.add if cut else _CUT_FILES.discard)(file)


def _after_cut(stream: Any) -> str:
    """A newline to end the line a full disk cut on STREAM's file, else nothing."""
    return "\n" if _CUT_FILES and _file_id(stream) in _CUT_FILES else ""


def _offset(stream: Any) -> int | None:
    """STREAM's file descriptor's offset (None for a pipe, a terminal or no descriptor)."""
    try:
        return os.lseek(stream.fileno(), 0, os.SEEK_CUR)
    except (OSError, ValueError, AttributeError):
        return None


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with `request_id=ID` at the end of each access line, which go nowhere once
    stdout's reader is gone (`AccessHandler`), and its stderr lines quiet on a full disk (`StderrHandler`); uvicorn's
    own, with a
    one-line warning, when its shape is not the one this relies on."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    handler = config.get("handlers", {}).get("access")
    formatter = config.get("formatters", {}).get("access")
    if not (isinstance(handler, dict) and isinstance(formatter, dict) and isinstance(formatter.get("fmt"), str)):
        log.warning("the installed uvicorn's logging configuration has no access handler and format; its access "
                    "lines will not carry the request id")
        return config
    formatter["fmt"] += " request_id=%(request_id)s"
    if handler.get("class") == "logging.StreamHandler":
        handler["class"] = f"{__name__}.AccessHandler"
    errors = config["handlers"].get("default")
    if isinstance(errors, dict) and errors.get("class") == "logging.StreamHandler":
        errors["class"] = f"{__name__}.StderrHandler"
    if formatter.get("()") == "uvicorn.logging.AccessFormatter":
        formatter["()"] = f"{__name__}.access_formatter"
    config.setdefault("filters", {})["request_id"] = {"()": RequestIdFilter}
    handler["filters"] = [*handler.get("filters", ()), "request_id"]
    return config
