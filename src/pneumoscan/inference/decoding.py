"""A file as the model and its guard read it: the model's input image with the guard's cues of the file
(colourfulness, grey levels, two-tone share, dither energy, peak excess), its size warning, size, DICOM view
and proportions (`Decoded`), and the cues of files given as bytes measured only as far as they are not known."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from pneumoscan.data.decode import not_frontal_view, read_film, reading_film, size_warning, \
    stored_size, thumbnail_warning
from pneumoscan.data.file_cues import NOT_DECODED
from pneumoscan.data.preprocess import grey_levels
from pneumoscan.errors import one_name
from pneumoscan.inference.ood import colourfulness, jpeg_cues


class Decoded(NamedTuple):
    """One file as the model and its guard read it (`Predictor.decode`): the model's uint8 input image (S, S), the
    file's grey levels, colourfulness and two-tone share (the last two 0.0 when there is no guard to read them), its
    `size_warning` (None unless it is a thumbnail), the file's (width, height) (None when its header does not
    say), a DICOM's view when not frontal (`not_frontal_view`, by Modality, View Position or view codes; None for any
    other file, or without a guard to refuse it), the file's dither energy and peak excess (`jpeg_cues`; 0.0 without a
    guard), the film's width / height as decoded, upright by its EXIF orientation (None when not known): the input
    image is the whole film stretched to a square, and a picture drawn on it is stretched back by this to be the
    film's shape; and whether its grey levels were read otherwise than a browser draws its PNG (`Film.stretched`;
    False unless `Predictor.decode` read it), and then how the browser draws it (`Film.shown`: darker, paler or
    flatter than read)."""

    image: np.ndarray
    levels: int
    colour: float
    tone: float
    small: str | None = None
    size: tuple[int, int] | None = None
    view: str | None = None
    dither: float = 0.0
    peaks: float = 0.0
    aspect: float | None = None
    stretched: bool = False
    shown: str | None = None


class GuardCues(NamedTuple):
    """The guard's cues of each of some files, named as `OODGuard.check` takes them; None: not known."""

    colourfulness: list[float] | None = None
    grey_levels: list[int] | None = None
    two_tone: list[float] | None = None
    dither: list[float] | None = None
    peaks: list[float] | None = None

    def part(self, rows: slice) -> GuardCues:
        """The cues of the files in `rows`."""
        return GuardCues(*(None if cue is None else cue[rows] for cue in self))


def file_cues(data: bytes | bytearray, rgb: np.ndarray | None, gray: np.ndarray | None = None,
              deep: bool | None = None, *, guarded: bool) -> tuple[float, float, float, float]:
    """The guard's cues read from a file's bytes: its colourfulness (of `rgb`, what `load_image_levels_and_rgb`
    gave with its image: a colour DICOM's pixels or a 16-bit colour PNG's colour, else None), two-tone share, dither
    energy and peak excess (`jpeg_cues`: a JPEG decoded at full size; a lossless file's on `gray`, its `Film.deep`
    `deep`); 0.0 each without a guard (not `guarded`), which is the only reader of
    them."""
    if not guarded:
        return 0.0, 0.0, 0.0, 0.0
    return (colourfulness(data, rgb=rgb), *jpeg_cues(data, gray=gray, deep=deep))


def decoded_file(data: bytes | bytearray, image: np.ndarray, levels: int, rgb: np.ndarray | None, *,
                 gray: np.ndarray | None = None, deep: bool | None = None, guarded: bool) -> Decoded:
    """The `Decoded` of a file whose bytes `data` are decoded already (`image`, `levels` and `rgb` as
    `load_image_levels_and_rgb` gives them; `gray`, its decoded grey pixels, gives the film's proportions, `aspect`):
    its guard cues (`file_cues`), size, size warning and, with a guard (`guarded`), its DICOM view when not
    frontal."""
    size = stored_size(data)
    view = not_frontal_view(data) if guarded else None
    colour, tone, dither, peaks = file_cues(data, rgb, gray, deep, guarded=guarded)
    aspect = gray.shape[1] / gray.shape[0] if gray is not None and gray.size else None
    return Decoded(image, levels, colour, tone, thumbnail_warning(size), size, view, dither, peaks, aspect)


def measured_cues(names: list[str], raw: Sequence[bytes | bytearray], given: GuardCues,
                  small: list[str | None] | None, *, size: int, guarded: bool) -> tuple[GuardCues, list[str | None]]:
    """The cues of files `names` as given, those not given measured on the files' `raw` bytes as `decoded_file`
    measures them, each reading no more than it needs: the size warnings a header, the colourfulness and the JPEG
    cues (two-tone share, dither energy, peak excess) their own reads (`file_cues`; a lossless file's on the grey
    levels' decode, at the model's input `size`, when there is one), only the grey levels a decode of the file;
    without a guard (not `guarded`), which reads the others, only the size warnings."""
    small = small if small is not None else [size_warning(r) for r in raw]
    if not guarded:
        return given, small
    colours, levels, tones, dithers, peaks = given
    rgbs: list[Any] = [NOT_DECODED] * len(raw)
    need_cues = tones is None or dithers is None or peaks is None
    cues: list[tuple[float, float, float]] = []
    if levels is None:  # counted on the decoded file before resizing (`load_image_with_levels`)
        levels, rgbs = [], []
        for name, data in zip(names, raw):
            gray, rgb, *_, deep = read_film(bytes(data), name=name, draft_size=size)
            levels.append(grey_levels(gray))
            rgbs.append(rgb)
            if need_cues:  # a lossless file's cues on these pixels, not on a second decode
                with reading_film(one_name(name), data):
                    cues.append(jpeg_cues(data, gray=gray, deep=deep))
    if colours is None:
        colours = [colourfulness(r, rgb=rgb, name=name) for name, r, rgb in zip(names, raw, rgbs)]
    if need_cues:
        if not cues:
            for name, data in zip(names, raw):
                with reading_film(one_name(name), data):
                    cues.append(jpeg_cues(data))
        tones = [t for t, _, _ in cues] if tones is None else tones
        dithers = [d for _, d, _ in cues] if dithers is None else dithers
        peaks = [p for _, _, p in cues] if peaks is None else peaks
    return GuardCues(colours, levels, tones, dithers, peaks), small
