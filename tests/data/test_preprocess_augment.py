from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pneumoscan.data.augment import AugmentConfig, augment_batch, gaussian_blur, mixup
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import ImageOps

from pneumoscan.data.preprocess import Preprocessing, equalize_images, grey_levels, load_image, load_image_with_levels


def test_load_image_any_size_and_mode(tmp_path: Path) -> None:
    rgb = np.zeros((300, 500, 3), dtype=np.uint8)
    rgb[:, :250] = 200
    Image.fromarray(rgb).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", 64)
    assert out.shape == (64, 64) and out.dtype == np.uint8
    assert out[:, :28].mean() > 150 and out[:, 36:].mean() < 10


def test_grey_levels_are_counted_before_resizing() -> None:
    """A dithered film is black and white in the file, grey once resized: only the decoded file shows it."""
    from tests.conftest import dithered

    data = dithered()
    image, levels = load_image_with_levels(data, 128)
    assert levels == 2 and grey_levels(image) > 100
    np.testing.assert_array_equal(image, load_image(data, 128))
    assert grey_levels(np.arange(256, dtype=np.uint8).reshape(16, 16)) == 256


def test_preprocessing_is_the_standardisation_formula_for_arrays_and_tensors() -> None:
    white = Preprocessing(0.5, 0.25)(np.full((2, 4, 4), 255, dtype=np.uint8))
    assert white.shape == (2, 1, 4, 4) and white.dtype == torch.float32
    assert torch.allclose(white, torch.full_like(white, 2.0))
    batch = np.random.default_rng(0).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    expected = (torch.from_numpy(batch).float().unsqueeze(1) / 255.0 - 0.48) / 0.23
    preprocessing = Preprocessing(0.48, 0.23)
    assert torch.equal(preprocessing(batch), expected)
    assert torch.equal(preprocessing(batch[:, None]), expected)  # (N, 1, H, W) too
    assert torch.equal(preprocessing(torch.from_numpy(batch)), expected)


def test_preprocessing_with_equalize_is_pils_equalize_then_the_formula() -> None:
    rng = np.random.default_rng(1)
    batch = (rng.random((3, 20, 20)) ** 2 * 180).astype(np.uint8)  # dark and low-contrast
    equalised = np.stack([np.asarray(ImageOps.equalize(Image.fromarray(im, mode="L"))) for im in batch])
    expected = (torch.from_numpy(equalised).float().unsqueeze(1) / 255.0 - 0.48) / 0.23
    assert torch.equal(Preprocessing(0.48, 0.23, equalize=True)(batch), expected)
    assert not torch.equal(Preprocessing(0.48, 0.23)(batch), expected)


@pytest.mark.parametrize("equalize,crop", [(False, False), (True, False), (False, True), (True, True)])
def test_preprocessing_without_torch_gives_the_very_bits_of_the_torch_path(equalize: bool, crop: bool) -> None:
    """ONNX Runtime's input is made in numpy (the ONNX backend runs without torch): every uint8 value, for any mean
    and std, must standardise to the float32 the torch path gives, or the backends' P would drift apart."""
    rng = np.random.default_rng(2)
    every_value = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    films = rng.integers(0, 256, (2, 16, 16), dtype=np.uint8)
    for mean, std in [(0.48, 0.23), (0.0, 1.0), *rng.uniform(0.01, 1.0, (20, 2))]:
        preprocessing = Preprocessing(float(mean), float(std), equalize, crop)
        for batch in (every_value, films, films[:, None]):
            got, expected = preprocessing.numpy(batch), preprocessing(batch).numpy()
            assert got.dtype == np.float32 and np.array_equal(got.view(np.int32), expected.view(np.int32))


def test_preprocessing_is_a_frozen_value() -> None:
    preprocessing = Preprocessing(0.5, 0.25, equalize=True)
    assert preprocessing == Preprocessing(0.5, 0.25, True) != Preprocessing(0.5, 0.25)
    with pytest.raises(dataclasses.FrozenInstanceError):
        preprocessing.equalize = False  # type: ignore[misc]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), levels=st.integers(1, 256), size=st.integers(1, 24))
def test_equalize_images_is_pils_equalize_per_image(seed: int, levels: int, size: int) -> None:
    rng = np.random.default_rng(seed)
    palette = rng.choice(256, size=levels, replace=False)
    batch = palette[rng.integers(0, levels, (3, size, size))].astype(np.uint8)
    expected = np.stack([np.asarray(ImageOps.equalize(Image.fromarray(im, mode="L"))) for im in batch])
    np.testing.assert_array_equal(equalize_images(batch), expected)
    np.testing.assert_array_equal(equalize_images(batch[0]), expected[0])  # a single 2-D image too


def test_equalize_removes_exposure_and_contrast_differences() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    darker = (image.astype(np.float64) / 255) ** 1.6 * 200  # another tone curve, monotone
    a, b = equalize_images(np.stack([image, darker.round().astype(np.uint8)]))
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
    x = Preprocessing(0.5, 0.25, equalize=True)(np.stack([image, darker.round().astype(np.uint8)]))
    assert torch.equal(x, Preprocessing(0.5, 0.25)(np.stack([a, b])))
    assert not torch.equal(x, Preprocessing(0.5, 0.25)(np.stack([image, darker.round().astype(np.uint8)])))


def test_augment_changes_images_within_range_and_is_seeded() -> None:
    x = torch.rand(8, 1, 32, 32)
    a = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert not torch.allclose(a, x)
    assert a.min() >= 0 and a.max() <= 1 and a.shape == x.shape
    assert torch.equal(augment_batch(x, AugmentConfig(strength=0)), x)


def test_mixup_blends_images_and_targets_with_one_weight() -> None:
    x = torch.stack([torch.full((1, 4, 4), float(i)) for i in range(6)])
    y = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    mx, my = mixup(x, y, 0.4, torch.Generator().manual_seed(3))
    again = mixup(x, y, 0.4, torch.Generator().manual_seed(3))
    assert torch.equal(mx, again[0]) and torch.equal(my, again[1])
    # Each image is lam * own + (1 - lam) * partner; its target mixes the same partner with the same lam.
    values = mx[:, 0, 0, 0]
    assert torch.allclose(mx, values.view(-1, 1, 1, 1).expand_as(mx))
    assert not torch.equal(mx, x)
    assert (my >= 0).all() and (my <= 1).all() and not torch.equal(my, y)
    assert torch.isclose(values.sum(), x[:, 0, 0, 0].sum())  # a permutation keeps the batch mean
    assert torch.isclose(my.sum(), y.sum())
    assert mixup(x, y, 0.0) == (x, y)


def test_equalize_images_in_chunks_matches_one_image_at_a_time() -> None:
    from pneumoscan.data.preprocess import EQUALIZE_CHUNK

    rng = np.random.default_rng(3)
    n = EQUALIZE_CHUNK + 45
    batch = (rng.random((n, 2, 8, 8)) ** rng.uniform(0.3, 3, (n, 1, 1, 1)) * 255).astype(np.uint8)
    expected = np.stack([[equalize_images(im[None])[0] for im in pair] for pair in batch])
    np.testing.assert_array_equal(equalize_images(batch), expected)


def test_aspect_stretch_makes_a_square_taller_or_wider_and_leaves_other_draws_alone() -> None:
    square = torch.zeros(64, 1, 64, 64)
    square[:, :, 16:48, 16:48] = 1.0
    only_aspect = AugmentConfig(rotation_deg=0, scale=0, translate=0, brightness=0, contrast=0, aspect=0.3)
    out = augment_batch(square, only_aspect, torch.Generator().manual_seed(0))
    rows = (out[:, 0].amax(dim=2) > 0.5).sum(dim=1).float()  # height of the bright block
    cols = (out[:, 0].amax(dim=1) > 0.5).sum(dim=1).float()  # width
    ratio = rows / cols
    assert ratio.max() > 1.2 and ratio.min() < 1 / 1.2  # both ways, well beyond interpolation noise
    assert ratio.max() <= 1.3 ** 2 * 1.1  # within the asked range (height x a, width / a)
    # a run without aspect keeps the random sequence it had before the option existed
    plain = AugmentConfig()
    assert torch.equal(augment_batch(square, plain, torch.Generator().manual_seed(3)),
                       augment_batch(square, dataclasses.replace(plain, aspect=0.0), torch.Generator().manual_seed(3)))


def test_gaussian_blur_keeps_flat_images_and_the_mean_and_removes_fine_detail() -> None:
    flat = torch.full((2, 1, 20, 20), 0.4)
    assert torch.allclose(gaussian_blur(flat), flat)
    checker = (torch.arange(20)[:, None] + torch.arange(20)[None, :]).remainder(2).float().view(1, 1, 20, 20)
    blurred = gaussian_blur(checker)
    assert blurred.mean().item() == pytest.approx(checker.mean().item(), abs=0.01)
    assert (blurred - 0.5).abs().max() < 0.1  # a one-pixel checkerboard is nearly all fine detail


def test_sharpness_softens_or_sharpens_each_image_within_range() -> None:
    generator = torch.Generator().manual_seed(0)
    images = 0.5 + 0.1 * torch.rand(32, 1, 24, 24, generator=generator)  # no clamping at 0 or 1
    only_sharpness = AugmentConfig(rotation_deg=0, scale=0, translate=0, brightness=0, contrast=0, sharpness=0.5)
    out = augment_batch(images, only_sharpness, torch.Generator().manual_seed(1))
    detail = images - gaussian_blur(images)
    # each output is image + k * detail for one k per image; recover k by least squares
    k = ((out - images) * detail).sum(dim=(1, 2, 3)) / (detail * detail).sum(dim=(1, 2, 3))
    assert torch.allclose(out, images + k.view(-1, 1, 1, 1) * detail, atol=1e-5)
    assert k.abs().max() <= 0.5 + 1e-5 and k.min() < -0.2 and k.max() > 0.2  # both ways, within the range
    plain = AugmentConfig()  # a run without it keeps the random sequence it had before the option existed
    assert torch.equal(augment_batch(images, plain, torch.Generator().manual_seed(3)),
                       augment_batch(images, dataclasses.replace(plain, sharpness=0.0), torch.Generator().manual_seed(3)))


EVERY_OPTION = AugmentConfig(aspect=0.1, sharpness=0.5)


def test_an_empty_batch_comes_back_empty() -> None:
    for cfg in (AugmentConfig(), EVERY_OPTION):
        out = augment_batch(torch.zeros(0, 1, 32, 32), cfg, torch.Generator().manual_seed(0))
        assert out.shape == (0, 1, 32, 32)


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (1, 5), (2, 8), (3, 3)])
def test_images_of_one_or_two_pixels_are_augmented_with_every_option(shape: tuple[int, int]) -> None:
    images = torch.rand(4, 1, *shape, generator=torch.Generator().manual_seed(0))
    out = augment_batch(images, EVERY_OPTION, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    flat = torch.full((2, 1, *shape), 0.4)
    assert torch.allclose(gaussian_blur(flat), flat)  # edges repeated where they cannot be reflected


def test_a_batch_of_another_shape_is_a_clear_error() -> None:
    for shape in [(2, 1, 0, 8), (2, 1, 8, 0), (2, 8, 8)]:
        with pytest.raises(ValueError, match=r"augment_batch takes a batch of shape \(N, 1, H, W\) of images at "
                                             r"least 1 x 1 px, got \(" + ", ".join(map(str, shape))):
            augment_batch(torch.zeros(shape), AugmentConfig())


def _encoded(image: Image.Image, fmt: str) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=90) if fmt == "JPEG" else image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_load_image_and_original_is_both_decodes_from_one_where_draft_mode_changes_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import pneumoscan.data.decode as decode_module
    from pneumoscan.data.decode import read_grayscale
    from pneumoscan.data.preprocess import load_image_and_original
    from tests.conftest import dicom_to_bytes, make_dicom

    rng = np.random.default_rng(0)
    grey = Image.fromarray(rng.integers(0, 256, (200, 260), dtype=np.uint8))
    colour = Image.fromarray(rng.integers(0, 256, (200, 260, 3), dtype=np.uint8))
    films = {  # name: (bytes, decodes expected for the model's size 64)
        "png": (_encoded(grey, "PNG"), 1),
        "grey jpeg that draft mode cannot shrink": (_encoded(grey.resize((120, 100)), "JPEG"), 1),  # 1/2: 60 x 50
        "dicom": (dicom_to_bytes(make_dicom(np.asarray(grey, dtype=np.uint16) * 4)), 1),
        "grey jpeg draft mode shrinks": (_encoded(grey.resize((520, 400)), "JPEG"), 2),  # to 1/4: 130 x 100
        "colour jpeg, read as grey in draft mode": (_encoded(colour.resize((120, 100)), "JPEG"), 2),  # its luma
    }
    real_pil, real_dicom = decode_module._read_pil, decode_module.read_dicom
    decodes = []

    def counted(real):  # noqa: ANN001, ANN202
        def decode(*args: object) -> np.ndarray:
            decodes.append(1)
            return real(*args)
        return decode

    for name, (data, expected_decodes) in films.items():
        before = (read_grayscale(data), *load_image_with_levels(data, 64))  # explain's two decodes
        monkeypatch.setattr(decode_module, "_read_pil", counted(real_pil))
        monkeypatch.setattr(decode_module, "read_dicom", counted(real_dicom))
        decodes.clear()
        after = load_image_and_original(data, 64)
        monkeypatch.undo()
        assert len(decodes) == expected_decodes, name
        assert np.array_equal(after[0], before[0]) and np.array_equal(after[1], before[1]), name
        assert after[2] == before[2], name


@pytest.mark.parametrize(("side", "size"), [(300, 128), (520, 64), (1100, 128)])
def test_a_large_jpeg_and_a_lossless_file_of_its_pixels_give_the_same_input(side: int, size: int) -> None:
    """Draft mode decodes a JPEG of twice the model's size or more already shrunk (scaled DCT); a PNG or TIFF of the
    same pixels shrinks by the same factor before the resize, so both give the model the same input (up to 2 grey
    levels; 14 to 34 apart when the lossless file was resized from full size)."""
    from tests.conftest import UPRIGHT_FILM

    with Image.open(UPRIGHT_FILM) as im:
        film = im.convert("L").resize((side, side), Image.Resampling.BICUBIC)
    jpeg = _encoded(film, "JPEG")
    pixels = Image.open(io.BytesIO(jpeg)).convert("L")
    from_jpeg = load_image(jpeg, size).astype(int)
    for fmt in ("PNG", "TIFF"):
        assert np.abs(load_image(_encoded(pixels, fmt), size).astype(int) - from_jpeg).max() <= 2, fmt


def test_draft_scale_is_the_factor_pillows_draft_mode_shrinks_a_jpeg_by() -> None:
    from pneumoscan.data.preprocess import draft_scale

    for width, height in [(100, 90), (255, 300), (256, 256), (511, 700), (512, 600), (1100, 1100), (5000, 4000)]:
        with Image.open(io.BytesIO(_encoded(Image.new("L", (width, height)), "JPEG"))) as im:
            im.draft("L", (128, 128))
            assert im.size == tuple(-(-side // draft_scale(width, height, 128)) for side in (width, height))
