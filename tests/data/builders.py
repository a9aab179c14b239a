"""Tiny test files for the decoder tests: ramps, encoded images and DICOM datasets whose patient data must never
reach a message."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumoscan.data.decode import is_dicom
from pneumoscan.errors import InputError
from tests.conftest import dicom_to_bytes
from tests.conftest import make_dicom as shared_make_dicom

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset  # noqa: E402

PATIENT = "Secretname^Patient"
PATIENT_ID = "PID-998877"


# --------------------------------------------------------------------------- builders


def ramp(h: int = 16, w: int = 24, lo: int = 0, hi: int = 255, dtype: type = np.uint8) -> np.ndarray:
    """Deterministic, asymmetric H x W ramp from lo to hi."""
    vals = np.linspace(lo, hi, h * w)
    return np.rint(vals).astype(dtype).reshape(h, w)


def encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with almost no image data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 8)) + chunk(b"IEND", b"")


def png16(pixels: np.ndarray, colour_type: int, *, filtered: bool = False, interlaced: bool = False, idats: int = 1,
          chunks: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """A 16-bit PNG of `pixels` (H, W) or (H, W, C) written by hand: Pillow cannot save 16-bit colour or grey+alpha.
    `filtered`: row y with PNG filter y % 5 (none, Sub, Up, Average, Paeth), as encoders choose per row, instead of
    none. `interlaced`: Adam7, its seven passes' rows each filtered so. `idats`: the pixel data split over that many
    IDAT chunks (as encoders write a large film), 0 for none. `chunks`: (type, body) chunks before the pixel data,
    such as tRNS."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    height, width = pixels.shape[:2]
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    rows = b"".join(_filtered_rows(pixels[top::down, left::across], filtered)
                    for left, top, across, down in passes if top < height and left < width)
    data = zlib.compress(rows)
    parts = [data[i * len(data) // idats:(i + 1) * len(data) // idats] for i in range(idats)]
    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, int(interlaced))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + b"".join(chunk(kind, body) for kind, body in chunks)
            + b"".join(chunk(b"IDAT", part) for part in parts) + chunk(b"IEND", b""))


def tiff16(pixels: np.ndarray, order: str = "<", *, deflate: bool = False, rows_per_strip: int | None = None,
           planar: bool = False, premultiplied: bool = False, sample_format: int = 1, big: bool = False,
           photometric: int = 2) -> bytes:
    """A 16-bit colour TIFF of `pixels` (H, W, 3 or more: alpha fourth, unassociated, then unspecified samples) in byte
    `order` written by hand: Pillow cannot save one. `deflate`: each strip zip-compressed after horizontal differencing
    (predictor 2), as libtiff writes it, read by Pillow's libtiff decoder; `rows_per_strip`: strips of that many rows
    (one strip); `planar`: each sample in a plane of its own (PlanarConfiguration 2), the planes' strips one after
    another; `premultiplied`: its alpha associated (ExtraSamples 1), the colour samples given already multiplied by it;
    `sample_format`: its SampleFormat (1 unsigned, 2 signed integers); `big`: a BigTIFF (8-byte offsets and counts);
    `photometric`: its PhotometricInterpretation (0 white is zero and 1 black is zero for one sample of grey).
    `pixels` of int32 or float32 are written as 32-bit samples (a float's deflate strips without differencing)."""
    height, width, channels = pixels.shape
    rows = rows_per_strip or height
    strips = []
    bits = 32 if pixels.dtype in (np.int32, np.float32) else 16
    predictor = 2 if deflate and pixels.dtype != np.float32 else 1
    planes = [pixels[..., [band]] for band in range(channels)] if planar else [pixels]
    for plane, top in ((plane, top) for plane in planes for top in range(0, height, rows)):
        block = plane[top:top + rows]
        if predictor == 2:
            block = block.astype(np.int64)
            block[:, 1:] = (block[:, 1:] - block[:, :-1]) % (1 << bits)
        raw = block.astype(f"{order}{'f' if pixels.dtype == np.float32 else 'u'}{bits // 8}").tobytes()
        strips.append(zlib.compress(raw) if deflate else raw)
    tags = {256: [width], 257: [height], 258: [bits] * channels, 259: [8 if deflate else 1], 262: [photometric],
            273: [0] * len(strips), 277: [channels], 278: [rows], 279: [len(strip) for strip in strips],
            284: [2 if planar else 1], 317: [predictor], 339: [sample_format] * channels,
            **({338: [1 if premultiplied else 2] + [0] * (channels - 4)} if channels >= 4 else {})}
    longs = (256, 257, 273, 278, 279)
    values = {tag: struct.pack(f"{order}{len(v)}{'I' if tag in longs else 'H'}", *v) for tag, v in tags.items()}
    offset, count, head = ("Q", "Q", 16) if big else ("I", "H", 8)  # an offset's and the entry count's format
    entry = 4 + struct.calcsize(offset) * 2
    at = head + struct.calcsize(count) + entry * len(tags) + struct.calcsize(offset)  # long values, then the strips
    places = {}
    for tag in tags:
        if len(values[tag]) > struct.calcsize(offset):
            places[tag], at = at, at + len(values[tag])
    starts = [at + sum(len(strip) for strip in strips[:i]) for i in range(len(strips))]
    values[273] = struct.pack(f"{order}{len(starts)}I", *starts)
    entries = b"".join(struct.pack(f"{order}HH{offset}", tag, 4 if tag in longs else 3, len(tags[tag]))
                       + (struct.pack(f"{order}{offset}", places[tag]) if tag in places
                          else values[tag].ljust(struct.calcsize(offset), b"\0")) for tag in tags)
    header = (b"II" if order == "<" else b"MM") + (struct.pack(f"{order}HHHQ", 43, 8, 0, head) if big
                                                    else struct.pack(f"{order}HI", 42, head))
    return (header + struct.pack(f"{order}{count}", len(tags)) + entries + struct.pack(f"{order}{offset}", 0)
            + b"".join(values[tag] for tag in places) + b"".join(strips))


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
"""Adam7's passes: (first column, first row, columns apart, rows apart)."""


def _filtered_rows(pixels: np.ndarray, filtered: bool) -> bytes:
    """The rows of 16-bit `pixels` as stored in a PNG's pixel data, each after its filter type byte."""
    stored = [np.frombuffer(row.astype(">u2").tobytes(), dtype=np.uint8).astype(np.int32) for row in pixels]
    step = 2 * (pixels.shape[2] if pixels.ndim == 3 else 1)  # bytes a pixel
    return b"".join(bytes([y % 5 if filtered else 0])
                    + _png_filter(row, stored[y - 1] if y else np.zeros_like(row), step, y % 5 if filtered else 0)
                    for y, row in enumerate(stored))


def _png_filter(row: np.ndarray, above: np.ndarray, step: int, kind: int) -> bytes:
    """PNG row filter `kind` (0 none, 1 Sub, 2 Up, 3 Average, 4 Paeth) of the bytes `row` below `above`, `step` bytes a
    pixel."""
    left = np.concatenate([np.zeros(step, np.int32), row[:-step]])
    corner = np.concatenate([np.zeros(step, np.int32), above[:-step]])
    to_left, to_above, to_corner = np.abs(above - corner), np.abs(left - corner), np.abs(left + above - 2 * corner)
    paeth = np.where((to_left <= to_above) & (to_left <= to_corner), left,
                     np.where(to_above <= to_corner, above, corner))  # the neighbour nearest left + above - corner
    predicted = [np.zeros_like(row), left, above, (left + above) // 2, paeth][kind]
    return ((row - predicted) % 256).astype(np.uint8).tobytes()


def make_dicom(arr: np.ndarray | None, **options: object) -> Dataset:
    """A minimal DICOM dataset with patient data that must never leak into messages."""
    return shared_make_dicom(arr, patient_name=PATIENT, patient_id=PATIENT_ID, **options)


def make_report() -> Dataset:
    """A DICOM structured report (Basic Text SR): a DICOM object that holds no image, as a PACS export has them."""
    from pydicom.uid import BasicTextSRStorage

    report = make_dicom(None)
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    report.Modality = "SR"
    return report


dicom_bytes = dicom_to_bytes


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def minmax_u8(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return np.rint((a - a.min()) / (a.max() - a.min()) * 255).astype(np.uint8)


def linear_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window onto 0..255."""
    y = ((x.astype(np.float64) - (center - 0.5)) / (width - 1) + 0.5)
    return np.rint(np.clip(y, 0, 1) * 255).astype(np.uint8)


def check_error(exc: pytest.ExceptionInfo[InputError], label: str) -> str:
    msg = str(exc.value)
    assert msg.startswith(f"{label}: "), msg
    assert "\n" not in msg
    assert PATIENT not in msg and "Secretname" not in msg and PATIENT_ID not in msg
    return msg


def dcm(tmp_path: Path, ds: Dataset, name: str = "x.dcm") -> Path:
    path = write(tmp_path / name, dicom_bytes(ds))
    assert is_dicom(path.read_bytes()[:132])
    return path
