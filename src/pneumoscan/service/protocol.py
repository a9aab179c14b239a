"""Deadlines uvicorn does not have: for receiving a request's head, and for the rest of a body already answered.

uvicorn parses the head before the app runs, so no middleware sees a client that is still sending it; its
keep-alive timer is only armed after a response and any byte received cancels it. A client sending one header
byte every few seconds ("slowloris"), or nothing at all, therefore held a connection and its file descriptor
for ever.
The protocol here is uvicorn's h11 protocol with two timers more. The first runs while the connection waits for
a request's head (from the moment it opens, and again after each response on a kept-alive connection), stopped
as soon as a head is in. A head still incomplete when it fires gets 408 and the connection is closed; a
connection that sent nothing at all is just closed. Request bodies the app reads are not timed here: that is the
upload limits' job (`upload_idle_s`, `upload_total_s`).
The second covers a body the app answered without reading it all (413 for a Content-Length over the limit, 415,
404, 405...): uvicorn then discards the rest of the body as it arrives and keeps the connection for the next
request, so a client trickling that body held the connection for ever too. The rest of the body must now arrive
within the same `header_timeout_s` of the answer, or the connection is closed (as nginx's lingering close does).
"""
from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("pneumoscan.service")

# What the subclass relies on; an installed uvicorn or h11 without it gets uvicorn's own protocol instead.
_PROTOCOL_METHODS = ("connection_made", "connection_lost", "handle_events", "on_response_complete")
_H11_NAMES = ("IDLE", "SEND_BODY", "DONE", "MUST_CLOSE", "Response", "Data", "EndOfMessage", "LocalProtocolError")


def http_protocol(header_timeout_s: float) -> Any:
    """The `http=` argument for uvicorn.run: uvicorn's h11 protocol with a `header_timeout_s` deadline for each
    request's head and for the rest of a body answered before it was all read; "h11" (uvicorn's own, no
    deadlines) with a one-line warning when the installed uvicorn lacks what the deadlines are built on."""
    try:
        import h11
        from uvicorn.protocols.http.h11_impl import H11Protocol
    except ImportError as err:
        return _without_deadline(f"cannot import uvicorn's h11 protocol ({err})")
    missing = [f"H11Protocol.{name}" for name in _PROTOCOL_METHODS if not callable(getattr(H11Protocol, name, None))]
    missing += [f"h11.{name}" for name in _H11_NAMES if not hasattr(h11, name)]
    missing += [] if hasattr(h11.Connection, "trailing_data") else ["h11.Connection.trailing_data"]
    if missing:
        return _without_deadline("the installed uvicorn/h11 lacks " + ", ".join(missing))
    return _with_deadline(H11Protocol, header_timeout_s)


def _without_deadline(why: str) -> str:
    log.warning("no deadline for request headers and early-answered bodies (--header-timeout-s): %s; serving with "
                "uvicorn's h11 protocol", why)
    return "h11"


def _timeout_response(timeout_s: float) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of the 408 for a head not received in time, in the service's JSON error form."""
    body = json.dumps({"detail": f"request headers not received within {timeout_s:g} s; check the connection "
                                 "and send the request again"}).encode()
    return [(b"content-type", b"application/json"), (b"connection", b"close"),
            (b"content-length", str(len(body)).encode())], body


def _with_deadline(base: type, timeout_s: float) -> type:
    """A subclass of uvicorn's H11Protocol `base` that closes a connection whose request head takes over
    `timeout_s` seconds, or whose client still sends the body of a request `timeout_s` seconds after its answer."""
    import h11

    class HeaderDeadlineProtocol(base):  # type: ignore[misc, valid-type]
        header_timeout_s = timeout_s
        _head_timer: Any = None  # asyncio.TimerHandle while waiting for a request's head
        _drain_timer: Any = None  # asyncio.TimerHandle while the client sends the body of an answered request

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._watch()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_head_timer()
            self._stop_drain_timer()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            self._watch()  # a head parsed (the client's h11 state has left IDLE), or an answered body ended

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch()  # kept alive: the next head is due (uvicorn 0.54 also gets here via handle_events)

        def _watch(self) -> None:
            self._watch_head()
            self._watch_drain()

        def _watch_head(self) -> None:
            """Run the timer while the connection waits for a request's head (h11: the client is IDLE), else stop it.
            A timer already running keeps running: bytes of the head arriving do not extend the deadline."""
            if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
                self._stop_head_timer()
            elif self._head_timer is None:
                self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

        def _watch_drain(self) -> None:
            """Run the timer while the client still sends the body of a request whose answer is complete (uvicorn
            discards those bytes), else stop it; bytes arriving do not extend the deadline.
            Closing at once when the answer is complete would be simpler, but a client still writing its body
            would then get a TCP reset, which can make it fail on the write or lose the unread answer (RFC 9112
            section 9.6): it gets `header_timeout_s` to finish sending, or to read the answer and stop."""
            answered = self.conn.our_state in (h11.DONE, h11.MUST_CLOSE)
            if not answered or self.conn.their_state is not h11.SEND_BODY or self.transport.is_closing():
                self._stop_drain_timer()
            elif self._drain_timer is None:
                self._drain_timer = self.loop.call_later(self.header_timeout_s, self._drain_timed_out)

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _stop_drain_timer(self) -> None:
            if self._drain_timer is not None:
                self._drain_timer.cancel()
                self._drain_timer = None

        def _head_timed_out(self) -> None:
            """408 and close for a partly received head; just close a connection that sent nothing since it
            opened or since its last response (an idle browser connection, as uvicorn's keep-alive does)."""
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self.conn.trailing_data[0]:
                log.warning("closed a connection from %s whose request headers were not all received within %g s "
                            "(--header-timeout-s)", self._client_host(), self.header_timeout_s)
                self._send_408()
            self.transport.close()

        def _drain_timed_out(self) -> None:
            """Close a connection whose client is still sending a body already answered; no 408, the answer is
            out."""
            self._drain_timer = None
            if self.transport.is_closing():
                return
            log.warning("closed a connection from %s still sending the body of a request answered %g s earlier "
                        "(--header-timeout-s)", self._client_host(), self.header_timeout_s)
            self.transport.close()

        def _client_host(self) -> str:
            return self.client[0] if self.client else "?"

        def _send_408(self) -> None:
            headers, body = _timeout_response(self.header_timeout_s)
            try:
                for event in (h11.Response(status_code=408, headers=headers, reason=b"Request Timeout"),
                              h11.Data(data=body), h11.EndOfMessage()):
                    self.transport.write(self.conn.send(event))
            except h11.LocalProtocolError:  # h11's state allows no response now: the connection just closes
                pass

    return HeaderDeadlineProtocol
