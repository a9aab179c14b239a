"""A byte budget for upload bodies held in memory, shared by all requests of the service.

Each request reserves what its body may hold before reading a byte of it (its Content-Length, or
the whole body limit when it declares none) and gives it all back when it ends, however it ends.
Bodies not yet admitted stay in the client and the socket buffers, not in the service's memory.
A request that does not fit waits its turn (first come, first served) for at most `wait_s`,
then gets 503 with Retry-After.
"""
from __future__ import annotations

import logging
from collections import deque
from types import TracebackType

import anyio
from fastapi import HTTPException

RETRY_AFTER_S = 5
log = logging.getLogger("pneumoscan.service")


class _Waiter:
    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.granted = anyio.Event()


class UploadBudget:
    """At most `capacity` bytes of upload bodies held at once, across concurrent requests."""

    def __init__(self, capacity: int, wait_s: float) -> None:
        self.capacity = capacity
        self.available = capacity
        self.wait_s = wait_s
        self.grants = 0  # reservations granted so far: one that came and went meanwhile changed it
        self._queue: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        """Requests queued for upload memory."""
        return len(self._queue)

    def reservation(self) -> Reservation:
        """What one request holds: `async with budget.reservation() as r: await r.take(n) ...`."""
        return Reservation(self)

    async def take(self, nbytes: int) -> bool:
        """Reserve `nbytes`, waiting at most `wait_s` behind earlier requests; False when they did not free up."""
        if nbytes > self.capacity:
            raise ValueError(f"{nbytes} bytes can never fit a budget of {self.capacity}")
        if not self._queue and nbytes <= self.available:
            self.available -= nbytes
            self.grants += 1
            return True
        waiter = _Waiter(nbytes)
        self._queue.append(waiter)
        try:
            with anyio.move_on_after(self.wait_s):
                await waiter.granted.wait()
        except BaseException:  # cancelled (the request is being torn down)
            self._leave(waiter)
            raise
        if waiter.granted.is_set():
            return True
        self._leave(waiter)
        return False

    def give(self, nbytes: int) -> None:
        """Return bytes reserved by `take`, and admit waiting requests they make room for."""
        self.available += nbytes
        self._admit()

    def _leave(self, waiter: _Waiter) -> None:
        """Take `waiter` out: bytes granted to it go back, and those behind it may now fit."""
        if waiter.granted.is_set():
            self.give(waiter.nbytes)
        else:
            self._queue.remove(waiter)
            self._admit()

    def _admit(self) -> None:
        while self._queue and self._queue[0].nbytes <= self.available:
            waiter = self._queue.popleft()
            self.available -= waiter.nbytes
            self.grants += 1
            waiter.granted.set()


class Reservation:
    """The upload bytes one request holds; all given back when its `async with` block ends."""

    def __init__(self, budget: UploadBudget) -> None:
        self.budget = budget
        self.held = 0

    async def take(self, nbytes: int) -> None:
        """Hold `nbytes` more, or raise 503 (with Retry-After) when they do not free up in time."""
        if not await self.budget.take(nbytes):
            budget = self.budget
            mb = round(budget.capacity / (1024 * 1024), 1)
            log.warning("upload memory full: %.1f of %g MB held, a request for %.1f MB more waited %g s; answered 503",
                        (budget.capacity - budget.available) / (1024 * 1024), mb, nbytes / (1024 * 1024),
                        budget.wait_s)
            raise HTTPException(503, f"server busy: uploads under way fill the {mb:g} MB of memory set aside for "
                                     f"them; retry in {RETRY_AFTER_S} s",
                                headers={"Retry-After": str(RETRY_AFTER_S)})
        self.held += nbytes

    async def __aenter__(self) -> Reservation:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, err: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.budget.give(self.held)
        self.held = 0
