"""The full 16-bit samples of a TIFF of 16-bit colour (RGB, RGB + alpha), as one grey level each.

Pillow reads such a TIFF by each sample's high byte alone (it has no 16-bit colour mode), so a 12-bit film saved in
one reads as 0..15, where a 16-bit colour PNG is read at full depth (`deep_png`). Its raw and libtiff decoders take the
raw mode of the other byte order ("RGB;16B" for "RGB;16L") as readily, which gives the low bytes: the film is decoded
twice, as a deep PNG is.
"""
from __future__ import annotations

import functools
import io
import struct
import sys

import numpy as np
import PIL
from PIL import Image

from pneumoscan.data.deep_png import OldPillow, _decoded

# then ";16L", ";16B" or ";16N"; premultiplied alpha (RGBa): its colour is already composited on black, as read
_DEEP_RAWMODES = {"RGB": "colour", "RGBX": "colour", "RGBA": "colour+alpha", "RGBa": "colour"}
_BITS_PER_SAMPLE, _PHOTOMETRIC, _PLANAR_CONFIGURATION = 258, 262, 284  # TIFF tags; photometric 2 is RGB
_OTHER_ORDER = {"L": "B", "B": "L", "N": "B" if sys.byteorder == "little" else "L"}  # N: the machine's own order


def deep_colour_tiff(im: Image.Image) -> str | None:
    """What an opened TIFF of 16-bit colour samples holds ("colour", "colour+alpha"; "colour" for one of
    premultiplied alpha, its colour samples as stored: composited on black); None for any other image."""
    rawmode = _rawmode(im)
    kind, _, depth = rawmode.partition(";")
    return _DEEP_RAWMODES.get(kind) if im.format == "TIFF" and depth in ("16L", "16B", "16N") else None


def deep_colour_planes(im: Image.Image) -> bool:
    """Whether opened `im` is a TIFF of 16-bit colour samples stored in separate planes (PlanarConfiguration 2), which
    no decoder of Pillow's reads at full depth: its libtiff decoder unpacks each plane in its own byte order whatever
    the raw mode asked (the second decode gives the high bytes again, so a 12-bit film reads as 0..15, taken for an
    8-bit film saved as v * 257), and its raw decoder reads each 16-bit plane as 8-bit samples."""
    tags = getattr(im, "tag_v2", None)
    if im.format != "TIFF" or tags is None or tags.get(_PLANAR_CONFIGURATION, 1) != 2 or tags.get(_PHOTOMETRIC) != 2:
        return False
    bits = tags.get(_BITS_PER_SAMPLE, ())
    return isinstance(bits, tuple) and len(bits) >= 3 and set(bits) == {16}


def _rawmode(im: Image.Image) -> str:
    """The raw mode of `im`'s first tile; '' when it has none."""
    args = im.tile[0][3] if im.tile else None
    rawmode = args[0] if isinstance(args, tuple) and args else args
    return rawmode if isinstance(rawmode, str) else ""


def deep_tiff_samples(data: bytes) -> np.ndarray:
    """The 16-bit samples (H, W, C) uint16, C 3 or 4 (alpha last), of deep colour TIFF `data` (`deep_colour_tiff`),
    upright, those of premultiplied alpha as their colour samples alone; OldPillow when this Pillow cannot give them
    (`pillow_reads_deep_tiff`)."""
    if not pillow_reads_deep_tiff():
        raise OldPillow(f"this Pillow ({PIL.__version__}) cannot read the low bytes of 16-bit colour samples")
    return _samples(data)


def _samples(data: bytes) -> np.ndarray:
    """`deep_tiff_samples` without the check of Pillow."""
    with Image.open(io.BytesIO(data), formats=["TIFF"]) as im:
        rawmode = _rawmode(im)
    premultiplied = rawmode.startswith("RGBa")
    if premultiplied:  # the samples as stored: Pillow's RGBa raw modes unpremultiply each decode by its own bytes
        rawmode = "RGBA" + rawmode[4:]
    high = _decoded(data, rawmode, "TIFF").astype(np.uint16)
    try:
        low = _decoded(data, rawmode[:-1] + _OTHER_ORDER[rawmode[-1]], "TIFF")
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - the file decoded in its own byte order: the other one is Pillow's
        raise OldPillow(f"this Pillow ({PIL.__version__}) cannot read this TIFF's 16-bit samples in the other byte "
                        f"order ({exc})") from exc
    samples = (high << 8) | low
    return samples[..., :3] if premultiplied else samples


@functools.cache
def pillow_reads_deep_tiff() -> bool:
    """Whether this Pillow gives `deep_tiff_samples` the full samples of a tiny 16-bit colour TIFF in either byte
    order, with and without alpha, unassociated or premultiplied. A MemoryError is raised, and nothing cached."""
    samples = np.array([[[0x0102, 0x0304, 0x0506, 0xFFFF], [0xFFFE, 0x8001, 0x7F80, 0x1234]]], dtype=np.uint16)
    try:
        return all(np.array_equal(_samples(tiff16(pixels, order, alpha)), pixels[..., :3] if alpha == 1 else pixels)
                   for pixels, alpha in ((samples[..., :3], 2), (samples, 2), (samples, 1)) for order in "<>")
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - any failure on a good file is this Pillow's
        return False


def tiff16(pixels: np.ndarray, order: str = "<", alpha: int = 2) -> bytes:
    """An uncompressed TIFF of 16-bit colour `pixels` (H, W, 3 or 4: alpha last) in byte `order`; `alpha`: its
    ExtraSamples value, 2 unassociated, 1 premultiplied."""
    height, width, channels = pixels.shape
    tags = [(256, 4, [width]), (257, 4, [height]), (258, 3, [16] * channels), (259, 3, [1]), (262, 3, [2]),
            (273, 4, [0]), (277, 3, [channels]), (278, 4, [height]), (279, 4, [pixels.size * 2])]
    if channels == 4:
        tags.append((338, 3, [alpha]))
    extra_at = 8 + 2 + 12 * len(tags) + 4  # the bits per sample, which do not fit in their entry
    strip_at = extra_at + 2 * channels
    entries = b"".join(struct.pack(f"{order}HHI", tag, kind, len(values)) + (
        struct.pack(f"{order}I", extra_at) if tag == 258 else
        struct.pack(f"{order}I", strip_at) if tag == 273 else
        struct.pack(f"{order}{'H' if kind == 3 else 'I'}", values[0]).ljust(4, b"\0")) for tag, kind, values in tags)
    header = (b"II*\0" if order == "<" else b"MM\0*") + struct.pack(f"{order}I", 8)
    return (header + struct.pack(f"{order}H", len(tags)) + entries + struct.pack(f"{order}I", 0)
            + struct.pack(f"{order}{channels}H", *([16] * channels)) + pixels.astype(f"{order}u2").tobytes())
