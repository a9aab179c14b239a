"""Whether a run's train/validation split is still the one it was started with (for `--resume`), and what to say when
it is not: changed films, or a changed patient-key rule or rule of the files set aside before the split."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pneumoscan.data.formats import UNREAD_EXTENSIONS
from pneumoscan.data.patients import WITHDRAWN_RULES, recorded_patient_key
from pneumoscan.errors import counted, option

# a split.json `skipped` entry of a file named for a format not read whose refusal is not that format's: one holding no
# image, which `set_aside_unread` sets aside by `UNREAD_RULE` 2 only
_NO_IMAGE_BY_NAME = re.compile(
    "(?:" + "|".join(map(re.escape, UNREAD_EXTENSIONS)) + "): (?!.*images are not supported)", re.IGNORECASE)


def split_change(saved: dict[str, Any], now: dict[str, Any], run: str | Path = "the run", kind: str = "run") -> str:
    """How the split `now` differs from the saved split.json of `run`, as a message's clause ('holds other images
    than ...'); '' when it holds the same images (by count and validation file name, so data that has moved as a
    whole still matches). `kind` names what was started there: a run, or a pretraining."""
    def counts(record: dict[str, Any]) -> str:
        return "; ".join(f"{name} {c['NORMAL']} NORMAL, {c['PNEUMONIA']} PNEUMONIA"
                         + (f", {c['patients']} patients" if "patients" in c else "")
                         for name, c in record["counts"].items())

    # The same --patient-key is compared by the split it made (below): `patient_keys_from` once counted every image
    # found, so an old record's sources can differ from those of the images used even where the split is the same.
    if saved.get("patient_key", "name") != now.get("patient_key") and \
            recorded_patient_key(saved) != recorded_patient_key(now):
        return (f"reads patients by {option('patient_key', now.get('patient_key'))}, where the {kind} in {run} read them by "
                f"{saved.get('patient_key', 'name')}")
    keys = ""
    if saved.get("patient_keys_from", now.get("patient_keys_from")) != now.get("patient_keys_from"):
        keys = (f"; patient keys from {_sources(now.get('patient_keys_from'))}, where the {kind} read them from "
                f"{_sources(saved.get('patient_keys_from'))}")
    why = _split_why(saved, now, kind)
    if saved.get("counts") and saved["counts"] != now["counts"]:
        if _totals(saved) != _totals(now):
            return (f"holds other images than the {kind} in {run} was started with ({counts(now)}, where the "
                    f"{kind} had {counts(saved)})")
        return (f"splits its images otherwise than the {kind} in {run} was started with ({counts(now)}, where the "
                f"{kind} had {counts(saved)}{keys}): as many images of each class, so {why}")
    if "val_files" in saved and sorted(Path(f).name for f in saved["val_files"]) != \
            sorted(Path(f).name for f in now["val_files"]):
        return (f"splits its images otherwise than the {kind} in {run} was started with (other validation images "
                f"under the same counts{keys}): {why}")
    return ""


# the development code that recorded patient_key_rule 6 (WITHDRAWN_RULES), which kept a PatientID on most films as
# one patient when their headers gave one sex and birth date
WITHDRAWN_RULE_CODE = "3ad352f to 48cc5dd"


def _split_why(saved: dict[str, Any], now: dict[str, Any], kind: str) -> str:
    """Why the same images are split otherwise than the saved split: the saved one's key rule was withdrawn
    (`withdrawn_rule`), pneumoscan's key rule changed (surely, or maybe: `key_rule_change`, `key_rule_may_change`,
    `unopened_rule_may_change`, `placeholder_rule_may_change`, `sibling_rule_change`) or the rule of the files set
    aside before the split did (`unread_rule_change`), else the images or their patients did."""
    rule = now.get("patient_key_rule")
    if withdrawn_rule(saved, now):
        started = (f"development code of pneumoscan ({WITHDRAWN_RULE_CODE}) keying by {_rule(saved)}, which was "
                   f"withdrawn" if saved["patient_key_rule"] in WITHDRAWN_RULES else
                   f"a later version of pneumoscan keying by {_rule(saved)}, which this version does not have")
        return (f"the {kind} was started by {started}; this version keys by patient_key_rule {rule}: the same "
                f"patients under other keys split otherwise, so the images need not have changed")
    if joined := sibling_rule_change(saved, now):
        return (f"pneumoscan now keys {counted(joined, 'film')} without a usable PatientID by the PatientID of "
                f"{'its' if joined == 1 else 'their'} Kermany file name's other films (person7_bacteria_2.jpeg by "
                f"that of person7_bacteria_1.dcm; patient_key_rule {rule}, so that a patient's films with and without "
                f"a PatientID are not split apart), "
                f"{_by_an_earlier_version(kind, joined, 'keyed', 'by file name')}")
    if ruled := key_rule_change(saved, now):
        return (f"pneumoscan now keys {counted(ruled, 'DICOM film')} whose header names no patient and whose file "
                f"name is in other folders too by folder and name (patient_key_rule {rule}), "
                f"{_by_an_earlier_version(kind, ruled, 'keyed', 'otherwise')}")
    if aside := unread_rule_change(saved, now):
        return (f"the rule for files named for a format pneumoscan does not read ({', '.join(UNREAD_EXTENSIONS)}) "
                f"changed: pneumoscan now sets aside before the split {aside} such file{'s' if aside > 1 else ''} holding "
                f"no image (unread_rule {now['unread_rule']}; see split.json's skipped), "
                f"{_by_an_earlier_version(kind, aside, 'split', 'among the films')}")
    if unnamed := key_rule_may_change(saved, now):
        return (f"{unnamed} DICOM film{'s' if unnamed > 1 else ''} whose header names no patient "
                f"{'are' if unnamed > 1 else 'is'} keyed by file name (or folder and name) by patient_key_rule "
                f"{rule}, and the {kind} was started by an earlier version ({_rule(saved)}), which may have keyed "
                f"{'them' if unnamed > 1 else 'it'} otherwise: the same patients under other keys split otherwise, "
                f"so the key rule may have changed the split, not the images")
    if unopened_rule_may_change(saved, now):
        return (f"patient_key_rule {rule} keys a test/ file named for another image format (.jpeg, .png, ...) by its "
                f"name without opening it (test/ is for final reporting), and the {kind} was started by an earlier "
                f"version ({_rule(saved)}), which read it for a DICOM header: such a file holding a DICOM film, its "
                f"PatientID (a placeholder's count) or its folder may have keyed films of train/ otherwise, so the key "
                f"rule may have changed the split, not the images")
    if placeholder_rule_may_change(saved, now):
        return (f"patient_key_rule {rule} judges placeholder PatientIDs (one value on most DICOM films) over every "
                f"split of the data, test/ too, and the {kind} was started by an earlier version ({_rule(saved)}), "
                f"which judged them over train/ and val/ at most: a PatientID taken for a placeholder then may key "
                f"films now, or the other way round, so the key rule may have changed the split, not the images")
    return "some images or their patients changed (a manifest's patient column, a DICOM PatientID)"


def _by_an_earlier_version(kind: str, n: int, verb: str, how: str) -> str:
    """The end of `_split_why`'s message when a rule of pneumoscan changed for `n` files: the `kind` was started by
    an earlier version, which `verb` them `how`, so the images need not have changed."""
    return (f"where the {kind} was started by an earlier version, which {verb} {'them' if n > 1 else 'it'} {how}, so "
            f"the images need not have changed")


def withdrawn_rule(saved: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether the saved split records a patient_key_rule this version cannot key by: one made by development code
    whose rule was withdrawn (`WITHDRAWN_RULES`: 6, from 3ad352f to 48cc5dd, kept a PatientID on most films as one
    patient when their headers gave one sex and birth date), or a later one than the split `now`'s."""
    rule = saved.get("patient_key_rule", 1)
    return rule in WITHDRAWN_RULES or rule > now.get("patient_key_rule", 1)


def sibling_rule_change(saved: dict[str, Any], now: dict[str, Any]) -> int:
    """How many films the split `now` keys by their Kermany file name's other films' PatientID
    (`keyed_by_sibling_patient_id`, patient_key_rule 7 on) where the saved split was made by an earlier rule, which
    keyed them by file name; 0 when the saved split records rule 7 on, or none was keyed so."""
    if saved.get("patient_key_rule", 1) >= 7 or now.get("patient_key_rule", 1) < 7:
        return 0
    return int(now.get("keyed_by_sibling_patient_id", 0))


def key_rule_change(saved: dict[str, Any], now: dict[str, Any]) -> int:
    """How many images the split `now` keys by folder and file name (`patient_keys_from`'s `file`, a patient_key_rule
    of 2 on) where the saved split was made before that rule (none recorded), which keyed them otherwise; 0 when the
    saved split records a rule (such films were keyed by folder and name then too) or none was keyed so."""
    if saved.get("patient_key_rule", 1) >= 2 or now.get("patient_key_rule", 1) < 2:
        return 0
    return int((now.get("patient_keys_from") or {}).get("file", 0))


def unread_rule_change(saved: dict[str, Any], now: dict[str, Any]) -> int:
    """How many files the split `now` set aside before the split as named for a format not read while holding no
    image (`formats.UNREAD_RULE` 2, an HTML page saved as logo.gif) where the saved split was made before that rule
    (no `unread_rule` recorded), which split them among the films; 0 when it records the rule or none was skipped.
    Counted as `now` records them (`unread_no_image`); a split.json written before that record, by the wording of
    its `skipped` entries (which also takes a damaged JPEG named x.webp, skipped when decoded, for such a file)."""
    if "unread_rule" in saved or "unread_rule" not in now:
        return 0
    if isinstance(now.get("unread_no_image"), int):
        return now["unread_no_image"]
    return sum(bool(_NO_IMAGE_BY_NAME.search(entry)) for entry in now.get("skipped", []))


def key_rule_may_change(saved: dict[str, Any], now: dict[str, Any]) -> int:
    """How many DICOM films whose header names no patient (`dicom_without_patient_id`) the split `now` keys by a
    later key rule than the saved split's, which may have keyed them otherwise (a run of development code between
    9f99720 and 6582825 records no rule and keyed them by path; rule 2 counted the folders of JPEGs too); 0 when the
    rule is the same, or 4 on (rule 5 changed how test/ is read: `unopened_rule_may_change`), or there are none."""
    if saved.get("patient_key_rule", 1) >= min(now.get("patient_key_rule", 1), 4):
        return 0
    return int(now.get("dicom_without_patient_id", 0))


def placeholder_rule_may_change(saved: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether the split `now` judges placeholder PatientIDs over every split (patient_key_rule 4 on) where the saved
    split judged them over train/ and val/ at most, on data whose films were keyed by DICOM PatientID in either: a
    value on most films of train/ and val/ but not of the whole data set (or the other way round) keys them otherwise."""
    if saved.get("patient_key_rule", 1) >= 4 or now.get("patient_key_rule", 1) < 4:
        return False
    return any((record.get("patient_keys_from") or {}).get("dicom", 0) for record in (saved, now))


def unopened_rule_may_change(saved: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether the split `now` keys test/'s files named for another image format unopened (patient_key_rule 5 on)
    where the saved split read their headers, on data whose films were keyed by a DICOM header in either (a DICOM
    PatientID, or folder and name for one without): a DICOM film so named in test/ then counted among them."""
    if saved.get("patient_key_rule", 1) >= 5 or now.get("patient_key_rule", 1) < 5:
        return False
    return any((record.get("patient_keys_from") or {}).get(source, 0) for record in (saved, now)
               for source in ("dicom", "file"))


def _rule(record: dict[str, Any]) -> str:
    """The key rule a split.json records, for messages."""
    rule = record.get("patient_key_rule")
    return "no patient_key_rule recorded" if rule is None else f"patient_key_rule {rule}"


def resume_advice(saved: dict[str, Any], now: dict[str, Any], kind: str = "run", manifest: bool = False) -> str:
    """What to do when a resume's split differs (`split_change`): resume with the data the `kind` (a run, or a
    pretraining) was started with, or with the pneumoscan it was started with when the key rule or the rule of the
    files set aside changed; start a new one, or resume with that development code or later version, when its key
    rule is one this version does not have (`withdrawn_rule`). A `manifest` now holding fewer images may be one from which rows that listed a file twice
    were deleted: earlier versions read such a manifest (training on the file twice), this one refuses it, so only a
    new run is left then."""
    with_what = ("the pneumoscan" if key_rule_change(saved, now) or unread_rule_change(saved, now) or
                 sibling_rule_change(saved, now) else
                 "the pneumoscan (or, if its images changed, the data)" if key_rule_may_change(saved, now) or
                 placeholder_rule_may_change(saved, now) or unopened_rule_may_change(saved, now) else
                 "the data")
    advice = f"resume with {with_what} it was started with, or start a new {kind} with another {option('out')}"
    if withdrawn_rule(saved, now):  # this version cannot key as it did
        which = "that development code" if saved["patient_key_rule"] in WITHDRAWN_RULES else "that later version"
        advice = (f"start a new {kind} with another {option('out')}, or resume with {which} of pneumoscan (and the "
                  f"data) it was started with")
    if manifest and saved.get("counts") and _fewer_images(saved, now):
        advice += (f" (a new {kind} if rows that listed a file twice were deleted from the manifest: earlier versions "
                   f"read such rows and trained on the file twice, this one refuses them, so the manifest the "
                   f"{kind} was started with cannot be read again)")
    return advice


def _totals(record: dict[str, Any]) -> tuple[int, ...]:
    """A split.json's images of each class (NORMAL, PNEUMONIA), over its parts."""
    return tuple(sum(c[label] for c in record["counts"].values()) for label in ("NORMAL", "PNEUMONIA"))


def _fewer_images(saved: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether the split `now` holds no more images of either class than the saved split, and fewer of one."""
    before, after = _totals(saved), _totals(now)
    return before != after and all(a <= b for a, b in zip(after, before))


def _sources(sources: dict[str, int] | None) -> str:
    """split.json's `patient_keys_from` as text: 'dicom 100, name 20'."""
    return ", ".join(f"{source} {n}" for source, n in (sources or {}).items()) or "file names"
