"""Which files are images (`data.formats`): by extension, by content, and DICOM objects that hold none; films in
formats not read are listed so that reading them reports them."""
from __future__ import annotations

from pathlib import Path

import pytest

from pneumoscan.data.layout import discover
from pneumoscan.errors import InputError
from pneumoscan.inference.inputs import expand_paths
from tests.conftest import write_dicom, write_xray


def test_films_in_a_format_not_read_are_listed_to_be_reported_not_left_out(tmp_path: Path) -> None:
    from PIL import Image

    from pneumoscan.data.decode import read_grayscale

    write_xray(tmp_path / "NORMAL" / "a.png", 0, 1)
    write_xray(tmp_path / "PNEUMONIA" / "b.png", 1, 2)
    Image.new("L", (40, 40), 90).save(tmp_path / "PNEUMONIA" / "c.webp")  # as a phone or browser saves a film
    (tmp_path / "PNEUMONIA" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(60))  # not an image
    found = [s.path.name for s in discover(tmp_path)["all"]]
    assert found == ["a.png", "b.png", "c.webp"]
    assert [p.name for p in expand_paths([tmp_path / "PNEUMONIA"])] == ["b.png", "c.webp"]
    with pytest.raises(InputError, match=r"c\.webp: WebP images are not supported; export the X-ray as PNG, JPEG "):
        read_grayscale(tmp_path / "PNEUMONIA" / "c.webp")


def test_a_film_in_a_format_not_read_is_named_as_decoding_names_it(tmp_path: Path) -> None:
    """Listing a folder named `ideo\\u3000sp  scan.gif` as `ideo sp scan.gif` (another file) where reading it named
    it as it is; a right-to-left override in a name printed as it is, reordering the message on a terminal."""
    from PIL import Image

    from pneumoscan.data.decode import read_grayscale
    from pneumoscan.data.formats import unread_refusal

    gif = tmp_path / "ideo\u3000sp  scan\u202efig.gif"
    Image.new("L", (40, 40), 90).save(gif, "GIF")
    named = f"{tmp_path}/ideo\u3000sp  scan\\u202efig.gif: GIF images are not supported"
    refusal = unread_refusal(gif)
    assert refusal is not None and refusal.text.startswith(named)
    with pytest.raises(InputError) as exc:
        read_grayscale(gif)
    assert str(exc.value) == refusal.text


def test_jpegs_saved_as_jfif_are_read(tmp_path: Path) -> None:
    # Windows and some browsers save JPEGs as .jfif: left out of the class folder without a word before
    write_xray(tmp_path / "NORMAL" / "a.jpg", 0, 1).rename(tmp_path / "NORMAL" / "a.JFIF")
    write_xray(tmp_path / "PNEUMONIA" / "b.jpg", 1, 2).rename(tmp_path / "PNEUMONIA" / "b.jpe")
    assert [s.path.name for s in discover(tmp_path)["all"]] == ["a.JFIF", "b.jpe"]


def test_a_dicom_exports_dicomdir_is_not_taken_for_an_image(tmp_path: Path) -> None:
    """A DICOM export's DICOMDIR (a DICOM file without pixels, by content an image candidate) made `predict EXPORT/`
    exit 1 and `audit --strict` fail on an unreadable file, on every standard CD or PACS export."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    root = tmp_path / "export"
    films = [write_dicom(root / name / "1.2.3.4", label, label) for label, name in enumerate(("NORMAL", "PNEUMONIA"))]
    index = Dataset()
    index.file_meta = FileMetaDataset()
    index.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
    index.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    index.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    index.FileSetID = "SITE"
    for folder in (root, root / "NORMAL"):
        pydicom.dcmwrite(folder / "DICOMDIR", index, enforce_file_format=True)
    assert expand_paths([root]) == films
    assert [s.path for s in discover(root)["all"]] == films


def test_an_exports_extensionless_files_that_are_not_images_are_left_out(tmp_path: Path) -> None:
    """A CD or PACS export holds IM00001 (a DICOM file with no extension) beside VERSION and LOCKFILE (text, no
    extension either): those were taken for images, so `predict EXPORT/` exited 1 and `train` and `audit --strict`
    reported them as unreadable. Files without an extension are images by their content, of any format read."""
    from PIL import Image

    root = tmp_path / "export"
    films = [write_dicom(root / name / "IM00001", label, label) for label, name in enumerate(("NORMAL", "PNEUMONIA"))]
    scan = root / "PNEUMONIA" / "scan"  # a PNG or JPEG saved without its extension is read as before
    for fmt in ("PNG", "JPEG", "TIFF", "BMP"):
        Image.new("L", (40, 40), 128).save(scan, fmt)
        assert [s.path for s in discover(root)["all"]] == [*films, scan], fmt
    for folder in (root, root / "NORMAL", root / "PNEUMONIA"):
        (folder / "VERSION").write_text("1.0\n")
        (folder / "LOCKFILE").write_bytes(b"")
    (root / "PNEUMONIA" / "notes.txt").write_text("not an image")
    assert expand_paths([root]) == sorted([*films, scan])
    assert [s.path for s in discover(root)["all"]] == [*films, scan]


def test_an_exports_dicom_objects_that_hold_no_image_are_left_out(tmp_path: Path) -> None:
    """A PACS study export holds presentation states, structured reports, key-object notes and PDFs beside the
    films, as DICOM files under any name: `predict EXPORT/` exited 1 on each ('no pixel data') and `audit --strict`
    failed on them as unreadable files. By their SOP class they are no images, like the DICOMDIR."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    root = tmp_path / "export"
    films = [write_dicom(root / name / f"IM0000{label}.dcm", label, label)
             for label, name in enumerate(("NORMAL", "PNEUMONIA"))]
    for name, sop_class in (("PS000001.dcm", "1.2.840.10008.5.1.4.1.1.11.1"),  # grayscale presentation state
                            ("SR000001", "1.2.840.10008.5.1.4.1.1.88.22"),  # enhanced SR
                            ("1.2.826.0.1.3680043.8.1", "1.2.840.10008.5.1.4.1.1.88.59"),  # key object selection
                            ("report.dicom", "1.2.840.10008.5.1.4.1.1.104.1")):  # encapsulated PDF
        other = Dataset()
        other.file_meta = FileMetaDataset()
        other.file_meta.MediaStorageSOPClassUID = sop_class
        other.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        other.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        other.SOPClassUID, other.PatientID = sop_class, "P1"
        for folder in (root / "NORMAL", root / "PNEUMONIA"):
            pydicom.dcmwrite(folder / name, other, enforce_file_format=True)
    # without the preamble and 'DICM', as older devices write: still an image, and still not one
    (root / "NORMAL" / "copied.dcm").write_bytes(films[0].read_bytes()[132:])
    (root / "NORMAL" / "SR000002").write_bytes((root / "NORMAL" / "SR000001").read_bytes()[132:])
    (root / "NORMAL" / "empty.dcm").write_bytes(b"")  # reported by reading it, not left out unseen
    found = sorted([*films, root / "NORMAL" / "copied.dcm", root / "NORMAL" / "empty.dcm"])
    assert expand_paths([root]) == found
    assert sorted(s.path for s in discover(root)["all"]) == found
