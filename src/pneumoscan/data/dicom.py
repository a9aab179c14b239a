"""Decode the pixels of a DICOM image of one film into a 2-D uint8 grayscale array (colour ones with their RGB).

Called by :func:`pneumoscan.data.decode.read_grayscale` for a file it finds to be DICOM; every problem is a one-line
:class:`~pneumoscan.errors.InputError` naming the file, as there.

Decisions:

* Modality LUT (its LUT, or rescale slope/intercept), then the first VOI LUT (its entries' own range
  mapped to 0..255) or the first window (Window Center/Width, VOI LUT Function LINEAR, LINEAR_EXACT
  or SIGMOID as pydicom applies them), mapped over the window's full output range to 0..255 (a window that
  leaves every pixel of the film one tone, a blank picture, is passed over for the next one); no VOI -> min-max
  of the data, except unsigned 8-bit data with an identity Modality LUT, which is kept as stored, and 16-bit
  data that is an 8-bit film saved as `v * 257` (every value a multiple of 257), read back as `v // 257` (so the
  same image as DICOM or PNG decodes identically). An empty Rescale Slope, Rescale Intercept or VOI LUT Function is
  read as an absent one (a rescale needs both slope and intercept, as pydicom and dcmtk apply it; LINEAR). A Rescale
  Slope of 0 or not finite (that rescale applied) is an InputError: it makes every pixel one value, a blank film.
  MONOCHROME1, and MONOCHROME2 with a Presentation LUT Shape of INVERSE, are inverted at the end (once: MONOCHROME1
  with INVERSE, as DX films are required to carry it, is the same single inversion, as viewers show it). A
  Presentation LUT Sequence instead maps the VOI output (over the range above) onto its entries, whose P-values (0
  black, 2^bits - 1 white) are the film's shades with their polarity, MONOCHROME1's too (PS3.3 C.11.4); one that
  cannot be read so (a descriptor whose first input is not 0 or whose entries are not 8 to 16 bits, LUT Data of
  another length, an entry above 2^bits - 1) is an InputError rather than a guess at the film's polarity.
  Header values other than image geometry are never read for decoding (`not_frontal_view` reads the view
  elements apart; the Rescale Slope is read to refuse one that blanks the film), and
  exception text from pydicom is never copied into messages or exception chains (it could quote header values).
* A multi-frame DICOM is read only when every frame holds the same pixels (one film stored again; NumberOfFrames 1
  is one film too): its first frame. Frames that differ are refused, as which film is meant cannot be guessed, and so
  is a file whose frames together exceed ``max_pixels`` (all are decoded to compare them).
* DICOM Pixel Padding Value (with a Pixel Padding Range Limit: every stored value between the two) marks the
  frame around a collimated or non-rectangular film: padding pixels count for no min-max range and are filled
  with the darkest tone of the film's real pixels after every other step, so they neither stretch its contrast
  nor show as a bright frame.
* A compressed film that fails to decode may lack a decoder (the pip extra's), except where pydicom's own decoder,
  always installed, reads that transfer syntax (RLE Lossless): then the file is damaged.
"""
from __future__ import annotations

import io
import logging
import struct
from typing import TYPE_CHECKING

import numpy as np

from pneumoscan.data.pixels import (DEFAULT_MAX_PIXELS, eight_bit_as_sixteen, out_of_memory, rgb_to_gray, to_levels,
                                    to_uint8, too_large)
from pneumoscan.errors import (MAX_REASON, DecodeOutOfMemory, ImageTooLarge, InputError, MissingDecoder, NotAnImage,
                               one_line, raise_if_interrupted)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pydicom.tag import BaseTag

__all__ = ["dicom_colour", "read_dicom"]

# how to get the decoders of compressed DICOM: the extra docs/data.md names, for the command line and a notebook;
# for the service's page, whom to ask (a doctor cannot run pip)
_DICOM_DECODERS = 'pip install "pneumoscan[dicom-compressed]" (the pylibjpeg decoders)'
_ASK_FOR_DECODERS = "ask IT support to install the DICOM decoders (pneumoscan[dicom-compressed]) on this server"


def _add_transfer_syntax(ds: Dataset) -> None:
    """File meta with the uncompressed transfer syntax pydicom read the dataset in (implicit or explicit VR)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    implicit, little = ds.original_encoding
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                              ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    ds.file_meta = meta


_ONE_SAMPLE = ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")  # photometric interpretations of one sample per pixel
# elements of the grey pipeline an export may leave present but empty: pydicom's modality LUT fails on an empty slope
# or intercept, and its windowing refuses an empty VOI LUT Function, which passed over the window
_READ_AS_ABSENT_WHEN_EMPTY = ("RescaleSlope", "RescaleIntercept", "VOILUTFunction")


def _empty_as_absent(ds: Dataset) -> None:
    """Deletes each element of `_READ_AS_ABSENT_WHEN_EMPTY` that `ds` holds with no value, so it is read as an
    absent one is: a rescale only with both slope and intercept (as pydicom's `apply_modality_lut` and dcmtk
    apply it; an empty slope beside an intercept of -1024 is no rescale, not slope 1), a VOI LUT Function LINEAR."""
    for keyword in _READ_AS_ABSENT_WHEN_EMPTY:
        if keyword in ds and ds[keyword].is_empty:
            del ds[keyword]


_IMAGE_PIXEL_MODULE = {"SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated"}


def _shows_image(ds: Dataset) -> bool:
    """Whether a dataset shows itself an image's: an Image Pixel element (group 0028: Rows, Columns, Bits Allocated...)
    or an Image Type; or identifying, patient, study, series or acquisition elements (groups 0008 to 0020) and none
    from group 0028 on, as an image's header cut before its Image Pixel module holds (cut within group 0008 too: its
    dates, modality and accession number come before any patient element). A dataset that names no SOP class by design
    is none of these: a query or its answer (`_load_dicom` tells it by its Query/Retrieve Level, whatever it holds), a
    worklist entry or a procedure step (they go on past group 0028: 0032, 0038, 0040), a DICOMDIR (group 0004), a
    Storage Commitment request or result (group 0008 alone, told by its Transaction UID, which no image holds). A film
    cut between two whole elements reads as a whole file, so its groups, not its end, tell it."""
    groups = {tag.group for tag in ds.keys()}
    if 0x0028 in groups or "ImageType" in ds:
        return True
    return (bool(groups) and max(groups) < 0x0028 and any(0x0008 <= group <= 0x0020 for group in groups)
            and "QueryRetrieveLevel" not in ds and "TransactionUID" not in ds)


def _blank_slope(ds: Dataset) -> str | None:
    """What is wrong with a Rescale Slope that makes every pixel one value (0, or not a finite number), when the
    Modality LUT applies it (with an intercept, and no Modality LUT Sequence); None for any other."""
    if ds.get("ModalityLUTSequence") or "RescaleSlope" not in ds or "RescaleIntercept" not in ds:
        return None
    slope = float(ds.RescaleSlope)
    return "is 0" if slope == 0 else None if np.isfinite(slope) else "is not a finite number"


def dicom_colour(data: bytes | bytearray, max_pixels: int = DEFAULT_MAX_PIXELS,
                 label: str | None = None) -> np.ndarray | None:
    """A colour DICOM's (H, W, 3) uint8 RGB pixels (RGB, YBR_*, PALETTE COLOR), as `read_grayscale` takes them
    before it turns them grey, for the colourfulness cue; None for a grey, unreadable or oversized one (decoding
    reports those). A grey one's header alone is read. Memory running short is the film's DecodeOutOfMemory, named
    `label` (a MemoryError without one, for the caller's `reading_film` to name the film): a colour film read as no
    colour one would pass the colour check."""
    try:
        import pydicom

        head = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=data[128:132] != b"DICM",
                               specific_tags=["SamplesPerPixel", "PhotometricInterpretation"])
        palette = str(head.get("PhotometricInterpretation", "") or "").strip().upper() == "PALETTE COLOR"
        if int(head.get("SamplesPerPixel", 1) or 1) == 1 and not palette:
            return None
        ds, arr, photometric = _load_dicom(bytes(data), label or "<upload>", max_pixels)
        rgb = _dicom_rgb(arr, ds, photometric)
        return None if rgb is None else rgb if rgb.dtype == np.uint8 else to_uint8(rgb)
    except MemoryError as exc:
        if label is None:
            raise
        raise out_of_memory(label) from exc
    except DecodeOutOfMemory as exc:
        if label is None:
            raise MemoryError(str(exc)) from exc
        raise
    except Exception:  # noqa: BLE001 - unreadable here: decoding tells the user why
        return None


def read_dicom(data: bytes, label: str, max_pixels: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode a DICOM image of one film (`_load_dicom`): Modality LUT, VOI LUT/window, Presentation LUT or inversion (MONOCHROME1
    or INVERSE); colour becomes luminance. With the grey image, a colour one's uint8 RGB pixels as `dicom_colour`
    gives them (None above its DEFAULT_MAX_PIXELS, as there), else None.

    Errors are raised ``from None`` and never quote pydicom's text: it may contain header values. Memory running
    short, in reading the file, its decoder or the mapping after it, is the film's DecodeOutOfMemory, its MemoryError
    the cause.
    """
    ds, arr, photometric = _load_dicom(data, label, max_pixels)
    presentation = _presentation_lut(ds, label) if arr.ndim == 2 and photometric != "PALETTE COLOR" else None
    try:
        rgb = _dicom_rgb(arr, ds, photometric)
        if rgb is not None:
            rgb = rgb if rgb.dtype == np.uint8 else to_uint8(rgb)
            out = rgb_to_gray(rgb)
        elif arr.ndim == 2 and presentation is not None:  # its P-values are the film's shades, polarity included
            out = _dicom_mono(arr, ds, invert=False, presentation=presentation)
        elif arr.ndim == 2:
            shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
            out = _dicom_mono(arr, ds, invert=photometric == "MONOCHROME1" or shape == "INVERSE")
        else:
            raise ValueError("unexpected pixel array shape")
    except MemoryError as exc:  # the machine's shortage (in the mapping's copies of the film), not its layout
        raise out_of_memory(label, arr.shape[1], arr.shape[0]) from exc
    except Exception:  # noqa: BLE001
        raise InputError(
            f"{label}: DICOM pixel data has an unsupported layout ({photometric}, {arr.ndim}-D); "
            "give a single-frame grayscale or RGB DICOM image"
        ) from None
    if rgb is not None and rgb.shape[0] * rgb.shape[1] > DEFAULT_MAX_PIXELS:
        rgb = None
    return np.ascontiguousarray(out, dtype=np.uint8), rgb


def _size(ds: Dataset) -> tuple[int | None, int | None]:
    """A dataset's (Columns, Rows), as decoding read them; (None, None) when not both are there."""
    cols, rows = ds.get("Columns"), ds.get("Rows")
    return (int(cols), int(rows)) if isinstance(cols, int) and isinstance(rows, int) else (None, None)


def _is_dicomdir(ds: Dataset, label: str) -> bool:
    """Whether a dataset is a DICOMDIR (Media Storage Directory Storage, or directory records without a file meta
    that says so). Memory running short is the file `label`'s DecodeOutOfMemory, not 'no DICOMDIR'."""
    try:
        sop_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
        return sop_class == "1.2.840.10008.1.3.10" or "DirectoryRecordSequence" in ds
    except MemoryError as exc:
        raise out_of_memory(label) from exc
    except Exception:  # noqa: BLE001 - a damaged header is no DICOMDIR
        return False


def _dicom_rgb(arr: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray | None:
    """The (H, W, 3) RGB pixels of a colour DICOM's decoded array (pydicom gives YBR as RGB; a palette is looked
    up), None for a grey one."""
    if photometric == "PALETTE COLOR" and arr.ndim == 2:
        from pydicom.pixels import apply_color_lut

        arr = np.asarray(apply_color_lut(arr, ds))
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return arr[..., :3]
    return None


def _load_dicom(data: bytes, label: str, max_pixels: int) -> tuple[Dataset, np.ndarray, str]:
    """The dataset of a DICOM image of one film, its decoded pixel array and its photometric interpretation (upper
    case; MONOCHROME2 for any other label on one sample per pixel), or an InputError naming `label`. A multi-frame
    file is one film when every frame holds the same pixels (`_one_film`: its first frame); its frames together
    count against `max_pixels`, as all are decoded to compare them."""
    try:
        import pydicom
        from pydicom.pixels import get_decoder
    except ImportError as err:
        raise_if_interrupted(err)
        raise InputError(f"{label}: is a DICOM file but pydicom is not installed; pip install pydicom") from None

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=data[128:132] != b"DICM")  # force: no preamble
        cut = _cut_short(data, ds)  # before any value is read: then its element no longer says where it was
        if getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None) is None:
            _add_transfer_syntax(ds)  # a bare dataset without file meta: say how it was encoded, as read
    except MemoryError as exc:  # reading a large file's pixel data: the machine's shortage, not a damaged header
        raise out_of_memory(label) from exc
    except Exception as err:  # noqa: BLE001
        if isinstance(err, (struct.error, EOFError)) or _meta_cut(data):  # a length or header read short: the end
            raise _truncated(label) from None
        raise InputError(f"{label}: damaged DICOM header, cannot be read; give a complete, valid DICOM file") from None

    try:
        has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
        shows_image = _shows_image(ds)  # before the photometric interpretation below is set
        pixel_module = any(keyword in ds for keyword in _IMAGE_PIXEL_MODULE)  # as read, too
        sop_class = _sop_class(ds)
        image = _image_sop_class(sop_class)
        frames_value = ds.get("NumberOfFrames", None)
        frames = int(frames_value) if frames_value not in (None, "") else 1
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        photometric = str(ds.get("PhotometricInterpretation", "") or "MONOCHROME2").strip().upper()
        if int(ds.get("SamplesPerPixel", 1) or 1) == 1 and photometric not in _ONE_SAMPLE:
            photometric = "MONOCHROME2"  # one sample per pixel is a grey level, whatever else the header says
        if ds.get("PhotometricInterpretation") != photometric:  # pydicom refuses 'monochrome2' or a YBR label here
            ds.PhotometricInterpretation = photometric
        _empty_as_absent(ds)
        blank_slope = _blank_slope(ds) if photometric.startswith("MONOCHROME") else None
        tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        compressed = bool(tsyntax is not None and tsyntax.is_transfer_syntax and tsyntax.is_compressed)
        tsyntax_name = one_line(tsyntax.name, MAX_REASON) if tsyntax is not None else "unknown"
    except MemoryError as exc:  # converting a header value: the machine's shortage, not a damaged header
        raise out_of_memory(label) from exc
    except Exception:  # noqa: BLE001
        if cut:  # a value cut short fails as it is read
            raise _truncated(label) from None
        raise InputError(f"{label}: damaged DICOM image header; give a complete, valid DICOM file") from None

    # a query's answer returns image elements as keys, but not the Image Pixel module's own, which every film's header
    # holds (a film cut or exported without its pixels, an archive having left the element in, is no query's answer)
    if not has_pixels and not cut and "QueryRetrieveLevel" in ds and not pixel_module:
        raise NotAnImage(
            f"{label}: a DICOM query or its answer (it holds a Query/Retrieve Level: a C-FIND response saved by "
            "findscu), not an image; give the film itself, retrieved from the PACS or exported"
        )
    # an image whose pixel data is cut off; a dataset of another kind (a report) holds no image, cut or not; one of
    # a class pydicom does not know is an image by its header's size (as before SOP classes were read)
    if not has_pixels and image is not False and (cut or (image is None and rows > 0 and cols > 0)):
        raise _truncated(label)
    if not has_pixels and not sop_class and shows_image:  # every object of a class without pixels names it
        raise InputError(f"{label}: DICOM file has no pixel data, nor the SOP Class UID every DICOM object names: the "
                         f"file may be cut short; give the complete file (copy it again)")
    if not has_pixels and image:  # a cut between two whole elements reads as a whole file without pixel data
        raise InputError(f"{label}: DICOM image has no pixel data: the file may be cut short, or a header-only "
                         f"export; give the complete file, exported with its pixel data")
    if not has_pixels and _is_dicomdir(ds, label):
        raise NotAnImage(
            f"{label}: a DICOMDIR, the index of a DICOM export, not an image; give one of the films it indexes, "
            "in the folders beside it (`pneumoscan predict` also takes the folder it is in)"
        )
    if not has_pixels:
        raise NotAnImage(
            f"{label}: DICOM file has no pixel data (not an image, e.g. a report); give a DICOM image"
        )
    if rows < 1 or cols < 1:
        raise InputError(f"{label}: DICOM image has no rows/columns; give a complete, valid DICOM file")
    if rows * cols > max_pixels:
        raise too_large(label, cols, rows, max_pixels)
    if frames > 1 and rows * cols * frames > max_pixels:  # every frame is decoded to compare them
        raise _frames_too_large(label, cols, rows, frames, max_pixels)
    if blank_slope is not None:
        raise InputError(f"{label}: DICOM Rescale Slope (0028,1053) {blank_slope}, which makes every pixel of the film "
                         f"the same value (a blank picture): a damaged header; export the film again")
    own_decoder = False  # pydicom's own decoder, always installed, reads every intact file of this transfer syntax
    if tsyntax is not None:
        try:
            decoder = get_decoder(tsyntax)
            available, own_decoder = decoder.is_available, "pydicom" in decoder.available_plugins
        except MemoryError as exc:  # the machine's shortage, not a transfer syntax without a decoder
            raise out_of_memory(label, cols, rows) from exc
        except Exception:  # noqa: BLE001 - pydicom has no decoder for this transfer syntax, or does not know it
            raise InputError(f"{label}: DICOM pixel data in a transfer syntax pydicom has no decoder for "
                             f"({tsyntax_name}); export the film again uncompressed (Explicit VR Little Endian), or "
                             f"as PNG") from None
        if compressed and not available:
            missing = f"{label}: compressed DICOM ({tsyntax_name}) cannot be decoded, no decoder installed; "
            raise MissingDecoder(missing + _DICOM_DECODERS, missing + _ASK_FOR_DECODERS)

    _no_decoder_tracebacks()
    try:
        arr = np.asarray(ds.pixel_array)
    except MemoryError as exc:
        raise out_of_memory(label, cols, rows) from exc
    except Exception:  # noqa: BLE001
        if (unreadable := _pixel_header_fault(ds, label, (cols, rows, frames), compressed, cut)) is not None:
            fix = "give the complete file (copy it again)" if cut else "export the film again from the device or " \
                "PACS, or as PNG"
            raise InputError(f"{label}: cannot decode the DICOM pixel data: {unreadable}; {fix}") from None
        if compressed and own_decoder:  # no other decoder would read it: RLE Lossless
            raise InputError(f"{label}: cannot decode the compressed DICOM pixel data ({tsyntax_name}), which pydicom "
                             f"decodes itself: the file is damaged; export the film again") from None
        if compressed:
            failed = (f"{label}: cannot decode the compressed DICOM pixel data ({tsyntax_name}); the file may be "
                      f"damaged, or a decoder is missing: ")
            raise MissingDecoder(failed + _DICOM_DECODERS, failed + _ASK_FOR_DECODERS) from None
        raise InputError(
            f"{label}: cannot decode the DICOM pixel data; the file may be truncated or damaged, "
            "give a complete DICOM file"
        ) from None
    if frames > 1:
        arr = _one_film(arr, frames, label)
    return ds, arr, photometric


_PIXEL_ELEMENTS = ("SamplesPerPixel", "BitsAllocated", "BitsStored", "PixelRepresentation")  # pydicom needs each
_ITEM_TAG = b"\xfe\xff\x00\xe0"  # (FFFE,E000), little endian: encapsulated Pixel Data begins with its offset table item
_INTEGER_ONLY = 2  # the last two are Pixel Data's only: Float and Double Float Pixel Data have neither


def _pixel_header_fault(ds: Dataset, label: str, size: tuple[int, int, int], compressed: bool,
                        cut: bool) -> str | None:
    """Why the Image Pixel header of a film whose pixel data failed to decode cannot describe it, when it says: an
    element decoding needs is absent or empty (Bits Stored and Pixel Representation only of integer Pixel Data), Bits
    Stored exceeds Bits Allocated, Pixel Data is encapsulated (compressed) under no compressed transfer syntax (absent,
    or an uncompressed one), or uncompressed pixel data (Pixel Data, Float or Double Float Pixel Data) holds
    fewer bytes than its `size` (columns, rows, frames), samples and bits need (the file `cut` short, else a header
    that is not its pixels'), else None (an unreadable value too). A complete file that lacks an element was called
    'truncated or damaged'. Memory running short is the file `label`'s DecodeOutOfMemory."""
    try:
        return _header_fault(ds, *size, compressed, cut)
    except MemoryError as exc:
        raise out_of_memory(label, size[0], size[1]) from exc
    except Exception:  # noqa: BLE001 - a value that cannot be read: the caller's message stands
        return None


def _header_fault(ds: Dataset, cols: int, rows: int, frames: int, compressed: bool, cut: bool) -> str | None:
    """`_pixel_header_fault`, its errors raised."""
    from pydicom.datadict import dictionary_description, tag_for_keyword
    from pydicom.pixels.utils import get_expected_length

    pixels = next(k for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if k in ds)
    needed = _PIXEL_ELEMENTS if pixels == "PixelData" else _PIXEL_ELEMENTS[:-_INTEGER_ONLY]
    missing = [f"{dictionary_description(k)} ({tag_for_keyword(k) >> 16:04X},{tag_for_keyword(k) & 0xFFFF:04X})"
               for k in needed if k not in ds or ds[k].is_empty]
    if missing:
        return f"its header lacks {' and '.join(missing)}"
    samples, allocated = int(ds.SamplesPerPixel), int(ds.BitsAllocated)
    if pixels == "PixelData" and (stored := int(ds.BitsStored)) > allocated:
        return f"its header's Bits Stored ({stored}) exceeds its Bits Allocated ({allocated})"
    if compressed or samples < 1 or allocated < 1:
        return None
    if bytes(ds[pixels].value[:4]) == _ITEM_TAG:  # encapsulated: compressed frames, whose length says nothing of them
        return "its Pixel Data is compressed (encapsulated), where its file meta names no compressed transfer syntax"
    need = get_expected_length(ds)  # the decoder's own count: YBR_FULL_422 holds 2 samples a pixel, not 3
    have = len(ds[pixels].value)
    if have >= need:
        return None
    frames_said = f" x {frames} frames" if frames > 1 else ""
    shared = " in YBR_FULL_422 (two pixels share their chroma)" if ds.PhotometricInterpretation == "YBR_FULL_422" \
        else ""
    held = (f"its {dictionary_description(pixels)} holds {have} bytes, where its header's {cols} x {rows} "
            f"pixels{frames_said}, {samples} "
            f"sample{'s' if samples > 1 else ''} of {allocated} bits{shared}, need {need}")
    return f"the file is cut short: {held}" if cut else f"{held}: its header does not describe its pixels"


def _no_decoder_tracebacks() -> None:
    """Drops the traceback pydicom logs at ERROR for each decoder a damaged film fails (the service logged one for a
    user's file it answered 422): the failure is this module's InputError, which names the file and the fix."""
    decoders = logging.getLogger("pydicom.pixels.decoders.base")
    if _drop_tracebacks not in decoders.filters:
        decoders.addFilter(_drop_tracebacks)


def _drop_tracebacks(record: logging.LogRecord) -> bool:
    return record.exc_info is None


def _sop_class(ds: Dataset) -> str:
    """The dataset's SOP Class UID, else its file meta's Media Storage SOP Class UID; '' when it names neither."""
    meta = getattr(ds, "file_meta", None)
    uid = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    return str(uid or "").strip(" \x00")


def _image_sop_class(uid: str) -> bool | None:
    """Whether the SOP Class `uid` is an image storage class, whose objects always hold pixel data; None when it is
    no SOP class pydicom knows (none, a private one)."""
    from pydicom.uid import UID

    if not uid:
        return None
    sop = UID(uid)
    return "Image Storage" in sop.name if sop.type == "SOP Class" else None


def _cut_short(data: bytes, ds: Dataset) -> bool:
    """Whether `data` ends where a complete file goes on, as a file cut short does, which pydicom reads without a word:
    before the end its file meta's group length gives, or with no dataset after it; or inside a data element (the
    last one read, of the dataset, else of its file meta, has a value reaching past the end, or a few bytes of a next
    element's header are left after it). Undecided (False) after an undefined-length sequence."""
    if _meta_cut(data):
        return True
    meta = getattr(ds, "file_meta", None)
    last = next((group.get_item(tags[-1]) for group in (ds, meta) if group is not None and (tags := list(group.keys()))),
                None)  # as read: where its value starts, and its length (read before any value is converted)
    if data[128:132] == b"DICM" and meta is not None:
        meta_length = meta.get("FileMetaInformationGroupLength")
        if isinstance(meta_length, int) and (len(data) < 144 + meta_length or not list(ds.keys())):
            return True
    tsyntax = getattr(meta, "TransferSyntaxUID", None)
    # the dataset's positions are in the inflated stream, or in an encoding pydicom does not know: undecided
    if tsyntax is not None and (not tsyntax.is_transfer_syntax or tsyntax.is_deflated):
        return False
    tell, length = getattr(last, "value_tell", None), getattr(last, "length", None)
    if not isinstance(tell, int) or not isinstance(length, int) or length == 0xFFFFFFFF:
        return False
    end = tell + length
    tail = data[end:]
    if end > len(data) or not any(tail):  # zeros after it: padding
        return end > len(data)
    return len(tail) >= 8 or _tag_begins(tail, last.tag, ds)


def _tag_begins(tail: bytes, last: BaseTag, ds: Dataset) -> bool:
    """Whether `tail`, a few bytes (fewer than an element's header) after the last element `last` that pydicom read,
    are the start of a next element's header (a tag after `last`, then an explicit VR's two letters), as in a file cut
    there, rather than a stray byte or two after a complete file. One byte cannot tell; it counts as a cut when it is
    the low byte of `last`'s group (the group going on), as elements of a group come together."""
    implicit, little = getattr(ds, "original_encoding", (None, None))
    order = "big" if little is False else "little"
    if len(tail) == 1:
        return tail[0] == last.group.to_bytes(2, order)[0 if order == "little" else 1]
    group = int.from_bytes(tail[:2], order)
    if len(tail) < 4:
        return group >= last.group
    tag = (group << 16) | int.from_bytes(tail[2:4], order)
    vr = tail[4:6]
    return tag > last and (implicit is not False or len(vr) < 2 or (vr.isalpha() and vr.isupper()))


def _meta_cut(data: bytes) -> bool:
    """Whether a file with the DICM preamble ends inside the file meta's group length, its first element (12 bytes)."""
    return data[128:132] == b"DICM" and len(data) < 144


def _truncated(label: str) -> InputError:
    return InputError(f"{label}: DICOM file is truncated: it ends before its pixel data; give the complete file (copy "
                      f"it again)")


def _multi_frame(label: str, frames: int) -> InputError:
    return InputError(f"{label}: multi-frame DICOM ({frames} frames) is not supported unless every frame is the same "
                      f"film; export one frame as a single image")


def _frames_too_large(label: str, width: int, height: int, frames: int, max_pixels: int) -> InputError:
    return ImageTooLarge(
        f"{label}: multi-frame DICOM too large ({frames} frames of {width} x {height} pixels, {width * height * frames} "
        f"together, limit {max_pixels}; all are decoded to compare them); export one frame as a single image"
    )


def _one_film(arr: np.ndarray, frames: int, label: str) -> np.ndarray:
    """The film of a multi-frame DICOM's decoded frames (`arr`, frames first) when every frame is the same film
    stored again, else InputError: which of several films is meant cannot be guessed."""
    if arr.ndim < 3 or arr.shape[0] != frames or not all(np.array_equal(arr[0], frame) for frame in arr[1:]):
        raise _multi_frame(label, frames)
    return arr[0]


def _dicom_mono(raw: np.ndarray, ds: Dataset, invert: bool,
                presentation: tuple[np.ndarray, int] | None = None) -> np.ndarray:
    """Monochrome stored values -> uint8 through Modality LUT, VOI (window or LUT) and the `presentation` LUT
    (`_presentation_lut`) when given, inverted (255 - v) when `invert`, padding pixels filled as `_fill_padding`
    says. Every step maps each value on its own, so integer
    data of up to 16 bits is mapped once per possible value (at most 65,536) and then looked up: the same pixels
    as mapping the image, without its float64 copies (a 4,300 x 4,300 px film with a rescale and a window took
    seconds and over 500 MB that way)."""
    if raw.dtype.kind not in "iu" or raw.dtype.itemsize > 2:
        padding = _padding(raw, ds)
        out = _mono_to_uint8(raw, ds, None if padding is None else ~padding, presentation)
        if invert:
            np.subtract(255, out, out=out)
        return _fill_padding(out, padding, None if padding is None else ~padding)
    unsigned = raw.view(f"u{raw.dtype.itemsize}")  # int16 -2 is entry 65534 of the table, as its bits read unsigned
    every = np.arange(2 ** (8 * raw.dtype.itemsize), dtype=unsigned.dtype)
    present = np.zeros(every.size, dtype=bool)
    rows = max(1, _LOOKUP_PIXELS // max(1, raw.shape[-1]))  # an index array is cast to int64: a slice at a time
    for start in range(0, raw.shape[0], rows):
        present[unsigned[start:start + rows]] = True
    padding = _padding(every.view(raw.dtype), ds)
    real = present if padding is None else present & ~padding
    table = _mono_to_uint8(every.view(raw.dtype), ds, real, presentation)
    if invert:
        table = 255 - table
    table = _fill_padding(table, padding, real)
    out = np.empty(raw.shape, dtype=np.uint8)
    for start in range(0, raw.shape[0], rows):
        out[start:start + rows] = table[unsigned[start:start + rows]]
    return out


def _lut(item: Dataset, ds: Dataset) -> tuple[np.ndarray, int]:
    """A Modality or VOI LUT item's entries (int64) and the first value it maps, read as pydicom's
    `apply_modality_lut` and `apply_voi` read them, except that its entries are not cast to the descriptor's bit
    depth: pydicom 3.0 looks an 8-bit VOI LUT up in uint8 (every index wraps at 256, so a 12-bit film through a
    4,096-entry LUT came out as 16 repeated ramps) and cannot make a 10 to 15-bit Modality LUT ('uint12'); the
    entries are scaled by their own range anyway. For signed pixels a first value written as US (explicit VR),
    such as 65436 for -100, is the signed value, as pydicom reads it from implicit VR (it mapped no pixel of a
    signed film)."""
    entries, first_mapped, _ = (int(v) for v in item.LUTDescriptor)
    entries = entries or 2**16
    if first_mapped >= 2**15 and int(ds.get("PixelRepresentation", 0) or 0) == 1:
        first_mapped -= 2**16
    table = _lut_data(item, ds)
    if table.size < entries:
        raise ValueError("fewer LUT entries than the descriptor gives")
    return table[:entries].astype(np.int64), first_mapped


def _lut_data(item: Dataset, ds: Dataset) -> np.ndarray:
    """A LUT item's LUT Data, one entry a value: US values, or OW 16-bit words in the dataset's byte order."""
    data = item["LUTData"].value
    if isinstance(data, (bytes, bytearray)):
        return np.frombuffer(data, dtype="<u2" if ds.original_encoding[1] is not False else ">u2")
    return np.atleast_1d(np.asarray(data, dtype=np.int64))


def _presentation_lut(ds: Dataset, label: str) -> tuple[np.ndarray, int] | None:
    """The Presentation LUT Sequence's LUT as (its P-values, their bits), None without one (an empty sequence
    too). PS3.3 C.11.4.1: its input is the VOI output, from 0 (the first entry) to the number of entries - 1 (the
    last); its P-values run from 0, black, to 2^bits - 1, white. One that cannot be read so is an InputError: it
    sets the film's shades and polarity, which no guess should replace."""
    try:
        items = ds.get("PresentationLUTSequence")
        if not items:
            return None
        lut = _presentation_lut_of(items[0], ds)
    except MemoryError as exc:  # reading its LUT Data: the machine's shortage, not an unusable LUT
        raise out_of_memory(label, *_size(ds)) from exc
    except Exception:  # noqa: BLE001 - a damaged sequence or item
        lut = "its item cannot be read"
    if isinstance(lut, str):
        raise InputError(
            f"{label}: the DICOM Presentation LUT Sequence cannot be used ({lut}), and it sets how the film is "
            "shown; export the film with Presentation LUT Shape IDENTITY or INVERSE instead, or as a PNG as a viewer "
            "shows it"
        )
    return lut


def _presentation_lut_of(item: Dataset, ds: Dataset) -> tuple[np.ndarray, int] | str:
    """A Presentation LUT item as (P-values, bits), or what makes it unusable: its descriptor must say a first input
    of 0 and 8 to 16 bits (the standard asks 10 to 16; 8 reads as clearly), its LUT Data hold one entry per input
    value, each at most 2^bits - 1."""
    if "LUTDescriptor" not in item or "LUTData" not in item:
        return "no LUT Descriptor or no LUT Data"
    descriptor = [int(v) & 0xFFFF for v in np.atleast_1d(item.LUTDescriptor)]  # all US, even if read as SS
    if len(descriptor) != 3:
        return f"a LUT Descriptor of {len(descriptor)} values, not 3"
    entries, first_mapped, bits = descriptor[0] or 2**16, descriptor[1], descriptor[2]
    if first_mapped != 0:
        return f"its first input value is {first_mapped}, not 0"
    if not 8 <= bits <= 16:
        return f"entries of {bits} bits, where a Presentation LUT's have 10 to 16"
    table = _lut_data(item, ds).astype(np.int64)
    if table.size != entries:
        return f"its LUT Descriptor gives {entries} entries, its LUT Data holds {table.size}"
    if entries < 2:
        return "a single entry"
    if table.min() < 0 or table.max() > 2**bits - 1:
        return f"an entry outside 0 to {2**bits - 1}, the {bits}-bit P-values"
    return table, bits


def _look_up(values: np.ndarray, table: np.ndarray, first_mapped: int) -> np.ndarray:
    """`values` through a LUT as pydicom maps them: below the first mapped value its first entry, past its end its
    last (in int64: pydicom subtracts in the values' own type)."""
    ints = values.astype(np.int64) if values.dtype.kind in "iu" else np.rint(values).astype(np.int64)
    return table[np.clip(ints - first_mapped, 0, table.size - 1)]


def _padding(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """Which integer stored `values` are padding: the Pixel Padding Value, and with a Pixel Padding Range Limit
    every value from one to the other (PS3.3 C.7.5.1.1.2); None when the header names none a pixel can hold."""
    if values.dtype.kind not in "iu":
        return None
    first = _stored_value(ds, "PixelPaddingValue", values.dtype)
    if first is None:
        return None
    limit = _stored_value(ds, "PixelPaddingRangeLimit", values.dtype)
    low, high = sorted((first, first if limit is None else limit))
    return (values >= low) & (values <= high)


def _stored_value(ds: Dataset, keyword: str, dtype: np.dtype) -> int | None:
    """A padding element as a stored value of `dtype`: for signed pixels a value written unsigned (US, as the
    two's complement of Bits Stored or Bits Allocated bits) is read back as signed; None when absent or out of
    range."""
    try:
        value = ds.get(keyword)
        if value is None or isinstance(value, (bytes, str)):
            return None
        value = int(value)
        bits_stored = int(ds.get("BitsStored", 0) or 0)
    except MemoryError:  # the machine's shortage: the caller names it, rather than the film showing its padding
        raise
    except Exception:  # noqa: BLE001 - a damaged element: no padding
        return None
    info = np.iinfo(dtype)
    if info.min < 0 and 0 < bits_stored < info.bits and 2 ** (bits_stored - 1) <= value < 2 ** bits_stored:
        value -= 2 ** bits_stored
    elif info.min < 0 and info.max < value < 2 ** info.bits:
        value -= 2 ** info.bits
    return value if info.min <= value <= info.max else None


def _fill_padding(out: np.ndarray, padding: np.ndarray | None, real: np.ndarray | None) -> np.ndarray:
    """`out` with its `padding` entries set to the darkest of its `real` entries (0 when none are real): the frame
    of a collimated film reads as its darkest real tone, neither a bright frame nor a stretch of its range."""
    if padding is None or not padding.any():
        return out
    darkest = out[real].min() if real is not None and real.any() else 0
    out[padding] = darkest
    return out


_LOOKUP_PIXELS = 1 << 20


def _mono_to_uint8(raw: np.ndarray, ds: Dataset, present: np.ndarray | None,
                   presentation: tuple[np.ndarray, int] | None = None) -> np.ndarray:
    """`_dicom_mono` of `raw`, or of a table of every stored value when `present` marks those in the image (the
    range of a min-max scaling is theirs): the VOI output over its range (as `_voi`) onto 0..255, or through the
    `presentation` LUT: onto its entries, then its P-values onto 0..255."""
    values, lo, hi = _voi(raw, ds, present)
    if presentation is None:
        return to_uint8(values, lo, hi)
    table, bits = presentation
    index = to_levels(values, lo, hi, table.size - 1).astype(np.intp)
    return to_uint8(table[index], 0.0, float(2**bits - 1))


def _eight_bit_film(raw: np.ndarray, values: np.ndarray, ds: Dataset, present: np.ndarray | None) -> bool:
    """Whether 16-bit stored values, unchanged by the Modality LUT, are an 8-bit film saved as `v * 257`
    (`eight_bit_as_sixteen` of those `present` marks): mapped over 0..65535, so back to `v // 257` exactly."""
    return (raw.dtype == np.uint16 and int(ds.get("BitsStored", 16) or 16) == 16 and np.array_equal(values, raw)
            and eight_bit_as_sixteen(raw if present is None else raw[present]))


def _window_count(ds: Dataset) -> int:
    """How many windows (Window Center/Width pairs) the header gives: 0 without both."""
    from pydicom.multival import MultiValue

    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None or center == "" or width == "":
        return 0
    return min(len(v) if isinstance(v, MultiValue) else 1 for v in (center, width))


def _one_tone(seen: np.ndarray) -> bool:
    """Whether a window leaves a film's pixels (`seen`) all one tone: a window that is not the film's (e.g. a soft
    tissue window on a film stored in other units), which would show a blank white or black picture."""
    finite = seen[np.isfinite(seen)]
    return finite.size > 1 and finite.min() == finite.max()


def _voi(raw: np.ndarray, ds: Dataset, present: np.ndarray | None) -> tuple[np.ndarray, float | None, float | None]:
    """`raw` through the Modality LUT and the VOI, with the VOI output's range (None, None: the min-max of all
    finite values): a VOI LUT's entries' own range, a window's full output range, 0..255 for unsigned 8-bit data kept
    as stored, else the min-max of the values `present` marks."""
    from pydicom.pixels import apply_modality_lut, apply_windowing

    if ds.get("ModalityLUTSequence"):
        values = _look_up(raw, *_lut(ds.ModalityLUTSequence[0], ds))
    else:
        values = np.asarray(apply_modality_lut(raw, ds))

    if ds.get("VOILUTSequence"):
        try:
            table, first_mapped = _lut(ds.VOILUTSequence[0], ds)
            return _look_up(values, table, first_mapped), float(table.min()), float(table.max())
        except MemoryError:  # not a bad VOI LUT: decoded without it, the film would show otherwise
            raise
        except Exception:  # noqa: BLE001 - bad VOI LUT: fall back to the window or min-max
            pass

    for index in range(_window_count(ds)):
        try:
            with np.errstate(all="ignore"):
                windowed = np.asarray(apply_windowing(values, ds, index=index), dtype=np.float64)
                # The window's output range, found by sending -inf/+inf through the same function.
                y_min, y_max = np.asarray(apply_windowing(np.array([-np.inf, np.inf]), ds, index=index),
                                          dtype=np.float64)
            if np.isfinite(y_min) and np.isfinite(y_max) and y_max != y_min and \
                    not _one_tone(windowed if present is None else windowed[present]):
                return windowed, float(y_min), float(y_max)
        except MemoryError:  # not an invalid window: passed over, the film would show otherwise
            raise
        except Exception:  # noqa: BLE001 - invalid window (e.g. width < 1): the next one, or min-max
            pass

    if raw.dtype == np.uint8 and int(ds.get("BitsStored", 8) or 8) == 8 and np.array_equal(values, raw):
        return raw, 0.0, 255.0
    if _eight_bit_film(raw, values, ds, present):
        return raw, 0.0, 65535.0
    if present is None:
        return values, None, None
    seen = values[present]
    finite = seen if seen.dtype.kind in "biu" else seen[np.isfinite(seen)]
    if finite.size == 0:
        return values, 0.0, 0.0  # nothing to scale by: all zeros
    return values, float(finite.min()), float(finite.max())
