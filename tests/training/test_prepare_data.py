from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pneumoscan.errors import InputError
from pneumoscan.training.config import TrainConfig
from pneumoscan.training.run_data import prepare_data


def test_given_val_counts_patient_ids_shared_with_train(tiny_dataset: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_dataset / "test", tiny_dataset / "val")  # IM-0000..0003 and person0..3 are also in train/
    given = prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), use_given_val=True), 16, False)
    assert given.split_record["method"] == "given val/ folder"
    assert given.split_record["patient_ids_in_train_and_val"] == 8
    carved = prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), val_fraction=0.3), 16, False)
    assert carved.split_record["patient_ids_in_train_and_val"] == 0


def test_one_class_after_the_carve_names_the_carve_not_the_data(tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), max_images=1)
    with pytest.raises(InputError) as info:
        prepare_data(cfg, 16, False)
    message = str(info.value)
    assert "carving 15% of patients for validation" in message and "--max-images 1" in message
    assert "1 NORMAL" in message and "add images of both classes" not in message
    assert "raise --max-images" in message and "no --val-fraction can help" in message  # one image: one patient


def _one_pneumonia_patient(data: Path) -> None:
    for i, film in enumerate(sorted((data / "train" / "PNEUMONIA").iterdir())):
        film.rename(film.with_name(f"person7_virus_{i}.jpeg"))


def test_a_class_of_one_patient_names_it_and_what_helps(tiny_dataset: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The carve cannot put one patient on both sides: changing --val-fraction cannot help, so it is not offered."""
    from pneumoscan.cli import main

    _one_pneumonia_patient(tiny_dataset)
    for fraction in ("0.15", "0.05"):
        assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--val-fraction", fraction,
                     "--image-size", "16", "--epochs", "1", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "all PNEUMONIA images are of one patient (person7)" in err and "no --val-fraction can help" in err
        assert "change --val-fraction" not in err and "--max-images" not in err
        assert "add films of more patients" in err and "a val/ folder beside train/" in err and "--use-given-val" in err
        assert len(err.strip().splitlines()) == 1
    shutil.copytree(tiny_dataset / "train", tiny_dataset / "val")  # the remedy the message offers
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--use-given-val",
                 "--image-size", "16", "--epochs", "1", "--quiet"]) == 0
    captured = capsys.readouterr()  # the same patients in both: warned on stderr, as every warning
    assert "pneumoscan: warning: " in captured.err and "patient IDs have images in both train/ and val/" in captured.err
    assert "patient IDs" not in captured.out


def test_a_class_whose_one_patients_films_cannot_be_read_says_so(tiny_dataset: Path, tmp_path: Path) -> None:
    """A manifest whose PNEUMONIA class is one patient's one unreadable film: the carve (before decoding) said 'all
    PNEUMONIA images are of one patient ... add films of more patients', never that the film cannot be read; a
    readable film of that one patient still gets the carve's message."""
    normal = sorted((tiny_dataset / "train" / "NORMAL").iterdir())
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    manifest = tmp_path / "m.csv"
    rows = [f"{film},NORMAL,N{i}" for i, film in enumerate(normal)]
    manifest.write_text("\n".join(["path,label,patient", *rows, f"{bad},PNEUMONIA,P0"]) + "\n")
    cfg = TrainConfig(data=str(manifest), out=str(tmp_path / "r"))
    with pytest.raises(InputError) as info:
        prepare_data(cfg, 16, False)
    assert str(info.value).startswith(f"{manifest}: no PNEUMONIA image can be read (all are of one patient, P0): "
                                      f"{bad}: not a readable image")
    assert "replace it with readable films, of at least two patients" in str(info.value)
    shutil.copy(sorted((tiny_dataset / "train" / "PNEUMONIA").iterdir())[0], bad)  # now readable: the carve's message
    with pytest.raises(InputError, match=r"all PNEUMONIA images are of one patient \(P0\)"):
        prepare_data(cfg, 16, False)


def one_film_per_folder(data: Path, name: Callable[[str, int], str]) -> None:
    """Each train film of `data` moved into a patient folder of its own (pt0, pt1, ...), named `name(class, i)`."""
    for label in ("NORMAL", "PNEUMONIA"):
        for i, film in enumerate(sorted((data / "train" / label).iterdir())):
            folder = film.parent / f"pt{i}"
            folder.mkdir()
            film.rename(folder / name(label, i))


def test_a_carve_failing_on_one_film_per_patient_folder_names_the_shared_file_name(
        tiny_dataset: Path, tmp_path: Path) -> None:
    """One film per patient folder, each named 1.jpeg: by file name each class is of one 'patient' `1`, and the
    error said 'all NORMAL images are of one patient (1) ... add films of more patients', which is not the cause."""
    one_film_per_folder(tiny_dataset, lambda label, i: "1.jpeg")
    with pytest.raises(InputError) as info:
        prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r")), 16, False)
    message = str(info.value)
    assert "; the one patient has images of both classes" in message and "(36 of patient 1)" in message
    assert "each patient's films in a folder of their own and --patient-key folder" in message
    assert "of one patient" not in message and "add films of more patients" not in message
    prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), patient_key="folder"), 16, False)


def test_pretrain_offers_only_its_own_options_for_a_class_of_one_patient(tiny_dataset: Path, tmp_path: Path) -> None:
    from pneumoscan.parser import build_parser

    _one_pneumonia_patient(tiny_dataset)
    cfg = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "p"))
    with pytest.raises(InputError, match="no --val-fraction can help: add films of more patients") as info:
        prepare_data(cfg, 16, False, command="pretrain")
    pretrain_options = build_parser()._subparsers._group_actions[0].choices["pretrain"].format_help()
    assert "--use-given-val" not in str(info.value) and "--use-given-val" not in pretrain_options



def test_split_json_records_the_patient_key_and_a_dicom_patient_stays_on_one_side(tmp_path: Path) -> None:
    from tests.conftest import write_dicom_dataset

    data = write_dicom_dataset(tmp_path / "data", size=16)
    run = prepare_data(TrainConfig(data=str(data), out=str(tmp_path / "r"), val_fraction=0.25), 16, False)
    record = run.split_record
    assert record["patient_key"] == "auto" and record["patient_keys_from"] == {"dicom": 48}
    patient = run.patients
    assert not {patient(s) for s in run.train.samples} & {patient(s) for s in run.val.samples}
    assert record["counts"]["val"]["patients"] * 3 == len(run.val.samples)  # three films each, kept together
    by_name = prepare_data(TrainConfig(data=str(data), out=str(tmp_path / "r"), val_fraction=0.25,
                                       patient_key="name"), 16, False)
    assert by_name.split_record["patient_key"] == "name" and by_name.split_record["patient_keys_from"] == {"name": 48}
    assert by_name.split_record["counts"]["val"]["patients"] == len(by_name.val.samples)  # each film its own patient
    assert {patient(s) for s in by_name.train.samples} & {patient(s) for s in by_name.val.samples}  # the old leak


def test_kermany_names_record_auto_read_from_names(tiny_dataset: Path, tmp_path: Path) -> None:
    record = prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r")), 16, False).split_record
    assert record["patient_key"] == "auto" and set(record["patient_keys_from"]) == {"name"}


def test_split_json_counts_the_patient_keys_of_the_images_used_only(tiny_dataset: Path, tmp_path: Path) -> None:
    """`patient_keys_from` counted every image found, unreadable files and those --max-images left out too (126
    against 123 images used): it now counts the images trained and validated on, as `counts` does."""
    from tests.conftest import write_dicom

    broken = write_dicom(tiny_dataset / "train" / "NORMAL" / "broken.dcm", 0, 99, patient_id="N99", size=16)
    broken.write_bytes(broken.read_bytes()[:-200])  # its PatientID is read, its pixels are not
    for cap, used in ((None, 36), (5, 10)):
        record = prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), max_images=cap),
                              16, False).split_record
        assert sum(c["NORMAL"] + c["PNEUMONIA"] for c in record["counts"].values()) == used
        assert record["patient_keys_from"] == {"name": used}, cap
        if cap is None:
            assert [line for line in record["skipped"] if line.startswith(str(broken))]


def test_one_class_message_says_where_the_patient_is_read(tiny_dataset: Path, tmp_path: Path) -> None:
    for film in sorted((tiny_dataset / "train").rglob("*.jpeg")):  # a folder per film, but all PNEUMONIA in one
        folder = film.parent / ("p7" if film.parent.name == "PNEUMONIA" else film.stem)
        folder.mkdir(exist_ok=True)
        film.rename(folder / film.name)
    with pytest.raises(InputError, match=r"all PNEUMONIA images are of one patient \(p7\).* add films of more patients "
                                         r"\(the patient is the folder between the class folder and the image: "
                                         r"--patient-key folder\)"):
        prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), patient_key="folder"), 16, False)


def test_a_patient_known_by_dicom_patient_id_is_named_by_a_file_not_by_the_id(tmp_path: Path) -> None:
    """The PatientID is patient data: a message names the file it was read from instead."""
    from tests.conftest import write_dicom

    for p in range(4):
        for k in range(3):
            write_dicom(tmp_path / "train" / "NORMAL" / f"n{p}_{k}.dcm", 0, 10 * p + k, patient_id=f"N{p}", size=16)
            write_dicom(tmp_path / "train" / "PNEUMONIA" / f"p{p}_{k}.dcm", 1, 100 + 10 * p + k, patient_id="MRN-4711",
                        size=16)
    with pytest.raises(InputError) as info:
        prepare_data(TrainConfig(data=str(tmp_path), out=str(tmp_path / "r")), 16, False)
    message = str(info.value)
    first = tmp_path / "train" / "PNEUMONIA" / "p0_0.dcm"
    assert f"all PNEUMONIA images are of one patient (PatientID of {first})" in message and "MRN-4711" not in message


def test_byte_identical_films_under_both_labels_or_in_train_and_val_are_warned_about(tmp_path: Path) -> None:
    from pneumoscan.data.labels import Sample
    from pneumoscan.data.fingerprint import duplicate_warnings
    from tests.conftest import write_xray

    normal, other = write_xray(tmp_path / "a.png", 0, 1), write_xray(tmp_path / "b.png", 1, 2)
    copy = tmp_path / "copy of a.png"
    copy.write_bytes(normal.read_bytes())
    third = write_xray(tmp_path / "c.png", 1, 3)
    assert duplicate_warnings({"train": [Sample(normal, 0), Sample(other, 1)], "val": [Sample(third, 1)]}, "D") == []
    both = duplicate_warnings({"train": [Sample(normal, 0), Sample(copy, 1)], "val": [Sample(other, 1)]}, "D")
    assert len(both) == 1 and both[0].startswith("1 group of byte-identical images carries both labels, e.g. ")
    assert f"{normal} (NORMAL, train) = {copy} (PNEUMONIA, train)" in both[0] and "`pneumoscan audit D`" in both[0]
    leaked = duplicate_warnings({"train": [Sample(normal, 0), Sample(other, 1)], "val": [Sample(copy, 0)]}, "D")
    assert len(leaked) == 1 and leaked[0].startswith("1 validation image is byte-identical to training images")
    assert f"{normal} (NORMAL, train) = {copy} (NORMAL, val)" in leaked[0]


def test_train_warns_on_a_film_copied_into_the_other_class(tiny_dataset: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from pneumoscan.cli import main

    film = tiny_dataset / "train" / "NORMAL" / "IM-0000-0001.jpeg"
    (tiny_dataset / "train" / "PNEUMONIA" / "IM-0000-0001.jpeg").write_bytes(film.read_bytes())  # one patient: train
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--model", "mlp",
                 "--image-size", "16", "--epochs", "1", "--quiet"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "byte-identical" in line]
    assert len(warned) == 1 and warned[0].startswith("pneumoscan: warning: 1 group of byte-identical images carries "
                                                     "both labels") and "IM-0000-0001.jpeg" in warned[0]


def test_a_carve_failing_on_file_names_shared_by_both_classes_names_the_key_and_the_way_out(
        tiny_dataset: Path, tmp_path: Path) -> None:
    """An export names each patient's films 1.jpeg, 2.jpeg in a folder per patient: by file name two 'patients' hold
    every image of both classes, and the carve failed with 'each class needs images of at least two patients: add
    images, or change --val-fraction', which neither helps nor names the cause."""
    # name 1 on most NORMAL films, 2 on most PNEUMONIA films
    one_film_per_folder(tiny_dataset, lambda label, i: f"{1 + ((i < 10) == (label == 'PNEUMONIA'))}.jpeg")
    with pytest.raises(InputError) as info:
        prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r")), 16, False)
    message = str(info.value)
    assert "2 of the 2 patients have images of both classes" in message and "--patient-key auto" in message
    assert "each patient's films in a folder of their own and --patient-key folder" in message
    assert "change --val-fraction" not in message and "\n" not in message
    prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), patient_key="folder"), 16, False)


def test_train_warns_when_file_name_keys_join_folders_though_the_carve_succeeds(
        tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Films numbered 0001.jpeg... in each class folder are keyed by file name into 'patients' of a NORMAL and a
    PNEUMONIA film: the carve succeeds, so nothing said that each pair is taken for one patient."""
    from pneumoscan.cli import main

    for label in ("NORMAL", "PNEUMONIA"):
        for i, film in enumerate(sorted((tiny_dataset / "train" / label).iterdir())):
            film.rename(film.parent / f"{i + 1:04d}.jpeg")
    args = ["train", "--data", str(tiny_dataset), "--model", "mlp", "--image-size", "16", "--epochs", "1", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "r")]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "join images in different folders" in line]
    assert len(warned) == 1 and warned[0].startswith(
        "pneumoscan: warning: 18 patient keys read from file names join images in different folders (36 of the 36 "
        "images keyed by file name; the largest, '0018', joins 2 images in 2 folders, e.g. ")
    assert warned[0].endswith("each patient's films in a folder of their own and --patient-key folder, or a CSV "
                              "manifest with a patient column")


def test_train_does_not_warn_of_file_names_on_kermany_names(tiny_dataset: Path, tmp_path: Path) -> None:
    from pneumoscan.data.patients import name_collision_warning

    data = prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r")), 16, False)
    assert name_collision_warning(data.train.samples + data.val.samples, data.patients) is None


def test_train_keys_patients_as_audit_does_over_every_split(tmp_path: Path) -> None:
    """PatientID 'P' is on all 3 DICOM films of train/ and val/, but on 3 of 7 with test/'s: train keyed train/ and
    val/ alone, took 'P' for a placeholder and counted no patient in both, while `audit` (every split) counted one.
    Both now key over every split (`dataset_keys`) and agree."""
    from pneumoscan.data.audit import audit
    from tests.conftest import write_dicom, write_xray

    data, seed = tmp_path / "data", 0
    for split in ("train", "val", "test"):
        for label, name in enumerate(("NORMAL", "PNEUMONIA")):
            for i in range(3):
                seed += 1
                write_xray(data / split / name / f"{split}{name}{i}.png", label, seed, size=16)
    for i, split in enumerate(("train", "train", "val")):
        write_dicom(data / split / "NORMAL" / f"a{i}.dcm", 0, 100 + i, patient_id="P", size=16)
    for i, pid in enumerate("RSTU"):
        write_dicom(data / "test" / "PNEUMONIA" / f"t{i}.dcm", 1, 200 + i, patient_id=pid, size=16)
    run = prepare_data(TrainConfig(data=str(data), out=str(tmp_path / "r"), use_given_val=True), 16, False)
    report = audit(data, progress=False)
    assert run.split_record["patient_ids_in_train_and_val"] == report["patient_ids_in_two_splits"]["train+val"] == 1
    assert run.split_record["patient_keys_from"]["dicom"] == 3


@pytest.mark.parametrize("cap", [None, 8])
def test_a_film_in_a_format_not_read_changes_no_split_and_is_reported_skipped(cap: int | None, tiny_dataset: Path,
                                                                              tmp_path: Path) -> None:
    """One NORMAL/logo.gif in a folder (listed since formats not read are named) took a place among the patients, so
    the carve's permutation, and the --max-images draw, changed: a site's validation set of 90 films became 91, 36 in
    common. It is kept out of the split, the cap and the keys, and reported as skipped without being decoded."""
    def carve() -> tuple[list[str], list[str], dict[str, object]]:
        data = prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), val_fraction=0.3,
                                        max_images=cap, cache_dir=str(tmp_path / "c")), 16, False)
        return ([str(s.path) for s in data.train.samples], [str(s.path) for s in data.val.samples],
                data.split_record)

    train, val, record = carve()
    logo = tiny_dataset / "train" / "NORMAL" / "logo.gif"
    logo.write_bytes(b"GIF89a" + bytes(20))
    train_after, val_after, record_after = carve()
    assert (train_after, val_after) == (train, val)
    assert record["skipped"] == [] and record_after["skipped"] == [
        f"{logo}: GIF images are not supported; export the X-ray as PNG, JPEG or DICOM"]
    assert record_after["counts"] == record["counts"]


def test_a_file_named_as_a_format_not_read_that_holds_no_image_changes_no_split(tiny_dataset: Path,
                                                                                  tmp_path: Path) -> None:
    """An HTML page saved as NORMAL/logo.gif (listed only for its .gif name, so that a GIF is named) took a place in
    the split, as formats are told by their bytes (of 60 films, 4 of the 10 validation films changed). It is set
    aside and reported skipped in decoding's own words."""
    def carve() -> tuple[list[str], list[str], list[str]]:
        data = prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), val_fraction=0.3,
                                        cache_dir=str(tmp_path / "c")), 16, False)
        return ([str(s.path) for s in data.train.samples], [str(s.path) for s in data.val.samples],
                data.split_record["skipped"])

    train, val, _ = carve()
    logo = tiny_dataset / "train" / "NORMAL" / "logo.gif"
    logo.write_bytes(b"<html><body>Not found</body></html>")
    train_after, val_after, skipped = carve()
    assert (train_after, val_after) == (train, val)
    assert skipped == [f"{logo}: not a readable image (cannot identify image file); give a JPEG, PNG, TIFF, BMP or "
                       "DICOM file"]


def test_a_format_not_read_is_told_by_its_bytes_not_its_extension(tiny_dataset: Path, tmp_path: Path) -> None:
    """A JPEG saved as x.gif was refused by train as 'GIF images are not supported' (false), while evaluate and
    predict read it as the JPEG it is; a GIF named x.png took a place in the split. Training reads the first as
    every command does, and sets the second aside as it does a .gif."""
    jpeg = next((tiny_dataset / "train" / "NORMAL").glob("*.jpeg"))
    named_gif = jpeg.with_suffix(".gif")
    jpeg.rename(named_gif)
    gif = tiny_dataset / "train" / "PNEUMONIA" / "chart.png"
    gif.write_bytes(b"GIF89a" + bytes(20))
    data = prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), val_fraction=0.3,
                                    cache_dir=str(tmp_path / "c")), 16, False)
    read = {s.path for s in data.train.samples + data.val.samples}
    assert named_gif in read and gif not in read
    assert data.split_record["skipped"] == [f"{gif}: GIF images are not supported; export the X-ray as PNG, JPEG or "
                                            "DICOM"]


def test_a_film_that_runs_the_machine_out_of_memory_is_not_called_unreadable(
        tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unreadable-class check counted a DecodeOutOfMemory as the file's fault: 'no PNEUMONIA image can be read ...
    replace it with readable films', of a film that decodes on a machine with more memory free."""
    import pneumoscan.data.preprocess as preprocess
    from pneumoscan.errors import DecodeOutOfMemory

    normal = sorted((tiny_dataset / "train" / "NORMAL").iterdir())
    big = sorted((tiny_dataset / "train" / "PNEUMONIA").iterdir())[0]
    manifest = tmp_path / "m.csv"
    rows = [f"{film},NORMAL,N{i}" for i, film in enumerate(normal)]
    manifest.write_text("\n".join(["path,label,patient", *rows, f"{big},PNEUMONIA,P0"]) + "\n")

    def out_of_memory(path: object, size: int) -> None:
        raise DecodeOutOfMemory(f"{path}: out of memory decoding it", str(path))

    monkeypatch.setattr(preprocess, "load_image", out_of_memory)
    with pytest.raises(DecodeOutOfMemory, match="out of memory decoding it"):
        prepare_data(TrainConfig(data=str(manifest), out=str(tmp_path / "r")), 16, False)


def test_training_opens_no_file_of_test_beyond_its_dicom_headers(tiny_dataset: Path, tmp_path: Path) -> None:
    """test/ is for final reporting: `train` opened the first bytes of each of its files, to set aside formats not
    read and to look for a DICOM PatientID, though only test/'s DICOM films can change a key of train/ and val/. It
    lists test/'s JPEGs (and a GIF) unopened, reads the header of a test/ DICOM film only, and keys every film of
    train/ as `audit` does."""
    from pneumoscan.data.layout import discover
    from pneumoscan.data.patients import dataset_keys
    from tests.conftest import files_opened_under, write_dicom

    (tiny_dataset / "test" / "NORMAL" / "logo.gif").write_bytes(b"GIF89a" + bytes(20))
    dicom = write_dicom(tiny_dataset / "test" / "PNEUMONIA" / "t0.dcm", 1, 7, patient_id="T0", size=16)
    with files_opened_under(tiny_dataset / "test") as opened:
        run = prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), val_fraction=0.3), 16, False)
    assert set(opened) == {str(dicom.resolve())}
    audited = dataset_keys(discover(tiny_dataset), progress=False)
    assert {s: run.patients(s) for s in run.train.samples + run.val.samples} == {
        s: audited(s) for s in run.train.samples + run.val.samples}


def test_train_audit_and_evaluate_key_a_dicom_film_named_jpeg_in_test_alike(tiny_dataset: Path, tmp_path: Path) -> None:
    """train keys a test/ file named .jpeg or .jpg unopened (test/ is for final reporting) while audit and evaluate
    read its DICOM header: with test/'s two DICOM films named .jpg under PatientID P1, P1 was on 6 of the 10 DICOM
    films to audit (a placeholder: the four P1 films of train/ each their own patient) and on 4 of 8 to train (one
    patient), though docs/data.md says all three key a film alike."""
    from pneumoscan.data.layout import discover
    from pneumoscan.data.patients import dataset_keys
    from tests.conftest import files_opened_under, write_dicom

    for i in range(4):
        write_dicom(tiny_dataset / "train" / "PNEUMONIA" / f"dcmp{i}.dcm", 1, i, patient_id="P1", size=16)
        write_dicom(tiny_dataset / "train" / "NORMAL" / f"n{i}.dcm", 0, 10 + i, patient_id=f"N{i}", size=16)
    named_jpg = [write_dicom(tiny_dataset / "test" / "PNEUMONIA" / f"t{i}.jpg", 1, 20 + i, patient_id="P1", size=16)
                 for i in range(2)]
    with files_opened_under(tiny_dataset / "test") as opened:
        run = prepare_data(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "r"), val_fraction=0.3), 16, False)
        audited = dataset_keys(discover(tiny_dataset), progress=False)  # audit's and evaluate's keys
    films = run.train.samples + run.val.samples
    assert {s: run.patients(s) for s in films} == {s: audited(s) for s in films}
    assert len({audited(s) for s in films if s.path.name.startswith("dcmp")}) == 1  # P1 is a patient
    assert opened == [] and all(path.exists() for path in named_jpg)  # neither opened test/'s files


@pytest.mark.parametrize("choice", ["name", "folder"])
def test_training_keyed_by_path_opens_no_file_of_test(tmp_path: Path, choice: str) -> None:
    """With --patient-key name or folder no film of test/ can change a key of train/ or val/, yet listing test/
    opened its .dcm and extensionless files for their first bytes (test/ is for final reporting): now they are listed
    by name, none opened; with auto the header of such a file is still read, as a DICOM PatientID there may key
    films of train/."""
    from tests.conftest import files_opened_under, write_dicom, write_xray

    root = tmp_path / "data"
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        for i in range(6):
            write_xray(root / "train" / name / f"pt{i}" / f"{name[0]}{i}.jpeg", label, 10 * label + i, size=16)
            write_xray(root / "test" / name / f"tp{i}" / f"T{name[0]}{i}.jpeg", label, 50 + 10 * label + i, size=16)
    dicoms = [write_dicom(root / "test" / "PNEUMONIA" / "tq" / "t0.dcm", 1, 7, patient_id="T0", size=16),
              write_dicom(root / "test" / "NORMAL" / "tq" / "IM000001", 0, 8, patient_id="T1", size=16)]
    with files_opened_under(root / "test") as opened:
        prepare_data(TrainConfig(data=str(root), out=str(tmp_path / "r"), patient_key=choice, val_fraction=0.3), 16,
                     False)
    assert opened == []
    with files_opened_under(root / "test") as opened:
        prepare_data(TrainConfig(data=str(root), out=str(tmp_path / "a"), patient_key="auto", val_fraction=0.3), 16,
                     False)
    assert {str(path.resolve()) for path in dicoms} <= set(opened)
