from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pneumoscan.data.cache import cache_key, load_image_set
from pneumoscan.data.layout import Sample
from pneumoscan.data.preprocess import load_image
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
