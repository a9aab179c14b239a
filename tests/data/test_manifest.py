"""Reading a CSV manifest (`data.manifest`): encodings, delimiters and column names as exports write them, each
row's file, label, split, patient and cause, and the errors that name the row's line."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pneumoscan.data.layout import discover, evaluation_samples
from pneumoscan.errors import InputError
from tests.conftest import write_xray


def test_manifest(tmp_path: Path) -> None:
    write_xray(tmp_path / "img" / "a.png", 0, 1)
    write_xray(tmp_path / "img" / "b.png", 1, 2)
    (tmp_path / "m.csv").write_text("path,label\nimg/a.png,normal\nimg/b.png,PNEUMONIA\n")
    assert [s.label for s in discover(tmp_path / "m.csv")["all"]] == [0, 1]


def test_manifest_saved_by_excel(tmp_path: Path) -> None:
    write_xray(tmp_path / "a.png", 0, 1)
    write_xray(tmp_path / "b.png", 1, 2)
    (tmp_path / "m.csv").write_bytes(b"\xef\xbb\xbfpath,label\r\na.png,NORMAL\r\nb.png,PNEUMONIA\r\n")  # CSV UTF-8
    assert [s.label for s in discover(tmp_path / "m.csv")["all"]] == [0, 1]
    (tmp_path / "u16.csv").write_bytes("path,label\r\na.png,NORMAL\r\n".encode("utf-16"))  # Unicode text
    with pytest.raises(InputError, match=r"u16\.csv: not UTF-8 text, nor Windows-1252 as Excel saves a CSV; save the "
                                         r"manifest as a UTF-8 CSV \('CSV UTF-8' in Excel\)"):
        discover(tmp_path / "u16.csv")  # its NULs are control characters: not read as Windows-1252


def test_a_manifest_excel_saved_as_windows_1252_is_read_with_a_warning_naming_the_encoding(tmp_path: Path) -> None:
    """Excel's 'CSV (Comma delimited)' on Western-European Windows writes cp1252: a manifest naming `Müller/` was
    refused as not UTF-8, though it reads unambiguously."""
    write_xray(tmp_path / "Müller" / "Röntgen 1.png", 0, 1)
    write_xray(tmp_path / "Gonçalves" / "tórax.png", 1, 2)
    (tmp_path / "m.csv").write_bytes("path;label;patient\r\nMüller/Röntgen 1.png;NORMAL;Müller\r\n"
                                     "Gonçalves/tórax.png;PNEUMONIA;Gonçalves €\r\n".encode("cp1252"))
    with pytest.warns(UserWarning, match=r"m\.csv: not UTF-8 \(line 2 holds byte 0xFC, which UTF-8 cannot read; if "
                                         r"the rest is UTF-8, correct that line\); read as Windows-1252 \(cp1252\), "
                                         r"as Excel's 'CSV \(Comma delimited\)' saves on Western-European Windows; if "
                                         r"a name in it reads wrong, the manifest is in another code page: save it as "
                                         r"'CSV UTF-8'$"):
        found = discover(tmp_path / "m.csv")["all"]
    assert [(s.path.relative_to(tmp_path).as_posix(), s.label, s.patient) for s in found] == [
        ("Müller/Röntgen 1.png", 0, "Müller"), ("Gonçalves/tórax.png", 1, "Gonçalves €")]
    (tmp_path / "pl.csv").write_bytes("path,label\r\nŁódź.png,NORMAL\r\n".encode("cp1250"))  # another code page
    with pytest.warns(UserWarning), pytest.raises(InputError) as missing:
        discover(tmp_path / "pl.csv")
    assert "pl.csv:2: file " in str(missing.value) and "the manifest was read as Windows-1252" in str(missing.value)
    (tmp_path / "bad.csv").write_bytes(b"path,label\r\na\x81.png,NORMAL\r\n")  # a byte cp1252 leaves undefined
    with pytest.raises(InputError, match=r"bad\.csv: not UTF-8 text, nor Windows-1252"):
        discover(tmp_path / "bad.csv")


def test_a_utf8_manifest_with_a_stray_byte_is_read_as_windows_1252_naming_the_line_of_the_byte(tmp_path: Path) -> None:
    """Its every name beyond ASCII then reads wrong ('CafÃ©'), and the warning did not say where the byte was."""
    write_xray(tmp_path / "a.png", 0, 1)
    (tmp_path / "m.csv").write_bytes(b"path,label\r\na.png,NORMAL\r\n\r\nb\xe9.png,NORMAL\r\n")
    with pytest.warns(UserWarning, match=r"m\.csv: not UTF-8 \(line 4 holds byte 0xE9, which UTF-8 cannot read; if "
                                         r"the rest is UTF-8, correct that line\); read as Windows-1252"), \
            pytest.raises(InputError, match=r"m\.csv:4: file .*bé\.png does not exist"):
        discover(tmp_path / "m.csv")  # the csv module's line numbers: CR and LF alone end a line too
    (tmp_path / "cr.csv").write_bytes(b"path,label\ra.png,NORMAL\rb\xe9.png,NORMAL\r")
    with pytest.warns(UserWarning, match=r"cr\.csv: not UTF-8 \(line 3 holds byte 0xE9"), \
            pytest.raises(InputError, match=r"cr\.csv:3: file "):
        discover(tmp_path / "cr.csv")


def test_a_bom_before_windows_1252_text_is_not_read_into_the_first_column_name(tmp_path: Path) -> None:
    """A UTF-8 BOM with a cp1252 name after it was decoded as cp1252 whole: the header's first name was 'ï»¿path',
    so the manifest was refused as having no path column."""
    write_xray(tmp_path / "Müller" / "a.png", 0, 1)
    (tmp_path / "m.csv").write_bytes(b"\xef\xbb\xbfpath,label\r\n" + "Müller/a.png,NORMAL\r\n".encode("cp1252"))
    with pytest.warns(UserWarning, match=r"m\.csv: not UTF-8 \(line 2 holds byte 0xFC"):
        found = discover(tmp_path / "m.csv")["all"]
    assert [(s.path.relative_to(tmp_path).as_posix(), s.label) for s in found] == [("Müller/a.png", 0)]


def test_manifest_wrong_label_names_line(tmp_path: Path) -> None:
    write_xray(tmp_path / "a.png", 0, 1)
    (tmp_path / "m.csv").write_text("path,label\na.png,covid\n")
    with pytest.raises(InputError, match=r"m\.csv:2: unknown label 'covid'"):
        discover(tmp_path / "m.csv")


def test_manifest_split_column_keeps_test_rows_out_of_training(tmp_path: Path) -> None:
    for name, label in (("a", 0), ("b", 1), ("c", 0), ("d", 1)):
        write_xray(tmp_path / f"{name}.png", label, ord(name))
    (tmp_path / "m.csv").write_text("path,label,split\na.png,NORMAL,train\nb.png,PNEUMONIA,Train\n"
                                    "c.png,NORMAL,test\nd.png,PNEUMONIA,test\n")
    found = discover(tmp_path / "m.csv")
    assert {k: [s.path.name for s in v] for k, v in found.items()} == {"train": ["a.png", "b.png"],
                                                                     "test": ["c.png", "d.png"]}
    assert [s.path.name for s in evaluation_samples(tmp_path / "m.csv")[1]] == ["c.png", "d.png"]
    (tmp_path / "bad.csv").write_text("path,label,split\na.png,NORMAL,train\nb.png,PNEUMONIA,\n")
    with pytest.raises(InputError, match=r"bad\.csv:3: unknown split ''; use one of train, val, test"):
        discover(tmp_path / "bad.csv")


def test_manifest_patient_column_names_each_rows_patient(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c.png"):
        write_xray(tmp_path / name, 0, 1)
    (tmp_path / "m.csv").write_text("path,label,Patient\na.png,NORMAL, P-01 \nb.png,PNEUMONIA,P-01\n"
                                    "c.png,NORMAL,P-02\n")
    assert [s.patient for s in discover(tmp_path / "m.csv")["all"]] == ["P-01", "P-01", "P-02"]
    (tmp_path / "id.csv").write_text("path,label,patient_id\na.png,NORMAL,7\n")
    assert [s.patient for s in discover(tmp_path / "id.csv")["all"]] == ["7"]
    (tmp_path / "none.csv").write_text("path,label\na.png,NORMAL\n")
    assert [s.patient for s in discover(tmp_path / "none.csv")["all"]] == [None]


def test_manifest_patient_column_with_an_empty_cell_names_the_row(tmp_path: Path) -> None:
    write_xray(tmp_path / "a.png", 0, 1)
    (tmp_path / "m.csv").write_text("path,label,patient\na.png,NORMAL,P-01\na.png,PNEUMONIA,\n")
    with pytest.raises(InputError, match=r"m\.csv:3: no patient; fill in the patient of every row .* or remove the "
                                         r"patient column to read patients from the files$"):
        discover(tmp_path / "m.csv")
    (tmp_path / "short.csv").write_text("path,label,patient\na.png,NORMAL\n")  # the cell left out altogether
    with pytest.raises(InputError, match=r"short\.csv:2: no patient"):
        discover(tmp_path / "short.csv")
    (tmp_path / "both.csv").write_text("path,label,patient,patient_id\na.png,NORMAL,1,1\n")
    with pytest.raises(InputError, match=r"both\.csv: columns patient and patient_id both name the patient; keep one of them"):
        discover(tmp_path / "both.csv")


def test_manifest_patient_column_is_found_under_the_names_hospital_exports_give_it(tmp_path: Path) -> None:
    # a PatientID column left unread would split one patient's films between train and validation unnoticed
    for name in ("a.png", "b.png"):
        write_xray(tmp_path / name, 0, 1)
    for header in ("PatientID", "Patient ID", "patient-id", "PATIENT_ID"):
        (tmp_path / "m.csv").write_text(f"Path,Label,{header}\na.png,NORMAL,P-01\nb.png,PNEUMONIA,P-01\n")
        assert [s.patient for s in discover(tmp_path / "m.csv")["all"]] == ["P-01", "P-01"], header
    (tmp_path / "empty.csv").write_text("path,label,PatientID\na.png,NORMAL,\n")
    with pytest.raises(InputError, match=r"empty\.csv:2: no PatientID; .* remove the PatientID column"):
        discover(tmp_path / "empty.csv")
    (tmp_path / "both.csv").write_text("path,label,Patient,PatientID\na.png,NORMAL,1,1\n")
    with pytest.raises(InputError, match=r"both\.csv: columns Patient and PatientID both name the patient; keep one of them"):
        discover(tmp_path / "both.csv")


def test_manifest_saved_with_semicolons_or_tabs(tmp_path: Path) -> None:
    # what a spreadsheet saves as "CSV" where the comma is the decimal mark, or as tab-separated text
    write_xray(tmp_path / "a, first.png", 0, 1)
    write_xray(tmp_path / "b.png", 1, 2)
    for name, sep in (("semi.csv", ";"), ("tab.csv", "\t")):
        rows = ["path", "label", "patient"], ["a, first.png", "NORMAL", "P1"], ["b.png", "PNEUMONIA", "P2"]
        (tmp_path / name).write_bytes(("\ufeff" + "\r\n".join(sep.join(r) for r in rows) + "\r\n").encode())
        found = discover(tmp_path / name)["all"]
        assert [(s.path.name, s.label, s.patient) for s in found] == [("a, first.png", 0, "P1"), ("b.png", 1, "P2")]


def test_manifest_written_on_windows_finds_its_files(tmp_path: Path) -> None:
    write_xray(tmp_path / "Normal" / "pt 7" / "a.png", 0, 1)
    write_xray(tmp_path / "pneumonia" / "b.png", 1, 2)
    (tmp_path / "m.csv").write_text("path,label\r\nNormal\\pt 7\\a.png,NORMAL\r\npneumonia\\b.png,PNEUMONIA\r\n")
    found = discover(tmp_path / "m.csv")["all"]
    assert [s.path for s in found] == [tmp_path / "Normal" / "pt 7" / "a.png", tmp_path / "pneumonia" / "b.png"]
    (tmp_path / "gone.csv").write_text("path,label\nNormal\\pt 8\\a.png,NORMAL\n")
    with pytest.raises(InputError, match=r"gone\.csv:2: file .*Normal\\pt 8\\a\.png does not exist; fix the path"):
        discover(tmp_path / "gone.csv")


def test_manifest_path_column_is_found_under_the_names_exports_give_it(tmp_path: Path) -> None:
    # a hospital's export names the image column filename, Image Path, ...: refused as 'no path column' before
    write_xray(tmp_path / "a.png", 0, 1)
    write_xray(tmp_path / "b.png", 1, 2)
    for header in ("filename", "File", "file_name", "Image", "image_path", "FilePath", "File Path", "file-path"):
        (tmp_path / "m.csv").write_text(f"{header},Label\na.png,NORMAL\nb.png,PNEUMONIA\n")
        assert [(s.path.name, s.label) for s in discover(tmp_path / "m.csv")["all"]] == [("a.png", 0), ("b.png", 1)], \
            header
    for name, sep in (("semi.csv", ";"), ("tab.csv", "\t")):  # the delimiter is told by the aliases too
        (tmp_path / name).write_text(f"Image Path{sep}Label{sep}MRN\na.png{sep}NORMAL{sep}7\n")
        assert [(s.path.name, s.patient) for s in discover(tmp_path / name)["all"]] == [("a.png", "7")], name


def test_manifest_with_two_path_columns_or_none_says_which_to_keep(tmp_path: Path) -> None:
    write_xray(tmp_path / "a.png", 0, 1)
    (tmp_path / "two.csv").write_text("path,Filename,label\na.png,a.png,NORMAL\n")
    with pytest.raises(InputError, match=r"two\.csv: columns path and Filename both name the image file; keep one of "
                                         r"them and rename or remove the other$"):
        discover(tmp_path / "two.csv")
    (tmp_path / "aliases.csv").write_text("Image,File Path,label\nx,a.png,NORMAL\n")
    with pytest.raises(InputError, match=r"aliases\.csv: columns Image and File Path both name the image file; keep one"):
        discover(tmp_path / "aliases.csv")
    (tmp_path / "none.csv").write_text("study,label\na.png,NORMAL\n")
    with pytest.raises(InputError, match=r"none\.csv: no path column; a manifest needs a header line 'path,label' "
                                         r"\(the path column may also be named file_name, file, image, image_path, "
                                         r"file_path, filepaths\); its header has study, label$"):
        discover(tmp_path / "none.csv")
    (tmp_path / "nolabel.csv").write_text("filename,finding\na.png,NORMAL\n")
    with pytest.raises(InputError, match=r"nolabel\.csv: no label column; a manifest needs a header line "
                                         r"'path,label' \(the label column may also be named labels, class\); its "
                                         r"header has filename, finding$"):
        discover(tmp_path / "nolabel.csv")


def test_a_manifest_without_its_columns_says_what_its_header_holds(tmp_path: Path) -> None:
    # the error named the columns it wanted, not the ones it found, so a typo or a wrong file was a guess
    wide = ",".join(f"c{i}" for i in range(12))
    (tmp_path / "wide.csv").write_text(f"{wide}\n")
    with pytest.raises(InputError, match=r"no path and no label column; .*the path column may also be named .*; the "
                                         r"label column may also be named labels, class\); its header has c0, c1, c2, "
                                         r"c3, c4, c5, c6, c7 \(and 4 more\)$"):
        discover(tmp_path / "wide.csv")
    (tmp_path / "blank.csv").write_text("\na.png,NORMAL\n")
    with pytest.raises(InputError, match=r"blank\.csv: no path and no label column; .*; its first line is empty$"):
        discover(tmp_path / "blank.csv")


def test_manifest_columns_as_keras_and_notebooks_name_them_are_read(tmp_path: Path) -> None:
    # Keras' flow_from_dataframe reads filename,class by default; notebooks often write filepaths,labels
    write_xray(tmp_path / "a.png", 0, 1)
    write_xray(tmp_path / "b.png", 1, 2)
    for header in ("filename,class", "filepaths,labels", "Image Path,Class", ",path,label"):
        index = ("0,", "1,") if header.startswith(",") else ("", "")  # pandas' to_csv writes its index first
        (tmp_path / "m.csv").write_text(f"{header}\n{index[0]}a.png,NORMAL\n{index[1]}b.png,PNEUMONIA\n")
        assert [(s.path.name, s.label) for s in discover(tmp_path / "m.csv")["all"]] == [("a.png", 0), ("b.png", 1)], \
            header
    (tmp_path / "two.csv").write_text("path,label,class\na.png,NORMAL,NORMAL\n")
    with pytest.raises(InputError, match=r"two\.csv: columns label and class both name the label; keep one"):
        discover(tmp_path / "two.csv")


def test_a_manifest_path_relative_to_the_current_folder_says_where_it_is_read_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a notebook writes the paths it opened, relative to where it ran, not to the CSV's folder
    write_xray(tmp_path / "site" / "NORMAL" / "a.png", 0, 1)
    (tmp_path / "site" / "m.csv").write_text("path,label\nsite/NORMAL/a.png,NORMAL\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"m\.csv:2: file site/site/NORMAL/a\.png does not exist; fix the path in the "
                                         r"manifest \(relative paths are read from the manifest's folder, site; "
                                         r"site/NORMAL/a\.png exists from the current folder: write the paths "
                                         r"relative to site, or absolute\)$"):
        discover(Path("site/m.csv"))
    (tmp_path / "site" / "gone.csv").write_text("path,label\nNORMAL/b.png,NORMAL\n")
    with pytest.raises(InputError, match=r"gone\.csv:2: file site/NORMAL/b\.png does not exist; fix the path in the "
                                         r"manifest \(relative paths are read from the manifest's folder, site\)$"):
        discover(Path("site/gone.csv"))
    (tmp_path / "site" / "abs.csv").write_text(f"path,label\n{tmp_path / 'nope.png'},NORMAL\n")
    with pytest.raises(InputError, match=r"abs\.csv:2: file .*nope\.png does not exist; fix the path in the manifest$"):
        discover(Path("site/abs.csv"))


def test_manifest_patient_column_is_found_under_mrn_and_subject_names(tmp_path: Path) -> None:
    write_xray(tmp_path / "a.png", 0, 1)
    for header in ("MRN", "Subject", "subject_id", "Subject ID", "Patient Number", "patient_number"):
        (tmp_path / "m.csv").write_text(f"path,label,{header}\na.png,NORMAL,P-01\n")
        assert [s.patient for s in discover(tmp_path / "m.csv")["all"]] == ["P-01"], header
    (tmp_path / "empty.csv").write_text("path,label,MRN\na.png,NORMAL,\n")
    with pytest.raises(InputError, match=r"empty\.csv:2: no MRN; .* remove the MRN column"):
        discover(tmp_path / "empty.csv")
    (tmp_path / "both.csv").write_text("path,label,Patient ID,MRN\na.png,NORMAL,1,1\n")
    with pytest.raises(InputError, match=r"both\.csv: columns Patient ID and MRN both name the patient; keep one of "
                                         r"them and rename or remove the other$"):
        discover(tmp_path / "both.csv")


def test_manifest_labels_kermanys_causes_as_pneumonia(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c.png", "d.png", "e.png"):
        write_xray(tmp_path / name, 1, 1)
    (tmp_path / "m.csv").write_text("path,label\na.png,bacteria\nb.png,Bacterial\nc.png,VIRUS\nd.png,viral\n"
                                    "e.png,Normal\n")
    assert [s.label for s in discover(tmp_path / "m.csv")["all"]] == [1, 1, 1, 1, 0]
    (tmp_path / "covid.csv").write_text("path,label\na.png,covid\n")
    with pytest.raises(InputError, match=r"covid\.csv:2: unknown label 'covid'; use one of NORMAL, PNEUMONIA \(or for "
                                         r"PNEUMONIA its cause: bacteria, bacterial, virus, viral\)$"):
        discover(tmp_path / "covid.csv")


@pytest.mark.parametrize("value", ["0", "1", "True", "false", "YES", "no", "Positive", "negative"])
def test_manifest_labels_that_differ_between_exports_are_refused_with_the_fix(tmp_path: Path, value: str) -> None:
    # which of 0/1, yes/no, positive/negative means pneumonia differs between exports: guessing could flip every label
    write_xray(tmp_path / "a.png", 0, 1)
    (tmp_path / "m.csv").write_text(f"path,label\na.png,NORMAL\na.png, {value}\n")
    with pytest.raises(InputError, match=rf"m\.csv:3: label '{value}' does not say which class it is \(exports differ "
                                         r"in which value means pneumonia\); write NORMAL or PNEUMONIA in the label "
                                         r"column$"):
        discover(tmp_path / "m.csv")


def test_a_manifest_keeps_the_cause_its_label_or_cause_column_gives(tmp_path: Path) -> None:
    """A hospital's manifest labelled `bacteria`/`viral`, or with a `cause` column, had its causes thrown away, so its
    films had no recall by cause; each sample now carries the cause (None where neither says it)."""
    for name in ("a.png", "b.png", "c.png", "d.png", "e.png", "f.png"):
        write_xray(tmp_path / name, 1, 1)
    (tmp_path / "m.csv").write_text("path,label,Cause\na.png,Bacterial,\nb.png,viral,virus\nc.png,PNEUMONIA,BACTERIA\n"
                                    "d.png,pneumonia,\ne.png,PNEUMONIA,unknown\nf.png,NORMAL,\n")
    assert [s.cause for s in discover(tmp_path / "m.csv")["all"]] == ["bacteria", "virus", "bacteria", None, None, None]
    (tmp_path / "e.csv").write_text("path,label,etiology\na.png,PNEUMONIA,viral\n")  # the column's other name
    assert [s.cause for s in discover(tmp_path / "e.csv")["all"]] == ["virus"]
    (tmp_path / "no.csv").write_text("path,label\na.png,virus\nb.png,PNEUMONIA\n")  # no cause column: the label's
    assert [s.cause for s in discover(tmp_path / "no.csv")["all"]] == ["virus", None]


@pytest.mark.parametrize("row, message", [
    ("a.png,PNEUMONIA,fungal", r"m\.csv:2: unknown cause 'fungal'; use one of bacteria, bacterial, virus, viral, or "
                               r"leave it empty when the cause is not known$"),
    ("a.png,NORMAL,virus", r"m\.csv:2: cause 'virus' on a NORMAL row; leave the cause empty for NORMAL images, or "
                           r"correct the label$"),
    ("a.png,bacteria,viral", r"m\.csv:2: label 'bacteria' and cause 'viral' disagree; correct one of them$"),
])
def test_a_manifest_cause_that_cannot_be_right_is_refused_naming_the_row(tmp_path: Path, row: str, message: str) -> None:
    write_xray(tmp_path / "a.png", 1, 1)
    (tmp_path / "m.csv").write_text(f"path,label,cause\n{row}\n")
    with pytest.raises(InputError, match=message):
        discover(tmp_path / "m.csv")


def test_manifest_paths_through_a_parent_folder_are_tidied(tmp_path: Path) -> None:
    """A manifest beside its films' folder (`../x/a.png`) gave every command `man/../x/a.png`, which audit and
    evaluate printed as such while train's val_predictions.csv tidied it; the `..` is taken out when it names the
    same file, and kept after a symlinked folder, where it leads elsewhere."""
    write_xray(tmp_path / "x" / "NORMAL" / "a.png", 0, 1)
    (tmp_path / "man").mkdir()
    (tmp_path / "man" / "m.csv").write_text("path,label\n../x/NORMAL/a.png,NORMAL\n")
    assert [s.path for s in discover(tmp_path / "man" / "m.csv")["all"]] == [tmp_path / "x" / "NORMAL" / "a.png"]

    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "link").symlink_to(tmp_path / "man")  # deep/link/.. is tmp_path, not deep/
    written = tmp_path / "deep" / "link" / ".." / "x" / "NORMAL" / "a.png"
    assert [s.path for s in discover(tmp_path / "deep" / "link" / "m.csv")["all"]] == [written]


def test_a_manifest_row_with_a_nul_byte_and_a_parent_step_is_a_missing_file_not_a_traceback(tmp_path: Path) -> None:
    """Tidying `..` asked os.path.samefile, which raises ValueError for a NUL byte; without `..` the row was already
    the clean 'does not exist' error."""
    (tmp_path / "man").mkdir()
    (tmp_path / "man" / "m.csv").write_text("path,label\n../x/a\0b.png,NORMAL\n")
    with pytest.raises(InputError):
        discover(tmp_path / "man" / "m.csv")


def test_a_manifest_row_naming_a_folder_says_it_is_a_folder(tmp_path: Path) -> None:
    """A row naming a study folder was reported as 'file ... does not exist', though it is there."""
    write_xray(tmp_path / "site" / "pt7" / "a.png", 0, 1)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nsite/pt7,NORMAL\n")
    with pytest.raises(InputError, match=r"^.*m\.csv:2: .*site/pt7 is a folder, not an image file; a manifest lists "
                                         r"one image a row: list each of the folder's films on a row of its own$"):
        discover(manifest)


def test_a_manifest_row_without_a_path_says_so(tmp_path: Path) -> None:
    """An empty path cell was read as the manifest's own folder and reported as 'TMP is a folder, not an image'."""
    write_xray(tmp_path / "a.png", 0, 1)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\na.png,NORMAL\n ,PNEUMONIA\n")
    with pytest.raises(InputError, match=r"^.*m\.csv:3: the row has no path \(its path cell is empty\); fill in the "
                                         r"image file, or delete the row$"):
        discover(manifest)
    manifest.write_text("Image Path,label,split\na.png,NORMAL,train\n,NORMAL,\n")  # before its empty split
    with pytest.raises(InputError, match=r"m\.csv:3: the row has no path \(its Image Path cell is empty\)"):
        discover(manifest)


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_a_manifest_s_empty_rows_as_excel_saves_them_are_skipped(tmp_path: Path, delimiter: str) -> None:
    """Excel saves the rows of the sheet's used range that were filled once and then cleared as rows of empty cells
    (`,,`): they were read as a row naming the manifest's folder, or with a split column as an unknown split ''."""
    write_xray(tmp_path / "a.png", 0, 1)
    write_xray(tmp_path / "b.png", 1, 2)
    rows = ["path,label,split", "a.png,NORMAL,train", ",,", "b.png,PNEUMONIA,val", ",,", ", ,", ",,,"]
    (tmp_path / "m.csv").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).replace(",", delimiter).encode() + b"\r\n")
    found = discover(tmp_path / "m.csv")
    assert {split: [s.path.name for s in samples] for split, samples in found.items()} == {
        "train": ["a.png"], "val": ["b.png"]}
    (tmp_path / "m.csv").write_text("path,label\na.png,NORMAL\n,\n,\n")
    assert [s.path.name for s in discover(tmp_path / "m.csv")["all"]] == ["a.png"]
    (tmp_path / "m.csv").write_text("path,label\n,\n")
    with pytest.raises(InputError, match=r"m\.csv: manifest lists no images$"):
        discover(tmp_path / "m.csv")


def test_a_manifest_error_names_the_file_s_line_after_blank_lines(tmp_path: Path) -> None:
    """Blank lines are no rows: the error after one named the line above the row (rows were counted, not lines)."""
    write_xray(tmp_path / "a.png", 0, 1)
    (tmp_path / "m.csv").write_text("path,label\n\na.png,NORMAL\n\n\na.png,sick\n")
    with pytest.raises(InputError, match=r"m\.csv:6: unknown label 'sick'"):
        discover(tmp_path / "m.csv")


def test_a_manifest_error_names_the_first_line_of_a_row_with_a_multi_line_cell(tmp_path: Path) -> None:
    """A quoted cell may hold line breaks (a note typed with Alt+Enter in Excel): the error named the row's last line,
    where the user finds the note's end and not the row."""
    write_xray(tmp_path / "a.png", 0, 1)
    (tmp_path / "m.csv").write_text('path,label,note\na.png,NORMAL,"seen\ntwice"\n\na.png,sick,"one\n\ntwo\nthree"\n'
                                    'a.png,NORMAL,x\n')
    with pytest.raises(InputError, match=r"m\.csv:5: unknown label 'sick'"):
        discover(tmp_path / "m.csv")


def test_a_file_listed_on_two_rows_of_a_manifest_is_refused_naming_both(tmp_path: Path) -> None:
    write_xray(tmp_path / "NORMAL" / "a.png", 0, 1)
    write_xray(tmp_path / "PNEUMONIA" / "b.png", 1, 2)
    rows = "path,label,split\nNORMAL/a.png,NORMAL,train\nPNEUMONIA/b.png,PNEUMONIA,train\n"
    assert len(discover(_manifest(tmp_path, "m.csv", rows))["train"]) == 2
    (tmp_path / "linked").symlink_to(tmp_path / "NORMAL")
    for name, again, said in (("twice.csv", "NORMAL/a.png,NORMAL,train\n", "again, as"),  # a merge repeated rows
                              ("labels.csv", "NORMAL/a.png,PNEUMONIA,train\n", "again, as"),  # both labels
                              ("splits.csv", "./NORMAL/../NORMAL/a.png,NORMAL,test\n", "again, as"),  # in test
                              # through a linked folder: the message names both spellings
                              ("folder.csv", "linked/a.png,NORMAL,test\n",
                               rf"\(as {re.escape(str(tmp_path / 'NORMAL' / 'a.png'))}\), the file")):
        with pytest.raises(InputError, match=rf"{name}:4: lists .*a\.png {said} line 2 does; a manifest lists each "
                                             rf"image once .*: delete one of the rows$"):
            discover(_manifest(tmp_path, name, rows + again))


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_two_links_to_one_stored_object_are_two_files_of_a_manifest(tmp_path: Path, link: str) -> None:
    """git-annex and DVC make byte-identical films symlinks or hard links to one content-addressed object (as do
    hardlink, rdfind and jdupes -L): two files, not one listed twice; they are byte-identical duplicates, which
    `audit` reports. A linked folder to them still names the same file."""
    write_xray(tmp_path / "NORMAL" / "a.png", 0, 1)
    _linked_films(tmp_path, link, ("b.png", "c.png"))
    rows = "path,label\nNORMAL/a.png,NORMAL\nPNEUMONIA/b.png,PNEUMONIA\nPNEUMONIA/c.png,PNEUMONIA\n"
    found = discover(_manifest(tmp_path, "m.csv", rows))
    assert [s.path.name for s in found["all"]] == ["a.png", "b.png", "c.png"]
    (tmp_path / "linked").symlink_to(tmp_path / "PNEUMONIA")
    with pytest.raises(InputError, match=r"again.csv:5: lists .*linked/c\.png \(as .*PNEUMONIA/c\.png\), the file line 4"):
        discover(_manifest(tmp_path, "again.csv", rows + "linked/c.png,PNEUMONIA\n"))


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_two_links_whose_names_differ_only_in_case_are_two_files_where_case_is_told_apart(tmp_path: Path,
                                                                                         link: str) -> None:
    """Two hard links (or symlinks) `IM1.png` and `im1.png` in one folder, on a file system that tells case apart
    (Linux's), are two directory entries, so two files as any two links are; their case-folded names made them one
    entry listed twice: 'lists .../im1.png (as .../IM1.png), the file line 2 does'."""
    _linked_films(tmp_path, link, ("IM1.png", "im1.png"))
    rows = "path,label\nPNEUMONIA/IM1.png,PNEUMONIA\nPNEUMONIA/im1.png,PNEUMONIA\n"
    found = discover(_manifest(tmp_path, "m.csv", rows))
    assert [s.path.name for s in found["all"]] == ["IM1.png", "im1.png"]
    with pytest.raises(InputError, match=r"again.csv:4: lists .*PNEUMONIA/im1\.png again, as line 3 does"):
        discover(_manifest(tmp_path, "again.csv", rows + "PNEUMONIA/im1.png,PNEUMONIA\n"))


def _linked_films(folder: Path, link: str, names: tuple[str, ...]) -> None:
    """`names` in folder/PNEUMONIA, each a symlink or hard link (`link`) to one stored film, as git-annex and DVC
    store them."""
    store = write_xray(folder / ".annex" / "SHA256E-s1--abc.png", 1, 2)
    (folder / "PNEUMONIA").mkdir()
    for name in names:
        if link == "symlink":
            (folder / "PNEUMONIA" / name).symlink_to(store)
        else:
            os.link(store, folder / "PNEUMONIA" / name)


def test_a_manifests_rows_in_a_case_folding_folder_read_its_listing_once_not_once_a_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a file system that folds case (macOS, Windows), a row spelled otherwise than its stored entry is matched
    to that entry: the whole listing was case-folded again for every such row, so 20,000 rows took 15.7 s."""
    import pneumoscan.data.manifest as manifest

    folded = []

    class Stored(str):  # a folder entry's name, counting how often it is case-folded
        def casefold(self) -> str:
            folded.append(self)
            return str.casefold(self)

    n = 60
    for i in range(n):
        write_xray(tmp_path / "NORMAL" / f"im{i}.png", 0, i, size=8)
    listdir = os.listdir
    monkeypatch.setattr(manifest.os, "listdir",  # the folder stores IM0.PNG ..., as a case-folding one may
                        lambda folder: [Stored(name.upper()) for name in listdir(folder)])
    rows = "".join(f"NORMAL/im{i}.png,NORMAL\n" for i in range(n))
    found = discover(_manifest(tmp_path, "m.csv", "path,label\n" + rows))
    assert len(found["all"]) == n and len(folded) <= n  # each stored name folded once, not n / 2 times on average


def _manifest(folder: Path, name: str, text: str) -> Path:
    (folder / name).write_text(text)
    return folder / name
