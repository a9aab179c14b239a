"""Content fingerprints of image files: the films a model learnt from, recognised wherever they are copied."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pneumoscan.data.layout import Sample

HEX_DIGITS = 16  # 64 bits of SHA-256: no accidental match among millions of films
# what a film filed under both labels does to a training run
TAUGHT_BOTH = "the model is taught both answers for one film"


def file_fingerprint(path: str | os.PathLike) -> str:
    """The first HEX_DIGITS hex digits of the SHA-256 of the file's bytes ('' when it cannot be read)."""
    try:
        stat = os.stat(path)
    except OSError:
        return ""
    return _fingerprint(os.path.abspath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@lru_cache(maxsize=100_000)
def _fingerprint(path: str, inode: int, size: int, mtime_ns: int, ctime_ns: int) -> str:
    """Hashed once per process (set-threshold checks films, then evaluate warns on them); the file's inode, size and
    times are in the key, so a file replaced or changed since is hashed again."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:HEX_DIGITS]
    except OSError:
        return ""


def fingerprints(paths: Iterable[str | os.PathLike]) -> list[str]:
    """`file_fingerprint` of every path, in order (read in parallel)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(file_fingerprint, paths))


def training_fingerprints(training: dict[str, Any]) -> set[str]:
    """The fingerprints an artifact's `training` record holds: its own, or its ensemble members'."""
    found = set(training.get("fingerprints", []))
    for member in training.get("members", []):
        found |= set(member.get("fingerprints", []))
    return found


def seen_in_training(paths: list[Path], training: dict[str, Any]) -> list[Path]:
    """Those of `paths` that are byte-identical to a film the model was trained or validated on."""
    known = training_fingerprints(training)
    if not known:
        return []
    return [path for path, mark in zip(paths, fingerprints(paths)) if mark in known]


def duplicate_warnings(parts: dict[str, list[Sample]], data: str, harm: str = TAUGHT_BOTH) -> list[str]:
    """Warnings about byte-identical files among the images of `data`, in named `parts` (train and val for a
    training run; the one split scored by evaluate or set-threshold): a film under both labels (`harm` says what
    that does here), and, with `train` and `val` parts, a validation film that is a copy of a training one
    (validation, and so early stopping and the threshold, then scores a film the model learnt); empty when there
    are none."""
    from pneumoscan import CLASS_NAMES

    named = [(part, s) for part, samples in parts.items() for s in samples]
    groups: dict[str, list[tuple[str, Sample]]] = {}
    for (part, sample), mark in zip(named, fingerprints(s.path for _, s in named)):
        if mark:
            groups.setdefault(mark, []).append((part, sample))
    both_labels = [g for g in groups.values() if len({s.label for _, s in g}) > 1]
    copied = [g for g in groups.values() if {"train", "val"} <= {part for part, _ in g}]

    def example(group: list[tuple[str, Sample]]) -> str:
        return " = ".join(f"{s.path} ({CLASS_NAMES[s.label]}{f', {part}' if len(parts) > 1 else ''})"
                          for part, s in group[:2])

    listed = f"`pneumoscan audit {data}` lists them"
    found = []
    if both_labels:
        found.append(f"{len(both_labels)} group(s) of byte-identical images carry both labels, e.g. "
                     f"{example(both_labels[0])}: {harm}; keep the copy with the right label and remove the other "
                     f"({listed})")
    if copied:
        found.append(f"{len(copied)} validation image(s) are byte-identical to training images, e.g. "
                     f"{example(copied[0])}, so validation (early stopping, threshold) scores films the model learnt; "
                     f"remove the copies or give them one patient ({listed})")
    return found
