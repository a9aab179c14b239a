"""`serve --ssl-certfile/--ssl-keyfile`: HTTPS from the service itself, checked before the model loads.

uvicorn hands its SSL context to asyncio's `create_server` without `ssl_handshake_timeout` or
`ssl_shutdown_timeout`, so asyncio's defaults applied: a client that opened a connection and never began the TLS
handshake held it for 60 s (the `--header-timeout-s` deadline only starts once the handshake is done), and a
closed connection whose client never answered the TLS close stayed open 30 s more. `serve` therefore runs uvicorn
on an event loop of its own (`tls_loop`) whose TLS servers accept plain TCP connections and start TLS on each with
asyncio's public `loop.start_tls`, both timeouts bounded. Owning each connection's socket transport that way gives
what asyncio's TLS server keeps to itself: the handshake's outcome with the client's address (a failed one is logged,
at most FAILURE_LINES lines a minute, `_FailureLog`), and the bytes encrypted but not yet taken by the kernel
(`protocol.unsent_bytes`; asyncio's TLS transport counts only those still to encrypt).
A plain-HTTP request to the HTTPS port fails the handshake, which asyncio dropped without a word: OpenSSL says
HTTP_REQUEST only for a request starting `GET `, `POST`, `HEAD` or `PUT `, and WRONG_VERSION_NUMBER for any other
method (OPTIONS, DELETE, PATCH...) as for an SSH banner or a port scanner, so the client's first bytes are kept to
tell them apart (`_PLAIN_METHOD`: a method and its space, or capitals that may begin one, as OpenSSL may give up on a
request's first 5 bytes, `OPTIO`, before the rest has arrived). A plain-HTTP request now gets a plain-HTTP 400 saying to use https://, sent on
the socket as nginx does, then the service's FIN; the connection ends when the client closes it, once it has sent
nothing for the lingering close's idle (LINGER_IDLE_S), or at the handshake deadline. A redirect to https:// was
not chosen: a Host header would have to be trusted to build it, and a redirect would re-send a film that just
crossed the network unencrypted.
A connection still in its handshake (or answered as plain HTTP) is not one of uvicorn's, so a stop did not end it:
since Python 3.12.1 `Server.wait_closed()` waits for every accepted connection, and one such client held the stop
for the whole handshake deadline. Closing a TLS server now aborts them, as 3.13's `Server.close_clients` would.
asyncio counts the wait for the client's TLS close from the close, and then drops what is still unsent: the service's
protocol (`protocol.py`) closes a TLS connection only once its answers are sent.
"""
from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pneumoscan.errors import InputError
from pneumoscan.service.protocol import IdleClose

log = logging.getLogger("pneumoscan.service")

CERT_MARKER = b"CERTIFICATE-----"
KEY_MARKER = b"PRIVATE KEY-----"  # PKCS#8 ("PRIVATE KEY"), or PKCS#1 and SEC 1 ("RSA PRIVATE KEY", "EC PRIVATE KEY")
SHUTDOWN_S = 2.0  # the longest wait for the client's TLS close once the service's is sent (the lingering close's idle)
FAILURE_LINES = 10  # failed handshakes logged a minute at most; one more line then says how many were not
FAILURE_WINDOW_S = 60.0
PLAIN_HTTP_DETAIL = ("this port speaks HTTPS: send the request again to https:// (this one crossed the network "
                     "unencrypted, and was not read)")
# OpenSSL's reasons for a client that refused the service's certificate, and for no protocol version in common
UNTRUSTED = ("TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
             "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_EXPIRED", "TLSV1_ALERT_ACCESS_DENIED")
NO_COMMON_VERSION = ("UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "VERSION_TOO_LOW", "VERSION_TOO_HIGH",
                     "NO_PROTOCOLS_AVAILABLE", "NO_SHARED_CIPHER")
NOT_TLS = "WRONG_VERSION_NUMBER"  # the first bytes are no TLS record (a TLS version mismatch is UNSUPPORTED_PROTOCOL)
# OpenSSL's reasons for bytes that may be a plain-HTTP request: HTTP_REQUEST (`GET `, `POST`, `HEAD`, `PUT `) is one;
# the others (CONNECT's HTTPS_PROXY_REQUEST, any other method's WRONG_VERSION_NUMBER) when `_PLAIN_METHOD` matches
PLAIN_HTTP_REASONS = ("HTTP_REQUEST", "HTTPS_PROXY_REQUEST", NOT_TLS)
# a method and its space, or the capitals the client's first bytes end in that may begin one (OPTIO|NS); not
# HTTP/2's preface (PRI *), which an HTTP/1.1 400 would not answer
_PLAIN_METHOD = re.compile(rb"(?!PRI )[A-Z]{3,10} |[A-Z]{1,10}\Z")
METHOD_MAX = 11  # the client's bytes kept: a method's 10 capitals at most and its space

_CONNECTION: contextvars.ContextVar[_Handshake | None] = contextvars.ContextVar("pneumoscan_tls", default=None)


def _plain_http_400() -> bytes:
    """The plain-HTTP answer to a plain-HTTP request on the HTTPS port, in the service's JSON error form."""
    body = json.dumps({"detail": PLAIN_HTTP_DETAIL}).encode()
    return (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def is_plain_http(reason: str | None, first: bytes) -> bool:
    """Whether a handshake that failed for OpenSSL's REASON, the client's FIRST bytes, was a plain-HTTP request."""
    if reason == "HTTP_REQUEST":
        return True
    return reason in PLAIN_HTTP_REASONS and _PLAIN_METHOD.match(first) is not None


class _ServerObject(ssl.SSLObject):
    """The TLS state of one connection, knowing its `_Handshake` (None when made by another loop's server): a
    plain-HTTP request gets its 400 and the handshake then waits, dropping what comes, for the client's close."""

    connection: _Handshake | None = None
    incoming: ssl.MemoryBIO
    outgoing: ssl.MemoryBIO
    rejected = False
    first = b""  # the client's first bytes while they may begin a plain-HTTP request (METHOD_MAX at most)
    keeping = True

    def do_handshake(self) -> None:
        if self.rejected:
            if self.incoming.pending and self.connection is not None and self.connection.idle is not None:
                self.connection.idle.heard()
            self.incoming.read()  # the rest of a plain-HTTP request, dropped
            raise ssl.SSLWantReadError("a plain-HTTP request, answered; waiting for the client to close")
        if self.connection is not None and self.incoming.pending:
            self.connection.received = True
            self._keep_first()
        try:
            super().do_handshake()
        except ssl.SSLError as err:
            if self.connection is None or not is_plain_http(err.reason, self.first):
                raise
            self.rejected = True
            self.outgoing.read()  # nothing of TLS's may follow the plain answer
            self.connection.answer_plain_http()
            raise ssl.SSLWantReadError("a plain-HTTP request, answered") from None

    def _keep_first(self) -> None:
        """Copy the client's first bytes into `first` while they may begin a request; OpenSSL reads them afterwards.
        A TLS client's are not kept: its first byte (a TLS record's type) is no capital letter."""
        if not self.keeping:
            return
        data = self.incoming.read()
        self.incoming.write(data)  # all of them read, all written back: the same bytes in the same order
        self.first = (self.first + data)[:METHOD_MAX]
        if not self.first[:1].isupper():
            self.first, self.keeping = b"", False
        elif len(self.first) == METHOD_MAX:
            self.keeping = False


class _TlsContext(ssl.SSLContext):
    """The server's SSL context; each connection's `_ServerObject` gets its `_Handshake` and its memory BIOs."""

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: str | None = None, session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        obj = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        if isinstance(obj, _ServerObject):
            obj.connection = _CONNECTION.get()  # start_tls makes the object in the connection's task, synchronously
            obj.incoming, obj.outgoing = incoming, outgoing
        return obj


def _check_file(path: str, flag: str, what: str, marker: bytes, convert: str) -> None:
    """InputError naming FLAG and PATH when PATH is not a readable file holding the PEM MARKER."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{flag} {path}: no such file; give the {what} in PEM format")
    if not os.access(file, os.R_OK):
        raise InputError(f"{flag} {path}: not readable by this user; let the service's user read it "
                         f"(chmod 640 and chgrp to its group)")
    if marker not in file.read_bytes():
        raise InputError(f"{flag} {path}: no {what} in PEM format in it (no '-----BEGIN ...{marker.decode()}'); "
                         f"convert a DER file with: openssl {convert} -inform der -in FILE -out FILE.pem")


def tls_context(certfile: str, keyfile: str | None) -> ssl.SSLContext:
    """The server's SSL context for CERTFILE (the certificate chain, PEM) and KEYFILE (its private key, PEM; None:
    in CERTFILE); InputError naming the file and the fix when either cannot be used."""
    _check_file(certfile, "--ssl-certfile", "server certificate", CERT_MARKER, "x509")
    if keyfile is not None:
        _check_file(keyfile, "--ssl-keyfile", "certificate's private key", KEY_MARKER, "pkey")
    elif KEY_MARKER not in Path(certfile).read_bytes():
        raise InputError(f"--ssl-certfile {certfile}: no private key in it; give the certificate's key with "
                         f"--ssl-keyfile")
    key_flag, key_path = ("--ssl-keyfile", keyfile) if keyfile else ("--ssl-certfile", certfile)
    asked: list[bool] = []

    def password() -> bytes:
        asked.append(True)
        return b""  # never a prompt on the terminal: an encrypted key fails to load instead

    context = _TlsContext(ssl.PROTOCOL_TLS_SERVER)
    context.sslobject_class = _ServerObject
    try:
        context.load_cert_chain(certfile, keyfile, password=password)
    except ssl.SSLError as err:
        raise InputError(_load_error(err, certfile, key_flag, key_path, bool(asked))) from None
    return context


def _load_error(err: ssl.SSLError, certfile: str, key_flag: str, key_path: str, encrypted: bool) -> str:
    """The one line for a certificate and key OpenSSL refused."""
    if encrypted:
        return (f"{key_flag} {key_path}: the private key is encrypted with a passphrase; give it unencrypted "
                f"(openssl pkey -in KEY -out KEY.plain), readable only by the service's user")
    if err.reason in ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED"):  # the second: a key of another type
        chain = Path(certfile).read_bytes().count(b"-----BEGIN CERTIFICATE-----") > 1  # OpenSSL checks the first
        order, first = (", or the file does not start with the server's own certificate (its chain after it)",
                        ", or put the server's certificate first") if chain else ("", "")
        return (f"{key_flag} {key_path}: this private key does not belong to the certificate in --ssl-certfile "
                f"{certfile}{order}; give the key the certificate was issued for{first}")
    why = err.reason or "damaged or incomplete PEM"
    if key_flag == "--ssl-certfile":
        return (f"--ssl-certfile {certfile}: no private key in it that OpenSSL can read ({why}); "
                f"give the key with --ssl-keyfile")
    return (f"--ssl-certfile {certfile} / --ssl-keyfile {key_path}: OpenSSL cannot read them ({why}); "
            f"give the certificate chain and its private key, both in PEM format")


def failure_reason(err: BaseException, received: bool, handshake_s: float) -> str | None:
    """Why a TLS handshake failed, in words for the log; None for a client that sent nothing before it closed or
    was closed at the deadline (a TCP health check, a browser's spare connection), as over plain HTTP."""
    if isinstance(err, ssl.SSLError):
        reason = err.reason or type(err).__name__
        if reason == NOT_TLS:
            return f"the client did not speak TLS ({reason})"
        if reason in UNTRUSTED:
            return f"the client does not trust this service's certificate ({reason})"
        if reason in NO_COMMON_VERSION:
            return f"the client and the service have no TLS version or cipher in common ({reason})"
        return f"TLS error {reason}"
    if not received:
        return None
    if isinstance(err, ConnectionAbortedError):  # asyncio's handshake timeout
        return f"the handshake was not done within {handshake_s:g} s (--header-timeout-s)"
    if isinstance(err, (ConnectionResetError, BrokenPipeError)):
        return "the client closed or reset the connection during the handshake"
    return f"{type(err).__name__}: {err}"


class _FailureLog:
    """One warning a failed handshake, at most FAILURE_LINES in FAILURE_WINDOW_S; those beyond are counted, and one
    line at the window's end says how many were not logged (a scanner or a misconfigured client cannot flood the
    log)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.window_end = 0.0
        self.lines = 0
        self.unlogged = 0

    def warn(self, message: str, *args: object) -> None:
        now = self.loop.time()
        if now >= self.window_end:
            self.window_end, self.lines = now + FAILURE_WINDOW_S, 0
        if self.lines < FAILURE_LINES:
            self.lines += 1
            log.warning(message, *args)
            return
        if not self.unlogged:
            self.loop.call_at(self.window_end, self._say_unlogged)
        self.unlogged += 1

    def _say_unlogged(self) -> None:
        log.warning("%d more failed TLS handshakes in the last %g s were not logged (at most %d lines in that time)",
                    self.unlogged, FAILURE_WINDOW_S, FAILURE_LINES)
        self.unlogged = 0


class _Waiting(asyncio.Protocol):
    """The app's protocol as start_tls sees it: what the TLS layer delivers before `_Handshake` hands the connection
    to the app (the client's first request can come with the end of its handshake) is held for it."""

    def __init__(self) -> None:
        self.app: asyncio.Protocol | None = None
        self.held: list[bytes | None] = []  # None: the client's end of data
        self.lost = False

    def hand_over(self, app: asyncio.Protocol) -> None:
        self.app = app
        for data in self.held:
            app.eof_received() if data is None else app.data_received(data)

    def data_received(self, data: bytes) -> None:
        self.app.data_received(data) if self.app else self.held.append(data)

    def eof_received(self) -> bool | None:
        if self.app:
            return self.app.eof_received()
        self.held.append(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.app:
            self.app.connection_lost(exc)
        else:
            self.lost = True

    def pause_writing(self) -> None:
        if self.app:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.app:
            self.app.resume_writing()


class _Handshake(asyncio.Protocol):
    """A TCP connection to the HTTPS port until its TLS handshake is done: it then goes to the app's protocol `app`
    (which learns its socket transport, `socket_transport`); a failed one is logged, a plain-HTTP request answered."""

    def __init__(self, loop: _TlsLoop, app: asyncio.Protocol, failures: _FailureLog,
                 handshaking: set[_Handshake]) -> None:
        self.loop, self.app, self.failures, self.handshaking = loop, app, failures, handshaking
        self.transport: asyncio.Transport | None = None
        self.received = False  # the client sent something during the handshake
        self.plain_http = False
        self.idle: IdleClose | None = None  # after a plain-HTTP answer: closes once the client sends nothing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.pause_reading()  # start_tls reads the client's first bytes, not this protocol
        self.handshaking.add(self)
        self.loop.create_task(self._start_tls())

    def connection_lost(self, exc: Exception | None) -> None:
        pass  # before start_tls took the connection over: its failure is start_tls's

    def _client(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if peer else "?"

    async def _start_tls(self) -> None:
        waiting = _Waiting()
        _CONNECTION.set(self)  # in this task's own context: read by `_TlsContext.wrap_bio` within start_tls
        try:
            if self.transport.is_closing():  # aborted by the server's close before this task ran
                return
            tls = await self.loop.start_tls(
                self.transport, waiting, self.loop.context, server_side=True,  # type: ignore[arg-type]
                ssl_handshake_timeout=self.loop.handshake_s, ssl_shutdown_timeout=SHUTDOWN_S)
        except Exception as err:  # noqa: BLE001  # a failed handshake: one line, never a traceback
            why = None if self.plain_http else failure_reason(err, self.received, self.loop.handshake_s)
            if why is not None:
                self.failures.warn("TLS handshake with %s failed: %s", self._client(), why)
            return
        finally:
            self.handshaking.discard(self)
            if self.idle is not None:
                self.idle.cancel()
        if tls is None or waiting.lost:  # closed without an error: aborted, or closed after a plain-HTTP answer
            return
        self.app.socket_transport = self.transport  # type: ignore[attr-defined]
        tls.set_protocol(self.app)
        self.app.connection_made(tls)
        waiting.hand_over(self.app)

    def answer_plain_http(self) -> None:
        """Answer a plain-HTTP request with a plain-HTTP 400, and shut the service's side."""
        self.plain_http = True
        self.failures.warn("a plain-HTTP request from %s came to this HTTPS port; answered 400, the client must use "
                           "https://", self._client())
        self.transport.write(_plain_http_400())
        self.transport.write_eof()
        # closed once the client has sent nothing for LINGER_IDLE_S: it waited for the handshake deadline, and held
        # a stop that long on Python 3.12.1+
        self.idle = IdleClose(self.loop, self.transport.close)

    def abort(self) -> None:
        """End the connection at once: the server is closing."""
        self.transport.abort()


class _TlsLoop(asyncio.SelectorEventLoop):  # what uvicorn's "auto" loop is without uvloop installed
    """asyncio's event loop whose TLS servers accept TCP connections and start TLS on each with `context` (its
    plain-HTTP answer), closing a connection still without a handshake after `handshake_s` or when the server
    closes, and waiting at most SHUTDOWN_S for a client's TLS close."""

    context: ssl.SSLContext
    handshake_s: float

    async def create_server(self, protocol_factory: Callable[[], asyncio.BaseProtocol],  # type: ignore[override]
                            *args: Any, **kwargs: Any) -> asyncio.Server:
        if kwargs.get("ssl") is None:
            return await super().create_server(protocol_factory, *args, **kwargs)
        kwargs["ssl"] = None
        for name in ("ssl_handshake_timeout", "ssl_shutdown_timeout"):  # asyncio refuses them without `ssl`
            kwargs.pop(name, None)
        failures = _FailureLog(self)
        handshaking: set[_Handshake] = set()
        server = await super().create_server(
            lambda: _Handshake(self, protocol_factory(), failures, handshaking),  # type: ignore[arg-type]
            *args, **kwargs)
        server.close = _aborting(server.close, handshaking)  # type: ignore[method-assign]
        return server


def _aborting(close: Callable[[], None], handshaking: set[_Handshake]) -> Callable[[], None]:
    """A server's `close` that also aborts its connections still in their handshake: uvicorn's stop knows only the
    connections handed to it, and `Server.wait_closed()` waits for all since Python 3.12.1."""

    def close_and_abort() -> None:
        close()
        for connection in list(handshaking):
            connection.abort()

    return close_and_abort


def tls_loop(context: ssl.SSLContext, handshake_s: float) -> Callable[[], asyncio.AbstractEventLoop]:
    """The `loop=` argument of uvicorn's Config (`serving.run`; a loop factory, as uvicorn 0.36+ takes one): asyncio's
    event loop serving TLS with CONTEXT, a handshake not done within `handshake_s` closing the connection."""

    def new_loop() -> asyncio.AbstractEventLoop:
        loop = _TlsLoop()
        loop.context, loop.handshake_s = context, handshake_s
        return loop

    return new_loop
