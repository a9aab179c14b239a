"""The count of HTTP requests under way, as plain ASGI middleware, for what `serve` says when it stops."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
RETRY_AFTER_STOP_S = 5
_STOPPING = json.dumps({"detail": "the service is stopping and could not finish this request in time; nothing is "
                                  "wrong with the file, send it again"}).encode()


class RequestCounts:
    """HTTP requests under way, and those cut off (cancelled from outside: uvicorn cancels the ones still running
    when its graceful shutdown time is up)."""

    def __init__(self) -> None:
        self.under_way = 0
        self.cut_off = 0


class RequestTracker:
    """ASGI middleware keeping `counts` of the app's HTTP requests. A request cut off before its answer began gets
    503 with Retry-After (another instance, or this one restarted, can take it), not uvicorn's 500."""

    def __init__(self, app: ASGIApp, counts: RequestCounts) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        self.counts.under_way += 1
        try:
            await self.app(scope, receive, send_noting_start)
        except asyncio.CancelledError:
            self.counts.cut_off += 1
            if started:
                raise
            await _send_stopping(send)  # and the request ends here, answered: its cancellation has done its job
        finally:
            self.counts.under_way -= 1


async def _send_stopping(send: Send) -> None:
    """503 for a request the service stopped before answering; the connection closes after it."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_STOPPING)).encode()),
               (b"retry-after", str(RETRY_AFTER_STOP_S).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": _STOPPING})
