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
An answer that closes the connection (a 408 above or for a stalled upload, any answer to HTTP/1.0 or to a client
that sent `Connection: close`, uvicorn's 400 for a malformed head) came while the client could still be sending.
uvicorn closed the socket at once, and the bytes it had not read made the kernel reset the connection: the
client's write failed with ECONNRESET, and an answer not yet delivered (still queued, or lost and due again) was
lost with it. Such a close is now lingering, as in nginx and Apache: the answer goes out and then a FIN (the write
side is shut), what the client still sends is read and dropped, and the connection closes when the client closes
its side, `header_timeout_s` after the answer (the time the rest of a body answered early gets when the connection
is kept, too), after `LINGER_IDLE_S` without a byte from it, or once `LINGER_BYTES` have been dropped, whichever
comes first. A client still sending then is reset: a socket closed with bytes unread, or with bytes still
arriving, makes the kernel reset the connection, so only waiting for the client for ever would spare it.
Connections whose request is all in close at once, as before, and kept-alive ones are not touched.
The app never sees the 408 and uvicorn's 400, so neither had an access line nor an X-Request-ID: both now carry a
new request id in that header and in an access line of the same form as uvicorn's (the client's address, the
request line, "-" when there is no whole one, the status). A 400 for a malformed body of a request under way gives
that request's line and the id the app gave it.
Under TLS (`tls.py`), asyncio's close sends the TLS close, waits `SHUTDOWN_S` for the client's, and then drops
whatever the kernel has not taken yet, counting from the close, not from the answer's last byte: a client reading a
large answer slowly lost its tail. A close over TLS therefore waits until the kernel has taken every byte written,
as asyncio's close over plain TCP does, and cuts off a client that took none for `header_timeout_s` (it stopped
reading). Over plain TCP asyncio's close waited for that without end: a client that stopped reading an answer larger
than the kernel's buffers (a few MB on loopback) held its connection, and the unsent rest of the answer in memory,
until the service stopped, and held that stop for all of --shutdown-timeout-s. It is cut off the same way now.
"""
from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

from pneumoscan.errors import raise_if_interrupted
from pneumoscan.service.tracking import request_id

log = logging.getLogger("pneumoscan.service")

LINGER_IDLE_S = 2.0  # it also ends once the client has sent nothing for this long (Apache lingers 2 s a read)
LINGER_BYTES = 64 * 1024 * 1024  # dropped at most while lingering: a fast client cannot keep the service reading
SENT_POLL_S = 0.05  # how often a TLS close waiting for its answers to be sent looks again
REQUEST_LINE_MAX = 8192  # a longer request line is not given in the access line of a 400 or 408
_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([\x21-\x7e]+) HTTP/([0-9]\.[0-9])\r?\n")

# What the subclass relies on; an installed uvicorn or h11 without it gets uvicorn's own protocol instead.
_PROTOCOL_METHODS = ("connection_made", "connection_lost", "data_received", "handle_events", "on_response_complete",
                     "shutdown", "send_400_response")
_H11_NAMES = ("IDLE", "SEND_BODY", "DONE", "MUST_CLOSE", "ERROR", "Response", "Data", "EndOfMessage",
              "LocalProtocolError")


def http_protocol(header_timeout_s: float) -> Any:
    """The `http=` argument of uvicorn's Config (`serving.run`): uvicorn's h11 protocol with a `header_timeout_s`
    deadline for each request's head and for the rest of a body answered before it was all read, and lingering
    closes; "h11" (uvicorn's own, neither) with a one-line warning when the installed uvicorn lacks what they are
    built on."""
    try:
        import h11
        from uvicorn.protocols.http.h11_impl import H11Protocol
    except ImportError as err:
        raise_if_interrupted(err)
        return _without_deadline(f"cannot import uvicorn's h11 protocol ({err})")
    missing = [f"H11Protocol.{name}" for name in _PROTOCOL_METHODS if not callable(getattr(H11Protocol, name, None))]
    missing += [f"h11.{name}" for name in _H11_NAMES if not hasattr(h11, name)]
    missing += [] if hasattr(h11.Connection, "trailing_data") else ["h11.Connection.trailing_data"]
    if missing:
        return _without_deadline("the installed uvicorn/h11 lacks " + ", ".join(missing))
    return _with_deadline(H11Protocol, header_timeout_s)


def _without_deadline(why: str) -> str:
    log.warning("no deadline for request headers and early-answered bodies (--header-timeout-s), and no lingering "
                "close: %s; serving with uvicorn's h11 protocol", why)
    return "h11"


def _timeout_response(timeout_s: float, rid: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of the 408 for a head not received in time, in the service's JSON error form."""
    body = json.dumps({"detail": f"request headers not received within {timeout_s:g} s; check the connection "
                                 "and send the request again"}).encode()
    return [(b"content-type", b"application/json"), (b"connection", b"close"),
            (b"content-length", str(len(body)).encode()), (b"x-request-id", rid.encode("ascii"))], body


def request_line(head: bytes) -> tuple[str, str, str] | None:
    """Method, path and HTTP version of the request line HEAD starts with, the path as uvicorn's access lines give
    it; None when HEAD does not start with a whole, well-formed one (nothing else of it is ever logged)."""
    match = _REQUEST_LINE.match(head.lstrip(b"\r\n"))
    if match is None:
        return None
    method, target, version = (part.decode("ascii") for part in match.groups())
    path, _, query = target.partition("?")
    return method, quote(unquote(path)) + (f"?{query}" if query else ""), version


def log_access(client: tuple[str, int] | None, line: tuple[str, str, str] | None, status: int, rid: str) -> None:
    """An access line for an answer uvicorn or this protocol sent itself, in the form of uvicorn's own (None as the
    method when the request line is not known: `tracking.access_formatter` writes "-" for it), with its id."""
    access = logging.getLogger("uvicorn.access")
    if access.hasHandlers():  # as uvicorn decides; `serve` and uvicorn's --no-access-log remove them
        method, path, version = line or (None, "", "")
        access.info('%s - "%s %s HTTP/%s" %d', "%s:%d" % client if client else "", method, path, version, status,
                    extra={"request_id": rid})


def unsent_bytes(raw: Any, socket_transport: Any = None) -> int | None:
    """Bytes written to RAW that the kernel has not taken yet. Over plain TCP, its write buffer's; over TLS, those
    still to encrypt (RAW's own count) and those encrypted but not yet taken (SOCKET_TRANSPORT's, the TCP transport
    under RAW, which `tls.py` gives the protocol); None over TLS without it (uvicorn's own TLS server), or once that
    transport is closing."""
    if raw.get_extra_info("sslcontext") is None:
        return int(raw.get_write_buffer_size())
    if socket_transport is None or socket_transport.is_closing():
        return None
    return int(raw.get_write_buffer_size() + socket_transport.get_write_buffer_size())


class IdleClose:
    """Calls `close` once the client has sent nothing for LINGER_IDLE_S (`heard`: it sent something), or at the loop
    time `end` at the latest: the end of a lingering close, and of a plain-HTTP request answered on the HTTPS port."""

    def __init__(self, loop: Any, close: Callable[[], None], end: float = math.inf) -> None:
        self.loop, self.close, self.end = loop, close, end
        self.last_byte = loop.time()
        self.timer: Any = None  # asyncio.TimerHandle until it closes or is cancelled
        self._check()

    def heard(self) -> None:
        """The client sent something."""
        self.last_byte = self.loop.time()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check(self) -> None:
        """Close when it is over, else look again when it may be."""
        due = min(self.end, self.last_byte + LINGER_IDLE_S)
        if self.loop.time() >= due:
            self.timer = None
            self.close()
        else:
            self.timer = self.loop.call_at(due, self._check)


class _Transport:
    """The socket transport as uvicorn sees it: its `close()` is the protocol's `close`, which may linger, and while
    lingering it says it is closing and writes nothing (the write side is shut); the rest is `raw`'s own."""

    def __init__(self, raw: Any, close: Callable[[], None]) -> None:
        self.raw = raw
        self.lingering = False
        self._close = close

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)

    def is_closing(self) -> bool:
        return self.lingering or self.raw.is_closing()

    def write(self, data: bytes) -> None:
        if not self.lingering:
            self.raw.write(data)

    def close(self) -> None:
        self._close()


def _with_deadline(base: type, timeout_s: float) -> type:
    """A subclass of uvicorn's H11Protocol `base` that closes a connection whose request head takes over
    `timeout_s` seconds, or whose client still sends the body of a request `timeout_s` seconds after its answer,
    and closes lingeringly a connection whose client may still be sending."""
    import h11

    class HeaderDeadlineProtocol(base):  # type: ignore[misc, valid-type]
        header_timeout_s = timeout_s
        _head_timer: Any = None  # asyncio.TimerHandle while waiting for a request's head
        _drain_timer: Any = None  # asyncio.TimerHandle while the client sends the body of an answered request
        _linger: IdleClose | None = None  # while closing lingeringly
        _sent_timer: Any = None  # asyncio.TimerHandle while a TLS close waits for its answers to be sent
        _unsent = 0  # their bytes the kernel had not taken when last looked
        _sent_progress = 0.0  # loop time the kernel was last seen taking some
        _dropped = 0  # bytes read and dropped while lingering
        _head_start = b""  # the start of the head being parsed, for the access line of a 400 to it
        _shutting_down = False
        socket_transport: Any = None  # under TLS, the TCP transport under the TLS one (set by `tls._Handshake`)

        def connection_made(self, transport: Any) -> None:
            super().connection_made(_Transport(transport, self._close))
            self._watch()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_head_timer()
            self._stop_drain_timer()
            self._stop_linger_timer()
            if self._sent_timer is not None:
                self._sent_timer.cancel()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if not self.transport.lingering:
                super().data_received(data)
                return
            if self._linger is not None:
                self._linger.heard()
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self.transport.raw.close()

        def shutdown(self) -> None:
            """The server stops: no lingering from now on, a lingering close ends now, and a TLS close no longer
            waits for the client's TLS close (an idle kept-alive client that never sends one held the stop for
            SHUTDOWN_S). Answers still being sent are sent first."""
            self._shutting_down = True
            if self._sent_timer is not None:
                return  # it closes once they are sent, now without waiting for the client's TLS close
            if self._abort_closed_tls():
                return
            if self.transport.lingering:
                self._close_once_sent()
            else:
                super().shutdown()

        def handle_events(self) -> None:
            # A head parsed here goes to the app, which answers it later: a 400 in this call is for that head (or
            # the body of its request, under way); parsed after another request it is not known.
            idle = self.conn.their_state is h11.IDLE
            self._head_start = self.conn.trailing_data[0][:REQUEST_LINE_MAX] if idle else b""
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

        def _abort_closed_tls(self) -> bool:
            """During a stop: a TLS connection already closed (its TLS close sent after a closing answer, every byte
            taken by the kernel) stops waiting up to SHUTDOWN_S for the client's TLS close; True when it did. A second
            `close()` would not do it: asyncio's TLS transport then forgets its protocol, and `abort()` does nothing."""
            raw = self.transport.raw
            tls = raw.get_extra_info("sslcontext") is not None
            if tls and raw.is_closing() and unsent_bytes(raw, self.socket_transport) == 0:
                raw.abort()
                return True
            return False

        def _close(self) -> None:
            """What `transport.close()` does, wherever uvicorn or this class calls it: a lingering close when the
            client may still be sending (closing at once would reset the connection), else a close."""
            raw = self.transport.raw
            if self.transport.lingering:
                return
            if raw.is_closing() or raw.get_protocol() is not self:
                if self._shutting_down and self._abort_closed_tls():
                    return
                raw.close()  # as before; `raw.get_protocol()` is another protocol after a WebSocket upgrade
                return
            if self._shutting_down or not self._client_sending():
                self._close_once_sent()
                return
            self._stop_head_timer()
            self._stop_drain_timer()
            self.transport.lingering = True
            self._linger = IdleClose(self.loop, self._close_once_sent, self.loop.time() + self.header_timeout_s)
            try:
                if raw.can_write_eof():  # not with TLS: the answer's Content-Length ends it for the client
                    raw.write_eof()  # a FIN once the answer is out: the client knows there is no more
            except OSError:  # the client reset the connection meanwhile
                raw.close()
                return
            raw.resume_reading()  # uvicorn may have paused it for a body the app did not read

        def _close_once_sent(self) -> None:
            """Close the connection once the kernel has taken all its answers' bytes. asyncio's TLS close waits
            SHUTDOWN_S for the client's TLS close and then drops whatever is still unsent: an answer a client was
            still reading slowly lost its tail; its plain close waits for them without end. A client that takes no
            byte for `header_timeout_s` (it stopped reading) is cut off then."""
            self._stop_linger_timer()
            unsent = unsent_bytes(self.transport.raw, self.socket_transport)
            if unsent is None:  # TLS without its TCP transport (uvicorn's own server): as asyncio's close does
                self.transport.raw.close()
            elif unsent == 0:
                self._close_sent()
            else:
                self.transport.lingering = True  # closing, as uvicorn sees it; what the client sends is dropped
                self._unsent, self._sent_progress = unsent, self.loop.time()
                self._sent_timer = self.loop.call_later(SENT_POLL_S, self._check_sent)

        def _check_sent(self) -> None:
            """Close once the answers are sent, cut off a client that stopped reading them, else look again."""
            self._sent_timer = None
            raw = self.transport.raw
            unsent = unsent_bytes(raw, self.socket_transport)
            if raw.is_closing() or unsent is None:  # closed meanwhile (LINGER_BYTES dropped), or the socket lost
                return
            if unsent == 0:
                self._close_sent()
                return
            now = self.loop.time()
            if unsent < self._unsent:
                self._unsent, self._sent_progress = unsent, now
            elif now - self._sent_progress >= self.header_timeout_s:
                log.warning("closed a connection from %s whose client took none of its answer for %g s "
                            "(--header-timeout-s); %d bytes of it were not sent", self._client_host(),
                            self.header_timeout_s, unsent)
                raw.abort()
                return
            self._sent_timer = self.loop.call_later(SENT_POLL_S, self._check_sent)

        def _close_sent(self) -> None:
            """The close, everything sent (under TLS, the TLS close); when the server stops, without waiting for the
            client's TLS close."""
            raw = self.transport.raw
            raw.close()  # sends the service's TLS close, or the FIN, at once: nothing is ahead of it
            if self._shutting_down:
                raw.abort()

        def _client_sending(self) -> bool:
            """The client's request is not all in (its head or body; h11 stopped reading a malformed one), or it
            sent bytes not yet parsed."""
            return self.conn.their_state in (h11.SEND_BODY, h11.ERROR) or bool(self.conn.trailing_data[0])

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _stop_linger_timer(self) -> None:
            if self._linger is not None:
                self._linger.cancel()

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
            self.transport.raw.close()  # not lingering: the client had that time already

        def _client_host(self) -> str:
            return self.client[0] if self.client else "?"

        def _send_408(self) -> None:
            rid = request_id(None)
            headers, body = _timeout_response(self.header_timeout_s, rid)
            try:
                for event in (h11.Response(status_code=408, headers=headers, reason=b"Request Timeout"),
                              h11.Data(data=body), h11.EndOfMessage()):
                    self.transport.write(self.conn.send(event))
            except h11.LocalProtocolError:  # h11's state allows no response now: the connection just closes
                return
            log_access(self.client, request_line(self.conn.trailing_data[0][:REQUEST_LINE_MAX]), 408, rid)

        def send_400_response(self, msg: str) -> None:
            """uvicorn's 400 for a malformed request (the same answer), with an X-Request-ID and an access line."""
            line, rid = self._malformed_request()
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close"),
                       (b"x-request-id", rid.encode("ascii"))]
            try:
                for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                              h11.Data(data=msg.encode("ascii")), h11.EndOfMessage()):
                    self.transport.write(self.conn.send(event))
            except h11.LocalProtocolError:  # answered already (the rest of its body was being dropped): just close
                self.transport.close()
                return
            log_access(self.client, line, 400, rid)
            self.transport.close()

        def _malformed_request(self) -> tuple[tuple[str, str, str] | None, str]:
            """The request line and id for a 400: those of the request under way when its body is malformed (a new
            id if the app has not given it one yet), else the line the malformed head starts with and a new id."""
            if self.cycle is not None and not self.cycle.response_complete:
                scope = self.scope
                query = scope["query_string"].decode("latin-1")
                line = (scope["method"], quote(scope["path"]) + (f"?{query}" if query else ""), scope["http_version"])
                state = scope.setdefault("state", {})
                if "request_id" not in state:  # head and body in one read: the app, not begun yet, takes this id
                    state["request_id"] = request_id(dict(scope["headers"]).get(b"x-request-id"))
                return line, state["request_id"]
            return request_line(self._head_start), request_id(None)

    return HeaderDeadlineProtocol
