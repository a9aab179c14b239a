"""GET /ready's check: the model scores a test image now, within a time limit, in a thread of its own."""
from __future__ import annotations

import asyncio
import logging
import time

from pneumoscan.errors import DamagedModel, ModelFileChanged, first_line, gpu_out_of_memory
from pneumoscan.service.engine import BUSY_RETRY_S, Engine, host_short, log_gpu_full, model_fault

READY_TIMEOUT_S = 5.0
log = logging.getLogger("pneumoscan.service")


class NotReady(Exception):
    """The service cannot analyse a film now; the message says why (no file names, no image data). `retry_after`:
    the seconds after which it may be ready again (a passing cause), else None."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Readiness:
    """Runs `Engine.self_test` for readiness probes. Outside the inference slots, so that a busy service is still
    ready (it queues films, it does not refuse them), but a hung or broken model is not; probes arriving while a
    test is still running wait for that one instead of starting another (a hung model holds one thread, not one
    per probe)."""

    def __init__(self, engine: Engine, timeout_s: float = READY_TIMEOUT_S) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self._running: asyncio.Future[None] | None = None

    async def check(self) -> float:
        """Milliseconds the test took (or had taken when a running one ended); NotReady when it fails or is late."""
        start = time.perf_counter()
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(asyncio.to_thread(self.engine.self_test))
        try:
            await asyncio.wait_for(asyncio.shield(self._running), self.timeout_s)
        except asyncio.TimeoutError:
            log.warning("not ready: the model has not scored a test image in %g s", self.timeout_s)
            raise NotReady(f"the model has not scored a test image within {self.timeout_s:g} s") from None
        except Exception as err:  # noqa: BLE001 - any failure of the model means not ready; its type is logged
            if gpu_out_of_memory(err):
                raise _gpu_full(err) from None
            if host_short(err):  # re-reading the model file, say: it passes
                log.error("not ready: scoring a test image, %s", first_line(err, 300))
                raise NotReady(f"the server ran short of memory or open files scoring a test image; retry in "
                               f"{BUSY_RETRY_S} s", retry_after=BUSY_RETRY_S) from None
            if isinstance(err, (ModelFileChanged, DamagedModel)):  # its message names the file: the log's only
                log.error("not ready: %s", err)
                raise NotReady(f"{model_fault(err)} (the service's log names the model file)") from None
            log.error("not ready: the model failed to score a test image (%s)", type(err).__name__)
            raise NotReady(f"the model failed to score a test image ({type(err).__name__})") from None
        return round((time.perf_counter() - start) * 1000, 2)


def _gpu_full(err: BaseException) -> NotReady:
    """Not ready for now: the GPU had no memory left for the test image (requests under way hold it). Logged as one
    line with torch's reason and the ways out, torch's cached GPU memory freed, as for a request's."""
    log_gpu_full("not ready: scoring a test image, ", err)
    return NotReady(f"the GPU ran out of memory scoring a test image (requests under way may hold it); retry in "
                    f"{BUSY_RETRY_S} s", retry_after=BUSY_RETRY_S)
