"""Thumbnails (a film under MIN_SIDE px on a side) are predicted, with a warning to send the original film, in
`predict`, `explain`, the service and its page; `audit` lists the same files by the same constant."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from pneumoscan.cli import main
from pneumoscan.data.decode import MIN_SIDE, size_warning, stored_size
from tests.conftest import encode, per_film_lines, write_dicom

WARNING = f"20 x 20 px, under {MIN_SIDE} px on a side: too small to read reliably; send the original film"


def thumbnail(film: Path, out: Path, side: int = 20) -> Path:
    """A real film shrunk to `side` px, as a picture archive's or an e-mail's preview of it."""
    with Image.open(film) as im:
        out.write_bytes(encode(im.convert("L").resize((side, side), Image.Resampling.LANCZOS), "JPEG", quality=90))
    return out


@pytest.fixture
def films(sample_films: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A thumbnail of a film, and the film itself."""
    film = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    return thumbnail(film, tmp_path / "thumb.jpeg"), film


def test_the_size_is_read_from_the_header_for_every_format(tmp_path: Path) -> None:
    from pneumoscan.data import audit

    assert audit.MIN_SIDE is MIN_SIDE  # one threshold: what audit lists is what predict warns about
    small = encode(Image.new("L", (31, 40), 90), "PNG")
    assert stored_size(small) == (31, 40)
    assert size_warning(small) == f"31 x 40 px, under {MIN_SIDE} px on a side: too small to read reliably; send the " \
                                  f"original film"
    assert size_warning(encode(Image.new("L", (MIN_SIDE, 500), 90), "JPEG")) is None
    assert size_warning(write_dicom(tmp_path / "a.dcm", 0, 1, size=20).read_bytes()) == WARNING
    assert size_warning(write_dicom(tmp_path / "b.dcm", 0, 1, size=40).read_bytes()) is None
    assert size_warning(b"not an image") is None  # decoding says what is wrong with it


@pytest.mark.parametrize("fmt", ["text", "csv", "json"])
def test_predict_warns_about_a_thumbnail_and_still_predicts_it(fmt: str, tiny_run: Path, films: tuple[Path, Path],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    thumb, film = films
    flags = {"text": [], "csv": ["--csv"], "json": ["--json"]}[fmt]
    assert main(["predict", "--model", str(tiny_run), str(thumb), str(film), *flags]) == 0  # a warning, not a failure
    out, err = capsys.readouterr()
    assert per_film_lines(err) == [f"pneumoscan: warning: {thumb}: {WARNING}"]
    if fmt == "text":
        rows = out.splitlines()
        assert rows[0].endswith(f"  too-small  {thumb}") and rows[0].split()[1].startswith("P(pneumonia)=")
        assert "too-small" not in rows[1]
        return
    rows = list(csv.DictReader(io.StringIO(out))) if fmt == "csv" else json.loads(out)
    assert [row["size_warning"] for row in rows] == ([WARNING, ""] if fmt == "csv" else [WARNING, None])
    assert rows[0]["label"] in ("NORMAL", "PNEUMONIA")


def test_explain_warns_about_a_thumbnail(tiny_run: Path, films: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import pneumoscan.report.figures as figures

    titles: list[str] = []
    draw = figures.explanation

    def recorded(image: object, overlay: object, title: str) -> object:
        titles.append(title)
        return draw(image, overlay, title)

    monkeypatch.setattr(figures, "explanation", recorded)
    thumb, film = films
    assert main(["explain", str(thumb), "--model", str(tiny_run), "--out", str(tmp_path / "t.png")]) == 0
    out, err = capsys.readouterr()
    assert per_film_lines(err) == [f"pneumoscan: warning: {thumb}: {WARNING}"] and out.split()[0] in ("NORMAL", "PNEUMONIA")
    assert titles[0].endswith(f"\nwarning: {WARNING}")
    assert main(["explain", str(film), "--model", str(tiny_run), "--out", str(tmp_path / "f.png")]) == 0
    assert per_film_lines(capsys.readouterr().err) == [] and "warning" not in titles[1]


def test_the_service_warns_about_a_thumbnail(tiny_run: Path, films: tuple[Path, Path]) -> None:
    from fastapi.testclient import TestClient

    from pneumoscan.service.app import create_app
    from pneumoscan.service.settings import Settings

    thumb, film = films
    with TestClient(create_app(Settings(model=str(tiny_run), backend="onnx"))) as c:
        one = c.post("/predict", files={"file": (thumb.name, thumb.read_bytes(), "image/jpeg")}).json()
        assert one["size_warning"] == WARNING and one["probability"] is not None
        assert c.post("/predict", files={"file": (film.name, film.read_bytes(), "image/jpeg")}).json()["size_warning"] is None
        batch = c.post("/predict/batch", files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in films]).json()
        assert [item["size_warning"] for item in batch["results"]] == [WARNING, None]
        schema = c.get("/openapi.json").json()["components"]["schemas"]
        assert all("too small to read reliably" in schema[name]["properties"]["size_warning"]["description"]
                   for name in ("PredictionResponse", "BatchItem"))


def test_a_thumbnail_the_guard_refuses_is_said_to_be_one(fitted: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A refusal (here a blank 20 x 20 px image's) comes with the size too: upscaled to the model's input a thumbnail
    is a blur, which the refusal alone would not name as the cause to act on."""
    thumb = tmp_path / "blank.png"
    thumb.write_bytes(encode(Image.new("L", (20, 20), 100), "PNG"))
    assert main(["explain", str(thumb), "--model", str(fitted), "--out", str(tmp_path / "t.png")]) == 1
    assert capsys.readouterr().err == (f"pneumoscan: error: {thumb}: not a chest X-ray: blank or nearly constant "
                                       f"image; no prediction or heatmap made; it is {WARNING}\n")
    assert main(["predict", str(thumb), "--model", str(fitted)]) == 1
    assert per_film_lines(capsys.readouterr().err) == [
        f"pneumoscan: warning: {thumb}: {WARNING}",
        f"pneumoscan: warning: {thumb}: not a chest X-ray: blank or nearly constant image; no prediction made"]
