from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

import pneumoscan.data.cache as cache_module

from pneumoscan.data.cache import cache_key, load_image_set
from pneumoscan.data.labels import Sample
from pneumoscan.data.preprocess import load_image
from pneumoscan.errors import InputError
from tests.conftest import count_pil_decoders, dicom_bytes, disk_full, write_xray


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


def test_cache_keeps_each_files_grey_levels(tmp_path: Path) -> None:
    from PIL import Image

    from pneumoscan.data.preprocess import load_image_with_levels

    samples = _samples(tmp_path)
    binary = tmp_path / "IM-0100-0001.png"
    Image.fromarray(((np.indices((60, 60)).sum(0) % 2) * 255).astype(np.uint8)).convert("1").save(binary)
    unreadable = tmp_path / "IM-0101-0001.png"
    unreadable.write_bytes(b"not an image")
    samples += [Sample(unreadable, 0), Sample(binary, 1)]
    expected = [load_image_with_levels(s.path, 24)[1] for s in samples if s.path != unreadable]
    assert expected[-1] == 2 and min(expected[:-1]) > 16
    cache = tmp_path / "cache"
    first = load_image_set(samples, 24, cache)
    assert first.levels is not None and first.levels.tolist() == expected
    again = load_image_set(samples, 24, cache)
    assert isinstance(again.images, np.memmap)  # read back from the cache, not decoded again
    assert again.levels is not None and again.levels.tolist() == expected


def test_entry_of_an_older_format_is_decoded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = _samples(tmp_path)
    cache = tmp_path / "cache"
    monkeypatch.setattr(cache_module, "CACHE_FORMAT", 1)
    old_key = cache_key(samples, 24)
    monkeypatch.undo()
    assert cache_key(samples, 24) != old_key  # format 1 entries (no grey levels) are not read
    first = load_image_set(samples, 24, cache)
    meta_path = next(cache.glob("*.json"))
    meta = json.loads(meta_path.read_text())
    del meta["levels"]  # as written before the format had them, under the current key
    meta_path.write_text(json.dumps(meta))
    again = load_image_set(samples, 24, cache)
    assert again.levels is not None and again.levels.tolist() == first.levels.tolist()
    assert "levels" in json.loads(meta_path.read_text())  # rewritten



@pytest.mark.parametrize("key", ["tones", "dithers", "peaks"])
def test_entry_keeps_the_guards_file_cues(tmp_path: Path, key: str) -> None:
    """Colourfulness, the two-tone share, the dither energy and the peak excess of each readable file, measured once
    when the entry is built; an entry written without them (format 2, 3 without dither energies, 5 without peak
    excesses) is decoded again."""
    from pneumoscan.data.file_cues import colourfulness, jpeg_cues

    samples = [*_samples(tmp_path), *(Sample(write_xray(tmp_path / f"IM-{i:04d}-0002.jpeg", i % 2, i, 128), i % 2)
                                      for i in range(2))]  # JPEGs: the cues the full-size decode gives
    cache = tmp_path / "cache"
    first = load_image_set(samples, 24, cache)
    cues = [jpeg_cues(s.path) for s in first.samples]
    expected = ([colourfulness(s.path) for s in first.samples], [t for t, _, _ in cues], [d for _, d, _ in cues],
                [p for _, _, p in cues])
    np.testing.assert_array_equal([first.colours, first.tones, first.dithers, first.peaks], expected)
    assert any(d > 0 for d in expected[2]) and any(np.isnan(expected[2]))  # measured; NaN where the rule does not apply
    meta_path = next(cache.glob("*.json"))
    meta = json.loads(meta_path.read_text())
    del meta[key]
    meta_path.write_text(json.dumps(meta))
    again = load_image_set(samples, 24, cache)
    np.testing.assert_array_equal([again.colours, again.tones, again.dithers, again.peaks], expected)
    assert key in json.loads(meta_path.read_text())  # rewritten

def test_entry_keeps_each_dicoms_view_position_when_not_frontal(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A lateral DICOM's View Position is kept with its image, so evaluate refuses it as predict does without reading
    its header again; an entry written without them (format 3) is decoded again."""
    from tests.conftest import dicom_to_bytes, make_dicom, xray_pixels

    samples = _samples(tmp_path)
    for name, view in (("lateral.dcm", "LL"), ("frontal.dcm", "PA"), ("unstated.dcm", None)):
        ds = make_dicom(xray_pixels(0, len(name), 32), bits_stored=8)
        if view is not None:
            ds.ViewPosition = view
        (tmp_path / name).write_bytes(dicom_to_bytes(ds))
        samples.append(Sample(tmp_path / name, 0))
    (tmp_path / "broken.dcm").write_bytes(b"not an image")
    samples.insert(0, Sample(tmp_path / "broken.dcm", 1))  # unreadable: no view, and the others keep theirs
    expected = [None] * 6 + ["DICOM View Position LL", None, None]
    cache = tmp_path / "cache"
    assert load_image_set(samples, 24, cache).views == expected
    meta_path = next(cache.glob("*.json"))
    assert json.loads(meta_path.read_text())["views"] == expected

    def read_again(data: object) -> None:
        raise AssertionError("a header read again")

    with monkeypatch.context() as patch:
        patch.setattr(cache_module, "not_frontal_view", read_again)
        again = load_image_set(samples, 24, cache)
    assert isinstance(again.images, np.memmap) and again.views == expected
    meta = json.loads(meta_path.read_text())
    del meta["views"]  # as written before the format had them, under the current key
    meta_path.write_text(json.dumps(meta))
    assert load_image_set(samples, 24, cache).views == expected
    assert json.loads(meta_path.read_text())["views"] == expected  # rewritten


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


def test_a_cache_hit_names_unreadable_files_as_this_run_names_them(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "site" / "NORMAL"
    samples = [Sample(write_xray(data / f"IM-{i:04d}-0001.png", 0, i), 0) for i in range(3)]
    (data / "IM-9999-0001.png").write_bytes(b"not an image")
    samples.append(Sample(data / "IM-9999-0001.png", 0))
    monkeypatch.chdir(tmp_path)  # the first run names the folder from its parent, as `--data site` does
    relative = [Sample(s.path.relative_to(tmp_path), s.label) for s in samples]
    first = load_image_set(relative, 16, tmp_path / "cache")
    assert first.skipped == [f"{Path('site/NORMAL/IM-9999-0001.png')}: not a readable image (cannot identify image "
                             f"file); give a JPEG, PNG, TIFF, BMP or DICOM file"]
    monkeypatch.chdir(data)  # the next from the class folder itself: the same files, so the same entry
    here = [Sample(Path(s.path.name), s.label) for s in samples]
    again = load_image_set(here, 16, tmp_path / "cache")
    assert isinstance(again.images, np.memmap)  # a hit
    assert again.skipped == ["IM-9999-0001.png: not a readable image (cannot identify image file); give a JPEG, "
                             "PNG, TIFF, BMP or DICOM file"]


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
    real, real_with_levels = cache_module.load_image, cache_module.load_image_levels_rgb_and_gray

    def missing_decoder(decode):
        def load(source: Path | bytes, size: int, **named: str):  # a path, or bytes with their file's name
            if named.get("name", source) in (samples[0].path, str(samples[0].path)):
                raise InputError(f"{samples[0].path}: install the decoder")
            return decode(source, size, **named)
        return load

    monkeypatch.setattr(cache_module, "load_image", missing_decoder(real))
    monkeypatch.setattr(cache_module, "load_image_levels_rgb_and_gray", missing_decoder(real_with_levels))
    assert len(load_image_set(samples, 16, tmp_path / "cache").skipped) == 1
    # e.g. the decoder plugin is now installed
    monkeypatch.setattr(cache_module, "load_image", real)
    monkeypatch.setattr(cache_module, "load_image_levels_rgb_and_gray", real_with_levels)
    again = load_image_set(samples, 16, tmp_path / "cache")
    assert again.skipped == [] and len(again.images) == 6


def test_an_entry_keeps_no_error_text_and_one_with_them_is_still_a_hit(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A hit reads the unreadable files again for their errors (`_failures_persist`), yet every entry stored their
    texts (paths included) as well; an entry of this format written with them is still read, without a decode."""
    samples = _samples(tmp_path)
    samples[0].path.write_bytes(b"not an image")
    cache = tmp_path / "cache"
    first = load_image_set(samples, 16, cache)
    meta_path = next(cache.glob("*.json"))
    meta = json.loads(meta_path.read_text())
    assert "errors" not in meta and str(samples[0].path) not in meta_path.read_text()

    def no_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again: the entry was not used")

    monkeypatch.setattr(cache_module, "_decode_all", no_decode)
    for entry in (meta, {**meta, "errors": first.skipped}):  # as written now, and as before
        meta_path.write_text(json.dumps(entry))
        again = load_image_set(samples, 16, cache)
        assert again.skipped == first.skipped and np.array_equal(again.images, first.images)


def test_unwritable_cache_dir_keeps_images_in_memory(tmp_path: Path) -> None:
    samples = _samples(tmp_path)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    said = (r": a file, not a folder \(or inside one\); images kept in memory and decoded again next time; point "
            r"--cache-dir \(or \$PNEUMOSCAN_CACHE\) to a folder$")  # not 'File exists; ... free space there'
    for cache_dir in (not_a_folder, not_a_folder / "cache"):
        with pytest.warns(UserWarning, match=f"^image cache {re.escape(str(cache_dir))}{said}"):
            result = load_image_set(samples, 16, cache_dir)
        assert len(result.images) == 6
        assert np.array_equal(result.images[0], load_image(samples[0].path, 16))


def test_full_cache_disk_warns_and_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = _samples(tmp_path)
    cache = tmp_path / "cache"

    def full_save(path: Path, images: np.ndarray) -> None:
        Path(path).write_bytes(b"\x93NUMPY partial")
        raise disk_full()  # as a failed write reports it: no file name

    monkeypatch.setattr(cache_module.np, "save", full_save)
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


# -- size limit and least-recently-used eviction ---------------------------------------------------
def _is_entry(path: Path) -> bool:
    return path.suffix in (".npy", ".json") and len(path.stem) == 32


def _entry_keys(cache: Path) -> set[str]:
    return {p.stem for p in cache.iterdir() if _is_entry(p)}


def _entry_bytes(cache: Path) -> int:
    return sum(p.stat().st_size for p in cache.iterdir() if _is_entry(p))


def _set_used(cache: Path, key: str, seconds: int) -> None:
    os.utime(cache / f"{key}.json", (seconds, seconds))


def _limit_for(monkeypatch: pytest.MonkeyPatch, n_bytes: float) -> None:
    monkeypatch.setenv("PNEUMOSCAN_CACHE_MAX_GB", repr(n_bytes / 1e9))


@pytest.fixture
def four_sets(tmp_path: Path) -> list[list[Sample]]:
    """Four file lists of six images: at one image size, four cache entries of equal size."""
    return [_samples(tmp_path / f"set{i}") for i in range(4)]


def test_least_recently_used_entries_are_evicted_first(tmp_path: Path, four_sets: list[list[Sample]],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    keys = [cache_key(samples, 16) for samples in four_sets]
    for samples in four_sets[:3]:
        load_image_set(samples, 16, cache, progress=False)
    one_entry = _entry_bytes(cache) // 3
    for key, seconds in zip(keys[:3], (2000, 1000, 3000)):  # used: set1 longest ago, then set0, then set2
        _set_used(cache, key, seconds)
    (cache / "notes.txt").write_text("not an entry")
    (cache / "mine.npy").write_bytes(b"x" * 10_000)  # not named like an entry: left alone, not counted
    _limit_for(monkeypatch, 2 * one_entry + 100)
    load_image_set(four_sets[3], 16, cache, progress=False)
    assert _entry_keys(cache) == {keys[2], keys[3]}
    assert not (cache / f"{keys[0]}.json").exists() and not (cache / f"{keys[1]}.json").exists()
    assert (cache / "notes.txt").exists() and (cache / "mine.npy").exists()


def test_a_cache_hit_makes_an_entry_recently_used(tmp_path: Path, four_sets: list[list[Sample]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    keys = [cache_key(samples, 16) for samples in four_sets]
    for samples in four_sets[:2]:
        load_image_set(samples, 16, cache, progress=False)
    one_entry = _entry_bytes(cache) // 2
    _set_used(cache, keys[0], 1000)
    _set_used(cache, keys[1], 2000)
    hit = load_image_set(four_sets[0], 16, cache, progress=False)  # set0 read again: now the most recent
    assert isinstance(hit.images, np.memmap)
    _limit_for(monkeypatch, 2 * one_entry + 100)
    load_image_set(four_sets[2], 16, cache, progress=False)
    assert _entry_keys(cache) == {keys[0], keys[2]}


def test_the_cache_stays_within_its_limit_and_keeps_the_entry_just_written(
        tmp_path: Path, four_sets: list[list[Sample]], monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    cache = tmp_path / "cache"
    load_image_set(four_sets[0], 16, cache, progress=False)
    one_entry = _entry_bytes(cache)
    real_save, limit = np.save, 0.0

    def save(path: Path, images: np.ndarray) -> None:  # room is made before writing, not only after
        assert _entry_bytes(cache) + images.nbytes <= limit
        real_save(path, images)

    monkeypatch.setattr(cache_module.np, "save", save)
    # room for two and a half 16 px entries, then for one (and no more than one: smaller sizes after that)
    for limit, sizes in ((2.5 * one_entry, (16, 15, 14)), (one_entry + 1, (13, 12))):
        _limit_for(monkeypatch, limit)
        for size in sizes:
            for samples in four_sets:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    result = load_image_set(samples, size, cache, progress=False)
                assert isinstance(result.images, np.memmap)
                assert cache_key(samples, size) in _entry_keys(cache)
                assert _entry_bytes(cache) <= limit
    assert _entry_keys(cache) == {cache_key(four_sets[3], 12)}


def test_an_entry_larger_than_the_limit_is_kept_in_memory_with_one_warning(
        tmp_path: Path, four_sets: list[list[Sample]], monkeypatch: pytest.MonkeyPatch) -> None:
    import re
    import warnings

    cache = tmp_path / "cache"
    load_image_set(four_sets[0], 16, cache, progress=False)
    before = sorted(cache.iterdir())
    _limit_for(monkeypatch, 6 * 24 * 24)  # the pixels alone of six 24 px images: their entry is larger
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = load_image_set(four_sets[1], 24, cache, progress=False)
    assert len(caught) == 1
    assert re.fullmatch(rf"image cache {re.escape(str(cache))}: these images take [0-9.]+ kB, more than its "
                        rf"3.46 kB limit; images kept in memory and decoded again next time; "
                        rf"raise \$PNEUMOSCAN_CACHE_MAX_GB to cache them", str(caught[0].message))
    assert not isinstance(result.images, np.memmap) and len(result.images) == 6
    assert np.array_equal(result.images[0], load_image(four_sets[1][0].path, 24))
    assert sorted(cache.iterdir()) == before  # nothing written, nothing evicted for it


def test_a_limit_of_zero_turns_the_disk_cache_off(tmp_path: Path, four_sets: list[list[Sample]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    cache = tmp_path / "cache"
    load_image_set(four_sets[0], 16, cache, progress=False)
    before = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    monkeypatch.setenv("PNEUMOSCAN_CACHE_MAX_GB", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_image_set(four_sets[0], 16, cache, progress=False)
        other = load_image_set(four_sets[1], 16, cache, progress=False)
    assert not isinstance(again.images, np.memmap) and not isinstance(other.images, np.memmap)
    assert np.array_equal(other.images[0], load_image(four_sets[1][0].path, 16))
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == before  # not read (touched), written or evicted


@pytest.mark.parametrize("value", ["-1", "five", "5GB", "nan"])
def test_a_bad_limit_is_one_clear_error(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMOSCAN_CACHE_MAX_GB", value)
    with pytest.raises(InputError, match=r"PNEUMOSCAN_CACHE_MAX_GB=.*number of gigabytes"):
        load_image_set(_samples(tmp_path), 16, tmp_path / "cache", progress=False)


def test_no_limit_and_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoscan.data.cache_limit import max_cache_bytes

    assert max_cache_bytes() == 5e9
    monkeypatch.setenv("PNEUMOSCAN_CACHE_MAX_GB", " 0.5 ")
    assert max_cache_bytes() == 0.5e9
    monkeypatch.setenv("PNEUMOSCAN_CACHE_MAX_GB", "inf")
    assert max_cache_bytes() == float("inf")


def test_an_evicted_entry_stays_readable_where_it_is_memory_mapped(tmp_path: Path, four_sets: list[list[Sample]],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # e.g. a training run reading it while another run's new entry pushes it out: POSIX keeps an unlinked, mapped
    # file's pages until it is unmapped
    cache = tmp_path / "cache"
    in_use = load_image_set(four_sets[0], 16, cache, progress=False)
    expected = np.array(in_use.images)
    _limit_for(monkeypatch, _entry_bytes(cache) + 1)
    load_image_set(four_sets[1], 16, cache, progress=False)
    assert _entry_keys(cache) == {cache_key(four_sets[1], 16)}
    assert np.array_equal(np.array(in_use.images), expected)


def test_an_array_left_without_its_json_is_an_entry_and_temporary_files_are_not(
        tmp_path: Path, four_sets: list[list[Sample]], monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    load_image_set(four_sets[0], 16, cache, progress=False)
    one_entry = _entry_bytes(cache)
    orphan = cache / f"{'a' * 32}.npy"  # a write that died between its two renames
    orphan.write_bytes(b"x" * 1000)
    os.utime(orphan, (1, 1))
    temporary = cache / f"{'b' * 32}.123-456.tmp.npy"  # perhaps a write in progress in another process
    temporary.write_bytes(b"x" * 1000)
    _limit_for(monkeypatch, 2 * one_entry + 1100)  # the temporary file takes its share of the limit
    load_image_set(four_sets[1], 16, cache, progress=False)
    assert not orphan.exists() and temporary.exists()
    assert _entry_keys(cache) == {cache_key(four_sets[0], 16), cache_key(four_sets[1], 16)}


def test_the_entry_just_written_is_not_evicted_for_one_another_process_wrote_meanwhile(
        tmp_path: Path, four_sets: list[list[Sample]], monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    load_image_set(four_sets[0], 16, cache, progress=False)
    _limit_for(monkeypatch, _entry_bytes(cache) + 1)
    other = cache / f"{'c' * 32}.npy"
    real_write = cache_module._write_entry

    def write_while_another_process_writes(*args: object) -> None:
        real_write(*args)
        other.write_bytes(b"x" * 100)  # newer than ours
        os.utime(other, (time.time() + 60, time.time() + 60))

    monkeypatch.setattr(cache_module, "_write_entry", write_while_another_process_writes)
    result = load_image_set(four_sets[1], 16, cache, progress=False)
    assert isinstance(result.images, np.memmap)
    assert _entry_keys(cache) == {cache_key(four_sets[1], 16)}


def test_sizes_print_in_powers_of_ten_without_exponents() -> None:
    from pneumoscan.data.cache_limit import format_bytes

    assert [format_bytes(n) for n in (0, 999, 3456, 85.5e6, 5e9, 1234e9)] == \
        ["0 bytes", "999 bytes", "3.46 kB", "85.5 MB", "5 GB", "1,234 GB"]
    # sizes that round up to 1,000 of a unit print in the next one (they printed as '1e+03 MB')
    assert [format_bytes(n) for n in (999.7, 999_600, 999.96e6, 999.95e9, 994.9e6)] == \
        ["1 kB", "1 MB", "1 GB", "1,000 GB", "995 MB"]


# -- temporary files of killed writes ----------------------------------------------------------------
def _temporary(cache: Path, name: str, n_bytes: int, age_s: float) -> Path:
    """A temporary file as `_write_entry` names them, last modified `age_s` seconds ago."""
    path = cache / name
    path.write_bytes(b"x" * n_bytes)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_writing_an_entry_sweeps_temporary_files_untouched_for_an_hour(
        tmp_path: Path, four_sets: list[list[Sample]], monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    cache = tmp_path / "cache"
    load_image_set(four_sets[0], 16, cache, progress=False)
    killed = [_temporary(cache, f"{'a' * 32}.123-456.tmp.npy", 5000, 3660),  # SIGKILL between save and rename
              _temporary(cache, f"{'a' * 32}.123-456.tmp", 100, 7 * 86400)]
    in_progress = [_temporary(cache, f"{'b' * 32}.77-88.tmp.npy", 5000, 3540),  # written to a minute ago
                   _temporary(cache, f"{'c' * 32}.77-99.tmp", 100, -120)]  # a file server's clock ahead of ours
    mine = [_temporary(cache, "notes.tmp", 10, 7 * 86400), _temporary(cache, f"{'d' * 32}.tmp.npy", 10, 7 * 86400)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image_set(four_sets[1], 16, cache, progress=False)
    assert [p.exists() for p in killed + in_progress + mine] == [False, False, True, True, True, True]
    assert _entry_keys(cache) == {cache_key(four_sets[0], 16), cache_key(four_sets[1], 16)}


def test_temporary_files_count_against_the_limit(tmp_path: Path, four_sets: list[list[Sample]],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    keys = [cache_key(samples, 16) for samples in four_sets]
    load_image_set(four_sets[0], 16, cache, progress=False)
    one_entry = _entry_bytes(cache)
    in_progress = _temporary(cache, f"{'b' * 32}.77-88.tmp.npy", one_entry, 60)  # another run's write
    _limit_for(monkeypatch, 2 * one_entry + 100)  # room for two of the three
    load_image_set(four_sets[1], 16, cache, progress=False)
    assert _entry_keys(cache) == {keys[1]} and in_progress.exists()
    in_progress.unlink()  # that write failed, say
    _temporary(cache, f"{'c' * 32}.77-88.tmp.npy", 10 * one_entry, 4000)  # stale: swept, so it evicts nothing
    load_image_set(four_sets[2], 16, cache, progress=False)
    assert _entry_keys(cache) == {keys[1], keys[2]} and not (cache / f"{'c' * 32}.77-88.tmp.npy").exists()


def test_an_entry_another_run_removes_before_it_is_mapped_is_kept_in_memory_without_a_warning(
        tmp_path: Path, four_sets: list[list[Sample]], monkeypatch: pytest.MonkeyPatch) -> None:
    # e.g. two runs writing at once with room for one entry: the other's eviction removes ours right after its
    # rename; that warned "No such file or directory ... free space there or point --cache-dir to a writable folder"
    import warnings

    cache = tmp_path / "cache"
    real_write = cache_module._write_entry

    def write_then_evicted(array_path: Path, *args: object) -> None:
        real_write(array_path, *args)
        array_path.unlink()

    monkeypatch.setattr(cache_module, "_write_entry", write_then_evicted)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = load_image_set(four_sets[0], 16, cache, progress=False)
    assert not isinstance(result.images, np.memmap) and len(result.images) == 6
    assert np.array_equal(result.images[0], load_image(four_sets[0][0].path, 16))


def test_a_write_whose_temporary_file_is_removed_meanwhile_fails_cleanly(
        tmp_path: Path, four_sets: list[list[Sample]], monkeypatch: pytest.MonkeyPatch) -> None:
    # a write stopped for over an hour (a suspended process, a stalled network disk) looks killed and another run
    # sweeps its temporary file: its rename then fails, and it keeps its images in memory, quietly
    import warnings

    cache = tmp_path / "cache"
    real_save = np.save

    def save_then_swept(path: Path, images: np.ndarray) -> None:
        real_save(path, images)
        Path(path).unlink()

    monkeypatch.setattr(cache_module.np, "save", save_then_swept)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = load_image_set(four_sets[0], 16, cache, progress=False)
    assert not isinstance(result.images, np.memmap)
    assert np.array_equal(result.images[0], load_image(four_sets[0][0].path, 16))
    assert list(cache.iterdir()) == []




def test_a_manifest_patient_leaves_the_cache_key_and_the_images_alone(tmp_path: Path) -> None:
    """The patient a manifest names is not part of the pixels: the same files with a patient column hit the entry
    written without one, and the decoded set keeps each sample (patient included) for the split to key."""
    samples = _samples(tmp_path)
    named = [Sample(s.path, s.label, f"P{i // 2}") for i, s in enumerate(samples)]
    assert cache_key(named, 24) == cache_key(samples, 24)
    cache = tmp_path / "cache"
    load_image_set(samples, 24, cache)
    entries = sorted(p.name for p in cache.iterdir())
    again = load_image_set(named, 24, cache)
    assert sorted(p.name for p in cache.iterdir()) == entries and again.samples == named


def colour_dicom_file(path: Path) -> bytes:
    """A small YBR_FULL colour DICOM at `path` (its pixels convert to RGB on decoding), returning its bytes."""
    from tests.conftest import dicom_to_bytes, make_colour_dicom

    rgb = np.repeat(np.random.default_rng(1).integers(0, 256, (40, 24, 3), dtype=np.uint8), 2, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dicom_to_bytes(make_colour_dicom(rgb, "YBR_FULL")))
    return path.read_bytes()


def count_dicom_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one whenever a DICOM's pixels are decoded (`_load_dicom`, whoever calls it)."""
    import pneumoscan.data.dicom as dicom_module

    decodes: list[int] = []
    real = dicom_module._load_dicom

    def counted(*args: object) -> object:
        decodes.append(1)
        return real(*args)

    monkeypatch.setattr(dicom_module, "_load_dicom", counted)
    return decodes


@pytest.mark.parametrize("reader", ["load_image_set", "audit"])
def test_a_colour_dicom_is_decoded_once_for_its_image_and_its_colourfulness(
        reader: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its colourfulness decoded the pixels a second time (each 4-megapixel YBR film took 0.27 s for the image and
    0.2 s more for the cue); it is measured on the pixels the image was decoded from, to the same value."""
    from pneumoscan.data.audit import _inspect
    from pneumoscan.data.file_cues import colourfulness

    path = tmp_path / "train" / "NORMAL" / "colour.dcm"
    data = colour_dicom_file(path)
    expected = colourfulness(data)  # decoding the file on its own, as before
    assert expected > 15
    decodes = count_dicom_decodes(monkeypatch)
    if reader == "load_image_set":
        colours = load_image_set([Sample(path, 0)], 16, tmp_path / "cache", progress=False).colours
        assert colours is not None
        colour = colours[0]
    else:
        colour = _inspect(path)[3]
    assert len(decodes) == 1
    assert colour == expected


def test_a_grey_dicoms_colourfulness_reads_nothing_more_once_it_is_decoded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decode says a grey DICOM has no colour pixels; its colourfulness is then 0 without reading its header a
    second time (dicom_colour), and a caller that did not decode still gets it read."""
    from pneumoscan.data import file_cues
    from pneumoscan.data.decode import read_grayscale_and_rgb

    data = dicom_bytes(np.full((32, 32), 100, dtype=np.uint16))
    _, rgb = read_grayscale_and_rgb(data)
    assert rgb is None
    reads: list[int] = []
    monkeypatch.setattr(file_cues, "dicom_colour", lambda raw, **_: reads.append(1))
    assert file_cues.colourfulness(data, rgb=rgb) == 0.0
    assert reads == []
    assert file_cues.colourfulness(data) == 0.0
    assert reads == [1]


@pytest.mark.parametrize("film_marks", [False, True])
def test_a_png_is_decoded_once_for_its_image_and_the_guards_cues(film_marks: bool, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An 8-bit PNG's dither energy is measured on the pixels its image was decoded from (a second decode of a
    3000 x 2500 film cost as much as the first), to the same value as on its own decode."""
    from PIL import Image

    from pneumoscan.data.file_cues import jpeg_cues

    path = write_xray(tmp_path / "train" / "NORMAL" / "film.png", 0, 0, size=200)  # grey, 8 bits
    with Image.open(path) as im:
        assert im.mode == "L"
    expected = jpeg_cues(path)[1]
    decodes = count_pil_decoders(monkeypatch)
    images = load_image_set([Sample(path, 0)], 64, tmp_path / "cache", progress=False, film_marks=film_marks)
    assert decodes == ["zip"]
    assert images.dithers is not None and images.dithers[0] == expected


@pytest.mark.parametrize("where", ["decoding", "after"])
def test_a_film_the_machine_runs_out_of_memory_for_stops_the_set_not_skipped_as_unreadable(
        where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder's shortage was listed with the unreadable files and the film left out, so `train` trained (and
    `evaluate` scored) another set than the one given, while the message said 'close other programs and try again';
    a MemoryError after the decoding (its cues, resizing) was a traceback. Both stop, naming the film."""
    import pneumoscan.data.decode as decode

    samples = _samples(tmp_path)
    big = samples[3].path
    target = big.read_bytes()
    if where == "decoding":
        gray = decode._pil_to_gray

        def short(im: object, *args: object) -> object:
            if getattr(im, "big", False):
                raise MemoryError()
            return gray(im, *args)

        opened = decode.Image.open

        def open_(fp: object, *args: object, **kwargs: object) -> object:
            im = opened(fp, *args, **kwargs)
            im.big = hasattr(fp, "getvalue") and fp.getvalue() == target  # the big film's decoding runs short
            return im

        monkeypatch.setattr(decode, "_pil_to_gray", short)
        monkeypatch.setattr(decode.Image, "open", open_)
    else:
        cues = cache_module.jpeg_cues

        def cues_short(data: bytes, **kwargs: object) -> object:
            if data == target:
                raise MemoryError("Unable to allocate 1.2 GiB for an array")
            return cues(data, **kwargs)

        monkeypatch.setattr(cache_module, "jpeg_cues", cues_short)
    with pytest.raises(InputError) as exc:
        load_image_set(samples, 16, tmp_path / "cache")
    msg = str(exc.value)
    assert msg.startswith(f"{big}: the machine ran out of memory decoding it") and "\n" not in msg, msg
    assert "stopped: leaving the film out would change the set of films" in msg, msg
    assert not list((tmp_path / "cache").glob("*.json"))  # no entry listing the film as unreadable


def test_films_that_run_short_only_when_decoded_together_are_decoded_again_one_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Films are decoded one thread per core: large ones decoded together can run the machine out of memory where
    each alone fits. That stopped the command, advising 'give fewer films at once', which no option does. They are
    decoded again one at a time after the others; the set is decoded in full, as without the shortage."""
    import threading

    samples = _samples(tmp_path)
    expected = np.stack([load_image(s.path, 16) for s in samples])
    real = cache_module.load_image_levels_rgb_and_gray
    lock, active, ran_short = threading.Lock(), [0], []

    def crowded(data: bytes, size: int, **kwargs: object) -> object:  # fails only while another film decodes
        with lock:
            active[0] += 1
        try:
            time.sleep(0.05)
            with lock:
                together = active[0] > 1
            if together:
                ran_short.append(kwargs.get("name"))
                raise MemoryError("Unable to allocate 1.07 GiB for an array")
            return real(data, size, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(cache_module, "load_image_levels_rgb_and_gray", crowded)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    images = load_image_set(samples, 16, tmp_path / "cache", progress=False)
    assert ran_short, "no two films were decoded at once"
    assert not images.skipped and images.samples == samples and np.array_equal(images.images, expected)


def test_a_film_that_runs_short_even_alone_stops_with_advice_that_works(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It said 'give fewer films at once', which no option of train or evaluate changes: decoded alone it ran short
    too, so what helps is memory or a smaller film."""
    samples = _samples(tmp_path)
    big = samples[1].path
    real = cache_module.load_image_levels_rgb_and_gray

    def short(data: bytes, size: int, **kwargs: object) -> object:
        if kwargs.get("name") == str(big):
            raise MemoryError("Unable to allocate 1.07 GiB for an array")
        return real(data, size, **kwargs)

    monkeypatch.setattr(cache_module, "load_image_levels_rgb_and_gray", short)
    with pytest.raises(InputError) as exc:
        load_image_set(samples, 16, tmp_path / "cache", progress=False)
    msg = str(exc.value)
    assert msg.startswith(f"{big}: the machine ran out of memory decoding it, even on its own ("), msg
    assert "fewer films" not in msg and "close other programs, or downscale the film or leave it out" in msg, msg


def test_an_interruption_of_a_cold_decode_does_not_wait_for_the_queued_files() -> None:
    """Ctrl+C or SIGTERM (a KeyboardInterrupt in the main thread, here from the progress bar's loop) during the decode
    of a large data set stops it once the reads running finish. Before, the queued files were cancelled only when
    the signal landed while the main thread waited for a read: landing in the bar's frame (which holds the map's
    iterator), it waited for every file still queued (3 of 30 random SIGINTs, up to 6.6 s for 1,946 reads of 2,000)."""
    from pneumoscan.data.cache import decode_each

    ran: list[int] = []

    def read(index: int) -> None:
        ran.append(index)
        time.sleep(0.01)

    def interrupted(done):  # noqa: ANN001, ANN202
        for count, item in enumerate(done):
            if count == 4:
                raise KeyboardInterrupt
            yield item

    with pytest.raises(KeyboardInterrupt):
        decode_each(400, read, lambda err: None, interrupted)
    read_by_then = len(ran)
    time.sleep(0.1)  # a worker still reading queued files would add to `ran`
    assert len(ran) == read_by_then < 100
