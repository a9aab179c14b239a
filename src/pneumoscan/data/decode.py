"""Decode one X-ray image (JPEG, PNG, TIFF, BMP or DICOM) into a 2-D uint8 grayscale array.

Every problem with the input itself (missing, empty, truncated, not an image, too large,
an undecodable DICOM) is raised as a one-line :class:`~pneumoscan.errors.InputError` that
starts with the file's name and says what to do. Nothing else escapes for bad input bytes.

Decisions:

* Format detection is by content: DICOM when bytes 128:132 are ``b"DICM"``, otherwise Pillow
  identifies the file, so the extension never matters.
* 8-bit grayscale images are returned as stored, and so are 8-bit ones saved with 16 bits as `v * 257`
  (every value a multiple of 257: `pixels.eight_bit_as_sixteen`), as `v // 257`. Other data with more than
  8 bits (16-bit PNG/TIFF, 32-bit or float TIFF, 12/16-bit DICOM without a window) is scaled linearly so its
  min -> 0 and its max -> 255; a constant image becomes all zeros. A PNG of several 16-bit channels or a 16-bit
  colour TIFF, which Pillow reads by the high bytes alone, is read at its full depth by
  :mod:`pneumoscan.data.deep_png` and :mod:`pneumoscan.data.deep_tiff`, as a grey one.
* Colour becomes luminance with Pillow's ITU-R 601-2 ``"L"`` conversion.
* Alpha (``LA``, ``RGBA``, ``PA``, transparent palette entries, a PNG's ``tRNS`` grey level or colour at 8 or 16
  bits) is composited on **black** and then dropped: transparent pixels read as 0, like the background of an X-ray.
* DICOM pixels are read by :mod:`pneumoscan.data.dicom` (Modality LUT, VOI, Presentation LUT, padding,
  multi-frame files of one film).
* Pillow's own decompression-bomb guard (``2 * Image.MAX_IMAGE_PIXELS``) stays a hard cap even
  when ``max_pixels`` is set above it; an image over either gets the one ``too_large`` refusal, which
  names the lower of the two.
* Warnings filters are not touched (``warnings.catch_warnings`` is not thread-safe); if warnings
  are turned into errors, they are reported as InputError like any other decoding failure.
"""
from __future__ import annotations

import functools
import io
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import PIL
from PIL import Image, UnidentifiedImageError

from pneumoscan.data.deep_png import (RGB_SIDE, OldPillow, _with_args, colour_of, deep_colour_png, deep_png_grey,
                                      deep_png_rgb, deep_png_samples, upright)
from pneumoscan.data.deep_tiff import deep_colour_planes, deep_colour_tiff, deep_tiff_samples
from pneumoscan.data.dicom import dicom_colour, read_dicom
from pneumoscan.data.pixels import DEFAULT_MAX_PIXELS, eight_bit_as_sixteen, out_of_memory, to_uint8, too_large
from pneumoscan.data.view_wording import NOT_PLAIN_FRONTAL, OTHER_VIEW
from pneumoscan.errors import MAX_REASON, InputError, one_line, one_name

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["DEFAULT_MAX_PIXELS", "MIN_SIDE", "NOT_FRONTAL_VIEW_CODES", "NOT_FRONTAL_VIEWS", "NOT_PLAIN_FRONTAL",
           "OTHER_VIEW", "SHOWN_APART", "Film",
           "dicom_colour", "eight_bit_film", "is_dicom", "jpeg_not_read", "not_frontal_view", "quiet_decoder_warnings",
           "read_film", "read_grayscale", "read_grayscale_and_rgb", "size_warning", "stored_size", "thumbnail_warning",
           "unsupported_format", "view_reason"]


MIN_SIDE: int = 32
"""px: a film with a shorter side is a thumbnail, too small to read reliably (upscaled to the model's input it is
mostly interpolation): `audit` lists such files, and `predict`, `explain` and the service warn with each prediction."""


def quiet_decoder_warnings() -> None:
    """Silence the decoders' own warnings: installed on import, and again by the CLI and the service, since
    leaving any `warnings.catch_warnings()` block (as every test does) drops filters added inside it.

    Every read checks its own `max_pixels` before decoding, so Pillow's warning above 89 megapixels (one
    line per large upload in a service's log) says nothing new. pydicom warns, with its source paths,
    about every irregular header: a file it cannot read becomes one InputError here, and one it can read
    needs no lecture on DICOM value representations. Pillow warns likewise, without the file's name, of a TIFF's or an
    EXIF block's broken tags, which it skips ('Corrupt EXIF data.  Expecting to read 12 bytes but only got 8.', as
    'pneumoscan: warning: ...' beside a readable film or the one-line error of a damaged one): the decoder keeps
    the stored orientation when the EXIF is broken, and a file it cannot read is its InputError.
    """
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    warnings.filterwarnings("ignore", module=r"PIL\.TiffImagePlugin$")
    warnings.filterwarnings("ignore", message=r"Possibly corrupt EXIF", module=r"PIL\.Image$")


quiet_decoder_warnings()

_PIL_FORMATS = ("JPEG", "PNG", "TIFF", "BMP")  # JPEG also opens MPO (camera) files
_GIVE = "give a JPEG, PNG, TIFF, BMP or DICOM file"
EXPORT_AS = "export the X-ray as PNG, JPEG or DICOM"  # what to do with a film in a format not read
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


def is_dicom(head: bytes) -> bool:
    """True when bytes 128:132 are b'DICM', or for a DICOM file written without its 128-byte preamble and
    'DICM', little or big endian (older devices and exports do this; pass at least the first 132 bytes)."""
    return (len(head) >= 132 and bytes(head[128:132]) == b"DICM") or _is_bare_dicom(bytes(head[:8]))


def unsupported_format(data: bytes | bytearray) -> str | None:
    """The name of a known image format pneumoscan does not read (GIF, WebP, HEIC, JPEG 2000) from a file's first
    bytes, else None: its refusal names it rather than calling the file unidentifiable."""
    head = bytes(data[:16])
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"avif"):
        return "HEIC/AVIF"
    if head.startswith(b"\x00\x00\x00\x0cjP  ") or head.startswith(b"\xffO\xffQ"):
        return "JPEG 2000"
    return None


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # a JPEG's frame headers (DHT, JPG, DAC are not)
_LOSSLESS_SOF = frozenset({0xC3, 0xC7, 0xCB, 0xCF})  # lossless (process 14), sequential or progressive, any coding


def jpeg_not_read(data: bytes | bytearray) -> str | None:
    """What a JPEG Pillow cannot decode is, from its frame header: "lossless JPEG" (SOF3, 7, 11, 15, as some PACS
    and DICOM exports write), "JPEG-LS" (SOF55) or "12-bit JPEG" (any sample precision but 8); None for any other
    file, and for a JPEG whose frame header is not found (decoding says why)."""
    if not bytes(data[:2]) == b"\xff\xd8":
        return None
    at = 2
    while at + 4 < len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # a fill byte before the marker
            at += 1
        elif marker == 0xF7:  # JPEG-LS's frame header (SOF55)
            return "JPEG-LS"
        elif marker in _SOF_MARKERS:
            precision = data[at + 4]
            return "lossless JPEG" if marker in _LOSSLESS_SOF else None if precision == 8 else f"{precision}-bit JPEG"
        elif marker == 0xDA:  # a scan before any frame header
            return None
        else:
            at += 2 + int.from_bytes(bytes(data[at + 2:at + 4]), "big")
    return None


def _is_bare_dicom(head: bytes) -> bool:
    """Whether the first element is a little-endian file-meta (0002) or identifying (0008) element with an
    explicit VR (two capital letters) or an implicit, short length, or a big-endian identifying element with an
    explicit VR (the retired Explicit VR Big Endian, which old devices wrote without file meta; big endian has no
    implicit VR): no image format starts like this."""
    if len(head) < 8 or head[:2] not in (b"\x02\x00", b"\x08\x00", b"\x00\x08"):
        return False
    explicit = head[4:6].isalpha() and head[4:6].isupper()
    return explicit or (head[:2] != b"\x00\x08" and int.from_bytes(head[4:8], "little") < 0x10000)


def read_grayscale(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> np.ndarray:
    """Decode an image file (path) or in-memory bytes into a 2-D uint8 grayscale array (H, W).

    `name` labels error messages (for bytes input, e.g. an upload's filename; it also overrides
    the path). `draft_size`: JPEGs may be decoded at 1/2, 1/4 or 1/8 size with Pillow's draft
    mode, keeping both sides >= draft_size (never below it). Raises InputError for anything
    unusable; ValueError/TypeError only for invalid arguments.
    """
    return read_grayscale_and_rgb(source, name=name, max_pixels=max_pixels, draft_size=draft_size)[0]


class Film(NamedTuple):
    """One file as `read_film` reads it: its grey pixels (H, W) uint8, a colour DICOM's RGB pixels or a 16-bit
    colour PNG's or TIFF's colour as its grey reads (`deep_png_rgb`, at least `RGB_SIDE` px a side; None for any other
    file) and whether it is `stretched`: a PNG whose 16-bit grey levels were read otherwise than a viewer of the file,
    such as a web browser, draws them (`SHOWN_APART`; a 12-bit film stretched from its darkest to its brightest
    value, which a browser draws near black), and then how a viewer draws it against the film as read (`shown`); and
    whether it is `deep`: 16-bit data of a PNG or TIFF mapped to 8 bits by its range, not an 8-bit film's own values
    (one saved as v * 257 reads as v: not deep), whose pixel-to-pixel grain the guard measures."""

    gray: np.ndarray
    rgb: np.ndarray | None
    stretched: bool = False
    shown: str | None = None
    deep: bool = False


def read_grayscale_and_rgb(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """`read_grayscale`, and from the same decode a colour DICOM's RGB pixels as `dicom_colour` gives them or a 16-bit
    colour PNG's or TIFF's colour (`Film.rgb`; None for any other file): for the colourfulness cue (`colourfulness(...,
    rgb=...)`) without decoding the file again."""
    gray, rgb, *_ = read_film(source, name=name, max_pixels=max_pixels, draft_size=draft_size)
    return gray, rgb


def read_film(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> Film:
    """`read_grayscale_and_rgb`, and from the same decode whether the film is `Film.stretched` and how it is
    `Film.shown`."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    if draft_size is not None and draft_size < 1:
        raise ValueError(f"draft_size must be >= 1 or None, got {draft_size}")

    data, label = read_path(source, name)
    if not data:
        raise InputError(f"{label}: empty file (0 bytes); {_GIVE}")
    if is_dicom(data):
        return Film(*read_dicom(data, label, max_pixels))
    gray, rgb, shown, deep = _read_pil(data, label, max_pixels, draft_size)
    return Film(gray, rgb, shown is not None, shown, deep)


def draft_changes_pixels(data: bytes, draft_size: int) -> bool:
    """Whether `read_grayscale(data, draft_size=draft_size)` gives other pixels than `read_grayscale(data)`: a JPEG
    that draft mode decodes at 1/2 to 1/8 scale, or as grey straight from its luma (a colour one). Reads the header
    only; True when it cannot tell."""
    if is_dicom(data):
        return False
    try:
        with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
            if im.format not in ("JPEG", "MPO"):  # as `_read_pil`: draft mode applies to these only
                return False
            before = (im.mode, im.size)
            im.draft("L", (draft_size, draft_size))
            return (im.mode, im.size) != before
    except Exception:  # noqa: BLE001 - unreadable here: decoding tells the user why
        return True


def same_draft(data: bytes, draft_size: int, other_size: int) -> bool:
    """Whether `read_grayscale(data, draft_size=draft_size)` and `read_grayscale(data, draft_size=other_size)` give
    the same pixels: always but for a JPEG that draft mode decodes at another scale for one than for the other.
    Reads the header only; False when it cannot tell."""
    if is_dicom(data):
        return True

    def drafted(size: int) -> tuple[str, tuple[int, int]] | None:
        with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
            if im.format not in ("JPEG", "MPO"):  # as `_read_pil`: draft mode applies to these only
                return None
            im.draft("L", (size, size))
            return im.mode, im.size

    try:
        return draft_size == other_size or drafted(draft_size) == drafted(other_size)
    except Exception:  # noqa: BLE001 - unreadable here: decoding tells the user why
        return False


def stored_size(data: bytes | bytearray) -> tuple[int, int] | None:
    """(width, height) of the image in a file's bytes, from its header only (a DICOM's Columns and Rows); None when
    the header cannot be read (decoding says why)."""
    try:
        if is_dicom(bytes(data[:132])):
            import pydicom

            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["Rows", "Columns"],
                                 force=data[128:132] != b"DICM")
            return int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0)
        with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
            return im.size
    except Exception:  # noqa: BLE001 - unreadable here: decoding tells the user why
        return None


@contextmanager
def reading_film(label: str, data: bytes | bytearray) -> Iterator[None]:
    """Any MemoryError while the film `label` (bytes `data`) is read, in its decoding or after it (resizing, grey
    levels, the guard's cues), raised as that film's `DecodeOutOfMemory` with its stored size: the machine's shortage
    while reading this film, which commands and the service answer as they answer the decoder's own."""
    try:
        yield
    except MemoryError as exc:
        raise out_of_memory(label, *(stored_size(data) or (None, None))) from exc


NOT_FRONTAL_VIEWS = frozenset({"LL", "RL", "LLD", "RLD", "LLO", "RLO", "LAT", "LATERAL", "LAO", "RAO", "LPO", "RPO",
                               "OBLIQUE", "OBL", "DECUBITUS", "DECUB", "SWIMMERS", "SWIMMER", "XTABLE", "CROSSTABLE",
                               "CROSS", "LORDOTIC", "APICAL", "AXIAL"})
"""Words of a DICOM View Position (upper case) that make a film lateral, decubitus, oblique or angled: the DX/CR
defined terms besides AP and PA, the oblique projections (left/right anterior/posterior oblique) and the words devices
and archives write instead, with their common abbreviations ('XTABLE LATERAL', 'AP LLD', 'AP DECUB', 'PA OBL',
'SWIMMERS' or "SWIMMER'S", whose words are SWIMMER and S: a lateral of the cervicothoracic junction). A cross-table
film ('XTABLE', 'CROSSTABLE', 'CROSS-TABLE', 'X-TABLE', alone or with AP) is taken with a horizontal beam across the
table: a lateral, or the frontal film of a patient lying on a side (decubitus), never the erect or supine frontal film
the model reads. An apical lordotic film ('AP LORDOTIC', 'AP AXIAL', 'APICAL': the beam angled up, or the patient
leaning back) projects the clavicles above the lung apices and foreshortens the lungs: no plain frontal film either,
as its Projection Eponymous Name (Fleischner) and Patient Orientation Modifier (lordotic) say too."""
_JOINED = frozenset({"XTABLE", "CROSSTABLE"})  # the words above written as two ('X-TABLE'); no other pair is read
_FRONTAL_VIEWS = frozenset({"AP", "PA"})  # a View Position word of a frontal film, when no word above is there

_NOT_FRONTAL_VIEW_CODES = (  # CID 4010 (DX View): each view but antero-posterior, postero-anterior and frontal, SNOMED
    # CT and RT codes (a View Modifier (CID 4011) cephalad or caudad only tilts the stated AP or PA view: it passes, as
    # below)
    ("lateral", "399067008", "R-102CD"), ("left lateral", "399173006", "R-10236"),
    ("right lateral", "399198007", "R-10232"), ("medial-lateral", "399260004", "R-10224"),
    ("lateral-medial", "399352003", "R-10228"), ("oblique", "399182000", "R-102C1"),
    ("left oblique", "399184004", "R-10238"), ("right oblique", "399236003", "R-10234"),
    ("lateral oblique", "260427002", "R-40783"), ("medial oblique", "260426006", "R-40782"),
    ("medio-lateral oblique", "399368009", "R-10226"), ("latero-medial oblique", "399099002", "R-10230"),
    ("left anterior oblique", "399135007", "R-10220"), ("right anterior oblique", "399356000", "R-40985"),
    ("left posterior oblique", "399006002", "R-10212"), ("right posterior oblique", "399038007", "R-10210"),
    ("antero-posterior oblique", "399312000", "R-10208"), ("postero-anterior oblique", "399059000", "R-10216"),
    ("frontal oblique", "399160007", "R-10204"), ("oblique axial", "399004004", "R-10246"),
    ("frontal-oblique axial", "399132005", "R-10252"), ("sagittal-oblique axial", "399325008", "R-10254"),
    ("oblique cranio-caudal", "399288005", "R-10248"), ("oblique caudo-cranial", "399225005", "R-10250"),
    ("sagittal", "30730003", "G-A145"),  # CID 4010's one other view across the body: a film from side to side
    ("axial", "399061009", "R-10241"),  # the beam angled along the body: a chest's is the apical lordotic film
    ("cranio-caudal", "399162004", "R-10242"), ("caudo-cranial", "399196006", "R-10244"),  # axial, by direction
    ("tangential", "399110001", "R-102C2"),  # the beam grazing the body's surface (a rib, the sternum)
    # views of other parts, none a chest film: the skull and face, the foot, the teeth, a specimen
    ("acanthioparietal", "399242004", "R-102C6"), ("parietoacanthial", "399272005", "R-102C5"),
    ("orbitoparietal", "399351005", "R-102C7"), ("parieto-orbital", "399316002", "R-102C8"),
    ("submentovertical", "399255003", "R-10256"), ("verticosubmental", "399360002", "R-10257"),
    ("dorsoplantar", "399335002", "R-102C4"), ("plantodorsal", "399071006", "R-102C3"),
    ("occlusal", "260499007", "R-40810"), ("tissue specimen", "119376003", "G-8300"),
)
_ALTERNATIVE_VIEW_CODES = (  # CID 501 (Volumetric View Description, which holds CID 4010): the same views as other
    # SNOMED concepts, the general qualifiers and nuclear medicine's projections, which devices may write instead
    ("lateral", "49370004", "G-A104"), ("oblique", "21114003", "G-A472"), ("axial", "24422004", "G-A147"),
    ("left lateral", "399118008", "G-5223"), ("right lateral", "399297009", "G-5222"),
    ("medial-lateral", "399012007", "G-5220"), ("lateral-medial", "399300004", "G-5221"),
    ("left anterior oblique", "399074003", "G-5207"), ("right anterior oblique", "399108003", "G-5206"),
    ("left posterior oblique", "399136008", "G-5209"), ("right posterior oblique", "399075002", "G-5208"),
    ("medio-lateral oblique", "399268006", "G-5224"), ("latero-medial oblique", "399159002", "G-5225"),
    ("oblique axial", "399089007", "G-5210"), ("sagittal-oblique axial", "399273000", "G-5212"),
)
_PRIOR_VIEW_CODES = (  # CID 4010's notes 2 and 3: SNOMED RT codes an earlier CID 4010 gave (each another concept in
    ("right anterior oblique", "R-10218"), ("sagittal", "R-10222"),  # SNOMED), which devices may still write
)
NOT_FRONTAL_VIEW_CODES: dict[str, str] = {code: meaning for meaning, *codes in _NOT_FRONTAL_VIEW_CODES
                                          + _ALTERNATIVE_VIEW_CODES + _PRIOR_VIEW_CODES for code in codes}
"""View Code Sequence (0054,0220) code values of a film of any view but AP, PA or frontal (lateral, oblique, axial,
cranio-caudal, caudo-cranial, tangential, or a view of another part), with their meaning: read when the View Position has no AP or PA word (empty, absent, a term of a device's own), as some
devices state the view only there. Every item of the sequence is read, and one such code refuses the film whatever the others say (a film of two
stated views is no sure frontal one)."""

_SNOMED = ("SCT", "SRT", "SNM3")  # coding scheme designators of SNOMED CT, SNOMED RT and its SNOMED 3 form
# View Code Sequence codes of a frontal view: CID 4010's antero-posterior, postero-anterior, frontal, SNOMED CT and RT;
# R-10214, postero-anterior as an earlier CID 4010 coded it (devices still write it); CID 501's anterior and posterior
# projections, as the views CID 501 codes otherwise in NOT_FRONTAL_VIEW_CODES
_FRONTAL_VIEW_CODES = frozenset({"399348003", "R-10206", "272479007", "R-40888", "399033003", "R-10202", "R-10214",
                                 "399321004", "G-5215", "399001007", "G-5216"})
# cranio-caudal and caudo-cranial, CID 4010's axial views by direction, are CID 4011's caudad and cephalad tilts too
_TILT_CODES = frozenset(code for meaning, *codes in _NOT_FRONTAL_VIEW_CODES
                        if meaning in ("cranio-caudal", "caudo-cranial") for code in codes)


def _snomed_keys(sct: str, srt: str) -> list[tuple[str, str]]:
    """A SNOMED concept's (scheme, code value) keys: its SNOMED CT code, and its SNOMED RT code under SRT and SNM3."""
    return [("SCT", sct), ("SRT", srt), ("SNM3", srt)]


_PATIENT_ORIENTATION_MODIFIERS = (  # CID 20: a film of a patient lying on a side, or leaning back, whatever its view
    ("lateral decubitus", "32185000", "F-10318"), ("left lateral decubitus", "102536004", "F-10319"),
    ("right lateral decubitus", "102535000", "F-10317"), ("lordotic", "260450008", "R-40799"),
)
_VIEW_MODIFIERS = (  # CID 4011 (DX View Modifier): a lateral through the thorax (a horizontal beam across the table:
    ("transthoracic", "272476000", "R-40885"),  # DCM 111069, Crosstable, below: not a SNOMED code)
)
NOT_FRONTAL_MODIFIERS: dict[tuple[str, str], tuple[str, str]] = {
    **{key: (meaning, "Patient Orientation Modifier") for meaning, *codes in _PATIENT_ORIENTATION_MODIFIERS
       for key in _snomed_keys(*codes)},
    **{key: (meaning, "View Modifier") for meaning, *codes in _VIEW_MODIFIERS for key in _snomed_keys(*codes)},
    ("DCM", "111069"): ("cross-table", "View Modifier")}
"""(scheme, code value) -> (meaning, element) of a Patient Orientation Modifier (CID 20: the lateral decubitus and
lordotic positions) or a View Modifier (CID 4011: cross-table, transthoracic) that makes a film non-frontal whatever
its view says ('AP' with left lateral decubitus is an 'AP LLD' film). CID 4011's cephalad and caudad are not here: they
say which way the beam is tilted, not by how much, and a small cephalad tilt is common on a portable AP film; an AP
axial film is refused by its View Position words ('AP AXIAL', 'AP LORDOTIC'), its axial view code or its lordotic
modifier. A Projection Eponymous Name of CID 4012
(`_eponyms`: Twining, the swimmer's lateral; Fleischner, the apical lordotic film...) names a special projection,
none a plain frontal chest film, and refuses the film too; a site's local code there is not read (its meaning may be a
frontal film's)."""


def not_frontal_view(data: bytes | bytearray) -> str | None:
    """Where a DICOM file's header says it is not frontal, and what, else None (a frontal, unstated or unreadable
    one, and any other file). In this order: its Modality when no radiograph's (`_other_modality`: 'DICOM Modality CT
    (Computed Tomography)'); its View Position (0018,5101) as its words in upper case, when a word of
    it, or two words that run together into XTABLE or CROSSTABLE, name a lateral, decubitus, oblique, cross-table or
    lordotic view (NOT_FRONTAL_VIEWS: 'DICOM View Position AP LLD', 'DICOM View Position X TABLE'); a decubitus, lordotic or cross-table modifier or an
    eponymous projection (`_view_modifier`), whatever the View Position; else, when no View Position word is AP or PA
    either (empty, absent, 'CHEST'), a code of any view but AP, PA or frontal in any View Code Sequence item
    (NOT_FRONTAL_VIEW_CODES: 'DICOM View Code Sequence left lateral (SCT 399173006)'). Memory running short is a
    MemoryError, for the caller's `reading_film` to name the film."""
    if not is_dicom(bytes(data[:132])):
        return None
    try:
        import pydicom

        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=data[128:132] != b"DICM",
                             specific_tags=["Modality", "ViewPosition", "ViewCodeSequence",
                                            "PatientOrientationCodeSequence",
                                            "PatientOrientationModifierCodeSequence",
                                            "ProjectionEponymousNameCodeSequence"])
        if (modality := _other_modality(ds)) is not None:
            return modality
        words = _view_words(ds.get("ViewPosition"))
        if NOT_FRONTAL_VIEWS.intersection(words + [a + b for a, b in zip(words, words[1:]) if a + b in _JOINED]):
            return f"DICOM View Position {' '.join(words)}"
        modifier = _view_modifier(ds)
        if modifier is not None or _FRONTAL_VIEWS.intersection(words):
            return modifier
        items = _items(ds, "ViewCodeSequence")
        frontal = any(scheme in _SNOMED and code in _FRONTAL_VIEW_CODES for scheme, code in map(_code, items))
        return next((view for item in items if (view := _view_code(item, frontal)) is not None), None)
    except MemoryError:  # the machine's shortage, not an unreadable view: the caller's `reading_film` names the film
        raise
    except Exception:  # noqa: BLE001 - decoding reads this header: a value it cannot give is no view
        return None


# CID 33's modalities of a film the model may read: computed and digital radiography, radiographic imaging (a digitised
# film), other and hard copy (a secondary capture of one), and PA, photoacoustic, which a View Position's PA written
# there would read as
_RADIOGRAPHY = frozenset({"CR", "DX", "RG", "OT", "HC", "PA"})
_MODALITY = "DICOM Modality"  # how `_other_modality` begins: its study holds no frontal chest film to send instead
# CID 33's terms of objects that hold no picture (presentation states, key object selections, reports, documents,
# waveforms, measurements, plans, registrations): a film carrying one is mislabelled, as a presentation state's 'PR'
# copied onto the film it was applied to, and the term says nothing of what the film shows
_NO_PICTURE = frozenset({"PR", "KO", "SR", "DOC", "ASMT", "AU", "CTPROTOCOL", "ECG", "EEG", "EMG", "EOG", "EPS", "HD",
                         "RESP", "POS", "FID", "REG", "SMR", "PLAN", "RTPLAN", "RTRECORD", "RTSTRUCT", "RWV", "M3D",
                         "AR", "KER", "LEN", "IOL", "OAM", "SRF", "VA", "OPV", "STAIN"})


def _other_modality(ds: Dataset) -> str | None:
    """Where a header's Modality (0008,0060) says a film is no radiograph, and what: any CID 33 (Modality) term but
    `_RADIOGRAPHY`'s and `_NO_PICTURE`'s ('DICOM Modality CT (Computed Tomography)': a CT localizer, a mammogram, a
    fluoroscopy spot, an ultrasound); None for those, an empty, absent or local one."""
    value = str(ds.get("Modality", "") or "").strip().upper()
    meaning = None if value in _RADIOGRAPHY | _NO_PICTURE else _modalities().get(value)
    return None if meaning is None else f"{_MODALITY} {value} ({meaning})"


@functools.cache
def _modalities() -> dict[str, str]:
    """CID 33 (Modality) as pydicom's table gives it: term -> meaning; {} without the table (no modality refused)."""
    try:
        from pydicom.sr.codedict import codes

        return {concept.value: concept.meaning for concept in codes.CID33.concepts.values()}
    except (ImportError, AttributeError, KeyError):
        return {}


def _view_words(position: object) -> list[str]:
    """A View Position's words in upper case, split on anything but letters and digits (spaces, '\\' between values,
    '_', '-'): 'ap supine' -> ['AP', 'SUPINE'], 'AP\\PA' -> ['AP', 'PA']; [] for None or an empty one."""
    values = position if isinstance(position, Sequence) and not isinstance(position, str) else [position]
    return [word for value in values for word in re.findall(r"[A-Z0-9]+", str(value or "").upper())]


def _items(ds: Dataset, keyword: str) -> list[Dataset]:
    """The items of `ds`'s sequence `keyword`: [] when absent or empty."""
    return list(ds.get(keyword) or [])


def _code(item: Dataset) -> tuple[str, str]:
    """A code item's (coding scheme designator, code value), stripped, in upper case."""
    return (str(item.get("CodingSchemeDesignator", "") or "").strip().upper(),
            str(item.get("CodeValue", "") or "").strip().upper())


def _said(element: str, meaning: str, scheme: str, code: str) -> str:
    return f"DICOM {element} {meaning} ({scheme} {code})"


def _view_code(item: Dataset, frontal: bool) -> str | None:
    """`not_frontal_view` of a View Code Sequence item: its code when of any view but AP, PA or frontal. Beside an
    item of a `frontal` view, a cranio-caudal or caudo-cranial code is that view's tilt: CID 4011's caudad and
    cephalad are the same SNOMED codes, which a device may write as an item of their own rather than nested in the
    View Modifier Code Sequence, where they pass."""
    scheme, code = _code(item)
    if frontal and code in _TILT_CODES:
        return None
    meaning = NOT_FRONTAL_VIEW_CODES.get(code) if scheme in _SNOMED else None
    return None if meaning is None else _said("View Code Sequence", meaning, scheme, code)


def _view_modifier(ds: Dataset) -> str | None:
    """The first code in `ds` that makes any view non-frontal: a Patient Orientation Modifier (in a Patient
    Orientation Code Sequence item, or at the top level as some devices write it) or a View Modifier (in a View Code
    Sequence item) of NOT_FRONTAL_MODIFIERS, or a Projection Eponymous Name of CID 4012 (`_eponyms`), given with the
    meaning its table gives the code."""
    modifiers = [*_items(ds, "PatientOrientationModifierCodeSequence"),
                 *(m for item in _items(ds, "PatientOrientationCodeSequence")
                   for m in _items(item, "PatientOrientationModifierCodeSequence")),
                 *(m for item in _items(ds, "ViewCodeSequence") for m in _items(item, "ViewModifierCodeSequence"))]
    for item in modifiers:
        scheme, code = _code(item)
        if (scheme, code) in NOT_FRONTAL_MODIFIERS:
            meaning, element = NOT_FRONTAL_MODIFIERS[scheme, code]
            return _said(element, meaning, scheme, code)
    for item in _items(ds, "ProjectionEponymousNameCodeSequence"):
        scheme, code = _code(item)
        if (scheme, code) in _eponyms():
            return _said("Projection Eponymous Name", _eponyms()[scheme, code], scheme, code)
    return None


@functools.cache
def _eponyms() -> dict[tuple[str, str], str]:
    """(scheme, code value) -> meaning of every Projection Eponymous Name of CID 4012 (DX Projection Eponymous Name,
    as pydicom's table gives it: SNOMED CT codes, and their SNOMED RT twins under SRT and SNM3)."""
    try:  # pydicom's code tables (its SNOMED CT -> RT map is private): without them no eponym is known, and the view
        from pydicom.sr._snomed_dict import mapping  # checks that need no table still run
        from pydicom.sr.codedict import codes

        rt, eponyms = mapping["SCT"], codes.CID4012.concepts.values()
    except (ImportError, AttributeError, KeyError):
        return {}
    return {(scheme, code): concept.meaning for concept in eponyms
            for scheme, code in _snomed_keys(concept.value, rt.get(concept.value, "")) if code}


def view_reason(view: str) -> str:
    """Why a film whose header says `view` (a `not_frontal_view`) gets no prediction, and what to send: the frontal
    film of the study, or for a film of another modality (a CT localizer, a mammogram), a frontal chest X-ray."""
    send = "a frontal chest X-ray (CR or DX)" if view.startswith(f"{_MODALITY} ") else "the frontal film of the study"
    return f"{view}: {NOT_PLAIN_FRONTAL}, send {send}"


def size_warning(data: bytes | bytearray) -> str | None:
    """What to tell about a film under MIN_SIDE px on a side (a thumbnail): its size, that it is too small to read
    reliably and to send the original; None for a larger film or an unreadable header."""
    return thumbnail_warning(stored_size(data))


def thumbnail_warning(size: tuple[int, int] | None) -> str | None:
    """`size_warning` of a film whose `stored_size` is `size`."""
    if size is None or min(size) >= MIN_SIDE or min(size) < 1:
        return None
    return (f"{size[0]} x {size[1]} px, under {MIN_SIDE} px on a side: too small to read reliably; send the original "
            f"film")


def read_path(source: str | os.PathLike[str] | bytes | bytearray | memoryview,
              name: str | None = None) -> tuple[bytes, str]:
    """A file's bytes, read once, and the label its errors carry, as `read_grayscale` labels them: `name` on one line
    when given, else a path's on one line (`one_name`: a newline in it as `\\n`), or `<upload>` for bytes. For callers that decode the bytes and read other
    cues from them too; TypeError for a source that is neither."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), file_label(source, name)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path or bytes, not {type(source).__name__}")
    label = file_label(source, name)
    return read_file(source, label), label


def file_label(source: str | os.PathLike[str] | bytes | bytearray | memoryview, name: str | None = None) -> str:
    """The label a file's errors carry (`read_path`): `name`, else a path's, on one line, else '<upload>'."""
    if name is not None:
        return one_name(name)
    return "<upload>" if isinstance(source, (bytes, bytearray, memoryview)) else one_name(os.fsdecode(source))


def read_file(path: str | os.PathLike[str], label: str) -> bytes:
    """Read a whole file once, turning OS errors into InputError."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError(f"{label}: a link to {os.readlink(path)}, which does not exist; fix or remove the link") \
                from None
        raise InputError(f"{label}: file not found; check the path") from None
    except IsADirectoryError:
        raise InputError(f"{label}: is a directory, not an image file; {_GIVE}") from None
    except OSError as exc:
        if os.path.isdir(path):
            raise InputError(f"{label}: is a directory, not an image file; {_GIVE}") from None
        reason = one_line(exc.strerror or type(exc).__name__, MAX_REASON)
        raise InputError(f"{label}: cannot read the file ({reason}); check it exists and is readable") from None
    except ValueError:  # e.g. embedded NUL character in the path
        raise InputError(f"{label}: not a valid file path; check the path") from None


# --------------------------------------------------------------------------- Pillow


def _read_pil(data: bytes, label: str, max_pixels: int,
              draft_size: int | None) -> tuple[np.ndarray, np.ndarray | None, str | None, bool]:
    """Decode JPEG/PNG/TIFF/BMP with Pillow: size check before decoding, EXIF orientation. Also a 16-bit colour PNG's
    or TIFF's colour (`Film.rgb`, None for any other file), how a viewer draws the file when otherwise than it is read
    (`_shown`; None when as read) and whether it is `Film.deep`."""
    width: int | None = None
    height: int | None = None
    rgb = None
    try:
        with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise too_large(label, width, height, max_pixels)
            if width < 1 or height < 1:
                raise InputError(f"{label}: image has no pixels ({width} x {height}); {_GIVE}")
            pages = getattr(im, "n_frames", 1)
            if im.format == "TIFF" and pages > 1:  # which page is the film is not ours to guess (as for DICOM)
                raise InputError(f"{label}: multi-page TIFF ({pages} pages) is not supported; export the film's page "
                                 "as a single image")
            if draft_size is not None and im.format in ("JPEG", "MPO"):
                im.draft("L", (draft_size, draft_size))
            if deep_colour_planes(im):
                raise InputError(f"{label}: a 16-bit colour TIFF of separate colour planes (PlanarConfiguration 2), "
                                 f"which is not read at full depth; save the film as a 16-bit greyscale TIFF or PNG, "
                                 f"or as a colour TIFF of interleaved samples")
            if im.format == "PNG" and deep_colour_png(data) is not None:
                out, rgb, shown, deep = _read_deep(deep_png_samples(data), im.info.get("transparency"))
            elif deep_colour_tiff(im) is not None:  # no viewer's drawing of a TIFF is compared (as a grey one's)
                out, rgb, _, deep = _read_deep(deep_tiff_samples(data))
                shown = None
            else:
                _in_native_order(im)
                im.load()
                out, deep = _pil_to_gray(upright(im), _white_is_zero(im))
                shown = _shown(im, out)
    except InputError:
        raise
    except OldPillow:
        kind = "TIFF" if data[:2] in (b"II", b"MM") else "PNG"
        raise InputError(f"{label}: a 16-bit colour {kind}, which this Pillow ({PIL.__version__}) cannot read at full "
                         f"depth; upgrade Pillow (pip install -U pillow: 11.3 and later read it) or save the film as "
                         f"a 16-bit greyscale {kind}") from None
    except UnidentifiedImageError:
        if (other := unsupported_format(data) or jpeg_not_read(data)) is not None:
            raise InputError(f"{label}: {other} images are not supported; {EXPORT_AS}") from None
        if (layout := _tiff_layout_not_read(data)) is not None:  # a whole header of samples Pillow has no mode for
            black = " of black as zero" if layout.endswith(_WHITE_IS_ZERO) else ""  # else it is a 16-bit grey TIFF
            raise InputError(f"{label}: a TIFF of {layout}, which is not read; save the film as an 8- or 16-bit "
                             f"greyscale TIFF{black} or PNG") from None
        if data.startswith(_BIG_ENDIAN_BIGTIFF):  # Pillow tells a BigTIFF by its third byte, a big-endian one's 0
            raise InputError(f"{label}: a big-endian BigTIFF, which Pillow does not read; save the film as a TIFF of "
                             f"Intel (little-endian) byte order or as PNG") from None
        if (kind := _signature(data)) is not None:  # Pillow cannot read its header: not another format
            raise InputError(f"{label}: not a readable image (its {kind} header is cut short or damaged); "
                             f"the file may be truncated or damaged, {_GIVE}") from None
        raise InputError(f"{label}: not a readable image (cannot identify image file); {_GIVE}") from None
    except Image.DecompressionBombError as exc:
        # Pillow's cap (2 * Image.MAX_IMAGE_PIXELS, ~179 MP) fires in Image.open, before the check above: refuse in
        # the words and by the limit of every other image too large
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
        size = _header_size(data)
        if size is not None and size[0] * size[1] > limit:
            raise too_large(label, *size, limit) from None
        # not met with Pillow 13: it checks a TIFF's whole raster (`_tile_size`, its ImageWidth x ImageLength), not a
        # tile, and a 20000 x 20000 tile on a 100 x 100 TIFF fails in libtiff as damaged; kept for another Pillow
        # version or image plugin that raises it here
        reason = one_line(str(exc), MAX_REASON)
        raise InputError(f"{label}: not a readable image ({reason}); the file may be damaged, {_GIVE}") from None
    except MemoryError as exc:
        raise out_of_memory(label, width, height) from exc
    except Exception as exc:  # noqa: BLE001 - any decoder failure on bad bytes is the input's fault
        if (other := jpeg_not_read(data)) is not None:  # Pillow opens a lossless JPEG, and fails to decode it
            raise InputError(f"{label}: {other} images are not supported; {EXPORT_AS}") from None
        reason = one_line(str(exc) or type(exc).__name__, MAX_REASON)
        raise InputError(
            f"{label}: not a readable image ({reason}); the file may be truncated or damaged, {_GIVE}"
        ) from exc
    if out.ndim != 2 or out.size == 0:
        raise InputError(f"{label}: decoded to an unusable array of shape {out.shape}; {_GIVE}")
    return out, rgb, shown, deep


_BIG_ENDIAN_BIGTIFF = b"MM\0+"
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"),
               (b"II+\0", "TIFF"), (_BIG_ENDIAN_BIGTIFF, "TIFF"))  # then BigTIFF's


def _signature(data: bytes) -> str | None:
    """The format (PNG, JPEG, TIFF) whose signature `data` starts with; None for any other file."""
    return next((kind for head, kind in _SIGNATURES if data.startswith(head)), None)


def _tiff_layout_not_read(data: bytes) -> str | None:
    """The sample layout of a TIFF whose header Pillow reads whole but has no mode for ("2 samples of 16 bits
    (PhotometricInterpretation 1)", a 16-bit grey + alpha film; "3 signed samples of 16 bits ..."); None for any
    other file, a damaged TIFF too."""
    from PIL import TiffImagePlugin

    try:
        TiffImagePlugin.TiffImageFile(io.BytesIO(data)).close()
        return None
    except SyntaxError as exc:
        if str(exc) != "unknown pixel mode":
            return None
    except Exception:  # noqa: BLE001 - not a TIFF, or a damaged one
        return None
    # a BigTIFF's header is 16 bytes, told as Pillow tells it (the third byte 43: no big-endian BigTIFF is read)
    ifd = TiffImagePlugin.ImageFileDirectory_v2(data[:16] if data[2] == 43 else data[:8])
    fp = io.BytesIO(data)
    fp.seek(ifd.next)
    ifd.load(fp)  # as the plugin just read it
    bits = ifd.get(258, (1,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    sizes = " and ".join(sorted({str(size) for size in bits}, key=int))
    kinds = ifd.get(339, (1,))  # SampleFormat: 1 unsigned integers, the default
    kind = _SAMPLE_FORMATS.get(kinds[0] if isinstance(kinds, tuple) and kinds else kinds, "")
    photometric = ifd.get(262, "unset")
    return (f"{len(bits)} {kind}sample{'s' * (len(bits) != 1)} of {sizes} bits (PhotometricInterpretation "
            f"{photometric}{_WHITE_IS_ZERO if photometric == 0 else ')'}")


_WHITE_IS_ZERO = ", white is zero)"  # a big-endian 16-bit grey TIFF of PhotometricInterpretation 0: Pillow has no mode
_SAMPLE_FORMATS = {2: "signed ", 3: "floating-point "}  # a TIFF's SampleFormat values other than unsigned integers


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a file in one of `_PIL_FORMATS`, read by its Pillow plugin without the
    decompression-bomb cap `Image.open` applies; None when no plugin reads it."""
    for fmt in _PIL_FORMATS:
        factory, accept = Image.OPEN[fmt]
        if accept is not None and not accept(data[:16]):
            continue
        try:
            with factory(io.BytesIO(data), "") as im:
                return im.size
        except Exception:  # noqa: BLE001 - not this format
            continue
    return None


def _read_deep(samples: np.ndarray,
               transparency: object = None) -> tuple[np.ndarray, np.ndarray | None, str | None, bool]:
    """The full 16-bit `samples` of a PNG of several 16-bit channels (`deep_png`) or of a 16-bit colour TIFF
    (`deep_tiff`) read as a 16-bit grey file is: an 8-bit film saved so (every colour sample v * 257) exactly as its
    8-bit file, any other data stretched from its darkest to its brightest grey level; its colour as that grey reads
    (`deep_png_rgb`, for the colourfulness cue, from this one decode; None for grey+alpha); how a viewer of a PNG
    draws it when otherwise (`Film.shown`); and whether it is `Film.deep`."""
    colour = colour_of(samples).shape[-1] == 3
    if eight_bit_as_sixteen(colour_of(samples)):  # its alpha, at 16 bits, need not be a multiple of 257
        rgb = deep_png_rgb(samples, transparency, RGB_SIDE, eight_bit=True) if colour else None
        return _eight_bit_grey(samples, transparency), rgb, None, False
    grey = deep_png_grey(samples, transparency)
    span = int(grey.min()), int(grey.max())
    out = to_uint8(grey)
    del grey
    rgb = deep_png_rgb(samples, transparency, RGB_SIDE, span, eight_bit=False) if colour else None
    return out, rgb, _drawn(*span, out), True


def _eight_bit_grey(samples: np.ndarray, transparency: object) -> np.ndarray:
    """The grey pixels (H, W) uint8 of the full 16-bit `samples` of an 8-bit film saved as v * 257, as its 8-bit
    file reads."""
    return deep_png_grey(samples, transparency, eight_bit=True).astype(np.uint8)


def eight_bit_film(data: bytes) -> np.ndarray | None:
    """`read_film(data).gray` of a 16-bit PNG or TIFF holding an 8-bit film as v * 257; None for other 16-bit data
    (`Film.deep`), told from its samples without stretching them or reading its colour (the guard measures no grain
    of such data: a 2500 x 3000 12-bit colour PNG, read in 1.5 s, is told so in 0.8 s). Errors as Pillow raises them."""
    with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
        if im.format == "PNG" and deep_colour_png(data) is not None:
            samples, transparency = deep_png_samples(data), im.info.get("transparency")
        elif deep_colour_tiff(im) is not None:
            samples, transparency = deep_tiff_samples(data), None
        else:
            _in_native_order(im)
            im.load()
            values = _keyed(upright(im), _white_is_zero(im))
            return (values // 257).astype(np.uint8) if eight_bit_as_sixteen(values) else None
    return _eight_bit_grey(samples, transparency) if eight_bit_as_sixteen(colour_of(samples)) else None


SHOWN_APART = 2
"""Grey levels (of 255) by which the film as read may differ from what a viewer of its PNG, such as a web browser,
draws before it is `Film.stretched`: a browser draws a 16-bit value v as about v / 257, so a film spanning 0..65534,
or 8- or 12-bit data widened to 16 bits by a shift (v << 8, v << 4), reads within a grey level of its picture."""


def _shown(im: Image.Image, gray: np.ndarray) -> str | None:
    """How a viewer draws PNG `im` of 16-bit grey levels against `gray`, the pixels read from it, when they differ
    visibly (`_drawn`); None for any other file. Both are linear in the stored value, so they differ most at its
    darkest and brightest pixels, which the read maps to `gray`'s own."""
    if im.format != "PNG" or not (im.mode in ("I", "F") or im.mode.startswith("I;")) or gray.size == 0:
        return None
    if "transparency" in im.info:  # its transparent pixels read as black, as `_pil_to_gray` reads them
        values = _keyed(im)
        return _drawn(int(values.min()), int(values.max()), gray)
    lo, hi = im.getextrema()
    return _drawn(int(lo), int(hi), gray)


def _keyed(im: Image.Image, white_is_zero: bool = False) -> np.ndarray:
    """The values of loaded grey image `im` of 16-bit or float mode, those of the transparent grey level of a 16-bit
    grey PNG (`tRNS`, matched on all 16 bits) 0: composited on black, as an 8-bit grey PNG's and a 16-bit colour
    PNG's transparent pixels are; turned to black is zero when `white_is_zero` (`_white_is_zero`)."""
    values = np.asarray(im)
    key = im.info.get("transparency")
    if isinstance(key, int) and not isinstance(key, bool) and values.dtype.kind in "iu":
        values = np.where(values == key, 0, values).astype(values.dtype, copy=False)
    if white_is_zero:  # v * 257 stays a multiple of 257, so an 8-bit film saved so reads as its 8-bit file
        values = np.iinfo(values.dtype).max - values if values.dtype.kind == "u" else -values
    return values


# the raw modes of grey samples Pillow gives libtiff's decoder in the file's byte order, and their native ones
_NATIVE_ORDER = {"I;16S": "I;16NS", "I;16BS": "I;16NS", "I;32S": "I;32NS", "I;32BS": "I;32NS", "F;32F": "F;32NF",
                 "F;32BF": "F;32NF"}


def _in_native_order(im: Image.Image) -> None:
    """Has opened TIFF `im` of signed 16- or 32-bit or floating-point grey samples unpacked in the machine's byte order
    when libtiff decodes it (a compressed one), as libtiff gives them: Pillow does so for unsigned 16-bit samples only,
    so a big-endian film of such samples read on a little-endian machine had each sample's bytes swapped (12-bit data
    read as noise)."""
    im.tile = [_with_args(tile, (_NATIVE_ORDER[tile[3][0]], *tile[3][1:]))
               if tile[0] == "libtiff" and isinstance(tile[3], tuple) and tile[3][:1] and tile[3][0] in _NATIVE_ORDER
               else tile for tile in im.tile]


def _white_is_zero(im: Image.Image) -> bool:
    """Whether opened `im` is a TIFF of one 16-bit or floating-point sample whose 0 is white (PhotometricInterpretation
    0, as some CR exports write a film): Pillow reads those samples as stored (a film read so is its negative), where
    it turns 1- to 8-bit ones as it unpacks them."""
    tags = getattr(im, "tag_v2", None)
    return im.format == "TIFF" and tags is not None and tags.get(262) == 0 and im.mode in ("I;16", "F")


def _drawn(lo: int, hi: int, gray: np.ndarray) -> str | None:
    """How 16-bit grey levels `lo`..`hi`, drawn as v / 257, look against `gray`, read from them, when more than
    `SHOWN_APART` apart at its darkest or brightest pixel: "darker" (its brightest drawn darker, as a 12-bit film
    stored low, near black), "paler" (its darkest drawn paler, as one stored high, near white) or "flatter" (both, as
    a narrow middle range, flat grey); None when within `SHOWN_APART` at both."""
    paler = round(lo / 257) - int(gray.min())  # > 0: its darkest drawn paler than read
    darker = int(gray.max()) - round(hi / 257)  # > 0: its brightest drawn darker than read
    if max(abs(paler), abs(darker)) <= SHOWN_APART:
        return None
    if paler > SHOWN_APART and darker > SHOWN_APART:
        return "flatter"
    return "paler" if paler > SHOWN_APART or darker < -SHOWN_APART else "darker"


def _pil_to_gray(im: Image.Image, white_is_zero: bool = False) -> tuple[np.ndarray, bool]:
    """Loaded Pillow image of any mode -> (H, W) uint8, and whether it is `Film.deep` (16-bit or float data mapped
    by its range); `white_is_zero`: its 16-bit or float samples' 0 is white (`_white_is_zero`)."""
    mode = im.mode
    if mode == "L" and "transparency" not in im.info:
        return np.array(im, dtype=np.uint8), False
    if mode in ("I", "F") or mode.startswith("I;"):
        values = _keyed(im, white_is_zero)
        if eight_bit_as_sixteen(values):
            return (values // 257).astype(np.uint8), False
        return to_uint8(values), True
    if mode == "LAB":  # CIELab (TIFF): Pillow cannot convert it, and its L band already is the lightness
        return np.array(im.getchannel("L"), dtype=np.uint8), False
    if mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        gray = np.asarray(rgba.convert("L"), dtype=np.uint16)
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.uint16)
        return ((gray * alpha + 127) // 255).astype(np.uint8), False  # composite on black
    return np.array(im.convert("L"), dtype=np.uint8), False


