"""`serve --ssl-certfile/--ssl-keyfile`: HTTPS from the service itself, checked before the model loads.

uvicorn hands its SSL context to asyncio's `create_server` without `ssl_handshake_timeout` or
`ssl_shutdown_timeout`, so asyncio's defaults applied: a client that opened a connection and never began the TLS
handshake held it for 60 s (the `--header-timeout-s` deadline only starts once the handshake is done), and a
closed connection whose client never answered the TLS close stayed open 30 s more. `serve` therefore runs uvicorn
on an event loop whose `create_server` bounds both (`tls_loop`). A plain-HTTP request to the HTTPS port fails the
handshake, which asyncio drops without a word (it logs it only in debug mode): it now gets one log line.
asyncio counts the wait for the client's TLS close from the close, and then drops what is still unsent: the service's
protocol (`protocol.py`) closes a TLS connection only once its answers are sent.
"""
from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pneumoscan.errors import InputError

log = logging.getLogger("pneumoscan.service")

CERT_MARKER = b"CERTIFICATE-----"
KEY_MARKER = b"PRIVATE KEY-----"  # PKCS#8 ("PRIVATE KEY"), or PKCS#1 and SEC 1 ("RSA PRIVATE KEY", "EC PRIVATE KEY")
SHUTDOWN_S = 2.0  # the longest wait for the client's TLS close once the service's is sent (the lingering close's idle)


class _HandshakeLogged(ssl.SSLObject):
    """An SSLObject that logs one line when the client spoke plain HTTP instead of starting TLS."""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except ssl.SSLError as err:
            if err.reason == "HTTP_REQUEST":
                log.warning("a plain-HTTP request came to this HTTPS port and its connection was closed unanswered; "
                            "the client must use https://")
            raise


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

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.sslobject_class = _HandshakeLogged
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


class _TlsLoop(asyncio.SelectorEventLoop):  # what uvicorn's "auto" loop is without uvloop installed
    """asyncio's event loop whose TLS servers close a connection still without a handshake after `handshake_s`,
    wait at most SHUTDOWN_S for a client's TLS close, and use `context` (with its plain-HTTP log line)."""

    context: ssl.SSLContext
    handshake_s: float

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:  # type: ignore[override]
        if kwargs.get("ssl") is not None:
            kwargs.update(ssl=self.context, ssl_handshake_timeout=self.handshake_s, ssl_shutdown_timeout=SHUTDOWN_S)
        return await super().create_server(*args, **kwargs)


def tls_loop(context: ssl.SSLContext, handshake_s: float) -> Callable[[], asyncio.AbstractEventLoop]:
    """The `loop=` argument for uvicorn.run (a loop factory, as uvicorn 0.36+ takes one): asyncio's event loop
    serving TLS with CONTEXT, a handshake not done within `handshake_s` closing the connection."""

    def new_loop() -> asyncio.AbstractEventLoop:
        loop = _TlsLoop()
        loop.context, loop.handshake_s = context, handshake_s
        return loop

    return new_loop
