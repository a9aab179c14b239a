"""Fingerprints of image files: the films a model learnt from, recognised wherever they are copied.

Two kinds, both stored in a model's training record: the SHA-256 of each file's bytes (`fingerprints`: a copy under
any name), and a perceptual hash of each decoded film (`film_fingerprints`: the same film re-encoded as JPEG, PNG or
DICOM, at another size, a little brighter or darker; bench/film_fingerprint.py measures it)."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pneumoscan.errors import counted, shell_word

if TYPE_CHECKING:
    from pneumoscan.data.labels import Sample

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


# The film fingerprint: the film decoded at FILM_SIZE x FILM_SIZE grey (squashed to a square, as every decode here
# is), averaged over a FILM_GRID x FILM_GRID grid, its FILM_DCT x FILM_DCT lowest 2-D DCT frequencies but the mean, one
# bit per frequency: above their median or not. Two films are the same when at most FILM_MAX_DISTANCE of the 255 bits
# differ. On the 5,216 train films (bench/results/film_fingerprint.md): re-encodings differ in at most 12 bits,
# distinct films (same patient included) in 38 or more. Decoded at another size the bits move more (up to 32 at
# 56 px), so the decode size is fixed: a model of that input size reuses its own decode.
FILM_METHOD = "dct16-of-32x32-at-128px-v1"  # recorded beside the fingerprints; another method's are not compared
FILM_SIZE, FILM_GRID, FILM_DCT, FILM_MAX_DISTANCE = 128, 32, 16, 24
FILM_HEX = (FILM_DCT * FILM_DCT - 1 + 7) // 8 * 2  # 255 bits, padded to 32 bytes: 64 hex digits
FILM_ENTRY = f"film fingerprints ({FILM_METHOD})"  # what the image cache's entries of them hold (`pneumoscan cache`)


@cache
def _dct_basis() -> np.ndarray:
    """The orthonormal DCT-II basis: FILM_DCT frequencies over FILM_GRID samples."""
    n = np.arange(FILM_GRID)
    basis = np.cos(np.pi * (2 * n[None, :] + 1) * np.arange(FILM_DCT)[:, None] / (2 * FILM_GRID))
    basis[0] /= np.sqrt(2)
    return basis * np.sqrt(2 / FILM_GRID)


def film_fingerprint(gray: np.ndarray) -> str:
    """The film fingerprint (FILM_HEX hex digits) of a film decoded at FILM_SIZE (`load_image(path, FILM_SIZE)`)."""
    from PIL import Image

    grid = Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8), mode="L").convert("F")
    cells = np.asarray(grid.resize((FILM_GRID, FILM_GRID), Image.Resampling.BOX), dtype=np.float64)
    basis = _dct_basis()
    freqs = (basis @ cells @ basis.T).ravel()[1:]  # the mean (brightness) left out
    return np.packbits(freqs > np.median(freqs)).tobytes().hex()


def training_film_fingerprints(training: dict[str, Any]) -> np.ndarray:
    """The film fingerprints an artifact's `training` record holds (its own, or its ensemble members'), as rows of
    bytes; none for a record of another method, or entries edited out of shape."""
    found: set[str] = set()
    members = training.get("members")
    for record in (training, *(members if isinstance(members, list) else [])):
        if isinstance(record, dict) and record.get("film_fingerprint_method") == FILM_METHOD:
            marks = record.get("film_fingerprints")
            found |= {m for m in marks if _is_film_mark(m)} if isinstance(marks, list) else set()
    return np.array([np.frombuffer(bytes.fromhex(m), dtype=np.uint8) for m in sorted(found)],
                    dtype=np.uint8).reshape(len(found), FILM_HEX // 2)


def _is_film_mark(mark: object) -> bool:
    """Whether `mark` is a film fingerprint as `film_fingerprint` writes it."""
    if not isinstance(mark, str) or len(mark) != FILM_HEX:
        return False
    try:
        bytes.fromhex(mark)
    except ValueError:
        return False
    return True


def film_record(paths: Sequence[str | os.PathLike], images: Sequence[np.ndarray] | None = None,
                cache_dir: str | os.PathLike | None = None, marks: Sequence[str | None] | None = None) -> dict[str, Any]:
    """What a training record stores of its films: the method and the distinct film fingerprints of `paths`
    (`images`, `cache_dir`, `marks`: as `film_fingerprints` takes them)."""
    found = {m for m in film_fingerprints(paths, images, cache_dir, marks) if m is not None}
    return {"film_fingerprint_method": FILM_METHOD, "film_fingerprints": sorted(found)}


def film_fingerprints(paths: Sequence[str | os.PathLike], images: Sequence[np.ndarray] | np.ndarray | None = None,
                      cache_dir: str | os.PathLike | None = None,
                      marks: Sequence[str | None] | None = None) -> list[str | None]:
    """The film fingerprint of each path (None when it cannot be decoded), kept in the image cache in `cache_dir`
    (None: the default one) and read back from there while the files are unchanged: a second run on the same files
    decodes and hashes none of them. `images`: the films as already decoded, one per path, reused when they are
    FILM_SIZE square (a model of that input size: no second decode); `marks`: their fingerprints as far as that
    decode gave them (`ImageSet.film_marks`: a model of another size); any other file is decoded here at FILM_SIZE."""
    from pneumoscan.data.cache import cached_file_rows
    from pneumoscan.data.labels import Sample

    for given, what in ((images, "images"), (marks, "marks")):
        if given is not None and len(given) != len(paths):
            raise ValueError(f"{len(given)} {what} for {len(paths)} paths")
    if not len(paths):  # no cache entry for no files
        return []

    def computed() -> list[bytes | None]:
        if images is not None and len(images) and np.shape(images[0]) == (FILM_SIZE, FILM_SIZE):
            found = [film_fingerprint(film) for film in images]
        else:
            found = list(marks) if marks is not None else [None] * len(paths)
            missing = [i for i, mark in enumerate(found) if mark is None]
            for i, film in zip(missing, _decoded([paths[i] for i in missing])):
                found[i] = None if film is None else film_fingerprint(film)
        return [None if mark is None else bytes.fromhex(mark) for mark in found]

    samples = [Sample(Path(path), 0) for path in paths]  # one label for all: the cache key needs one, nothing reads it
    rows = cached_file_rows(samples, FILM_ENTRY, FILM_SIZE, FILM_HEX // 2, computed,
                            None if cache_dir is None else Path(cache_dir), noun="film fingerprints")
    return [None if row is None else row.hex() for row in rows]


def film_distances(marks: Sequence[str], known: np.ndarray) -> np.ndarray:
    """For each of `marks`, the fewest bits in which it differs from any of the `known` rows (a large number when
    there are none)."""
    nearest = np.full(len(marks), FILM_HEX * 4 + 1, dtype=np.int64)
    if not len(known) or not len(marks):
        return nearest
    rows = np.array([np.frombuffer(bytes.fromhex(m), dtype=np.uint8) for m in marks])
    chunk = max(1, 1_000_000 // len(known))  # tens of MB of differing bytes at a time
    for start in range(0, len(rows), chunk):
        differ = rows[start:start + chunk, None, :] ^ known[None, :, :]
        nearest[start:start + chunk] = _bit_counts(differ).sum(axis=2, dtype=np.int64).min(axis=1)
    return nearest


def _bit_counts(values: np.ndarray) -> np.ndarray:
    """The set bits of each uint8 (numpy 2's bitwise_count, else a lookup table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    return np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1, dtype=np.uint8)[values]


def _decoded(paths: Sequence[str | os.PathLike]) -> list[np.ndarray | None]:
    """Each path decoded at FILM_SIZE (None when it cannot be). A film the machine ran out of memory for is no
    unreadable film (its fingerprint missing would let it pass as unseen): decoded again alone after the others, as the
    image cache does; DecodeOutOfMemory when it runs short even so."""
    from pneumoscan.data.cache import decode_each
    from pneumoscan.data.preprocess import load_image

    films: list[np.ndarray | None] = [None] * len(paths)

    def read(index: int) -> None:
        films[index] = load_image(paths[index], FILM_SIZE)

    decode_each(len(paths), read, lambda err: None)
    return films


def seen_in_training(paths: Sequence[Path], training: dict[str, Any],
                     images: Sequence[np.ndarray] | np.ndarray | None = None,
                     cache_dir: str | os.PathLike | None = None,
                     marks: Sequence[str | None] | None = None) -> list[Path]:
    """Those of `paths` that are a film the model was trained or validated on: byte-identical to one, or the same
    film by its film fingerprint (re-encoded, resized, a little brighter or darker). `images`, `cache_dir`, `marks`:
    as `film_fingerprints` takes them (decoded only when the record holds film fingerprints)."""
    known, films = training_fingerprints(training), training_film_fingerprints(training)
    if not known and not len(films):
        return []
    by_bytes = [mark in known for mark in fingerprints(paths)] if known else [False] * len(paths)
    by_film = [False] * len(paths)
    if len(films):
        found = film_fingerprints(paths, images, cache_dir, marks)
        readable = [i for i, mark in enumerate(found) if mark is not None]
        near = film_distances([found[i] for i in readable], films) <= FILM_MAX_DISTANCE
        for i, hit in zip(readable, near):
            by_film[i] = bool(hit)
    return [path for path, mine, same in zip(paths, by_bytes, by_film) if mine or same]


def duplicate_warnings(parts: dict[str, list[Sample]], data: str, harm: str | None = TAUGHT_BOTH) -> list[str]:
    """Warnings about byte-identical files among the images of `data`, in named `parts` (train and val for a
    training run; the one split scored by evaluate or set-threshold): a film under both labels (`harm` says what
    that does here; None where labels are unused, as in pretraining: not said), and, with `train` and `val` parts, a
    validation film that is a copy of a training one (validation, and so early stopping and the threshold, then
    scores a film the model learnt); empty when there are none."""
    from pneumoscan import CLASS_NAMES

    named = [(part, s) for part, samples in parts.items() for s in samples]
    groups: dict[str, list[tuple[str, Sample]]] = {}
    for (part, sample), mark in zip(named, fingerprints(s.path for _, s in named)):
        if mark:
            groups.setdefault(mark, []).append((part, sample))
    both_labels = [g for g in groups.values() if len({s.label for _, s in g}) > 1] if harm else []
    copied = [g for g in groups.values() if {"train", "val"} <= {part for part, _ in g}]

    def example(group: list[tuple[str, Sample]]) -> str:
        return " = ".join(f"{s.path} ({CLASS_NAMES[s.label]}{f', {part}' if len(parts) > 1 else ''})"
                          for part, s in group[:2])

    listed = f"`pneumoscan audit {shell_word(data)}` lists them"
    found = []
    if both_labels:
        carry = "carries" if len(both_labels) == 1 else "carry"
        found.append(f"{counted(len(both_labels), 'group')} of byte-identical images {carry} both labels, e.g. "
                     f"{example(both_labels[0])}: {harm}; keep the copy with the right label and remove the other "
                     f"({listed})")
    if copied:
        found.append(f"{counted(len(copied), 'validation image')} {'is' if len(copied) == 1 else 'are'} "
                     f"byte-identical to training images, e.g. "
                     f"{example(copied[0])}, so validation (early stopping, threshold) scores films the model learnt; "
                     f"remove the copies or give them one patient ({listed})")
    return found
