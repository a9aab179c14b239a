"""The full 16-bit samples of a PNG of several 16-bit channels (colour, grey+alpha, colour+alpha), as one grey level each.

Pillow reads such a PNG by each sample's high byte alone (it has no 16-bit colour mode), so a 12-bit film saved in one
reads as 0..15. Its zip decoder undoes PNG's row filters for any raw mode of the same bits per pixel, so decoding the
stream once more with the little-endian raw mode ("RGB;16L", which takes the other byte of each sample) gives the low
bytes, and a grey+alpha pixel's four bytes come whole through the 8-bit "RGBA" raw mode.
"""
from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np
import PIL
from PIL import Image, ImageOps

from pneumoscan.data.pixels import eight_bit_as_sixteen, to_uint8

DEEP_COLOUR_TYPES = {2: "colour", 4: "grey+alpha", 6: "colour+alpha"}  # PNG colour types Pillow reads at 8 bits
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RGB_SIDE = 256  # the colour the decoder hands on for the colourfulness cue: at least 4 x its 64 px a side
_LUMA = (19595, 38470, 7471)  # Pillow's ITU-R 601-2 "L" weights in 1/65536: they sum to 65536, so R = G = B reads as R


def deep_colour_png(data: bytes | bytearray) -> str | None:
    """What a PNG of 16-bit samples in more than one channel holds (colour, grey+alpha, colour+alpha); None for any
    other file."""
    if len(data) < 26 or data[:8] != _PNG_SIGNATURE or data[24] != 16:
        return None
    return DEEP_COLOUR_TYPES.get(data[25])


def upright(im: Image.Image) -> Image.Image:
    """Loaded `im` turned as its EXIF orientation says, in place; as stored when its EXIF is broken. A MemoryError
    is raised (a film read sideways would be scored), for the caller to name the film."""
    try:
        ImageOps.exif_transpose(im, in_place=True)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - broken EXIF: keep the stored orientation
        pass
    return im


class OldPillow(Exception):
    """This Pillow's PNG decoder does not read the low bytes of 16-bit samples as `deep_png_samples` asks it to."""


def deep_png_samples(data: bytes) -> np.ndarray:
    """The 16-bit samples (H, W, C) uint16 of deep colour PNG `data` (`deep_colour_png`), upright; OldPillow when
    this Pillow cannot give them (`pillow_reads_deep_png`)."""
    if not pillow_reads_deep_png():
        raise OldPillow(f"this Pillow ({PIL.__version__}) cannot read the low bytes of 16-bit colour samples")
    return _samples(data)


def _samples(data: bytes) -> np.ndarray:
    """`deep_png_samples` without the check of Pillow."""
    with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
        if not im.tile:  # no pixel data (no IDAT), as Pillow's own load says it
            raise OSError("cannot load this image")
        rawmode = im.tile[0][3]  # "RGB;16B", "RGBA;16B" or "LA;16B" (read as RGBA)
    if rawmode == "LA;16B":
        whole = _decoded(data, "RGBA").astype(np.uint16)  # grey high, grey low, alpha high, alpha low
        return (whole[..., 0::2] << 8) | whole[..., 1::2]
    high = _decoded(data, rawmode).astype(np.uint16)
    return (high << 8) | _decoded(data, rawmode.replace(";16B", ";16L"))


def _decoded(data: bytes, rawmode: str, fmt: str = "PNG") -> np.ndarray:
    """`data` of format `fmt` decoded by Pillow with `rawmode` in place of its own, upright."""
    with Image.open(io.BytesIO(data), formats=[fmt]) as im:
        # a tile is (codec, extents, offset, arguments): a NamedTuple in recent Pillow, a plain tuple in older ones;
        # the arguments are the raw mode (PNG) or a tuple that starts with it (TIFF)
        im.tile = [_with_args(tile, rawmode if isinstance(tile[3], str) else (rawmode, *tile[3][1:]))
                   for tile in im.tile]
        im.load()
        return np.asarray(upright(im))


def _with_args(tile: tuple, args: object) -> tuple:
    """Pillow's `tile` with its decoder arguments `args`."""
    return type(tile)(*tile[:3], args) if hasattr(tile, "_fields") else (*tile[:3], args)


@functools.cache
def pillow_reads_deep_png() -> bool:
    """Whether this Pillow's PNG decoder gives `deep_png_samples` the full samples of a tiny 16-bit colour and
    grey+alpha PNG (it relies on how Pillow's zip decoder takes a raw mode of the same bits per pixel). A MemoryError
    is raised, and nothing cached: the machine's shortage says nothing of Pillow."""
    samples = np.array([[[0x0102, 0x0304, 0x0506], [0xFFFE, 0x8001, 0x7F80]]], dtype=np.uint16)
    try:
        return all(np.array_equal(_samples(_png16(pixels, kind)), pixels)
                   for pixels, kind in ((samples, 2), (samples[..., :2], 4)))
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - any failure on a good file is this Pillow's
        return False


def _png16(pixels: np.ndarray, colour_type: int) -> bytes:
    """A 16-bit PNG of `pixels` (H, W, C), rows unfiltered."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], 16, colour_type, 0, 0, 0)
    return _PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def colour_of(samples: np.ndarray) -> np.ndarray:
    """The colour samples (H, W, 3) or grey samples (H, W, 1) of `deep_png_samples`, without their alpha."""
    return samples[..., :3] if samples.shape[-1] >= 3 else samples[..., :1]


def deep_png_grey(samples: np.ndarray, transparency: object = None, eight_bit: bool = False) -> np.ndarray:
    """One grey level (H, W) uint32 per pixel of `deep_png_samples`: colour by Pillow's "L" weights (a grey film's
    R = G = B reads as its value), alpha composited on black at full depth as for any film, and the pixels of a
    colour PNG's transparent colour (`tRNS`, `transparency`, matched on the full 16-bit samples as PNG does) black.
    At 16 bits; `eight_bit`: an 8-bit film saved so (every colour sample v * 257) at its own 8 bits (v), so read
    exactly as its 8-bit file, whatever its alpha."""
    colour = colour_of(samples)
    grey = colour[..., 0].astype(np.uint32)
    if colour.shape[-1] == 3 and not all(np.array_equal(colour[..., band], colour[..., 0]) for band in (1, 2)):
        grey *= _LUMA[0]
        for band in (1, 2):
            grey += colour[..., band].astype(np.uint32) * _LUMA[band]
        if eight_bit:
            grey //= 257  # the weighted sum of v * 257 is 257 x that of v
        grey += 0x8000
        grey >>= 16
    elif eight_bit:
        grey //= 257
    return _composited(grey, samples, transparency)


def deep_png_rgb(samples: np.ndarray, transparency: object = None, side: int | None = None,
                 span: tuple[int, int] | None = None, eight_bit: bool | None = None) -> np.ndarray:
    """The colour (h, w, 3) uint8 of `deep_png_samples` as its grey level reads (`deep_png_grey`, alpha and
    transparent colour composited on black): an 8-bit film saved so at its 8 bits, any other stretched by the map
    that takes its darkest grey level to 0 and its brightest to 255 (a 12-bit colour overlay is as colourful as its
    8-bit copy). `side`: every k-th pixel each way, k the largest that leaves at least `side` px on the shorter side
    (the full colour of a large film would take 12 bytes a pixel). `span`: the darkest and brightest grey level
    when known (the decoder's), else read here; `eight_bit`: whether it is an 8-bit film saved so, when known (the
    decoder's: that check reads every sample of such a film), else read here."""
    if eight_bit is None:
        eight_bit = eight_bit_as_sixteen(colour_of(samples))
    if not eight_bit and span is None:
        grey = deep_png_grey(samples, transparency)
        span = int(grey.min()), int(grey.max())
        del grey
    step = max(1, min(samples.shape[:2]) // side) if side else 1
    samples = samples[::step, ::step]
    colour = colour_of(samples).astype(np.uint32)
    if eight_bit:
        colour //= 257
    colour = _composited(colour, samples, transparency)
    return colour.astype(np.uint8) if eight_bit else to_uint8(colour, *span)


def _composited(values: np.ndarray, samples: np.ndarray, transparency: object) -> np.ndarray:
    """Grey (H, W) or colour (H, W, C) uint32 `values` of `samples`' pixels composited on black by their 16-bit alpha,
    or by a colour PNG's transparent colour `transparency` (its pixels black), in place."""
    colour = colour_of(samples)
    if samples.shape[-1] in (2, 4):  # alpha last; 65535 * 65535 + 32767 still fits in uint32
        alpha = samples[..., -1].astype(np.uint32)
        values *= alpha if values.ndim == 2 else alpha[..., None]
        values += 32767
        values //= 65535
    elif isinstance(transparency, tuple) and len(transparency) == 3 and colour.shape[-1] == 3:
        values[(colour == np.asarray(transparency, dtype=np.uint16)).all(axis=-1)] = 0
    return values
