"""Content fingerprints: the films a model learnt from are recognised under any name and in any folder."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumoscan.artifact import read_meta
from pneumoscan.data.fingerprint import (
    FILM_HEX,
    FILM_MAX_DISTANCE,
    FILM_METHOD,
    FILM_SIZE,
    HEX_DIGITS,
    file_fingerprint,
    film_distances,
    film_fingerprint,
    film_fingerprints,
    film_record,
    seen_in_training,
    training_film_fingerprints,
    training_fingerprints,
)
from pneumoscan.data.preprocess import load_image


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
    assert (f"1 of 17 films is one this model was trained or validated on (a copy, or the same film re-encoded or "
            f"resized: {site / 'NORMAL' / 'IM-5555-0001.jpeg'}), which it scores better than new ones; "
            f"remove it") in err
    assert not (tmp_path / "m").exists()
    # several: the first three named and all counted (the first alone was named, the others left to be found)
    for i, film in enumerate(sorted((tiny_data / "train" / "PNEUMONIA").iterdir())[:3]):
        shutil.copy(film, site / "PNEUMONIA" / f"person555{i}_virus_1.jpeg")
    assert main(["set-threshold", "--model", str(tiny_run), "--data", str(site), "--out", str(tmp_path / "m"),
                 "--backend", "torch", "--n-boot", "10"]) == 2
    assert (f"4 of 20 films are ones this model was trained or validated on (copies, or the same film re-encoded or "
            f"resized: {site / 'NORMAL' / 'IM-5555-0001.jpeg'}, {site / 'PNEUMONIA' / 'person5550_virus_1.jpeg'}, "
            f"{site / 'PNEUMONIA' / 'person5551_virus_1.jpeg'} (and 1 more); `evaluate --json` lists them under "
            f"seen_in_training, given the same --model, --data and --split), which it scores better than new ones; "
            f"remove them") in capsys.readouterr().err
    # ... and where it says all are listed, they are
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(site), "--json", str(tmp_path / "e.json"),
                 "--backend", "torch", "--n-boot", "10"]) == 0
    assert len(json.loads((tmp_path / "e.json").read_text())["seen_in_training"]) == 4


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


# -- film fingerprints: the same film re-encoded or resized ---------------------------------------------------------
def synthetic_film(seed: int, size: int = 96) -> np.ndarray:
    """A synthetic grey film of soft shapes at many scales (a chest film has structure at every scale, which the
    film fingerprint reads; pixel noise it does not), distinct per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    img = 60 + 80 * yy
    for _ in range(80):
        (cy, cx), r = rng.uniform(0, 1, 2), rng.uniform(0.02, 0.15)
        img += rng.uniform(-50, 50) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return np.clip(img, 0, 255).astype(np.uint8)


def encoded(pixels: np.ndarray, fmt: str, side: tuple[int, int] | None = None, **options: int) -> bytes:
    image = Image.fromarray(pixels)
    if side is not None:
        image = image.resize(side, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def dicom16(pixels: np.ndarray) -> bytes:
    from tests.conftest import dicom_to_bytes, make_dicom

    return dicom_to_bytes(make_dicom(pixels.astype(np.uint16) * 257, bits_stored=16))


def write(folder: Path, files: dict[str, bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]


def test_a_film_re_encoded_resized_or_brightened_is_recognised_and_other_films_are_not(tmp_path: Path) -> None:
    films = [synthetic_film(seed) for seed in range(12)]
    trained = write(tmp_path / "trained", {f"{i}.jpeg": encoded(f, "JPEG", quality=95) for i, f in enumerate(films[:6])})
    training = {"fingerprints": [file_fingerprint(p) for p in trained], **film_record(trained)}
    brighter, darker = (np.clip(films[i] * k, 0, 255).astype(np.uint8) for i, k in ((0, 1.1), (5, 0.9)))
    copies = {"q50.jpeg": encoded(films[0], "JPEG", quality=50), "same.png": encoded(films[1], "PNG"),
              "sixteen_bit.dcm": dicom16(films[2]), "big.jpeg": encoded(films[3], "JPEG", (1024, 1024), quality=90),
              "wider.png": encoded(films[4], "PNG", (400, 300)), "brighter.png": encoded(brighter, "PNG"),
              "darker.png": encoded(darker, "PNG")}
    paths = write(tmp_path / "site", {**copies, **{f"other_{i}.png": encoded(films[i], "PNG") for i in range(6, 12)}})
    expected = paths[:len(copies)]
    assert seen_in_training(paths, training) == expected  # decoded here
    for size in (FILM_SIZE, 64):  # as evaluate decodes them for a model of this input size (reused), or another
        assert seen_in_training(paths, training, [load_image(p, size) for p in paths]) == expected
    assert seen_in_training(paths, {"fingerprints": training["fingerprints"]}) == []  # bytes alone: none of them


def test_the_film_fingerprint_ignores_size_and_brightness_not_content() -> None:
    film = synthetic_film(0)
    big = np.asarray(Image.fromarray(film).resize((700, 500), Image.Resampling.BILINEAR))
    brighter = np.clip(film.astype(float) * 1.1, 0, 255).astype(np.uint8)
    known = training_film_fingerprints({"film_fingerprint_method": FILM_METHOD,
                                        "film_fingerprints": [film_fingerprint(load_image(encoded(film, "PNG"), 128))]})
    marks = [film_fingerprint(load_image(encoded(image, "PNG"), FILM_SIZE)) for image in (big, brighter, synthetic_film(1))]
    assert all(len(m) == FILM_HEX for m in marks)
    near = film_distances(marks, known)
    assert near[0] <= FILM_MAX_DISTANCE and near[1] <= FILM_MAX_DISTANCE < near[2]
    assert film_distances(marks, known[:0]).min() > FILM_MAX_DISTANCE  # nothing known: no match


def test_a_model_recording_only_byte_fingerprints_still_recognises_copies(tmp_path: Path) -> None:
    """Models trained before film fingerprints (and the shipped one before they were added): byte copies only."""
    (tmp_path / "film.jpeg").write_bytes(encoded(synthetic_film(0), "JPEG", quality=95))
    (tmp_path / "film.png").write_bytes(encoded(synthetic_film(0), "PNG"))
    old = {"fingerprints": [file_fingerprint(tmp_path / "film.jpeg")]}
    copy = Path(shutil.copy(tmp_path / "film.jpeg", tmp_path / "renamed.jpeg"))
    assert seen_in_training([copy, tmp_path / "film.png"], old) == [copy]
    assert len(training_film_fingerprints(old)) == 0


def test_film_fingerprints_of_another_method_or_edited_out_of_shape_are_not_compared(tmp_path: Path) -> None:
    film = tmp_path / "film.png"
    film.write_bytes(encoded(synthetic_film(0), "PNG"))
    record = film_record([film])
    assert seen_in_training([film], record) == [film]
    assert seen_in_training([film], {**record, "film_fingerprint_method": "another"}) == []
    for marks in (["zz" * (FILM_HEX // 2)], ["ab"], [7], 7, None):
        assert seen_in_training([film], {**record, "film_fingerprints": marks}) == []
    assert seen_in_training([film], {"members": [{}, record]}) == [film]  # an ensemble's member records count


def test_a_trained_run_recognises_its_films_re_encoded_at_another_size(tiny_run: Path, tiny_data: Path,
                                                                      tmp_path: Path) -> None:
    from pneumoscan.evaluation.evaluate import InSampleWarning, evaluate
    from pneumoscan.inference.predictor import Predictor

    site = tmp_path / "originals"
    for film in sorted((tiny_data / "train").glob("*/*"))[::4] + sorted((tiny_data / "test").glob("*/*")):
        with Image.open(film) as image:
            big = image.convert("L").resize((400, 400), Image.Resampling.BICUBIC)
        (site / film.parent.name).mkdir(parents=True, exist_ok=True)
        big.save(site / film.parent.name / f"{film.parent.parent.name}_{film.stem}.png")
    with pytest.warns(InSampleWarning, match="the same film re-encoded or resized"):
        summary = evaluate(Predictor(tiny_run, backend="torch"), site, n_boot=10, progress=False).summary
    assert sorted(Path(p).name for p in summary["seen_in_training"]) == sorted(
        p.name for p in site.glob("*/train_*.png")) != []


def test_set_threshold_refuses_training_films_re_encoded(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from pneumoscan.cli import main

    site = tmp_path / "site_films"
    shutil.copytree(tiny_data / "test", site)
    with Image.open(sorted((tiny_data / "train" / "NORMAL").iterdir())[0]) as image:
        image.convert("L").resize((300, 300), Image.Resampling.BICUBIC).save(site / "NORMAL" / "IM-5555-0001.png")
    assert main(["set-threshold", "--model", str(tiny_run), "--data", str(site), "--out", str(tmp_path / "m"),
                 "--backend", "torch", "--n-boot", "10"]) == 2
    err = capsys.readouterr().err
    assert "1 of 17 films is one this model was trained or validated on (a copy, or the same film re-encoded" in err
    assert "IM-5555-0001.png" in err and not (tmp_path / "m").exists()


# -- a model of another input size: its films decoded at FILM_SIZE once, through the image cache --------------------
def untrained_model(folder: Path, size: int, trained: list[Path]) -> Path:
    """An untrained cnn of `size` px input whose training record holds the fingerprints of the `trained` films."""
    from pneumoscan.artifact import ArtifactMeta, save_artifact
    from pneumoscan.models.registry import create_model

    training = {"fingerprints": [file_fingerprint(p) for p in trained], **film_record(trained)}
    meta = ArtifactMeta(model_name="cnn", model_config={"widths": [4, 8, 8, 8]}, image_size=size, mean=0.5, std=0.25,
                        training=training)
    return save_artifact(folder / "model.safetensors", create_model("cnn", widths=(4, 8, 8, 8)).eval(), meta)


def site_films(folder: Path) -> list[Path]:
    """Four NORMAL and four PNEUMONIA films, none of them a film `untrained_model` was given."""
    return [*write(folder / "NORMAL", {f"n{i}.png": encoded(synthetic_film(i), "PNG") for i in range(4)}),
            *write(folder / "PNEUMONIA", {f"p{i}.png": encoded(synthetic_film(i), "PNG") for i in range(4, 8)})]


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files Pillow decodes from now on, one entry per decode."""
    import pneumoscan.data.decode as decode

    decoded, real = [], decode._read_pil

    def counted(data: bytes, label: str, *args: object) -> np.ndarray:
        decoded.append(label)
        return real(data, label, *args)

    monkeypatch.setattr(decode, "_read_pil", counted)
    return decoded


def count_film_fingerprints(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per film fingerprint computed from now on."""
    import pneumoscan.data.fingerprint as fingerprint

    marked, real = [], fingerprint.film_fingerprint
    monkeypatch.setattr(fingerprint, "film_fingerprint", lambda gray: marked.append(1) or real(gray))
    return marked


def test_film_fingerprints_are_kept_in_the_image_cache_until_a_file_changes(
        tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    assert film_fingerprints([]) == [] and not any(isolated_cache.iterdir())  # no entry for no files
    films = site_films(tmp_path / "site")[:3]
    broken = write(tmp_path / "site", {"broken.png": b"not an image"})[0]
    paths = [*films, broken]
    first = film_fingerprints(paths)
    assert first[:3] == [film_fingerprint(load_image(p, FILM_SIZE)) for p in films] and first[3] is None
    decoded, marked = count_decodes(monkeypatch), count_film_fingerprints(monkeypatch)
    assert film_fingerprints(paths) == first
    assert decoded == [str(broken)] and marked == []  # an unreadable file is tried again, in case it was fixed
    films[1].write_bytes(encoded(synthetic_film(9), "PNG"))
    os.utime(films[1], ns=(1, 1))  # any change to a file's size or times counts
    changed = film_fingerprints(paths)
    assert changed[1] == film_fingerprint(load_image(films[1], FILM_SIZE)) != first[1]
    assert changed[::2] == first[::2] and len(marked) == 3  # all of the files again: their entry is a new one
    for entry in isolated_cache.glob("*.npy"):  # damaged entries are computed again
        entry.write_bytes(b"\x93NUMPY")
    assert film_fingerprints(paths) == changed and len(marked) == 6
    monkeypatch.setenv("PNEUMOSCAN_CACHE_MAX_GB", "0")  # the cache off: computed, nothing written or read
    before = sorted(isolated_cache.iterdir())
    assert film_fingerprints(paths) == changed and len(marked) == 9 and sorted(isolated_cache.iterdir()) == before


@pytest.mark.parametrize("size", [96, FILM_SIZE, 224])
def test_fingerprints_from_a_models_decode_are_those_of_a_decode_at_film_size(
        size: int, sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model of another input size decoded each film a second time at FILM_SIZE for its fingerprint; now its own
    decode gives it, bit for bit, unless draft mode decodes the JPEG at another scale for the two sizes."""
    from pneumoscan.data.cache import load_image_set
    from pneumoscan.data.labels import Sample

    films = [*sorted((sample_dir / "train").glob("*/*.jpeg"))[::25],  # 224 px colour JPEGs
             *write(tmp_path / "site", {"film.png": encoded(synthetic_film(1), "PNG", (300, 260)),
                                        "wide.jpeg": encoded(synthetic_film(2), "JPEG", (300, 260))})]
    expected = [film_fingerprint(load_image(p, FILM_SIZE)) for p in films]
    decoded = count_decodes(monkeypatch)
    images = load_image_set([Sample(p, 0) for p in films], size, tmp_path / "cache", progress=False, film_marks=True)
    marks = images.film_marks
    assert film_fingerprints(films, images.images, tmp_path / "cache", marks) == expected
    # 224 px JPEGs: decoded at 112 px for 96; the 300 x 260 one at 150 x 130 for 128, in full for 224
    again = {96: films[:-2], FILM_SIZE: [], 224: films[-1:]}[size]
    assert sorted(decoded) == sorted(map(str, [*films, *again]))
    if size == FILM_SIZE:  # the images themselves are fingerprinted
        assert marks is None
    else:
        assert marks is not None and [m for m in marks if m is not None] == \
            [e for p, e in zip(films, expected) if p not in again]


@pytest.mark.parametrize("cache", ["small", "unwritable"])
def test_the_cache_warnings_call_film_fingerprints_what_they_are(cache: str, tmp_path: Path, isolated_cache: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The image cache's warnings said "images ... decoded again" of an entry of film fingerprints."""
    import re
    import warnings

    films = site_films(tmp_path / "site")[:2]
    cache_dir = None
    if cache == "small":  # two rows of 32 bytes and their .json: more than 10 bytes
        monkeypatch.setenv("PNEUMOSCAN_CACHE_MAX_GB", "1e-8")
    else:
        cache_dir = tmp_path / "not-a-folder"
        cache_dir.write_bytes(b"")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        marks = film_fingerprints(films, cache_dir=cache_dir)
    assert marks == [film_fingerprint(load_image(p, FILM_SIZE)) for p in films]
    assert len(caught) == 1
    message = str(caught[0].message)
    assert re.search(r"these film fingerprints take [0-9]+ bytes, more than its 10 bytes limit; film fingerprints "
                     r"kept in memory and computed again next time" if cache == "small" else
                     r"; film fingerprints kept in memory and computed again next time", message), message
    assert "image" not in message.split(": ", 1)[1]


def test_a_second_evaluation_with_a_96_px_model_decodes_no_film_again(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoscan.evaluation.evaluate import InSampleWarning, evaluate
    from pneumoscan.inference.predictor import Predictor

    trained = write(tmp_path / "trained", {f"{i}.png": encoded(synthetic_film(i), "PNG") for i in range(20, 23)})
    predictor = Predictor(untrained_model(tmp_path, 96, trained), backend="torch")
    # a 224 px JPEG: draft mode decodes it at 112 px for a 96 px model, in full for FILM_SIZE
    large = write(tmp_path / "site" / "PNEUMONIA", {"large.jpeg": encoded(synthetic_film(8), "JPEG", (224, 224))})
    films = [*site_films(tmp_path / "site"), *large,
             *write(tmp_path / "site" / "NORMAL", {"resaved.jpeg": encoded(synthetic_film(20), "JPEG", quality=90)})]
    decoded, marked = count_decodes(monkeypatch), count_film_fingerprints(monkeypatch)
    runs = []
    for _ in range(2):
        with pytest.warns(InSampleWarning):
            runs.append(evaluate(predictor, tmp_path / "site", n_boot=10, progress=False))
        # the first at 96 px to score them and fingerprint them, the large one again at FILM_SIZE; the second from
        # the image cache
        assert sorted(decoded) == sorted([*map(str, films), str(large[0])]) and len(marked) == len(films)
    assert [run.summary["seen_in_training"] for run in runs] == [[str(films[-1])]] * 2
    assert np.array_equal(runs[0].probs, runs[1].probs)


@pytest.mark.parametrize("size", [96, FILM_SIZE])
@pytest.mark.parametrize("cache", ["on", "off", "unwritable"])
def test_set_threshold_fingerprints_each_film_once(cache: str, size: int, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With the image cache off (or its folder unwritable) the scoring decoded every film again at the model's size,
    as the check had."""
    import pneumoscan.data.fingerprint as fingerprint
    from pneumoscan.evaluation.local_threshold import set_threshold

    cache_dir = None
    if cache == "off":  # nothing to read back: a second look would decode and hash every film again
        monkeypatch.setenv("PNEUMOSCAN_CACHE_MAX_GB", "0")
    elif cache == "unwritable":  # a file where the folder should be: nothing is kept
        cache_dir = tmp_path / "not-a-folder"
        cache_dir.write_bytes(b"")
    trained = write(tmp_path / "trained", {f"{i}.png": encoded(synthetic_film(i), "PNG") for i in range(20, 23)})
    model = untrained_model(tmp_path, size, trained)
    films = site_films(tmp_path / "site")
    decoded, marked, compared = count_decodes(monkeypatch), count_film_fingerprints(monkeypatch), []
    real = fingerprint.film_distances
    monkeypatch.setattr(fingerprint, "film_distances", lambda marks, known: compared.append(1) or real(marks, known))
    result = set_threshold(model, tmp_path / "site", tmp_path / "out", backend="torch", n_boot=10, cache_dir=cache_dir)
    # by its check that they are new films, not again by the scoring
    assert len(marked) == len(films) and len(compared) == 1
    # at the model's size for the check, the scoring and the fingerprints: one decode (the PNGs decode the same at
    # any size; a JPEG decoded at another scale for the fingerprints: see the evaluation's test)
    assert len(decoded) == len(films)
    assert result.out.is_file() and result.after["n"] == len(films)


def test_a_film_the_machine_runs_short_for_is_decoded_again_not_left_unfingerprinted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`_decoded` (evaluate's check for films seen in training) turned a DecodeOutOfMemory into a missing
    fingerprint, so such a film passed as unseen. It is decoded again alone; one that runs short even so stops."""
    import pneumoscan.data.preprocess as preprocess
    from pneumoscan.data.fingerprint import _decoded
    from pneumoscan.errors import DecodeOutOfMemory

    films = []
    for i in range(3):
        films.append(tmp_path / f"f{i}.png")
        Image.fromarray(np.full((40, 40), 60 * i + 20, dtype=np.uint8)).save(films[-1])
    real, tries = preprocess.load_image, {}

    def short_once(path: Path, size: int) -> np.ndarray:
        tries[path] = tries.get(path, 0) + 1
        if path == films[1] and tries[path] == 1:
            raise DecodeOutOfMemory(f"{path}: the machine ran out of memory decoding it", str(path))
        return real(path, size)

    monkeypatch.setattr(preprocess, "load_image", short_once)
    out = _decoded(films)
    assert all(film is not None for film in out) and tries[films[1]] == 2
    assert np.array_equal(out[1], real(films[1], out[1].shape[0]))

    def always_short(path: Path, size: int) -> np.ndarray:
        if path == films[2]:
            raise DecodeOutOfMemory(f"{path}: the machine ran out of memory decoding it", str(path))
        return real(path, size)

    monkeypatch.setattr(preprocess, "load_image", always_short)
    with pytest.raises(DecodeOutOfMemory, match="f2.png"):
        _decoded(films)


def test_the_audit_command_of_a_duplicate_warning_can_be_pasted_for_a_path_with_a_space(tmp_path: Path) -> None:
    """`pneumoscan audit my data lists them` split the data folder in two in a shell (evaluate's label-conflict
    warning and train's duplicate warnings give it)."""
    import shlex

    from pneumoscan.data.fingerprint import duplicate_warnings
    from pneumoscan.data.layout import Sample

    data = tmp_path / "my data"
    a, b = data / "a.png", data / "b.png"
    data.mkdir()
    a.write_bytes(b"same bytes")
    b.write_bytes(b"same bytes")
    (warning,) = duplicate_warnings({"test": [Sample(a, 0), Sample(b, 1)]}, str(data))
    assert shlex.split(warning.split("`")[1]) == ["pneumoscan", "audit", str(data)]
