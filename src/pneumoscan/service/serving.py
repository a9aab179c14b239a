"""uvicorn serving `serve`'s app on the sockets `check_listen` bound and left listening, so that no other program
takes the port while the model loads, and saying where it serves once it does."""
from __future__ import annotations

import asyncio
import signal
import socket
import sys
from types import FrameType
from typing import Any, Callable, Sequence

import uvicorn

try:  # uvicorn.run's exit code when its server did not start; a private name, which has moved between releases
    from uvicorn.main import STARTUP_FAILURE
except ImportError:
    STARTUP_FAILURE = 3


class _Server(uvicorn.Server):
    """uvicorn's server, calling `announce` once it serves on the sockets it was handed, unless a stop signal came
    while it started; when `announce` fails (stdout full, or its reader gone: `serve | true`), it stops as on a stop
    signal, and `failed` holds the error to raise once it has. A Ctrl+C while it drains (uvicorn's force exit) cuts
    off the requests under way at once, and the app still shuts down: uvicorn skipped that, and asyncio, cancelling
    its task at exit, logged a CancelledError traceback. `before_forced` names the stop signals that came before that
    Ctrl+C, in order (None when none forced the exit)."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[], None]) -> None:
        super().__init__(config)
        self.announce = announce
        self.failed: Exception | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.caught: list[str] = []
        self.before_forced: list[str] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:  # a stop signal during start-up: it stops, not serves
            try:
                self.announce()
            except Exception as err:  # raised here, it cut uvicorn's start-up short: tracebacks, the app not shut down
                self.failed, self.should_exit = err, True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        forced = self.force_exit
        super().handle_exit(sig, frame)
        if self.force_exit and not forced:
            self.before_forced = list(self.caught)
            if self.loop is not None:  # from the signal handler: the loop's next turn
                self.loop.call_soon_threadsafe(self._cut_off)
        self.caught.append(signal.Signals(sig).name)

    def _cut_off(self) -> None:
        """Cancel the requests under way, as uvicorn does when its graceful shutdown time is up: each is answered
        503 (`RequestTracker`), and its connection closes, which Python 3.12+ waits for before the server closes."""
        for task in list(self.server_state.tasks):
            task.cancel()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets=sockets)
        app_shut_down = getattr(self.lifespan, "shutdown_event", None)
        if self.force_exit and app_shut_down is not None and not app_shut_down.is_set():
            await self.lifespan.shutdown()


def run(app: Any, *, sockets: Sequence[socket.socket], announce: Callable[[], None],
        **options: Any) -> list[str] | None:
    """uvicorn.run(app, **options) on SOCKETS, bound and listening, instead of binding HOST:PORT again after the model
    loaded; `announce` is called once it serves, and what it raises is raised once the server has shut down. When a
    Ctrl+C cut its drain short, the stop signals that came before it, in order; else None. Exits with uvicorn.run's
    code, STARTUP_FAILURE (3), when the server did not start."""
    server = _Server(uvicorn.Config(app, **options), announce)
    try:
        server.run(sockets=list(sockets))
    except KeyboardInterrupt:  # as uvicorn.run
        pass
    if server.failed is not None:
        raise server.failed
    if not server.started:
        sys.exit(STARTUP_FAILURE)
    return server.before_forced
