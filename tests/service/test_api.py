"""The web service through FastAPI's TestClient: every endpoint, every error status, and robustness."""
from __future__ import annotations

import base64
import importlib.util
import io
import json
import logging
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pneumoscan.artifact import file_sha256, read_meta
from pneumoscan.inference.predictor import Predictor
from pneumoscan.service import engine as engine_module
from pneumoscan.service.app import create_app
from pneumoscan.service.settings import Settings
from tests.conftest import dicom_bytes, blank_image, colour_photo, dithered, text_document

NOTE = "Decision support only — not a diagnosis"
SECRET = "PATIENT_DOE_JANE_1234"


@pytest.fixture(scope="module")
def client(tiny_run: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model=str(tiny_run), backend="onnx", max_upload_mb=2))) as c:
        yield c


@pytest.fixture(scope="module")
def guarded_client(fitted: Path) -> Iterator[TestClient]:
    """The same weights as `client`, with an out-of-distribution guard fitted on the sample's X-rays."""
    with TestClient(create_app(Settings(model=str(fitted), backend="onnx", max_upload_mb=2))) as c:
        yield c


@pytest.fixture(scope="module")
def xray(sample_films: Path) -> Path:
    return sorted((sample_films / "PNEUMONIA").iterdir())[0]


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_health(client: TestClient) -> None:
    res = client.get("/health")
    assert res.status_code == 200
    assert res.json() == {"status": "ok", "model_loaded": True, "backend": "onnx"}


def test_model_card(client: TestClient, tiny_run: Path) -> None:
    info = client.get("/model").json()
    predictor = Predictor(tiny_run)
    assert info["name"] == "resnet10" and info["input_size"] == 32
    assert info["class_names"] == ["NORMAL", "PNEUMONIA"]
    assert info["threshold"] == pytest.approx(predictor.threshold)
    assert info["normalization"]["std"] == pytest.approx(predictor.meta.std)
    assert "roc_auc" in info["val_metrics"] and info["backend"] == "onnx" and info["max_upload_mb"] == 2
    assert info["ood_guard"] is False
    assert info["sha256"] == file_sha256(tiny_run / "model.safetensors") and info["shipped"] is False
    assert info["max_batch_files"] == 16 and info["max_batch_mb"] == 100


CARD = Path(__file__).resolve().parents[2] / "MODEL_CARD.md"


def test_the_shipped_models_card_is_sent_as_markdown_and_not_passed_off_as_another_models(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page and GET /model pointed to 'its model card', which the service did not have. GET /model/card now
    sends the shipped model's card; a service running another model heads it with a note that it is not that
    model's card, naming the weights that do answer."""
    card = CARD.read_text(encoding="utf-8")
    res = client.get("/model/card")
    assert res.status_code == 200 and res.headers["content-type"] == "text/markdown; charset=utf-8"
    note, rest = res.text.split("\n\n", 1)
    sha = client.get("/model").json()["sha256"][:12]
    assert note == ("> **This card is not about the model of this service.** This service runs a model other than "
                    f"the one shipped with pneumoscan (weights {sha}); the card below describes the shipped model "
                    "only, and its data, figures and limits are not those of the model that answers here.")
    assert rest == card
    from pneumoscan.artifact import default_model_path, read_meta

    monkeypatch.setattr(client.app.state.engine, "shipped", True)  # at the shipped threshold (next test: at another)
    monkeypatch.setattr(client.app.state.engine.predictor.meta, "threshold", read_meta(default_model_path()).threshold)
    assert client.get("/model/card").text == card


def test_the_shipped_models_card_says_when_the_service_runs_it_at_an_operating_point_of_its_own(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A set-threshold copy of the shipped weights, or the shipped model served with --threshold or --target-recall,
    is the shipped model (its card is about it), but the card's sensitivity and specificity are at the shipped
    threshold: the card was sent as if they held at the service's own."""
    from pneumoscan.artifact import default_model_path, read_meta

    card = CARD.read_text(encoding="utf-8")
    engine = client.app.state.engine
    stored = read_meta(default_model_path()).threshold
    monkeypatch.setattr(engine, "shipped", True)
    monkeypatch.setattr(engine.predictor, "threshold_from", "model")
    monkeypatch.setattr(engine.predictor.meta, "threshold", stored)
    assert client.get("/model/card").text == card  # the card's own operating point: no note
    monkeypatch.setattr(engine.predictor.meta, "threshold", 0.41)  # as a set-threshold copy stores it
    monkeypatch.setattr(engine.predictor, "threshold", 0.41)
    note, rest = client.get("/model/card").text.split("\n\n", 1)
    assert note.startswith("> **This service runs the shipped model at an operating point of its own** (threshold "
                           "0.4100 on the probabilities it answers with, stored with the copy of the model it runs")
    assert f"measured at the shipped threshold {stored:.4f}" in note and rest == card
    monkeypatch.setattr(engine.predictor, "threshold_from", "threshold")
    assert "set with --threshold" in client.get("/model/card").text.split("\n\n", 1)[0]
    # the card's own point given again (serve --target-recall 0.95 gives the stored threshold): no note (reviewI26)
    monkeypatch.setattr(engine.predictor, "threshold_from", "target_recall")
    monkeypatch.setattr(engine.predictor, "threshold", stored)
    monkeypatch.setattr(engine.predictor, "prevalence", None)
    assert client.get("/model/card").text == card


def test_the_card_reads_the_shipped_threshold_once_and_again_when_the_file_changes(
        client: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """GET /model/card read the shipped model's header on every request (6 ms on the event loop) for its threshold;
    it is read once per version of the file, and again once the file changes (a reinstall with another model)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from pneumoscan import artifact

    shipped = tmp_path / "default.safetensors"
    with safe_open(str(artifact.default_model_path()), "numpy") as handle:
        metadata = handle.metadata()
    save_file(load_file(artifact.default_model_path()), shipped, metadata)
    monkeypatch.setattr(artifact, "default_model_path", lambda: shipped)
    reads: list[Path] = []
    read_meta = artifact.read_meta
    monkeypatch.setattr(artifact, "read_meta", lambda path: reads.append(path) or read_meta(path))
    engine = client.app.state.engine
    monkeypatch.setattr(engine, "shipped", True)
    monkeypatch.setattr(engine.predictor, "threshold_from", "threshold")
    monkeypatch.setattr(engine.predictor, "threshold", 0.41)
    stored = read_meta(shipped).threshold
    notes = [client.get("/model/card").text.split("\n\n", 1)[0] for _ in range(3)]
    assert len(reads) == 1 and len(set(notes)) == 1 and f"the shipped threshold {stored:.4f}," in notes[0]
    header = json.loads(metadata["pneumoscan"])
    save_file(load_file(shipped), shipped, {**metadata, "pneumoscan": json.dumps({**header, "threshold": 0.3})})
    assert "the shipped threshold 0.3000," in client.get("/model/card").text.split("\n\n", 1)[0]
    assert len(reads) == 2


def test_a_missing_card_is_a_json_404_not_a_crash(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pneumoscan.card.model_card_path", lambda: None)
    res = client.get("/model/card")
    assert res.status_code == 404 and res.json() == {
        "detail": "the shipped model's card is not installed with this service's pneumoscan; reinstall it"}


def test_responses_name_the_weights(client: TestClient, sample_dir: Path, xray: Path) -> None:
    digest = client.get("/model").json()["sha256"]
    one = client.post("/predict", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")}).json()
    batch = client.post("/predict/batch", files=[("files", (xray.name, xray.read_bytes(), "image/jpeg"))]).json()
    assert one["model_sha256"] == batch["model_sha256"] == digest[:12]


def test_batch_limit_is_never_below_the_file_limit(tiny_run: Path) -> None:
    assert Settings(model=str(tiny_run), max_upload_mb=150).batch_limit_mb == 150
    assert Settings(model=str(tiny_run), max_upload_mb=5).batch_limit_mb == 100


def test_no_cdn_pages(client: TestClient) -> None:
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200


def test_openapi_has_typed_responses(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/health", "/model", "/model/card", "/predict", "/predict/batch"} <= set(spec["paths"])
    card = spec["paths"]["/model/card"]["get"]["responses"]
    assert card["200"]["content"] == {"text/markdown": {"schema": {"type": "string"}}}
    assert card["404"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    predict = spec["paths"]["/predict"]["post"]
    assert predict["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("PredictionResponse")
    assert {"413", "415", "422", "501"} <= set(predict["responses"])
    assert "multipart/form-data" in predict["requestBody"]["content"]
    props = spec["components"]["schemas"]["PredictionResponse"]["properties"]
    assert {"probability", "label", "threshold", "model_version", "latency_ms", "in_distribution",
            "ood_reason", "refused_by"} <= set(props)
    for name in ("probability", "label", "in_distribution"):  # null when the guard refuses the image
        assert {"type": "null"} in props[name]["anyOf"] and props[name]["description"]
    item = spec["components"]["schemas"]["BatchItem"]["properties"]
    assert {"in_distribution", "ood_reason", "refused_by"} <= set(item)
    for schema in (props, item):  # what the service's causes mean, beside them
        assert all(cause in schema["refused_by"]["description"] for cause in ("colour", "upside_down", "view", "features"))


def test_openapi_documents_retry_after_the_pixel_limit_and_internal_errors(client: TestClient) -> None:
    """What the service answers and the schema left out: 503's Retry-After header (the page relies on it), the
    413 for an image over 150 megapixels or a batch of too many files, and the 500 ErrorResponse."""
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/predict", "/predict/batch"):
        responses = paths[path]["post"]["responses"]
        assert responses["503"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}, path
        too_large = responses["413"]["description"]
        assert "150 megapixels" in too_large and "max_batch_files" in too_large, path
        assert responses["500"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse"), path
    # only /predict takes ?explain=true (the batch's 503 spoke of its heatmaps too)
    assert "?explain=true" in paths["/predict"]["post"]["responses"]["503"]["description"]
    assert "explain" not in paths["/predict/batch"]["post"]["responses"]["503"]["description"]


def test_page_and_static_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert NOTE in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for path in ("/static/app.js", "/static/style.css"):
        res = client.get(path)
        assert res.status_code == 200 and "https://" not in res.text and "http://" not in res.text  # offline
    assert "https://" not in page.text and "http://" not in page.text


def test_the_page_takes_the_guards_causes_and_words_from_the_answer() -> None:
    """The page held its own copy of which guard causes mean "not a chest X-ray" or "as sent" and of the guard's
    wording ("not a chest X-ray: ", "unlike the chest X-rays"), which the server also holds: a cause added or reworded
    there put the page's box and heading out of step. It now shows the answer's refusal_kind and refusal_cause."""
    import re
    import typing

    from pneumoscan.inference.ood import REFUSAL_KINDS
    from pneumoscan.service.schemas import RefusalKind

    js = (Path(engine_module.__file__).parent / "static" / "app.js").read_text(encoding="utf-8")
    assert "refusal_kind" in js and "refusal_cause" in js
    for cause in REFUSAL_KINDS:
        assert f'"{cause}"' not in js, cause
    for words in ("not a chest X-ray:", "unlike the chest X-rays"):
        assert words not in js, words
    kinds = set(typing.get_args(RefusalKind))
    assert set(re.findall(r'kind === "(\w+)"', js)) == kinds == set(REFUSAL_KINDS.values())


def test_the_page_is_revalidated_on_every_load_and_sends_no_referrer(client: TestClient) -> None:
    """The page and its script and style carried only Last-Modified, so browsers could keep them for days after an
    upgrade (heuristic freshness) and run an old app.js on a new page: they must be revalidated (ETag, 304)."""
    assert client.get("/").headers["cache-control"] == "no-cache"
    for path in ("/static/app.js", "/static/style.css"):
        res = client.get(path)
        assert res.headers["cache-control"] == "no-cache", path
        assert client.get(path, headers={"If-None-Match": res.headers["etag"]}).status_code == 304, path  # cheap
    for path in ("/", "/model", "/health"):
        assert client.get(path).headers["referrer-policy"] == "no-referrer", path


def test_results_are_not_stored_when_the_app_is_mounted_under_a_path(tiny_run: Path, xray: Path) -> None:
    """Mounted under /pneumoscan (root_path), /predict answers lost `Cache-Control: no-store`: the check read the
    full path."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    site = Starlette(routes=[Mount("/pneumoscan", app=create_app(Settings(model=str(tiny_run), backend="onnx")))])
    with TestClient(site) as mounted:
        res = mounted.post("/pneumoscan/predict", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")})
        assert res.status_code == 200 and res.headers["cache-control"] == "no-store"
        assert mounted.get("/pneumoscan/static/app.js").headers["cache-control"] == "no-cache"


def test_predict_one_xray(client: TestClient, tiny_run: Path, xray: Path) -> None:
    res = client.post("/predict", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")})
    assert res.status_code == 200, res.text
    body = res.json()
    expected = Predictor(tiny_run).predict_files([xray])[0]
    assert body["probability"] == pytest.approx(expected.probability, abs=1e-4)
    assert body["label"] == ("PNEUMONIA" if body["probability"] >= body["threshold"] else "NORMAL")
    assert body["model_name"] == "resnet10" and body["model_version"] and body["latency_ms"] > 0
    assert body["heatmap_png_base64"] is None
    assert body["in_distribution"] is None and body["ood_reason"] is None  # this model has no guard
    assert res.headers["cache-control"] == "no-store"


def test_predict_dicom(client: TestClient) -> None:
    pydicom = pytest.importorskip("pydicom")
    data = dicom_bytes(np.linspace(0, 4000, 48 * 40).reshape(48, 40).astype(np.uint16), 12, patient_name=SECRET)
    assert pydicom.dcmread(io.BytesIO(data)).PatientName == SECRET
    res = client.post("/predict", files={"file": ("scan.dcm", data, "application/dicom")})
    assert res.status_code == 200, res.text
    assert SECRET not in res.text


def test_a_dicom_file_without_its_preamble_is_predicted_as_predict_reads_it(client: TestClient, tiny_run: Path,
                                                                             tmp_path: Path) -> None:
    """Older devices and exports write DICOM without the 128-byte preamble and 'DICM', with or without a file meta;
    `predict` reads them, but the service's sniffing looked for 'DICM' only and answered 415 'not an image file'."""
    pydicom = pytest.importorskip("pydicom")
    full = dicom_bytes(np.linspace(0, 4000, 48 * 40).reshape(48, 40).astype(np.uint16), 12)
    no_preamble = full[132:]  # file meta first
    ds = pydicom.dcmread(io.BytesIO(full))
    del ds.file_meta
    ds.preamble = None
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=True, little_endian=True)  # dataset only, implicit VR
    (tmp_path / "IM00001").write_bytes(full)
    expected = Predictor(tiny_run).predict_files([tmp_path / "IM00001"])[0].probability
    for name, data in (("IM00002", no_preamble), ("IM00003", buffer.getvalue())):
        assert data[128:132] != b"DICM"
        res = client.post("/predict", files={"file": (name, data, "application/dicom")})
        assert res.status_code == 200, res.text
        assert res.json()["probability"] == pytest.approx(expected, abs=1e-4)
        batch = client.post("/predict/batch", files=[("files", (name, data, "application/dicom"))]).json()
        assert batch["results"][0]["status"] == 200, batch


def test_a_lateral_dicom_is_refused_by_view_with_a_guard(guarded_client: TestClient, client: TestClient) -> None:
    """A PACS study's lateral film, its View Position LL in the header, was scored as a frontal film."""
    from tests.conftest import dicom_to_bytes, make_dicom, xray_pixels

    ds = make_dicom(xray_pixels(0, 3, 48), bits_stored=8)
    ds.ViewPosition = "LL"
    data = dicom_to_bytes(ds)
    body = guarded_client.post("/predict", files={"file": ("IM00002", data, "application/dicom")}).json()
    assert (body["refused_by"], body["in_distribution"], body["probability"]) == ("view", False, None)
    assert body["refusal_kind"] == "as_sent"  # the page's box: send the frontal film, not "read it without the model"
    assert body["ood_reason"].startswith("DICOM View Position LL: not a plain frontal (AP or PA) film")
    item = guarded_client.post("/predict/batch", files=[("files", ("IM00002", data, "application/dicom"))]).json()
    assert item["results"][0]["refused_by"] == "view" and item["n_out_of_distribution"] == 1
    assert client.post("/predict", files={"file": ("IM00002", data, "application/dicom")}).json()["probability"] is not None


def test_every_cause_the_page_shows_as_sent_says_what_to_upload_instead() -> None:
    """The as-sent box defers to the cause's words: each cause of that kind must say what to send."""
    import re

    from pneumoscan.data.decode import view_reason
    from pneumoscan.inference.ood import guard

    causes = {"grey_levels": guard.grey_levels_reason(2), "two_tone": guard.two_tone_reason(0.99),
              "dithered": guard.dithered_reason(9.0), "upside_down": guard._UPSIDE_DOWN, "view": view_reason("LL"),
              "posterised": guard.posterised_reason(0.2)}
    assert set(causes) == {cause for cause, kind in guard.REFUSAL_KINDS.items() if kind == "as_sent"}
    assert all(re.search(r"\bsend (the|it)\b", text) for text in causes.values()), causes


def test_413_over_the_limit(client: TestClient) -> None:
    big = b"\xff\xd8\xff" + bytes(3 * 1024 * 1024)  # 3 MB > 2 MB limit
    res = client.post("/predict", files={"file": ("big.jpg", big, "image/jpeg")})
    assert res.status_code == 413 and "2 MB" in res.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        yield b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n\xff\xd8\xff'
        for _ in range(40):
            yield bytes(100_000)
        yield b"\r\n--XX--\r\n"

    res = client.post("/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=XX"})
    assert "content-length" not in {k.lower() for k in res.request.headers}
    assert res.status_code == 413 and res.json()["detail"].startswith("upload larger than")


def test_415_not_an_image(client: TestClient) -> None:
    res = client.post("/predict", files={"file": ("notes.txt", b"patient notes, not an image", "text/plain")})
    assert res.status_code == 415 and "not an image" in res.json()["detail"]
    res = client.post("/predict", files={"file": ("x.pdf", b"%PDF-1.4 ...", "image/jpeg")})  # type lies
    assert res.status_code == 415
    res = client.post("/predict", json={"file": "abc"})
    assert res.status_code == 415 and "multipart/form-data" in res.json()["detail"]
    for fmt, name in (("GIF", "GIF"), ("WEBP", "WebP")):
        buffer = io.BytesIO()
        Image.new("L", (8, 8), 128).save(buffer, format=fmt)
        res = client.post("/predict", files={"file": (f"x.{fmt.lower()}", buffer.getvalue(), "image/" + fmt.lower())})
        assert res.status_code == 415 and f"{name} images are not supported" in res.json()["detail"]


def test_415_a_dicom_object_that_holds_no_image(client: TestClient) -> None:
    """A structured report or a DICOMDIR sent from a PACS export is a file that is not an image (415, as the docs'
    table says), not a corrupt image (422, which it got): a client can tell 'send another file' from 'resend it'."""
    from tests.conftest import dicom_to_bytes, make_dicom

    report = make_dicom(None)  # a dataset without pixel data: a report
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    index = make_dicom(None)
    index.SOPClassUID = index.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"  # Directory Storage
    index.FileSetID = "EXPORT"
    for name, ds, what in (("SR000001", report, "no pixel data"), ("DICOMDIR", index, "a DICOMDIR")):
        res = client.post("/predict", files={"file": (name, dicom_to_bytes(ds), "application/dicom")})
        assert res.status_code == 415 and what in res.json()["detail"], res.text
        batch = client.post("/predict/batch", files=[("files", (name, dicom_to_bytes(ds), "application/dicom"))])
        assert batch.json()["results"][0]["status"] == 415


def test_422_a_dicom_image_without_its_pixel_data_says_it_may_be_cut_short_or_header_only(client: TestClient) -> None:
    """An image class's dataset without pixel data, and no sign of a cut, is a film cut between two whole elements or
    a header-only export: 422 (an unusable image, as the docs' table says), in words naming both causes, not
    'truncated ... copy it again'."""
    from tests.conftest import dicom_to_bytes, make_dicom

    header = dicom_to_bytes(make_dicom(None))  # Secondary Capture Image Storage
    res = client.post("/predict", files={"file": ("IM000001", header, "application/dicom")})
    assert res.status_code == 422, res.text
    assert "no pixel data: the file may be cut short, or a header-only export" in res.json()["detail"]
    batch = client.post("/predict/batch", files=[("files", ("IM000001", header, "application/dicom"))])
    assert batch.json()["results"][0]["status"] == 422


def test_422_corrupt_empty_or_missing(client: TestClient, xray: Path) -> None:
    truncated = xray.read_bytes()[:400]
    res = client.post("/predict", files={"file": ("cut.jpeg", truncated, "image/jpeg")})
    assert res.status_code == 422 and "not a readable image" in res.json()["detail"]
    res = client.post("/predict", files={"file": ("empty.png", b"", "image/png")})
    assert res.status_code == 422 and "empty" in res.json()["detail"]
    res = client.post("/predict", files={"image": ("x.jpeg", xray.read_bytes(), "image/jpeg")})
    assert res.status_code == 422 and "'file'" in res.json()["detail"]
    res = client.post("/predict", content=b"--B\r\ngarbage", headers={"content-type": "multipart/form-data; boundary=B"})
    assert res.status_code in (400, 422) and isinstance(res.json()["detail"], str)


def test_a_part_refused_before_decoding_is_named_as_decoding_names_it(client: TestClient) -> None:
    """An empty upload, or one that is no image, was named as it came: `e\u202egnp.exe` reordered the page's and
    the log's line (`eexe.png`), where a file decoding refused was named escaped (`one_name`)."""
    for name, data, status, said in [("e\u202egnp.exe", b"", 422, "empty file"),
                                     ("n\u202etxt.exe", b"hello", 415, "not an image file")]:
        res = client.post("/predict", files={"file": (name, data, "image/png")})
        detail = res.json()["detail"]
        assert res.status_code == status and detail.startswith(name.replace("\u202e", "\\u202e") + ": "), detail
        assert said in detail and "\u202e" not in detail


def test_422_bad_query_parameter_is_a_string_detail(client: TestClient, xray: Path) -> None:
    res = client.post("/predict?explain=maybe", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")})
    assert res.status_code == 422
    detail = res.json()["detail"]
    assert isinstance(detail, str) and "explain" in detail and "maybe" not in detail  # the ErrorResponse shape


def test_batch_with_one_bad_file(client: TestClient, sample_films: Path, tiny_run: Path) -> None:
    good = sorted((sample_films / "NORMAL").iterdir())[:2]
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in good]
    files.insert(1, ("files", ("bad.jpeg", b"\xff\xd8\xff\xe0 broken", "image/jpeg")))
    files.append(("files", ("doc.txt", b"hello", "text/plain")))
    res = client.post("/predict/batch", files=files)
    assert res.status_code == 200, res.text
    body = res.json()
    assert [r["filename"] for r in body["results"]] == [good[0].name, "bad.jpeg", good[1].name, "doc.txt"]
    assert [r["status"] for r in body["results"]] == [200, 422, 200, 415]
    assert body["n_ok"] == 2 and body["n_failed"] == 2
    expected = Predictor(tiny_run).predict_files(good)
    assert body["results"][2]["probability"] == pytest.approx(expected[1].probability, abs=1e-4)
    assert body["results"][1]["error"] and body["results"][0]["error"] is None


def test_batch_limits(client: TestClient) -> None:
    files = [("files", (f"{i}.png", png_bytes(np.zeros((8, 8), np.uint8)), "image/png")) for i in range(17)]
    assert client.post("/predict/batch", files=files).status_code == 413  # more than 16 files
    files = [("files", ("big.jpg", b"\xff\xd8\xff" + bytes(3 * 1024 * 1024), "image/jpeg")),
             ("files", ("ok.png", png_bytes(np.full((40, 40), 128, np.uint8)), "image/png"))]
    body = client.post("/predict/batch", files=files).json()
    assert [r["status"] for r in body["results"]] == [413, 200]
    assert client.post("/predict/batch", files={"other": ("x", b"y")}).status_code == 422


def test_keeps_serving_after_bad_requests(client: TestClient, xray: Path) -> None:
    for _ in range(3):
        client.post("/predict", content=b"\x00\x01garbage", headers={"content-type": "multipart/form-data; boundary=Q"})
        client.post("/predict", files={"file": ("x.jpeg", b"\xff\xd8\xff" + bytes(50), "image/jpeg")})
        client.post("/predict", files={"file": ("x.bin", bytes(range(256)), "application/octet-stream")})
    assert client.get("/health").status_code == 200
    assert client.post("/predict", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")}).status_code == 200


def test_uploads_never_touch_the_disk(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_disk(*args: object, **kwargs: object) -> None:
        raise AssertionError("an upload was spooled to a temporary file")

    import starlette.formparsers

    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_disk)
    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", no_disk)
    noise = np.random.default_rng(0).integers(0, 256, (1100, 1100), dtype=np.uint8)
    data = png_bytes(noise)
    assert len(data) > 1024 * 1024  # bigger than Starlette's 1 MB spool threshold
    res = client.post("/predict", files={"file": ("noise.png", data, "image/png")})
    assert res.status_code == 200, res.text


def test_a_model_without_a_guard_is_named_in_the_log(tiny_run: Path, fitted: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A service that refuses nothing (no guard beside the model) started with the same log lines as a guarded one."""
    with caplog.at_level(logging.INFO, logger="pneumoscan.service"):
        create_app(Settings(model=str(tiny_run), backend="torch"))
    assert f"no chest X-ray guard beside {tiny_run / 'model.safetensors'}" in caplog.text
    trained_on = read_meta(tiny_run / "model.safetensors").training["config"]["data"]
    assert f"pneumoscan fit-guard --model {tiny_run / 'model.safetensors'} --data {trained_on}`" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pneumoscan.service"):
        create_app(Settings(model=str(fitted), backend="torch"))
    assert "ready" in caplog.text and "guard" not in caplog.text


def test_the_fit_guard_hint_of_a_relative_training_data_path_it_cannot_place_is_a_placeholder(
        tiny_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A model file out of its run folder whose --data is recorded relative (an older run): the log said
    `--data data`, a folder judged from wherever serve was started."""
    from pneumoscan.artifact import load_artifact, save_artifact

    net, meta = load_artifact(tiny_run, device="cpu")
    meta.training["config"] = {**meta.training["config"], "data": "data", "data_resolved": None}
    model = save_artifact(tmp_path / "copied.safetensors", net, meta)
    with caplog.at_level(logging.INFO, logger="pneumoscan.service"):
        create_app(Settings(model=str(model), backend="torch"))
    assert (f"fit one with `pneumoscan fit-guard --model {model} --data TRAINING_DATA` (TRAINING_DATA: recorded as "
            f"data, relative to the folder training ran in) and restart") in caplog.text


def test_logs_hold_no_patient_data(client: TestClient, xray: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        client.post("/predict", files={"file": (f"{SECRET}.jpeg", xray.read_bytes(), "image/jpeg")})
        client.post("/predict", files={"file": (f"{SECRET}.jpeg", b"\xff\xd8\xff broken", "image/jpeg")})
        client.post("/predict/batch", files=[("files", (f"{SECRET}.txt", b"x", "text/plain"))])
    assert SECRET not in caplog.text


def test_a_damaged_compressed_dicom_logs_no_traceback(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    """pydicom logged each failing decoder's traceback at ERROR: a 422 for a user's damaged film, in the service's log
    as if the service had failed."""
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(np.zeros((40, 40), np.uint16), 12, patient_name=SECRET)))
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([b"\xff\xd8 garbage \xff\xd9"])
    ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    with caplog.at_level(logging.DEBUG):
        res = client.post("/predict", files={"file": ("bad.dcm", buffer.getvalue(), "application/dicom")})
    assert res.status_code == 422 and "cannot decode the compressed DICOM pixel data" in res.json()["detail"]
    assert [r.getMessage() for r in caplog.records if r.exc_info] == [] and "Traceback" not in caplog.text
    assert SECRET not in caplog.text and SECRET not in res.text
    # a doctor reads it on the page: whom to ask, not a pip command; a batch's item says the same
    assert "ask IT support to install the DICOM decoders" in res.json()["detail"] and "pip" not in res.text
    batch = client.post("/predict/batch", files=[("files", ("bad.dcm", buffer.getvalue(), "application/dicom"))])
    (item,) = batch.json()["results"]
    assert item["status"] == 422 and item["error"] == res.json()["detail"]


def test_concurrent_predictions_are_consistent(client: TestClient, sample_films: Path) -> None:
    files = sorted((sample_films / "PNEUMONIA").iterdir())[:4]
    serial = [client.post("/predict", files={"file": (f.name, f.read_bytes())}).json()["probability"] for f in files]

    def post(i: int) -> float:
        f = files[i % len(files)]
        return client.post("/predict", files={"file": (f.name, f.read_bytes())}).json()["probability"]

    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(post, range(24)))
    assert parallel == [serial[i % len(files)] for i in range(24)]


def test_explain_unavailable_is_501(client: TestClient, xray: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "gradcam_module", lambda: None)
    res = client.post("/predict?explain=true", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")})
    assert res.status_code == 501 and "Grad-CAM" in res.json()["detail"]
    assert client.get("/model").json()["explain_available"] is False


def test_grad_cams_layers_are_found_at_start_up_not_by_a_get_model(tiny_run: Path, xray: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With the torch model loaded at start-up, the first GET /model searched its Grad-CAM layers (a copy of the model
    and a forward pass, ~60 ms) on the event loop, every request waiting. Start-up finds them; /model only reads."""
    app = create_app(Settings(model=str(tiny_run), backend="torch"))

    def search(*_: object) -> str:
        raise AssertionError("Grad-CAM's layers searched after start-up")

    with TestClient(app) as c:
        with monkeypatch.context() as patch:
            patch.setattr(engine_module.Engine, "_cam_problem", search)
            info = c.get("/model").json()
        res = c.post("/predict?explain=true", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")})
    assert (info["explain_available"], info["explain_loaded"]) == (True, True)
    assert res.status_code == 200 and res.json()["heatmap_class"] is not None


def test_a_model_loaded_at_start_up_gets_grad_cams_copy_from_the_first_heatmap_or_warm_up(
        tiny_run: Path, xray: Path) -> None:
    """Start-up found Grad-CAM's layers on a copy of the model made then and kept for the service's life: the model's
    size again (+96 MB for tv_resnet50, in GPU memory on a GPU) for a service that may never draw a heatmap. It
    searches the shared model now; the first heatmap, or the page's warm-up, makes the copy."""
    film = {"file": (xray.name, xray.read_bytes(), "image/jpeg")}
    for first in ("heatmap", "warm-up"):
        app = create_app(Settings(model=str(tiny_run), backend="torch"))
        engine = app.state.engine
        with TestClient(app) as c:
            info = c.get("/model").json()
            assert (info["explain_available"], info["explain_loaded"]) == (True, True)
            assert c.post("/predict", files=film).status_code == 200
            assert engine._explain_model is None, first
            if first == "warm-up":
                assert c.post("/warm-up").status_code == 202
                engine._warming.join(60)
            else:
                res = c.post("/predict?explain=true", files=film)
                assert res.status_code == 200 and res.json()["heatmap_class"] is not None
            assert engine._explain_model is not None and engine._explain_model is not engine.predictor.model, first


def test_explain_of_a_model_without_a_feature_map_is_501(tmp_path: Path, xray: Path) -> None:
    from pneumoscan.artifact import ArtifactMeta, save_artifact
    from pneumoscan.models.registry import create_model

    path = save_artifact(tmp_path / "mlp.safetensors", create_model("mlp", image_size=32),
                         ArtifactMeta(model_name="mlp", model_config={"image_size": 32}, image_size=32, mean=0.3, std=0.25))
    with TestClient(create_app(Settings(model=str(path), backend="torch"))) as c:
        assert c.get("/model").json()["explain_available"] is False
        res = c.post("/predict?explain=true", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")})
    assert res.status_code == 501 and "Grad-CAM" in res.json()["detail"]


@pytest.mark.skipif(importlib.util.find_spec("pneumoscan.explain.gradcam") is None,
                    reason="pneumoscan.explain.gradcam is not installed")
def test_a_model_without_a_feature_map_logs_heatmaps_off_once_as_a_warning(tmp_path: Path, xray: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    """An mlp served logged 'heatmaps off: ...' at ERROR, where an admin's alerting fires, for the model chosen."""
    from pneumoscan.artifact import ArtifactMeta, save_artifact
    from pneumoscan.models.registry import create_model

    path = save_artifact(tmp_path / "mlp.safetensors", create_model("mlp", image_size=32),
                         ArtifactMeta(model_name="mlp", model_config={"image_size": 32}, image_size=32, mean=0.3, std=0.25))
    film = {"file": (xray.name, xray.read_bytes(), "image/jpeg")}
    with caplog.at_level(logging.INFO), TestClient(create_app(Settings(model=str(path), backend="torch"))) as c:
        assert [c.post("/predict?explain=true", files=film).status_code for _ in range(2)] == [501, 501]
    off = [r for r in caplog.records if r.getMessage().startswith("heatmaps off")]
    assert [r.levelno for r in off] == [logging.WARNING], [(r.levelname, r.getMessage()) for r in off]
    assert "model 'mlp' has no convolutional layer" in off[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.skipif(importlib.util.find_spec("pneumoscan.explain.gradcam") is None,
                    reason="pneumoscan.explain.gradcam is not installed")
def test_explain_returns_a_heatmap_png(client: TestClient, xray: Path) -> None:
    res = client.post("/predict?explain=true", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")})
    assert res.status_code == 200, res.text
    png = base64.b64decode(res.json()["heatmap_png_base64"])
    assert png.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(png)) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
    assert res.json()["heatmap_class"] == res.json()["label"]
    assert client.get("/model").json()["explain_available"] is True


@pytest.mark.skipif(importlib.util.find_spec("pneumoscan.explain.gradcam") is None,
                    reason="pneumoscan.explain.gradcam is not installed")
def test_a_heatmap_under_way_holds_up_no_other_request(tiny_run: Path, xray: Path) -> None:
    """Whether Grad-CAM can explain the model is found once; asking again must not wait for the lock a heatmap
    holds while it is drawn. It did, on the event loop: while one upload's heatmap was drawn, the next upload
    with ?explain=true (every upload from the page) stopped the whole service, /health included."""
    app = create_app(Settings(model=str(tiny_run), backend="onnx"))
    with TestClient(app) as c, ThreadPoolExecutor(3) as pool:
        assert c.get("/model").json()["explain_available"] is True
        with app.state.engine._explain_lock:  # as a worker thread holds it while it draws a heatmap
            upload = pool.submit(c.post, "/predict?explain=true",
                                 files={"file": (xray.name, xray.read_bytes(), "image/jpeg")})
            health, info = pool.submit(c.get, "/health"), pool.submit(c.get, "/model")
            assert health.result(timeout=10).status_code == 200  # before the fix: TimeoutError
            assert info.result(timeout=10).json()["explain_available"] is True
            assert not upload.done()  # its heatmap waits for the lock, in its worker thread
        res = upload.result(timeout=30)
        assert res.status_code == 200 and res.json()["heatmap_png_base64"]


@pytest.mark.skipif(importlib.util.find_spec("pneumoscan.explain.gradcam") is None,
                    reason="pneumoscan.explain.gradcam is not installed")
@pytest.mark.parametrize("threshold", [1e-9, 1.0])
def test_heatmap_explains_the_label_at_the_threshold_in_use(tiny_run: Path, xray: Path, threshold: float) -> None:
    from pneumoscan.artifact import load_artifact
    from pneumoscan.data.preprocess import load_image
    from pneumoscan.explain.gradcam import gradcam_for_image, gradcam_overlay_png

    with TestClient(create_app(Settings(model=str(tiny_run), backend="torch", threshold=threshold))) as c:
        body = c.post("/predict?explain=true", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")}).json()
    expected_label = "PNEUMONIA" if body["probability"] >= threshold else "NORMAL"
    assert body["label"] == body["heatmap_class"] == expected_label
    model, meta = load_artifact(tiny_run)
    image = load_image(xray.read_bytes(), meta.image_size, name=xray.name)
    target = meta.class_names.index(expected_label)
    if not gradcam_for_image(model.eval(), meta, image, target=target).any():  # the tiny model's NORMAL maps
        assert body["heatmap_png_base64"] is None and body["heatmap_empty"] is True
        return
    assert body["heatmap_empty"] is False
    assert base64.b64decode(body["heatmap_png_base64"]) == gradcam_overlay_png(model.eval(), meta, image, target=target)


@pytest.mark.skipif(importlib.util.find_spec("pneumoscan.explain.gradcam") is None,
                    reason="pneumoscan.explain.gradcam is not installed")
def test_an_empty_heatmap_is_said_to_be_empty_not_sent_as_evidence(tiny_run: Path, fitted: Path, xray: Path) -> None:
    """On a weak model a NORMAL film's Grad-CAM map is all zero: the overlay was the bare film, sent as the evidence
    for NORMAL. Now no PNG is sent and heatmap_empty says why, as `pneumoscan explain` says 'empty'."""
    from pneumoscan.artifact import load_artifact
    from pneumoscan.data.preprocess import load_image
    from pneumoscan.explain.gradcam import gradcam_for_image

    model, meta = load_artifact(tiny_run)
    image = load_image(xray.read_bytes(), meta.image_size, name=xray.name)
    assert not gradcam_for_image(model.eval(), meta, image, target=0).any()  # measured: no evidence for NORMAL
    upload = {"file": (xray.name, xray.read_bytes(), "image/jpeg")}
    with TestClient(create_app(Settings(model=str(tiny_run), backend="onnx", threshold=1.0))) as c:
        body = c.post("/predict?explain=true", files=upload).json()
        assert body["label"] == body["heatmap_class"] == "NORMAL"
        assert body["heatmap_empty"] is True and body["heatmap_png_base64"] is None
        plain = c.post("/predict", files=upload).json()
        assert plain["heatmap_empty"] is None and plain["heatmap_class"] is None
        described = c.get("/openapi.json").json()["components"]["schemas"]["PredictionResponse"]["properties"]
        assert "no positive evidence" in described["heatmap_empty"]["description"]
    with TestClient(create_app(Settings(model=str(tiny_run), backend="onnx", threshold=1e-9))) as c:
        body = c.post("/predict?explain=true", files=upload).json()
        assert body["heatmap_class"] == "PNEUMONIA" and body["heatmap_empty"] is False and body["heatmap_png_base64"]
    with TestClient(create_app(Settings(model=str(fitted), backend="onnx"))) as c:  # refused: nothing to explain
        body = c.post("/predict?explain=true", files={"file": ("photo.jpg", colour_photo(), "image/jpeg")}).json()
        assert body["in_distribution"] is False and body["heatmap_empty"] is None and body["heatmap_class"] is None


def test_bad_settings_fail_fast(tiny_run: Path, tmp_path: Path) -> None:
    from pneumoscan.errors import InputError

    with pytest.raises(InputError):
        create_app(Settings(model=str(tmp_path / "nope")))
    with pytest.raises(InputError):
        Settings(model=str(tiny_run), max_upload_mb=0)


# ----------------------------------------------------------------- out-of-distribution guard


def test_guarded_model_card(guarded_client: TestClient) -> None:
    assert guarded_client.get("/model").json()["ood_guard"] is True


@pytest.mark.parametrize("folder", ["NORMAL", "PNEUMONIA"])
def test_guarded_real_xray_is_predicted(guarded_client: TestClient, fitted: Path, sample_films: Path,
                                        folder: str) -> None:
    xray = sorted((sample_films / folder).iterdir())[0]
    res = guarded_client.post("/predict", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["in_distribution"] is True and body["ood_reason"] is None
    expected = Predictor(fitted).predict_files([xray])[0]
    assert body["probability"] == pytest.approx(expected.probability, abs=1e-4)
    assert body["label"] == expected.label and body["label"] in {"NORMAL", "PNEUMONIA"}


UNLIKE = ("unlike the chest X-rays this model was trained on (image statistics: layout, contrast or texture); if it "
          "is a frontal chest X-ray, read it without the model")  # a site's own model's films may be adults'



@pytest.mark.parametrize(("name", "payload", "cause", "reason", "kind", "found"), [
    ("blank.png", blank_image(), "blank", "not a chest X-ray: blank or nearly constant image", "not_a_chest_xray",
     "blank or nearly constant image"),
    ("holiday.jpg", colour_photo(), "colour", "not a chest X-ray: colour image (chest X-rays are grayscale)",
     "not_a_chest_xray", "colour image (chest X-rays are grayscale)"),
    # a statistical outlier, as a few real chest X-rays are too: what was measured, not "not a chest X-ray"
    ("form.png", text_document(), "image", UNLIKE, "unlike", UNLIKE),
])
def test_guarded_non_xray_gets_no_prediction(guarded_client: TestClient, name: str, payload: bytes,
                                             cause: str, reason: str, kind: str, found: str) -> None:
    res = guarded_client.post("/predict", files={"file": (name, payload, "application/octet-stream")})
    assert res.status_code == 200, res.text  # a valid request: the answer is "cannot judge this image"
    body = res.json()
    assert body["in_distribution"] is False
    assert body["probability"] is None and body["label"] is None and body["heatmap_png_base64"] is None
    assert (body["refused_by"], body["ood_reason"]) == (cause, reason)
    # what the page shows, from the server: the kind picks its box and heading, the cause follows the heading
    assert (body["refusal_kind"], body["refusal_cause"]) == (kind, found)
    assert body["threshold"] > 0 and body["model_name"] == "resnet10"


@pytest.mark.skipif(importlib.util.find_spec("pneumoscan.explain.gradcam") is None,
                    reason="pneumoscan.explain.gradcam is not installed")
def test_guarded_explain_only_for_xrays(guarded_client: TestClient, xray: Path) -> None:
    res = guarded_client.post("/predict?explain=true", files={"file": ("photo.jpg", colour_photo(), "image/jpeg")})
    assert res.status_code == 200, res.text
    assert res.json()["in_distribution"] is False and res.json()["heatmap_png_base64"] is None
    res = guarded_client.post("/predict?explain=true", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")})
    assert res.status_code == 200 and res.json()["in_distribution"] is True
    assert base64.b64decode(res.json()["heatmap_png_base64"]).startswith(b"\x89PNG")


def test_guarded_batch_mixes_xrays_and_non_xrays(guarded_client: TestClient, fitted: Path, sample_films: Path) -> None:
    good = sorted((sample_films / "NORMAL").iterdir())[:2]
    files = [("files", (good[0].name, good[0].read_bytes(), "image/jpeg")),
             ("files", ("blank.png", blank_image(), "image/png")),
             ("files", ("photo.jpg", colour_photo(1), "image/jpeg")),
             ("files", ("bad.jpeg", b"\xff\xd8\xff\xe0 broken", "image/jpeg")),
             ("files", (good[1].name, good[1].read_bytes(), "image/jpeg"))]
    res = guarded_client.post("/predict/batch", files=files)
    assert res.status_code == 200, res.text
    body = res.json()
    rows = body["results"]
    assert [r["status"] for r in rows] == [200, 200, 200, 422, 200]
    assert [r["in_distribution"] for r in rows] == [True, False, False, None, True]
    assert body["n_ok"] == 4 and body["n_failed"] == 1 and body["n_out_of_distribution"] == 2
    expected = Predictor(fitted).predict_files(good)
    for row, want in zip((rows[0], rows[4]), expected):
        assert row["probability"] == pytest.approx(want.probability, abs=1e-4) and row["label"] == want.label
    for row, cause in zip(rows[1:3], ("blank", "colour")):
        assert row["ok"] and row["probability"] is None and row["label"] is None and row["error"] is None
        assert row["refused_by"] == cause and row["ood_reason"].startswith("not a chest X-ray: ")
        assert row["refusal_kind"] == "not_a_chest_xray" and row["refusal_cause"] == row["ood_reason"][19:]
    for row in (rows[0], rows[3], rows[4]):  # predicted, or unreadable: nothing refused
        assert row["refused_by"] is row["refusal_kind"] is row["refusal_cause"] is None
    assert rows[3]["error"] and rows[3]["ood_reason"] is None


def test_guarded_dithered_film_is_refused_saying_what_to_send(guarded_client: TestClient, xray: Path) -> None:
    """A chest X-ray dithered to black and white: refused from the upload's own grey levels, alone or in a batch."""
    binary = "binary (black-and-white) image: 2 grey levels; send the original radiograph"
    body = guarded_client.post("/predict", files={"file": ("scan.png", dithered(), "image/png")}).json()
    assert body["in_distribution"] is False and body["probability"] is None and body["ood_reason"] == binary
    assert (body["refusal_kind"], body["refusal_cause"]) == ("as_sent", binary)
    files = [("files", ("scan.png", dithered(), "image/png")), ("files", (xray.name, xray.read_bytes(), "image/jpeg"))]
    rows = guarded_client.post("/predict/batch", files=files).json()["results"]
    assert [(r["in_distribution"], r["ood_reason"]) for r in rows] == [(False, binary), (True, None)]
    assert [(r["refusal_kind"], r["refusal_cause"]) for r in rows] == [("as_sent", binary), (None, None)]


def test_unguarded_batch_has_no_verdicts(client: TestClient) -> None:
    body = client.post("/predict/batch", files=[("files", ("photo.jpg", colour_photo(), "image/jpeg"))]).json()
    assert body["results"][0]["in_distribution"] is None and body["results"][0]["probability"] is not None
    assert body["n_out_of_distribution"] == 0


def test_guarded_concurrent_requests_keep_their_verdicts(guarded_client: TestClient, sample_films: Path) -> None:
    """The guard hooks the torch model during its pass; concurrent requests must not mix their features."""
    xrays = [p.read_bytes() for p in sorted((sample_films / "PNEUMONIA").iterdir())[:2]]
    payloads = [xrays[0], blank_image(), xrays[1], colour_photo()]

    def post(i: int) -> tuple[int, bool | None, float | None]:
        files = [("files", (f"{k}.img", payloads[i % 4])) for k in range(1 + i % 3)]  # batches of 1-3 files
        res = guarded_client.post("/predict/batch", files=files)
        row = res.json()["results"][0] if res.status_code == 200 else {}
        return res.status_code, row.get("in_distribution"), row.get("probability")

    serial = [post(i) for i in range(4)]
    assert [s[1] for s in serial] == [True, False, True, False]
    with ThreadPoolExecutor(6) as pool:
        parallel = list(pool.map(post, range(24)))
    assert [(code, verdict) for code, verdict, _ in parallel] == [serial[i % 4][:2] for i in range(24)]
    for i, (_, _, prob) in enumerate(parallel):
        assert prob == pytest.approx(serial[i % 4][2], abs=1e-5) if prob is not None else serial[i % 4][2] is None


def test_a_batch_over_the_body_limit_is_told_to_split(tiny_run: Path, xray: Path) -> None:
    settings = Settings(model=str(tiny_run), backend="torch", max_upload_mb=0.5, max_batch_mb=1)
    part = xray.read_bytes() + b"\0" * (400_000 - len(xray.read_bytes()))  # 0.4 MB each, under the file limit
    with TestClient(create_app(settings)) as c:
        res = c.post("/predict/batch", files=[("files", (f"x{i}.jpeg", part, "image/jpeg")) for i in range(3)])
    assert res.status_code == 413 and "larger than the limit of 1 MB; split the files into several requests" in \
        res.json()["detail"]


def test_work_for_a_client_that_has_gone_is_not_started(client: TestClient, xray: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.requests import Request

    decoded: list[str] = []
    engine = client.app.state.engine
    monkeypatch.setattr(engine, "decode", lambda data, name: decoded.append(name))

    async def gone(self: Request) -> bool:
        return True

    monkeypatch.setattr(Request, "is_disconnected", gone)
    res = client.post("/predict", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")})
    assert res.status_code == 499 and decoded == []


def test_a_body_cut_off_before_its_closing_boundary_is_400(client: TestClient, xray: Path) -> None:
    boundary = "cutoffboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{xray.name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + xray.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    assert client.post("/predict", content=body, headers=headers).status_code == 200
    cut = body[: -len(f"\r\n--{boundary}--\r\n")]  # the whole file, but no closing boundary
    res = client.post("/predict", content=cut, headers=headers)
    assert res.status_code == 400 and "ends before its closing boundary" in res.json()["detail"]


def test_an_image_over_the_pixel_limit_is_413(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoscan.data import preprocess

    # a 20 x 20 image stands in for one over 150 megapixels
    decode = preprocess.load_image_levels_rgb_and_gray  # what the service decodes uploads with
    monkeypatch.setattr(decode, "__kwdefaults__", {**decode.__kwdefaults__, "max_pixels": 100})
    payload = png_bytes(np.full((20, 20), 100, np.uint8))
    res = client.post("/predict", files={"file": ("big.png", payload, "image/png")})
    assert res.status_code == 413 and "image too large" in res.json()["detail"]
    batch = client.post("/predict/batch", files=[("files", ("big.png", payload, "image/png"))]).json()
    assert batch["results"][0]["status"] == 413


@pytest.mark.parametrize("limits", [{"max_upload_mb": float("inf")}, {"max_batch_mb": float("inf")},
                                    {"max_batch_mb": float("nan")}])
def test_limits_must_be_finite(tiny_run: Path, limits: dict[str, float]) -> None:
    from pneumoscan.errors import InputError

    with pytest.raises(InputError, match="must be a number above 0"):
        Settings(model=str(tiny_run), **limits)


def test_the_file_chooser_offers_dicom_files_under_any_name(client: TestClient) -> None:
    """`scan.dicom` was greyed out in the chooser, and so were, for an accept filter of extensions, a PACS export's
    IM00001 and UID-named files (1.2.840.113619.2.55.3.12345): no filter can match a file without an extension."""
    import re

    chooser = re.search(r'<input type="file" id="file"[^>]*>', client.get("/").text)
    assert chooser is not None and "accept" not in chooser.group(0)


def test_the_guards_file_cues_of_two_requests_are_measured_at_once_on_a_shared_model(
        fitted: Path, sample_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the torch backend the guard hooks the shared model, so prediction and screening run one request at a
    time; the JPEG cues (two-tone share and dither energy: a full-size JPEG decode) and colourfulness of the upload must be measured before
    that lock, not under it. Answers are the same as the Predictor's own for the same bytes."""
    import threading

    from pneumoscan.inference import decoding as decoding_module
    from tests.conftest import dithered_jpeg

    measuring = threading.Barrier(2, timeout=10)  # passed only when two measurements are under way together
    overlapped: list[bool] = []
    real = decoding_module.jpeg_cues

    def jpeg_cues(data: bytes | bytearray, gray: np.ndarray | None = None,
                  deep: bool | None = None) -> tuple[float, float, float]:
        try:
            measuring.wait()
            overlapped.append(True)
        except threading.BrokenBarrierError:
            overlapped.append(False)
        return real(data, gray=gray, deep=deep)

    monkeypatch.setattr(engine_module, "jpeg_cues", jpeg_cues, raising=False)
    monkeypatch.setattr(decoding_module, "jpeg_cues", jpeg_cues)  # where it was measured under the lock
    xrays = [p.read_bytes() for p in sorted((sample_dir / "train" / "PNEUMONIA").iterdir())[:2]]
    app = create_app(Settings(model=str(fitted), backend="torch"))
    with TestClient(app) as c, ThreadPoolExecutor(2) as pool:
        assert app.state.engine.predictor.hooks_shared_model and app.state.settings.inference_slots >= 2
        answers = list(pool.map(lambda data: c.post("/predict", files={"file": ("x.jpeg", data)}).json(), xrays))
        assert overlapped == [True, True]

        measuring = threading.Barrier(1)  # one at a time from here on
        payloads = [*xrays, dithered_jpeg(), colour_photo(), blank_image()]
        batch = c.post("/predict/batch", files=[("files", (f"{i}.img", p)) for i, p in enumerate(payloads)]).json()
    own = Predictor(fitted, backend="torch")
    expected = [own.predict_bytes(p) for p in payloads]
    assert [b["in_distribution"] for b in batch["results"]] == [True, True, False, False, False]
    for got, want in zip([*answers, *batch["results"]], [*expected[:2], *expected]):
        assert (got["in_distribution"], got["ood_reason"], got["label"]) == (
            want.in_distribution, want.ood_reason, want.label)
        assert got["probability"] == pytest.approx(want.probability, abs=1e-6) if want.probability is not None \
            else got["probability"] is None


# ----------------------------------------------------------------- operating point


def test_model_card_states_the_operating_point_and_answers_the_prevalence(client: TestClient, tiny_run: Path,
                                                                          xray: Path) -> None:
    """Without options: the model's stored threshold, chosen on validation for its target recall, and probabilities
    that assume the model's prior (0.5: the tiny run trained on class-balanced batches, as the shipped model)."""
    meta = read_meta(tiny_run / "model.safetensors")
    point = client.get("/model").json()["operating_point"]
    interval = Predictor(tiny_run).threshold_ci95
    assert point == {"threshold": pytest.approx(meta.threshold), "threshold_ci95": pytest.approx(list(interval)),
                     "threshold_from": "model", "target_recall": meta.target_recall, "chosen_on": "validation",
                     "prevalence": 0.5, "prevalence_from": "model_prior"}
    assert meta.target_recall == 0.95 and meta.training["config"]["balance"] == "sampler"
    one = client.post("/predict", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")}).json()
    batch = client.post("/predict/batch", files=[("files", (xray.name, xray.read_bytes(), "image/jpeg"))]).json()
    assert one["prevalence"] == batch["prevalence"] == 0.5


def test_serve_with_a_target_recall_and_a_prevalence(tiny_run: Path, xray: Path) -> None:
    """`serve --target-recall R --prevalence P` serves what `predict` with the same options gives, and says so."""
    expected = Predictor(tiny_run, backend="onnx", target_recall=0.99, prevalence=0.2)
    plain = Predictor(tiny_run, backend="onnx")
    assert expected.threshold != pytest.approx(plain.threshold)
    with TestClient(create_app(Settings(model=str(tiny_run), backend="onnx", target_recall=0.99,
                                        prevalence=0.2))) as c:
        info = c.get("/model").json()
        one = c.post("/predict", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")}).json()
        batch = c.post("/predict/batch", files=[("files", (xray.name, xray.read_bytes(), "image/jpeg"))]).json()
    assert info["threshold"] == info["operating_point"]["threshold"] == pytest.approx(expected.threshold)
    assert info["stored_threshold"] == pytest.approx(plain.meta.threshold)
    assert info["operating_point"] == {"threshold": pytest.approx(expected.threshold),
                                       "threshold_ci95": pytest.approx(list(expected.threshold_ci95)),
                                       "threshold_from": "target_recall", "target_recall": 0.99, "chosen_on": "validation", "prevalence": 0.2,
                                       "prevalence_from": "prevalence"}
    probability = expected.predict_files([xray])[0].probability
    assert probability != pytest.approx(plain.predict_files([xray])[0].probability, abs=1e-3)  # re-weighted
    for body in (one, batch["results"][0]):
        assert body["probability"] == pytest.approx(probability, abs=1e-4)
        assert body["label"] == ("PNEUMONIA" if body["probability"] >= expected.threshold else "NORMAL")
    assert one["threshold"] == batch["threshold"] == pytest.approx(expected.threshold)
    assert one["prevalence"] == batch["prevalence"] == 0.2


def test_serve_with_a_threshold_and_a_prevalence(tiny_run: Path) -> None:
    """A threshold given by hand is used as given, on the re-weighted probabilities; no recall is claimed for it."""
    with TestClient(create_app(Settings(model=str(tiny_run), backend="onnx", threshold=0.3, prevalence=0.8))) as c:
        point = c.get("/model").json()["operating_point"]
    assert point == {"threshold": 0.3, "threshold_ci95": None, "threshold_from": "threshold", "target_recall": None,
                     "chosen_on": None, "prevalence": 0.8, "prevalence_from": "prevalence"}


def test_a_sites_own_threshold_is_said_to_be_chosen_on_local_films(tiny_run: Path, tiny_data: Path,
                                                                    tmp_path: Path) -> None:
    from pneumoscan.evaluation.local_threshold import set_threshold

    site = set_threshold(tiny_run, tiny_data, tmp_path / "site.safetensors", split="test", backend="torch",
                         n_boot=20).out
    for options, recall in (({}, read_meta(site).target_recall), ({"target_recall": 0.9}, 0.9)):
        with TestClient(create_app(Settings(model=str(site), backend="onnx", **options))) as c:
            point = c.get("/model").json()["operating_point"]
        assert point["chosen_on"] == "local" and point["target_recall"] == recall, options



# ----------------------------------------------------------------- borderline


@pytest.fixture(scope="module")
def placed(tiny_run: Path, sample_films: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A copy of the tiny model whose threshold's interval holds the second of three sample films (by P) alone,
    its threshold just below that film; and the three films, by P."""
    from tests.conftest import interval_scores, with_scores

    films = sorted((sample_films / "PNEUMONIA").iterdir())[:3]
    results = sorted(Predictor(tiny_run, backend="onnx").predict_files(films), key=lambda r: r.probability)
    low, middle, high = (r.probability for r in results)
    step = min(middle - low, high - middle) / 4
    out = tmp_path_factory.mktemp("placed") / "model.safetensors"
    model = with_scores(tiny_run, out, *interval_scores(middle - step, middle + step, step / 10))
    return model, [Path(r.path) for r in results]


def _upload(path: Path) -> tuple[str, bytes, str]:
    return path.name, path.read_bytes(), "image/jpeg"


def test_answers_say_which_films_are_borderline_and_give_the_interval(placed: tuple[Path, list[Path]]) -> None:
    model, films = placed
    predictor = Predictor(model, backend="onnx")
    interval = pytest.approx(list(predictor.threshold_ci95))
    with TestClient(create_app(Settings(model=str(model), backend="onnx"))) as c:
        info = c.get("/model").json()
        ones = [c.post("/predict", files={"file": _upload(film)}).json() for film in films]
        batch = c.post("/predict/batch", files=[("files", _upload(film)) for film in films]).json()
    assert info["threshold_ci95"] == info["operating_point"]["threshold_ci95"] == interval
    assert [one["borderline"] for one in ones] == [item["borderline"] for item in batch["results"]] == \
        [False, True, False]
    assert [one["label"] for one in ones] == ["NORMAL", "PNEUMONIA", "PNEUMONIA"]  # the label stands
    assert all(one["threshold_ci95"] == interval for one in ones) and batch["threshold_ci95"] == interval


def test_answers_have_no_interval_for_a_threshold_set_by_hand(placed: tuple[Path, list[Path]]) -> None:
    model, films = placed
    with TestClient(create_app(Settings(model=str(model), backend="onnx", threshold=0.5))) as c:
        info = c.get("/model").json()
        one = c.post("/predict", files={"file": _upload(films[1])}).json()
        batch = c.post("/predict/batch", files=[("files", _upload(films[1]))]).json()
    assert info["threshold_ci95"] is None and info["operating_point"]["threshold_ci95"] is None
    assert one["borderline"] is None and one["threshold_ci95"] is None
    assert batch["results"][0]["borderline"] is None and batch["threshold_ci95"] is None


def test_the_served_interval_moves_with_the_prevalence(placed: tuple[Path, list[Path]]) -> None:
    """The probabilities and the interval are re-weighted together: the same film is borderline."""
    from pneumoscan.evaluation.thresholds import adjust_for_prevalence

    model, films = placed
    plain = Predictor(model, backend="onnx").threshold_ci95
    with TestClient(create_app(Settings(model=str(model), backend="onnx", prevalence=0.9))) as c:
        info = c.get("/model").json()
        one = c.post("/predict", files={"file": _upload(films[1])}).json()
    assert info["threshold_ci95"] == pytest.approx(list(adjust_for_prevalence(plain, 0.5, 0.9)))
    assert info["threshold_ci95"][0] > plain[1]  # it moved: odds times 9
    assert one["borderline"] is True and one["threshold_ci95"] == pytest.approx(info["threshold_ci95"])


def test_openapi_documents_borderline_and_the_interval(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("PredictionResponse", "BatchItem"):
        assert "threshold's 95 % interval" in schemas[name]["properties"]["borderline"]["description"], name
    for name in ("PredictionResponse", "BatchResponse", "ModelInfo", "OperatingPoint"):
        interval = schemas[name]["properties"]["threshold_ci95"]
        assert {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2} in interval["anyOf"], name


@pytest.mark.parametrize("path", ["/", "/health"])
def test_uptime_monitors_head_requests_get_200(client: TestClient, path: str) -> None:
    get, head = client.get(path), client.head(path)
    assert head.status_code == get.status_code == 200
    assert head.headers["content-type"] == get.headers["content-type"]


@pytest.mark.skipif(importlib.util.find_spec("pneumoscan.explain.gradcam") is None,
                    reason="pneumoscan.explain.gradcam is not installed")
def test_a_heatmap_has_the_films_proportions_whatever_file_carries_it(client: TestClient, sample_dir: Path) -> None:
    """The heatmap is drawn on the model's input, the whole film stretched to a square; it was sent square, so the
    page showed a tall DICOM or TIFF film, whose heatmap is its only picture, squeezed (and printed any tall film's
    heatmap so beside it). It has the film's shape now: upright by its EXIF orientation, for a DICOM as for a PNG."""
    film = Image.open(sorted((sample_dir / "train" / "PNEUMONIA").iterdir())[0]).convert("L").resize((60, 90))
    turned = io.BytesIO()  # stored on its side (90 x 60), upright once turned by its EXIF orientation (6)
    exif = Image.Exif()
    exif[0x0112] = 6
    film.rotate(90, expand=True).save(turned, "JPEG", exif=exif.tobytes())
    uploads = {"tall.png": png_bytes(np.asarray(film)), "tall.jpeg": turned.getvalue(),
               "tall.dcm": dicom_bytes(np.asarray(film).astype(np.uint16) * 16)}
    for name, data in uploads.items():
        res = client.post("/predict?explain=true", files={"file": (name, data)})
        assert res.status_code == 200 and res.json()["heatmap_empty"] is False, (name, res.text)
        with Image.open(io.BytesIO(base64.b64decode(res.json()["heatmap_png_base64"]))) as im:
            assert im.size == (32, 48), name  # 32 px, the model's input, across; 60 x 90's proportions


@pytest.mark.skipif(importlib.util.find_spec("pneumoscan.explain.gradcam") is None,
                    reason="pneumoscan.explain.gradcam is not installed")
def test_a_heatmap_names_the_ensemble_members_it_leaves_out(mlp_ensemble: Path, client: TestClient,
                                                           xray: Path) -> None:
    """`explain` says 'not its mlp member: no feature map to draw'; the service's answer said nothing of it, so the
    page showed the cnn's share of the score as the ensemble's evidence."""
    upload = {"file": (xray.name, xray.read_bytes(), "image/jpeg")}
    with TestClient(create_app(Settings(model=str(mlp_ensemble), backend="onnx"))) as ensemble:
        assert ensemble.post("/predict?explain=true", files=upload).json()["heatmap_unmapped"] == ["mlp"]
        assert ensemble.post("/predict", files=upload).json()["heatmap_unmapped"] is None
    assert client.post("/predict?explain=true", files=upload).json()["heatmap_unmapped"] == []



def test_predict_says_whether_the_film_was_stretched_from_its_16_bit_grey_levels(client: TestClient,
                                                                                 xray: Path) -> None:
    """The page could only guess from a PNG's header whether the browser draws the film as the service read it, and
    hid an 8-bit film saved as 16 bits, which both read alike: the answer now says whether the film was stretched,
    and how a browser then draws it (`shown`: the page's note said only 'darker, paler or flatter')."""
    film = np.asarray(Image.open(xray).convert("L")).astype(np.uint16)
    spanning = film.copy()
    spanning[0, :2] = (0, 255)  # read from 0 to 255, as a browser draws it
    uploads = {"12-bit.png": (film * 16, "darker"), "12-bit high.png": (film * 16 + 61440, "paler"),
               "narrow.png": (film * 40 + 20000, "flatter"), "8-bit as 16.png": (film * 257, None),
               "8-bit.png": (film.astype(np.uint8), None),
               "8-bit shifted.png": (spanning << 8, None)}  # drawn as v >> 8, within a grey level of its read
    for name, (pixels, shown) in uploads.items():
        res = client.post("/predict", files={"file": (name, png_bytes(pixels))})
        assert res.status_code == 200, (name, res.text)
        assert (res.json()["stretched"], res.json()["shown"]) == (shown is not None, shown), (name, res.text)
    res = client.post("/predict", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")})
    assert (res.json()["stretched"], res.json()["shown"]) == (False, None)


def test_each_batch_item_says_whether_its_film_was_stretched_as_predict_does(client: TestClient, xray: Path) -> None:
    """/predict/batch gave no `stretched`, so a client sending several films could not tell which ones a viewer
    shows otherwise than the model read them: each item says it as /predict does, null for a file not read."""
    film = np.asarray(Image.open(xray).convert("L")).astype(np.uint16)
    uploads = [("12-bit.png", png_bytes(film * 16)), ("8-bit as 16.png", png_bytes(film * 257)),
               (xray.name, xray.read_bytes()), ("broken.png", b"\x89PNG not an image")]
    res = client.post("/predict/batch", files=[("files", upload) for upload in uploads])
    items = res.json()["results"]
    assert res.status_code == 200 and [item["ok"] for item in items] == [True, True, True, False], res.text
    singles = [client.post("/predict", files={"file": upload}).json() for upload in uploads[:3]]
    for key, expected in (("stretched", [True, False, False, None]), ("shown", ["darker", None, None, None])):
        assert [item[key] for item in items] == [single[key] for single in singles] + [None] == expected, key
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    said = [schema[name]["properties"]["stretched"]["description"] for name in ("PredictionResponse", "BatchItem")]
    assert all("stretched from its darkest to its brightest value" in description for description in said)
