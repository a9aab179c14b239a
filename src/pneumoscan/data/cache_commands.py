"""CLI hook: `pneumoscan cache` shows the decoded-image cache (folder, size, limit, entries) or clears it."""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from pneumoscan.data.cache_limit import Entry, Temporary, format_bytes


def _holds(entry: Entry) -> int | str | None:
    """What an entry holds, from its .json: its image size, or the kind of its rows (`cached_file_rows`); None when
    that is missing or damaged, or its .npy is."""
    if len(entry.paths) != 2:  # a .json alone holds nothing
        return None
    try:
        meta = json.loads(entry.paths[0].with_suffix(".json").read_text())
        held = meta["kind"] if "kind" in meta else meta["size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return held if isinstance(held, (int, str)) else None


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _temporaries(temporaries: list[Temporary]) -> str:
    """'2 temporary files, 4 kB'."""
    n_bytes = sum(t.size for t in temporaries)
    return f"{_count(len(temporaries), 'temporary file', 'temporary files')}, {format_bytes(n_bytes)}"


def describe_cache(folder: Path) -> list[str]:
    """The cache in `folder` as lines: its size against the limit (entries and temporary files), then its entries by
    image size (or what else they hold: film fingerprints), then its temporary files (fresh, and stale: left by
    writes that died)."""
    from pneumoscan.data.cache_limit import MAX_GB_ENV, cache_entries, max_cache_bytes, temporary_files

    limit = max_cache_bytes()
    entries = cache_entries(folder)
    temporaries = temporary_files(folder)
    limit_text = ("the cache is off" if limit == 0 else "no limit" if math.isinf(limit)
                  else f"limit {format_bytes(limit)}")
    if not folder.exists():
        return [f"image cache {folder}: no such folder yet, so nothing cached there (a command decoding images with "
                f"this cache folder makes it; check the path if you meant an existing one); {limit_text} "
                f"(${MAX_GB_ENV})"]
    files = _count(len(entries), "entry", "entries")
    if temporaries:
        files += f" and {_count(len(temporaries), 'temporary file', 'temporary files')}"
    total = sum(e.size for e in entries) + sum(t.size for t in temporaries)
    lines = [f"image cache {folder}: {files}, {format_bytes(total)}; {limit_text} (${MAX_GB_ENV})"]
    by_kind: dict[int | str | None, list[Entry]] = {}
    for entry in entries:
        by_kind.setdefault(_holds(entry), []).append(entry)
    # image sizes, smallest first, then other kinds, then the damaged
    for held in sorted(by_kind, key=lambda h: (h is None, isinstance(h, str), h if isinstance(h, int) else str(h))):
        group = by_kind[held]
        name = (f"{held} px" if isinstance(held, int) else held if held is not None
                else "incomplete or damaged (rebuilt when next needed)")
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(max(e.used_ns for e in group) / 1e9))
        lines.append(f"  {name}: {_count(len(group), 'entry', 'entries')}, "
                     f"{format_bytes(sum(e.size for e in group))}, last used {used}")
    fresh, stale = [t for t in temporaries if not t.stale], [t for t in temporaries if t.stale]
    if fresh:
        lines.append(f"  {_temporaries(fresh)}, modified in the last hour: writes in progress, or killed since")
    if stale:
        lines.append(f"  {_temporaries(stale)}, untouched for over an hour: left by killed writes; removed when an "
                     f"entry is next written, or by --clear")
    return lines


def cmd_cache(args: argparse.Namespace) -> int:
    from pneumoscan.data.cache import default_cache_dir
    from pneumoscan.data.cache_limit import cache_entries, clear_cache, temporary_files
    from pneumoscan.errors import InputError

    folder = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: is a file, not a cache folder; check --cache-dir (or $PNEUMOSCAN_CACHE)")
    if not args.clear:
        print("\n".join(describe_cache(folder)))
        return 0
    if not folder.exists():
        print(f"image cache {folder}: no such folder, nothing to clear (check --cache-dir, or $PNEUMOSCAN_CACHE)")
        return 0
    entries, temporaries = clear_cache(folder)
    removed = _count(len(entries), "entry", "entries")
    if temporaries:
        removed += f" and {_count(len(temporaries), 'temporary file', 'temporary files')}"
    freed = sum(e.size for e in entries) + sum(t.size for t in temporaries)
    print(f"image cache {folder}: removed {removed}, {format_bytes(freed)} freed")
    left = cache_entries(folder)
    if left:  # on Windows, arrays another process has open; or one written meanwhile
        print(f"  {_count(len(left), 'entry', 'entries')} left: in use or just written")
    temporaries = temporary_files(folder)
    fresh, stuck = [t for t in temporaries if not t.stale], [t for t in temporaries if t.stale]
    if fresh:  # removing them would fail a write in progress (another run's, perhaps on another machine)
        print(f"  {_temporaries(fresh)} left, modified in the last hour: writes in progress, or killed since; "
              f"removed once untouched for an hour")
    if stuck:
        print(f"  {_temporaries(stuck)} left by killed writes could not be removed; check the folder's permissions")
    return 0


CACHE_DIR_DEFAULT = "default $PNEUMOSCAN_CACHE, else ~/.cache/pneumoscan"


def add_cache_dir_arg(parser: argparse.ArgumentParser) -> None:
    """`--cache-dir`: the decoded-image cache of every command that decodes a data set."""
    parser.add_argument("--cache-dir", help=f"where decoded images are cached ({CACHE_DIR_DEFAULT})")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `cache`."""
    p = subparsers.add_parser("cache", help="show the decoded-image cache (folder, size, limit, entries) or clear it")
    p.add_argument("--cache-dir", help=f"the cache folder ({CACHE_DIR_DEFAULT})")
    p.add_argument("--clear", action="store_true",
                   help="remove every cache entry, and temporary files left by killed writes (those untouched for an "
                        "hour); other files stay")
    p.set_defaults(func=cmd_cache)
