"""Tests for pneumoscan.data.dicom, through read_grayscale as callers use it: every DICOM is made here, tiny."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumoscan.data.decode import is_dicom, read_grayscale
from pneumoscan.errors import ImageTooLarge, InputError
from tests.conftest import interrupt_import
from tests.data.builders import (PATIENT, PATIENT_ID, check_error, dcm, dicom_bytes, encode, linear_window, make_dicom,
                                  make_report, minmax_u8, ramp, write)

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.pixels import get_decoder  # noqa: E402
from pydicom.uid import JPEGBaseline8Bit, JPEGLSLossless, RLELossless, generate_uid  # noqa: E402


def test_dicom_without_its_preamble_is_found_and_read_alike(tmp_path: Path) -> None:
    from pneumoscan.data.formats import is_image_path

    a = ramp(lo=20, hi=180)
    full = dicom_bytes(make_dicom(a))
    bare = full[132:]  # as older devices write it: no 128-byte preamble, no 'DICM'
    assert is_dicom(bare[:132]) and not is_dicom(b"\x89PNG\r\n\x1a\n" + bytes(124))
    uid_named = write(tmp_path / "1.2.840.113619.2.55.3.12345", bare)  # found by content, not by suffix
    assert is_image_path(uid_named)
    np.testing.assert_array_equal(read_grayscale(uid_named), read_grayscale(full))


@pytest.mark.parametrize("implicit, little", [(True, True), (False, True), (False, False)])
def test_a_bare_dicom_dataset_without_file_meta_is_read(tmp_path: Path, implicit: bool, little: bool) -> None:
    """Old devices wrote datasets without preamble or file meta, some in the retired Explicit VR Big Endian: such a
    film was 'not a readable image (cannot identify image file)', though pydicom reads it in the byte order it finds."""
    a = ramp(lo=0, hi=4095, dtype=np.uint16)  # 16-bit: its pixels' bytes are in the dataset's byte order
    ds = make_dicom(a, bits_stored=12)
    if not little:
        ds.PixelData = a.astype(">u2").tobytes()  # pydicom writes Pixel Data's bytes as they are
    ds.file_meta = FileMetaDataset()  # none written: the file starts at group 0008
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=implicit, little_endian=little, enforce_file_format=False)
    bare = buffer.getvalue()
    assert bare[:2] == (b"\x08\x00" if little else b"\x00\x08") and is_dicom(bare[:132])
    expected = read_grayscale(dicom_bytes(make_dicom(a, bits_stored=12)))
    np.testing.assert_array_equal(read_grayscale(write(tmp_path / "bare.dcm", bare)), expected)


def test_dicom_8bit_mono2_kept_as_stored(tmp_path: Path) -> None:
    a = ramp(lo=20, hi=180)
    np.testing.assert_array_equal(read_grayscale(dcm(tmp_path, make_dicom(a))), a)


def test_dicom_8bit_mono1_inverted(tmp_path: Path) -> None:
    a = ramp(lo=20, hi=180)
    out = read_grayscale(dcm(tmp_path, make_dicom(a, photometric="MONOCHROME1")))
    np.testing.assert_array_equal(out, 255 - a)


@pytest.mark.parametrize(("photometric", "shape", "inverted"), [
    ("MONOCHROME2", "INVERSE", True), ("MONOCHROME2", "inverse ", True), ("MONOCHROME2", "IDENTITY", False),
    ("MONOCHROME1", "INVERSE", True),  # as DX requires of MONOCHROME1: the same inversion, not a second one
])
@pytest.mark.parametrize("bits", [8, 12])
def test_dicom_presentation_lut_shape_inverse_is_shown_inverted(tmp_path: Path, photometric: str, shape: str,
                                                                 inverted: bool, bits: int) -> None:
    a = ramp(lo=20, hi=180) if bits == 8 else ramp(lo=0, hi=4095, dtype=np.uint16)
    ds = make_dicom(a, bits_stored=bits, photometric=photometric)
    ds.PresentationLUTShape = shape
    expected = a if bits == 8 else minmax_u8(a)
    np.testing.assert_array_equal(read_grayscale(dcm(tmp_path, ds)), 255 - expected if inverted else expected)


def with_presentation_lut(ds: Dataset, descriptor: list[int], entries: np.ndarray | list[int],
                          vr: str = "US") -> Dataset:
    """`ds` with a Presentation LUT Sequence of one item: `descriptor` and `entries` as LUT Data (US or OW)."""
    item = Dataset()
    item.add_new("LUTDescriptor", "US", descriptor)
    data = np.asarray(entries, dtype=np.uint16)
    item.add_new("LUTData", vr, data.tobytes() if vr == "OW" else data.tolist())
    ds.PresentationLUTSequence = [item]
    return ds


@pytest.mark.parametrize(("photometric", "inverting", "shape"), [
    ("MONOCHROME2", False, "IDENTITY"), ("MONOCHROME2", True, "INVERSE"),
    ("MONOCHROME1", True, "INVERSE"),  # its P-values are the shades, as INVERSE's are for MONOCHROME1: one inversion
])
@pytest.mark.parametrize(("bits", "lut_bits", "vr"), [(8, 8, "US"), (8, 16, "OW"), (12, 12, "US"), (12, 12, "OW")])
def test_dicom_presentation_lut_sequence_shows_the_film_as_the_same_shape_does(
        tmp_path: Path, photometric: str, inverting: bool, shape: str, bits: int, lut_bits: int, vr: str) -> None:
    """A Presentation LUT Sequence was ignored: an inverting one showed the film as a negative. Its entries (the
    VOI output onto 0..entries-1) are P-values, 0 black to 2^bits - 1 white, so an identity or inverting LUT shows
    the film as Presentation LUT Shape IDENTITY or INVERSE does."""
    a = ramp(lo=20, hi=180) if bits == 8 else ramp(lo=0, hi=4095, dtype=np.uint16)
    entries = 2**lut_bits if bits == 8 else 4096  # 8-bit film: 256 or 65,536 (descriptor 0) entries
    lut = (np.arange(entries) * (2**lut_bits - 1) // (entries - 1)).astype(np.uint16)
    ds = with_presentation_lut(make_dicom(a, bits_stored=bits, photometric=photometric),
                               [entries % 2**16, 0, lut_bits], lut[::-1] if inverting else lut, vr)
    by_shape = make_dicom(a, bits_stored=bits, photometric=photometric)
    by_shape.PresentationLUTShape = shape
    expected = read_grayscale(dcm(tmp_path, by_shape, "shape.dcm"))
    assert bool(expected[0, 0] > expected[-1, -1]) is inverting  # the shape file itself: shown inverted or not
    np.testing.assert_array_equal(read_grayscale(dcm(tmp_path, ds)), expected)


def test_dicom_presentation_lut_sequence_maps_the_voi_output_through_its_entries(tmp_path: Path) -> None:
    """A LUT that is no identity: 4,096 12-bit entries, black below the middle of the window and white from it,
    shows a windowed 12-bit film in two tones split at the window's centre."""
    a = ramp(lo=0, hi=4095, dtype=np.uint16)
    lut = np.where(np.arange(4096) >= 2048, 4095, 0)
    ds = with_presentation_lut(make_dicom(a, bits_stored=12, center=2000, width=1001), [4096, 0, 12], lut)
    out = read_grayscale(dcm(tmp_path, ds))
    windowed = linear_window(a, 2000, 1001)  # 0..255 over the window; the LUT's middle, 2047.5 of 4095, is 127.5
    assert set(np.unique(out)) == {0, 255}
    np.testing.assert_array_equal(out[(windowed <= 126) | (windowed >= 129)],
                                  np.where(windowed >= 128, 255, 0)[(windowed <= 126) | (windowed >= 129)])


@pytest.mark.parametrize(("descriptor", "entries", "says"), [
    ([4096, 0, 12], np.arange(100), "its LUT Descriptor gives 4096 entries, its LUT Data holds 100"),
    ([256, 0, 8], np.arange(300), "its LUT Descriptor gives 256 entries, its LUT Data holds 300"),
    ([256, 10, 12], np.arange(256), "its first input value is 10, not 0"),
    ([256, 0, 20], np.arange(256), "entries of 20 bits, where a Presentation LUT's have 10 to 16"),
    ([256, 0, 8], np.arange(256) * 2, "an entry outside 0 to 255, the 8-bit P-values"),
    ([256, 0], np.arange(256), "a LUT Descriptor of 2 values, not 3"),
])
def test_dicom_unusable_presentation_lut_sequence_is_refused_in_one_line(
        tmp_path: Path, descriptor: list[int], entries: np.ndarray, says: str) -> None:
    """It sets the film's shades and polarity: read another way (or ignored), the film could be shown as a negative,
    so the file is refused, naming it and what is wrong."""
    ds = with_presentation_lut(make_dicom(ramp(lo=0, hi=4095, dtype=np.uint16), bits_stored=12), descriptor, entries)
    path = dcm(tmp_path, ds)
    with pytest.raises(InputError) as exc:
        read_grayscale(path)
    msg = check_error(exc, str(path))
    assert f"Presentation LUT Sequence cannot be used ({says})" in msg and "Presentation LUT Shape" in msg


def test_dicom_empty_presentation_lut_sequence_is_no_lut(tmp_path: Path) -> None:
    a = ramp(lo=20, hi=180)
    ds = make_dicom(a, photometric="MONOCHROME1")
    ds.PresentationLUTSequence = []
    np.testing.assert_array_equal(read_grayscale(dcm(tmp_path, ds)), 255 - a)


@pytest.mark.parametrize("bits", [12, 16])
def test_dicom_high_bit_no_window_minmax(tmp_path: Path, bits: int) -> None:
    a = ramp(lo=100, hi=2**bits - 500, dtype=np.uint16)
    out = read_grayscale(dcm(tmp_path, make_dicom(a, bits_stored=bits)))
    np.testing.assert_array_equal(out, minmax_u8(a))


def test_dicom_12bit_mono1_minmax_inverted(tmp_path: Path) -> None:
    a = ramp(lo=0, hi=4095, dtype=np.uint16)
    out = read_grayscale(dcm(tmp_path, make_dicom(a, bits_stored=12, photometric="MONOCHROME1")))
    np.testing.assert_array_equal(out, 255 - minmax_u8(a))


def test_dicom_signed_16bit_with_rescale(tmp_path: Path) -> None:
    a = ramp(lo=-1000, hi=3000, dtype=np.int16)
    out = read_grayscale(dcm(tmp_path, make_dicom(a, bits_stored=16, slope=-2.0, intercept=50)))
    hu = a.astype(np.float64) * -2.0 + 50  # negative slope: the brightest stored value becomes 0
    np.testing.assert_array_equal(out, minmax_u8(hu))
    assert out[0, 0] == 255 and out[-1, -1] == 0


@pytest.mark.parametrize("slope, intercept", [("", ""), ("", -1024), (2, "")])
def test_dicom_empty_rescale_slope_or_intercept_is_read_as_absent(tmp_path: Path, slope: object,
                                                                  intercept: object) -> None:
    """Exporters and anonymisers leave Rescale Slope or Intercept present but empty (highdicom#418): pydicom's modality
    LUT then failed on None, and such a film was refused as 'unsupported layout'. Then an empty slope was read as 1,
    so an intercept of -1024 beside it shifted the film, where pydicom's `apply_modality_lut` and dcmtk rescale only
    when both are present: an empty element is read as an absent one, and the file decodes as one without it."""
    a = ramp(lo=0, hi=4000, dtype=np.uint16)
    empty, absent = make_dicom(a, bits_stored=12, center=40, width=400), make_dicom(a, bits_stored=12, center=40,
                                                                                     width=400)
    for tag, value in ((0x00281053, slope), (0x00281052, intercept)):  # Rescale Slope, Rescale Intercept
        empty.add_new(tag, "DS", value)
        if value != "":
            absent.add_new(tag, "DS", value)
    out = read_grayscale(dcm(tmp_path, empty, "empty.dcm"))
    np.testing.assert_array_equal(out, read_grayscale(dcm(tmp_path, absent, "absent.dcm")))
    np.testing.assert_array_equal(out, linear_window(a.astype(np.float64), 40, 400))


@pytest.mark.parametrize("slope, said", [("0", "is 0"), ("0.0", "is 0"), ("NaN", "is not a finite number")])
def test_dicom_rescale_slope_that_blanks_the_film_is_a_damaged_header_not_a_blank_film(
        tmp_path: Path, slope: str, said: str) -> None:
    """Rescale Slope 0 (or NaN) maps every stored value to the intercept: the film decoded to all zeros, which a
    guarded model refused as 'blank or nearly constant image' (not a chest X-ray) and an unguarded one scored. The
    header is damaged: one line names the file and the element, and says to export the film again. A Modality LUT
    Sequence, which the slope yields to, and a colour film, which no rescale applies to, are read as before."""
    a = ramp(lo=0, hi=4000, dtype=np.uint16)
    ds = make_dicom(a, bits_stored=12, slope=1, intercept=-1024, center=40, width=400)
    ds.RescaleSlope = slope
    with pytest.raises(InputError) as exc:
        read_grayscale(dcm(tmp_path, ds, "slope.dcm"))
    assert check_error(exc, str(tmp_path / "slope.dcm")).endswith(
        f": DICOM Rescale Slope (0028,1053) {said}, which makes every pixel of the film the same value (a blank "
        "picture): a damaged header; export the film again")
    lut = Dataset()
    lut.add_new("LUTDescriptor", "US", [4096, 0, 12])
    lut.add_new("LUTData", "US", list(range(4096)))
    ds.ModalityLUTSequence = [lut]
    assert read_grayscale(dcm(tmp_path, ds, "lut.dcm")).std() > 0
    colour = np.stack([ramp(), ramp()[::-1], ramp()], axis=-1)
    rgb = make_dicom(colour, photometric="RGB")
    rgb.RescaleSlope, rgb.RescaleIntercept = slope, 0
    np.testing.assert_array_equal(read_grayscale(dcm(tmp_path, rgb, "rgb.dcm")),
                                  read_grayscale(dicom_bytes(make_dicom(colour, photometric="RGB"))))


def test_dicom_empty_voi_lut_function_is_linear(tmp_path: Path) -> None:
    """An empty VOI LUT Function is the default LINEAR, as when absent: pydicom refuses the value '', and the window was
    passed over for the film's min-max, another contrast than the one the film is shown with."""
    a = ramp(lo=0, hi=4095, dtype=np.uint16)
    out = read_grayscale(dcm(tmp_path, make_dicom(a, bits_stored=12, center=2000, width=1000, voi_function="")))
    np.testing.assert_array_equal(out, linear_window(a, 2000, 1000))


def test_dicom_12bit_window(tmp_path: Path) -> None:
    a = ramp(lo=0, hi=4095, dtype=np.uint16)
    out = read_grayscale(dcm(tmp_path, make_dicom(a, bits_stored=12, center=2000, width=1000)))
    np.testing.assert_array_equal(out, linear_window(a, 2000, 1000))
    assert out.min() == 0 and out.max() == 255


def test_dicom_window_after_rescale_mono1(tmp_path: Path) -> None:
    a = ramp(lo=0, hi=4000, dtype=np.uint16)
    ds = make_dicom(a, bits_stored=12, slope=1.0, intercept=-1024, center=40, width=400,
                    photometric="MONOCHROME1")
    out = read_grayscale(dcm(tmp_path, ds))
    np.testing.assert_array_equal(out, 255 - linear_window(a.astype(np.float64) - 1024, 40, 400))


def test_dicom_window_larger_than_data_is_not_stretched(tmp_path: Path) -> None:
    a = ramp(lo=1000, hi=1500, dtype=np.uint16)  # only the middle of the window
    out = read_grayscale(dcm(tmp_path, make_dicom(a, bits_stored=16, center=1250, width=2001)))
    np.testing.assert_array_equal(out, linear_window(a, 1250, 2001))
    assert 60 < out.min() and out.max() < 195


@pytest.mark.parametrize("header", [dict(slope=1.0, intercept=-1024, center=1000, width=3000),
                                    dict(slope=0.5, intercept=-100), dict(photometric="MONOCHROME1")])
def test_a_large_dicom_is_decoded_without_float64_copies_of_the_film(header: dict) -> None:
    """A hospital's 4,300 x 4,300 px DX film with a rescale and a window took seconds and 560 MB more memory to
    decode (float64 copies of every pixel at each step); each stored value is now mapped once and looked up."""
    import tracemalloc

    a = np.random.default_rng(0).integers(0, 4096, (1024, 1536), dtype=np.uint16)
    data = dicom_bytes(make_dicom(a, bits_stored=12, **header))
    read_grayscale(data)  # pydicom's first-use imports are not the decode's memory
    tracemalloc.start()
    try:
        out = read_grayscale(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12 * a.size  # bytes: 24 to 30 per pixel before; 2 are the stored pixels, 1 the result
    values = a * header.get("slope", 1.0) + header.get("intercept", 0.0)
    expected = (linear_window(values, header["center"], header["width"]) if "center" in header
                else minmax_u8(values))
    np.testing.assert_array_equal(out, 255 - expected if "photometric" in header else expected)


def test_dicom_signed_values_and_a_range_narrower_than_the_bits_are_scaled_by_the_values_present(
        tmp_path: Path) -> None:
    a = np.array([[-3, -1, 0, 5], [7, 7, -3, 2]], dtype=np.int16)  # int16 -3 is 65533 as its bits read unsigned
    out = read_grayscale(dcm(tmp_path, make_dicom(a, bits_stored=16)))
    np.testing.assert_array_equal(out, minmax_u8(a.astype(np.float64)))
    assert out.min() == 0 and out.max() == 255


def collimated(lo: int, hi: int, pad: int, dtype: type = np.uint16) -> tuple[np.ndarray, np.ndarray]:
    """A 12 x 16 ramp from lo to hi inside a 3 px frame of `pad` (a collimated film), and the frame's mask."""
    a = np.full((12, 16), pad, dtype=dtype)
    a[3:-3, 3:-3] = ramp(h=6, w=10, lo=lo, hi=hi, dtype=dtype)
    frame = np.ones(a.shape, dtype=bool)
    frame[3:-3, 3:-3] = False
    return a, frame


def minmax_of(a: np.ndarray, real: np.ndarray) -> np.ndarray:
    """`a` scaled by the min and max of its `real` pixels onto 0..255."""
    lo, hi = float(a[real].min()), float(a[real].max())
    return np.clip(np.rint((a.astype(np.float64) - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("pad", "photometric"), [(0, "MONOCHROME2"), (4095, "MONOCHROME2"), (0, "MONOCHROME1"),
                                                  (4095, "MONOCHROME1")])
def test_dicom_pixel_padding_neither_stretches_the_range_nor_shows_as_a_frame(tmp_path: Path, pad: int,
                                                                               photometric: str) -> None:
    a, frame = collimated(1000, 3000, pad)
    ds = make_dicom(a, bits_stored=12, photometric=photometric)
    ds.PixelPaddingValue = pad
    out = read_grayscale(dcm(tmp_path, ds))
    film = minmax_of(a, ~frame)
    np.testing.assert_array_equal(out[~frame], (255 - film if photometric == "MONOCHROME1" else film)[~frame])
    assert out[~frame].min() == 0 and out[~frame].max() == 255
    assert (out[frame] == 0).all()  # the darkest real tone, whichever end of the stored range the padding is at


def test_dicom_pixel_padding_range_and_a_window_fill_with_the_darkest_windowed_tone(tmp_path: Path) -> None:
    a, frame = collimated(1000, 3000, 0)
    a[0, :] = 7  # the range limit's other end, and values between: all padding
    a[1, :] = 3
    ds = make_dicom(a, bits_stored=12, center=1500, width=4000)  # the darkest real pixel windows to about 64
    ds.PixelPaddingValue, ds.PixelPaddingRangeLimit = 7, 0
    out = read_grayscale(dcm(tmp_path, ds))
    windowed = linear_window(a, 1500, 4000)
    np.testing.assert_array_equal(out[~frame], windowed[~frame])
    assert (out[frame] == windowed[~frame].min()).all() and windowed[~frame].min() > 50


@pytest.mark.parametrize(("vr", "value"), [("SS", -2048), ("US", 0xF800), ("US", 0x800)])  # -2048 in 16, 12 bits
def test_dicom_pixel_padding_of_signed_pixels(tmp_path: Path, vr: str, value: int) -> None:
    a, frame = collimated(-1000, 1500, -2048, dtype=np.int16)
    ds = make_dicom(a, bits_stored=12)
    ds.add_new("PixelPaddingValue", vr, value)
    out = read_grayscale(dcm(tmp_path, ds))
    np.testing.assert_array_equal(out[~frame], minmax_of(a, ~frame)[~frame])
    assert (out[frame] == 0).all()


def test_dicom_pixel_padding_of_32_bit_pixels(tmp_path: Path) -> None:
    a, frame = collimated(100_000, 300_000, 2**32 - 1, dtype=np.uint32)  # not looked up: mapped pixel by pixel

    def make32() -> Dataset:
        ds = make_dicom(a.astype(np.uint16))
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelData = 32, 32, 31, a.tobytes()
        return ds

    ds = make32()
    ds.add_new("PixelPaddingValue", "UL", 2**32 - 1)  # not a standard VR for it, but pydicom keeps it
    out = read_grayscale(dcm(tmp_path, ds))
    np.testing.assert_array_equal(out[~frame], minmax_of(a, ~frame)[~frame])
    assert (out[frame] == 0).all()


@pytest.mark.parametrize("signed", [False, True])
def test_dicom_garbage_above_bits_stored_is_not_read_as_pixel_values(tmp_path: Path, signed: bool) -> None:
    """12 bits stored in 16 allocated, the top 4 bits holding other data (an overlay, or noise): only the 12 count,
    signed ones as 12-bit two's complement."""
    values = ramp(h=8, w=16, lo=-2048 if signed else 0, hi=2047 if signed else 4095, dtype=np.int32)
    ds = make_dicom(values.astype(np.int16 if signed else np.uint16), bits_stored=12, center=0 if signed else 2048,
                    width=4096)
    garbage = np.random.default_rng(0).integers(0, 16, values.shape, dtype=np.uint16) << 12
    ds.PixelData = ((values.astype(np.uint16) & 0x0FFF) | garbage).tobytes()
    out = read_grayscale(dcm(tmp_path, ds))
    np.testing.assert_array_equal(out, linear_window(values, 0 if signed else 2048, 4096))
    assert out[0, 0] == 0 and out[-1, -1] == 255


def test_dicom_invalid_window_falls_back_to_minmax(tmp_path: Path) -> None:
    a = ramp(lo=0, hi=4095, dtype=np.uint16)
    out = read_grayscale(dcm(tmp_path, make_dicom(a, bits_stored=12, center=100, width=0)))
    np.testing.assert_array_equal(out, minmax_u8(a))


@pytest.mark.parametrize("center, width", [(40, 400), ([40, 2000], [400, 1000]), (9000, 10)])
def test_dicom_window_that_blanks_the_film_is_passed_over(tmp_path: Path, center: object, width: object) -> None:
    """A window outside the film's values (a soft-tissue window on a film stored in other units) made every pixel
    white or black: the film read as a blank image, which the guard refused as 'not a chest X-ray'. The next window
    is used, else the min-max of the film."""
    a = ramp(lo=1000, hi=3000, dtype=np.uint16)
    out = read_grayscale(dcm(tmp_path, make_dicom(a, bits_stored=12, center=center, width=width)))
    expected = linear_window(a, 2000, 1000) if isinstance(center, list) else minmax_u8(a)
    np.testing.assert_array_equal(out, expected)


def test_dicom_voi_lut_sequence(tmp_path: Path) -> None:
    a = ramp(h=4, w=4, lo=0, hi=15, dtype=np.uint16)
    ds = make_dicom(a, bits_stored=12)
    item = Dataset()
    item.LUTDescriptor = [16, 0, 16]
    item["LUTDescriptor"].VR = "US"
    item.LUTData = [i * 1000 for i in range(16)][::-1]  # an inverting LUT, 0..15000
    item["LUTData"].VR = "US"
    ds.VOILUTSequence = [item]
    out = read_grayscale(dcm(tmp_path, ds))
    expected = np.rint((15 - a.astype(np.float64)) * 1000 / 15000 * 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("written_as", ["US", "SS"])
def test_dicom_voi_lut_of_signed_pixels_from_a_negative_value(tmp_path: Path, written_as: str) -> None:
    """A signed film's VOI LUT that starts at -100, its descriptor written as US in explicit VR (65436), was
    ignored (min-max instead); pydicom reads the same file in implicit VR as SS, -100, and maps it so."""
    from pydicom.pixels import apply_voi

    a = np.concatenate([np.arange(-200, 200, 2), [32000, 32767, -32768, 0]]).astype(np.int16).reshape(4, 51)
    lut = np.linspace(0, 60000, 200).astype(np.uint16)[::-1]

    def with_lut(first: int, vr: str) -> Dataset:
        ds = make_dicom(a, bits_stored=16)
        item = Dataset()
        item.add_new("LUTDescriptor", vr, [200, first, 16])
        item.add_new("LUTData", "US", lut.tolist())
        ds.VOILUTSequence = [item]
        return ds

    out = read_grayscale(dcm(tmp_path, with_lut(65536 - 100 if written_as == "US" else -100, written_as)))
    reference = apply_voi(a.astype(np.int64), with_lut(-100, "SS")).astype(np.float64)  # pydicom's semantics
    np.testing.assert_array_equal(out, np.rint(reference * 255 / 60000).astype(np.uint8))
    assert out[0, 0] == 255 and out[-1, -3] == 0  # below the LUT: its first entry; 32767: its last


@pytest.mark.parametrize("vr", ["US", "OW"])
def test_dicom_8_bit_voi_lut_of_a_12_bit_film(tmp_path: Path, vr: str) -> None:
    """A 4,096-entry VOI LUT of 8-bit entries on a 12-bit film: pydicom 3.0's apply_voi indexes it in uint8, so
    the film came out as 16 repeated ramps (index 4095 read entry 255)."""
    a = ramp(h=16, w=256, lo=0, hi=4095, dtype=np.uint16)
    lut = (np.arange(4096) // 16).astype(np.uint16)  # 0..255: the film's value / 16
    ds = make_dicom(a, bits_stored=12)
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [4096, 0, 8])
    item.add_new("LUTData", vr, lut.tobytes() if vr == "OW" else lut.tolist())  # OW: one entry a 16-bit word
    ds.VOILUTSequence = [item]
    np.testing.assert_array_equal(read_grayscale(dcm(tmp_path, ds)), (a // 16).astype(np.uint8))


@pytest.mark.parametrize("window", [False, True])
def test_dicom_12_bit_modality_lut_sequence(tmp_path: Path, window: bool) -> None:
    """A Modality LUT of 12-bit entries was refused as an 'unsupported layout' (pydicom 3.0 asks numpy for a
    'uint12' type); it maps stored values as pydicom maps them: below its first value its first entry, past its end
    its last."""
    a = ramp(h=8, w=64, lo=0, hi=4095, dtype=np.uint16)
    ds = make_dicom(a, bits_stored=12, center=2000 if window else None, width=1000 if window else None)
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [3000, 500, 12])  # stored 500..3499 -> 4095..1096 (an inverting LUT)
    item.add_new("LUTData", "US", list(range(4095, 1095, -1)))
    item.ModalityLUTType = "US"
    ds.ModalityLUTSequence = [item]
    values = 4095 - (np.clip(a.astype(np.int64), 500, 3499) - 500)
    expected = linear_window(values, 2000, 1000) if window else minmax_u8(values)
    np.testing.assert_array_equal(read_grayscale(dcm(tmp_path, ds)), expected)


def test_dicom_several_windows_use_the_first_as_viewers_do(tmp_path: Path) -> None:
    a = ramp(lo=0, hi=4095, dtype=np.uint16)
    out = read_grayscale(dcm(tmp_path, make_dicom(a, bits_stored=12, center=[2000, 600], width=[1000, 300])))
    np.testing.assert_array_equal(out, linear_window(a, 2000, 1000))


@pytest.mark.parametrize("function", ["SIGMOID", "LINEAR_EXACT"])
def test_dicom_voi_lut_function_follows_pydicom(tmp_path: Path, function: str) -> None:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    a = ramp(lo=0, hi=4095, dtype=np.uint16)
    ds = make_dicom(a, bits_stored=12, slope=2.0, intercept=-1000, center=[1500, 10], width=[2500, 5],
                    voi_function=function)
    out = read_grayscale(dcm(tmp_path, ds))
    y_min, y_max = -1000.0, 4095 * 2.0 - 1000  # the window's output range: the rescaled range of 12 bits
    reference = apply_voi_lut(apply_modality_lut(a, ds), ds)
    np.testing.assert_array_equal(out, np.rint((reference - y_min) * 255 / (y_max - y_min)).astype(np.uint8))
    assert out.min() < 30 and out.max() > 225


def test_dicom_rgb_to_luminance(tmp_path: Path) -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 255
    rgb[2:, :, 1] = 255
    out = read_grayscale(dcm(tmp_path, make_dicom(rgb, photometric="RGB")))
    np.testing.assert_array_equal(out, np.array(Image.fromarray(rgb, "RGB").convert("L")))


def colour_pairs(h: int = 6, w: int = 12) -> np.ndarray:
    """(h, w, 3) uint8 colour pattern whose horizontal pairs of pixels share a colour (so 4:2:2 chroma keeps it)."""
    rng = np.random.default_rng(3)
    return np.repeat(rng.integers(0, 256, (h, w // 2, 3), dtype=np.uint8), 2, axis=1)


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL", "YBR_FULL_422"])
def test_colour_dicom_turns_grey_as_a_colour_png_does(tmp_path: Path, photometric: str) -> None:
    from tests.conftest import make_colour_dicom

    rgb = colour_pairs()
    out = read_grayscale(dcm(tmp_path, make_colour_dicom(rgb, photometric)))
    as_png = read_grayscale(encode(Image.fromarray(rgb), "PNG"))
    assert np.abs(out.astype(int) - as_png).max() <= 1  # YBR: rounded once on the way there and back


def test_dicom_with_png_extension_detected_by_content(tmp_path: Path) -> None:
    a = ramp(lo=0, hi=4095, dtype=np.uint16)
    out = read_grayscale(dcm(tmp_path, make_dicom(a, bits_stored=12), name="scan.png"))
    np.testing.assert_array_equal(out, minmax_u8(a))


def test_dicom_bytes_equals_path(tmp_path: Path) -> None:
    ds = make_dicom(ramp(lo=0, hi=4095, dtype=np.uint16), bits_stored=12, center=1500, width=800)
    np.testing.assert_array_equal(read_grayscale(dicom_bytes(ds)), read_grayscale(dcm(tmp_path, ds)))


def test_dicom_rle_compressed_decodes(tmp_path: Path) -> None:
    a = ramp(lo=0, hi=4095, dtype=np.uint16)
    ds = make_dicom(a, bits_stored=12)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    np.testing.assert_array_equal(read_grayscale(dcm(tmp_path, ds)), minmax_u8(a))


def test_dicom_multiframe_of_different_frames_refused(tmp_path: Path) -> None:
    a = np.stack([ramp(), ramp()[::-1]])
    ds = make_dicom(a)  # set_pixel_data sets NumberOfFrames = 2
    assert int(ds.NumberOfFrames) == 2
    with pytest.raises(InputError) as exc:
        read_grayscale(dcm(tmp_path, ds, "multi.dcm"))
    assert check_error(exc, str(tmp_path / "multi.dcm")).endswith(
        "multi-frame DICOM (2 frames) is not supported unless every frame is the same film; export one frame as a "
        "single image")


@pytest.mark.parametrize("frames", [1, 3])
def test_dicom_multiframe_whose_frames_are_one_film_is_read_as_that_film(frames: int, tmp_path: Path) -> None:
    """A multi-frame file of one frame, or of one film stored again in each frame, leaves no doubt which film is
    meant: it was refused all the same (identical frames); it decodes as the single-frame file does, window too."""
    a = ramp(lo=0, hi=4095, dtype=np.uint16)
    single = read_grayscale(dicom_bytes(make_dicom(a, bits_stored=12, center=1500, width=800)))
    ds = make_dicom(np.stack([a] * frames), bits_stored=12, center=1500, width=800)
    assert int(ds.NumberOfFrames) == frames
    np.testing.assert_array_equal(read_grayscale(dcm(tmp_path, ds, "multi.dcm")), single)
    rgb = np.stack([ramp(w=24), ramp(w=24)[::-1], np.full((16, 24), 40, np.uint8)], axis=-1)
    colour = read_grayscale(dicom_bytes(make_dicom(rgb, photometric="RGB")))
    np.testing.assert_array_equal(read_grayscale(dicom_bytes(make_dicom(np.stack([rgb] * frames),
                                                                        photometric="RGB"))), colour)


def test_dicom_multiframe_is_compared_only_within_the_pixel_limit(tmp_path: Path) -> None:
    """Comparing the frames decodes them all: their pixels together count against max_pixels."""
    ds = make_dicom(np.stack([ramp()] * 3))
    path = dcm(tmp_path, ds, "multi.dcm")
    assert read_grayscale(path, max_pixels=16 * 24 * 3).shape == (16, 24)
    with pytest.raises(ImageTooLarge) as exc:  # 413 from the service: the reason is its size
        read_grayscale(path, max_pixels=16 * 24 * 3 - 1)
    assert check_error(exc, str(path)).endswith(  # not 'not supported unless every frame is the same film': they are
        "multi-frame DICOM too large (3 frames of 24 x 16 pixels, 1152 together, limit 1151; all are decoded to "
        "compare them); export one frame as a single image")


def test_dicom_without_pixel_data_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        read_grayscale(dcm(tmp_path, make_report(), "report.dcm"))
    assert "no pixel data" in check_error(exc, str(tmp_path / "report.dcm"))


@pytest.mark.parametrize("where", ["file meta's group length", "file meta", "a value", "an element's header",
                                   "an element's first byte", "the pixel data's length", "just before the pixel data"])
def test_a_dicom_cut_inside_its_header_is_said_to_be_truncated(tmp_path: Path, where: str) -> None:
    """pydicom reads a file cut short without a word: cut inside its header, a film read as 'DICOM file has no pixel
    data (not an image, e.g. a report)' (or 'damaged'), which sends a user looking for the wrong cause."""
    full = dicom_bytes(make_dicom(ramp()))
    rows, pixels = full.index(b"\x28\x00\x10\x00US"), full.index(b"\xe0\x7f\x10\x00")
    cut = {"file meta's group length": 140, "file meta": 200, "a value": rows + 9, "an element's header": rows + 3,
           "an element's first byte": rows + 1,
           "the pixel data's length": pixels + 9, "just before the pixel data": pixels}[where]
    path = write(tmp_path / "cut.dcm", full[:cut])
    with pytest.raises(InputError) as exc:
        read_grayscale(path)
    assert check_error(exc, str(path)).endswith(
        ": DICOM file is truncated: it ends before its pixel data; give the complete file (copy it again)"
        if where != "just before the pixel data" else  # a whole header: a header-only export is so too
        ": DICOM image has no pixel data: the file may be cut short, or a header-only export; give the complete file, "
        "exported with its pixel data")


def test_a_dicom_cut_between_any_two_whole_elements_is_said_to_be_maybe_cut_short(tmp_path: Path) -> None:
    """Cut just after any element before its pixel data, a film is a dataset pydicom reads without a word: 10 of 480
    cuts of a film said 'no pixel data (not an image, e.g. a report)'. Its SOP Class, an image storage class, says
    pixel data must follow; such a file is also what a header-only export is, so the message names both causes."""
    full = dicom_bytes(make_dicom(ramp()))
    ds = pydicom.dcmread(io.BytesIO(full))
    items = [ds.get_item(tag) for tag in ds.keys() if tag != 0x7FE00010]
    ends = [item.value_tell + item.length for item in items]
    assert len(ends) >= 8 and max(ends) < len(full)
    for end in ends:
        path = write(tmp_path / f"cut{end}.dcm", full[:end])
        with pytest.raises(InputError) as exc:
            read_grayscale(path)
        assert check_error(exc, str(path)).endswith(
            ": DICOM image has no pixel data: the file may be cut short, or a header-only export; give the complete "
            "file, exported with its pixel data"), end


@pytest.mark.parametrize("file_meta", [True, False])
def test_a_dicom_naming_no_sop_class_cut_between_two_whole_elements_is_said_to_be_maybe_cut_short(
        tmp_path: Path, file_meta: bool) -> None:
    """A film without a SOP Class UID (a bare dataset without file meta, an ACR-NEMA-era file, a file meta without
    it) cut just after any element before its Rows and Columns was said to be 'DICOM file has no pixel data (not an
    image, e.g. a report)'; every DICOM object of a class without pixel data names that class, so such a file is
    cut short, or damaged, once it shows an image's element (group 0028, Image Type), or identifying, patient, study
    or acquisition elements (groups 0008 to 0020) with nothing after them: the datasets that name no class by design
    and hold those are queries' answers (a Query/Retrieve Level: `test_a_dicom_query_response_...`) or go on past group
    0028 (`test_a_worklist_entry_...`). Cut within group 0008 (after its dates or modality), it was 'not an image'."""
    ds = make_dicom(ramp())
    del ds.SOPClassUID
    ds.ViewPosition, ds.StudyInstanceUID = "PA", "1.2.3"  # groups 0018 and 0020, as a film holds them
    if file_meta:
        del ds.file_meta.MediaStorageSOPClassUID
    else:
        del ds.file_meta
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=False, little_endian=True, enforce_file_format=False)
    full = buffer.getvalue()
    read = pydicom.dcmread(io.BytesIO(full), force=True)
    ends = {tag: read.get_item(tag).value_tell + read.get_item(tag).length for tag in read.keys() if tag != 0x7FE00010}
    first_patient_element = min(end for tag, end in ends.items() if tag.group == 0x0010)
    assert len(ends) >= 8 and min(ends.values()) < first_patient_element  # cuts within group 0008 among them
    for end in ends.values():
        path = write(tmp_path / f"cut{end}", full[:end])
        with pytest.raises(InputError) as exc:
            read_grayscale(path)
        message = check_error(exc, str(path))
        assert "not an image" not in message and "give the complete file" in message, (end, message)


def test_a_worklist_entry_is_not_an_image_not_a_file_cut_short(tmp_path: Path) -> None:
    """A modality worklist entry names no SOP class and holds patient and study elements, as a film cut before its
    Image Pixel module does, but goes on past group 0028 (its Scheduled Procedure Step Sequence, group 0040)."""
    from pneumoscan.errors import NotAnImage

    step = Dataset()
    step.Modality, step.ScheduledStationAETitle = "CR", "XRAY1"
    entry = Dataset()
    entry.AccessionNumber, entry.PatientName, entry.PatientID, entry.StudyInstanceUID = "A1", PATIENT, PATIENT_ID, "1.2"
    entry.RequestedProcedureID, entry.ScheduledProcedureStepSequence = "RP1", [step]
    buffer = io.BytesIO()
    entry.save_as(buffer, implicit_vr=True, little_endian=True, enforce_file_format=False)
    path = write(tmp_path / "wklist1.wl", buffer.getvalue())
    with pytest.raises(NotAnImage) as exc:
        read_grayscale(path)
    assert "not an image" in check_error(exc, str(path))


@pytest.mark.parametrize("file_meta", [True, False])
@pytest.mark.parametrize("failed", [False, True])
def test_a_storage_commitment_holding_only_group_0008_is_not_an_image_not_a_file_cut_short(
        tmp_path: Path, file_meta: bool, failed: bool) -> None:
    """A Storage Commitment request or result saved to a file (its Transaction UID and Referenced or Failed SOP
    Sequence: group 0008 alone, no SOP class by design) was told 'the file may be cut short; copy it again' (422),
    which no copy mends, since a film cut within group 0008 counts as cut short; it is not an image (415)."""
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", "1.2.3.4.5"
    commitment = Dataset()
    commitment.TransactionUID = "1.2.3.4.6"
    if failed:
        ref.FailureReason = 0x0110
        commitment.FailedSOPSequence = [ref]
    else:
        commitment.ReferencedSOPSequence = [ref]
    assert_not_an_image(tmp_path / "commit.dcm", commitment, file_meta)


def assert_not_an_image(path: Path, ds: Dataset, file_meta: bool) -> None:
    """`ds` saved at `path` without a SOP class (with a file meta, explicit VR, or a bare implicit VR dataset) is
    refused as not an image."""
    from pydicom.uid import ExplicitVRLittleEndian

    from pneumoscan.errors import NotAnImage

    if file_meta:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=not file_meta, little_endian=True, enforce_file_format=False)
    write(path, buffer.getvalue())
    with pytest.raises(NotAnImage) as exc:
        read_grayscale(path)
    assert "not an image" in check_error(exc, str(path))


@pytest.mark.parametrize("file_meta", [True, False])
def test_a_dicom_query_response_with_no_sop_class_by_design_is_not_an_image_not_a_file_cut_short(
        tmp_path: Path, file_meta: bool) -> None:
    """A C-FIND response saved by findscu (or a worklist entry) names no SOP class by design: it was said to be 'cut
    short; give the complete file', which no copy can be, and answered 422 by the service; it is not an image (415)."""
    ds = Dataset()
    ds.QueryRetrieveLevel, ds.StudyDate, ds.ModalitiesInStudy = "STUDY", "20240101", "CR"
    ds.PatientName, ds.PatientID, ds.StudyInstanceUID = PATIENT, PATIENT_ID, "1.2.3"
    assert_not_an_image(tmp_path / "rsp0001.dcm", ds, file_meta)



@pytest.mark.parametrize("elements", [{"ImageType": ["ORIGINAL", "PRIMARY"]}, {"NumberOfFrames": "1"}, {"Rows": None},
                                      {"Rows": 512, "Columns": 512},
                                      {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.1", "Rows": 512, "Columns": 512}])
def test_a_dicom_image_level_query_response_is_not_an_image_whatever_image_keys_it_returns(
        tmp_path: Path, elements: dict[str, object]) -> None:
    """An IMAGE-level C-FIND response returns image attributes as keys: with an Image Type, a Number of Frames or an
    empty Rows it was 'cut short; give the complete file', with Rows and Columns 'truncated: it ends before its
    pixel data' (422), which no copy can mend. Its Query/Retrieve Level makes it a query's answer, not an image (415)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    from pneumoscan.errors import NotAnImage

    ds = Dataset()
    ds.QueryRetrieveLevel, ds.PatientID, ds.SOPInstanceUID = "IMAGE", PATIENT_ID, "1.2.3.4"
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=False, little_endian=True, enforce_file_format=False)
    path = write(tmp_path / "rsp0002.dcm", buffer.getvalue())
    with pytest.raises(NotAnImage) as exc:
        read_grayscale(path)
    message = check_error(exc, str(path))
    assert "a DICOM query or its answer" in message and "not an image" in message and "complete file" not in message
    film = make_dicom(np.full((8, 8), 100, np.uint8), bits_stored=8)
    film.QueryRetrieveLevel = "IMAGE"  # left in a stored film by some archives: its pixels are read
    assert read_grayscale(write(tmp_path / "film.dcm", dicom_bytes(film))).shape == (8, 8)


def _without_pixels(sop_class: str, **elements: object) -> bytes:
    """A DICOM dataset of `sop_class` without pixel data, holding `elements`: what an archive exports besides
    images (a report, a structure set, a vendor's private object) or an image exported as its header alone."""
    ds = make_dicom(None)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit",
                    "PixelRepresentation", "PhotometricInterpretation"):
        if keyword in ds:
            delattr(ds, keyword)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return dicom_bytes(ds)


SECONDARY_CAPTURE, PRIVATE = "1.2.840.10008.5.1.4.1.1.7", "1.3.12.2.1107.5.9.1"  # an image class; Siemens' CSA


@pytest.mark.parametrize("sop_class, elements, said", [
    ("1.2.840.10008.5.1.4.1.1.481.3", {"BitsAllocated": 16}, "no pixel data (not an image"),  # RT Structure Set
    ("1.2.840.10008.5.1.4.1.1.104.1", {"BitsAllocated": 8}, "no pixel data (not an image"),  # Encapsulated PDF
    (PRIVATE, {"BitsAllocated": 8, "SamplesPerPixel": 1}, "no pixel data (not an image"),
    (PRIVATE, {"Rows": 0, "Columns": 0}, "no pixel data (not an image"),
    (PRIVATE, {"Rows": 4, "Columns": 4}, "is truncated: it ends before its pixel data"),  # an image's header
    (SECONDARY_CAPTURE, {}, "image has no pixel data: the file may be cut short, or a header-only export"),
])
def test_a_whole_dicom_without_pixel_data_is_truncated_only_where_its_class_or_size_says_an_image(
        tmp_path: Path, sop_class: str, elements: dict[str, object], said: str) -> None:
    """dc9a973 called a whole file 'truncated' (copy it again) for any Image Pixel element, such as a stray
    BitsAllocated in a known non-image class or Rows=0 in a private one, and for an image class's header-only export
    (54 of pydicom's 171 test files). Those elements are read only for a class pydicom does not know, with both Rows
    and Columns above 0; an image class without pixel data and no sign of a cut may be either, and says so."""
    path = write(tmp_path / "x.dcm", _without_pixels(sop_class, **elements))
    with pytest.raises(InputError) as exc:
        read_grayscale(path)
    message = check_error(exc, str(path))
    assert said in message and ("copy it again" in message) == ("truncated" in said)


@pytest.mark.parametrize("tail", [b"\x10\x00\x30", b"\x10\x00\x30\x00LO\x05\x00ab", b"junk bytes"])
def test_a_report_with_stray_bytes_after_it_is_no_image_not_truncated(tmp_path: Path, tail: bytes) -> None:
    """pydicom reads a dataset with fewer than an element header's 8 bytes after it without a word, and 8 or more as
    one more element, its value cut short or not. Whether such bytes are the start of a cut element or stray ones
    cannot be told; a report holds no image either way: these were called 'truncated', sending a user to copy a
    complete file again."""
    path = write(tmp_path / "report.dcm", dicom_bytes(make_report()) + tail)
    with pytest.raises(InputError) as exc:
        read_grayscale(path)
    assert "no pixel data (not an image, e.g. a report)" in check_error(exc, str(path))


def test_a_dicom_without_pixel_data_padded_with_zeros_is_no_image_not_truncated(tmp_path: Path) -> None:
    path = write(tmp_path / "report.dcm", dicom_bytes(make_report()) + bytes(4))
    with pytest.raises(InputError) as exc:
        read_grayscale(path)
    assert "no pixel data (not an image, e.g. a report)" in check_error(exc, str(path))


@pytest.mark.parametrize("kind", ["deflated", "a stray byte after it"])
def test_a_complete_dicom_without_pixel_data_is_no_image_not_truncated(tmp_path: Path, kind: str) -> None:
    """A deflated report's element positions are in the inflated stream, and one stray byte after a report is no
    element header: both were said to be 'truncated', sending a user to copy a complete file again."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    report = make_report()
    if kind == "deflated":
        report.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        buffer = io.BytesIO()
        report.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()
    else:
        data = dicom_bytes(report) + b"\x01"
    path = write(tmp_path / "report.dcm", data)
    with pytest.raises(InputError) as exc:
        read_grayscale(path)
    assert "no pixel data (not an image, e.g. a report)" in check_error(exc, str(path))


def test_a_dicomdir_given_as_a_file_is_refused_in_one_line_pointing_to_its_folder(tmp_path: Path) -> None:
    from pydicom.fileset import FileSet
    from pydicom.uid import generate_uid

    film = make_dicom(ramp())
    film.StudyInstanceUID, film.SeriesInstanceUID = generate_uid(), generate_uid()
    film.StudyDate, film.StudyTime, film.StudyID, film.SeriesNumber, film.InstanceNumber = "20260101", "1200", "1", 1, 1
    fileset = FileSet()
    fileset.add(film)
    fileset.write(tmp_path / "export")
    with pytest.raises(InputError) as exc:
        read_grayscale(tmp_path / "export" / "DICOMDIR")
    message = check_error(exc, str(tmp_path / "export" / "DICOMDIR"))
    # one line true for every command and the service: explain and an upload take no folder
    assert message.endswith("a DICOMDIR, the index of a DICOM export, not an image; give one of the films it indexes, "
                            "in the folders beside it (`pneumoscan predict` also takes the folder it is in)")


def test_dicom_too_many_pixels_refused_before_decoding(tmp_path: Path) -> None:
    ds = make_dicom(ramp())
    ds.Rows, ds.Columns = 30000, 30000  # far more than the (tiny) pixel data holds
    with pytest.raises(InputError) as exc:
        read_grayscale(dicom_bytes(ds), name="huge.dcm")
    assert "too large" in check_error(exc, "huge.dcm")
    with pytest.raises(InputError) as exc:
        read_grayscale(dicom_bytes(make_dicom(ramp())), name="small.dcm", max_pixels=10)
    assert "too large" in check_error(exc, "small.dcm")


def test_dicom_missing_decoder_names_package(tmp_path: Path) -> None:
    ds = make_dicom(ramp())
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7 not really jpeg-ls \xff\xd9"])
    ds["PixelData"].VR = "OB"
    with pytest.raises(InputError) as exc:
        read_grayscale(dcm(tmp_path, ds, "ls.dcm"))
    msg = check_error(exc, str(tmp_path / "ls.dcm"))
    assert 'pip install "pneumoscan[dicom-compressed]"' in msg  # the extra, as docs/data.md names it
    if not get_decoder(JPEGLSLossless).is_available:
        assert "no decoder installed" in msg


@pytest.mark.parametrize("uid, named", [("1.2.840.113619.5.2", "1.2.840.113619.5.2"),  # GE's private, unknown
                                        ("1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level")])
def test_a_dicom_in_a_transfer_syntax_pydicom_has_no_decoder_for_says_to_export_it_again(
        tmp_path: Path, uid: str, named: str) -> None:
    """A transfer syntax pydicom does not know (a vendor's private one, or one newer than it, such as JPEG XL's
    1.2.840.10008.1.2.4.110 to 112 for pydicom 3.0) was 'damaged DICOM header, cannot be read'; one it knows but
    has no decoder for said to pip install the DICOM decoders, which decode neither. Installing nothing helps:
    the film must be exported in another transfer syntax."""
    from pydicom.uid import HTJ2KLossless

    from pneumoscan.errors import MissingDecoder

    ds = make_dicom(ramp())
    ds.file_meta.TransferSyntaxUID = HTJ2KLossless  # encapsulated, then renamed in the bytes: pydicom writes no other
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51 not really a codestream"])
    ds["PixelData"].VR = "OB"
    data = dicom_bytes(ds)
    assert len(HTJ2KLossless) == 23 and len(uid) in (18, 23)  # the value keeps its even length: 24 bytes
    path = write(tmp_path / "film.dcm", data.replace(HTJ2KLossless.encode(), uid.encode().ljust(23, b"\x00")))
    with pytest.raises(InputError) as exc:
        read_grayscale(path)
    message = check_error(exc, str(path))
    assert not isinstance(exc.value, MissingDecoder) and "pip" not in message, message
    assert message.endswith(f": DICOM pixel data in a transfer syntax pydicom has no decoder for ({named}); export the "
                            f"film again uncompressed (Explicit VR Little Endian), or as PNG")


def test_a_missing_decoder_says_pip_for_the_command_line_and_whom_to_ask_for_the_page(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pip hint named three packages, not the extra docs/data.md and pyproject.toml name; the service showed
    it to doctors, who cannot act on it (`for_staff` is what its answers say)."""
    import tomllib

    import pydicom.pixels

    from pneumoscan.errors import MissingDecoder

    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert "dicom-compressed" in extras
    ds = make_dicom(ramp())
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([b"\xff\xd8 garbage \xff\xd9"])
    ds["PixelData"].VR = "OB"

    class Unavailable:
        is_available, available_plugins = False, ()

    for case in ("damaged", "no decoder"):
        if case == "no decoder":
            monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: Unavailable())
        with pytest.raises(MissingDecoder) as exc:
            read_grayscale(dcm(tmp_path, ds, "film.dcm"))
        msg = check_error(exc, str(tmp_path / "film.dcm"))
        assert msg.endswith('pip install "pneumoscan[dicom-compressed]" (the pylibjpeg decoders)')
        staff = exc.value.for_staff
        assert staff.endswith("ask IT support to install the DICOM decoders (pneumoscan[dicom-compressed]) on this "
                              "server") and "pip" not in staff
        assert staff.split("; ")[0] == msg.split("; ")[0]  # the same file and cause
        assert ("no decoder installed" in msg) is (case == "no decoder")


def test_dicom_corrupt_compressed_data(tmp_path: Path) -> None:
    ds = make_dicom(ramp())
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([b"\xff\xd8 garbage \xff\xd9"])
    ds["PixelData"].VR = "OB"
    with pytest.raises(InputError) as exc:
        read_grayscale(dcm(tmp_path, ds, "bad.dcm"))
    check_error(exc, str(tmp_path / "bad.dcm"))


@pytest.mark.parametrize("damage", ["no segments", "segments cut short"])
def test_a_damaged_rle_film_is_said_to_be_damaged_not_missing_a_decoder(tmp_path: Path, damage: str) -> None:
    """pydicom decodes RLE Lossless itself, so a film it cannot decode is damaged: it was told 'the file may be
    damaged, or a decoder is missing: pip install "pneumoscan[dicom-compressed]"' (the service's page: ask IT support
    to install decoders), which installs nothing that reads it."""
    from pneumoscan.errors import MissingDecoder

    ds = make_dicom(ramp(lo=0, hi=4095, dtype=np.uint16), bits_stored=12)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    frame = pydicom.encaps.get_frame(ds.PixelData, 0)
    ds.PixelData = encapsulate([bytes(64) if damage == "no segments" else frame[:len(frame) // 2]])
    with pytest.raises(InputError) as exc:
        read_grayscale(dcm(tmp_path, ds, "rle.dcm"))
    assert not isinstance(exc.value, MissingDecoder)
    assert check_error(exc, str(tmp_path / "rle.dcm")).endswith(
        ": cannot decode the compressed DICOM pixel data (RLE Lossless), which pydicom decodes itself: the file is "
        "damaged; export the film again")


def test_dicom_truncated_pixel_data(tmp_path: Path) -> None:
    data = dicom_bytes(make_dicom(ramp(h=32, w=32)))
    with pytest.raises(InputError) as exc:
        read_grayscale(data[:-300], name="cut.dcm")
    check_error(exc, "cut.dcm")


def test_ctrl_c_while_pydicom_is_imported_is_not_taken_for_pydicom_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl+C reported by a C extension's initialisation as ImportError('initialization failed') said 'is a DICOM
    file but pydicom is not installed'."""
    data = dicom_bytes(make_dicom(ramp()))
    interrupt_import(monkeypatch, "pydicom")
    with pytest.raises(KeyboardInterrupt):
        read_grayscale(data, name="film.dcm")


def test_a_film_cut_before_its_pixels_is_cut_short_though_an_archive_left_a_query_retrieve_level_in(
        tmp_path: Path) -> None:
    """A stored film that some archive left a Query/Retrieve Level in, cut just before its Pixel Data (or exported
    as its header alone), was called a query's answer, not an image (415): its header holds the Image Pixel module's
    own elements, which no query answer returns, so it is told as the same film without that element is (422)."""
    from pneumoscan.errors import NotAnImage

    said = []
    for level in (None, "IMAGE"):
        film = make_dicom(np.full((8, 8), 100, np.uint8), bits_stored=8)
        if level:
            film.QueryRetrieveLevel = level
        data = dicom_bytes(film)
        cut = data[: data.rindex(b"\xe0\x7f\x10\x00")]  # before the Pixel Data element's tag
        path = write(tmp_path / f"cut_{level}.dcm", cut)
        with pytest.raises(InputError) as exc:
            read_grayscale(path)
        assert not isinstance(exc.value, NotAnImage)
        said.append(check_error(exc, str(path)).replace(str(path), "FILM"))
    assert said[0] == said[1]


def _short_of_memory(*_: object, **__: object) -> None:
    raise MemoryError("Unable to allocate 1.07 GiB for an array")


def test_a_colour_dicom_whose_colour_read_runs_out_of_memory_is_not_passed_as_grey(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`dicom_colour` caught every error: a colour film whose RGB read ran short of memory was None, colourfulness 0,
    and passed the guard's colour check as a grey film. It is the machine's shortage, named as the decoder's own."""
    import pneumoscan.data.dicom as dicom
    from pneumoscan.data.decode import reading_film
    from pneumoscan.data.file_cues import colourfulness
    from pneumoscan.errors import DecodeOutOfMemory
    from tests.conftest import make_colour_dicom

    data = dicom_bytes(make_colour_dicom(colour_pairs(), "RGB"))
    assert colourfulness(data) > 15  # with memory to spare: a colour film
    monkeypatch.setattr(dicom, "_dicom_rgb", _short_of_memory)
    with pytest.raises(DecodeOutOfMemory) as exc:  # was 0.0: no colour
        colourfulness(data, name="colour.dcm")
    assert "ran out of memory" in check_error(exc, "colour.dcm") and exc.value.label == "colour.dcm"
    with pytest.raises(DecodeOutOfMemory) as exc:  # unnamed bytes: the film's reader names it (was '<upload>')
        with reading_film("colour.dcm", data):
            colourfulness(data)
    assert exc.value.label == "colour.dcm"
    with pytest.raises(MemoryError):
        dicom.dicom_colour(data)
    with pytest.raises(DecodeOutOfMemory):
        dicom.dicom_colour(data, label="colour.dcm")


@pytest.mark.parametrize("step", ["header value", "presentation lut"])
def test_a_dicom_whose_header_values_or_presentation_lut_run_out_of_memory_is_not_called_damaged(
        step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory running short while the header's values were read said 'damaged DICOM image header' and, in the
    Presentation LUT, 'the DICOM Presentation LUT Sequence cannot be used': a good film blamed (422, skipped as
    unreadable by evaluate). Each is the machine's shortage, the MemoryError its cause."""
    import pneumoscan.data.dicom as dicom
    from pneumoscan.errors import DecodeOutOfMemory

    ds = make_dicom(ramp(lo=0, hi=4095, dtype=np.uint16), bits_stored=12)
    if step == "presentation lut":
        ds = with_presentation_lut(ds, [256, 0, 12], np.linspace(0, 4095, 256).astype(int))
    read_grayscale(dicom_bytes(ds))  # decodes with memory to spare
    monkeypatch.setattr(dicom, {"header value": "_shows_image", "presentation lut": "_presentation_lut_of"}[step],
                        _short_of_memory)
    with pytest.raises(DecodeOutOfMemory) as exc:
        read_grayscale(dicom_bytes(ds), name="big.film")
    msg = check_error(exc, "big.film")
    assert "ran out of memory" in msg and "damaged" not in msg and "cannot be used" not in msg, msg
    assert isinstance(exc.value.__cause__, MemoryError)


@pytest.mark.parametrize("step", ["decoder lookup", "dicomdir check"])
def test_a_dicom_whose_decoder_lookup_or_dicomdir_check_runs_out_of_memory_is_named_so(
        step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory running short while pydicom's decoder for the film's transfer syntax was looked up said 'a transfer
    syntax pydicom has no decoder for', and while a file without pixel data was checked for a DICOMDIR, 'not an
    image, e.g. a report': the catch-alls took the machine's shortage for the file's fault. Each is the file's
    DecodeOutOfMemory, the MemoryError its cause, as on every other path."""
    import pydicom.pixels

    from pneumoscan.errors import DecodeOutOfMemory, NotAnImage

    if step == "decoder lookup":
        data = dicom_bytes(make_dicom(ramp()))
        read_grayscale(data)  # decodes with memory to spare
        monkeypatch.setattr(pydicom.pixels, "get_decoder", _short_of_memory)
    else:
        data = dicom_bytes(make_report())
        with pytest.raises(NotAnImage):  # with memory to spare: no image
            read_grayscale(data)
        contains = Dataset.__contains__

        def short_for_directory_records(self: Dataset, name: object) -> bool:
            if name == "DirectoryRecordSequence":
                _short_of_memory()
            return contains(self, name)

        monkeypatch.setattr(Dataset, "__contains__", short_for_directory_records)
    with pytest.raises(DecodeOutOfMemory) as exc:
        read_grayscale(data, name="film.dcm")
    msg = check_error(exc, "film.dcm")
    assert "ran out of memory" in msg and "no decoder" not in msg and "not an image" not in msg, msg
    assert isinstance(exc.value.__cause__, MemoryError)


@pytest.mark.parametrize("fault, said", [
    ("no BitsAllocated", "its header lacks Bits Allocated (0028,0100)"),
    ("no BitsStored", "its header lacks Bits Stored (0028,0101)"),
    ("no PixelRepresentation", "its header lacks Pixel Representation (0028,0103)"),
    ("empty SamplesPerPixel", "its header lacks Samples per Pixel (0028,0002)"),
    ("BitsStored 12", "its header's Bits Stored (12) exceeds its Bits Allocated (8)"),
    ("BitsAllocated 16", "its Pixel Data holds 384 bytes, where its header's 24 x 16 pixels, 1 sample of 16 bits, need "
                         "768: its header does not describe its pixels"),
    ("SamplesPerPixel 3", "its Pixel Data holds 384 bytes, where its header's 24 x 16 pixels, 3 samples of 8 bits, "
                          "need 1152"),
    ("short", "its Pixel Data holds 284 bytes, where its header's 24 x 16 pixels, 1 sample of 8 bits, need 384"),
])
def test_a_dicom_whose_pixel_header_cannot_describe_its_pixels_is_told_what_is_wrong(fault: str, said: str) -> None:
    """A complete DICOM file that lacks an Image Pixel element pydicom's decoding needs, or whose header's Bits Stored,
    Bits Allocated or Samples per Pixel do not describe its Pixel Data, was refused as 'the file may be truncated or
    damaged, give a complete DICOM file': a PACS admin copying it again got the same refusal. The message names the
    element, or the bytes held against those the header needs."""
    ds = make_dicom(ramp())
    keyword, _, value = fault.partition(" ")
    if keyword == "no":
        delattr(ds, value)
    elif keyword == "empty":
        ds[value].value = None
    elif keyword == "short":
        ds.PixelData = ds.PixelData[:-100]
    else:
        setattr(ds, keyword, int(value))
    with pytest.raises(InputError) as exc:
        read_grayscale(dicom_bytes(ds), name="film.dcm")
    msg = check_error(exc, "film.dcm")
    assert msg.startswith(f"film.dcm: cannot decode the DICOM pixel data: {said}"), msg
    assert msg.endswith("; export the film again from the device or PACS, or as PNG") and "truncated" not in msg, msg


def test_a_dicom_cut_within_its_pixel_data_is_told_so_with_the_bytes_it_holds(tmp_path: Path) -> None:
    """A film cut short inside its Pixel Data is said to be cut, with the bytes it holds against those its header
    needs, and to be copied again (not exported again, as a header that does not describe its pixels is)."""
    data = dicom_bytes(make_dicom(ramp(h=64, w=64)))
    path = write(tmp_path / "cut.dcm", data[:-1000])
    with pytest.raises(InputError) as exc:
        read_grayscale(path)
    assert check_error(exc, str(path)) == (
        f"{path}: cannot decode the DICOM pixel data: the file is cut short: its Pixel Data holds 3096 bytes, where its "
        "header's 64 x 64 pixels, 1 sample of 8 bits, need 4096; give the complete file (copy it again)")


@pytest.mark.parametrize("keyword, dtype, said", [("FloatPixelData", np.float32, "Float Pixel Data"),
                                                  ("DoubleFloatPixelData", np.float64, "Double Float Pixel Data")])
def test_a_float_dicom_cut_within_its_pixel_data_is_told_so_not_that_it_lacks_integer_elements(
        tmp_path: Path, keyword: str, dtype: type, said: str) -> None:
    """Float and Double Float Pixel Data have no Bits Stored nor Pixel Representation (a whole such film is read
    without them): a cut one was told 'its header lacks Bits Stored (0028,0101) and Pixel Representation (0028,0103)'.
    It is told it is cut short, with the bytes its pixel data holds and needs."""
    ds = make_dicom(ramp(h=64, w=64))
    for key in ("PixelData", "BitsStored", "HighBit", "PixelRepresentation"):
        delattr(ds, key)
    ds.BitsAllocated = np.dtype(dtype).itemsize * 8
    setattr(ds, keyword, ramp(h=64, w=64).astype(dtype).tobytes())
    data = dicom_bytes(ds)
    assert read_grayscale(data).shape == (64, 64)  # whole, it is read
    path = write(tmp_path / "cut.dcm", data[:-400])
    with pytest.raises(InputError) as exc:
        read_grayscale(path)
    need = 64 * 64 * np.dtype(dtype).itemsize
    assert check_error(exc, str(path)) == (
        f"{path}: cannot decode the DICOM pixel data: the file is cut short: its {said} holds {need - 400} bytes, "
        f"where its header's 64 x 64 pixels, 1 sample of {ds.BitsAllocated} bits, need {need}; give the complete file "
        "(copy it again)")

@pytest.mark.parametrize("meta", ["native", "absent"])
def test_compressed_pixel_data_under_no_compressed_transfer_syntax_is_told_so_not_a_byte_count(meta: str) -> None:
    """A JPEG film whose file meta names an uncompressed transfer syntax, or none (an anonymiser's rewritten meta),
    was told 'its Pixel Data holds 1148 bytes, where its header's 64 x 64 pixels, 1 sample of 8 bits, need 4096: its
    header does not describe its pixels': a compressed stream's length says nothing of its pixels."""
    ds = make_dicom(ramp(h=64, w=64))
    ds.PixelData = encapsulate([encode(Image.fromarray(ramp(h=64, w=64)), "JPEG")])
    if meta == "absent":
        del ds.file_meta.TransferSyntaxUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False, implicit_vr=False, little_endian=True)
    with pytest.raises(InputError) as exc:
        read_grayscale(buffer.getvalue(), name="film.dcm")
    assert check_error(exc, "film.dcm") == (
        "film.dcm: cannot decode the DICOM pixel data: its Pixel Data is compressed (encapsulated), where its file "
        "meta names no compressed transfer syntax; export the film again from the device or PACS, or as PNG")

def test_a_ybr_full_422_dicom_cut_within_its_pixel_data_is_told_the_bytes_it_needs(tmp_path: Path) -> None:
    """Uncompressed YBR_FULL_422 holds two samples a pixel (Y1 Y2 Cb Cr for each pair): a cut one was told it needed
    three (64 x 64 x 3 = 12288 bytes, where its whole Pixel Data is 8192)."""
    from tests.conftest import make_colour_dicom

    rgb = np.stack([ramp(h=64, w=64)] * 3, axis=-1)
    data = dicom_bytes(make_colour_dicom(rgb, "YBR_FULL_422"))
    assert read_grayscale(data).shape == (64, 64)  # whole, it is read
    path = write(tmp_path / "cut.dcm", data[:-1000])
    with pytest.raises(InputError) as exc:
        read_grayscale(path)
    assert check_error(exc, str(path)) == (
        f"{path}: cannot decode the DICOM pixel data: the file is cut short: its Pixel Data holds 7192 bytes, where "
        "its header's 64 x 64 pixels, 3 samples of 8 bits in YBR_FULL_422 (two pixels share their chroma), need "
        "8192; give the complete file (copy it again)")
