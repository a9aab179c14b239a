"""How much disk the image cache may use, and least-recently-used eviction of its entries."""
from __future__ import annotations

import math
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from pneumoscan.errors import InputError

MAX_GB_ENV = "PNEUMOSCAN_CACHE_MAX_GB"
DEFAULT_MAX_GB = 5.0
GB = 1e9
_ENTRY_NAME = re.compile(r"[0-9a-f]{32}\.(npy|json)")  # cache_key(): 32 hex digits
_TEMPORARY_NAME = re.compile(r"[0-9a-f]{32}\.\d+-\d+\.tmp(\.npy)?")  # cache._write_entry's, before the rename
# A write keeps modifying its temporary file until the moment it renames it, so one untouched this long belongs to
# no live write (killed, or the machine lost power). Not the pid in its name: the folder may be shared with other
# machines or containers (other pid namespaces), and pids are reused. An hour also covers clocks that disagree
# between a file server and its clients.
STALE_TEMPORARY_S = 3600


def max_cache_bytes() -> float:
    """The cap in bytes: `$PNEUMOSCAN_CACHE_MAX_GB` gigabytes (10^9 bytes), 5 by default; 0 turns the disk cache
    off, `inf` lifts the limit."""
    text = os.environ.get(MAX_GB_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_GB * GB
    try:
        gigabytes = float(text)
    except ValueError:
        gigabytes = math.nan
    if math.isnan(gigabytes) or gigabytes < 0:
        raise InputError(f"{MAX_GB_ENV}={text!r}: must be a number of gigabytes, 0 or more, such as 5 (0 turns the "
                         f"image cache off, inf lifts the limit); or unset it for the default, {DEFAULT_MAX_GB:g}")
    return gigabytes * GB


def format_bytes(n_bytes: float) -> str:
    """`n_bytes` in kB, MB or GB (powers of 10, like the limit), to three digits."""
    if float(f"{n_bytes:.0f}") < 1e3:
        return f"{n_bytes:.0f} bytes"
    for scale, unit in ((1e3, "kB"), (1e6, "MB"), (GB, "GB")):
        value = n_bytes / scale
        if float(f"{value:.3g}") < 1e3:  # what prints: 999.7 kB would show as 1e+03 kB, so it is 1 MB
            return f"{value:.3g} {unit}"
    return f"{n_bytes / GB:,.0f} GB"  # not 1.23e+03


@dataclass(frozen=True)
class Entry:
    """One cached image set: its files (.npy and .json, or what is left of them), their bytes, and when it was last
    used (the .json's modification time in ns: written with the entry and touched on every hit)."""

    key: str
    paths: tuple[Path, ...]
    size: int
    used_ns: int


def _regular_files(folder: Path, pattern: re.Pattern[str]) -> dict[Path, os.stat_result]:
    try:
        paths = [p for p in folder.iterdir() if pattern.fullmatch(p.name)]
    except OSError:  # no folder yet, or not a folder
        return {}
    found = {}
    for path in paths:
        try:
            info = path.stat()
        except OSError:  # removed meanwhile by another process's eviction
            continue
        if stat.S_ISREG(info.st_mode):
            found[path] = info
    return found


def cache_entries(folder: Path) -> list[Entry]:
    """The entries in `folder`, least recently used first; files with other names are not entries and are left be."""
    groups: dict[str, dict[Path, os.stat_result]] = {}
    for path, info in _regular_files(folder, _ENTRY_NAME).items():
        groups.setdefault(path.stem, {})[path] = info
    entries = []
    for key, files in groups.items():
        meta = folder / f"{key}.json"
        # an .npy alone: a write between its two renames, or one that died there; its own time stands in
        used = (files[meta] if meta in files else next(iter(files.values()))).st_mtime_ns
        entries.append(Entry(key, tuple(sorted(files, key=lambda p: p.suffix != ".npy")),
                             sum(info.st_size for info in files.values()), used))
    return sorted(entries, key=lambda e: (e.used_ns, e.key))


@dataclass(frozen=True)
class Temporary:
    """A temporary file of an entry being written, or of a write that died before it could remove it: its bytes, and
    whether it is stale (untouched for STALE_TEMPORARY_S, so no live write can own it)."""

    path: Path
    size: int
    stale: bool


def temporary_files(folder: Path) -> list[Temporary]:
    """The temporary files in `folder`."""
    now_ns = time.time_ns()
    return [Temporary(path, info.st_size, now_ns - info.st_mtime_ns > STALE_TEMPORARY_S * 10**9)
            for path, info in _regular_files(folder, _TEMPORARY_NAME).items()]


def sweep_temporaries(folder: Path) -> tuple[list[Temporary], list[Temporary]]:
    """Remove the stale temporary files of `folder`: (those removed, those left: fresh, or that could not be removed)."""
    removed, left = [], []
    for temporary in temporary_files(folder):
        try:
            if temporary.stale:
                temporary.path.unlink(missing_ok=True)  # missing: another process swept it first
                removed.append(temporary)
                continue
        except OSError:
            pass
        left.append(temporary)
    return removed, left


def mark_used(meta_path: Path) -> None:
    """Record a hit on an entry (its .json's modification time; access times are often not kept)."""
    try:
        os.utime(meta_path)
    except OSError:  # a cache folder others share read-only: the entry only looks older than it is
        pass


def remove_entry(entry: Entry) -> bool:
    """Delete an entry's files, the array first: when that fails (a file in use, on Windows) the entry stays whole.
    On POSIX a process that has the array memory-mapped keeps reading it intact; its disk space is freed when the
    last such process ends."""
    for path in entry.paths:
        try:
            path.unlink(missing_ok=True)  # missing: another process evicted it first
        except OSError:
            return False
    return True


def evict(folder: Path, limit: float, keep: str | None = None) -> list[Entry]:
    """Remove the stale temporary files of `folder`, then its least recently used entries, never the one keyed `keep`,
    until the entries and the temporary files left take at most `limit` bytes (or only `keep` is left); the entries
    removed."""
    _, temporaries = sweep_temporaries(folder)
    entries = cache_entries(folder)
    total = sum(entry.size for entry in entries) + sum(temporary.size for temporary in temporaries)
    removed = []
    for entry in entries:
        if total <= limit:
            break
        if entry.key != keep and remove_entry(entry):
            total -= entry.size
            removed.append(entry)
    return removed


def clear_cache(folder: Path) -> tuple[list[Entry], list[Temporary]]:
    """Remove every entry and every stale temporary file from `folder` (fresh ones may belong to a write in
    progress; other files stay): the entries and temporary files removed."""
    entries = [entry for entry in cache_entries(folder) if remove_entry(entry)]
    temporaries, _ = sweep_temporaries(folder)
    return entries, temporaries
