from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from pneumoscan.data.audit import audit, audit_problems, format_audit
from tests.conftest import write_dicom, write_xray


def test_duplicates_across_patients_and_labels_are_reported(tmp_path: Path) -> None:
    for offset, split in ((0, "train"), (50, "test")):
        for i in range(3):
            write_xray(tmp_path / split / "NORMAL" / f"IM-{i:04d}-0001.png", 0, offset + i)
            write_xray(tmp_path / split / "PNEUMONIA" / f"person{i}_virus_{i}.png", 1, 100 + offset + i)
    train = tmp_path / "train"
    shutil.copy(train / "NORMAL" / "IM-0000-0001.png", train / "NORMAL" / "IM-0000-0002.png")  # one patient: fine
    shutil.copy(train / "NORMAL" / "IM-0001-0001.png", train / "NORMAL" / "IM-0042-0001.png")  # two patients
    shutil.copy(train / "NORMAL" / "IM-0002-0001.png", train / "PNEUMONIA" / "person2_virus_9.png")  # two labels
    report = audit(tmp_path, progress=False)
    assert len(report["duplicate_groups"]) == 3 and report["cross_split_duplicates"] == []
    assert report["cross_patient_duplicates"] == [["train/NORMAL/IM-0001-0001.png", "train/NORMAL/IM-0042-0001.png"],
                                                  ["train/NORMAL/IM-0002-0001.png", "train/PNEUMONIA/person2_virus_9.png"]]
    assert report["label_conflict_duplicates"] == [["train/NORMAL/IM-0002-0001.png",
                                                    "train/PNEUMONIA/person2_virus_9.png"]]
    assert audit_problems(report) == ["1 group of byte-identical files with both labels",
                                      "2 groups of byte-identical files under two patient IDs"]
    assert sum(report["patient_ids_in_two_splits"].values()) == 6  # IM-0000..2 and person0..2: reported, not failed
    text = format_audit(report)
    assert "groups: 3 (0 across splits, 2 across patient IDs, 1 with both labels, 1 within one patient)" in text
    assert "\n  train/NORMAL/IM-0001-0001.png = train/NORMAL/IM-0042-0001.png\n" in text
    # one patient's copies are no leak, but named apart: the text counted them and named neither file
    assert ("  within one patient (no leak; each copy counts as a film, in training or evaluation; keep one): 1\n"
            "    train/NORMAL/IM-0000-0001.png = train/NORMAL/IM-0000-0002.png\n") in text


def test_patient_ids_from_file_names_in_two_splits_are_named_by_a_pair_of_files(tmp_path: Path) -> None:
    """`patient IDs in both train+test: 6` named no file, in the text or the JSON, so a user could not check
    whether they are one child (a leak) or Kermany's numbers restarting in each split."""
    for offset, split in ((0, "train"), (50, "test")):
        for i in range(4):
            write_xray(tmp_path / split / "NORMAL" / f"IM-{i:04d}-000{1 + offset // 50}.png", 0, offset + i)
        write_xray(tmp_path / split / "PNEUMONIA" / f"person{offset}_virus_1.png", 1, 100 + offset)
    report = audit(tmp_path, progress=False)
    assert report["patient_ids_in_two_splits"] == {"train+test": 4}
    pairs = [[f"train/NORMAL/IM-{i:04d}-0001.png", f"test/NORMAL/IM-{i:04d}-0002.png"] for i in range(4)]
    assert report["name_keys_in_two_splits"] == {"train+test": pairs}
    assert audit_problems(report) == []  # reported, not failed
    assert ("patient IDs in both train+test: 4\n  by file name, e.g. train/NORMAL/IM-0000-0001.png & "
            "test/NORMAL/IM-0000-0002.png; train/NORMAL/IM-0001-0001.png & test/NORMAL/IM-0001-0002.png; "
            "train/NORMAL/IM-0002-0001.png & test/NORMAL/IM-0002-0002.png (and 1 more)\n") in format_audit(report)


def test_a_patient_id_read_from_a_folder_in_one_split_and_a_file_name_in_another_is_named_by_its_files(
        tmp_path: Path) -> None:
    """With --patient-key folder, train/NORMAL/pt1/a.png and a loose val/NORMAL/pt1.png share the key pt1: counted
    in both splits, but named in neither list (one held keys of file names on both sides, the other of folders)."""
    write_xray(tmp_path / "train" / "NORMAL" / "pt1" / "a.png", 0, 1)
    write_xray(tmp_path / "train" / "PNEUMONIA" / "pt2" / "b.png", 1, 2)
    write_xray(tmp_path / "val" / "NORMAL" / "pt1.png", 0, 3)
    write_xray(tmp_path / "val" / "PNEUMONIA" / "pt3" / "c.png", 1, 4)
    report = audit(tmp_path, progress=False, patient_key="folder")
    assert report["patient_ids_in_two_splits"] == {"train+val": 1}
    # a file name's key may be numbers restarting in each split: reported as the others by file name, not a leak
    assert report["name_keys_in_two_splits"] == {"train+val": [["train/NORMAL/pt1/a.png", "val/NORMAL/pt1.png"]]}
    assert report["same_patient_in_two_splits"] == []
    assert ("patient IDs in both train+val: 1\n  by file name, e.g. train/NORMAL/pt1/a.png & val/NORMAL/pt1.png"
            in format_audit(report))


def test_the_text_names_a_few_files_of_a_group_and_of_a_list_and_counts_the_rest(tmp_path: Path) -> None:
    """A group of copies printed every name on one line, and a list stopped at 20 lines without saying how many
    more there were."""
    normal = tmp_path / "train" / "NORMAL"
    write_xray(normal / "IM-0001-0001.png", 0, 1)
    write_xray(tmp_path / "train" / "PNEUMONIA" / "person1_virus_1.png", 1, 2)
    for i in range(2, 7):
        shutil.copy(normal / "IM-0001-0001.png", normal / f"IM-0001-000{i}.png")  # six copies of one patient's film
    for i in range(25):
        (normal / f"bad{i:02d}.png").write_bytes(b"not a png")
    report = audit(tmp_path, progress=False)
    assert len(report["duplicate_groups"][0]) == 6 and len(report["unreadable"]) == 25
    lines = format_audit(report).splitlines()
    assert ("    train/NORMAL/IM-0001-0001.png = train/NORMAL/IM-0001-0002.png = train/NORMAL/IM-0001-0003.png "
            "(and 3 more)") in lines
    start = lines.index("unreadable files: 25")
    assert [line.split(":")[0] for line in lines[start + 1:start + 21]] == [
        f"  {normal / f'bad{i:02d}.png'}" for i in range(20)]
    assert lines[start + 21] == "  ... and 5 more (--json lists them all)"
    for i in range(2, 23):  # 21 groups of one patient's copies: 20 named, under their heading, and one counted
        for k in (1, 2):
            write_xray(normal / f"IM-{i:04d}-000{k}.png", 0, 100 + i)
    lines = format_audit(audit(tmp_path, progress=False)).splitlines()
    start = lines.index("  within one patient (no leak; each copy counts as a film, in training or evaluation; keep "
                        "one): 22")
    assert all(line.startswith("    train/NORMAL/IM-") for line in lines[start + 1:start + 21])
    assert lines[start + 21] == "    ... and 2 more (--json lists them all)"


def test_duplicates_are_named_by_where_they_are(tmp_path: Path) -> None:
    """A file in a sub-folder keeps it in its name, and a manifest's files are named by their own path (with the
    split and class the manifest gives them), not by a made-up split/class/name that does not exist."""
    data = tmp_path / "data"
    for split in ("train", "val"):
        write_xray(data / split / "NORMAL" / "IM-0001-0001.png", 0, 1 if split == "train" else 2)
        write_xray(data / split / "PNEUMONIA" / "person1_virus_1.png", 1, 3 if split == "train" else 4)
    (data / "train" / "PNEUMONIA" / "site2").mkdir()
    shutil.copy(data / "train" / "NORMAL" / "IM-0001-0001.png", data / "train" / "PNEUMONIA" / "site2" / "IM-0001-0001.png")
    report = audit(data, progress=False)
    assert report["label_conflict_duplicates"] == [["train/NORMAL/IM-0001-0001.png",
                                                    "train/PNEUMONIA/site2/IM-0001-0001.png"]]

    (tmp_path / "a").mkdir()
    shutil.copy(data / "train" / "PNEUMONIA" / "person1_virus_1.png", tmp_path / "a" / "person1_virus_1.png")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label\ndata/train/PNEUMONIA/person1_virus_1.png,PNEUMONIA\na/person1_virus_1.png,PNEUMONIA\n"
                        "data/val/NORMAL/IM-0001-0001.png,NORMAL\n")
    report = audit(manifest, progress=False)
    assert report["duplicate_groups"] == [["a/person1_virus_1.png (PNEUMONIA)",
                                           "data/train/PNEUMONIA/person1_virus_1.png (PNEUMONIA)"]]
    assert all((tmp_path / name.split(" (")[0]).is_file() for name in report["duplicate_groups"][0])


def test_unreadable_files_alike_are_listed_as_unreadable_not_as_duplicates(tmp_path: Path) -> None:
    """Two empty files (a copy that failed) are byte-identical: they were reported as a leak across splits and as
    one film under both labels, though no command reads either, and `train` warned of neither."""
    for offset, split in ((0, "train"), (50, "test")):
        for label, name in enumerate(("NORMAL", "PNEUMONIA")):
            write_xray(tmp_path / split / name / f"IM-{offset + label:04d}-0001.png", label, offset + label)
            (tmp_path / split / name / "pt1").mkdir()
            (tmp_path / split / name / "pt1" / "scan.png").write_bytes(b"")  # one name in two folders
    report = audit(tmp_path, progress=False)
    assert len(report["unreadable"]) == 4
    assert report["duplicate_groups"] == [] and report["name_keys_across_folders"] == []
    assert audit_problems(report) == ["4 unreadable files"]
    assert ("byte-identical duplicate groups: 0 (0 across splits, 0 across patient IDs, 0 with both labels, 0 within "
            "one patient)") in format_audit(report)


def test_a_manifest_beside_its_films_names_them_without_dot_dot(tmp_path: Path) -> None:
    """`../x/...` rows were printed as `man/../x/...`: the audit names them tidied, as train's predictions do."""
    write_xray(tmp_path / "x" / "NORMAL" / "IM-0001-0001.png", 0, 1, size=8)
    write_xray(tmp_path / "x" / "PNEUMONIA" / "person1_virus_1.png", 1, 2)
    (tmp_path / "man").mkdir()
    (tmp_path / "man" / "m.csv").write_text("path,label\n../x/NORMAL/IM-0001-0001.png,NORMAL\n"
                                            "../x/PNEUMONIA/person1_virus_1.png,PNEUMONIA\n")
    report = audit(tmp_path / "man" / "m.csv", progress=False)
    assert report["too_small"] == [f"{tmp_path / 'x' / 'NORMAL' / 'IM-0001-0001.png'} (NORMAL): 8 x 8 px"]
    assert "/../" not in format_audit(report)


def test_a_split_without_readable_images_shows_no_sizes(tmp_path: Path) -> None:
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        (tmp_path / "train" / name).mkdir(parents=True)
        (tmp_path / "train" / name / "broken.png").write_bytes(b"not an image")
        write_xray(tmp_path / "val" / name / f"IM-000{label}-0001.png", label, label)
    report = audit(tmp_path, progress=False)
    assert report["splits"]["train"]["unreadable"] == 2 and report["splits"]["train"]["width_min"] is None
    text = format_audit(report)
    assert "None" not in text and "none readable" in text


def _dicom_splits(root: Path) -> None:
    """train/ and test/ of UID-named DICOM files: patients A0..A2 (2 films each) in train, A2 and B0 in test."""
    from tests.conftest import write_dicom

    seed = 0
    for split, patients in (("train", ("A0", "A1", "A2")), ("test", ("A2", "B0"))):
        for patient in patients:
            for k in range(2):
                for label, cls in enumerate(("NORMAL", "PNEUMONIA")):
                    seed += 1
                    write_dicom(root / split / cls / patient / f"1.2.3.{seed}", label, seed, patient_id=patient, size=8)


def test_audit_counts_patients_by_the_chosen_key_and_says_which(tmp_path: Path) -> None:
    _dicom_splits(tmp_path)
    report = audit(tmp_path, progress=False)
    assert report["patient_key"] == "auto" and report["patient_keys_from"] == {"dicom": 20}
    assert report["splits"]["train"]["patients"] == {"NORMAL": 3, "PNEUMONIA": 3}
    assert report["patient_ids_in_two_splits"] == {"train+test": 1}  # A2
    assert "patients: --patient-key auto (20 by DICOM PatientID)" in format_audit(report)
    by_name = audit(tmp_path, progress=False, patient_key="name")
    assert by_name["patient_keys_from"] == {"name": 20} and by_name["patient_ids_in_two_splits"] == {"train+test": 0}
    assert by_name["splits"]["train"]["patients"] == {"NORMAL": 6, "PNEUMONIA": 6}
    by_folder = audit(tmp_path, progress=False, patient_key="folder")
    assert by_folder["splits"]["test"]["patients"] == {"NORMAL": 2, "PNEUMONIA": 2}
    assert by_folder["patient_ids_in_two_splits"] == {"train+test": 1}


def test_a_byte_identical_copy_under_another_name_of_the_same_patient_is_no_cross_patient_duplicate(
        tmp_path: Path) -> None:
    _dicom_splits(tmp_path)
    first = sorted((tmp_path / "train" / "NORMAL" / "A0").iterdir())[0]
    shutil.copy(first, first.with_name("copy.dcm"))  # same PatientID: the same patient
    assert audit(tmp_path, progress=False)["cross_patient_duplicates"] == []
    assert len(audit(tmp_path, progress=False, patient_key="name")["cross_patient_duplicates"]) == 1


NOTE = "Kermany patient numbers restart in each split"


def test_the_kermany_note_only_where_patients_are_read_from_kermany_names_in_two_splits(tmp_path: Path) -> None:
    from tests.conftest import write_dicom_dataset

    dicom = write_dicom_dataset(tmp_path / "dicom", patients=2, films=1, size=16)  # one split, UID names
    report = audit(dicom, progress=False)
    assert report["note"] is None and NOTE not in format_audit(report)
    for split in ("train", "test"):  # two splits, but files named by the scanner: patients do not restart
        write_xray(tmp_path / "other" / split / "NORMAL" / "scan_0001.png", 0, 1)
        write_xray(tmp_path / "other" / split / "PNEUMONIA" / "scan_0002.png", 1, 2)
    assert audit(tmp_path / "other", progress=False)["note"] is None
    kermany = tmp_path / "kermany"
    for split, seed in (("train", 3), ("test", 5)):
        write_xray(kermany / split / "NORMAL" / "a" / "IM-0001-0001.jpeg", 0, seed)
        write_xray(kermany / split / "PNEUMONIA" / "b" / "person1_virus_2.jpeg", 1, seed + 1)
    report = audit(kermany, progress=False)
    assert report["note"].startswith(NOTE) and f"note: {NOTE}" in format_audit(report)
    assert audit(kermany, progress=False, patient_key="folder")["note"] is None  # keys from folders do not restart
    assert audit(kermany / "train", progress=False)["note"] is None  # one split: nothing restarts


def test_audit_counts_patients_over_the_readable_films_it_reports(tmp_path: Path) -> None:
    """Unreadable files were among the keys' sources ('21 by DICOM PatientID, 2 by file name' for a table of 20
    readable films) and the patient IDs in two splits, a film whose header names a patient but whose pixels are cut
    off among them."""
    from tests.conftest import write_dicom

    _dicom_splits(tmp_path)
    for split in ("train", "test"):
        (tmp_path / split / "NORMAL" / "broken.png").write_bytes(b"not an image")  # patient 'broken' by file name
    cut = write_dicom(tmp_path / "test" / "PNEUMONIA" / "1.2.3.99", 1, 99, patient_id="A0", size=64)
    cut.write_bytes(cut.read_bytes()[:-2000])  # header and PatientID intact, pixels cut off
    report = audit(tmp_path, progress=False)
    assert len(report["unreadable"]) == 3
    assert report["patient_keys_from"] == {"dicom": 20}
    assert sum(sum(info["images"].values()) for info in report["splits"].values()) == 20
    assert "patients: --patient-key auto (20 by DICOM PatientID)\n" in format_audit(report)
    assert report["patient_ids_in_two_splits"] == {"train+test": 1}  # A2 only: not 'broken', nor A0 by the cut film


def test_a_colour_screenshot_among_the_films_is_listed_and_fails_strict(tmp_path: Path) -> None:
    # a hospital export's screenshot: trained on unnoticed, though the guard refuses its like at predict time
    import numpy as np
    from PIL import Image

    for i in range(2):
        write_xray(tmp_path / "NORMAL" / f"IM-{i:04d}-0001.png", 0, i)
        write_xray(tmp_path / "PNEUMONIA" / f"person{i}_virus_{i}.jpeg", 1, 10 + i)
    write_xray(tmp_path / "NORMAL" / "grey saved as RGB.jpg", 0, 5)  # an RGB file of a grey film is no colour image
    Image.open(tmp_path / "NORMAL" / "grey saved as RGB.jpg").convert("RGB").save(tmp_path / "NORMAL" / "rgb.png")
    shot = np.zeros((40, 60, 3), np.uint8)
    shot[:, :20] = (200, 30, 30)
    shot[:, 20:40] = (30, 160, 60)
    shot[:, 40:] = (40, 60, 220)
    Image.fromarray(shot).save(tmp_path / "NORMAL" / "Screenshot 1.png")
    report = audit(tmp_path, progress=False)
    assert len(report["colour"]) == 1 and report["colour"][0].startswith("NORMAL/Screenshot 1.png: "
                                                                         "colour image (colourfulness ")
    assert audit_problems(report) == ["1 colour image"]
    assert "colour images (not chest X-rays as taken; the guard refuses such files): 1" in format_audit(report)


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL_422"])
def test_a_colour_dicom_is_listed_as_a_colour_image_and_a_grey_one_is_not(tmp_path: Path, photometric: str) -> None:
    """Colour DICOMs (a screenshot or photo exported to PACS) read 0 for colourfulness, so audit passed them and the
    guard never refused them, while the same pixels as PNG were listed."""
    import numpy as np

    from tests.conftest import dicom_to_bytes, make_colour_dicom, write_dicom

    for i in range(2):
        write_xray(tmp_path / "NORMAL" / f"IM-{i:04d}-0001.png", 0, i)
        write_xray(tmp_path / "PNEUMONIA" / f"person{i}_virus_{i}.jpeg", 1, 10 + i)
    write_dicom(tmp_path / "NORMAL" / "1.2.3.4", 0, 7)  # a grey film
    shot = np.zeros((40, 60, 3), np.uint8)
    shot[:, :20] = (200, 30, 30)
    shot[:, 20:40] = (30, 160, 60)
    shot[:, 40:] = (40, 60, 220)
    (tmp_path / "NORMAL" / "1.2.3.5").write_bytes(dicom_to_bytes(make_colour_dicom(shot, photometric)))
    report = audit(tmp_path, progress=False)
    assert len(report["colour"]) == 1 and report["colour"][0].startswith("NORMAL/1.2.3.5: "
                                                                         "colour image (colourfulness ")
    assert audit_problems(report) == ["1 colour image"]


def test_a_lateral_dicom_film_is_listed_by_its_view_position_and_fails_strict(tmp_path: Path) -> None:
    """A PACS chest series exports the lateral film beside the frontal one, and its header says so: audit passed it
    (trained on and scored as a frontal film); a frontal, an unstated and a JPEG film are not listed."""
    from tests.conftest import dicom_to_bytes, make_dicom, with_view_code, xray_pixels

    for i in range(2):
        write_xray(tmp_path / "PNEUMONIA" / f"person{i}_virus_{i}.jpeg", 1, 10 + i)
    for name, view in (("IM00001", "AP"), ("IM00002", "PA"), ("IM00003", None), ("IM00004", "LL"),
                       ("1.2.3.4", "RLO"), ("IM00005", ("SRT", "R-10232"))):
        ds = make_dicom(xray_pixels(0, len(name)), bits_stored=8)
        if isinstance(view, tuple):  # no View Position, a View Code Sequence: right lateral
            with_view_code(ds, *view)
        elif view is not None:
            ds.ViewPosition = view
        (tmp_path / "NORMAL").mkdir(exist_ok=True)
        (tmp_path / "NORMAL" / name).write_bytes(dicom_to_bytes(ds))
    report = audit(tmp_path, progress=False)
    assert report["not_frontal"] == [
        "NORMAL/1.2.3.4: DICOM View Position RLO, not a plain frontal (AP or PA) film; the model reads "
        "plain frontal chest X-rays only, remove it",
        "NORMAL/IM00004: DICOM View Position LL, not a plain frontal (AP or PA) film; the model reads "
        "plain frontal chest X-rays only, remove it",
        "NORMAL/IM00005: DICOM View Code Sequence right lateral (SRT R-10232), not a plain frontal (AP or PA) film; "
        "the model reads plain frontal chest X-rays only, remove it"]
    assert audit_problems(report) == ["3 DICOM films of a view other than plain frontal (AP or PA)"]
    assert ("DICOM films of a view other than plain frontal (AP or PA) (by their header; the model reads plain "
            "frontal films): 3" in format_audit(report))


def test_images_with_no_patient_folder_are_listed_not_the_end_of_the_audit(tmp_path: Path, capsys) -> None:
    """`audit --patient-key folder` stopped at the first image lying right in its class folder, with train's error;
    it lists them all instead (and --strict fails on them), while train still refuses them, counting them."""
    import pytest

    from pneumoscan.cli import main
    from pneumoscan.errors import InputError
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.run_data import prepare_data

    for i in range(4):
        write_xray(tmp_path / "train" / "NORMAL" / f"pt{i}" / "a.png", 0, i)
        write_xray(tmp_path / "train" / "PNEUMONIA" / f"pt{9 + i}" / "b.png", 1, 10 + i)
    loose = [write_xray(tmp_path / "train" / cls / f"loose{i}.png", i % 2, 20 + i)
             for i, cls in enumerate(("NORMAL", "PNEUMONIA", "NORMAL"))]
    report = audit(tmp_path, progress=False, patient_key="folder")
    shown = sorted(path.relative_to(tmp_path).as_posix() for path in loose)  # named as the audit's other lists do
    assert report["no_patient_folder"] == shown
    assert report["patient_keys_from"] == {"folder": 8, "name": 3}
    assert audit_problems(report) == ["3 images with no patient folder (--patient-key folder)"]
    text = format_audit(report)
    assert ("images right in their class folder, with no patient folder for --patient-key folder to read (train "
            "refuses them; keyed by file name here): 3") in text and all(f"  {path}\n" in text for path in shown)
    assert audit(tmp_path, progress=False)["no_patient_folder"] == []  # auto reads no folder
    assert main(["audit", str(tmp_path), "--patient-key", "folder"]) == 0
    assert main(["audit", str(tmp_path), "--patient-key", "folder", "--strict"]) == 3
    assert "3 images with no patient folder (--patient-key folder)" in capsys.readouterr().err
    with pytest.raises(InputError, match=r"loose0\.png: --patient-key folder reads .* has none \(nor have 2 other "
                                         r"files headed as images, .*; `pneumoscan audit` with --patient-key folder "
                                         r"lists those that read\); put"):
        prepare_data(TrainConfig(data=str(tmp_path), out=str(tmp_path / "r"), patient_key="folder"), 16, False)


def test_a_patient_in_two_splits_by_dicom_header_or_manifest_is_a_leak_that_fails_strict(tmp_path: Path,
                                                                                          capsys) -> None:
    """A hospital export's PatientID (or a manifest's patient column) in train and test is one patient on both
    sides, unlike Kermany's file-name numbers that restart in each split: `audit --strict` passed such a leak with
    only a count. Files are named, the PatientID never."""
    import json

    from pneumoscan.cli import main
    from tests.conftest import write_dicom

    for split, patients in (("train", ("MRN-0007", "MRN-0008")), ("test", ("MRN-0007", "MRN-0009"))):
        for patient in patients:
            for label, cls in enumerate(("NORMAL", "PNEUMONIA")):
                write_dicom(tmp_path / split / cls / f"IM{patient[-1]}{label}", label, int(patient[-1]) + 10 * label
                            + (split == "test") * 100, patient_id=patient)
    report = audit(tmp_path, progress=False)
    assert report["same_patient_in_two_splits"] == [["train/NORMAL/IM70", "test/NORMAL/IM70"]]
    problem = "1 patient in two splits (by DICOM PatientID)"
    assert audit_problems(report) == [problem]
    text = format_audit(report)
    assert ("patients in two splits by DICOM PatientID, so the same patient on both sides (a leak): 1\n"
            "  train/NORMAL/IM70 & test/NORMAL/IM70") in text
    assert "MRN-0007" not in text + json.dumps(report)
    assert audit(tmp_path, progress=False, patient_key="name")["same_patient_in_two_splits"] == []  # IM70 restarts
    assert main(["audit", str(tmp_path), "--strict"]) == 3 and problem in capsys.readouterr().err

    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,split,patient\ntrain/NORMAL/IM80,NORMAL,train,p1\n"
                        "test/NORMAL/IM90,NORMAL,test,p1\ntest/PNEUMONIA/IM91,PNEUMONIA,test,p2\n")
    by_manifest = audit(manifest, progress=False)
    assert by_manifest["same_patient_in_two_splits"] == [
        ["train/NORMAL/IM80 (train NORMAL)", "test/NORMAL/IM90 (test NORMAL)"]]
    assert audit_problems(by_manifest) == ["1 patient in two splits (by manifest patient column)"]


def test_the_placeholder_patient_id_warning_says_it_counts_unreadable_films_too(tmp_path: Path) -> None:
    """A damaged film's header still gives its PatientID, so the warning's 'on 8 of the 8' counted it while the
    table beside it counts 7 readable films; the line says what it counts."""
    for i in range(4):
        write_dicom(tmp_path / "NORMAL" / f"f{i}.dcm", 0, i, patient_id="0")
        write_dicom(tmp_path / "PNEUMONIA" / f"g{i}.dcm", 1, 10 + i, patient_id="0")
    damaged = tmp_path / "PNEUMONIA" / "g3.dcm"
    damaged.write_bytes(damaged.read_bytes()[:-800])  # the pixels cut short, the header whole
    with pytest.warns(UserWarning) as caught:
        report = audit(tmp_path, progress=False)
    (line,) = [str(w.message) for w in caught if "PatientID" in str(w.message)]
    assert line.startswith("PatientID '0' on 8 of the 8 DICOM files with a PatientID in their header (readable films "
                           "or not): taken for a placeholder")
    assert len(report["unreadable"]) == 1 and report["patient_keys_from"] == {"name": 7}


def test_file_names_joining_films_of_different_folders_are_listed_with_the_way_out(tmp_path: Path) -> None:
    """An export names each patient's films 1.png, 2.png in a folder per patient: keyed by file name, every `1.png`
    is one patient, which the audit did not say; Kermany's names, restarting in each split, are not listed."""
    for i in range(3):
        write_xray(tmp_path / "train" / "NORMAL" / f"pt{i}" / "1.png", 0, i)
        write_xray(tmp_path / "train" / "PNEUMONIA" / f"pt{5 + i}" / "1.png", 1, 10 + i)
        write_xray(tmp_path / "train" / "PNEUMONIA" / f"pt{5 + i}" / "2.png", 1, 20 + i)
    write_xray(tmp_path / "train" / "NORMAL" / "pt0" / "IM-0001-0001.png", 0, 30)
    write_xray(tmp_path / "test" / "NORMAL" / "IM-0001-0001.png", 0, 31)  # the same Kermany name in two splits
    write_xray(tmp_path / "test" / "PNEUMONIA" / "person1_virus_1.png", 1, 40)
    report = audit(tmp_path, progress=False)
    assert report["name_keys_across_folders"] == [
        [f"train/{cls}/pt{i}/1.png" for cls, i in (("NORMAL", 0), ("NORMAL", 1), ("NORMAL", 2), ("PNEUMONIA", 5),
                                                   ("PNEUMONIA", 6), ("PNEUMONIA", 7))],
        [f"train/PNEUMONIA/pt{i}/2.png" for i in (5, 6, 7)]]
    text = format_audit(report)
    assert ("file names taken for one patient though in different folders (their patient is read from the file name; "
            "if they are not one patient, key them otherwise: each patient's films in a folder of their own and "
            "--patient-key folder, or a CSV manifest with a patient column): 2") in text
    assert "  train/NORMAL/pt0/1.png & train/NORMAL/pt1/1.png & train/NORMAL/pt2/1.png (and 3 more)\n" in text
    assert audit(tmp_path, progress=False, patient_key="folder")["name_keys_across_folders"] == []
    assert audit_problems(report) == []  # one patient too many is no leak: listed, not failed


def test_loose_files_with_patient_key_folder_are_listed_once_as_having_no_patient_folder(tmp_path: Path) -> None:
    """NORMAL/1.png and PNEUMONIA/1.png right in their class folders, keyed by file name for want of a patient
    folder, were listed twice: as having none and as file names joining folders, advising the --patient-key folder
    the user had passed."""
    for cls, label in (("NORMAL", 0), ("PNEUMONIA", 1)):
        write_xray(tmp_path / "train" / cls / "1.png", label, label)
        write_xray(tmp_path / "train" / cls / f"pt{label}" / "2.png", label, 10 + label)
    report = audit(tmp_path, progress=False, patient_key="folder")
    assert report["no_patient_folder"] == ["train/NORMAL/1.png", "train/PNEUMONIA/1.png"]
    assert report["name_keys_across_folders"] == []
    assert "file names taken for one patient" not in format_audit(report)


def test_an_unreadable_copy_of_a_film_under_both_labels_is_a_duplicate(tmp_path: Path) -> None:
    """Unreadable files were all left out of the duplicate checks, so a film's copy in a format not read (or a DICOM
    whose decoder is missing) under the other label was a leak audit reported only once the file was fixed. Only
    files whose bytes are no content (empty, one byte repeated) are left out: those are alike without being copies."""
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        write_xray(tmp_path / "train" / name / f"IM-{label:04d}-0001.png", label, label)
    webp = b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(range(40))  # one film, converted once, filed under both labels
    (tmp_path / "train" / "NORMAL" / "IM-0007-0001.webp").write_bytes(webp)
    (tmp_path / "train" / "PNEUMONIA" / "IM-0008-0001.webp").write_bytes(webp)
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):  # a copy that failed: zeros, or nothing
        (tmp_path / "train" / name / "IM-0009-0001.png").write_bytes(bytes(300))
        (tmp_path / "train" / name / "IM-0010-0001.png").write_bytes(b"")
    report = audit(tmp_path, progress=False)
    assert len(report["unreadable"]) == 6
    assert report["duplicate_groups"] == [["train/NORMAL/IM-0007-0001.webp", "train/PNEUMONIA/IM-0008-0001.webp"]]
    assert "1 group of byte-identical files with both labels" in audit_problems(report)


def test_byte_identical_files_of_no_image_format_are_no_duplicate_of_a_film(tmp_path: Path) -> None:
    """A failed download's HTML error page saved under both labels was 'a group of byte-identical files with both
    labels': a label conflict between films that do not exist, which no decoder or conversion ever reads. They are
    listed as unreadable; a damaged JPEG's copy under both labels is still one film twice."""
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        write_xray(tmp_path / "train" / name / f"IM-{label:04d}-0001.png", label, label)
    page = b"<!DOCTYPE html><html><body>403 Forbidden</body></html>\n" * 3
    cut = b"\xff\xd8\xff\xe0" + bytes(range(200))  # a truncated JPEG: a film's bytes
    for name in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "train" / name / "IM-0005-0001.jpeg").write_bytes(page)
        (tmp_path / "train" / name / "IM-0006-0001.jpeg").write_bytes(cut)
    report = audit(tmp_path, progress=False)
    assert len(report["unreadable"]) == 4
    assert report["duplicate_groups"] == [["train/NORMAL/IM-0006-0001.jpeg", "train/PNEUMONIA/IM-0006-0001.jpeg"]]


def test_the_text_lists_print_names_as_every_other_message_does(tmp_path: Path) -> None:
    """The text report's lists of small, colour and duplicate films printed a name as it is: a right-to-left override
    (`x\\u202egnp.exe.png`) reordered the line on a terminal (`xexe.png`) and a newline split it, where the
    unreadable list, from the decoder's errors, printed them escaped (`one_name`)."""
    import numpy as np
    from PIL import Image

    normal = tmp_path / "train" / "NORMAL"
    write_xray(normal / "ok.png", 0, 1)
    write_xray(tmp_path / "train" / "PNEUMONIA" / "p.png", 1, 2)
    Image.new("L", (20, 20), 90).save(normal / "x\u202egnp.exe.png")
    rgb = np.zeros((80, 80, 3), np.uint8)
    rgb[:, :40, 0], rgb[:, 40:, 1] = 255, 255
    Image.fromarray(rgb).save(normal / "c\nd.png")
    shutil.copy(normal / "ok.png", normal / "ok\u200b.png")
    text = format_audit(audit(tmp_path, progress=False))
    assert "  train/NORMAL/x\\u202egnp.exe.png: 20 x 20 px" in text
    assert "  train/NORMAL/c\\nd.png: colour image" in text
    assert "  train/NORMAL/ok.png = train/NORMAL/ok\\u200b.png" in text
    assert "\u202e" not in text and "\u200b" not in text and "\nd.png" not in text


def test_a_patient_of_train_in_a_dicom_film_named_jpeg_in_test_is_a_leak(tmp_path: Path) -> None:
    """train keys test/'s files named .jpg unopened, and so did audit, which then missed a leak it reads anyway: two
    DICOM films named t0.jpg and t1.jpg hold the PatientID N1 of train/'s films (patient IDs in both train+test: 0,
    no leak line), and a copy of one of N1's films named t2.jpg was under two patient IDs. The audit keys them by
    their PatientID again; train/'s keys are still train's (patient_keys_rule 5: placeholders judged without them)."""
    from tests.conftest import write_dicom_dataset

    write_dicom_dataset(tmp_path, patients=3, films=2, size=32)
    for i in range(2):
        write_dicom(tmp_path / "test" / "NORMAL" / f"t{i}.jpg", 0, 70 + i, patient_id="N1", size=32)
    shutil.copy(tmp_path / "train" / "NORMAL" / "1.2.826.0.1.3680043.0.1.1", tmp_path / "test" / "NORMAL" / "t2.jpg")
    write_dicom(tmp_path / "test" / "PNEUMONIA" / "u0.png", 1, 80, patient_id="Q7", size=32)
    report = audit(tmp_path, progress=False)
    assert report["patient_ids_in_two_splits"] == {"train+test": 1}
    assert report["same_patient_in_two_splits"] == [["train/NORMAL/1.2.826.0.1.3680043.0.1.0", "test/NORMAL/t0.jpg"]]
    assert report["cross_patient_duplicates"] == [] and len(report["cross_split_duplicates"]) == 1
    assert audit_problems(report) == ["1 group of byte-identical files in two splits",
                                      "1 patient in two splits (by DICOM PatientID)"]
    assert report["splits"]["test"]["patients"] == {"NORMAL": 1, "PNEUMONIA": 1}
    assert report["splits"]["train"]["patients"] == {"NORMAL": 3, "PNEUMONIA": 3}
    assert report["patient_keys_from"] == {"dicom": 16}


def test_a_site_patient_id_on_most_films_with_test_films_named_jpeg_is_a_placeholder_not_a_leak(tmp_path: Path) -> None:
    """A site's fixed PatientID (SITE9) on test/'s DICOM films named .jpg under both labels and on 2 of train/'s was
    judged a placeholder over train's headers only (2 films: too few to tell), so the audit made one patient of all 8
    films and reported a leak (--strict: exit 3). Judged with the test/ headers the audit reads, it is on all 8 DICOM
    films: a placeholder, as before patient_key_rule 5; no patient in two splits."""
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        for i in range(3):
            write_xray(tmp_path / "train" / name / f"{name[0]}{i}.jpeg", label, 10 * label + i)
            write_dicom(tmp_path / "test" / name / f"t{i}.jpg", label, 40 + 10 * label + i, patient_id="SITE9",
                        size=32)
        write_dicom(tmp_path / "train" / name / f"x{label}.dcm", label, 90 + label, patient_id="SITE9", size=32)
    report = audit(tmp_path, progress=False)
    assert report["patient_ids_in_two_splits"] == {"train+test": 0} and report["same_patient_in_two_splits"] == []
    assert audit_problems(report) == []
    assert report["splits"]["test"]["patients"] == {"NORMAL": 3, "PNEUMONIA": 3}


@pytest.mark.parametrize("train_films, test_films, labels", [(1, 4, (0, 1)), (2, 3, (1,))])
def test_a_placeholder_found_only_with_test_films_named_jpeg_is_named(tmp_path: Path, train_films: int,
                                                                      test_films: int, labels: tuple[int, ...]) -> None:
    """A PatientID taken for a placeholder only once the audit reads test/'s DICOM films named .jpg (which train keys
    by name unopened) left those films keyed by name without a word: a site's ID (SITE9, on 2 of train/'s films,
    which train keys as one patient) and a real patient's holding most of the IDs read (P7: 2 films of train/ beside
    Q1 and Q2, 3 of test/; a leak the audit cannot tell from a placeholder) alike. Now one line names it, its counts
    and what a patient's ID so judged would hide."""
    value = "SITE9" if labels == (0, 1) else "P7"
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        for i in range(3):
            write_xray(tmp_path / "train" / name / f"{name[0]}{i}.jpeg", label, 10 * label + i)
            write_xray(tmp_path / "test" / name / f"T{name[0]}{i}.jpeg", label, 30 + 10 * label + i)
    for label in labels:
        name = ("NORMAL", "PNEUMONIA")[label]
        for i in range(train_films):
            write_dicom(tmp_path / "train" / name / f"x{i}.dcm", label, 90 + 10 * label + i, patient_id=value, size=32)
        for i in range(test_films):
            write_dicom(tmp_path / "test" / name / f"t{i}.jpg", label, 60 + 10 * label + i, patient_id=value, size=32)
    if value == "P7":
        for i in (1, 2):
            write_dicom(tmp_path / "train" / "NORMAL" / f"q{i}.dcm", 0, 80 + i, patient_id=f"Q{i}", size=32)
    with pytest.warns(UserWarning) as caught:
        report = audit(tmp_path, progress=False)
    texts = [str(w.message) for w in caught if value in str(w.message)]
    n_train, n_test = train_films * len(labels), test_films * len(labels)
    total = n_train + n_test + (2 if value == "P7" else 0)
    assert texts == [f"PatientID {value!r} on {n_train + n_test} of the {total} DICOM files with a PatientID in their "
                     f"header, {n_test} of them in test/ named for another image format (which train keys by name "
                     f"unopened): taken for a placeholder, not a patient, so those films are keyed by file name, as "
                     f"train keys them, matching no film of another split; train, which reads {n_train} other films "
                     f"holding it, keys them as one patient; if it is one patient's ID, that patient's films in test/ "
                     f"and in the other splits are not counted as one patient in two splits (their headers give no "
                     f"sex and birth date to tell): list them in a CSV manifest with a patient column"]
    assert report["patient_ids_in_two_splits"] == {"train+test": 0}


def _dicom_of(path: Path, label: int, seed: int, patient_id: str, sex: str, born: str) -> None:
    """A DICOM film with this PatientID, PatientSex and PatientBirthDate."""
    from tests.conftest import dicom_to_bytes, make_dicom, xray_pixels

    ds = make_dicom(xray_pixels(label, seed, 32), bits_stored=8, patient_id=patient_id)
    ds.PatientSex, ds.PatientBirthDate = sex, born
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dicom_to_bytes(ds))


@pytest.mark.parametrize("sexes, leak", [("MMMMM", 1), ("MFMFM", 0)])
def test_a_patient_on_most_films_only_with_test_films_named_jpeg_is_a_leak_when_the_headers_say_so(
        tmp_path: Path, sexes: str, leak: int) -> None:
    """P7, on 2 of train/'s 4 DICOM films (a patient to train) and on 3 test/ DICOM films named .jpg, was on 5 of the
    7 PatientIDs the audit read: a placeholder, so the patient in both splits went uncounted. The headers of all five
    give one sex and birth date, as one patient's do: a leak. Given different sexes it is no one patient's, and a
    placeholder as before (said so in its warning)."""
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        write_xray(tmp_path / "train" / name / f"{name[0]}.jpeg", label, 10 * label)
        write_xray(tmp_path / "test" / name / f"T{name[0]}.jpeg", label, 30 + 10 * label)
    places = [tmp_path / "train" / "PNEUMONIA" / f"p7{i}.dcm" for i in range(2)]
    places += [tmp_path / "test" / "PNEUMONIA" / f"t{i}.jpg" for i in range(3)]
    for i, (place, sex) in enumerate(zip(places, sexes)):
        _dicom_of(place, 1, 50 + i, "P7", sex, "19700101")
    for i in (1, 2):
        _dicom_of(tmp_path / "train" / "NORMAL" / f"q{i}.dcm", 0, 80 + i, f"Q{i}", "F", "19800101")
    with pytest.warns(UserWarning) if not leak else warnings.catch_warnings() as caught:
        if leak:
            warnings.simplefilter("error")
        report = audit(tmp_path, progress=False)
    assert report["patient_ids_in_two_splits"] == {"train+test": leak}
    if not leak:
        assert [str(w.message).endswith("their headers give different sexes or birth dates, so it is no one "
                                        "patient's") for w in caught] == [True]


def test_a_sites_id_sex_and_birth_date_on_test_films_named_jpeg_alone_do_not_make_test_one_patient(
        tmp_path: Path) -> None:
    """A site's anonymiser wrote PatientID SITE, sex M and birth date 1970-01-01 (or 19700101) on every test/ DICOM
    film named .jpeg, the patients of train/ having IDs of their own: SITE, on most of the films, kept for one
    patient's by its one sex and birth date, made test/ one patient in the audit's counts (8/8 -> 1/1) and one cluster
    in evaluate's bootstrap, though no film of another split holds it. Its films keep their file names' keys, as
    named .dcm they do, and the warning says why."""
    from pneumoscan.data.layout import discover
    from pneumoscan.evaluation.evaluate import film_patients

    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        for p in range(3):
            for k in range(2):
                _dicom_of(tmp_path / "train" / name / f"tr{label}_{p}_{k}.dcm", label, 10 * p + k + 100 * label,
                          f"PID{label}{p}", "F", "19700101")
        for p in range(4):
            for k in range(2):
                _dicom_of(tmp_path / "test" / name / f"te{label}_{p}_{k}.jpeg", label, 50 + 10 * p + k + 100 * label,
                          "SITE", "M", "1970-01-01" if k else "19700101")
    with pytest.warns(UserWarning) as caught:
        report = audit(tmp_path, progress=False)
    assert report["splits"]["test"]["patients"] == {"NORMAL": 8, "PNEUMONIA": 8}
    assert report["patient_ids_in_two_splits"] == {"train+test": 0}
    assert [str(w.message).endswith("their headers give one sex and birth date, but no film of another split holds "
                                    "it, so it names no patient in two splits") for w in caught] == [True]
    found = discover(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        groups = film_patients(found["test"], {"config": {"data": str(tmp_path), "patient_key": "auto"}},
                               progress=False, dataset=found)
    assert groups is not None and len(set(groups)) == 16 and "SITE" not in groups


@pytest.mark.parametrize("content", [b"", b"<html>404 Not Found</html>"], ids=["empty", "error-page"])
@pytest.mark.parametrize("where", ["loose", "patient-folder"])
def test_an_unreadable_file_with_patient_key_folder_is_unreadable_and_skipped_as_with_the_other_keys(
        tmp_path: Path, where: str, content: bytes) -> None:
    """With --patient-key folder an unreadable file right in its class folder was an image with no patient folder:
    the audit listed it so (and --strict failed twice on it), and train refused to start over it, where with the
    other keys it is an unreadable file that train skips (only a 0-byte file was skipped; an error page was not)."""
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.run_data import prepare_data

    for i in range(6):
        write_xray(tmp_path / "train" / "NORMAL" / f"pt{i}" / f"IM-{i:04d}-0001.png", 0, i)
        write_xray(tmp_path / "train" / "PNEUMONIA" / f"pt{9 + i}" / f"person{9 + i}_virus_1.png", 1, 10 + i)
    empty = tmp_path / "train" / "NORMAL" / ("pt0" if where == "patient-folder" else "") / "empty.png"
    empty.write_bytes(content)
    for key in ("folder", "name"):
        report = audit(tmp_path, progress=False, patient_key=key)
        assert report["no_patient_folder"] == [] and len(report["unreadable"]) == 1
        assert audit_problems(report) == ["1 unreadable file"]
        data = prepare_data(TrainConfig(data=str(tmp_path), out=str(tmp_path / "r"), patient_key=key), 16, False)
        assert [one.split(":")[0] for one in data.train.skipped + data.val.skipped] == [str(empty)]
        counts = data.split_record["counts"]
        assert sum(counts[part][c] for part in ("train", "val") for c in ("NORMAL", "PNEUMONIA")) == 12


@pytest.mark.parametrize("where", ["colour", "view"])
def test_a_film_whose_cues_run_short_of_memory_is_named_by_its_path(tmp_path: Path, where: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory running short in a film's colourfulness (its bytes, unnamed) was the out-of-memory error of
    '<upload>', naming no file; in reading its DICOM view it was swallowed, and a lateral film passed as frontal."""
    import numpy as np
    from PIL import Image

    import pneumoscan.data.decode as decode
    from pneumoscan.data.audit import _inspect
    from pneumoscan.errors import DecodeOutOfMemory

    def short(*_: object, **__: object) -> None:
        raise MemoryError

    if where == "colour":
        film = tmp_path / "NORMAL" / "colour.png"
        film.parent.mkdir()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(film)
        monkeypatch.setattr(Image.Image, "thumbnail", short)
    else:
        film = write_dicom(tmp_path / "NORMAL" / "1.2.3.4", 0, 7)
        monkeypatch.setattr(decode, "_view_words", short)
    with pytest.raises(DecodeOutOfMemory) as exc:
        _inspect(film)
    assert exc.value.label == str(film) and str(exc.value).startswith(f"{film}: the machine ran out of memory")
