"""The full 16-bit samples of a PNG of several 16-bit channels (colour, grey+alpha, colour+alpha), as one grey level each.

Pillow reads such a PNG by each sample's high byte alone (it has no 16-bit colour mode), so a 12-bit film saved in one
reads as 0..15. Its zip decoder undoes PNG's row filters for any raw mode of the same bits per pixel, so decoding the
stream once more with the little-endian raw mode ("RGB;16L", which takes the other byte of each sample) gives the low
bytes, and a grey+alpha pixel's four bytes come whole through the 8-bit "RGBA" raw mode.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

DEEP_COLOUR_TYPES = {2: "colour", 4: "grey+alpha", 6: "colour+alpha"}  # PNG colour types Pillow reads at 8 bits
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_LUMA = (19595, 38470, 7471)  # Pillow's ITU-R 601-2 "L" weights in 1/65536: they sum to 65536, so R = G = B reads as R


def deep_colour_png(data: bytes | bytearray) -> str | None:
    """What a PNG of 16-bit samples in more than one channel holds (colour, grey+alpha, colour+alpha); None for any
    other file."""
    if len(data) < 26 or data[:8] != _PNG_SIGNATURE or data[24] != 16:
        return None
    return DEEP_COLOUR_TYPES.get(data[25])


def upright(im: Image.Image) -> Image.Image:
    """Loaded `im` turned as its EXIF orientation says, in place; as stored when its EXIF is broken."""
    try:
        ImageOps.exif_transpose(im, in_place=True)
    except Exception:  # noqa: BLE001 - broken EXIF: keep the stored orientation
        pass
    return im


def deep_png_samples(data: bytes) -> np.ndarray:
    """The 16-bit samples (H, W, C) uint16 of deep colour PNG `data` (`deep_colour_png`), upright."""
    with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
        rawmode = im.tile[0].args  # "RGB;16B", "RGBA;16B" or "LA;16B" (read as RGBA)
    if rawmode == "LA;16B":
        whole = _decoded(data, "RGBA").astype(np.uint16)  # grey high, grey low, alpha high, alpha low
        return (whole[..., 0::2] << 8) | whole[..., 1::2]
    high = _decoded(data, rawmode).astype(np.uint16)
    return (high << 8) | _decoded(data, rawmode.replace(";16B", ";16L"))


def _decoded(data: bytes, rawmode: str) -> np.ndarray:
    """PNG `data` decoded by Pillow with `rawmode` in place of its own, upright."""
    with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
        im.tile = [tile._replace(args=rawmode) for tile in im.tile]
        im.load()
        return np.asarray(upright(im))


def deep_png_grey(samples: np.ndarray, transparency: object = None) -> np.ndarray:
    """One 16-bit grey level (H, W) uint32 per pixel of `deep_png_samples`: colour by Pillow's "L" weights at full
    depth (a grey film's R = G = B reads as its value), alpha composited on black as for any film, and the pixels of a
    colour PNG's transparent colour (`tRNS`, `transparency`) black."""
    colour = samples[..., :3] if samples.shape[-1] >= 3 else samples[..., :1]
    grey = colour[..., 0].astype(np.uint32)
    if colour.shape[-1] == 3 and not all(np.array_equal(colour[..., band], colour[..., 0]) for band in (1, 2)):
        grey *= _LUMA[0]
        for band in (1, 2):
            grey += colour[..., band].astype(np.uint32) * _LUMA[band]
        grey += 0x8000
        grey >>= 16
    if samples.shape[-1] in (2, 4):  # alpha last; 65535 * 65535 + 32767 still fits in uint32
        grey = (grey * samples[..., -1] + 32767) // 65535
    elif isinstance(transparency, tuple) and len(transparency) == 3:
        grey[(colour == np.asarray(transparency, dtype=np.uint16)).all(axis=-1)] = 0
    return grey
