"""`pneumoscan audit`: what a dataset holds and what is wrong with it."""
from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pneumoscan import CLASS_NAMES
from pneumoscan.data.decode import MIN_SIDE, NOT_PLAIN_FRONTAL, OTHER_VIEW, not_frontal_view, read_file, \
    read_grayscale_and_rgb, reading_film
from pneumoscan.data.file_cues import COLOUR_REFERENCE, colourfulness
from pneumoscan.data.formats import is_image_head
from pneumoscan.data.labels import Sample
from pneumoscan.data.layout import discover
from pneumoscan.data.patients import (SOURCE_NAMES, SOURCES, across_folders_advice, compared_keys, dataset_keys,
                                      is_kermany_name, keys_across_folders, keys_read, unopened_headers)
from pneumoscan.errors import InputError, first_names, one_name
from pneumoscan.progress import progress_bar


def _inspect(path: Path) -> tuple[str, tuple[int, int] | None, str | None, float, str | None]:
    """SHA-256 of the file ('' when its bytes are no film's to compare, `_film_bytes`, or it cannot be read), its size
    in pixels, why it is unreadable, its colourfulness (the guard's cue; 0 for an unreadable file), and a readable
    DICOM's view when its header says it is no plain frontal film (`not_frontal_view`; else None)."""
    try:
        data = read_file(path, str(path))
    except InputError as err:
        return "", None, str(err), 0.0, None
    digest = hashlib.sha256(data).hexdigest() if _film_bytes(data) else ""
    try:
        gray, rgb = read_grayscale_and_rgb(data, name=str(path))  # a colour DICOM's pixels: decoded once
    except InputError as err:
        return digest, None, str(err), 0.0, None
    with reading_film(one_name(str(path)), data):
        colour, view = colourfulness(data, rgb=rgb), not_frontal_view(data)
    return digest, (int(gray.shape[1]), int(gray.shape[0])), None, colour, view


def _film_bytes(data: bytes) -> bool:
    """Whether a file's bytes may be a film's, so that two alike are one film twice (a leak across labels or splits
    once it is read): those of an image format (`is_image_head`: a .webp copy, a DICOM whose decoder is missing), not
    empty nor one byte repeated (a copy that failed), nor of no image format at all (an HTML error page a failed
    download saved), which no decoder or conversion ever makes a film: alike without being copies of one."""
    return bool(data) and data.count(data[:1]) != len(data) and is_image_head(data[:132])


def _shown_name(root: Path, split: str, sample: Sample) -> str:
    """How the audit names a file: its path under the data folder (`train/NORMAL/sub/x.png`), so it can be
    found; for a CSV manifest, its path from the manifest's folder (absolute when outside it) with its split
    and class, which a manifest's paths do not show."""
    if root.is_dir():
        return sample.path.relative_to(root).as_posix()
    try:
        path = sample.path.relative_to(root.parent).as_posix()
    except ValueError:
        path = os.path.abspath(sample.path)
    return f"{path} ({split + ' ' if split != 'all' else ''}{CLASS_NAMES[sample.label]})"


def audit(root: str | os.PathLike, progress: bool = True, patient_key: str = "auto") -> dict[str, Any]:
    """Counts, patients, image sizes, unreadable files, duplicates and cross-split overlaps of a dataset; patients
    are keyed by `patient_key` (data/patients.py) over all its splits, and counted, as duplicates are found, over its
    readable images."""
    splits = discover(root)
    everything: list[tuple[str, Sample]] = [(name, s) for name, samples in splits.items() for s in samples]
    # as `train` keys them; images --patient-key folder finds no patient folder for are listed, not the end of it;
    # test/'s films `train` keys unopened are read below anyway: by their PatientID, a patient on both sides is found
    patient_id = compared_keys(dataset_keys(splits, patient_key, progress=progress), unopened_headers(splits))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        inspected = list(progress_bar(pool.map(lambda item: _inspect(item[1].path), everything),
                                      total=len(everything), desc="reading", unit="img", progress=progress))
    readable = [sample for (_, sample), (_, _, error, _, _) in zip(everything, inspected) if not error]
    read = set(readable)
    # patients are counted, and their keys' sources, over the readable films the table reports
    report: dict[str, Any] = {"root": str(root), **patient_id.record(readable), "splits": {}}
    by_hash: dict[str, list[tuple[str, str, Sample]]] = defaultdict(list)  # (shown name, split, sample)
    # a patient keyed by a header, manifest or folder: its first file in each split, named (never its key)
    named_patients: dict[str, dict[str, str]] = defaultdict(dict)
    name_patients: dict[str, dict[str, str]] = defaultdict(dict)  # and one keyed by its file name
    unreadable: list[str] = []

    def shown_as(split: str, sample: Sample) -> str:
        return _shown_name(Path(root), split, sample)

    for (split, sample), (digest, size, error, _, _) in zip(everything, inspected):
        # an unreadable file's bytes too: a .webp copy, or a DICOM whose decoder is missing, under both labels is a
        # leak once it is converted or the decoder installed; empty files are alike without being copies
        if digest:
            by_hash[digest].append((shown_as(split, sample), split, sample))
        if error:
            unreadable.append(error)
        else:
            by = named_patients if patient_id.origins[sample] != "name" else name_patients
            by[split].setdefault(patient_id(sample), shown_as(split, sample))
    for split, samples in splits.items():
        rows = [(s, inspected[i]) for i, (part, s) in enumerate(everything) if part == split]
        sizes = [info[1] for _, info in rows if info[1] is not None]
        widths = [w for w, _ in sizes]
        report["splits"][split] = {  # readable images; the unreadable ones are counted apart
            "images": {c: sum(1 for s, info in rows if s.label == i and not info[2]) for i, c in enumerate(CLASS_NAMES)},
            "unreadable": sum(1 for _, info in rows if info[2]),
            "patients": {c: len({patient_id(s) for s, info in rows if s.label == i and not info[2]})
                         for i, c in enumerate(CLASS_NAMES)},
            "width_min": min(widths, default=None), "width_max": max(widths, default=None),
            "most_common_sizes": [f"{w}x{h}" for (w, h), _ in Counter(sizes).most_common(3)],
        }
    duplicates = sorted(sorted(group) for group in by_hash.values() if len(group) > 1)
    names = list(splits)  # a split of unreadable files only has no patients, but still its pairs
    report["unreadable"] = sorted(unreadable)
    # far below any chest film; upscaled to the model's input they are mostly interpolation
    report["too_small"] = sorted(f"{shown_as(split, s)}: {size[0]} x {size[1]} px"
                                 for (split, s), (_, size, _, _, _) in zip(everything, inspected)
                                 if size is not None and min(size) < MIN_SIDE)
    # train refuses these with --patient-key folder: each is keyed by its file name here (an unreadable file is no
    # image: listed unreadable, and skipped by train)
    report["no_patient_folder"] = sorted(shown_as(split, s) for split, s in everything
                                         if patient_id.choice == "folder" and patient_id.origins[s] == "name"
                                         and s in read)
    # a photo or screenshot among the X-rays: trained on, though the guard refuses its like at predict time
    report["colour"] = sorted(f"{shown_as(split, s)}: colour image (colourfulness {colour:.0f}, above "
                              f"{COLOUR_REFERENCE:.0f}); chest X-rays are grayscale, remove it or replace it with the radiograph"
                              for (split, s), (_, _, _, colour, _) in zip(everything, inspected)
                              if colour > COLOUR_REFERENCE)
    # a lateral film of a chest series exported with the frontal one: trained on and scored as if it were frontal
    report["not_frontal"] = sorted(f"{shown_as(split, s)}: {view}, {NOT_PLAIN_FRONTAL}, remove it"
                                   for (split, s), (_, _, _, _, view) in zip(everything, inspected) if view)
    # `pt7/1.jpeg` and `pt8/1.jpeg` keyed by file name are one patient: in one split (names restart in each); with
    # --patient-key folder those keyed by name are the loose files no_patient_folder lists, which train refuses
    # over the readable films, as train's warning about them
    report["name_keys_across_folders"] = [] if patient_id.choice == "folder" else sorted(
        sorted(shown_as(split, s) for s in group) for split, samples in splits.items()
        for group in keys_across_folders([s for s in samples if s in read], patient_id).values())

    def shown(keep: Any) -> list[list[str]]:
        return [[name for name, _, _ in group] for group in duplicates if keep(group)]

    report["duplicate_groups"] = shown(lambda g: True)
    report["cross_split_duplicates"] = shown(lambda g: len({split for _, split, _ in g}) > 1)
    # a patient split cannot keep these together: copies under two patient IDs can sit on both sides of it
    report["cross_patient_duplicates"] = shown(lambda g: len({patient_id(s) for _, _, s in g}) > 1)
    report["label_conflict_duplicates"] = shown(lambda g: len({s.label for _, _, s in g}) > 1)

    def keys_of(split: str) -> set[str]:
        return set(named_patients[split]) | set(name_patients[split])

    split_pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    report["patient_ids_in_two_splits"] = {f"{a}+{b}": len(keys_of(a) & keys_of(b)) for a, b in split_pairs}

    def pairs(a: str, b: str, named: bool) -> list[list[str]]:
        """A pair of files (a split's first of the key) for each patient key of splits `a` and `b` read from a
        header, manifest or folder in both (`named`) or from a file name in one at least (not `named`)."""
        def first(split: str, key: str) -> str:
            return named_patients[split].get(key) or name_patients[split][key]

        both = named_patients[a].keys() & named_patients[b].keys()
        shared = both if named else (keys_of(a) & keys_of(b)) - both
        return sorted([first(a, key), first(b, key)] for key in shared)

    # of those, the keys read from a file name (on one side at least: pt1.jpeg and pt1/a.jpeg), a pair of files
    # each: reported (not failed), for a user to look at
    report["name_keys_in_two_splits"] = {f"{a}+{b}": pairs(a, b, named=False) for a, b in split_pairs}
    # keys a file name gives restart (Kermany's numbers, a PACS export's IM00001); a PatientID, a manifest's patient
    # or a folder in two splits is one patient on both sides: a leak, one pair of files each
    report["same_patient_in_two_splits"] = sorted(pair for a, b in split_pairs for pair in pairs(a, b, named=True))
    # only patient keys read from Kermany's file names restart in each split
    kermany = any(patient_id.origins[s] == "name" and is_kermany_name(s.path) for _, s in everything)
    report["note"] = ("Kermany patient numbers restart in each split, so shared patient IDs across splits are not "
                      "necessarily the same child; byte-identical files across splits are real leaks."
                      if kermany and len(splits) > 1 else None)
    return report


def _named_keys(report: dict[str, Any]) -> str:
    """Where the audit read patient keys other than file names: 'DICOM PatientID', 'folder', ..."""
    sources = [SOURCE_NAMES[s] for s in SOURCES if s != "name" and (report.get("patient_keys_from") or {}).get(s)]
    return " or ".join(sources) or "patient key"


def audit_problems(report: dict[str, Any]) -> list[str]:
    """What `audit --strict` fails on, one '<count> <what>' item per kind found: unreadable files, byte-identical
    files across splits (leaks), with both labels or across patient IDs, images under MIN_SIDE px, colour
    images, DICOM films of a view other than plain frontal (`not_frontal_view`), with --patient-key folder
    images with no patient folder, and patients in two splits by a DICOM
    PatientID, a manifest's patient column or a folder; [] for a clean dataset. Patient IDs read from file names
    in two splits are not counted: Kermany's restart in each split."""
    kinds = [
        (len(report["unreadable"]), "unreadable file", "unreadable files"),
        (len(report["cross_split_duplicates"]), "group of byte-identical files in two splits",
         "groups of byte-identical files in two splits"),
        (len(report["label_conflict_duplicates"]), "group of byte-identical files with both labels",
         "groups of byte-identical files with both labels"),
        (len(report["cross_patient_duplicates"]), "group of byte-identical files under two patient IDs",
         "groups of byte-identical files under two patient IDs"),
        (len(report["too_small"]), f"image under {MIN_SIDE} px on a side", f"images under {MIN_SIDE} px on a side"),
        (len(report.get("colour", [])), "colour image", "colour images"),
        (len(report.get("not_frontal", [])), f"DICOM film {OTHER_VIEW}", f"DICOM films {OTHER_VIEW}"),
        (len(report.get("no_patient_folder", [])), "image with no patient folder (--patient-key folder)",
         "images with no patient folder (--patient-key folder)"),
        (len(report.get("same_patient_in_two_splits", [])), f"patient in two splits (by {_named_keys(report)})",
         f"patients in two splits (by {_named_keys(report)})"),
    ]
    return [f"{count} {one if count == 1 else many}" for count, one, many in kinds if count]


LISTED = 20  # lines of each list the text report prints; the JSON holds them all
GROUP_NAMES = 3  # names of a group of files the text report prints


def _listed(lines: list[str], indent: str = "  ") -> list[str]:
    """The first LISTED of a list's `lines`, then a count of the rest and where they all are (at `indent`, theirs)."""
    rest = len(lines) - LISTED
    return lines[:LISTED] + ([f"{indent}... and {rest} more (--json lists them all)"] if rest > 0 else [])


def _group(names: list[str], joiner: str) -> str:
    """A group of files, as the text report names it: its first GROUP_NAMES names and a count of the others."""
    return first_names([one_name(name) for name in names], GROUP_NAMES, joiner)


def format_audit(report: dict[str, Any]) -> str:
    """The audit as a plain-text table; each finding names its files (a list's first LISTED, a group's first
    GROUP_NAMES, with a count of the others)."""
    lines = [f"patients: {keys_read(report)}",
             "readable images, patients, and sizes (width range in px; most common width x height)",
             f"{'split':<8}{'NORMAL':>8}{'PNEUMONIA':>11}{'patients N/P':>15}  sizes"]
    for split, info in report["splits"].items():
        img, pat = info["images"], info["patients"]
        sizes = (f"{info['width_min']}-{info['width_max']}; {', '.join(info['most_common_sizes'])}"
                 if info["width_min"] is not None else "none readable")
        lines.append(f"{split:<8}{img['NORMAL']:>8}{img['PNEUMONIA']:>11}{pat['NORMAL']:>8}/{pat['PNEUMONIA']:<6}"
                     f"  {sizes}")
    lines.append(f"unreadable files: {len(report['unreadable'])}")
    lines += _listed([f"  {msg}" for msg in report["unreadable"]])
    lines.append(f"images under {MIN_SIDE} px on a side: {len(report['too_small'])}")
    lines += _listed([f"  {one_name(msg)}" for msg in report["too_small"]])
    lines.append(f"colour images (not chest X-rays as taken; the guard refuses such files): {len(report['colour'])}")
    lines += _listed([f"  {one_name(msg)}" for msg in report["colour"]])
    lines.append(f"DICOM films {OTHER_VIEW} (by their header; the model reads plain frontal films): "
                 f"{len(report['not_frontal'])}")
    lines += _listed([f"  {one_name(msg)}" for msg in report["not_frontal"]])
    if report.get("no_patient_folder"):
        lines.append(f"images right in their class folder, with no patient folder for --patient-key folder to read "
                     f"(train refuses them; keyed by file name here): {len(report['no_patient_folder'])}")
        lines += _listed([f"  {one_name(path)}" for path in report["no_patient_folder"]])
    if report.get("name_keys_across_folders"):
        groups = report["name_keys_across_folders"]
        lines.append(f"file names taken for one patient though in different folders (their patient "
                     f"is read from the file name; {across_folders_advice()}): {len(groups)}")
        lines += _listed([f"  {_group(group, ' & ')}" for group in groups])
    problems = {tuple(g) for key in ("cross_split_duplicates", "cross_patient_duplicates", "label_conflict_duplicates")
                for g in report[key]}
    within = [group for group in report["duplicate_groups"] if tuple(group) not in problems]
    lines.append(f"byte-identical duplicate groups: {len(report['duplicate_groups'])} "
                 f"({len(report['cross_split_duplicates'])} across splits, "
                 f"{len(report['cross_patient_duplicates'])} across patient IDs, "
                 f"{len(report['label_conflict_duplicates'])} with both labels, "
                 f"{len(within)} within one patient)")
    lines += _listed([f"  {_group(list(group), ' = ')}" for group in sorted(problems)])
    if within:  # no leak, as the patient split keeps them together, but one film counted as several
        lines.append(f"  within one patient (no leak; each copy counts as a film, in training or evaluation; keep one): "
                     f"{len(within)}")
        lines += _listed([f"    {_group(group, ' = ')}" for group in within], "    ")
    for pair, count in report["patient_ids_in_two_splits"].items():
        lines.append(f"patient IDs in both {pair}: {count}")
        by_name = report.get("name_keys_in_two_splits", {}).get(pair, [])
        if by_name:  # those of a header, manifest or folder are listed below, as leaks
            pairs = [" & ".join(map(one_name, two)) for two in by_name]
            lines.append(f"  by file name, e.g. {first_names(pairs, GROUP_NAMES, '; ')}")
    if report.get("same_patient_in_two_splits"):
        lines.append(f"patients in two splits by {_named_keys(report)}, so the same patient on both sides (a leak): "
                     f"{len(report['same_patient_in_two_splits'])}")
        lines += _listed([f"  {' & '.join(map(one_name, pair))}" for pair in report["same_patient_in_two_splits"]])
    if report.get("note"):
        lines.append(f"note: {report['note']}")
    return "\n".join(lines)
