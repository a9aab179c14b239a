"""Framing normalisation: the crop finds the body's width and gives every framing the same view."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pneumoscan.data.framing import MARGIN, MIN_SIDE, body_boxes, crop_to_body


def body(size: int = 128, width: float = 0.6, height: float = 1.0) -> np.ndarray:
    """A bright body `width` of the frame wide, with dark lungs, on a black background."""
    image = np.zeros((size, size), dtype=np.uint8)
    w, h = int(size * width), int(size * height)
    left, top = (size - w) // 2, (size - h) // 2
    image[top : top + h, left : left + w] = 180
    image[top + h // 4 : top + h // 2, left + w // 8 : left + 3 * w // 8] = 60  # a lung
    image[top + h // 4 : top + h // 2, left + 5 * w // 8 : left + 7 * w // 8] = 60
    return image


def zoom_out(image: np.ndarray, factor: float) -> np.ndarray:
    """The same scene with a wider field of view: shrunk by `factor` on a black surround."""
    size = image.shape[0]
    small = np.asarray(Image.fromarray(image).resize((round(size * factor),) * 2, Image.Resampling.BILINEAR))
    out = np.zeros_like(image)
    offset = (size - small.shape[0]) // 2
    out[offset : offset + small.shape[0], offset : offset + small.shape[1]] = small
    return out


def test_the_box_is_as_wide_as_the_body_and_centred_on_it() -> None:
    image = np.roll(body(128, width=0.6), 10, axis=1)
    left, top, right, bottom = body_boxes(image[None])[0]
    assert abs((right - left) - (0.6 + 2 * MARGIN) * 128) <= 3
    assert abs((left + right) / 2 - (64 + 10)) <= 2
    assert abs((top + bottom) / 2 - 64) <= 1e-6 and bottom - top == right - left


def test_a_body_that_fills_the_frame_and_a_blank_image_are_left_whole() -> None:
    full = body(96, width=1.0)
    blank = np.full((96, 96), 77, dtype=np.uint8)
    for image in (full, blank):
        np.testing.assert_allclose(body_boxes(image[None])[0], [0, 0, 96, 96])
        np.testing.assert_array_equal(crop_to_body(image[None])[0], image)


def test_the_crop_never_zooms_in_more_than_min_side() -> None:
    image = np.zeros((100, 100), dtype=np.uint8)
    image[:, 48:52] = 255  # a thin stripe
    left, _, right, _ = body_boxes(image[None])[0]
    assert right - left == MIN_SIDE * 100


def test_a_wider_field_of_view_gives_nearly_the_same_crop() -> None:
    scene = body(128, width=0.7, height=0.8)
    crops = crop_to_body(np.stack([scene, zoom_out(scene, 0.8)]))
    framed = np.abs(scene.astype(int) - zoom_out(scene, 0.8).astype(int)).mean()
    cropped = np.abs(crops[0].astype(int) - crops[1].astype(int)).mean()
    assert cropped < framed / 3, (cropped, framed)


def test_shape_and_dtype_are_kept_for_non_square_images() -> None:
    images = np.stack([body(64)[:, :48], body(64, width=0.4)[:, :48]])
    out = crop_to_body(images)
    assert out.shape == images.shape and out.dtype == np.uint8


@settings(max_examples=40, deadline=None)
@given(st.integers(16, 80), st.integers(16, 80), st.integers(0, 2**32 - 1))
def test_boxes_stay_inside_the_image_for_any_content(h: int, w: int, seed: int) -> None:
    images = np.random.default_rng(seed).integers(0, 256, (3, h, w), dtype=np.uint8)
    for left, top, right, bottom in body_boxes(images):
        side = right - left
        assert 0 <= left and right <= w + 1e-9 and 0 <= top and bottom <= h + 1e-9
        assert abs((bottom - top) - side) < 1e-9
        assert min(MIN_SIDE * w, min(h, w)) - 1e-9 <= side <= min(h, w) + 1e-9
