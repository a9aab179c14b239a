"""Decoded, resized images cached on disk as one memory-mapped uint8 array per file list."""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pneumoscan.data.layout import Sample
from pneumoscan.data.preprocess import PREPROCESS_VERSION, load_image
from pneumoscan.errors import InputError


def default_cache_dir() -> Path:
    """`$PNEUMOSCAN_CACHE`, else `~/.cache/pneumoscan`."""
    return Path(os.environ.get("PNEUMOSCAN_CACHE", Path.home() / ".cache" / "pneumoscan"))


@dataclass
class ImageSet:
    """Images of `samples` as a (N, size, size) uint8 array; unreadable files are left out and listed."""

    samples: list[Sample]
    images: np.ndarray
    skipped: list[str]

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)


def cache_key(samples: list[Sample], size: int) -> str:
    """Hash of preprocessing version, size and every file's path, byte size and modification time."""
    digest = hashlib.sha256(f"v{PREPROCESS_VERSION}:{size}".encode())
    for sample in samples:
        stat = sample.path.stat()
        digest.update(f"|{sample.path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{sample.label}".encode())
    return digest.hexdigest()[:32]


def _decode_all(samples: list[Sample], size: int, desc: str, progress: bool) -> tuple[np.ndarray, list[bool], list[str]]:
    images = np.zeros((len(samples), size, size), dtype=np.uint8)
    ok = [False] * len(samples)
    errors: list[str] = []

    def work(index: int) -> None:
        try:
            images[index] = load_image(samples[index].path, size)
            ok[index] = True
        except InputError as err:
            errors.append(str(err))

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        list(tqdm(pool.map(work, range(len(samples))), total=len(samples), desc=desc, unit="img", leave=False,
                  disable=not progress))
    return images, ok, sorted(errors)


def load_image_set(
    samples: list[Sample], size: int, cache_dir: Path | None = None, desc: str = "decoding", progress: bool = True
) -> ImageSet:
    """Decoded images for `samples`, from the cache when inputs are unchanged, else decoded and cached."""
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    key = cache_key(samples, size)
    array_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if array_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        images = np.load(array_path, mmap_mode="r")
        ok = meta["ok"]
        errors = meta["errors"]
    else:
        images, ok, errors = _decode_all(samples, size, desc, progress)
        images = images[np.array(ok, dtype=bool)]
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = array_path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, images)
        os.replace(tmp, array_path)
        tmp_meta = meta_path.with_suffix(f".{os.getpid()}.tmp")
        tmp_meta.write_text(json.dumps({"ok": ok, "errors": errors, "size": size, "n": len(samples)}))
        os.replace(tmp_meta, meta_path)
        images = np.load(array_path, mmap_mode="r")
    kept = [s for s, good in zip(samples, ok) if good]
    return ImageSet(kept, images, errors)
