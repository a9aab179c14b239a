"""Decoded, resized images cached on disk as one memory-mapped uint8 array per file list (with each file's grey-level
count, the guard's file cues: colourfulness, two-tone share, dither energy, peak excess, and a DICOM's view when not
frontal, by Modality, View Position or view codes), and rows of bytes computed from such decodes (the film
fingerprints), within a size limit."""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL

from pneumoscan import CLASS_NAMES
from pneumoscan.data.cache_limit import MAX_GB_ENV, evict, format_bytes, mark_used, max_cache_bytes
from pneumoscan.data.decode import not_frontal_view, read_path, reading_film
from pneumoscan.data.file_cues import colourfulness, jpeg_cues
from pneumoscan.data.labels import Sample
from pneumoscan.data.pixels import out_of_memory
from pneumoscan.data.preprocess import (
    PREPROCESS_VERSION,
    load_image,
    load_image_levels_rgb_and_at,
    load_image_levels_rgb_and_gray,
)
from pneumoscan.errors import DecodeOutOfMemory, InputError, one_name, option, warn
from pneumoscan.progress import progress_bar

# Bump when an entry's contents change: entries of an older format get another key, so they are decoded again.
# 2: the .json lists each readable file's grey levels. 3: and its colourfulness and two-tone share. 4: and its
# dither energy, and its View Position when not frontal (`not_frontal_view`). 5: the dither energy NaN where the rule
# does not measure (not a JPEG, or under 128 px; some format-4 entries hold 0 or a measure there). 6: and its peak
# excess (the posterised rule). 7: the dither energy of 8-bit PNG, TIFF and BMP files too (format 6 holds NaN
# there). 8: a PNG with a transparency entry measured composited on black, as the decoder gives it (format 7: its
# stored levels). 9: peak excess with the edges' levels and busy edge lines left out (e406b40; format 8 may hold the
# flat-lines-only measure). 10: a DICOM's view from its View Code Sequence too when its View Position is empty or
# absent (format 9 holds None there). 11: the View Code table holds every lateral or oblique code of CID 4010 (format
# 10 holds None for a medial-lateral, lateral-medial, medial, medio-lateral, latero-medial or frontal oblique film),
# and a View Position of no known term ('LEFT LATERAL') yields to the View Code Sequence (format 10 holds None there).
# 12: a View Position is read by its words: one lateral, decubitus or oblique word decides ('AP LLD', 'XTABLE LATERAL',
# 'LAO'; format 11 holds None there), else AP or PA among others ('AP SUPINE'; format 11 holds a lateral code there).
# 13: the abbreviations DECUB, OBL and SWIMMER are such words too ('AP DECUB', 'PA OBL', "SWIMMER'S"; format 12 holds
# None there). 14: cross-table View Position words ('XTABLE' alone), CID 4010's sagittal code, a code in any View Code
# Sequence item, and decubitus or cross-table modifier codes and projection eponymous names (format 13 holds None there).
# 15: each view as where the header says it and what ('DICOM View Position LL'); 'X-TABLE', lordotic, apical and
# axial views, SNOMED RT and SNOMED 3 modifier codes; a Projection Eponymous Name only by a CID 4012 code (a local code
# passes). 16: CID 4010's prior codes (SRT R-10218, right anterior oblique; R-10222, sagittal) refuse a film, and two
# View Position words are read as one only as XTABLE or CROSSTABLE (format 15 refused 'AP R L' and 'AP L AT'), and
# CID 4010's cranio-caudal and caudo-cranial (axial) view codes refuse a film (format 15 holds None there). 17: every
# CID 4010 view code but AP, PA and frontal refuses a film (tangential, skull, foot, dental, specimen), and CID 501's
# other codes of the refused views (format 16 holds None there); a cranio-caudal or caudo-cranial code beside an AP, PA
# or frontal item is its tilt and passes (format 16 holds that axial view there); a Modality of CID 33 other than
# radiography's, or an object's without a picture (PR, KO, SR...), refuses a film ('DICOM Modality CT (Computed
# Tomography)'; format 16 holds None there).
CACHE_FORMAT = 17


def default_cache_dir() -> Path:
    """`$PNEUMOSCAN_CACHE`, else `~/.cache/pneumoscan`."""
    return Path(os.environ.get("PNEUMOSCAN_CACHE", Path.home() / ".cache" / "pneumoscan"))


@dataclass
class ImageSet:
    """Images of `samples` as a (N, size, size) uint8 array; unreadable files are left out and listed. `levels`: the
    grey levels of each file as decoded, before resizing (the guard's grey-level rule); `colours`, `tones`, `dithers`
    and `peaks`: each file's `colourfulness`, two-tone share, dither energy and peak excess (`jpeg_cues`; the guard's
    other file cues); `views`: each file's `not_frontal_view` (where a DICOM's header says it is no frontal film, and
    what: 'DICOM View Position LL'; else None); each None when not known.
    `film_marks`: each file's film fingerprint where its decode gave it (`load_image_set(..., film_marks=True)`),
    None for a file whose fingerprint needs a decode of its own."""

    samples: list[Sample]
    images: np.ndarray
    skipped: list[str]
    levels: np.ndarray | None = None
    colours: np.ndarray | None = None
    tones: np.ndarray | None = None
    film_marks: list[str | None] | None = None
    views: list[str | None] | None = None
    dithers: np.ndarray | None = None
    peaks: np.ndarray | None = None

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    @property
    def absent_classes(self) -> list[str]:
        """Class names with no readable image here (metrics and training need both)."""
        return [name for label, name in enumerate(CLASS_NAMES) if not (self.labels == label).any()]


@functools.cache
def _pydicom_version() -> str:
    try:
        return importlib.metadata.version("pydicom")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def decoder_versions() -> str:
    """Versions of the decoding libraries (Pillow, pydicom): an upgrade can change the decoded pixels."""
    return f"pillow {PIL.__version__}, pydicom {_pydicom_version()}"


def cache_key(samples: list[Sample], size: int) -> str:
    """Hash of preprocessing version, cache format, decoder versions, size and every file's path, inode, byte size,
    modification and status-change times (the latter changes on every rewrite, even one that restores the mtime)."""
    digest = hashlib.sha256(f"v{PREPROCESS_VERSION}:c{CACHE_FORMAT}:{decoder_versions()}:{size}".encode())
    for sample in samples:
        try:
            stat = sample.path.stat()
            mark = f"{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}"
        except OSError:  # a broken link or a vanished file: decoding reports it
            mark = "unreadable"
        digest.update(f"|{sample.path.resolve()}:{mark}:{sample.label}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:32]


# images, readable or not, and per readable file: grey levels, colourfulness, two-tone share, dither energy,
# not-frontal view, peak excess. Not the errors of the unreadable files: a hit reads those files again
# (`_failures_persist`); an entry of this format written before still lists them, and is read all the same.
_Entry = tuple[np.ndarray, list[bool], np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str | None], np.ndarray]


def _read_entry(array_path: Path, meta_path: Path, n: int, size: int) -> _Entry | None:
    """A cached entry, or None when it is missing, unreadable (truncated, corrupt) or does not fit `n` files of `size`."""
    try:
        meta = json.loads(meta_path.read_text())
        images = np.load(array_path, mmap_mode="r")
        ok = [bool(good) for good in meta["ok"]]
        levels = np.array([int(v) for v in meta["levels"]], dtype=np.int64)
        colours, tones, dithers, peaks = (np.array([float(v) for v in meta[k]], dtype=np.float64)
                                          for k in ("colours", "tones", "dithers", "peaks"))
        views = [None if v is None else str(v) for v in meta["views"]]  # an entry without them is decoded again
    except (OSError, ValueError, EOFError, KeyError, TypeError):
        return None
    if len(ok) != n or images.dtype != np.uint8 or images.shape != (sum(ok), size, size) or \
            not len(levels) == len(colours) == len(tones) == len(dithers) == len(views) == len(peaks) == sum(ok):
        return None
    return images, ok, levels, colours, tones, dithers, views, peaks


def _stopped(err: DecodeOutOfMemory) -> DecodeOutOfMemory:
    """`err`, of a film decoded alone, for a command that stops on it: a film left out for lack of memory would train,
    or score, another set than the one given."""
    alone = out_of_memory(err.label, err.width, err.height, alone=True)
    return DecodeOutOfMemory(f"{alone} (stopped: leaving the film out would change the set of films)", err.label,
                             err.width, err.height)


def _failures_persist(samples: list[Sample], ok: list[bool], size: int) -> list[str] | None:
    """The errors of the files the cache lists as unreadable, read again (sorted, as `_decode_all` lists them), when
    every one still fails; None when one now reads (a fixed file or a newly installed decoder must not stay
    skipped). Each error names its file as these samples do: the entry's key resolves the paths, so it serves a run
    that names the folder otherwise (`data` or `/abs/data` for `../data`), which its own errors must not misname."""
    errors: list[str] = []
    for sample, good in zip(samples, ok):
        if not good:
            try:
                load_image(sample.path, size)
            except DecodeOutOfMemory as err:
                raise _stopped(err) from None
            except InputError as err:
                errors.append(str(err))
                continue
            return None
    return sorted(errors)


def decode_each(count: int, read: Callable[[int], None], unreadable: Callable[[InputError], None],
                wrap: Callable[[Iterator[None]], Iterable[None]] = iter) -> None:
    """`read(i)` for each i < `count`, one per core (`wrap`: around the finished reads, e.g. a progress bar), and
    `unreadable(err)` for each read that raises InputError. A read that ran the machine out of memory is no unreadable
    file: read again alone after the others, where DecodeOutOfMemory, raised even so, propagates."""
    short: list[int] = []

    def work(index: int) -> None:
        try:
            read(index)
        except DecodeOutOfMemory:
            short.append(index)
        except InputError as err:
            unreadable(err)

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        try:
            list(wrap(pool.map(work, range(count))))
        except BaseException:  # Ctrl+C, SIGTERM: stop once the reads running end, not after every file still queued
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    for index in sorted(short):  # decoded together with others: again, alone
        try:
            read(index)
        except DecodeOutOfMemory:
            raise
        except InputError as err:
            unreadable(err)


def _decode_all(samples: list[Sample], size: int, desc: str, progress: bool,
                marks: list[str | None] | None = None) -> tuple[_Entry, list[str]]:
    """Every file decoded once: its resized image, its grey levels, its file cues (zero for unreadable files) and its
    `not_frontal_view` (from the bytes the decode read), with the errors of the unreadable files (sorted); and into
    `marks`, when given, each file's film fingerprint where that decode gives it (`film_fingerprints`)."""
    from pneumoscan.data.fingerprint import FILM_SIZE, film_fingerprint

    images = np.zeros((len(samples), size, size), dtype=np.uint8)
    levels = np.zeros(len(samples), dtype=np.int64)
    colours, tones, dithers, peaks = (np.zeros(len(samples)) for _ in range(4))
    views: list[str | None] = [None] * len(samples)
    ok = [False] * len(samples)
    errors: list[str] = []

    def read(index: int) -> None:
        try:
            data, label = read_path(samples[index].path)  # once: the decode and the guard's cues all read it
        except MemoryError as exc:
            raise out_of_memory(one_name(os.fsdecode(samples[index].path))) from exc
        with reading_film(label, data):
            if marks is None:
                images[index], levels[index], rgb, gray, _, deep = load_image_levels_rgb_and_gray(data, size,
                                                                                                  name=label)
            else:
                images[index], levels[index], rgb, film, gray, deep = load_image_levels_rgb_and_at(
                    data, size, FILM_SIZE, name=label)
                marks[index] = None if film is None else film_fingerprint(film)
            colours[index] = colourfulness(data, rgb=rgb)
            # a lossless file's cues are measured on the pixels just decoded, not on a second decode
            tones[index], dithers[index], peaks[index] = jpeg_cues(data, gray=gray, deep=deep)
            views[index] = not_frontal_view(data)
        ok[index] = True

    try:
        decode_each(len(samples), read, lambda err: errors.append(str(err)),
                    lambda done: progress_bar(done, total=len(samples), desc=desc, unit="img", progress=progress))
    except DecodeOutOfMemory as err:  # even alone: the film, not the number decoded at once
        raise _stopped(err) from None
    return (images, ok, levels, colours, tones, dithers, views, peaks), sorted(errors)


def _write_entry(array_path: Path, meta_path: Path, images: np.ndarray, meta_text: str) -> None:
    """Write an entry through temporary files renamed into place (readers never see half of one); no
    temporary file is left behind when writing fails."""
    array_path.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{threading.get_ident()}"  # two threads of one process must not share a file
    tmp, tmp_meta = array_path.with_suffix(f".{tag}.tmp.npy"), meta_path.with_suffix(f".{tag}.tmp")
    try:
        np.save(tmp, images)
        os.replace(tmp, array_path)
        tmp_meta.write_text(meta_text)
        os.replace(tmp_meta, meta_path)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_meta.unlink(missing_ok=True)


def _keep(cache_dir: Path, key: str, images: np.ndarray, meta_text: str, limit: float,
          noun: str = "images", redo: str = "decoded") -> np.ndarray:
    """`images` written as the entry `key` and memory-mapped back, the least recently used other entries evicted to
    stay within `limit` bytes; or, with a warning, `images` themselves when they cannot or may not be written (and
    without one when another run removed the entry before it could be mapped). `noun`, `redo`: what the warnings
    call the entry's contents and what is done to them again next time."""
    array_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    size = images.nbytes + len(meta_text) + 128  # the .npy header takes at most 128 bytes here
    if size > limit:
        warn(f"image cache {cache_dir}: these {noun} take {format_bytes(size)}, more than its "
             f"{format_bytes(limit)} limit; {noun} kept in memory and {redo} again next time; raise "
             f"${MAX_GB_ENV} to cache them")
        return images
    try:
        evict(cache_dir, limit - size)  # room first: the folder never holds more than the limit, even while writing
        _write_entry(array_path, meta_path, images, meta_text)
        mapped = np.load(array_path, mmap_mode="r")  # mapped before another process's eviction can remove it
        evict(cache_dir, limit, keep=key)  # entries other processes wrote meanwhile
        return mapped
    except FileNotFoundError:  # another run removed the entry (its eviction, --clear) before it was mapped
        return images
    except (FileExistsError, NotADirectoryError):  # a file where the folder, or one of its parents, should be
        warn(f"image cache {cache_dir}: a file, not a folder (or inside one); {noun} kept in memory and {redo} again "
             f"next time; point {option('cache_dir')} (or $PNEUMOSCAN_CACHE) to a folder")
        return images
    except OSError as err:  # unwritable or full: the decoded images are still good, only not kept
        reason = err.strerror or f"writing failed ({err}; is the disk full?)"
        warn(f"image cache {cache_dir}: {reason}; {noun} kept in memory and {redo} again "
             f"next time; free space there or point {option('cache_dir')} (or $PNEUMOSCAN_CACHE) to a writable "
             f"folder")
        return images


def load_image_set(
    samples: list[Sample], size: int, cache_dir: Path | None = None, desc: str = "decoding", progress: bool = True,
    film_marks: bool = False,
) -> ImageSet:
    """Decoded images for `samples`, from the cache when inputs are unchanged, else decoded and cached (kept in
    memory, with a warning, when the cache folder cannot be written or the entry would exceed the cache's size
    limit; without a warning when `$PNEUMOSCAN_CACHE_MAX_GB` is 0, which turns the cache off). `film_marks`: the
    caller will fingerprint the films (`film_fingerprints`), so a decode at another size than FILM_SIZE also gives
    their film fingerprints where it can (`ImageSet.film_marks`; None after a cache hit: those are cached too)."""
    from pneumoscan.data.fingerprint import FILM_SIZE

    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    limit = max_cache_bytes()
    key = cache_key(samples, size)
    array_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    entry = _read_entry(array_path, meta_path, len(samples), size) if limit > 0 else None
    marks: list[str | None] | None = None
    if entry is not None and (errors := _failures_persist(samples, entry[1], size)) is not None:
        images, ok, levels, colours, tones, dithers, views, peaks = entry
        mark_used(meta_path)
    else:
        marks = [None] * len(samples) if film_marks and size != FILM_SIZE else None  # at FILM_SIZE: the images
        (images, ok, levels, colours, tones, dithers, views, peaks), errors = _decode_all(samples, size, desc,
                                                                                          progress, marks)
        if not all(ok):
            readable = np.array(ok, dtype=bool)
            images, levels, colours, tones, dithers, peaks = (x[readable] for x in (images, levels, colours, tones,
                                                                                      dithers, peaks))
            views = [view for view, good in zip(views, ok) if good]
            marks = None if marks is None else [mark for mark, good in zip(marks, ok) if good]
        if limit > 0:
            meta_text = json.dumps({"ok": ok, "size": size, "n": len(samples),
                                    "levels": levels.tolist(), "colours": colours.tolist(), "tones": tones.tolist(),
                                    "dithers": dithers.tolist(), "views": views, "peaks": peaks.tolist()})
            images = _keep(cache_dir, key, images, meta_text, limit)
    kept = [s for s, good in zip(samples, ok) if good]
    return ImageSet(kept, images, errors, levels, colours, tones, marks, views, dithers, peaks)


def cached_file_rows(samples: list[Sample], kind: str, size: int, width: int,
                     compute: Callable[[], list[bytes | None]], cache_dir: Path | None = None,
                     noun: str = "rows") -> list[bytes | None]:
    """A row of `width` bytes per file of `samples` (None for a file that cannot be decoded at `size`), computed from
    its decode at `size` (`kind` names what: the film fingerprints): from the cache entry of `kind` for these files
    when they are unchanged (keyed as `cache_key` keys their images), else `compute()`d and kept there, with
    `load_image_set`'s size limit, warnings (which call the rows `noun`) and files listed as unreadable tried
    again."""
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    limit = max_cache_bytes()
    key = hashlib.sha256(f"{kind}:{cache_key(samples, size)}".encode()).hexdigest()[:32]
    array_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    rows = _read_rows(array_path, meta_path, len(samples), kind, width) if limit > 0 else None
    if rows is not None and _failures_persist(samples, [row is not None for row in rows], size) is not None:
        mark_used(meta_path)
        return rows
    rows = compute()
    if limit > 0:
        ok = [row is not None for row in rows]
        array = np.frombuffer(b"".join(row for row in rows if row is not None), dtype=np.uint8).reshape(sum(ok), width)
        _keep(cache_dir, key, array, json.dumps({"kind": kind, "ok": ok, "n": len(samples)}), limit, noun,
              "computed")
    return rows


def _read_rows(array_path: Path, meta_path: Path, n: int, kind: str, width: int) -> list[bytes | None] | None:
    """The rows of a `cached_file_rows` entry, or None when it is missing, unreadable or does not fit."""
    try:
        meta = json.loads(meta_path.read_text())
        array = np.load(array_path)
        ok = [bool(good) for good in meta["ok"]]
        written_kind = meta["kind"]
    except (OSError, ValueError, EOFError, KeyError, TypeError):
        return None
    if written_kind != kind or len(ok) != n or array.dtype != np.uint8 or array.shape != (sum(ok), width):
        return None
    found = iter(array)
    return [next(found).tobytes() if good else None for good in ok]
