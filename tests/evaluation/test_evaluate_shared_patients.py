"""evaluate says when patients of the scored split are also in the data the model was trained on."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pneumoscan.cli import main


def test_evaluate_warns_once_about_patients_it_was_trained_on_and_counts_them(
        shared_patient_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Only `audit` told of a patient in both train and test (by DICOM PatientID); evaluate scored their films as
    new patients' without a word."""
    data = shared_patient_run.parent / "data"
    out = tmp_path / "m.json"
    assert main(["evaluate", "--model", str(shared_patient_run), "--data", str(data), "--n-boot", "5",
                 "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "not counted" not in captured.out  # they were counted
    lines = [line for line in captured.err.splitlines() if "trained on" in line]
    assert lines == [f"pneumoscan: warning: 2 patients of the test split (2 of its 4 films) also have films in the "
                     f"data this model was trained on, by DICOM PatientID: the same patients on both sides, so the "
                     f"figures on them are not those of new patients; `pneumoscan audit {data}` lists them"]
    assert json.loads(out.read_text())["patients_in_training"] == {"patients": 2, "films": 2,
                                                                   "by": ["DICOM PatientID"], "compared": 4}


def test_evaluate_of_copied_films_names_the_training_data_and_says_when_it_is_gone(
        shared_patient_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Films copied out of the data set are still counted while the training data is found (the hint then names
    it, as `audit` of one folder cannot see both); without it, `patients_in_training` is null, nothing is warned
    and the text output says in one line that they were not counted, which it did not say before."""
    import shutil

    data = shared_patient_run.parent / "data"
    site = tmp_path / "site"
    shutil.copytree(data / "test", site)
    out = tmp_path / "m.json"
    argv = ["evaluate", "--model", str(shared_patient_run), "--data", str(site), "--n-boot", "5", "--json", str(out)]
    assert main(argv) == 0
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "trained on" in line]
    assert line.startswith("pneumoscan: warning: 2 patients of the all split (2 of its 4 films)")
    assert line.endswith(f"list both in one CSV manifest with a split column and run `pneumoscan audit` on it "
                         f"(trained on {data})")
    assert json.loads(out.read_text())["patients_in_training"]["patients"] == 2
    data.rename(tmp_path / "moved")
    try:
        assert main(argv) == 0
    finally:
        (tmp_path / "moved").rename(data)
    captured = capsys.readouterr()
    assert "trained on" not in captured.err
    assert json.loads(out.read_text())["patients_in_training"] is None
    assert [line for line in captured.out.splitlines() if "patients also in" in line] == [
        f"  patients also in the training data: not counted ({data}, which the model was trained on, is not found)"]


def test_the_uncounted_line_of_a_model_that_records_no_training_data_says_so() -> None:
    from pneumoscan.data.patients import uncounted_reason

    assert uncounted_reason(None, {"config": {}}) == "the model records no training data"
    assert uncounted_reason(None, {"members": [{"config": {}}]}) == "the model records no training data"


def test_films_keyed_by_file_name_are_said_not_counted_not_zero(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Kermany's file names name no patient across splits: the text output said nothing (and the report "0 of 60"),
    which reads as "none shared"; scored on its own train split, no film is left to compare with either."""
    for split in ("test", "train"):
        out = tmp_path / f"{split}.json"
        assert main(["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--split", split, "--n-boot", "5",
                     "--json", str(out)]) == 0
        assert json.loads(out.read_text())["patients_in_training"]["compared"] == 0
        assert [line for line in capsys.readouterr().out.splitlines() if "patients also" in line] == [
            "  patients also in the training data: not counted (these films' patients are keyed by file name, which "
            "names no patient across splits; a DICOM PatientID, a manifest's patient column or --patient-key folder "
            "would)"]


def test_one_shared_patient_reads_in_the_singular(tmp_path: Path) -> None:
    from pneumoscan.evaluation.evaluate import _shared_message

    shared = {"patients": 1, "films": 1, "by": ["DICOM PatientID"], "compared": 4}
    message = _shared_message(shared, 4, "test", tmp_path, tmp_path)
    assert message.startswith("1 patient of the test split (1 of its 4 films) also has films in the data this model "
                              "was trained on, by DICOM PatientID: ")


@pytest.mark.parametrize("patients, films, n, expected", [
    (1, 1, 1, "1 patient of the test split (its only film) also has films in the data this model was trained on, by "
              "DICOM PatientID: the same patient on both sides, so the figures on that patient's films are not those "
              "of a new patient; `pneumoscan audit {data}` lists that patient"),
    (1, 3, 3, "1 patient of the test split (all 3 of its films) also has films in the data this model was trained on, "
              "by DICOM PatientID: the same patient on both sides, so the figures on that patient's films are not "
              "those of a new patient; `pneumoscan audit {data}` lists that patient"),
    (2, 3, 5, "2 patients of the test split (3 of its 5 films) also have films in the data this model was trained on, "
              "by DICOM PatientID: the same patients on both sides, so the figures on them are not those of new "
              "patients; `pneumoscan audit {data}` lists them"),
])
def test_the_shared_patient_warning_reads_right_for_one_film_one_patient_and_many(
        tmp_path: Path, patients: int, films: int, n: int, expected: str) -> None:
    """One patient's one film read '1 patient of the test split (1 of its 1 films) ...: the same patients on both
    sides, so the figures on them are not those of new patients'."""
    from pneumoscan.evaluation.evaluate import _shared_message

    shared = {"patients": patients, "films": films, "by": ["DICOM PatientID"], "compared": n}
    assert _shared_message(shared, n, "test", tmp_path, tmp_path) == expected.format(data=tmp_path)
    assert _shared_message(shared, n, "test", tmp_path, None).endswith(
        f"to see {'that patient' if patients == 1 else 'them'}, list both in one CSV manifest with a split column and "
        f"run `pneumoscan audit` on it (trained on None)")


def test_a_count_over_only_some_comparable_films_says_how_many_could_be_compared(
        shared_patient_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One DICOM film of a new patient among films keyed by file name: the report read '0 (0 of 5 films)' and evaluate
    said nothing, as if all 5 had been compared with the training data; only the DICOM film could be."""
    import shutil

    from tests.conftest import write_xray

    data = shared_patient_run.parent / "data"
    site = tmp_path / "site"
    (site / "NORMAL").mkdir(parents=True)
    shutil.copy(data / "test" / "NORMAL" / "1.3.0.1", site / "NORMAL" / "1.3.0.1")  # patient T0: not in training
    for k in range(2):
        write_xray(site / "NORMAL" / f"IM-{k}-0001.png", 0, 700 + k, size=48)
        write_xray(site / "PNEUMONIA" / f"person{k}_bacteria_{k}.png", 1, 800 + k, size=48)
    out = tmp_path / "m.json"
    assert main(["evaluate", "--model", str(shared_patient_run), "--data", str(site), "--n-boot", "5",
                 "--json", str(out)]) == 0
    shared = json.loads(out.read_text())["patients_in_training"]
    assert shared == {"patients": 0, "films": 0, "by": [], "compared": 1}
    counted_line = ("0 (0 of 5 films; only 1 of the 5 films could be compared: the other 4 are keyed by file name, "
                    "which names no patient across splits)")
    assert [line for line in capsys.readouterr().out.splitlines() if "patients also" in line] == [
        f"  patients also in the training data: {counted_line}"]
    from pneumoscan.data.patients import shared_text, uncounted_reason

    assert shared_text(shared, 5, uncounted_reason(shared)) == counted_line  # the report's and set-threshold's
    whole = {"patients": 2, "films": 2, "by": ["DICOM PatientID"], "compared": 4}
    assert shared_text(whole, 4, None) == "2 (2 of 4 films; by DICOM PatientID)"


def test_the_shared_patient_warning_says_how_many_films_could_be_compared(tmp_path: Path) -> None:
    """2 of 5 films compared (the others keyed by file name) and both shared: the warning read '2 patients of the test
    split (2 of its 5 films) ...' as if the other 3 were new patients'; the summary line says how many were compared,
    and so does the warning now."""
    from pneumoscan.evaluation.evaluate import _shared_message

    partly = {"patients": 2, "films": 2, "by": ["DICOM PatientID"], "compared": 2}
    assert _shared_message(partly, 5, "test", tmp_path, tmp_path) == (
        "2 patients of the test split (2 of its 5 films) also have films in the data this model was trained on, by "
        "DICOM PatientID: the same patients on both sides, so the figures on them are not those of new patients; "
        f"`pneumoscan audit {tmp_path}` lists them; only 2 of the 5 films could be compared: the other 3 are keyed "
        "by file name, which names no patient across splits")
    assert _shared_message({**partly, "compared": 5}, 5, "test", tmp_path, tmp_path).endswith("lists them")


def test_the_audit_command_of_the_shared_patient_warning_can_be_pasted_for_a_path_with_a_space(tmp_path: Path) -> None:
    import shlex

    from pneumoscan.evaluation.evaluate import _shared_message

    data = tmp_path / "site data"
    shared = {"patients": 2, "films": 3, "by": ["DICOM PatientID"], "compared": 5}
    command = _shared_message(shared, 5, "test", data, data).split("`")[1]
    assert shlex.split(command) == ["pneumoscan", "audit", str(data)]


_opened: dict[str, list[str] | None] = {"files": None}


def _record_open(event: str, args: tuple) -> None:
    if event == "open" and _opened["files"] is not None and isinstance(args[0], (str, bytes, Path)):
        _opened["files"].append(str(args[0]))


def _opens_under(folder: Path, argv: list[str]) -> list[str]:
    """The files under `folder` opened by `pneumoscan ARGV`, which succeeds (an audit hook, added once: hooks cannot
    be removed)."""
    import sys

    if not getattr(sys, "_pneumoscan_open_recorder", False):
        sys.addaudithook(_record_open)
        sys._pneumoscan_open_recorder = True  # type: ignore[attr-defined]
    _opened["files"] = []
    try:
        assert main(argv) == 0
        return [f for f in _opened["files"] or [] if Path(f).is_relative_to(folder)]
    finally:
        _opened["files"] = None


def test_evaluate_and_set_threshold_of_val_open_no_test_film_when_no_other_film_may_be_dicom(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`evaluate --split val` and `set-threshold --split val` (under --patient-key auto) opened test/'s .dcm and
    extensionless files (8 of them, 32 opens) to key the films, though only a DICOM film's key among the others can
    depend on them (a PatientID's count, a name's folders): with train/ and val/ JPEGs only, they open none; with a
    DICOM film in train/, they read test/'s headers as `train` did."""
    from tests.conftest import write_dicom, write_xray

    data = tmp_path / "data"
    for split, n in (("train", 12), ("val", 4), ("test", 2)):
        for p in range(n):
            folder = data / split / ("NORMAL", "PNEUMONIA")[p % 2]
            stem = f"IM-{p:04d}-0001" if p % 2 == 0 else f"person{p}_bacteria_1"
            write_xray(folder / f"{stem}.jpeg", p % 2, 100 * len(split) + p, size=16)
            if split == "test":
                write_dicom(folder / f"{stem[:-1]}2.dcm", p % 2, 900 + p, patient_id=f"T{p}", size=16)
                write_dicom(folder / f"{stem[:-1]}3", p % 2, 950 + p, patient_id=None, size=16)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--model", "cnn", "--image-size", "16",
                 "--epochs", "1", "--batch-size", "16", "--quiet", "--patient-key", "auto"]) == 0
    evaluate = ["evaluate", "--model", str(run), "--data", str(data), "--split", "val", "--n-boot", "5"]
    threshold = ["set-threshold", "--model", str(run), "--data", str(data), "--split", "val"]
    assert _opens_under(data / "test", evaluate) == []
    assert _opens_under(data / "test", [*threshold, "--out", str(tmp_path / "t1")]) == []
    write_dicom(data / "train" / "NORMAL" / "IM-0100-0001.dcm", 0, 99, patient_id="N100", size=16)
    assert _opens_under(data / "test", evaluate) != []
    assert _opens_under(data / "test", [*threshold, "--out", str(tmp_path / "t2")]) != []
    capsys.readouterr()


def test_evaluate_of_val_keys_a_dicom_film_named_jpeg_as_train_did(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """DICOM films named .jpeg in train/ and val/ (their headers read by `train`) and test/'s .dcm films share a
    PatientID that `train` took for a placeholder (on 6 of the 7 DICOM files): `evaluate --split val` judged by name
    that no other film may be DICOM, left test/ unread, kept the value for a patient's and warned of a patient of
    the val split in the training data; it reads test/'s headers, as `train` did, and counts no patient."""
    from tests.conftest import write_dicom, write_xray

    data = tmp_path / "data"
    for split, n in (("train", 12), ("val", 4)):
        for p in range(n):
            stem = f"IM-{p:04d}-0001" if p % 2 == 0 else f"person{p}_bacteria_1"
            write_xray(data / split / ("NORMAL", "PNEUMONIA")[p % 2] / f"{stem}.jpeg", p % 2, 100 * n + p, size=16)
    write_dicom(data / "train" / "NORMAL" / "scanA.jpeg", 0, 1, patient_id="MRN9", size=16)
    write_dicom(data / "train" / "PNEUMONIA" / "scanB.jpeg", 1, 2, patient_id="MRN8", size=16)
    write_dicom(data / "val" / "NORMAL" / "scanC.jpeg", 0, 3, patient_id="MRN9", size=16)
    for p in range(4):
        write_dicom(data / "test" / ("NORMAL", "PNEUMONIA")[p % 2] / f"t{p}.dcm", p % 2, 10 + p, patient_id="MRN9",
                    size=16)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--model", "cnn", "--image-size", "16",
                 "--epochs", "1", "--batch-size", "16", "--quiet"]) == 0
    assert "PatientID 'MRN9' on 6 of the 7 DICOM files" in capsys.readouterr().err
    out = tmp_path / "m.json"
    assert main(["evaluate", "--model", str(run), "--data", str(data), "--split", "val", "--n-boot", "5",
                 "--json", str(out)]) == 0
    assert "trained on" not in capsys.readouterr().err
    assert json.loads(out.read_text())["patients_in_training"]["patients"] == 0
