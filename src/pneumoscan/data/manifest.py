"""Read a CSV manifest: its encoding, delimiter and columns (under the names exports give them), each row's file,
label, split, patient and cause, refusing what cannot be read right with the row's line."""
from __future__ import annotations

import codecs
import csv
import io
import os
import re
from pathlib import Path
from typing import Any

from pneumoscan.data.labels import SPLITS, Sample, label_index, manifest_cause
from pneumoscan.errors import InputError, first_names, warn

# The names each manifest column goes by, as column_key reads them (the first is the one the docs use): exports name
# the image and its patient in many ways. A header with two names of one column is refused, not read at a guess.
# Keras' flow_from_dataframe reads `filename,class` by default, and notebooks often write `filepaths,labels`.
MANIFEST_COLUMNS = {"path": ("path", "file_name", "file", "image", "image_path", "file_path", "filepaths"),
                    "label": ("label", "labels", "class"),
                    "split": ("split",),
                    "patient": ("patient", "patient_id", "mrn", "subject", "subject_id", "patient_number"),
                    "cause": ("cause", "etiology", "aetiology")}
DELIMITERS = (",", ";", "\t")  # a comma, or what a spreadsheet saves in locales where the comma is a decimal mark


def column_key(name: str) -> str:
    """A manifest header's column as matched: case, spaces, hyphens and underscores aside (`Patient ID`,
    `PatientID` and `patient-id` are `patientid`)."""
    return "".join(ch for ch in name.strip().lower() if ch not in " _-")


COLUMN_ROLES = {column_key(name): role for role, names in MANIFEST_COLUMNS.items() for name in names}


def _roles(fields: list[str]) -> dict[str, list[str]]:
    """The header fields that name each manifest column (a `MANIFEST_COLUMNS` key), in header order."""
    roles: dict[str, list[str]] = {}
    for field in fields:
        if field and (role := COLUMN_ROLES.get(column_key(field))):
            roles.setdefault(role, []).append(field)
    return roles


def _header_note(fields: list[str], shown: int = 8) -> str:
    """What a manifest's first line holds, for the error that finds no path or label column in it."""
    names = [field.strip() for field in fields if field.strip()]
    if not names:
        return "; its first line is empty"
    return f"; its header has {first_names(names, shown)}"


def _manifest_columns(csv_path: Path, fields: list[str]) -> dict[str, str]:
    """The header field of each manifest column present; InputError when the path or label column is missing, or
    when one column is named twice (`path` and `filename`, `Patient` and `MRN`)."""
    roles = _roles(fields)
    missing = [role for role in ("path", "label") if role not in roles]
    if missing:
        also = "; ".join(f"the {role} column may also be named {', '.join(MANIFEST_COLUMNS[role][1:])}"
                         for role in missing)
        raise InputError(f"{csv_path}: no {' and no '.join(missing)} column; a manifest needs a header line "
                         f"'path,label' ({also}){_header_note(fields)}")
    for role, named in roles.items():
        if len(named) > 1:
            what = "image file" if role == "path" else role
            raise InputError(f"{csv_path}: columns {named[0].strip()} and {named[1].strip()} both name the {what}; keep "
                             f"one of them and rename or remove the other")
    return {role: named[0] for role, named in roles.items()}


def _delimiter(header: str) -> str:
    """The delimiter whose split of the header line gives both a path and a label column (a comma otherwise)."""
    for delimiter in DELIMITERS:
        if {"path", "label"} <= set(_roles(next(csv.reader([header], delimiter=delimiter), []))):
            return delimiter
    return ","


def is_manifest(path: Path) -> bool:
    """Whether `path` is a file whose first line names a path and a label column (a training run's history.csv
    does not, so it is not offered as a manifest)."""
    try:
        with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
            header = handle.readline(10_000)
    except OSError:
        return False
    return any({"path", "label"} <= set(_roles(next(csv.reader([header], delimiter=d), []))) for d in DELIMITERS)


def _file_identity(path: Path, listings: dict[Path, dict[str, str]]) -> tuple[int, int, int, str]:
    """The directory entry `path` names: its resolved folder's (st_dev, st_ino), the entry's own inode (not
    followed) and its name as the folder stores it (`_stored_name`; `listings` keeps each folder's names). A '..'
    spelling, a linked folder or a case the file system folds name one entry; two hard links or two symlinks to one
    object (DVC's and git-annex's stores, hardlink/rdfind/jdupes -L deduplicated sets) are two entries, so two files,
    also when their names differ only in case on a file system that tells case apart."""
    folder = Path(os.path.realpath(path.parent))
    found = folder.stat()
    return found.st_dev, found.st_ino, (folder / path.name).lstat().st_ino, _stored_name(folder, path.name, listings)


def _stored_name(folder: Path, name: str, listings: dict[Path, dict[str, str]]) -> str:
    """The name under which `folder` stores the entry `name` reaches: `name` itself when the folder holds it so
    spelled, else (a file system that folds case, as macOS's and Windows' do, found `a.PNG` for `a.png`) the entry
    whose name folds to the same, or the case-folded name when none does. `listings` keeps each folder's names,
    read once: each name, and each case-folded name, to the name stored."""
    if folder not in listings:
        try:
            names = os.listdir(folder)
        except OSError:  # cannot be listed: case-folded names, as before
            names = []
        listings[folder] = {stored.casefold(): stored for stored in names} | {stored: stored for stored in names}
    names = listings[folder]
    return names.get(name) or names.get(name.casefold(), name.casefold())  # at most one folds so where case folds


def _tidy(path: Path) -> Path:
    """`path` without its `..` steps (`man/../x/a.png` -> `x/a.png`, as every command then prints it) when that
    names the same file; symlinks are not resolved, and a `..` after a symlinked folder, which leads elsewhere, is
    kept."""
    if ".." not in path.parts:
        return path
    tidy = Path(os.path.normpath(path))
    try:
        return tidy if os.path.samefile(tidy, path) else path
    except (OSError, ValueError):  # either names no file (ValueError: a NUL byte): the caller reports it as written
        return path


def _manifest_path(csv_path: Path, written: str) -> Path:
    """A manifest row's file: relative paths from the CSV's folder, tidied (`_tidy`); a path written on Windows
    (`Normal\\pt7\\a.dcm`) is read with `/` when no file has the name as written."""
    def resolved(text: str) -> Path:
        path = Path(text)
        return path if path.is_absolute() else csv_path.parent / path

    path = resolved(written)
    if "\\" in written and not path.is_file() and (posix := resolved(written.replace("\\", "/"))).is_file():
        return _tidy(posix)
    return _tidy(path)


def _relative_hint(csv_path: Path, written: str) -> str:
    """For a relative path that names no file: where it was read from, and whether it names one from the current
    folder instead (a notebook writes the paths it used, relative to where it ran)."""
    if Path(written).is_absolute():
        return ""
    hint = f" (relative paths are read from the manifest's folder, {csv_path.parent}"
    if Path(written).is_file():
        hint += (f"; {written} exists from the current folder: write the paths relative to {csv_path.parent}, "
                 f"or absolute")
    return hint + ")"


def _blank(raw: dict[str | None, Any]) -> bool:
    """Whether a manifest row holds only empty cells (`,,`, as Excel saves a row of the sheet's used range that was
    filled once and then cleared)."""
    cells = [value for key, value in raw.items() if key is not None] + list(raw.get(None) or [])
    return not any(isinstance(cell, str) and cell.strip() for cell in cells)


# C0 controls but tab, CR and LF, and DEL: in no CSV a spreadsheet writes, but in UTF-16 text read byte by byte
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
CP1252_NOTE = ("read as Windows-1252 (cp1252), as Excel's 'CSV (Comma delimited)' saves on Western-European Windows; "
               "if a name in it reads wrong, the manifest is in another code page: save it as 'CSV UTF-8'")


def manifest_text(csv_path: Path) -> tuple[str, str]:
    """The text of a CSV manifest and its encoding: UTF-8 (a BOM skipped), else Windows-1252 (cp1252) with a warning
    saying so and naming the line of the first byte UTF-8 cannot read (a UTF-8 file with one stray byte is misread
    throughout), when that decodes it without control characters (UTF-16 text, say, has NULs); InputError
    otherwise."""
    # the BOM of Excel's 'CSV UTF-8', dropped before either decode: read as cp1252 it would start the header 'ï»¿'
    data = csv_path.read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as error:
        first = error.start
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:  # one of the five bytes cp1252 leaves undefined
        text = None
    if text is None or _CONTROL.search(text):
        raise InputError(f"{csv_path}: not UTF-8 text, nor Windows-1252 as Excel saves a CSV; save the manifest as a "
                         f"UTF-8 CSV ('CSV UTF-8' in Excel) with columns path,label")
    line = len(re.split(rb"\r\n|\r|\n", data[:first]))  # as the csv module counts lines
    warn(f"{csv_path}: not UTF-8 (line {line} holds byte 0x{data[first]:02X}, which UTF-8 cannot read; if the rest is "
         f"UTF-8, correct that line); {CP1252_NOTE}")
    return text, "cp1252"


class _Lines:
    """A manifest's lines for `csv`, numbered: `first` is the number of the first line that is not blank since it was
    last set to None (the first line of the row read since, which may span lines in a quoted cell)."""

    def __init__(self, lines: io.StringIO) -> None:
        self.lines, self.number, self.first = lines, 0, None

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.number += 1
        if self.first is None and line.strip("\r\n"):
            self.first = self.number
        return line


def read_manifest_splits(csv_path: Path) -> dict[str, list[Sample]]:
    """Samples of a `path,label[,split][,patient][,cause]` CSV (UTF-8, with or without the BOM Excel writes, else
    Windows-1252 with a warning, `manifest_text`; separated by
    commas, semicolons or tabs; column names in any case, with or without spaces, hyphens or underscores, and the
    path, label and patient columns also under the names exports and notebooks give them, `MANIFEST_COLUMNS`) per
    split: `train`/`val`/`test` from the optional `split` column (case-insensitive; then every row needs one),
    else all of them as split `all`. A row of empty cells is skipped; any other row needs a path. Relative paths
    are relative to the CSV's folder. Labels are read by `label_index`. The optional `patient` (or `patient_id`,
    `PatientID`, `MRN`, `subject`, ...) column names each row's patient; then every row needs one (an empty cell is
    an error naming the row: a patient left out would be split from their other images unnoticed). The cause of a
    PNEUMONIA row is its label's (`bacteria`, `viral`, ...) or its optional `cause` (or `etiology`) column's
    (`manifest_cause`; empty or `unknown`: not known). A file listed on two rows (also by another spelling of its path: `..`, a linked
    folder) is an error naming both; two hard links or symlinks to one stored object (git-annex, DVC) are two
    files, as a folder's are."""
    found: dict[str, list[Sample]] = {}
    listed: dict[tuple[int, int, int, str], tuple[int | None, Path]] = {}  # `_file_identity` -> the line and path listing it
    listings: dict[Path, dict[str, str]] = {}  # each folder's entry names, as `_file_identity` reads them
    text, encoding = manifest_text(csv_path)
    read_as = f"; the manifest was {CP1252_NOTE}" if encoding == "cp1252" else ""
    with io.StringIO(text, newline="") as handle:
        delimiter = _delimiter(handle.readline())
        handle.seek(0)
        lines = _Lines(handle)
        reader = csv.DictReader(lines, delimiter=delimiter)
        columns = _manifest_columns(csv_path, reader.fieldnames or [])
        lines.first = None
        for raw in reader:
            # the file's line where the row starts: blank lines are not rows, a quoted cell may hold line breaks
            line, lines.first = lines.first, None
            where = f"{csv_path}:{line}"
            if _blank(raw):
                continue
            row = {role: (raw.get(field) or "").strip() for role, field in columns.items()}
            if not row["path"]:  # read as the manifest's own folder otherwise
                raise InputError(f"{where}: the row has no path (its {columns['path'].strip()} cell is empty); "
                                 f"fill in the image file, or delete the row")
            split = row.get("split", "all").lower()
            if "split" in columns and split not in SPLITS:
                raise InputError(f"{where}: unknown split {row['split']!r}; use one of {', '.join(SPLITS)}")
            patient = row.get("patient")
            if patient == "":
                name = columns["patient"].strip()
                raise InputError(f"{where}: no {name}; fill in the patient of every row (the same value "
                                 f"for all images of one patient), or remove the {name} column to read "
                                 f"patients from the files")
            path = _manifest_path(csv_path, row["path"])
            if path.is_dir():
                raise InputError(f"{where}: {path} is a folder, not an image file; a manifest lists one image "
                                 f"a row: list each of the folder's films on a row of its own")
            if not path.is_file():
                raise InputError(f"{where}: file {path} does not exist; fix the path in the manifest"
                                 + _relative_hint(csv_path, row["path"]) + read_as)
            label = label_index(row["label"], where)
            first, first_path = listed.setdefault(_file_identity(path, listings), (line, path))
            if first != line:
                again = "again, as" if first_path == path else f"(as {first_path}), the file"
                raise InputError(f"{where}: lists {path} {again} line {first} does; a manifest "
                                 f"lists each image once (twice, it is trained on twice, or under both labels or "
                                 f"in two splits): delete one of the rows")
            found.setdefault(split, []).append(
                Sample(path, label, patient, manifest_cause(row["label"], row.get("cause"), where)))
    if not found:
        raise InputError(f"{csv_path}: manifest lists no images")
    return {name: found[name] for name in (*SPLITS, "all") if name in found}
