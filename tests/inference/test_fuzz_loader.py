"""Adversarial inputs for the image loader: the result is a valid uint8 array of the right shape or InputError.

Three sources: random bytes (plain and behind real file signatures), valid but odd images (tiny,
thin, every Pillow mode, six formats) and mutated real files (bit flips, truncation, splices,
insertions and deletions of the bundled sample JPEGs and of PNG/TIFF/BMP/DICOM re-encodings).
Example counts are bounded to keep the whole file well under 30 s; for a longer campaign, scale
them: PNEUMOSCAN_FUZZ_SCALE=50 pytest tests/inference/test_fuzz_loader.py
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import dicom_bytes

from pneumoscan.data.decode import read_grayscale
from pneumoscan.data.preprocess import load_image
from pneumoscan.errors import InputError

SAMPLE = Path(__file__).resolve().parents[2] / "sample" / "chest_xray"
MAX_PIXELS = 1 << 22  # a mutated header may claim a huge image; keep each example cheap


def fuzz(examples: int) -> settings:
    """Bounded example count, no per-example deadline (the CPU is shared)."""
    scale = float(os.environ.get("PNEUMOSCAN_FUZZ_SCALE", "1"))
    return settings(max_examples=max(1, int(examples * scale)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


SIGNATURES = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM",
              b"GIF89a", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"\x00" * 128 + b"DICM", b"P5\n1 1\n255\n"]
MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "YCbCr", "LAB"]
SAVE_OPTIONS: dict[str, list[dict[str, object]]] = {
    "PNG": [{}, {"bits": 2}, {"optimize": True}],
    "JPEG": [{}, {"progressive": True}, {"subsampling": 0}, {"quality": 1}],
    "TIFF": [{}, {"compression": "tiff_deflate"}, {"compression": "tiff_lzw"}, {"compression": "packbits"},
             {"compression": "group4"}, {"compression": "jpeg"}],
    "BMP": [{}], "GIF": [{}], "WEBP": [{}, {"lossless": True}],
}
FORMATS = list(SAVE_OPTIONS)
SUPPORTED = {"PNG", "JPEG", "TIFF", "BMP"}


def expect_array_or_input_error(source: bytes, size: int | None = None, label: str = "fuzz") -> np.ndarray | None:
    """Run the loader; None when it raised InputError (checked), else the (checked) array."""
    try:
        if size is None:
            out = read_grayscale(source, name=label, max_pixels=MAX_PIXELS)
        else:
            out = load_image(source, size, name=label, max_pixels=MAX_PIXELS)
    except InputError as err:
        message = str(err)
        assert message.startswith(f"{label}: ") and "\n" not in message, message
        return None
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.ndim == 2 and out.size > 0
    if size is not None:
        assert out.shape == (size, size)
    return out


# --------------------------------------------------------------------------- random bytes


@fuzz(300)
@given(prefix=st.sampled_from(SIGNATURES), body=st.binary(max_size=600), size=st.sampled_from([None, 1, 17, 64]))
def test_random_bytes(prefix: bytes, body: bytes, size: int | None) -> None:
    data = prefix + body
    if not data:
        with pytest.raises(InputError, match="empty file"):
            read_grayscale(data, name="fuzz")
        return
    expect_array_or_input_error(data, size)


# --------------------------------------------------------------------------- valid but odd images

dims = st.one_of(
    st.tuples(st.integers(1, 40), st.integers(1, 40)),
    st.tuples(st.just(1), st.integers(1, 400)),  # one pixel wide
    st.tuples(st.integers(1, 400), st.just(1)),  # one pixel high
    st.tuples(st.integers(1, 3), st.integers(200, 600)),
)


def odd_image(mode: str, width: int, height: int, seed: int) -> Image.Image:
    """Random pixels in any mode; float and 32-bit modes get extreme and non-finite values too."""
    rng = np.random.default_rng(seed)
    if mode in ("I", "F"):
        values = rng.choice([0, 1, -1, 2**31 - 1, -(2**31), 255, 65535], size=(height, width)).astype(np.float64)
        values += rng.normal(0, 1000, (height, width))
        if mode == "F":
            values[rng.random((height, width)) < 0.1] = rng.choice([np.nan, np.inf, -np.inf])
            return Image.fromarray(values.astype(np.float32))
        return Image.fromarray(np.clip(values, -(2**31), 2**31 - 1).astype(np.int32))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    rgba = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    if mode in ("P", "PA"):
        image = Image.fromarray(np.ascontiguousarray(rgba[..., :3])).quantize(int(rng.integers(1, 257)))
        return image.convert("PA") if mode == "PA" else image
    return Image.fromarray(rgba).convert(mode)


def save(image: Image.Image, fmt: str, **options: object) -> bytes | None:
    """Encode, or None when Pillow cannot write this mode in this format (with these options)."""
    buf = io.BytesIO()
    try:
        image.save(buf, fmt, **options)
    except Exception:  # noqa: BLE001 - the encoder's refusal (libtiff raises RuntimeError) is not under test
        return None
    return buf.getvalue()


@fuzz(400)
@given(mode=st.sampled_from(MODES), fmt=st.sampled_from(FORMATS), option=st.integers(0, 5), wh=dims,
       orientation=st.sampled_from([None, 1, 3, 6, 8, 0, 9]), seed=st.integers(0, 2**32 - 1),
       size=st.sampled_from([None, 1, 8, 33]))
def test_valid_odd_images(mode: str, fmt: str, option: int, wh: tuple[int, int], orientation: int | None, seed: int,
                          size: int | None) -> None:
    width, height = wh
    options = dict(SAVE_OPTIONS[fmt][option % len(SAVE_OPTIONS[fmt])])
    if orientation is not None and fmt in ("JPEG", "PNG", "TIFF"):
        exif = Image.Exif()
        exif[0x0112] = orientation  # EXIF orientation; 0 and 9 are invalid and must be ignored
        options["exif"] = exif
    else:
        orientation = None
    data = save(odd_image(mode, width, height, seed), fmt, **options)
    assume(data is not None)
    out = expect_array_or_input_error(data, size)
    if fmt not in SUPPORTED:  # GIF and WebP are refused by content, whatever the extension
        assert out is None
        return
    assert out is not None, f"a valid {mode} {fmt} {width}x{height} must decode"
    if size is None:
        assert out.shape == ((width, height) if orientation in (6, 8) else (height, width))
    if mode == "L" and fmt in ("PNG", "TIFF", "BMP") and size is None and orientation in (None, 0, 1, 9) and not options:
        np.testing.assert_array_equal(out, np.asarray(Image.open(io.BytesIO(data))))  # lossless 8-bit: as stored


# --------------------------------------------------------------------------- mutated real files


def _seed_files() -> list[bytes]:
    jpegs = [p for cls in ("NORMAL", "PNEUMONIA") for p in sorted((SAMPLE / "train" / cls).glob("*.jpeg"))[:2]]
    seeds = [p.read_bytes() for p in jpegs]
    with Image.open(jpegs[0]) as im:
        small = im.convert("L").resize((48, 40))
    seeds += [save(small, "PNG"), save(small, "TIFF"), save(small, "BMP"), save(small.convert("RGB"), "JPEG"),
              save(Image.fromarray((np.asarray(small, np.uint16) * 257)), "PNG"), _dicom(np.asarray(small))]
    return [s for s in seeds if s]


def _dicom(pixels: np.ndarray) -> bytes:
    pytest.importorskip("pydicom")
    return dicom_bytes(pixels.astype(np.uint16) * 16, 12, window=(2000, 3000))


SEEDS = _seed_files()
position = st.one_of(st.integers(0, 700), st.integers(0, 1 << 20))  # headers are where it hurts
mutation = st.one_of(
    st.tuples(st.just("flip"), position, st.integers(0, 7)),
    st.tuples(st.just("set"), position, st.integers(0, 255)),
    st.tuples(st.just("truncate"), position, st.just(0)),
    st.tuples(st.just("delete"), position, st.integers(1, 64)),
    st.tuples(st.just("insert"), position, st.integers(1, 64)),
    st.tuples(st.just("splice"), position, st.integers(0, len(SEEDS) - 1)),
)


def mutate(data: bytearray, op: str, where: int, arg: int, rng: np.random.Generator) -> bytearray:
    if not data:
        return data
    at = where % len(data)
    if op == "flip":
        data[at] ^= 1 << arg
    elif op == "set":
        data[at] = arg
    elif op == "truncate":
        del data[at:]
    elif op == "delete":
        del data[at : at + arg]
    elif op == "insert":
        data[at:at] = rng.integers(0, 256, arg, dtype=np.uint8).tobytes()
    else:  # splice: this file's head with another file's tail
        other = SEEDS[arg]
        data = data[:at] + other[int(rng.integers(0, len(other))):]
    return data


@fuzz(500)
@given(index=st.integers(0, len(SEEDS) - 1), ops=st.lists(mutation, min_size=1, max_size=4),
       seed=st.integers(0, 2**32 - 1), size=st.sampled_from([None, 1, 32, 128]))
def test_mutated_real_files(index: int, ops: list[tuple[str, int, int]], seed: int, size: int | None) -> None:
    rng = np.random.default_rng(seed)
    data = bytearray(SEEDS[index])
    for op, where, arg in ops:
        data = mutate(data, op, where, arg, rng)
    if not data:
        with pytest.raises(InputError, match="empty file"):
            read_grayscale(bytes(data), name="fuzz")
        return
    expect_array_or_input_error(bytes(data), size)


def test_seed_files_decode() -> None:
    """The unmutated seeds are valid, so the mutations start from real, decodable files."""
    assert len(SEEDS) == 10
    for data in SEEDS:
        assert expect_array_or_input_error(data, 32) is not None


def test_paths_behave_like_bytes(tmp_path: Path) -> None:
    """The path route reads the same bytes: a damaged file on disk is InputError naming the file."""
    broken = tmp_path / "scan.jpeg"
    broken.write_bytes(SEEDS[0][: len(SEEDS[0]) // 3])
    with pytest.raises(InputError, match=r"scan\.jpeg: "):
        load_image(broken, 32)
    good = tmp_path / "good.png"
    good.write_bytes(SEEDS[4])
    np.testing.assert_array_equal(load_image(good, 32), load_image(SEEDS[4], 32))
