"""Which patient each image is of (the key of the patient split and the audit's patient counts), and the
cause of pneumonia: a manifest's, else parsed from Kermany-style file names.

`--patient-key` chooses where the key is read:

* `auto` (default): a CSV manifest's `patient` column, else the DICOM header's PatientID (when present, non-empty
  and not a placeholder), else the file name (`patient_id`); a DICOM file whose header names no patient is keyed
  by its file name too, qualified by its folder when that name's key is found on such files in other folders
  (`own_file_key`); a film keyed by its Kermany file name whose name's other films carry a PatientID is keyed by it
  (`sibling_ids`: of its split).
* `name`: the file name only, as before `--patient-key` existed.
* `folder`: the folders between the class folder and the image (`NORMAL/pt7/a.dcm` -> `pt7`).
"""
from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Mapping, NamedTuple, Sequence, TypeVar

from pneumoscan import CLASS_NAMES, PATIENT_KEYS
from pneumoscan.data.decode import is_dicom
from pneumoscan.data.fingerprint import fingerprints
from pneumoscan.data.formats import image_stem, is_image_head, may_be_dicom
from pneumoscan.data.labels import Sample
from pneumoscan.errors import InputError, counted, option, raise_if_interrupted, warn
from pneumoscan.progress import progress_bar

K = TypeVar("K", bound=Hashable)  # a key of `_copied`'s groups of files

_NORMAL = re.compile(r"^(?P<patient>(?:NORMAL2-)?IM-\d+)(?:-\d+)+$", re.IGNORECASE)
_PNEUMONIA = re.compile(r"^(?P<patient>person\d+)_(?P<cause>bacteria|virus)(?:_\d+)+$", re.IGNORECASE)

# Where a key came from, as split.json and the audit count them; `file`: a DICOM file whose header names no patient,
# keyed by its folder and name (`own_file_key`), which `name` would not give.
SOURCES = ("manifest", "dicom", "folder", "name", "file")
# How `auto` keys a DICOM file whose header names no patient, recorded in split.json as `patient_key_rule`, so a
# resume tells a split changed by this rule from changed data. Absent: by its file name alone (releases), or by its
# path unless its name was Kermany's (development code from 9f99720 to before 6582825); 2: `own_file_key`, its
# folders counted over every sample keyed by file name; 3: over the DICOM files without a usable PatientID only; 4:
# those folders, and placeholder PatientIDs, judged over every split of the data set (`dataset_keys`), not train/
# and val/ only, so `train` keys each film as `audit` does; 5: a test/ file named for another image format (.jpeg,
# .png) is no DICOM file, its header never read (`unopened_headers`: test/ is for final reporting). (Development
# code from 3ad352f to 48cc5dd recorded 6: a PatientID on most DICOM films whose films' headers all give one sex and
# birth date was keyed as one patient, which put one patient's films of one key and of another, their file names',
# on both sides of the split; such a value is judged so for counting a leak only, `compared_keys`: WITHDRAWN_RULES);
# 7: a film keyed by its file name (Kermany's or not: `person7.jpeg` as `person7_bacteria_2.jpeg`) whose name's
# Kermany-named DICOM films in its split carry a usable PatientID is keyed by it (`sibling_ids`; `scan7.jpeg` beside
# `scan7.dcm` is not), as rule 5 put a patient's films with and without a PatientID on both sides of the split.
KEY_RULE = 7
WITHDRAWN_RULES = frozenset({6})  # rules of development code no release keys by
# the splits for final reporting only: keying a data set opens none of their files it need not
REPORTING_SPLITS = ("test",)
FILE_KEYS = frozenset({"name", "file"})  # origins of keys read from a file's name, which name no patient across splits
# PatientIDs anonymisers write instead of a patient's (compared in lower case; any run of zeros counts too).
PLACEHOLDER_IDS = frozenset({"anonymous", "anonymized", "anonymised", "anon", "unknown", "none", "null", "n/a", "na",
                             "-", "--", "*", "?", "x", "xxx"})
PLACEHOLDER_MIN_IMAGES = 3  # a PatientID on more than half of the DICOM images is a placeholder from this many on


def patient_id(path: str | Path) -> str:
    """Patient key read from the file name: `IM-0115-0001.jpeg` -> `IM-0115`, `person19_virus_50.jpeg` ->
    `person19`.

    Unknown names are their own patient: the file name without its image extension (a DICOM UID name such
    as `1.2.840.113619.2.55.3.12345` is kept whole; its last number is not an extension). This is
    `--patient-key name`, and what `auto` falls back to.
    """
    stem = image_stem(path)
    match = _NORMAL.match(stem)
    if match:  # in the dataset's own case, so `im-0115-0002` is the same child as `IM-0115-0001`
        return match.group("patient").upper()
    match = _PNEUMONIA.match(stem)
    if match:
        return match.group("patient").lower()
    return stem


def is_kermany_name(path: str | Path) -> bool:
    """Whether the file is named as in Kermany's data set (`IM-0115-0001.jpeg`, `person19_virus_50.jpeg`)."""
    stem = image_stem(path)
    return bool(_NORMAL.match(stem) or _PNEUMONIA.match(stem))


def cause(path: str | Path) -> str | None:
    """`bacteria` or `virus` for Kermany pneumonia file names, None otherwise."""
    match = _PNEUMONIA.match(Path(path).stem)
    return match.group("cause").lower() if match else None


UNKNOWN_CAUSE = "unknown"
CAUSE_GROUPS = ("bacteria", "virus", UNKNOWN_CAUSE)  # recall by cause, in this order


def cause_of(sample: Sample) -> str | None:
    """The cause of a PNEUMONIA sample's pneumonia: its manifest's (label or cause column), which wins over its file
    name's (`cause`); None for a NORMAL sample or when neither says."""
    if sample.label != CLASS_NAMES.index("PNEUMONIA"):
        return None
    return sample.cause or cause(sample.path)


def cause_groups(causes: Sequence[str | None]) -> list[str] | None:
    """The recall-by-cause group of each PNEUMONIA film whose cause (`cause_of`) is in `causes`: the cause, or
    `unknown`; None when no film's cause is known, as then there is no recall by cause to give (one `unknown` group
    would only repeat the recall)."""
    if not any(causes):
        return None
    return [c or UNKNOWN_CAUSE for c in causes]


def dicom_patient_id(path: Path) -> str | None:
    """The PatientID in a DICOM file's header (read without its pixels), stripped of padding ('' when it has no or
    an empty PatientID); None for a file that is not DICOM (by content, as decoding tells) or cannot be read."""
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return None
    if not is_dicom(head):
        return None
    try:
        import pydicom
    except ImportError as err:  # decoding the file will say so
        raise_if_interrupted(err)
        return None
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"],
                             force=head[128:132] != b"DICM")  # force: a file without its preamble
        value = ds.get("PatientID")
    except Exception:  # noqa: BLE001 -- a damaged header: decoding reports the file, the name keys it meanwhile
        return None
    return str(value if value is not None else "").strip(" \x00")


def dicom_identity(path: Path) -> tuple[str, str]:
    """The PatientSex (M or F, else '') and PatientBirthDate (its digits, so `1970-01-01` and `19700101 ` are one
    date; '' when absent) in a DICOM file's header, read without its pixels; ('', '') for a file whose header cannot
    be read."""
    try:
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientSex", "PatientBirthDate"],
                             force=True)
        sex, born = (str(ds.get(tag) or "").strip(" \x00").upper() for tag in ("PatientSex", "PatientBirthDate"))
    except Exception as err:  # noqa: BLE001 -- an unreadable header tells nothing: decoding reports the file
        raise_if_interrupted(err)
        return "", ""
    return (sex if sex in ("M", "F") else ""), re.sub(r"\D", "", born)


def one_patient(paths: Iterable[Path]) -> bool | None:
    """Whether the DICOM films `paths`, which share a PatientID, are one patient's by what else their headers say
    (`dicom_identity`): True when every one gives the same sex and birth date, False when two read give different
    ones (a site's or an anonymiser's fixed ID), None when one read gives no sex or birth date (the headers cannot
    tell: an anonymised set's thousands of films are not read on). Read up to the first film that decides."""
    seen: set[tuple[str, str]] = set()
    for path in paths:
        seen.add(identity := dicom_identity(path))
        if len({sex for sex, _ in seen if sex}) > 1 or len({born for _, born in seen if born}) > 1:
            return False
        if not all(identity):
            return None
    return True if len(seen) == 1 else None


def own_file_key(path: str | Path, folders: int) -> str:
    """The key of a DICOM file whose header names no patient (no, an empty or a placeholder PatientID): its file
    name's (`patient_id`), unless that key is found in `folders` > 1 folders, as an export names its films
    `IM000001` (or `IM-0001-0001`) in every series folder: then `IM000001 in <its folder>`, so the name does not
    make one patient of unrelated films. The name comes first so that moving the data does not reorder the keys."""
    key = patient_id(path)
    return key if folders <= 1 else f"{key} in {Path(path).parent}"


def folder_key(sample: Sample) -> str | None:
    """The folders between the image's class folder (the nearest one named as its label) and the image:
    `train/NORMAL/ward3/pt7/a.dcm` -> `ward3/pt7`; for an image under no such folder (a manifest's row),
    its folder; None for an image right in its class folder (no patient folder)."""
    path = Path(sample.path)
    parents = path.parent.parts
    for depth in range(len(parents) - 1, -1, -1):
        if parents[depth].upper() == CLASS_NAMES[sample.label]:
            below = parents[depth + 1:]
            return "/".join(below) if below else None
    return str(path.parent)


def no_folder_message(loose: list[Sample]) -> str:
    """The error of `--patient-key folder` on images right in their class folder: the first, how many others, and
    how to file them."""
    path = Path(loose[0].path)
    others = (f" (nor have {len(loose) - 1} other files headed as images, those after the first counted by their "
              f"first bytes; `pneumoscan audit` with --patient-key folder lists those that read)" if len(loose) > 1
              else "")
    return (f"{path}: {option('patient_key', 'folder')} reads the patient from the folder between the class folder "
            f"and the image, and this image has none{others}; put each patient's images in a folder of their own "
            f"({path.parent.name}/<patient>/{path.name}), or use {option('patient_key', 'auto')}")


@dataclass(frozen=True)
class PatientKeys:
    """The patient key of each sample, the `--patient-key` choice they follow, where each key came from (one
    of `SOURCES`) and the DICOM files whose header names no patient (keyed by `own_file_key`; `auto` only);
    `headers`: what was read from each sample's DICOM header (`dicom_patient_id`), for keying them again unread."""

    choice: str
    keys: dict[Sample, str]
    origins: dict[Sample, str]
    unnamed: frozenset[Sample] = frozenset()
    headers: Mapping[Sample, str | None] = field(default_factory=dict, compare=False, repr=False)
    siblings: frozenset[Sample] = frozenset()  # keyed by their file name's other films' PatientID (`sibling_ids`)

    def __call__(self, sample: Sample) -> str:
        return self.keys[sample]

    @property
    def sources(self) -> dict[str, int]:
        """How many keys came from each source, in `SOURCES` order (sources of none left out)."""
        return self.sources_of(self.origins)

    def sources_of(self, samples: Iterable[Sample]) -> dict[str, int]:
        """`sources` counted over `samples` only (e.g. the films the audit could read)."""
        counts = Counter(self.origins[sample] for sample in dict.fromkeys(samples))
        return {source: counts[source] for source in SOURCES if counts[source]}

    @property
    def effective(self) -> str:
        """The choice, or `name` when `auto` read every key from the file name as `name` does (not `file`): the two
        then make the same split (Kermany's data), so a run of either compares equal to a run of the other."""
        return "name" if self.choice == "auto" and set(self.sources) <= {"name"} else self.choice

    def shown(self, sample: Sample) -> str:
        """How a message names the sample's patient: the key, or for a DICOM PatientID (patient data, never printed)
        the file it is read from (for a film keyed by its name's other films', `siblings`, one of those)."""
        if self.origins[sample] != "dicom":
            return self.keys[sample]
        if sample in self.siblings:  # its own file holds no PatientID to be found
            sample = next(s for s, key in self.keys.items() if key == self.keys[sample] and self.origins[s] == "dicom"
                          and s not in self.siblings)
        return f"PatientID of {sample.path}"

    def record(self, among: Iterable[Sample] | None = None) -> dict[str, object]:
        """What split.json and the audit's JSON say about the keys (how they were read, never the keys), counted
        over `among` (default: every sample); `dicom_without_patient_id`, when there are any, counts the DICOM files
        whose header names no patient, which earlier key rules keyed otherwise; `keyed_by_sibling_patient_id`, when
        there are any, the films keyed by their file name's other films' PatientID (`sibling_ids`, counted among
        `dicom`), which rules before 7 keyed by file name."""
        counted = self.keys if among is None else dict.fromkeys(among)
        unnamed = sum(sample in self.unnamed for sample in counted)
        siblings = sum(sample in self.siblings for sample in counted)
        return {"patient_key": self.choice,
                "patient_keys_from": self.sources if among is None else self.sources_of(among),
                "patient_key_rule": KEY_RULE, **({"dicom_without_patient_id": unnamed} if unnamed else {}),
                **({"keyed_by_sibling_patient_id": siblings} if siblings else {})}


# `train` warns of file-name keys across folders when their images are this share of those keyed by file name
NAME_COLLISION_SHARE = 0.25


def patient_groups(samples: Sequence[Sample], keys: PatientKeys,
                   joined: dict[str, list[Sample]] | None = None) -> list[str | None]:
    """Each film's patient key for the bootstrap to draw a patient's films together; None (of no known patient, drawn
    alone) for a bare file name found in several folders (`joined`: `keys_across_folders(samples, keys, bare=True)`,
    found here when not given), which joins films that need not be one patient's."""
    joined = keys_across_folders(samples, keys, bare=True) if joined is None else joined
    return [None if keys.origins[s] == "name" and keys(s) in joined else str(keys(s)) for s in samples]


def keys_across_folders(samples: Iterable[Sample], keys: PatientKeys, bare: bool = False) -> dict[str, list[Sample]]:
    """The file-name keys (origin `name`) among `samples` whose images lie in more than one folder, each with its
    images (`pt7/1.jpeg` and `pt8/1.jpeg` made one patient `1`). Pass one split: Kermany's numbers restart in each,
    and within one its names are unique per patient, so its own data gives none unless a patient's films sit in
    subfolders. `bare`: only keys that are bare file names, leaving out those all of whose images have Kermany's
    names (`is_kermany_name`), which name a patient wherever the films sit."""
    by_key: dict[str, list[Sample]] = defaultdict(list)
    for sample in dict.fromkeys(samples):
        if keys.origins[sample] == "name":
            by_key[keys(sample)].append(sample)
    return {key: group for key, group in by_key.items() if len({Path(s.path).parent for s in group}) > 1 and
            not (bare and all(is_kermany_name(s.path) for s in group))}


def across_folders_advice() -> str:
    """What to do when file-name keys join films of different folders that are not one patient."""
    return (f"if they are not one patient, key them otherwise: each patient's films in a folder of their own and "
            f"{option('patient_key', 'folder')}, or a CSV manifest with a patient column")


# what `train` does with file-name keys joining folders (`name_collision_warning`)
SPLIT_KEEPS = ("the patient split keeps them together as one patient", "the patient split keeps each key together as "
               "one patient")


def name_collision_warning(samples: Sequence[Sample], keys: PatientKeys,
                           done: tuple[str, str] = SPLIT_KEEPS, advice: str | None = None,
                           joined: dict[str, list[Sample]] | None = None) -> str | None:
    """`train`'s warning when file-name keys joining folders (`keys_across_folders`, over `samples`: one split; or
    `joined`, when given, as the caller found them) hold NAME_COLLISION_SHARE or more of the images keyed by file
    name, as an export naming each patient's films `1.jpeg`, `2.jpeg` makes; None otherwise. `done`: what the command
    does with them, for one key and for several (`SPLIT_KEEPS`: train's); `advice`: what to do instead of
    `across_folders_advice`."""
    named = sum(keys.origins[s] == "name" for s in dict.fromkeys(samples))
    joined = keys_across_folders(samples, keys) if joined is None else joined
    images = sum(len(group) for group in joined.values())
    if not joined or images < NAME_COLLISION_SHARE * named:
        return None
    key, group = max(joined.items(), key=lambda item: (len(item[1]), item[0]))
    largest = f"{key!r}, joins {len(group)} images in {len({Path(s.path).parent for s in group})} folders"
    counts = f"{images} of the {counted(named, 'image')} keyed by file name"
    if len(joined) == 1:
        return (f"1 patient key read from file names, {largest} ({counts}; e.g. {group[0].path}), and {done[0]}; "
                f"{advice or across_folders_advice()}")
    return (f"{len(joined)} patient keys read from file names join images in different folders ({counts}; the "
            f"largest, {largest}, e.g. {group[0].path}), and {done[1]}; {advice or across_folders_advice()}")


def recorded_patient_key(record: dict) -> str:
    """The effective key choice of a split.json or pretraining record (`PatientKeys.effective`); one written
    before `--patient-key` existed split by file name."""
    choice = record.get("patient_key", "name")
    sources = record.get("patient_keys_from")
    if choice == "auto" and isinstance(sources, dict) and set(k for k, n in sources.items() if n) <= {"name"}:
        return "name"
    return choice


SOURCE_NAMES = {"manifest": "manifest patient column", "dicom": "DICOM PatientID", "folder": "folder",
                "name": "file name", "file": "folder and file name"}


def keys_read(record: dict) -> str:
    """How a split.json or audit record read its patients, for people: '--patient-key auto (102 by DICOM PatientID,
    18 by file name)'; a split made before `--patient-key` read file names."""
    if "patient_key" not in record:
        return "file names (a split made before --patient-key)"
    read = ", ".join(f"{n} by {SOURCE_NAMES.get(k, k)}" for k, n in (record.get("patient_keys_from") or {}).items())
    return f"--patient-key {record['patient_key']} ({read or 'no images'})"


def is_placeholder(value: str) -> bool:
    """A PatientID that says nothing about the patient: ANONYMOUS, UNKNOWN, 0, 000000, ..."""
    return value.strip().lower() in PLACEHOLDER_IDS or not value.strip("0 ")


def placeholder_ids(ids: list[str]) -> set[str]:
    """The values among the DICOM PatientIDs `ids` (one per image) that stand for no patient: a known placeholder
    on two or more images, and a value on more than half of them (and on PLACEHOLDER_MIN_IMAGES or more)."""
    counts = Counter(ids)
    found = {value for value, n in counts.items() if n >= 2 and is_placeholder(value)}
    if counts:
        value, n = counts.most_common(1)[0]
        if n >= PLACEHOLDER_MIN_IMAGES and n > len(ids) / 2:
            found.add(value)
    return found


def judged_placeholders(ids: Mapping[Sample, str]) -> set[str]:
    """`placeholder_ids` of the DICOM PatientIDs `ids` (each film's), but a value it takes for one by being on most of
    the films (not a known placeholder) whose films' headers all give one sex and birth date (`one_patient`): it may
    be one patient holding most of them, so `compared_keys` counts its films in two splits as a patient in both (an
    over-count is the safe side of a leak count; its films in one split alone stay keyed by file name). Not for `train`'s keys: an anonymiser's fixed ID, sex and birth date
    look the same, and keying its films as one patient while their siblings without a PatientID are keyed by file
    name puts each real patient on both sides of the split."""
    found = placeholder_ids(list(ids.values()))
    return {value for value in found if is_placeholder(value) or
            not one_patient(Path(s.path) for s, v in ids.items() if v == value)}


def _warn_placeholders(placeholders: set[str], counts: Counter, total: int) -> None:
    """One warning line naming the placeholder PatientIDs, what is read instead, and the ways out. `total` counts
    the DICOM files whose header gives a PatientID, read before (and whether or not) their pixels decode, so it can
    exceed the readable films other counts give: the line says so."""
    ordered = sorted(placeholders, key=lambda value: (-counts[value], value))
    shown = (repr(ordered[0]) if len(ordered) == 1 else
             " and ".join(f"{value!r} ({counts[value]})" for value in ordered))
    warn(f"PatientID {shown} on {sum(counts[v] for v in ordered)} of the {total} DICOM files with a "
         f"PatientID in their header (readable films or not): taken for {'placeholders' if len(ordered) > 1 else 'a placeholder'}, not a patient, so "
         f"each of those images is keyed by its file name instead (and its folder, where the name is in other "
         f"folders too); "
         f"to keep each patient's images together, list them in a CSV manifest with a "
         f"patient column, or put them in one folder per patient and use {option('patient_key', 'folder')}")


def readable_film(path: Path) -> bool:
    """Whether `path` decodes as an image (at a draft's size, as cheaply as it may): one that does not (empty,
    truncated, an error page saved as .jpeg) is no film, which training skips and the audit counts unreadable
    whatever its folder, rather than an image with no patient folder."""
    from pneumoscan.data.decode import read_grayscale

    try:
        read_grayscale(path, draft_size=1)
    except (InputError, OSError):
        return False
    return True


def _head(path: str | Path) -> bytes:
    """`path`'s first 132 bytes (enough for `is_image_head` and `is_dicom`), b"" when it cannot be read."""
    try:
        with Path(path).open("rb") as handle:
            return handle.read(132)
    except OSError:
        return b""


def _image_head(path: Path) -> bool:
    """Whether `path`'s first bytes are an image format's (`is_image_head`), read without decoding it."""
    return is_image_head(_head(path))


def _readable_loose(loose: list[Sample]) -> list[Sample]:
    """The films among `loose` to refuse: from the first that decodes (`readable_film`; none: nothing to refuse),
    the others after it told by their first bytes alone, as decoding them all (each at full size for a PNG) only to
    count them in a one-line error took minutes on large films."""
    first = next((i for i, s in enumerate(loose) if readable_film(Path(s.path))), None)
    if first is None:
        return []
    return [loose[first], *(s for s in loose[first + 1:] if _image_head(Path(s.path)))]


def _folder_keys(samples: list[Sample], refused: Iterable[Sample]) -> PatientKeys:
    """`--patient-key folder`'s keys; an image right in its class folder is an InputError (`no_folder_message`) when
    among `refused` and readable (an unreadable file is none: skipped, as the other keys skip it), else its own patient
    by file name (`patient_id`, origin `name`)."""
    keys = {s: folder_key(s) for s in samples}
    if loose := _readable_loose([s for s in dict.fromkeys(refused) if keys[s] is None]):
        raise InputError(no_folder_message(loose))
    return PatientKeys("folder", {s: key if key is not None else patient_id(s.path) for s, key in keys.items()},
                       {s: "folder" if key is not None else "name" for s, key in keys.items()})


def patient_keys(samples: Iterable[Sample], choice: str = "auto", refused: Iterable[Sample] | None = None,
                 progress: bool = True, known: Mapping[Sample, str | None] | None = None,
                 parts: Mapping[Sample, str] | None = None) -> PatientKeys:
    """The patient key of each of `samples` by `choice` (one of PATIENT_KEYS). With `auto`, the DICOM headers of
    the samples without a manifest patient are read (about 0.8 ms a DICOM file: seconds for thousands, counted by a
    'patient IDs' bar when `progress`, as `progress_bar` shows bars), and placeholder PatientIDs among them
    (`placeholder_ids`, judged over these samples: pass the whole data set) give way, with one warning, to
    `own_file_key` (whose folders are counted over the DICOM files without a usable PatientID), as an empty or
    missing PatientID does. With `folder`, an image right in its class folder is an InputError counting them all
    when among `refused` (None: all of `samples`), else keyed by its file name. `known`: headers read already
    (`PatientKeys.headers`), not read again; `parts`: each sample's split, within which `sibling_ids` joins films."""
    if choice not in PATIENT_KEYS:
        raise InputError(f"{option('patient_key', choice)}: must be one of {', '.join(PATIENT_KEYS)}")
    samples = list(dict.fromkeys(samples))
    if choice == "folder":
        return _folder_keys(samples, samples if refused is None else refused)
    keys: dict[Sample, str] = {}
    origins: dict[Sample, str] = {}
    dicom: dict[Sample, str] = {}
    headers: dict[Sample, str | None] = {}
    if choice == "auto":
        for sample in samples:
            if sample.patient is not None:
                keys[sample], origins[sample] = sample.patient, "manifest"
        headers = read_headers([s for s in samples if s not in keys], known or {}, progress)
        dicom.update((s, value) for s in samples if (value := headers.get(s)) is not None)  # in the samples' order
    named = [value for value in dicom.values() if value]
    placeholders = placeholder_ids(named)
    if placeholders:
        _warn_placeholders(placeholders, Counter(named), len(named))
    for sample in samples:
        if sample not in keys and (value := dicom.get(sample)) and value not in placeholders:
            keys[sample], origins[sample] = value, "dicom"
    # the folders of each file-name key of the DICOM files without a usable PatientID: an export's own names, not a
    # JPEG of the same patient in another folder (IM-0001-0002.jpeg beside a/IM-0001-0001.dcm: one patient)
    folders: dict[str, set[Path]] = defaultdict(set)
    for sample in samples:
        if sample not in keys and sample in dicom:
            folders[patient_id(sample.path)].add(Path(sample.path).parent)
    for sample in samples:
        if sample in keys:
            continue
        # a DICOM file without a usable PatientID is not one patient with all of its export's IM000001
        n = len(folders[patient_id(sample.path)]) if sample in dicom else 1
        keys[sample], origins[sample] = own_file_key(sample.path, n), "file" if n > 1 else "name"
    siblings = sibling_ids(samples, keys, origins, parts)
    keys.update(siblings)
    origins.update(dict.fromkeys(siblings, "dicom"))
    return PatientKeys(choice, keys, origins, frozenset(s for s in dicom if origins[s] in FILE_KEYS),
                       headers, frozenset(siblings))


def split_folder(sample: Sample) -> Path:
    """The split a film is in when none is given: the folder above its class folder (`DATA/train` for
    `DATA/train/PNEUMONIA/x/person7_bacteria_1.dcm`; its folder when under no class folder)."""
    path = Path(sample.path)
    parents = path.parent.parts
    depth = next((d for d in range(len(parents) - 1, -1, -1) if parents[d].upper() == CLASS_NAMES[sample.label]), None)
    return path.parent if depth is None else Path(*parents[:depth]) if depth else Path()


def sibling_ids(samples: Iterable[Sample], keys: Mapping[Sample, str], origins: Mapping[Sample, str],
                parts: Mapping[Sample, str] | None = None) -> dict[Sample, str]:
    """The films keyed by their file name (origin `name`: no usable PatientID, a JPEG's or a DICOM's; `person7.jpeg`
    as `person7_bacteria_2.jpeg`) whose name's other films in their split (`parts`: each film's; by default
    `split_folder`) carry a usable PatientID, each with that PatientID (patient_key_rule 7; only a Kermany-named
    DICOM film's PatientID names its name's patient): `person7_bacteria_1.dcm` of PatientID MRN7 and
    `person7_bacteria_2.jpeg` are one patient, which rule 5 split apart (MRN7 and `person7` on both sides of the
    split), in one folder or in sibling folders (`dicom/` and `jpeg/`). Only where the name and the PatientID name
    each other alone: a name whose films carry two PatientIDs, or a PatientID on films of two names (a site's or an
    anonymiser's fixed value on a few films, not a placeholder by count), joins nothing, so no chain of shared IDs
    and names makes one patient of many. A name one of whose file names is found on files that differ in two
    folders of the split (an export naming every patient's films IM-0001-0001 in a folder of its own, which
    `name_collision_warning` tells of; not a copy of one film in a backup folder) names no one patient, nor does a
    folder (a day's folder holding several patients' films so named): it joins nothing, so each name's films keep one
    key, rule 5's or a PatientID, and no patient is split more than rule 5 split it. Nor does a name keying films of
    another split (`person7_bacteria_3.jpeg` in val/): its films keep the key that tells `audit` of a patient in both
    splits. A PatientID on films of another split (a patient in both, which `audit` reports; a manifest's rows of
    every split may share one folder) does not change how this split's films are keyed."""
    samples = list(samples)
    if not any(origins[s] == "dicom" for s in samples):  # nothing to join (Kermany's data: 0.2 s saved)
        return {}
    # the DICOM films of a Kermany name, and every film keyed by a name (`person7.jpeg` is rule 5's `person7` too)
    kermany = {s: (parts or {}).get(s, str(split_folder(s))) for s in samples
               if is_kermany_name(s.path) or origins[s] == "name"}
    named = {s: (part, patient_id(s.path)) for s, part in kermany.items() if origins[s] in ("dicom", "name")}
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)  # a split's name: its films' PatientIDs
    names: dict[tuple[str, str], set[str]] = defaultdict(set)  # a split's PatientID: its films' names
    for sample, (part, name) in named.items():
        if origins[sample] == "dicom":
            ids[part, name].add(keys[sample])
            names[part, keys[sample]].add(name)
    # the files of each file name of a name that may join (one with a PatientID in its split): no other is read
    copies: dict[tuple[str, str], list[str]] = defaultdict(list)
    for sample, part in kermany.items():
        if (part, patient_id(sample.path)) in ids:
            copies[part, Path(sample.path).name.lower()].append(str(sample.path))
    # a file name whose files differ (copies of one film in a backup folder are one film)
    repeated = {found: paths for found, paths in copies.items() if len(paths) > 1}
    copied = _copied(repeated)
    reused = {(part, patient_id(name)) for part, name in repeated if (part, name) not in copied}
    # a name keying films of two splits (rule 5's key of a patient in both, which `audit` reports) keeps that key
    splits: dict[str, set[str]] = defaultdict(set)
    for sample, (part, name) in named.items():
        if origins[sample] == "name":
            splits[name].add(part)
    scope = {s: found for s, found in named.items() if found not in reused and len(splits[found[1]]) == 1}
    joined: dict[Sample, str] = {}
    for sample, (part, name) in scope.items():
        if origins[sample] == "name" and len(found := ids.get((part, name), set())) == 1 and \
                names[part, value := next(iter(found))] == {name}:
            joined[sample] = value
    return joined


def _copied(files: Mapping[K, Sequence[str]]) -> set[K]:
    """The keys of `files` whose files hold the same bytes, told by their sizes and first 64 kB before any is read
    whole (an export's films of one name differ there: a few reads, not gigabytes of DICOM films); the files alike so
    far are hashed together (5,000 names of two copies: 2 s, not 6 s hashed name by name)."""
    alike = [key for key, paths in files.items() if _alike(paths)]
    every = [path for key in alike for path in files[key]]
    hashes = dict(zip(every, fingerprints(every))) if every else {}
    return {key for key in alike if len({hashes[path] for path in files[key]}) == 1}


def _alike(paths: Sequence[str]) -> bool:
    """Whether the files at `paths` are of one size and begin with the same 64 kB."""
    try:
        if len({os.path.getsize(path) for path in paths}) > 1:
            return False
        first = _start(paths[0])
        if any(_start(path) != first for path in paths[1:]):  # stops at the first that differs, holding one
            return False
    except OSError:
        return False
    return True


def _start(path: str) -> bytes:
    """The first 64 kB of the file at `path`."""
    with open(path, "rb") as handle:
        return handle.read(65536)


def read_headers(samples: Iterable[Sample], known: Mapping[Sample, str | None],
                 progress: bool = True) -> dict[Sample, str | None]:
    """The DICOM header's PatientID of each of `samples` (`dicom_patient_id`): `known`'s when there, else read, counted by
    a 'patient IDs' bar when `progress`."""
    headers = {s: known[s] for s in samples if s in known}
    unread = [sample for sample in samples if sample not in headers]
    for sample in progress_bar(unread, desc="patient IDs", unit="img", progress=progress):
        headers[sample] = dicom_patient_id(Path(sample.path))
    return headers


def listed_unopened(choice: str) -> tuple[str, ...]:
    """The splits whose files `train` lists by their names alone, none opened (`discover`'s `unopened`), keying by
    `choice`: REPORTING_SPLITS, but with `auto`, which reads the header of those that may be DICOM by name
    (`unopened_headers`), none; `name` and `folder` read a film's key from its path."""
    return () if choice == "auto" else REPORTING_SPLITS


def unopened_headers(splits: Mapping[str, Iterable[Sample]]) -> dict[Sample, None]:
    """The films of `splits`' REPORTING_SPLITS whose names say they are no DICOM file (a JPEG's, a PNG's extension),
    as `patient_keys` takes headers read already: none, so they are keyed by name unopened, by `train`, `audit` and
    `evaluate` alike (patient_key_rule 5). Those that may be DICOM by name are still read, header only: only they can
    change a key of train/ and val/ (placeholder PatientIDs and a name's folders are judged over every split)."""
    return {s: None for split in REPORTING_SPLITS for s in splits.get(split, []) if not may_be_dicom(s.path)}


def _warn_unopened_placeholders(values: set[str], keys: PatientKeys, read: Mapping[Sample, str],
                                ids: Mapping[Sample, str]) -> None:
    """One warning line for each PatientID `compared_keys` takes for a placeholder among the films `train` keys unopened
    (`read`: what their headers gave) that `train`'s own warning did not name (`ids`: every film's PatientID read,
    those films' too): how many films hold it on each side, that `train` keys its films of the other splits by it as
    one patient (it never read these), and that a patient's ID so judged hides a patient in two splits (counts cannot
    tell a site's ID on most films from one patient's) unless their headers give different sexes or birth dates
    (`one_patient`), or give one but no film of another split holds it (`compared_keys`)."""
    counts = Counter(ids.values())
    for value in sorted(values, key=lambda v: (-counts[v], v)):
        unopened = sum(v == value for v in read.values())
        kept = sum(keys.origins[s] == "dicom" and keys(s) == value for s in keys.keys)
        others = (f"; train, which reads {counted(kept, 'other film')} holding it, keys them as one patient"
                  if kept > 1 else "")
        warn(f"PatientID {value!r} on {counts[value]} of the {len(ids)} DICOM files with a PatientID in their header, "
             f"{unopened} of them in test/ named for another image format (which train keys by name unopened): "
             f"taken for a placeholder, not a patient, so {'that film is' if unopened == 1 else 'those films are'} "
             f"keyed by file name, as train keys {'it' if unopened == 1 else 'them'}, matching no film of another "
             f"split{others}"
             + ("" if is_placeholder(value) else {
                 False: "; their headers give different sexes or birth dates, so it is no one patient's",
                 True: "; their headers give one sex and birth date, but no film of another split holds it, so it "
                       "names no patient in two splits",
                 None: "; if it is one patient's ID, that patient's films in test/ and in the other splits are not "
                       "counted as one patient in two splits (their headers give no sex and birth date to tell): list "
                       "them in a CSV manifest with a patient column"}[
                    one_patient(Path(s.path) for s, v in ids.items() if v == value)]))


def compared_keys(keys: PatientKeys, unopened: Iterable[Sample]) -> PatientKeys:
    """`keys` for finding a patient on both sides of a split (`audit`'s leak count, `evaluate`'s shared patients):
    each of `unopened` (test/ films keyed by name unopened, `unopened_headers`) whose header, read here, gives a
    DICOM PatientID that is no placeholder (`is_placeholder`, nor one by `placeholder_ids` over the headers `keys`
    read together with those read here, as every header was judged before patient_key_rule 5, unless only these
    make it one and the headers of its films give one sex and birth date, `one_patient`, and a film outside them is keyed
    by it: only a patient in two splits is found so, never test/ made one patient in its own counts and clusters) is
    keyed by it, as `audit` and `evaluate` read such a film anyway; every other film keeps its key, the one `train`
    gives. A value taken for a
    placeholder only with these films is named in a warning (`_warn_unopened_placeholders`)."""
    if keys.choice != "auto":
        return keys
    read = {s: value for s in dict.fromkeys(unopened) if keys.origins.get(s) == "name" and
            (value := dicom_patient_id(Path(s.path)))}
    ids = {s: value for s, value in {**keys.headers, **read}.items() if value}
    placeholders = judged_placeholders(ids)
    # a value `judged_placeholders` keeps for one patient's only by its films' one sex and birth date keys them only
    # to match a film of another split keyed by it: alone it would make test/ one patient in its own counts
    doubtful = placeholder_ids(list(ids.values())) - placeholders
    matched = {value for s, value in keys.keys.items() if keys.origins[s] == "dicom"}
    usable = {s: value for s, value in read.items() if value not in placeholders and not is_placeholder(value) and
              (value not in doubtful or value in matched)}
    trained = placeholder_ids([value for value in keys.headers.values() if value])  # named by train's warning
    if unnamed := {value for value in read.values() if value not in usable.values() and value not in trained}:
        _warn_unopened_placeholders(unnamed, keys, read, ids)
    if not usable:
        return keys
    return replace(keys, keys={**keys.keys, **usable}, origins={**keys.origins, **dict.fromkeys(usable, "dicom")})


def dataset_keys(splits: dict[str, list[Sample]], choice: str = "auto", used: Sequence[Sample] | None = None,
                 progress: bool = True, known: Mapping[Sample, str | None] | None = None,
                 aside: Iterable[Sample] = ()) -> PatientKeys:
    """The patient keys of a data set's images by split (as `discover` finds them), keyed over every split together:
    placeholder PatientIDs and the folders of a file name's key are judged over the whole data set, so `train` (which
    uses train/ and val/) and `audit` (every split) key each film alike. With `folder`, an image right in its class
    folder is an InputError among `used` only (None: none is, as the audit lists them); elsewhere it is keyed by its
    file name. `known`: DICOM headers read already (`PatientKeys.headers`); test/'s files named for another image
    format are taken for none (`unopened_headers`), whatever `known` says. `aside`: films whose keys nothing compares
    (test/'s when `evaluate` scores another split): taken for none, unopened, unless their headers may change another
    film's key (`headers_matter`)."""
    samples = [s for films in splits.values() for s in films]
    known = {**(known or {}), **unopened_headers(splits)}
    if (aside := set(aside)) and not headers_matter(s for s in samples if s not in aside):
        known.update(dict.fromkeys(aside, None))
    return patient_keys(samples, choice, used or (), progress=progress, known=known,
                        parts={s: split for split, films in splits.items() for s in films})


def headers_matter(films: Iterable[Sample]) -> bool:
    """Whether other films' DICOM headers may change the `auto` key of one of `films`: only when one of them names no
    patient in a manifest and may be a DICOM file by its name (`may_be_dicom`) or is one by its first bytes (a DICOM
    film named .jpeg, whose header `train` reads outside test/), as only the key of a DICOM film is judged over every
    split (its PatientID's count for a placeholder, its name's folders without one). When not, test/
    (REPORTING_SPLITS) need not be opened for keys when another split is scored."""
    unnamed = [s for s in films if s.patient is None]
    return any(may_be_dicom(s.path) for s in unnamed) or any(is_dicom(_head(s.path)) for s in unnamed)


def found_as_keyed(find: Callable[[tuple[str, ...]], Any], choice: str, scored: Iterable[Sample] = ()) -> Any:
    """`find(unopened)`: a data set's splits (`discover`'s) or a `ScoredSplit` (`evaluation_samples`'), for keying by
    `choice` where the films of REPORTING_SPLITS are compared with none (but those of a ScoredSplit's scored split):
    found with them listed by their names, none opened, unless `auto`'s keys of the other films (and of `scored`,
    films keyed with them) may depend on their headers (`headers_matter`): then found opened, as `train` found them."""
    found = find(REPORTING_SPLITS)
    splits = getattr(found, "splits", found)  # a ScoredSplit's every split
    if listed_unopened(choice) or (splits is not found and found[0] in REPORTING_SPLITS) or not headers_matter(
            [*scored, *(s for name, films in splits.items() if name not in REPORTING_SPLITS for s in films)]):
        return found
    return find(listed_unopened(choice))


def describe(choice: str) -> str:
    """Where `choice` reads the patient, for messages: 'the patient is ...'."""
    name = "read from the file name (IM-<number>-..., person<number>_..., else the whole name)"
    return {"auto": f"the patient is a manifest's patient column, else the DICOM PatientID, else {name}",
            "name": f"the patient is {name}",
            "folder": "the patient is the folder between the class folder and the image"}[choice]


class TrainingFilms(NamedTuple):
    """The films training read (`_training_films`), or why there are none."""

    films: list[Sample] | None
    why: str | None  # None without films: the data is not found, or none is recorded
    splits: Mapping[str, list[Sample]] | None = None  # with films: every split of the data, which `train` keyed over
    unopened: frozenset[Path] = frozenset()  # of `every`, those `train` keyed unopened (`unopened_headers`), resolved
    reporting: frozenset[Path] = frozenset()  # of `every`, those of REPORTING_SPLITS, resolved

    @property
    def every(self) -> list[Sample]:
        """The films of every split (`splits`)."""
        return [sample for films in (self.splits or {}).values() for sample in films]


def _training_films(config: dict, run_dir: str | Path | None, scored: Sequence[Sample] = ()) -> TrainingFilms:
    """The films a run's settings (`config`, placed from `run_dir` as `data_record` gives them) name as found now:
    its train split, or its only one, and its val/ split with --use-given-val (and the films of all its splits), but
    those in a format not read, which training set aside (`set_aside_unread`); or,
    without them, why, when its data folder is found but cannot be read as a data set or holds no train/ split. Its
    test/ is found opened only when its headers may change a key of the other films or of `scored` (`found_as_keyed`)."""
    import warnings

    from pneumoscan.data.formats import set_aside_unread
    from pneumoscan.data.layout import discover
    from pneumoscan.training.config import trained_patient_key, training_data_folder

    folder = training_data_folder(config, run_dir)
    if folder is None:
        return TrainingFilms(None, None)
    with warnings.catch_warnings():  # the folder's own warnings were given when it was trained on
        warnings.simplefilter("ignore")
        try:
            found = set_aside_unread(found_as_keyed(lambda unopened: discover(folder, unopened),
                                                    trained_patient_key(config), scored),
                                     REPORTING_SPLITS)[0]  # as training did: files it read no
            # patient from, and test/ whole
        except InputError as err:  # what is wrong, without the advice on how to arrange a data set
            why = str(err).split("; ")[0].removeprefix(f"{folder}: ")
            return TrainingFilms(None, f"{folder}, which the model was trained on, is found but cannot be read as "
                                       f"training data ({why})")
    split = "train" if "train" in found else "all" if "all" in found else None
    if split is None:
        return TrainingFilms(None, f"{folder}, which the model was trained on, is found but holds no train/ split "
                                   f"now (its splits: {', '.join(found) or 'none'})")
    return TrainingFilms(found[split] + (found.get("val", []) if config.get("use_given_val") else []), None, found,
                         frozenset(Path(s.path).resolve() for s in unopened_headers(found)),
                         frozenset(Path(s.path).resolve() for split in REPORTING_SPLITS for s in found.get(split, [])))


def in_training_data(samples: Sequence[Sample], training: dict,
                     run_dir: str | Path | None = None) -> tuple[list[Sample], dict[str, list[Sample]]] | None:
    """`samples` (a run's validation films) as found in the data the model was trained on (`_training_films`: by
    resolved path, with what a manifest says of them), and every split of that data, which `train` and `audit` key
    them over (`dataset_keys`: keyed alone, a name's films in another split are not seen, `sibling_ids`); None when
    that data is not found or does not hold every one of them (`run_dir`: the model file's folder)."""
    from pneumoscan.training.config import data_record

    config, placed = data_record(training, run_dir)
    found = _training_films(config, placed, samples) if config.get("data") else TrainingFilms(None, None)
    if found.films is None or not found.splits:
        return None
    where = {Path(s.path).resolve(): s for s in found.every}
    films = [where.get(Path(s.path).resolve()) for s in samples]
    return None if None in films else (films, dict(found.splits))  # type: ignore[return-value]


class InTraining(NamedTuple):
    """`patients_in_training`'s count, and the keys it compared (`compared_keys`, of the scored films with the training
    films; None when it read none), which `evaluate`'s bootstrap takes on rather than reading the films' DICOM headers
    again, so that it draws together the films the count (and `audit`) takes for one patient's."""

    shared: dict[str, object] | None
    keys: PatientKeys | None


def patients_in_training(samples: Sequence[Sample], training: dict, progress: bool = True,
                         run_dir: str | Path | None = None) -> InTraining:
    """The patients of `samples` who also have films in the data the model was trained on (`_training_films`,
    its films among `samples` aside): keyed by the run's --patient-key over both together, with every split of the
    training data, as `train` and `audit` key a data set's splits (`dataset_keys`), and counted only by keys a DICOM
    PatientID, a manifest's patient column or a folder gives (file names' keys restart in each split of Kermany's
    data). `{"patients", "films", "by", "compared"}` (`films`: of
    `samples`; `by`: where the shared keys came from; `compared`: the films of `samples` whose key could be compared,
    0 when all are keyed by file name, so 0 patients then says nothing), or None when the training data is not found
    (`run_dir`: the model file's folder, as `data_record` takes it); with the keys compared, when any were read."""
    import warnings

    from pneumoscan.training.config import data_record, trained_patient_key

    config = data_record(training)[0]
    if not config.get("data"):
        return InTraining(None, None)
    choice = trained_patient_key(config)
    # by file name nothing is compared: no scan
    found = (_training_films(*data_record(training, run_dir), samples) if choice != "name" else
             TrainingFilms([], None, {}))
    if found.films is None:
        return InTraining(None, None)
    scored = {Path(s.path).resolve() for s in samples}
    # keyed with every split of the training data, by split, as `train` and `audit` key it (`dataset_keys`)
    trained = [s for s in found.films if Path(s.path).resolve() not in scored]
    parts = {split: [s for s in films if Path(s.path).resolve() not in scored]
             for split, films in (found.splits or {}).items()}
    whole = [s for films in parts.values() for s in films]
    if choice == "name":
        return InTraining({"patients": 0, "films": 0, "by": [], "compared": 0}, None)
    with warnings.catch_warnings():  # a placeholder PatientID was warned about by train and audit
        warnings.simplefilter("ignore")
        unopened = {s: None for s in [*whole, *samples] if Path(s.path).resolve() in found.unopened}  # as `train`
        # the training data's test/ films (but those scored) are compared with none: their headers are read only
        # when they may change a compared film's key (`dataset_keys`)
        keys = dataset_keys({**parts, "scored": list(samples)}, choice, progress=progress,
                            known=unopened, aside=[s for s in whole if Path(s.path).resolve() in found.reporting])
    # a scored film keyed unopened is still compared by its PatientID, as the scoring reads it anyway
    shared = compared_keys(keys, [s for s in samples if s in unopened])
    named = {shared(s) for s in trained if shared.origins[s] not in FILE_KEYS}
    films = [s for s in samples if shared.origins[s] not in FILE_KEYS and shared(s) in named]
    by = [SOURCE_NAMES[source] for source in SOURCES if any(shared.origins[s] == source for s in films)]
    compared = sum(shared.origins[s] not in FILE_KEYS for s in samples)
    return InTraining({"patients": len({shared(s) for s in films}), "films": len(films), "by": by,
                       "compared": compared}, shared)


def shared_text(shared: dict | None, n: int, why: str | None) -> str:
    """A `patients_in_training` count of `n` films for people: '2 (5 of 40 films; by DICOM PatientID)', with how many
    films could be compared when some could not ('...; only 1 of the 40 films could be compared: ...'), or with a
    reason `why` (`uncounted_reason`) 'not counted (why)'."""
    if why or not shared:
        return f"not counted ({why or 'the data the model was trained on is not found'})"
    by = f"; by {' and '.join(shared['by'])}" if shared.get("by") else ""
    return f"{shared['patients']} ({shared['films']} of {n} films{by}{uncompared_text(shared, n)})"


def uncompared_text(shared: dict, n: int) -> str:
    """'; only 1 of the 26 films could be compared: ...' when `patients_in_training` (`shared`) could compare only some
    of the `n` films (the others keyed by file name, which names no patient across splits), else ''."""
    compared = shared.get("compared")
    if not isinstance(compared, int) or not 0 < compared < n:  # 0 is `uncounted_reason`'s; None: an older record
        return ""
    return (f"; only {compared} of the {n} films could be compared: the other {n - compared} are keyed by file name, "
            f"which names no patient across splits")


def shared_clause(shared: dict, n: int, of: str, its: bool) -> str:
    """The facts of a warning about `shared["patients"]` (> 0) patients of `n` films `of` a set ('the test split')
    who also have films in the training data (`patients_in_training`), in the singular for one: '2 patients of the test
    split (3 of its 5 films) also have films in the data this model was trained on, by DICOM PatientID: the same
    patients on both sides'; without `its`, '(3 of 5 films)'."""
    one = shared["patients"] == 1
    whose = "its " if its else ""
    films = (f"{'its' if its else 'the'} only film" if n == 1 else
             f"all {n} {'of its films' if its else 'films'}" if shared["films"] == n else
             f"{shared['films']} of {whose}{n} films")
    return (f"{counted(shared['patients'], 'patient')} of {of} ({films}) also {'has' if one else 'have'} films in "
            f"the data this model was trained on, by {' and '.join(shared['by'])}: the same "
            f"{'patient' if one else 'patients'} on both sides")


def uncounted_reason(shared: dict | None, training: dict | None = None,
                     run_dir: str | Path | None = None) -> str | None:
    """Why `patients_in_training` counted no patient (None when it counted): the films are keyed by file name, which names
    no patient across splits; the training data the model records (`training`, when at hand; `run_dir`: the model
    file's folder) is not found, is a relative path whose folder cannot be placed, or is found but unreadable or
    without a train/ split; or it records none."""
    from pneumoscan.training.config import data_places, data_record

    if shared is not None:
        return None if shared.get("compared", 1) else (
            "these films' patients are keyed by file name, which names no patient across splits; a DICOM PatientID, "
            "a manifest's patient column or --patient-key folder would")
    if training is None:
        return "the data the model was trained on is not found"
    config, run_dir = data_record(training, run_dir)
    if not config.get("data"):
        return "the model records no training data"
    places = data_places(config, run_dir)
    if not places and training.get("members"):  # an ensemble built before it placed its members' data
        return (f"the ensemble's members record their training data as {config['data']}, a path relative to the "
                f"folder training was started in, which cannot be told here; build the ensemble again with "
                f"`pneumoscan ensemble`, which records where it is")
    if not places:
        return (f"the model records its training data as {config['data']}, a path relative to the folder training "
                f"was started in, which cannot be told here: only a model file in its run folder (of a run given a "
                f"relative --out) tells it")
    return _training_films(config, run_dir).why or f"{places[0]}, which the model was trained on, is not found"
