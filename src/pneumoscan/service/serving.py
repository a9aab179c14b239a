"""uvicorn serving `serve`'s app on the sockets `check_listen` bound and left listening, so that no other program
takes the port while the model loads, and saying where it serves once it does."""
from __future__ import annotations

import socket
import sys
from typing import Any, Callable, Sequence

import uvicorn
from uvicorn.main import STARTUP_FAILURE  # uvicorn.run's exit code when its server did not start


class _Server(uvicorn.Server):
    """uvicorn's server, calling `announce` once it serves on the sockets it was handed; when `announce` fails
    (stdout full or closed), it stops as on a stop signal, and `failed` holds the error to raise once it has."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[], None]) -> None:
        super().__init__(config)
        self.announce = announce
        self.failed: Exception | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            try:
                self.announce()
            except Exception as err:  # raised here, it cut uvicorn's start-up short: tracebacks, the app not shut down
                self.failed, self.should_exit = err, True


def run(app: Any, *, sockets: Sequence[socket.socket], announce: Callable[[], None], **options: Any) -> None:
    """uvicorn.run(app, **options) on SOCKETS, bound and listening, instead of binding HOST:PORT again after the model
    loaded; `announce` is called once it serves, and what it raises is raised once the server has shut down. Exits
    with uvicorn.run's code, STARTUP_FAILURE (3), when the server did not start."""
    server = _Server(uvicorn.Config(app, **options), announce)
    try:
        server.run(sockets=list(sockets))
    except KeyboardInterrupt:  # as uvicorn.run
        pass
    if server.failed is not None:
        raise server.failed
    if not server.started:
        sys.exit(STARTUP_FAILURE)

