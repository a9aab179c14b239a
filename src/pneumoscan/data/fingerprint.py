"""Content fingerprints of image files: the films a model learnt from, recognised wherever they are copied."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

HEX_DIGITS = 16  # 64 bits of SHA-256: no accidental match among millions of films


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
