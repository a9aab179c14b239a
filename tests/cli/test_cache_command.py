from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pneumoscan.cli import main
from pneumoscan.data.cache import load_image_set
from pneumoscan.data.labels import Sample
from tests.conftest import write_xray


def _temporary(cache: Path, name: str, n_bytes: int, age_s: float) -> Path:
    path = cache / name
    path.write_bytes(b"x" * n_bytes)
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def _fill(cache: Path, tmp_path: Path) -> None:
    """Entries at 16 px (two file lists) and 24 px, two temporary files of a killed write (untouched for two hours),
    and a file of the user's."""
    for name, size in (("a", 16), ("b", 16), ("a", 24)):
        samples = [Sample(write_xray(tmp_path / name / f"IM-{i:04d}-0001.png", i % 2, i), i % 2) for i in range(4)]
        load_image_set(samples, size, cache, progress=False)
    _temporary(cache, f"{'b' * 32}.123-456.tmp.npy", 2000, 7200)
    _temporary(cache, f"{'b' * 32}.123-456.tmp", 500, 7200)
    (cache / "notes.txt").write_text("mine")


def _entry_bytes(cache: Path) -> int:
    return sum(p.stat().st_size for p in cache.iterdir() if p.suffix in (".npy", ".json") and len(p.stem) == 32)


def test_cache_shows_folder_size_limit_and_entries(isolated_cache: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _fill(isolated_cache, tmp_path)  # the default folder: $PNEUMOSCAN_CACHE
    entry_bytes = _entry_bytes(isolated_cache)
    _temporary(isolated_cache, f"{'c' * 32}.77-88.tmp.npy", 1000, 60)  # a write in progress
    assert main(["cache"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # the temporary files count against the limit: they are in the total
    assert lines[0] == (f"image cache {isolated_cache}: 3 entries and 3 temporary files, "
                        f"{(entry_bytes + 3500) / 1e3:.3g} kB; limit 5 GB ($PNEUMOSCAN_CACHE_MAX_GB)")
    assert lines[1].startswith("  16 px: 2 entries, ") and lines[2].startswith("  24 px: 1 entry, ")
    assert lines[3:] == ["  1 temporary file, 1 kB, modified in the last hour: writes in progress, or killed since",
                         "  2 temporary files, 2.5 kB, untouched for over an hour: left by killed writes; removed "
                         "when an entry is next written, or by --clear"]


def test_cache_clear_removes_entries_and_stale_temporary_files_only(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    _fill(cache, tmp_path)
    freed = _entry_bytes(cache) + 2500
    in_progress = _temporary(cache, f"{'c' * 32}.77-88.tmp.npy", 1000, 60)  # another run's: removing it fails that write
    assert main(["cache", "--cache-dir", str(cache), "--clear"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"image cache {cache}: removed 3 entries and 2 temporary files, {freed / 1e3:.3g} kB freed",
        "  1 temporary file, 1 kB left, modified in the last hour: writes in progress, or killed since; removed once "
        "untouched for an hour"]
    assert sorted(p.name for p in cache.iterdir()) == sorted(["notes.txt", in_progress.name])
    in_progress.unlink()
    assert main(["cache", "--cache-dir", str(cache)]) == 0
    assert capsys.readouterr().out == f"image cache {cache}: 0 entries, 0 bytes; limit 5 GB ($PNEUMOSCAN_CACHE_MAX_GB)\n"


@pytest.mark.parametrize("env, expected", [("0", "the cache is off"), ("inf", "no limit"), ("0.5", "limit 500 MB")])
def test_cache_names_the_limit_in_force(env: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PNEUMOSCAN_CACHE_MAX_GB", env)
    assert main(["cache", "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"image cache {tmp_path}: 0 entries, 0 bytes; {expected} ($PNEUMOSCAN_CACHE_MAX_GB)\n"


def test_a_cache_folder_that_does_not_exist_is_named_as_such(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    typo = tmp_path / "cahce"
    assert main(["cache", "--cache-dir", str(typo)]) == 0
    assert capsys.readouterr().out == (
        f"image cache {typo}: no such folder yet, so nothing cached there (a command decoding images with this cache "
        f"folder makes it; check the path if you meant an existing one); limit 5 GB ($PNEUMOSCAN_CACHE_MAX_GB)\n")
    assert main(["cache", "--cache-dir", str(typo), "--clear"]) == 0
    assert capsys.readouterr().out == (f"image cache {typo}: no such folder, nothing to clear (check --cache-dir, or "
                                       f"$PNEUMOSCAN_CACHE)\n")
    assert not typo.exists()


def test_cache_mistakes_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "f"
    a_file.write_text("")
    assert main(["cache", "--cache-dir", str(a_file), "--clear"]) == 2
    assert capsys.readouterr().err == f"pneumoscan: error: {a_file}: is a file, not a cache folder; check --cache-dir " \
                                      f"(or $PNEUMOSCAN_CACHE)\n"
    monkeypatch.setenv("PNEUMOSCAN_CACHE_MAX_GB", "5GB")
    assert main(["cache"]) == 2
    assert capsys.readouterr().err.startswith("pneumoscan: error: PNEUMOSCAN_CACHE_MAX_GB='5GB': must be a number")


def test_cache_shows_entries_of_film_fingerprints_as_such(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pneumoscan.data.fingerprint import FILM_METHOD, film_fingerprints

    cache = tmp_path / "cache"
    samples = [Sample(write_xray(tmp_path / f"IM-{i:04d}-0001.png", i % 2, i), i % 2) for i in range(4)]
    load_image_set(samples, 16, cache, progress=False)
    film_fingerprints([s.path for s in samples], cache_dir=cache)
    assert main(["cache", "--cache-dir", str(cache)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"image cache {cache}: 2 entries, ")
    assert lines[1].startswith("  16 px: 1 entry, ")
    assert lines[2].startswith(f"  film fingerprints ({FILM_METHOD}): 1 entry, ") and len(lines) == 3


def test_an_entry_whose_array_is_gone_is_shown_as_incomplete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a .json left alone (its .npy evicted by another run between the two renames of a write) holds no images: it
    # was listed as a "24 px" entry
    import json

    cache = tmp_path / "cache"
    _fill(cache, tmp_path)
    (meta,) = [p for p in cache.glob("*.json") if json.loads(p.read_text())["size"] == 24]
    meta.with_suffix(".npy").unlink()
    assert main(["cache", "--cache-dir", str(cache)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("  16 px: 2 entries, ")
    assert lines[2].startswith("  incomplete or damaged (rebuilt when next needed): 1 entry, ")
