"""Content fingerprints: the films a model learnt from are recognised under any name and in any folder."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pneumoscan.artifact import read_meta
from pneumoscan.data.fingerprint import HEX_DIGITS, file_fingerprint, seen_in_training, training_fingerprints


def test_same_bytes_same_fingerprint_whatever_the_name(tmp_path: Path) -> None:
    (tmp_path / "a.jpeg").write_bytes(b"film one")
    (tmp_path / "renamed.png").write_bytes(b"film one")
    (tmp_path / "b.jpeg").write_bytes(b"film two")
    a, renamed, b = (file_fingerprint(tmp_path / n) for n in ("a.jpeg", "renamed.png", "b.jpeg"))
    assert a == renamed != b and len(a) == HEX_DIGITS
    assert file_fingerprint(tmp_path / "missing.jpeg") == ""


def test_members_of_an_ensemble_count(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"x")
    mark = file_fingerprint(tmp_path / "x.png")
    assert training_fingerprints({"members": [{"fingerprints": [mark]}, {}]}) == {mark}
    assert seen_in_training([tmp_path / "x.png"], {"members": [{"fingerprints": [mark]}]}) == [tmp_path / "x.png"]
    assert seen_in_training([tmp_path / "x.png"], {}) == []  # a model without the record: nothing known


def test_a_trained_run_records_its_training_and_validation_films(tiny_run: Path, tiny_data: Path) -> None:
    meta = read_meta(tiny_run / "model.safetensors")
    train_films = sorted((tiny_data / "train").glob("*/*"))
    assert len(training_fingerprints(meta.training)) == len(train_films)  # train and validation, all distinct here
    assert seen_in_training(train_films, meta.training) == train_films
    assert seen_in_training(sorted((tiny_data / "test").glob("*/*")), meta.training) == []


def test_set_threshold_refuses_copies_of_training_films(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from pneumoscan.cli import main

    site = tmp_path / "site_films"
    shutil.copytree(tiny_data / "test", site)
    shutil.copy(sorted((tiny_data / "train" / "NORMAL").iterdir())[0], site / "NORMAL" / "IM-5555-0001.jpeg")
    assert main(["set-threshold", "--model", str(tiny_run), "--data", str(site), "--out", str(tmp_path / "m"),
                 "--backend", "torch", "--n-boot", "10"]) == 2
    err = capsys.readouterr().err
    assert "1 of 17 films are byte-identical to films this model was trained or validated on" in err
    assert "IM-5555-0001.jpeg" in err and not (tmp_path / "m").exists()


def test_a_file_is_hashed_once_until_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    film = tmp_path / "film.png"
    film.write_bytes(b"first film")
    reads = []
    real = Path.read_bytes

    def counting(self: Path) -> bytes:
        reads.append(self.name)
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    first = file_fingerprint(film)
    assert file_fingerprint(film) == first and reads == ["film.png"]
    film.write_bytes(b"other film")  # same size
    os.utime(film, ns=(1, 1))
    assert file_fingerprint(film) not in ("", first) and reads == ["film.png", "film.png"]
