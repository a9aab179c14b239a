"""The one preprocessing path shared by training, evaluation, prediction and the service."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from pneumoscan.api import _INT, _SOURCE, _TEXT, _public
from pneumoscan.data.decode import (
    DEFAULT_MAX_PIXELS,
    draft_changes_pixels,
    is_dicom,
    read_film,
    read_grayscale_and_rgb,
    read_path,
    reading_film,
    same_draft,
)
from pneumoscan.errors import check_at_least_one

if TYPE_CHECKING:
    import torch

# Bump when decoding or resizing changes: it invalidates every image cache. 2: DICOM Presentation LUT Shape INVERSE,
# pixel padding, 8-bit VOI and 12-bit Modality LUTs, signed LUT starts; colour DICOMs' colourfulness. 3: DICOM
# Presentation LUT Sequence. 4: a DICOM window that leaves the film one tone is passed over. 5: a film decoded in
# full (not a JPEG) shrinks by draft mode's power-of-two factor before the resize (`fit_decoded`). 6: an 8-bit film
# saved with 16 bits as v * 257 is read back as v // 257, not stretched (`pixels.eight_bit_as_sixteen`). 7: a DICOM's
# empty VOI LUT Function is LINEAR (its window was passed over), an empty Rescale Slope or Intercept is read as
# absent (such films were refused before). 8: a DICOM Rescale Slope of 0 or not finite is refused (such films decoded
# blank); a big-endian DICOM without preamble and file meta is read (refused before as not an image). 9: a 16-bit
# colour or grey+alpha PNG is refused (read before by its high bytes: a 12-bit film near black). 10: only such a PNG
# whose brightest grey sample reads as at most 63 of 255 (data of fewer than 16 bits) is refused; the others, such as
# an 8-bit film saved as 16-bit RGB (v * 257), read as at 8 again (`decode.FEW_HIGH_BYTE_LEVELS`). 11: judged by 99 %
# of its samples (`decode.BRIGHT_SHARE`), not its brightest, so a 12-bit film with a burned-in white label, read near
# black under 10, is refused too. 12: such a PNG is read at its full 16 bits (`deep_png`), as a 16-bit grey PNG,
# none refused: a 12-bit or 15-bit film in one, read dark or flat or refused before, reads as its grey PNG. 13: an
# 8-bit film in one whose alpha is not a multiple of 257 reads at its 8 bits (it was stretched), a tRNS colour is
# matched on the whole 16-bit samples (on their high bytes before); its colourfulness is measured on its full samples
# and its grain not at all, as its grey PNG's. 14: an 8-bit film saved as 16-bit grey or colour (v * 257) has its
# grain measured on the 8-bit pixels the decoder reads, as its 8-bit file (a dithered copy was not measured). 15: a
# 16-bit grey PNG's tRNS grey level reads black, as an 8-bit grey PNG's (it read at its value). 16: a 16-bit colour
# TIFF is read at its full 16 bits (`deep_tiff`), as a 16-bit colour PNG (by its high bytes before: 12-bit data dark).
# 17: one of premultiplied alpha too (by its colour samples), and one of separate colour planes refused (its high
# bytes were read twice, as an 8-bit film); a 16-bit or float grey TIFF whose zero is white turned over (it read as
# its negative), and a compressed big-endian one of signed or float grey in the machine's byte order (bytes swapped).
PREPROCESS_VERSION = 17


def resize_square(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D uint8 image to `size` x `size` (the whole image, aspect not kept, as in the dataset)."""
    if gray.shape == (size, size):
        return np.ascontiguousarray(gray, dtype=np.uint8)
    image = Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8), mode="L")
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def draft_scale(width: int, height: int, size: int) -> int:
    """The factor (1, 2, 4 or 8) Pillow's draft mode shrinks a JPEG of `width` x `height` px by when asked for `size`:
    the largest that keeps both sides >= size."""
    most = min(width // size, height // size)
    return next(scale for scale in (8, 4, 2, 1) if most >= scale or scale == 1)


def fit_decoded(gray: np.ndarray, size: int, data: bytes) -> np.ndarray:
    """A file's decoded pixels (`read_grayscale(data, draft_size=size)`) resized to `size` x `size`. A JPEG comes
    already shrunk by draft mode (scaled DCT, 1/2 to 1/8); pixels any other file carries (PNG, TIFF, BMP, DICOM, an
    array or PIL image given in memory) first shrink by the same factor (`draft_scale`, box average: `Image.reduce`),
    so that the same film scores alike whatever file carries it."""
    if not _is_jpeg(data):
        scale = draft_scale(gray.shape[1], gray.shape[0], size)
        if scale > 1:
            gray = np.asarray(Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8), mode="L").reduce(scale))
    return resize_square(gray, size)


def _is_jpeg(data: bytes) -> bool:
    """Whether Pillow opens `data` as a JPEG (or MPO), which draft mode decodes: its three start bytes, as Pillow's
    own check, and no DICOM."""
    return data[:3] == b"\xff\xd8\xff" and not is_dicom(data)


@_public(source=_SOURCE, size=_INT, name=_TEXT.or_none(), max_pixels=_INT)  # pneumoscan.load_image
def load_image(
    source: str | os.PathLike | bytes | bytearray,
    size: int,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode any supported file (or bytes) to a `size` x `size` uint8 grayscale array (`fit_decoded`)."""
    check_at_least_one(size, "size")
    check_at_least_one(max_pixels, "max_pixels")
    data, name = read_path(source, name)
    with reading_film(name, data):
        return fit_decoded(read_grayscale_and_rgb(data, name=name, max_pixels=max_pixels, draft_size=size)[0], size,
                           data)


def grey_levels(gray: np.ndarray) -> int:
    """How many distinct values a 2-D uint8 image holds (Pillow's histogram: no int64 copy of a large film)."""
    image = Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8), mode="L")
    return sum(1 for count in image.histogram() if count)


def load_image_with_levels(
    source: str | os.PathLike | bytes,
    size: int,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, int]:
    """`load_image`, and the `grey_levels` of the decoded file before resizing, from the one decode: a
    black-and-white (dithered) film averages to grey at the model's size, so only the decoded pixels show it."""
    image, levels, _ = load_image_levels_and_rgb(source, size, name=name, max_pixels=max_pixels)
    return image, levels


def load_image_levels_and_rgb(
    source: str | os.PathLike | bytes,
    size: int,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, int, np.ndarray | None]:
    """`load_image_with_levels`, and a colour DICOM's RGB pixels from the same decode (`read_grayscale_and_rgb`;
    None for any other file), for its `colourfulness(..., rgb=...)` without a second decode."""
    image, levels, rgb, *_ = load_image_levels_rgb_and_gray(source, size, name=name, max_pixels=max_pixels)
    return image, levels, rgb


def load_image_levels_rgb_and_gray(
    source: str | os.PathLike | bytes,
    size: int,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, int, np.ndarray | None, np.ndarray, str | None, bool]:
    """`load_image_levels_and_rgb`, the decoded grey pixels it resized (full size but for a JPEG draft mode reduces):
    the guard measures a lossless file's dither energy on them (`jpeg_cues(..., gray=...)`), not on a second decode;
    how a browser draws the film's PNG when otherwise than it is read (`Film.shown`; None: as read); and whether
    those pixels are 16-bit data mapped by its range (`Film.deep`: `jpeg_cues(..., deep=...)`)."""
    data, name = read_path(source, name)
    with reading_film(name, data):
        gray, rgb, _, shown, deep = read_film(data, name=name, max_pixels=max_pixels, draft_size=size)
        return fit_decoded(gray, size, data), grey_levels(gray), rgb, gray, shown, deep


def load_image_levels_rgb_and_at(
    data: bytes, size: int, other_size: int, *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, int, np.ndarray | None, np.ndarray | None, np.ndarray, bool]:
    """`load_image_levels_rgb_and_gray`, with `load_image(data, other_size)` from the same decode before the grey
    pixels: bit-identical, so given only when draft mode decodes the file the same way for both sizes (`same_draft`;
    None otherwise: a JPEG it decodes at another scale, which a decode at `other_size` alone gives)."""
    data, name = read_path(data, name)
    with reading_film(name, data):
        gray, rgb, *_, deep = read_film(data, name=name, max_pixels=max_pixels, draft_size=size)
        other = fit_decoded(gray, other_size, data) if same_draft(data, size, other_size) else None
        return fit_decoded(gray, size, data), grey_levels(gray), rgb, other, gray, deep


def load_image_and_original(
    data: bytes, size: int, *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None, bool]:
    """The file decoded at full size, its `load_image_with_levels` and a colour DICOM's RGB pixels (as
    `load_image_levels_and_rgb`), from that one decode; decoded a second time, as `load_image_with_levels` reads it,
    only when draft mode gives other pixels (`draft_changes_pixels`: a large or colour JPEG, whose draft decode is
    then the cheaper one); and whether the pixels decoded at full size are `Film.deep`."""
    data, name = read_path(data, name)
    with reading_film(name, data):
        original, rgb, *_, deep = read_film(data, name=name, max_pixels=max_pixels)
        if draft_changes_pixels(data, size):
            return (original, *load_image_with_levels(data, size, name=name, max_pixels=max_pixels), rgb, deep)
        return original, fit_decoded(original, size, data), grey_levels(original), rgb, deep


def to_unit(batch: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 images (N, H, W) or (N, 1, H, W) in 0..255 -> float32 (N, 1, H, W) in 0..1."""
    import torch

    tensor = torch.from_numpy(np.array(batch, dtype=np.uint8)) if isinstance(batch, np.ndarray) else batch
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(1)
    return tensor.float() / 255.0


def prepare_pixels(images: np.ndarray, *, equalize: bool, crop: bool) -> np.ndarray:
    """The uint8 steps of the preprocessing, in order: crop to the body (framing), then equalise."""
    if crop:
        from pneumoscan.data.framing import crop_to_body

        images = np.asarray(images, dtype=np.uint8)
        images = crop_to_body(images.reshape(-1, *images.shape[-2:])).reshape(images.shape)
    return equalize_images(np.asarray(images)) if equalize else images


@dataclass(frozen=True)
class Preprocessing:
    """How uint8 images become the model's input: optional crop to the body and per-image histogram
    equalisation, then (x/255 - mean) / std."""

    mean: float
    std: float
    equalize: bool = False
    crop: bool = False

    def __call__(self, batch: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 images (N, H, W) or (N, 1, H, W) -> the model's standardised float32 input (N, 1, H, W)."""
        if self.equalize or self.crop:
            batch = prepare_pixels(np.asarray(batch), equalize=self.equalize, crop=self.crop)
        return (to_unit(batch) - self.mean) / self.std

    def numpy(self, batch: np.ndarray) -> np.ndarray:
        """`self(batch)` as a numpy array, computed without torch (ONNX Runtime's input): the same float32
        operations in the same order, so the very same bits."""
        pixels = np.array(batch, dtype=np.uint8)
        if self.equalize or self.crop:
            pixels = prepare_pixels(pixels, equalize=self.equalize, crop=self.crop)
        if pixels.ndim == 3:
            pixels = pixels[:, None]
        return (pixels.astype(np.float32) / np.float32(255.0) - np.float32(self.mean)) / np.float32(self.std)


EQUALIZE_CHUNK = 256  # images per step: the int64 index arrays stay near 8 bytes x 256 x H x W


def equalize_images(images: np.ndarray) -> np.ndarray:
    """Per-image histogram equalisation of uint8 images (..., H, W), the same mapping as PIL's ImageOps.equalize."""
    images = np.asarray(images, dtype=np.uint8)
    flat = images.reshape(-1, images.shape[-2] * images.shape[-1])
    if len(flat) > EQUALIZE_CHUNK:
        return np.concatenate([equalize_images(flat[i : i + EQUALIZE_CHUNK].reshape(-1, *images.shape[-2:]))
                               for i in range(0, len(flat), EQUALIZE_CHUNK)]).reshape(images.shape)
    rows = np.arange(len(flat), dtype=np.int64)[:, None] * 256
    hist = np.bincount((rows + flat).ravel(), minlength=len(flat) * 256).reshape(len(flat), 256)
    last = hist[np.arange(len(flat)), 255 - np.argmax(hist[:, ::-1] > 0, axis=1)]
    step = (flat.shape[1] - last) // 255
    before = np.cumsum(hist, axis=1) - hist  # pixels strictly darker than each level
    lut = (step[:, None] // 2 + before) // np.maximum(step, 1)[:, None]
    lut = np.where((step > 0)[:, None], np.minimum(lut, 255), np.arange(256))  # flat images stay as they are
    return np.take_along_axis(lut, flat.astype(np.int64), axis=1).astype(np.uint8).reshape(images.shape)
