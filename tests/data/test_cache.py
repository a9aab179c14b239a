from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import pneumoscan.data.cache as cache_module

from pneumoscan.data.cache import cache_key, load_image_set
from pneumoscan.data.layout import Sample
from pneumoscan.data.preprocess import load_image
from pneumoscan.errors import InputError
from tests.conftest import write_xray


def _samples(tmp_path: Path) -> list[Sample]:
    return [Sample(write_xray(tmp_path / f"IM-{i:04d}-0001.png", i % 2, i), i % 2) for i in range(6)]


def test_cache_matches_direct_decode_and_is_reused(tmp_path: Path) -> None:
    samples = _samples(tmp_path)
    cache = tmp_path / "cache"
    first = load_image_set(samples, 24, cache)
    assert first.images.shape == (6, 24, 24) and first.images.dtype == np.uint8
    for sample, image in zip(samples, first.images):
        assert np.array_equal(image, load_image(sample.path, 24))
    files = sorted(cache.iterdir())
    second = load_image_set(samples, 24, cache)
    assert isinstance(second.images, np.memmap)
    assert sorted(cache.iterdir()) == files
    assert np.array_equal(second.images, first.images)


def test_cache_invalidated_by_change_and_size(tmp_path: Path) -> None:
    samples = _samples(tmp_path)
    key = cache_key(samples, 24)
    assert cache_key(samples, 32) != key
    write_xray(samples[0].path, 1, 999)
    os.utime(samples[0].path, ns=(1, 1))
    assert cache_key(samples, 24) != key


def test_unreadable_files_are_skipped_and_listed(tmp_path: Path) -> None:
    samples = _samples(tmp_path)
    bad = tmp_path / "IM-9999-0001.png"
    bad.write_bytes(b"not an image")
    result = load_image_set(samples + [Sample(bad, 0)], 16, tmp_path / "cache")
    assert len(result.samples) == 6 and len(result.images) == 6
    assert len(result.skipped) == 1 and "IM-9999-0001.png" in result.skipped[0]
    again = load_image_set(samples + [Sample(bad, 0)], 16, tmp_path / "cache")
    assert again.skipped == result.skipped and len(again.images) == 6


def test_rewrite_that_keeps_size_and_mtime_invalidates(tmp_path: Path) -> None:
    samples = [Sample(write_xray(tmp_path / f"IM-{i:04d}-0001.bmp", 0, i), 0) for i in range(2)]
    first = load_image_set(samples, 16, tmp_path / "cache")
    stat = samples[0].path.stat()
    write_xray(samples[0].path, 1, 99)  # BMP: same byte size, new pixels
    os.utime(samples[0].path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert samples[0].path.stat().st_size == stat.st_size and samples[0].path.stat().st_mtime_ns == stat.st_mtime_ns
    second = load_image_set(samples, 16, tmp_path / "cache")
    assert np.array_equal(second.images[0], load_image(samples[0].path, 16))
    assert not np.array_equal(second.images[0], first.images[0])


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage_meta", "meta_mismatch"])
def test_corrupt_cache_entry_is_rebuilt(tmp_path: Path, damage: str) -> None:
    samples = _samples(tmp_path)
    cache = tmp_path / "cache"
    first = np.array(load_image_set(samples, 24, cache).images)
    array_path, meta_path = next(cache.glob("*.npy")), next(cache.glob("*.json"))
    if damage == "truncate":
        array_path.write_bytes(array_path.read_bytes()[:300])
    elif damage == "empty":
        array_path.write_bytes(b"")
    elif damage == "garbage_meta":
        meta_path.write_text("{")
    else:
        meta_path.write_text(json.dumps({"ok": [True] * 5, "errors": [], "size": 24, "n": 5}))
    again = load_image_set(samples, 24, cache)
    assert len(again.samples) == 6 and np.array_equal(again.images, first)
    assert np.array_equal(load_image_set(samples, 24, cache).images, first)
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".npy"]  # no temporary files left


def test_cached_failure_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = _samples(tmp_path)
    real = cache_module.load_image

    def missing_decoder(path: Path, size: int) -> np.ndarray:
        if path == samples[0].path:
            raise InputError(f"{path}: install the decoder")
        return real(path, size)

    monkeypatch.setattr(cache_module, "load_image", missing_decoder)
    assert len(load_image_set(samples, 16, tmp_path / "cache").skipped) == 1
    monkeypatch.setattr(cache_module, "load_image", real)  # e.g. the decoder plugin is now installed
    again = load_image_set(samples, 16, tmp_path / "cache")
    assert again.skipped == [] and len(again.images) == 6


def test_unwritable_cache_dir_keeps_images_in_memory(tmp_path: Path) -> None:
    samples = _samples(tmp_path)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.warns(UserWarning, match=r"image cache .*file.*--cache-dir"):
        result = load_image_set(samples, 16, not_a_folder)
    assert len(result.images) == 6
    assert np.array_equal(result.images[0], load_image(samples[0].path, 16))


def test_full_cache_disk_warns_and_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = _samples(tmp_path)
    cache = tmp_path / "cache"

    def disk_full(path: Path, images: np.ndarray) -> None:
        Path(path).write_bytes(b"\x93NUMPY partial")
        raise OSError(28, "No space left on device")  # as a failed write reports it: no file name

    monkeypatch.setattr(cache_module.np, "save", disk_full)
    with pytest.warns(UserWarning, match="No space left on device"):
        result = load_image_set(samples, 16, cache)
    assert len(result.images) == 6 and list(cache.iterdir()) == []


def test_cache_invalidated_by_decoder_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import PIL

    samples = _samples(tmp_path)
    key = cache_key(samples, 24)
    monkeypatch.setattr(PIL, "__version__", "0.0.1")  # a new Pillow may decode or resize differently
    assert cache_key(samples, 24) != key


def test_two_threads_writing_one_entry_do_not_collide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    samples = _samples(tmp_path)
    both_saving = threading.Barrier(2, timeout=10)
    real_save = np.save

    def save_together(path: Path, images: np.ndarray) -> None:  # both temporary files written before either is renamed
        both_saving.wait()
        real_save(path, images)
        both_saving.wait()

    monkeypatch.setattr(cache_module.np, "save", save_together)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ThreadPoolExecutor(2) as pool:
            results = [f.result() for f in [pool.submit(load_image_set, samples, 16, tmp_path / "cache", "t", False)
                                            for _ in range(2)]]
    assert all(isinstance(r.images, np.memmap) and len(r.images) == 6 for r in results)
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".json", ".npy"]
