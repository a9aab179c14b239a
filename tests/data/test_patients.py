from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from pneumoscan import CLASS_NAMES
from pneumoscan.data.labels import Sample
from pneumoscan.data.layout import discover
from pneumoscan.data.patients import (cause, cause_groups, cause_of, dicom_patient_id, keys_read, patient_id,
                                      patient_keys, patients_in_training, placeholder_ids, recorded_patient_key)
from pneumoscan.data.split import patient_split
from pneumoscan.errors import InputError
from tests.conftest import (dicom_to_bytes, interrupt_import, make_dicom, write_dicom,
                            write_partly_identified, write_xray)


@pytest.mark.parametrize(
    "name, patient",
    [
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-0587-0001.jpeg", "NORMAL2-IM-0587"),
        ("NORMAL2-IM-0587-0001-0002.jpeg", "NORMAL2-IM-0587"),
        ("IM-0629-0001-0002.jpeg", "IM-0629"),
        ("person19_virus_50.jpeg", "person19"),
        ("person1_bacteria_1.jpeg", "person1"),
        ("person1000_bacteria_2931.jpeg", "person1000"),
        ("scan_from_ward.png", "scan_from_ward"),
        ("person19_virus.jpeg", "person19_virus"),
        ("scan01.png", "scan01"),
        ("scan.v2.PNG", "scan.v2"),
        ("1.2.840.113619.2.55.3.12345", "1.2.840.113619.2.55.3.12345"),
        ("1.2.840.113619.2.55.3.12345.dcm", "1.2.840.113619.2.55.3.12345"),
        ("im-0115-0002.jpeg", "IM-0115"),  # one child, whatever the case of the name
        ("normal2-Im-0587-0001.JPEG", "NORMAL2-IM-0587"),
        ("Person19_Virus_51.jpeg", "person19"),
    ],
)
def test_patient_id(name: str, patient: str) -> None:
    assert patient_id(f"/x/y/{name}") == patient


def test_cause() -> None:
    assert cause("person19_virus_50.jpeg") == "virus"
    assert cause("person1_bacteria_1.jpeg") == "bacteria"
    assert cause("IM-0115-0001.jpeg") is None


def test_a_manifests_cause_wins_over_the_file_names() -> None:
    assert cause_of(Sample(Path("person1_virus_1.jpeg"), 1, cause="bacteria")) == "bacteria"
    assert cause_of(Sample(Path("person1_virus_1.jpeg"), 1)) == "virus"  # the manifest does not say: the name does
    assert cause_of(Sample(Path("scan01.png"), 1)) is None
    assert cause_of(Sample(Path("IM-0115-0001.jpeg"), 0)) is None


def test_causes_are_grouped_only_when_one_is_known() -> None:
    assert cause_groups(["bacteria", None, "virus"]) == ["bacteria", "unknown", "virus"]
    assert cause_groups([None, None]) is None and cause_groups([]) is None


# -- where the patient key is read (--patient-key) ------------------------------------------------------------------
def _keys(samples: list[Sample], choice: str = "auto") -> dict[str, str]:
    keys = patient_keys(samples, choice)
    return {Path(s.path).name: keys(s) for s in samples}


def test_auto_reads_the_dicom_patient_id_in_a_mixed_folder(tmp_path: Path) -> None:
    """DICOM files of one patient under unrelated names (and UID names) are one patient; a JPEG beside them keeps its
    file-name key, and so does a DICOM without a PatientID or with an empty one whose name is in no other folder."""
    write_dicom(tmp_path / "NORMAL" / "ward3" / "a.dcm", 0, 1, patient_id="pt7")
    write_dicom(tmp_path / "PNEUMONIA" / "1.2.840.113619.2.55.3.12345", 1, 2, patient_id="pt7 ")  # padded
    write_dicom(tmp_path / "PNEUMONIA" / "b.dcm", 1, 3, patient_id="pt8")
    write_dicom(tmp_path / "PNEUMONIA" / "no_id.dcm", 1, 4)
    write_dicom(tmp_path / "PNEUMONIA" / "blank_id.dcm", 1, 5, patient_id="  ")
    write_xray(tmp_path / "NORMAL" / "ward3" / "IM-0001-0002.jpeg", 0, 6)
    samples = discover(tmp_path)["all"]
    assert _keys(samples) == {"a.dcm": "pt7", "1.2.840.113619.2.55.3.12345": "pt7", "b.dcm": "pt8",
                              "no_id.dcm": "no_id", "blank_id.dcm": "blank_id", "IM-0001-0002.jpeg": "IM-0001"}
    assert patient_keys(samples).sources == {"dicom": 3, "name": 3}
    assert _keys(samples, "name")["1.2.840.113619.2.55.3.12345"] == "1.2.840.113619.2.55.3.12345"  # as before
    assert patient_keys(samples, "name").sources == {"name": 6}


def test_a_dicom_file_without_its_preamble_is_keyed_by_its_patient_id(tmp_path: Path) -> None:
    full = dicom_to_bytes(make_dicom(np.zeros((4, 4), np.uint8), bits_stored=8, patient_id="pt3"))
    (tmp_path / "NORMAL").mkdir()
    (tmp_path / "NORMAL" / "bare").write_bytes(full[132:])  # no 128-byte preamble and no 'DICM', as older devices write
    assert _keys([Sample(tmp_path / "NORMAL" / "bare", 0)]) == {"bare": "pt3"}


def test_placeholder_rule() -> None:
    assert placeholder_ids(["ANONYMOUS"] * 2 + ["a", "b", "c"]) == {"ANONYMOUS"}  # a known placeholder, twice
    assert placeholder_ids(["0000", "0000", "a", "b"]) == {"0000"}
    assert placeholder_ids(["ANONYMOUS", "a", "b"]) == set()  # once: that image is its own patient anyway
    assert placeholder_ids(["SITE-7"] * 3 + ["a", "b"]) == {"SITE-7"}  # most of the images: one patient cannot be
    assert placeholder_ids(["pt1"] * 2 + ["pt2"]) == set()  # too few images to tell
    assert placeholder_ids(["pt1"] * 3 + ["pt2"] * 3) == set()  # half is not most
    assert placeholder_ids([]) == set()


def test_a_placeholder_patient_id_is_not_one_giant_patient(tmp_path: Path) -> None:
    for i in range(4):
        write_dicom(tmp_path / "NORMAL" / f"scan{i}.dcm", 0, i, patient_id="ANONYMOUS")
        write_dicom(tmp_path / "PNEUMONIA" / f"film{i}.dcm", 1, 10 + i, patient_id="ANONYMOUS")
    write_dicom(tmp_path / "PNEUMONIA" / "real.dcm", 1, 20, patient_id="pt9")
    samples = discover(tmp_path)["all"]
    with pytest.warns(UserWarning) as caught:
        keys = patient_keys(samples)
    (warning,) = caught
    text = str(warning.message)
    assert "PatientID 'ANONYMOUS' on 8 of the 9 DICOM files with a PatientID in their header" in text
    assert "each of those images is keyed by its file name instead (and its folder, where the name is in other " \
           "folders too)" in text
    assert "patient column" in text and "--patient-key folder" in text and "\n" not in text
    assert keys(samples[0]) == "scan0" and keys.sources == {"dicom": 1, "name": 8}
    assert keys(next(s for s in samples if s.path.name == "real.dcm")) == "pt9"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        patient_keys(samples, "name")  # not read at all: no warning


def test_an_export_without_patient_ids_is_not_one_patient_per_file_name(tmp_path: Path) -> None:
    """A DICOM export names its films IM000000 in every series folder; with anonymised PatientIDs (a placeholder, or
    none at all) the file name made one patient of every film of that name, both classes together, and the split
    put nearly all of them in validation. Such a film is keyed by its folder and name; so is a Kermany name found in
    other folders too."""
    for i in range(6):
        for label, cls in enumerate(("NORMAL", "PNEUMONIA")):
            series = tmp_path / cls / f"PT{i:06d}" / "ST000000" / "SE000000"
            write_dicom(series / "IM000000", label, 10 * i + label, patient_id="ANON" if i % 2 else None)
    write_dicom(tmp_path / "NORMAL" / "a" / "IM-0001-0001.dcm", 0, 90, patient_id="ANON")
    write_dicom(tmp_path / "NORMAL" / "b" / "IM-0001-0002.dcm", 0, 91)
    samples = discover(tmp_path)["all"]
    with pytest.warns(UserWarning, match="PatientID 'ANON' on 7 of the 7 DICOM files"):
        keys = patient_keys(samples)
    assert len({keys(s) for s in samples}) == 14 and keys.sources == {"file": 14}
    film = next(s for s in samples if s.path.name == "IM-0001-0002.dcm")
    assert keys(film) == f"IM-0001 in {tmp_path / 'NORMAL' / 'b'}" and keys.effective == "auto"
    with pytest.warns(UserWarning, match="ANON"):
        train, val = patient_split(samples, 0.25, keys=patient_keys(samples))
    assert 2 <= len(val) <= 5 and len(train) + len(val) == 14


def _unnamed_export(root: Path) -> list[Sample]:
    """10 films a class without a PatientID, each in a folder of its own, named `scanN07.dcm`: the folders sort the
    other way round from the names, so keying them by path reorders the patients."""
    for label, cls in enumerate(("NORMAL", "PNEUMONIA")):
        for i in range(10):
            write_dicom(root / cls / f"{chr(ord('z') - i)}{cls[0]}" / f"scan{cls[0]}{i:02d}.dcm", label, 10 * label + i,
                        size=8)
    return discover(root)["all"]


def test_dicom_films_without_patient_ids_under_unique_names_keep_the_split_runs_were_started_with(
        tmp_path: Path) -> None:
    """Keying every DICOM film without a PatientID by its path (to keep an export's same-named films apart) changed
    the split of exports whose names never repeat, where the name already kept them apart: `train --resume` of runs
    started before refused them as changed data. A name found in no other folder keys its film as `name` does."""
    samples = _unnamed_export(tmp_path)
    auto, name = patient_keys(samples), patient_keys(samples, "name")
    assert auto.keys == name.keys and auto.sources == {"name": 20} and auto.effective == "name"
    assert patient_split(samples, 0.15, 0, auto) == patient_split(samples, 0.15, 0, name)


def test_dicom_films_without_patient_ids_under_repeated_names_are_keyed_by_folder_and_told_apart(
        tmp_path: Path) -> None:
    """An OsiriX/Horos export names each series' films IM-0001-0001.dcm, IM-0001-0002.dcm: without PatientIDs the
    Kermany key IM-0001 made one patient of every series. Each series is now its own patient, keyed by folder and
    name (origin `file`), which `name` does not give: `auto` is then not `name` (so `train --init` warns when the
    pretraining split by name) and the split note says how its keys were read. Moving the data keeps the split."""
    for root in (tmp_path / "a", tmp_path / "moved" / "elsewhere"):
        for label, cls in enumerate(("NORMAL", "PNEUMONIA")):
            for p in range(4):
                for k in range(2):
                    write_dicom(root / cls / f"pt{cls[0]}{p}" / "Chest" / f"IM-0001-{k + 1:04d}.dcm", label,
                                10 * p + k, patient_id="", size=8)
        write_xray(root / "NORMAL" / "scan7.jpeg", 0, 99)
    samples = discover(tmp_path / "a")["all"]
    keys = patient_keys(samples)
    chest = tmp_path / "a" / "NORMAL" / "ptN0" / "Chest"
    assert {keys(s) for s in samples if s.path.parent == chest} == {f"IM-0001 in {chest}"}
    assert len({keys(s) for s in samples}) == 9 and keys.sources == {"name": 1, "file": 16}
    assert keys.effective == "auto" and recorded_patient_key(keys.record()) == "auto"
    assert keys_read(keys.record()) == "--patient-key auto (1 by file name, 16 by folder and file name)"
    assert keys.record()["patient_key_rule"] == 7
    moved = discover(tmp_path / "moved" / "elsewhere")["all"]
    val, val_moved = patient_split(samples, 0.3, 0, keys)[1], patient_split(moved, 0.3, 0, patient_keys(moved))[1]
    assert [s.path.relative_to(tmp_path / "a") for s in val] == \
        [s.path.relative_to(tmp_path / "moved" / "elsewhere") for s in val_moved]


def test_folder_key_is_the_folders_below_the_class_folder(tmp_path: Path) -> None:
    write_xray(tmp_path / "train" / "NORMAL" / "pt7" / "a.png", 0, 1)
    write_xray(tmp_path / "train" / "PNEUMONIA" / "pt7" / "b.png", 1, 2)  # the same patient, with pneumonia later
    write_dicom(tmp_path / "train" / "PNEUMONIA" / "ward3" / "pt9" / "c.dcm", 1, 3, patient_id="ignored")
    write_xray(tmp_path / "test" / "NORMAL" / "pt7" / "d.png", 0, 4)
    write_xray(tmp_path / "test" / "PNEUMONIA" / "pt1" / "e.png", 1, 5)
    samples = [s for split in discover(tmp_path).values() for s in split]
    assert _keys(samples, "folder") == {"a.png": "pt7", "b.png": "pt7", "c.dcm": "ward3/pt9", "d.png": "pt7",
                                        "e.png": "pt1"}
    assert patient_keys(samples, "folder").sources == {"folder": 5}
    write_xray(tmp_path / "train" / "NORMAL" / "loose.png", 0, 6)
    with pytest.raises(InputError, match=r"loose\.png: --patient-key folder .* \(NORMAL/<patient>/loose\.png\), or "
                                         r"use --patient-key auto$"):
        patient_keys(discover(tmp_path)["train"], "folder")
    outside = Sample(tmp_path / "exports" / "pt4" / "f.png", 0)  # a manifest's row under no class folder
    assert patient_keys([outside], "folder")(outside) == str(tmp_path / "exports" / "pt4")


def test_dataset_keys_refuse_an_image_with_no_patient_folder_only_among_the_films_used(tmp_path: Path) -> None:
    """`train --patient-key folder` uses train/ and val/: an image right in test/'s class folder is keyed by its file
    name (train never reads it), one in train/ stops the run; the audit (no `used`) keys and lists them all."""
    from pneumoscan.data.patients import dataset_keys

    write_xray(tmp_path / "train" / "NORMAL" / "pt1" / "a.png", 0, 1)
    write_xray(tmp_path / "train" / "PNEUMONIA" / "pt2" / "b.png", 1, 2)
    write_xray(tmp_path / "test" / "NORMAL" / "loose.png", 0, 3)
    write_xray(tmp_path / "test" / "PNEUMONIA" / "pt3" / "c.png", 1, 4)
    splits = discover(tmp_path)
    keys = dataset_keys(splits, "folder", splits["train"], progress=False)
    assert keys.sources == {"folder": 3, "name": 1}
    assert dataset_keys(splits, "folder", progress=False).sources == {"folder": 3, "name": 1}
    with pytest.raises(InputError, match=r"loose\.png: --patient-key folder .* has none; put"):
        dataset_keys(splits, "folder", splits["train"] + splits["test"], progress=False)


def test_images_with_no_patient_folder_are_decoded_only_until_one_reads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal needs one loose film that decodes; the others are counted by their first bytes: decoding each
    (full-size PNGs) only to count them took minutes before the one-line error. An error page is still no film."""
    import pneumoscan.data.decode as decode

    write_xray(tmp_path / "NORMAL" / "pt1" / "a.png", 0, 1)
    (tmp_path / "NORMAL" / "a_page.png").write_bytes(b"<html>404 Not Found</html>")  # first, unreadable
    for i in range(5):
        write_xray(tmp_path / "NORMAL" / f"loose{i}.png", 0, 2 + i)
    (tmp_path / "NORMAL" / "z_page.png").write_bytes(b"<html>404 Not Found</html>")
    write_xray(tmp_path / "PNEUMONIA" / "pt2" / "b.png", 1, 9)
    samples = discover(tmp_path)["all"]
    decoded: list[str] = []
    read = decode.read_grayscale
    monkeypatch.setattr(decode, "read_grayscale",
                        lambda path, **kw: decoded.append(Path(path).name) or read(path, **kw))
    with pytest.raises(InputError, match=r"loose0\.png: --patient-key folder .* none \(nor have 4 other files headed as images,"):
        patient_keys(samples, "folder")
    assert decoded == ["a_page.png", "loose0.png"]
    (tmp_path / "NORMAL").joinpath("a_page.png").unlink()
    for i in range(5):
        (tmp_path / "NORMAL" / f"loose{i}.png").unlink()
    samples = discover(tmp_path)["all"]
    assert patient_keys(samples, "folder").sources == {"folder": 2, "name": 1}  # the error page: skipped, no film


def test_a_manifest_patient_column_comes_first_in_auto_only(tmp_path: Path) -> None:
    write_dicom(tmp_path / "a.dcm", 0, 1, patient_id="pt7")
    write_xray(tmp_path / "IM-0001-0001.png", 1, 2)
    samples = [Sample(tmp_path / "a.dcm", 0, "P-01"), Sample(tmp_path / "IM-0001-0001.png", 1, "P-01"),
               Sample(tmp_path / "a.dcm", 1)]
    keys = patient_keys(samples)
    assert [keys(s) for s in samples] == ["P-01", "P-01", "pt7"] and keys.sources == {"manifest": 2, "dicom": 1}
    name = patient_keys(samples, "name")
    assert [name(s) for s in samples] == ["a", "IM-0001", "a"]
    with pytest.raises(InputError, match="--patient-key ward: must be one of auto, name, folder"):
        patient_keys(samples, "ward")


def test_recorded_patient_key_of_split_records() -> None:
    assert recorded_patient_key({}) == "name"  # split.json before --patient-key: names were all it read
    assert recorded_patient_key({"patient_key": "auto", "patient_keys_from": {"name": 12}}) == "name"
    assert recorded_patient_key({"patient_key": "auto", "patient_keys_from": {"dicom": 3, "name": 9}}) == "auto"
    assert recorded_patient_key({"patient_key": "folder", "patient_keys_from": {"folder": 12}}) == "folder"


# The split of this Kermany-named tree before --patient-key existed (split seed 0, 15 %), by file name.
KERMANY_VAL = ["IM-0006-0001.jpeg", "IM-0013-0001.jpeg", "IM-0013-0002.jpeg", "IM-0023-0001.jpeg", "IM-0023-0002.jpeg",
               "IM-0023-0003.jpeg", "NORMAL2-IM-0010-0001-0001.jpeg", "NORMAL2-IM-0010-0001-0002.jpeg",
               "person15_bacteria_150.jpeg", "person16_virus_160.jpeg", "person16_virus_161.jpeg",
               "person23_bacteria_230.jpeg", "person23_bacteria_231.jpeg", "person23_bacteria_232.jpeg",
               "person34_bacteria_340.jpeg", "person34_bacteria_341.jpeg", "person4_virus_40.jpeg",
               "person4_virus_41.jpeg", "person7_bacteria_70.jpeg", "person7_bacteria_71.jpeg"]


def _kermany_tree(root: Path) -> Path:
    for p in range(24):
        for k in range(1 + p % 3):
            name = f"NORMAL2-IM-{p:04d}-0001-{k + 1:04d}.jpeg" if p % 5 == 0 else f"IM-{p:04d}-{k + 1:04d}.jpeg"
            (root / "NORMAL").mkdir(parents=True, exist_ok=True)
            (root / "NORMAL" / name).write_bytes(b"\xff\xd8")
    for p in range(36):
        for k in range(1 + (p * 7) % 3):
            kind = "virus" if p % 4 == 0 else "bacteria"
            (root / "PNEUMONIA").mkdir(parents=True, exist_ok=True)
            (root / "PNEUMONIA" / f"person{p}_{kind}_{p * 10 + k}.jpeg").write_bytes(b"\xff\xd8")
    return root


def test_keys_read_says_how_a_record_read_its_patients() -> None:
    """The audit's patients line and the report's split note."""
    assert keys_read({"patient_key": "auto", "patient_keys_from": {"dicom": 102, "name": 18}}) == \
        "--patient-key auto (102 by DICOM PatientID, 18 by file name)"
    assert keys_read({"patient_key": "auto", "patient_keys_from": {"manifest": 4}}) == \
        "--patient-key auto (4 by manifest patient column)"
    assert keys_read({"patient_key": "folder", "patient_keys_from": {}}) == "--patient-key folder (no images)"
    assert keys_read({"counts": {}}) == "file names (a split made before --patient-key)"


def test_an_mrn_column_keys_the_patients_as_the_manifest_patient_column(tmp_path: Path) -> None:
    # an export's MRN column was not read: each film became its own patient, free to land on both sides of the split
    for name in ("scan1.png", "scan2.png", "scan3.png"):
        write_xray(tmp_path / name, 0, 1)
    (tmp_path / "m.csv").write_text("File Name,Label,MRN\nscan1.png,NORMAL,0042\nscan2.png,PNEUMONIA,0042\n"
                                    "scan3.png,NORMAL,0077\n")
    keys = patient_keys(discover(tmp_path / "m.csv")["all"])
    assert sorted(keys.keys.values()) == ["0042", "0042", "0077"]
    assert keys_read(keys.record()) == "--patient-key auto (3 by manifest patient column)"

def test_the_split_of_kermany_names_is_the_one_before_patient_keys(tmp_path: Path) -> None:
    samples = discover(_kermany_tree(tmp_path))["all"]
    for choice in ("auto", "name"):
        keys = patient_keys(samples, choice)
        _, val = patient_split(samples, 0.15, 0, keys)
        assert [s.path.name for s in val] == KERMANY_VAL
        assert keys.effective == "name" and keys.sources == {"name": len(samples)}
    _, default = patient_split(samples, 0.15, 0)
    assert [s.path.name for s in default] == KERMANY_VAL


def test_shared_patients_keys_a_dicom_film_named_jpeg_in_test_unopened_as_train_does(tmp_path: Path) -> None:
    """evaluate's count of patients shared with the training data (whose keys its bootstrap takes on) read the header
    of a test/ DICOM film named .jpg, which `train` keys by name unopened: P1, on the 4 DICOM films of train/
    PNEUMONIA, was a placeholder to it (6 of the 10 DICOM films) and a patient to `train` and `audit` (4 of 8)."""
    from pneumoscan.data.patients import dataset_keys, patients_in_training

    data = tmp_path / "data"
    for i in range(4):
        write_dicom(data / "train" / "PNEUMONIA" / f"p{i}.dcm", 1, i, patient_id="P1", size=16)
        write_dicom(data / "train" / "NORMAL" / f"n{i}.dcm", 0, 10 + i, patient_id=f"N{i}", size=16)
    for i in range(2):
        write_dicom(data / "test" / "PNEUMONIA" / f"t{i}.jpg", 1, 20 + i, patient_id="P1", size=16)
    write_xray(data / "test" / "NORMAL" / "IM-0007-0001.png", 0, 91)
    found = discover(data)
    keys = patients_in_training(found["test"], {"config": {"data": str(data), "patient_key": "auto"}},
                                progress=False).keys
    assert keys is not None and {keys(s) for s in found["train"] if s.label} == {"P1"}
    assert {s: keys(s) for s in found["train"]} == {s: dataset_keys(found, progress=False)(s) for s in found["train"]}


def test_shared_patients_compares_a_dicom_film_named_jpeg_in_test_by_its_patient_id(tmp_path: Path) -> None:
    """A DICOM film of test/ named .jpg is keyed by its name unopened, as `train` keys it, but evaluate reads it
    anyway: its PatientID (N1, on train/'s films) is still compared, so its patient is counted as one the model was
    trained on; a placeholder PatientID is not (each such film its own patient), and train/'s keys stay train's. The
    keys returned (the bootstrap's) are the compared ones."""
    from pneumoscan.data.patients import dataset_keys, patients_in_training

    data = tmp_path / "data"
    for p in range(3):
        for label, name in enumerate(("NORMAL", "PNEUMONIA")):
            write_dicom(data / "train" / name / f"1.2.3.{label}.{p}", label, 10 * p + label, patient_id=f"{name[0]}{p}")
    for i in range(2):
        write_dicom(data / "test" / "NORMAL" / f"t{i}.jpg", 0, 20 + i, patient_id="N1", size=16)
    write_dicom(data / "test" / "PNEUMONIA" / "u0.png", 1, 30, patient_id="ANONYMOUS", size=16)
    write_dicom(data / "test" / "PNEUMONIA" / "u1.jpeg", 1, 31, patient_id="ANONYMOUS", size=16)
    found = discover(data)
    result = patients_in_training(found["test"], {"config": {"data": str(data), "patient_key": "auto"}},
                                  progress=False)
    assert result.shared == {"patients": 1, "films": 2, "by": ["DICOM PatientID"], "compared": 2}
    trained = dataset_keys(found, progress=False)
    assert result.keys is not None and {s: result.keys(s) for s in found["train"]} == {
        s: trained(s) for s in found["train"]}
    assert {s.path.name: result.keys(s) for s in found["test"]} == {"t0.jpg": "N1", "t1.jpg": "N1", "u0.png": "u0",
                                                                    "u1.jpeg": "u1"}


def test_shared_patients_counts_the_evaluated_films_of_patients_the_model_was_trained_on(tmp_path: Path) -> None:
    """Patients of the scored split with films in the training data, keyed as audit keys them: by PatientID (one
    shared, N1), not by Kermany's file names, which restart in each split (IM-0007 in both is not counted)."""
    data = tmp_path / "data"
    for p in range(3):
        for label, name in enumerate(("NORMAL", "PNEUMONIA")):
            write_dicom(data / "train" / name / f"1.2.3.{label}.{p}", label, 10 * p + label, patient_id=f"{name[0]}{p}")
    write_xray(data / "train" / "NORMAL" / "IM-0007-0001.png", 0, 90)
    write_dicom(data / "test" / "NORMAL" / "1.2.4.0", 0, 50, patient_id="N1")
    write_dicom(data / "test" / "PNEUMONIA" / "1.2.4.1", 1, 51, patient_id="N1")  # N1 again, now with pneumonia
    write_dicom(data / "test" / "PNEUMONIA" / "1.2.4.2", 1, 52, patient_id="P9")
    write_xray(data / "test" / "NORMAL" / "IM-0007-0001.png", 0, 91)
    test = discover(data)["test"]
    training = {"config": {"data": str(data), "patient_key": "auto"}}

    def shared(samples: list[Sample], record: dict) -> dict | None:
        return patients_in_training(samples, record, progress=False).shared

    assert shared(test, training) == {"patients": 1, "films": 2, "by": ["DICOM PatientID"],
                                      "compared": 3}  # the PNG is keyed by its name
    assert shared(discover(data)["train"], training)["patients"] == 0  # its own films aside
    assert shared(test, {"config": {**training["config"], "patient_key": "name"}}) == {
        "patients": 0, "films": 0, "by": [], "compared": 0}
    assert shared(test, {"config": {"data": str(tmp_path / "moved"), "patient_key": "auto"}}) is None
    assert shared(test, {"members": []}) is None  # no member records its data


def _trained_and_decoy(tmp_path: Path) -> tuple[Path, list[Sample]]:
    """`lab/data`, the data a model was trained on (`train --data data`, run in lab/) with a film of patient N1;
    `elsewhere/data`, an unrelated folder at the same relative path without N1; and the scored films (one of N1).
    Returns lab and the scored films."""
    for root, patient in ((tmp_path / "lab" / "data", "N1"), (tmp_path / "elsewhere" / "data", "N7")):
        write_dicom(root / "train" / "NORMAL" / "1.2.0", 0, 10, patient_id=patient)
        write_dicom(root / "train" / "PNEUMONIA" / "1.2.1", 1, 11, patient_id="P0")
    write_dicom(tmp_path / "site" / "NORMAL" / "1.3.0", 0, 20, patient_id="N1")
    write_dicom(tmp_path / "site" / "PNEUMONIA" / "1.3.1", 1, 21, patient_id="P9")
    return tmp_path / "lab", discover(tmp_path / "site")["all"]


def test_a_relative_training_data_path_is_not_judged_from_the_current_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An older model records `--data data` relative to where `train` ran; judged from the current folder, the
    unrelated `data` there was counted as its training data (0 shared patients instead of 1). A model file out of
    its run folder cannot place the path: not counted, and the reason says why."""
    from pneumoscan.data.patients import uncounted_reason

    _, site = _trained_and_decoy(tmp_path)
    monkeypatch.chdir(tmp_path / "elsewhere")  # where `data` is an unrelated folder
    training = {"config": {"data": "data", "out": "runs/old", "patient_key": "auto"}}
    copied = tmp_path / "copied"  # the model file alone: no config.json beside it
    copied.mkdir()
    assert patients_in_training(site, training, progress=False, run_dir=copied).shared is None
    assert uncounted_reason(None, training, copied) == (
        "the model records its training data as data, a path relative to the folder training was started in, which "
        "cannot be told here: only a model file in its run folder (of a run given a relative --out) tells it")


def test_a_relative_training_data_path_is_placed_from_the_run_folder_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model file in its run folder: config.json's `out` (runs/old) tells where `train` ran (lab), so `data` is
    lab/data from any folder; a run folder moved since (its path no longer ends in `out`) is not guessed."""
    import json

    from pneumoscan.data.patients import uncounted_reason

    lab, site = _trained_and_decoy(tmp_path)
    monkeypatch.chdir(tmp_path / "elsewhere")
    run = lab / "runs" / "old"
    run.mkdir(parents=True)
    config = {"data": "data", "out": "runs/old", "patient_key": "auto"}
    (run / "config.json").write_text(json.dumps(config))
    training = {"config": config}
    assert patients_in_training(site, training, progress=False, run_dir=run).shared == {
        "patients": 1, "films": 1, "by": ["DICOM PatientID"], "compared": 2}
    (run / "config.json").write_text(json.dumps({**config, "out": "other/old"}))
    assert patients_in_training(site, training, progress=False, run_dir=run).shared is None
    assert "cannot be told here" in uncounted_reason(None, training, run)


def test_the_resolved_training_data_path_is_found_from_any_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model trained since records the absolute path `--data` resolved to (`data_resolved`): found from any
    folder without its run folder; when that folder is gone, the reason names it."""
    from pneumoscan.data.patients import uncounted_reason

    lab, site = _trained_and_decoy(tmp_path)
    monkeypatch.chdir(tmp_path / "elsewhere")
    training = {"config": {"data": "data", "data_resolved": str(lab / "data"), "patient_key": "auto"}}
    assert patients_in_training(site, training, progress=False).shared["patients"] == 1
    (lab / "data").rename(lab / "moved")
    assert patients_in_training(site, training, progress=False).shared is None
    assert uncounted_reason(None, training) == f"{lab / 'data'}, which the model was trained on, is not found"


def test_training_data_found_but_without_its_films_is_not_said_to_be_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder is there, but holds no train/ split now, or nothing readable as a data set: the reason said it
    'is not found', which is false and sends the user looking for a folder that is where it should be."""
    from pneumoscan.data.patients import uncounted_reason

    lab, site = _trained_and_decoy(tmp_path)
    monkeypatch.chdir(tmp_path / "elsewhere")
    data = lab / "data"
    training = {"config": {"data": "data", "data_resolved": str(data), "patient_key": "auto"}}
    (data / "train").rename(data / "test")
    assert patients_in_training(site, training, progress=False).shared is None
    assert uncounted_reason(None, training) == (
        f"{data}, which the model was trained on, is found but holds no train/ split now (its splits: test)")
    (data / "test").rename(tmp_path / "gone")
    assert patients_in_training(site, training, progress=False).shared is None
    assert uncounted_reason(None, training) == (
        f"{data}, which the model was trained on, is found but cannot be read as training data (found neither "
        f"train/ val/ test/ folders nor NORMAL/ PNEUMONIA/ class folders (it holds no sub-folders))")


def test_the_fit_guard_hint_names_the_training_data_as_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`fit-guard --data ...` suggestions named an older model's relative --data, wrong from another folder: now the
    folder it is found in (as typed when that names it from here too)."""
    import json

    from pneumoscan.artifact import ArtifactMeta

    lab, _ = _trained_and_decoy(tmp_path)
    run = lab / "runs" / "old"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"data": "data", "out": "runs/old"}))
    meta = ArtifactMeta(model_name="cnn", model_config={}, image_size=32, mean=0.5, std=0.2,
                        training={"config": {"data": "data", "out": "runs/old"}})
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert meta.placed_data(run).shown == str(lab / "data")
    assert meta.fit_guard_command("m", run) == f"`pneumoscan fit-guard --model m --data {lab / 'data'}`"
    monkeypatch.chdir(lab)
    assert meta.placed_data(run).shown == "data"


def test_the_fit_guard_hint_gives_a_placeholder_for_a_relative_path_it_cannot_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model file out of its run folder: its relative --data was printed as typed, `--data data`, which from the
    current folder names another folder (here an unrelated `data`), against the rule that it is never judged from
    there."""
    from pneumoscan.artifact import ArtifactMeta

    _trained_and_decoy(tmp_path)
    monkeypatch.chdir(tmp_path / "elsewhere")
    meta = ArtifactMeta(model_name="cnn", model_config={}, image_size=32, mean=0.5, std=0.2,
                        training={"config": {"data": "data", "out": "runs/old"}})
    assert meta.placed_data(tmp_path).shown is None
    assert meta.fit_guard_command("m", tmp_path) == (
        "`pneumoscan fit-guard --model m --data TRAINING_DATA` (TRAINING_DATA: recorded as data, relative to the "
        "folder training ran in)")
    assert ArtifactMeta(model_name="cnn", model_config={}, image_size=32, mean=0.5, std=0.2).fit_guard_command(
        "m") == "`pneumoscan fit-guard --model m --data TRAINING_DATA`"  # none recorded


def test_file_name_keys_across_folders_warn_from_a_quarter_of_the_named_images() -> None:
    from pneumoscan.data.patients import keys_across_folders, name_collision_warning

    unique = [Sample(Path(f"train/NORMAL/scan{i}.png"), 0) for i in range(6)]
    pair = [Sample(Path(f"train/NORMAL/pt{i}/1.png"), 0) for i in range(2)]
    keys = patient_keys([*unique, *pair], "name", progress=False)
    assert keys_across_folders([*unique, *pair], keys) == {"1": pair}
    assert name_collision_warning([*unique, *pair], keys) is not None  # 2 of 8 images: a quarter
    more = [*unique, Sample(Path("train/NORMAL/scan6.png"), 0), *pair]
    assert name_collision_warning(more, patient_keys(more, "name", progress=False)) is None  # 2 of 9
    assert keys_across_folders(pair, patient_keys(pair, "folder", progress=False)) == {}


def test_a_kermany_named_dicom_film_without_a_patient_id_joins_its_patients_jpeg_in_another_folder(
        tmp_path: Path) -> None:
    """The folders of a DICOM film's name key were counted over every image keyed by file name, JPEGs too: a
    Kermany-named DICOM film without a PatientID in one folder and the same patient's JPEG in another made two
    patients. Only DICOM files without a usable PatientID are counted now (an export's own repeated names)."""
    write_dicom(tmp_path / "NORMAL" / "a" / "IM-0001-0001.dcm", 0, 1, patient_id=None, size=8)
    write_xray(tmp_path / "NORMAL" / "b" / "IM-0001-0002.jpeg", 0, 2)
    write_xray(tmp_path / "PNEUMONIA" / "person9_bacteria_1.jpeg", 1, 3)
    samples = discover(tmp_path)["all"]
    keys = patient_keys(samples, progress=False)
    assert [keys(s) for s in samples if s.label == 0] == ["IM-0001", "IM-0001"] and keys.sources == {"name": 3}
    assert keys.record()["dicom_without_patient_id"] == 1 and "dicom_without_patient_id" not in keys.record(
        [s for s in samples if s.path.suffix == ".jpeg"])


def test_the_file_name_warning_for_one_key_reads_in_the_singular() -> None:
    """One key read '1 patient key ... join images ...; the largest, ...' and 'keeps each key together'."""
    from pneumoscan.data.patients import name_collision_warning

    samples = [Sample(Path(f"train/NORMAL/scan{i}.png"), 0) for i in range(2)]
    samples += [Sample(Path(f"train/{cls}/pt/1.png"), label) for label, cls in enumerate(("NORMAL", "PNEUMONIA"))]
    assert name_collision_warning(samples, patient_keys(samples, "name", progress=False)) == (
        "1 patient key read from file names, '1', joins 2 images in 2 folders (2 of the 4 images keyed by file name; "
        "e.g. train/NORMAL/pt/1.png), and the patient split keeps them together as one patient; if they are not one "
        "patient, key them otherwise: each patient's films in a folder of their own and --patient-key folder, or a "
        "CSV manifest with a patient column")


def test_shared_patients_keys_the_training_data_as_train_and_audit_do(tmp_path: Path) -> None:
    """PatientID 'P' is on 2 DICOM films of train/ and 1 of test/, val/ holds 4 other PatientIDs: over train/ and
    test/ alone 'P' is on every DICOM film, a placeholder, so the evaluation of test/ counted no patient the model
    was trained on, while `audit` and `train` (every split: 3 of 7) key 'P' as one patient in train/ and test/."""
    from pneumoscan.data.audit import audit

    data = tmp_path / "data"
    for split in ("train", "val", "test"):
        for label, name in enumerate(("NORMAL", "PNEUMONIA")):
            write_xray(data / split / name / f"{split}{name}.png", label, len(split) * 10 + label, size=16)
    for i, split in enumerate(("train", "train", "test")):
        write_dicom(data / split / "NORMAL" / f"a{i}.dcm", 0, 100 + i, patient_id="P", size=16)
    for i, pid in enumerate("RSTU"):
        write_dicom(data / "val" / "PNEUMONIA" / f"v{i}.dcm", 1, 200 + i, patient_id=pid, size=16)
    training = {"config": {"data": str(data), "patient_key": "auto"}}
    shared = patients_in_training(discover(data)["test"], training, progress=False).shared
    assert audit(data, progress=False)["patient_ids_in_two_splits"]["train+test"] == shared["patients"] == 1


def test_ctrl_c_while_pydicom_is_imported_stops_reading_patient_ids(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """It was taken for pydicom missing: the film was keyed by its file name, past the Ctrl+C."""
    path = write_dicom(tmp_path / "a.dcm", 0, 1, patient_id="pt7")
    interrupt_import(monkeypatch, "pydicom")
    with pytest.raises(KeyboardInterrupt):
        dicom_patient_id(path)


def test_the_training_films_leave_out_the_files_training_set_aside_by_their_bytes(tmp_path: Path) -> None:
    """evaluate's shared-patient count read the training data with plain `discover`, so a GIF there counted as a
    film (a patient) though training set it aside; a JPEG named .gif, which training reads, is one of them."""
    from pneumoscan.data.patients import _training_films

    data = tmp_path / "data"
    for p in range(2):
        write_xray(data / "train" / "NORMAL" / f"IM-000{p}-0001.png", 0, p)
        write_xray(data / "train" / "PNEUMONIA" / f"person{p}_bacteria_{p}.png", 1, 10 + p)
    (data / "train" / "NORMAL" / "logo.gif").write_bytes(b"GIF89a" + bytes(20))
    jpeg = write_xray(data / "train" / "PNEUMONIA" / "scan.jpeg", 1, 20)
    jpeg.rename(data / "train" / "PNEUMONIA" / "scan.gif")
    found = _training_films({"data": str(data)}, None)
    names = sorted(s.path.name for s in found.films or [])
    assert names == sorted(s.path.name for s in found.every or []), (names, found.every)
    assert "logo.gif" not in names and "scan.gif" in names and len(names) == 5, names


def _film(path: Path, label: int, seed: int, patient: str | None, sex: str = "M", born: str = "19000101") -> None:
    """A DICOM film with the PatientID `patient` (None: none), sex and birth date `sex` and `born`."""
    from tests.conftest import dicom_to_bytes, make_dicom, xray_pixels

    ds = make_dicom(xray_pixels(label, seed, 16), bits_stored=8, patient_id=patient)
    ds.PatientSex, ds.PatientBirthDate = sex, born
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dicom_to_bytes(ds))


@pytest.mark.parametrize("others", ["dicom", "jpeg"])
def test_an_anonymisers_id_sex_and_birth_date_on_most_films_keep_each_patients_films_together(
        tmp_path: Path, others: str) -> None:
    """An anonymiser wrote PatientID BATCH, sex M and birth date 19000101 on the first two films of each patient, and
    no PatientID on the others (DICOM films without one, or JPEGs). Keying BATCH as one patient (patient_key_rule 6,
    never released) kept each patient's other films by their file names' key apart from it, so the split put 14 to 17
    of 20 patients on both sides: BATCH is a placeholder, every film keyed by its file name, none by rule 7's
    sibling PatientID."""
    for p in range(6):
        label = p % 2
        for film in range(1, 5):
            stem = f"IM-{p:04d}-{film:04d}" if label == 0 else f"person{p}_bacteria_{film}"
            folder = tmp_path / ("NORMAL", "PNEUMONIA")[label]
            if film > 2 and others == "jpeg":
                write_xray(folder / f"{stem}.jpeg", label, 10 * p + film, size=16)
            else:
                _film(folder / f"{stem}.dcm", label, 10 * p + film, "BATCH" if film <= 2 else None)
    samples = discover(tmp_path)["all"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keys = patient_keys(samples, progress=False)
    assert {keys(s) for s in samples} == {patient_id(s.path) for s in samples}
    assert len({keys(s) for s in samples}) == 6
    assert [str(w.message).startswith("PatientID 'BATCH' on 12 of the 12") for w in caught] == [True]
    assert not keys.siblings


def test_one_patient_reads_no_further_than_the_film_that_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    """An anonymised set's fixed PatientID on thousands of films without sex or birth date: the first such film
    decides that the headers cannot tell, so the others are not read."""
    from pneumoscan.data import patients

    heads = {"a": ("M", "19700101"), "b": ("M", "19700101"), "c": ("F", "19700101"), "d": ("", ""), "e": ("M", "")}
    read: list[str] = []
    monkeypatch.setattr(patients, "dicom_identity", lambda path: read.append(path.name) or heads[path.name])
    cases = [("ab", True, "ab"), ("acd", False, "ac"), ("adc", None, "ad"), ("eab", None, "e"), ("", None, "")]
    for names, told, reads in cases:
        read.clear()
        assert patients.one_patient(Path(name) for name in names) is told
        assert "".join(read) == reads


def test_one_patient_reads_a_birth_date_written_two_ways_as_one(tmp_path: Path) -> None:
    """`1970-01-01` (as some exporters write DA) and `19700101 ` (padded) are one birth date: the headers did not say
    different patients, where the leak count's warning said as fact that the ID was no one patient's."""
    from pneumoscan.data.patients import one_patient

    for i, born in enumerate(["1970-01-01", "19700101 ", "19700101"]):
        _film(tmp_path / f"{i}.dcm", 1, i, "P1", born=born)
    _film(tmp_path / "other.dcm", 1, 9, "P1", born="19710101")
    films = sorted(tmp_path.glob("[0-9].dcm"))
    assert one_patient(films) is True
    assert one_patient([*films, tmp_path / "other.dcm"]) is False


@pytest.mark.parametrize("extensionless", [False, True], ids=["jpeg", "extensionless"])
def test_a_patients_films_with_and_without_a_patient_id_are_one_patient(tmp_path: Path, extensionless: bool) -> None:
    """Films with a PatientID were keyed by it, their siblings without one by their Kermany file name: patient_key_rule
    5 split each patient apart (8 to 13 of 40 patients on both sides of train/val). Rule 7 keys the siblings by the
    PatientID of their name's films, so no patient is on both sides, counted in split.json's record."""
    from pneumoscan.data.patients import dataset_keys

    write_partly_identified(tmp_path, 12, extensionless)
    found = discover(tmp_path)
    samples = found["train"]
    keys = dataset_keys(found, "auto", samples, progress=False)
    assert {patient_id(s.path): keys(s) for s in samples} == {f"{'IM-' if p % 2 == 0 else 'person'}"
                                                              f"{f'{p:04d}' if p % 2 == 0 else p}": f"MRN{p}"
                                                              for p in range(12)}
    assert keys.sources == {"dicom": 48}
    record = keys.record()
    assert record["patient_key_rule"] == 7 and record["keyed_by_sibling_patient_id"] == 48 - 18
    # a message names the film the PatientID is read from, never a JPEG, which holds none
    assert {keys.shown(s).removeprefix("PatientID of ").rsplit(".", 1)[-1] for s in keys.siblings} == {"dcm"}
    for seed in range(5):
        train, val = patient_split(samples, 0.3, seed, keys)
        assert not {patient_id(s.path) for s in train} & {patient_id(s.path) for s in val}, seed


def test_a_shared_patient_id_or_name_joins_no_other_patient(tmp_path: Path) -> None:
    """A name whose films carry two PatientIDs and a PatientID on films of two names (not a placeholder by count) join
    nothing: a chain of them would make one patient of many. Each split is judged alone: a name of test/ joins no film
    of train/'s same name (Kermany's numbers restart in each), and a PatientID on films of train/ and of test/ joins
    each split's siblings of its name, but for a name keying films of both (person5: rule 5's key of a patient in
    both, which audit reports)."""
    train, test = tmp_path / "train" / "PNEUMONIA", tmp_path / "test" / "PNEUMONIA"
    write_dicom(train / "person1_bacteria_1.dcm", 1, 1, patient_id="A")  # person1: A and B
    write_dicom(train / "person1_bacteria_2.dcm", 1, 2, patient_id="B")
    write_xray(train / "person1_bacteria_3.jpeg", 1, 3)
    write_dicom(train / "person2_bacteria_1.dcm", 1, 4, patient_id="B")  # B: person1 and person2
    write_xray(train / "person2_bacteria_2.jpeg", 1, 5)
    write_dicom(train / "person3_bacteria_1.dcm", 1, 6, patient_id="C")  # person3: C, alone
    write_xray(train / "person3_bacteria_2.jpeg", 1, 7)
    write_xray(train / "scan4.jpeg", 1, 8)  # no Kermany name: never joined
    write_dicom(train / "4.dcm", 1, 9, patient_id="D")
    write_dicom(test / "person5_bacteria_1.dcm", 1, 10, patient_id="E")  # E also in train/ under person6
    write_xray(test / "person5_bacteria_2.jpeg", 1, 11)
    write_dicom(train / "person6_bacteria_1.dcm", 1, 12, patient_id="E")
    write_xray(train / "person6_bacteria_2.jpeg", 1, 13)
    write_xray(train / "person5_bacteria_9.jpeg", 1, 14)  # train/'s person5: no ID there
    for split in ("train", "test"):
        write_xray(tmp_path / split / "NORMAL" / "IM-0001-0001.jpeg", 0, 15)
    from pneumoscan.data.patients import dataset_keys

    found = discover(tmp_path)
    keys = dataset_keys(found, "auto", found["train"], progress=False)
    by_name = {s.path.name: keys(s) for samples in found.values() for s in samples}
    assert by_name["person1_bacteria_3.jpeg"] == "person1" and by_name["person2_bacteria_2.jpeg"] == "person2"
    assert by_name["person3_bacteria_2.jpeg"] == "C" and by_name["scan4.jpeg"] == "scan4"
    assert by_name["person5_bacteria_2.jpeg"] == "person5" and by_name["person6_bacteria_2.jpeg"] == "E"
    assert by_name["person5_bacteria_9.jpeg"] == "person5"
    assert {s.path.name for s in keys.siblings} == {"person3_bacteria_2.jpeg", "person6_bacteria_2.jpeg"}


def test_an_export_naming_every_patients_films_alike_takes_no_one_folders_patient_id(tmp_path: Path) -> None:
    """An export naming every patient's films IM-0001-000N in a folder of its own, one of them with a DICOM film of a
    PatientID: rule 7 keyed all 24 other patients' JPEGs by that PatientID (one patient, of both classes) and `train`'s
    warning that the file-name key IM-0001 joins 23 folders was gone. A name reused so joins nothing (rule 5's keys), as
    a folder may hold several patients' films so named (see the day-folder test below)."""
    from pneumoscan.data.patients import dataset_keys, name_collision_warning

    for i in range(12):
        for film in (1, 2):
            write_xray(tmp_path / "train" / "NORMAL" / f"pt{i}" / f"IM-0001-000{film}.jpeg", 0, 10 * i + film, size=8)
            write_xray(tmp_path / "train" / "PNEUMONIA" / f"pt{i}" / f"IM-0001-000{film}.jpeg", 1, 200 + i, size=8)
    write_dicom(tmp_path / "train" / "NORMAL" / "pt0" / "IM-0001-0003.dcm", 0, 999, patient_id="MRN0", size=8)
    found = discover(tmp_path)
    keys = dataset_keys(found, "auto", found["train"], progress=False)
    assert not keys.siblings and keys.sources == {"dicom": 1, "name": 48}
    warning = name_collision_warning(found["train"], keys)
    assert warning is not None and "'IM-0001', joins 48 images in 24 folders" in warning


def test_a_manifests_film_takes_no_patient_id_from_a_row_of_another_split(tmp_path: Path) -> None:
    """A manifest's rows of train and test in one folder: rule 7 keyed the train rows' JPEGs by a test row's PatientID
    (train's keys then hung on test/'s headers, which `evaluate --split val` of a model trained on JPEGs does not read,
    so the two keyed the train rows apart); each split's rows are joined within it only."""
    from pneumoscan.data.patients import dataset_keys

    rows = ["path,label,split"]
    for p in range(4):
        write_xray(tmp_path / f"person{p}_bacteria_2.jpeg", 1, p, size=8)
        write_xray(tmp_path / f"IM-{p:04d}-0002.jpeg", 0, 10 + p, size=8)
        write_dicom(tmp_path / f"person{p}_bacteria_1.dcm", 1, 20 + p, patient_id=f"MRN{p}", size=8)
        rows += [f"person{p}_bacteria_2.jpeg,PNEUMONIA,train", f"IM-{p:04d}-0002.jpeg,NORMAL,train",
                 f"person{p}_bacteria_1.dcm,PNEUMONIA,{'train' if p == 0 else 'test'}"]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    found = discover(tmp_path / "m.csv")
    read = dataset_keys(found, "auto", found["train"], progress=False)
    assert {s.path.name: read(s) for s in found["train"]} == {
        "person0_bacteria_1.dcm": "MRN0", "person0_bacteria_2.jpeg": "MRN0",  # joined within train
        **{f"person{p}_bacteria_2.jpeg": f"person{p}" for p in range(1, 4)},
        **{f"IM-{p:04d}-0002.jpeg": f"IM-{p:04d}" for p in range(4)}}


def test_a_patients_films_in_sibling_folders_are_one_patient(tmp_path: Path) -> None:
    """An export by format (each patient's DICOM film in dicom/, its JPEGs in jpeg/): 5678038 joined a film only to
    its own folder's PatientIDs, so every patient was keyed apart again (12 to 20 of 40 on both sides of train/val
    over seeds 0-4), as rule 5 did. A name is joined over its split unless a file name of it is found in two folders
    (an export naming every patient's films alike, which the test above keys per folder)."""
    from pneumoscan.data.patients import dataset_keys

    for p in range(12):
        label, folder = p % 2, tmp_path / "train" / CLASS_NAMES[p % 2]
        name = f"IM-{p:04d}-000{{}}" if label == 0 else f"person{p}_bacteria_{{}}"
        write_dicom(folder / "dicom" / f"{name.format(1)}.dcm", label, p, patient_id=f"MRN{p}", size=8)
        for film in (2, 3):
            write_xray(folder / "jpeg" / f"{name.format(film)}.jpeg", label, 100 * p + film, size=8)
    found = discover(tmp_path)
    samples = found["train"]
    keys = dataset_keys(found, "auto", samples, progress=False)
    assert {(patient_id(s.path), keys(s)) for s in samples} == {
        (f"IM-{p:04d}" if p % 2 == 0 else f"person{p}", f"MRN{p}") for p in range(12)}
    assert keys.sources == {"dicom": 36} and len(keys.siblings) == 24
    for seed in range(5):
        train, val = patient_split(samples, 0.3, seed, keys)
        assert not {patient_id(s.path) for s in train} & {patient_id(s.path) for s in val}, seed


def test_a_name_reused_by_dicom_films_without_a_patient_id_joins_nothing(tmp_path: Path) -> None:
    """An export naming every patient's first film IM-0001-0001.dcm with no PatientID (keyed by folder and name) tells
    that the name IM-0001 is every patient's: pt1's JPEG takes no PatientID of pt0's films, nor does pt0's."""
    from pneumoscan.data.patients import dataset_keys

    folder = tmp_path / "train" / "NORMAL"
    for p in range(2):
        write_dicom(folder / f"pt{p}" / "IM-0001-0001.dcm", 0, p, patient_id=None, size=8)
    write_dicom(folder / "pt0" / "IM-0001-0002.dcm", 0, 2, patient_id="MRN0", size=8)
    write_xray(folder / "pt1" / "IM-0001-0002.jpeg", 0, 3, size=8)
    write_xray(folder / "pt0" / "IM-0001-0003.jpeg", 0, 4, size=8)
    write_xray(tmp_path / "train" / "PNEUMONIA" / "person1_bacteria_1.jpeg", 1, 5, size=8)
    found = discover(tmp_path)
    keys = dataset_keys(found, "auto", found["train"], progress=False)
    assert not keys.siblings
    assert {keys(s) for s in found["train"] if s.path.suffix == ".jpeg" and s.label == 0} == {"IM-0001"}


def test_a_backup_copy_of_a_film_keeps_its_name_joined_over_the_split(tmp_path: Path) -> None:
    """A copy of a patient's JPEG beside its DICOM film (dicom/) and in jpeg/: the file name found in two folders made
    the name a reused export name, joined within each folder, so the copy in dicom/ took PatientID MRN<p> and the one
    in jpeg/ kept the name: the same film on both sides of train/val (rule 5 kept both copies under the name)."""
    from pneumoscan.data.patients import dataset_keys

    for p in range(6):
        label, folder = p % 2, tmp_path / "train" / CLASS_NAMES[p % 2]
        write_dicom(folder / "dicom" / f"person{p}_virus_1.dcm", label, p, patient_id=f"MRN{p}", size=8)
        jpeg = write_xray(folder / "jpeg" / f"person{p}_virus_2.jpeg", label, 100 + p, size=8)
        (folder / "dicom" / jpeg.name).write_bytes(jpeg.read_bytes())
    found = discover(tmp_path)
    keys = dataset_keys(found, "auto", found["train"], progress=False)
    assert {(patient_id(s.path), keys(s)) for s in found["train"]} == {(f"person{p}", f"MRN{p}") for p in range(6)}


def test_a_folder_of_several_patients_films_named_alike_splits_none_of_them(tmp_path: Path) -> None:
    """Day folders each naming its films IM-0001-000N, several patients' in one: 1e312a8 joined a reused name within
    each folder, so the films of day0 took the PatientID of its one DICOM film (patient 0's) and patient 1's film of
    day1 kept the name: patient 1 under two keys where rule 5 gave one (on 40 such patients, 22 to 27 on both sides
    of train/val over seeds 0-4; rule 5: 4 to 10)."""
    from pneumoscan.data.patients import dataset_keys

    folder = tmp_path / "train" / "NORMAL"
    write_dicom(folder / "day0" / "IM-0001-0001.dcm", 0, 0, patient_id="MRN0", size=8)
    patient1 = [write_xray(folder / "day0" / "IM-0001-0002.jpeg", 0, 1, size=8),
                write_xray(folder / "day1" / "IM-0001-0001.jpeg", 0, 2, size=8)]
    write_xray(folder / "day1" / "IM-0001-0002.jpeg", 0, 3, size=8)
    write_xray(tmp_path / "train" / "PNEUMONIA" / "person1_bacteria_1.jpeg", 1, 4, size=8)
    found = discover(tmp_path)
    keys = dataset_keys(found, "auto", found["train"], progress=False)
    assert len({keys(s) for s in found["train"] if s.path in patient1}) == 1


def test_files_of_one_name_are_told_copies_by_their_bytes_hashing_only_those_alike_so_far(tmp_path: Path,
                                                                                           monkeypatch) -> None:
    """`sibling_ids` tells a backup copy from an export's reused name by the files' bytes: files of differing sizes or
    first 64 kB differ without being read whole (an export's DICOM films may be gigabytes); equal ones are hashed."""
    from pneumoscan.data import patients

    a, b, c, d = (tmp_path / name for name in "abcd")
    a.write_bytes(b"x" * 70000)
    b.write_bytes(b"y" + b"x" * 69999)
    c.write_bytes(b"x" * 69999 + b"y")
    d.write_bytes(b"x" * 70000)
    hashed: list[list[str]] = []
    monkeypatch.setattr(patients, "fingerprints", lambda paths: hashed.append(list(paths)) or [
        __import__("hashlib").sha256(Path(p).read_bytes()).hexdigest() for p in paths])
    assert patients._copied({"b": [str(a), str(b)], "x": [str(a), str(tmp_path / "x")]}) == set()
    assert hashed == []
    assert patients._copied({"c": [str(a), str(c)], "d": [str(a), str(d)]}) == {"d"}
    assert len(hashed) == 1


def test_only_the_files_of_a_name_that_may_join_are_read_for_copies(tmp_path: Path, monkeypatch) -> None:
    """A name no DICOM film of its split gives a PatientID joins nothing, so its files are not told copies: 8321f18
    hashed every film keyed by a name and its backup copy (3,000 JPEGs and their copies beside one DICOM film: 1.2 s,
    0.3 s before it); only person1's JPEG and its copy, which may take MRN1, are hashed."""
    from pneumoscan.data import patients
    from pneumoscan.data.patients import dataset_keys

    hashed: list[str] = []
    monkeypatch.setattr(patients, "fingerprints", lambda paths: hashed.extend(Path(p).name for p in paths) or [
        __import__("hashlib").sha256(Path(p).read_bytes()).hexdigest() for p in paths])
    folder = tmp_path / "train" / "PNEUMONIA"
    write_dicom(folder / "person1_bacteria_1.dcm", 1, 0, patient_id="MRN1", size=8)
    for n, name in enumerate(("person1_bacteria_2.jpeg", "scan3.jpeg", "person2_bacteria_1.jpeg")):
        film = write_xray(folder / name, 1, 1 + n, size=8)
        (folder / "backup").mkdir(exist_ok=True)
        (folder / "backup" / name).write_bytes(film.read_bytes())
    write_xray(tmp_path / "train" / "NORMAL" / "IM-0001-0001.jpeg", 0, 5, size=8)
    found = discover(tmp_path)
    keys = dataset_keys(found, "auto", found["train"], progress=False)
    assert sorted(hashed) == ["person1_bacteria_2.jpeg"] * 2
    assert {keys(s) for s in found["train"] if s.path.name == "person1_bacteria_2.jpeg"} == {"MRN1"}


def test_a_name_keying_films_of_another_split_keeps_the_patient_in_both(tmp_path: Path) -> None:
    """person<p>_bacteria_1.dcm (MRN<p>) and _2.jpeg in train/, _3.jpeg in val/: rule 7 keyed train's JPEG MRN<p> and
    val's the name, so no key was in both splits and `audit` said 'patient IDs in both train+val: 0' where rule 5
    said 6. The name keeps rule 5's key in train/ too."""
    from pneumoscan.data.patients import dataset_keys

    for p in range(6):
        folder = tmp_path / "train" / "PNEUMONIA"
        write_dicom(folder / f"person{p}_bacteria_1.dcm", 1, p, patient_id=f"MRN{p}", size=8)
        write_xray(folder / f"person{p}_bacteria_2.jpeg", 1, 10 + p, size=8)
        write_xray(tmp_path / "val" / "PNEUMONIA" / f"person{p}_bacteria_3.jpeg", 1, 20 + p, size=8)
        for n, split in enumerate(("train", "val")):
            write_xray(tmp_path / split / "NORMAL" / f"IM-{p + 10 * n:04d}-0001.jpeg", 0, 30 + p, size=8)
    found = discover(tmp_path)
    keys = dataset_keys(found, "auto", found["train"], progress=False)
    assert {keys(s) for s in found["train"]} & {keys(s) for s in found["val"]} == {f"person{p}" for p in range(6)}
    assert not keys.siblings


def test_files_of_one_name_are_told_apart_holding_one_start_at_a_time(tmp_path: Path) -> None:
    """40 patients' films named IM-0001-0001.dcm, of one size, differing in their first bytes: 2a8bf99 held every
    file's first 64 kB at once (3,000 such files: 197 MB, 0.70 s) to tell them apart; the first two differ."""
    import tracemalloc

    from pneumoscan.data.patients import _copied

    paths = []
    for i in range(40):
        path = tmp_path / f"pt{i}" / "IM-0001-0001.dcm"
        path.parent.mkdir()
        path.write_bytes(i.to_bytes(4, "big") * 16384 + bytes(8))
        paths.append(str(path))
    tracemalloc.start()
    try:
        assert _copied({"IM-0001-0001.dcm": paths}) == set()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 500_000
    (tmp_path / "backup").mkdir()
    copy = tmp_path / "backup" / "IM-0001-0001.dcm"
    copy.write_bytes(Path(paths[0]).read_bytes())
    assert _copied({"IM-0001-0001.dcm": [paths[0], str(copy)]}) == {"IM-0001-0001.dcm"}


def test_a_film_keyed_by_a_kermany_name_it_does_not_bear_joins_with_its_films(tmp_path: Path) -> None:
    """person7.jpeg is keyed person7 by its stem, as person7_bacteria_2.jpeg by its Kermany name: rule 5 kept the two
    together; rule 7 keyed the Kermany-named one MRN7 (its DICOM sibling's PatientID) and left person7.jpeg under
    person7, one patient under two keys."""
    from pneumoscan.data.patients import dataset_keys

    folder = tmp_path / "train" / "PNEUMONIA"
    write_dicom(folder / "person7_bacteria_1.dcm", 1, 1, patient_id="MRN7", size=8)
    write_xray(folder / "person7_bacteria_2.jpeg", 1, 2, size=8)
    write_xray(folder / "person7.jpeg", 1, 3, size=8)
    write_xray(tmp_path / "train" / "NORMAL" / "IM-0001-0001.jpeg", 0, 4, size=8)
    found = discover(tmp_path)
    keys = dataset_keys(found, "auto", found["train"], progress=False)
    assert {keys(s) for s in found["train"] if s.label == 1} == {"MRN7"}
