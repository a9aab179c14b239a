"""Read multipart uploads into memory with size limits, and sniff what kind of file arrived.

Why not FastAPI's `UploadFile`: Starlette spools every file part larger than 1 MB to a temporary
file on disk, and X-rays are patient data that must not touch the disk. Here the raw request
stream is fed chunk by chunk to python-multipart's streaming parser and each part is kept in a
`bytearray`; the body size is checked against Content-Length first and again while reading.
Before the first byte is read, the request reserves what its body may hold from the service's
upload memory (`service.budget`), so that concurrent uploads cannot exhaust the server's memory.
A client that stops sending (or, with a total limit, sends too slowly) gets 408 and its reservation
goes back, so that stalled uploads cannot keep that memory from everyone else.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
from fastapi import HTTPException, Request

from pneumoscan.data.decode import is_dicom
from pneumoscan.service.budget import Reservation

_MAX_PARTS = 64  # form fields of any kind in one request
log = logging.getLogger("pneumoscan.service")


@dataclass
class Part:
    """One multipart form part, held in memory."""

    name: str
    filename: str | None
    data: bytearray = field(default_factory=bytearray)
    too_large: bool = False


def too_large(limit_mb: float, what: str = "upload") -> HTTPException:
    advice = ("split the files into several requests" if what.startswith("batch")
              else "send a smaller file (downscale or compress the image)")
    return HTTPException(413, f"{what} larger than the limit of {limit_mb:g} MB; {advice}")


def _stalled(idle_s: float, total_s: float | None, received: int, expected: int) -> HTTPException:
    """408 for a body that stopped arriving (or took over `total_s`); the connection is closed after it."""
    cause = f"no data for {idle_s:g} s" if total_s is None else f"not all sent within {total_s:g} s"
    log.warning("upload stalled (%s) after %.1f of %.1f MB; answered 408", cause, received / (1024 * 1024),
                expected / (1024 * 1024))
    return HTTPException(408, f"upload stalled: {cause}; check the connection and send the file again",
                         headers={"Connection": "close"})


async def _chunks(request: Request, idle_s: float, total_s: float | None, expected: int) -> AsyncIterator[bytes]:
    """The request body chunk by chunk; 408 when no chunk comes for `idle_s`, or the body takes over `total_s`."""
    stream = request.stream().__aiter__()
    deadline = None if total_s is None else anyio.current_time() + total_s
    received = 0
    while True:
        wait, overall = idle_s, False
        if deadline is not None and deadline - anyio.current_time() < idle_s:
            wait, overall = deadline - anyio.current_time(), True
        with anyio.move_on_after(wait) as scope:
            try:
                chunk = await stream.__anext__()
            except StopAsyncIteration:
                return
        if scope.cancelled_caught:
            raise _stalled(idle_s, total_s if overall else None, received, expected)
        received += len(chunk)
        yield chunk


class _Collector:
    """python-multipart callbacks that gather parts into memory, enforcing a per-part limit."""

    def __init__(self, part_limit: int, oversize: str) -> None:
        self.parts: list[Part] = []
        self.part_limit = part_limit
        self.part_limit_mb = part_limit / (1024 * 1024)
        self.oversize = oversize  # "raise": 413 for the request; "mark": flag the part and drop its data
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self.ended = False  # the closing boundary was seen

    def on_end(self) -> None:
        self.ended = True

    def on_part_begin(self) -> None:
        if len(self.parts) >= _MAX_PARTS:
            raise HTTPException(422, f"too many form fields (limit {_MAX_PARTS})")
        self._disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options[b"filename"].decode("utf-8", "replace") if b"filename" in options else None
        self.parts.append(Part(name, filename))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        if part.too_large:
            return
        if len(part.data) + (end - start) > self.part_limit:
            if self.oversize == "raise":
                raise too_large(self.part_limit_mb)
            part.too_large = True
            part.data = bytearray()
            return
        part.data += data[start:end]


async def read_multipart(request: Request, *, reservation: Reservation, body_limit: int, part_limit: int,
                         oversize: str = "raise", body_label: str = "request", shown_limit: int | None = None,
                         idle_s: float = 30.0, total_s: float | None = None) -> list[Part]:
    """All parts of a multipart/form-data request, in memory; 413/415/400 HTTPExceptions on bad requests.

    Before reading the body it takes from `reservation` the bytes the body may hold (its Content-Length,
    or `body_limit` when it declares none): 503 when the service's upload memory stays full.

    `body_limit` caps the whole body, `part_limit` each part: over it, the request fails with 413
    (`oversize="raise"`) or the part is flagged `too_large` and emptied (`"mark"`, for batches).
    A body over its limit is reported as `body_label` larger than `shown_limit` (default body_limit) bytes.
    A body that stops arriving for `idle_s`, or is not all in after `total_s` (None: no limit), gets 408.
    """
    from python_multipart.multipart import MultipartParser, parse_options_header

    shown_mb = (shown_limit or body_limit) / (1024 * 1024)
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        raise HTTPException(415, "send the X-ray as multipart/form-data (form field 'file')")
    if b"boundary" not in params:
        raise HTTPException(400, "multipart body without a boundary; let your HTTP client build the form")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, "invalid Content-Length header")
        if int(declared) > body_limit:
            raise too_large(shown_mb, body_label)
    expected = body_limit if declared is None else int(declared)
    await reservation.take(expected)
    collector = _Collector(part_limit, oversize)
    callbacks = {name: getattr(collector, name) for name in (
        "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished", "on_part_data",
        "on_end")}
    parser = MultipartParser(params[b"boundary"], callbacks)  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in _chunks(request, idle_s, total_s, expected):
            received += len(chunk)
            if received > body_limit:
                raise too_large(shown_mb, body_label)
            if received > expected:  # never more in memory than was reserved
                raise HTTPException(400, "request body longer than its Content-Length header")
            parser.write(chunk)
        parser.finalize()
    except HTTPException:
        raise
    except Exception:  # noqa: BLE001 - python-multipart's parse errors; their text may quote the body
        raise HTTPException(400, "malformed multipart/form-data body; let your HTTP client build the form") from None
    if not collector.ended:  # a cut-off upload: its last part may be a truncated file
        raise HTTPException(400, "multipart body ends before its closing boundary; the upload was cut off, send it again")
    return collector.parts


def sniff_image(data: bytes | bytearray) -> str | None:
    """The image format from the file's first bytes ('jpeg', 'png', 'tiff', 'bmp', 'dicom'), else None. DICOM as
    decoding finds it: 'DICM' at byte 128, or a file written without the preamble (`is_dicom`)."""
    head = bytes(data[:132])
    if is_dicom(head):
        return "dicom"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"BM"):
        return "bmp"
    return None
