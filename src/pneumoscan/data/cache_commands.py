"""CLI hook: `pneumoscan cache` shows the decoded-image cache (folder, size, limit, entries) or clears it."""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from pneumoscan.data.cache_limit import Entry


def _image_size(entry: Entry) -> int | None:
    """The image size an entry holds, from its .json; None when that is missing or damaged."""
    try:
        size = json.loads(entry.paths[0].with_suffix(".json").read_text())["size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return size if isinstance(size, int) else None


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def describe_cache(folder: Path) -> list[str]:
    """The cache in `folder` as lines: its size against the limit, then its entries by image size."""
    from pneumoscan.data.cache_limit import MAX_GB_ENV, cache_entries, format_bytes, max_cache_bytes, temporary_files

    limit = max_cache_bytes()
    entries = cache_entries(folder)
    limit_text = ("the cache is off" if limit == 0 else "no limit" if math.isinf(limit)
                  else f"limit {format_bytes(limit)}")
    lines = [f"image cache {folder}: {_count(len(entries), 'entry', 'entries')}, "
             f"{format_bytes(sum(e.size for e in entries))}; {limit_text} (${MAX_GB_ENV})"]
    by_size: dict[int | None, list[Entry]] = {}
    for entry in entries:
        by_size.setdefault(_image_size(entry), []).append(entry)
    for size in sorted(by_size, key=lambda s: (s is None, s)):
        group = by_size[size]
        name = f"{size} px" if size is not None else "incomplete or damaged (rebuilt when next needed)"
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(max(e.used_ns for e in group) / 1e9))
        lines.append(f"  {name}: {_count(len(group), 'entry', 'entries')}, "
                     f"{format_bytes(sum(e.size for e in group))}, last used {used}")
    temporary = temporary_files(folder)
    if temporary:
        lines.append(f"  and {_count(len(temporary), 'temporary file', 'temporary files')}, "
                     f"{format_bytes(sum(temporary.values()))}: writes in progress, or killed before they finished; "
                     f"--clear removes them")
    return lines


def cmd_cache(args: argparse.Namespace) -> int:
    from pneumoscan.data.cache import default_cache_dir
    from pneumoscan.data.cache_limit import cache_entries, clear_cache, format_bytes
    from pneumoscan.errors import InputError

    folder = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: is a file, not a cache folder; check --cache-dir (or $PNEUMOSCAN_CACHE)")
    if not args.clear:
        print("\n".join(describe_cache(folder)))
        return 0
    n_entries, freed = clear_cache(folder)
    print(f"image cache {folder}: removed {_count(n_entries, 'entry', 'entries')}, {format_bytes(freed)} freed")
    left = cache_entries(folder)
    if left:  # on Windows, arrays another process has open; or one written meanwhile
        print(f"  {_count(len(left), 'entry', 'entries')} left: in use or just written")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `cache`."""
    p = subparsers.add_parser("cache", help="show the decoded-image cache (folder, size, limit, entries) or clear it")
    p.add_argument("--cache-dir", help="the cache folder (default $PNEUMOSCAN_CACHE, else ~/.cache/pneumoscan)")
    p.add_argument("--clear", action="store_true",
                   help="remove every cache entry (and temporary files of unfinished writes); other files stay")
    p.set_defaults(func=cmd_cache)
