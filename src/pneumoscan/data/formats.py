"""Which files are images: by extension, by magic bytes (an extensionless file), and DICOM objects that hold none
(a DICOMDIR, a report); and which are set aside, unread, as formats pneumoscan does not read."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Collection, NamedTuple

from pneumoscan.data.decode import EXPORT_AS, is_dicom, read_grayscale, unsupported_format
from pneumoscan.errors import InputError, one_name

if TYPE_CHECKING:
    from pneumoscan.data.labels import Sample

# .jfif and .jpe: JPEGs as Windows and some browsers save them
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")
IMAGE_SUFFIXES = frozenset({*IMAGE_EXTENSIONS, ""})  # "": no extension, as DICOM files often have
# the extensions of image formats pneumoscan does not read (`decode.unsupported_format`): listed with the images all
# the same, so that reading one reports it, naming its format, rather than a folder of them losing its films unseen
UNREAD_EXTENSIONS = (".gif", ".webp", ".heic", ".heif", ".avif", ".jp2", ".j2k", ".jpx")
# How `set_aside_unread` sets files aside, recorded in split.json as `unread_rule`: rule 2 also sets aside a file listed
# only for such an extension that holds no image (an HTML page saved as logo.gif); a split.json without it was made
# before, when such a file took a place in the split (and was skipped when decoded)
UNREAD_RULE = 2
# the first bytes of JPEG, PNG, TIFF (little- and big-endian, BigTIFF) and BMP files: an extensionless file is an image
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+", b"BM")
# SOP classes (and their families) of the DICOM objects a PACS export holds beside its images: the DICOMDIR, presentation
# states, structured reports and key-object notes, encapsulated PDF and CDA, raw data and registrations, waveforms
_NOT_IMAGE_SOP_CLASSES = ("1.2.840.10008.1.3.10", "1.2.840.10008.5.1.4.1.1.11", "1.2.840.10008.5.1.4.1.1.88",
                          "1.2.840.10008.5.1.4.1.1.104", "1.2.840.10008.5.1.4.1.1.66", "1.2.840.10008.5.1.4.1.1.9")


def image_stem(path: str | Path) -> str:
    """A file's name without its image extension; a name whose last dot starts none (a DICOM UID such as
    1.2.840.113619.2.55.3.12345) is kept whole."""
    path = Path(path)
    return path.stem if path.suffix.lower() in IMAGE_SUFFIXES else path.name


def is_image_path(path: Path, opened: bool = True) -> bool:
    """Whether a file looks like an image: by its image extension (or that of a format pneumoscan does not read,
    `UNREAD_EXTENSIONS`, so that reading it reports it); with no extension (as DICOM files often have: IM00001) by
    the magic bytes of any format read (an export's LOCKFILE or VERSION is not an image); for any other name by
    the DICOM magic bytes (DICOM files are often named by their UID, e.g. 1.2.840.113619.2.55.3.12345).
    A broken link with an image's extension counts, so that reading it reports it rather than it going unseen.
    A DICOMDIR, the index every DICOM export (CD, USB, PACS) carries under that name, is never an image, nor is a
    DICOM object whose file meta names a SOP class without one (a presentation state, a report), whatever its name.
    Without `opened`, by the name alone, the file unopened: an image-like name (`_image_like_name`) counts."""
    if path.name.startswith(".") or path.name.upper() == "DICOMDIR":
        return False
    if not opened:
        return (path.is_file() or path.is_symlink()) and (_image_like_name(path) or
                                                          path.suffix.lower() in UNREAD_EXTENSIONS)
    if not path.is_file():
        return path.is_symlink() and _image_like_name(path)
    suffix = path.suffix.lower()
    if suffix in (*IMAGE_EXTENSIONS, *UNREAD_EXTENSIONS) and suffix not in (".dcm", ".dicom"):
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)  # the preamble and the file meta of a DICOM file
    except OSError:  # cannot look inside: an image-like name is reported as unreadable rather than left out
        return _image_like_name(path)
    if is_dicom(head):
        return not _holds_no_image(head)
    return suffix in (".dcm", ".dicom") or (suffix == "" and head.startswith(_IMAGE_MAGIC))


def may_be_dicom(path: str | Path) -> bool:
    """Whether a file's name lets it be a DICOM file: not named for another image format (`is_image_path` lists a
    .jpeg or a .gif unopened), so .dcm, .dicom, no extension or a UID's last number."""
    suffix = Path(path).suffix.lower()
    return suffix in (".dcm", ".dicom") or suffix not in (*IMAGE_EXTENSIONS, *UNREAD_EXTENSIONS)


def is_image_head(head: bytes) -> bool:
    """Whether a file's first bytes (132 or more) are those of an image format, read or not: DICOM, JPEG, PNG, TIFF,
    BMP, or a format not read (`decode.unsupported_format`). An HTML error page saved as x.jpeg is none."""
    return is_dicom(head) or head.startswith(_IMAGE_MAGIC) or unsupported_format(head) is not None


class Refusal(NamedTuple):
    """Why `unread_refusal` sets a file aside: decoding's words, and whether only by `UNREAD_RULE` 2 (a file named for
    a format not read that holds no image, which an earlier version split among the films)."""
    text: str
    no_image: bool = False


def set_aside_unread(found: dict[str, list[Sample]], unopened: Collection[str] = ()) -> tuple[
        dict[str, list[Sample]], dict[str, list[str]], dict[str, int]]:
    """`found` (`discover`'s) without the files `unread_refusal` sets aside (those in a format pneumoscan does not read,
    by their first bytes, whatever their extension, and those listed only for such a format's extension that hold no
    image), per split each one's refusal as decoding says it, and per split how many of them hold no image
    (`Refusal.no_image`: set aside by `UNREAD_RULE` 2 only): kept out of a split, the --max-images cap and the
    patient keys, where one more file (one more "patient") would reshuffle the split, then reported skipped. The
    splits named in `unopened` (training's test/) are kept whole, no file opened: such a file is no DICOM file, so
    it keys no other film (`patient_keys`)."""
    kept: dict[str, list[Sample]] = {}
    unread: dict[str, list[str]] = {}
    no_image: dict[str, int] = {}
    for split, samples in found.items():
        refusals = [None if split in unopened else unread_refusal(s.path) for s in samples]
        kept[split] = [s for s, refusal in zip(samples, refusals) if refusal is None]
        unread[split] = sorted(refusal.text for refusal in refusals if refusal is not None)
        no_image[split] = sum(refusal.no_image for refusal in refusals if refusal is not None)
    return kept, unread, no_image


def unread_refusal(path: Path) -> Refusal | None:
    """Decoding's refusal of the file `path` when it holds a format pneumoscan does not read, by its first bytes
    (`decode.unsupported_format`; a DICOM file is read whatever its preamble: a JPEG named x.gif is a JPEG), told
    without decoding it; or when it is listed only for such a format's extension (`UNREAD_EXTENSIONS`) and holds no
    image format at all (an HTML page saved as logo.gif): before formats not read were named, no folder listed such a
    file. None for any other file, and for one that cannot be opened (decoding reports it)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return None
    if not is_dicom(head) and (fmt := unsupported_format(head)) is not None:
        return Refusal(f"{one_name(os.fsdecode(path))}: {fmt} images are not supported; {EXPORT_AS}")
    if path.suffix.lower() not in UNREAD_EXTENSIONS or is_image_head(head):
        return None
    try:  # no image format's first bytes: decoding fails at once, in its own words
        read_grayscale(path)
    except InputError as err:
        return Refusal(str(err), no_image=True)
    return None


def _holds_no_image(head: bytes) -> bool:
    """Whether the file meta at the head of a DICOM file names a SOP class of `_NOT_IMAGE_SOP_CLASSES` (False when
    it cannot tell: decoding then reports the file)."""
    uid = _meta_sop_class(head[132:] if head[128:132] == b"DICM" else head)
    return any(uid == family or uid.startswith(family + ".") for family in _NOT_IMAGE_SOP_CLASSES)


def _meta_sop_class(meta: bytes) -> str:
    """The Media Storage SOP Class UID (0002,0002) of a DICOM file meta group, which is always explicit VR little
    endian (PS3.10 7.1), read from its bytes: pydicom took 0.3 ms a file for this, listing a folder ('' if absent)."""
    at = 0
    while at + 8 <= len(meta) and meta[at:at + 2] == b"\x02\x00":
        element, vr = int.from_bytes(meta[at + 2:at + 4], "little"), meta[at + 4:at + 6]
        if vr in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UR", b"UT", b"UN"):
            start, length = at + 12, int.from_bytes(meta[at + 8:at + 12], "little")
        else:
            start, length = at + 8, int.from_bytes(meta[at + 6:at + 8], "little")
        if element == 0x0002:
            return meta[start:start + length].decode("ascii", "replace").strip("\x00 ")
        at = start + length
    return ""


def _image_like_name(path: Path) -> bool:
    """An image extension, none, or a DICOM UID's last number (1.2.840.113619.2.55.3.12345)."""
    return path.suffix.lower() in IMAGE_SUFFIXES or path.suffix[1:].isdigit()
