"""`serve --audit-log FILE`: one JSON line per analysed film naming the model, the operating point and the result,
never the image, its file name or DICOM data; and what each answer carries to trace it."""
from __future__ import annotations

import errno
import io
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pneumoscan.artifact import file_sha256
from pneumoscan.cli import main
from pneumoscan.service.app import create_app
from pneumoscan.service.settings import Settings
from tests.conftest import colour_photo, dicom_to_bytes, disk_full, make_dicom, serve_at_once, xray_pixels

SECRET = "DOE^JANE_MRN_55501"
FIELDS = {"time", "request_id", "endpoint", "item", "model_sha256", "model_version", "threshold", "threshold_from",
          "prevalence", "probability", "decision", "borderline", "guard", "width", "height"}
UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def png(seed: int, width: int = 48, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(xray_pixels(1, seed, max(width, height))[:height, :width]).save(buffer, format="PNG")
    return buffer.getvalue()


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def audited(model: Path, log: Path, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(model=str(model), backend="onnx", audit_log=str(log), **settings)))


def test_each_analysed_film_gets_one_line_matching_its_answer(tiny_run: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    with audited(tiny_run, log) as client:
        one = client.post("/predict", files={"file": ("chest.png", png(1, 60, 50), "image/png")},
                          headers={"X-Request-ID": "ris-1"}).json()
        batch = client.post("/predict/batch", files=[("files", ("a.png", png(2), "image/png")),
                                                      ("files", ("notes.txt", b"not an image", "text/plain")),
                                                      ("files", ("b.png", png(3), "image/png"))]).json()
    first, *rest = lines(log)
    digest = file_sha256(tiny_run / "model.safetensors")
    assert set(first) == FIELDS and UTC.fullmatch(first["time"])
    assert first == {"time": one["analysed_at"], "request_id": "ris-1", "endpoint": "predict", "item": None,
                     "model_sha256": digest, "model_version": one["model_version"], "threshold": one["threshold"],
                     "threshold_from": "model", "prevalence": one["prevalence"], "probability": one["probability"],
                     "decision": one["label"], "borderline": one["borderline"], "guard": "none", "width": 60,
                     "height": 50}
    assert one["model_sha256"] == digest[:12] and one["threshold_from"] == "model"
    assert [line["item"] for line in rest] == [0, 2]  # the text file was analysed by no model: no line
    assert {line["request_id"] for line in rest} == {batch["request_id"]}
    assert [line["probability"] for line in rest] == [batch["results"][0]["probability"],
                                                      batch["results"][2]["probability"]]
    assert all(line["time"] == batch["analysed_at"] and line["endpoint"] == "predict/batch" for line in rest)


def test_the_audit_log_holds_no_image_file_name_or_dicom_data(tiny_run: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    film = dicom_to_bytes(make_dicom(xray_pixels(1, 5, 40), bits_stored=8, patient_name=SECRET, patient_id=SECRET))
    with audited(tiny_run, log) as client:
        res = client.post("/predict", files={"file": (f"{SECRET}.dcm", film, "application/dicom")})
    assert res.status_code == 200
    text = log.read_text()
    assert SECRET not in text and "DOE" not in text and ".dcm" not in text
    (line,) = lines(log)
    assert set(line) == FIELDS and (line["width"], line["height"]) == (40, 40)


def test_a_film_the_guard_refuses_is_recorded_as_refused(fitted: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    with audited(fitted, log) as client:
        res = client.post("/predict", files={"file": ("photo.png", colour_photo(), "image/png")}).json()
    assert res["in_distribution"] is False
    (line,) = lines(log)
    assert (line["guard"], line["probability"], line["decision"]) == ("refused", None, None)


def test_concurrent_requests_append_whole_lines(tiny_run: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text('{"earlier":"line"}\n')  # appended to, never truncated
    with audited(tiny_run, log, inference_slots=4) as client:
        def post(i: int) -> str:
            res = client.post("/predict", files={"file": ("x.png", png(i), "image/png")})
            return res.json()["request_id"]

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(post, range(24)))
    recorded = lines(log)
    assert recorded[0] == {"earlier": "line"} and len(recorded) == 25
    assert sorted(line["request_id"] for line in recorded[1:]) == sorted(ids) and len(set(ids)) == 24


def test_a_result_that_cannot_be_recorded_is_not_given(tiny_run: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    log = tmp_path / "audit.jsonl"
    with audited(tiny_run, log) as client:
        def full(data: bytes) -> int:
            raise disk_full()

        monkeypatch.setattr(client.app.state.audit._file, "write", full)  # type: ignore[attr-defined]
        res = client.post("/predict", files={"file": ("x.png", png(1), "image/png")})
        batch = client.post("/predict/batch", files=[("files", ("x.png", png(1), "image/png"))])
    assert res.status_code == batch.status_code == 503
    assert "could not be recorded in the service's audit log" in res.json()["detail"] and "probability" not in res.text
    assert any("No space left on device" in r.getMessage() and str(log) in r.getMessage() for r in caplog.records)


def test_an_audit_error_that_names_its_file_is_answered_without_it(tiny_run: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An OSError without strerror was quoted whole in the 503, with the audit log's path in it."""
    log = tmp_path / "audit.jsonl"
    with audited(tiny_run, log) as client:
        def gone(data: bytes) -> int:
            raise OSError(f"file system gone under {log}")

        monkeypatch.setattr(client.app.state.audit._file, "write", gone)  # type: ignore[attr-defined]
        res = client.post("/predict", files={"file": ("x.png", png(1), "image/png")})
    assert res.status_code == 503 and str(tmp_path) not in res.text
    assert res.json()["detail"].endswith("tell the service's administrators (OSError)")


def test_an_audit_log_that_cannot_be_opened_is_one_line_before_the_model_loads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoscan.service import serving

    monkeypatch.setattr(serving, "run", serve_at_once())
    for bad in (tmp_path / "no-such-folder" / "audit.jsonl", tmp_path):
        assert main(["serve", "--model", str(tmp_path / "missing-model"), "--port", "0", "--audit-log", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"pneumoscan: error: --audit-log {bad}: cannot be opened for appending (")
        assert len(err.splitlines()) == 1 and "missing-model" not in err


def test_without_an_audit_log_nothing_is_written(tiny_run: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with TestClient(create_app(Settings(model=str(tiny_run), backend="onnx"))) as client:
        res = client.post("/predict", files={"file": ("x.png", png(1), "image/png")}).json()
    assert UTC.fullmatch(res["analysed_at"]) and not list(tmp_path.iterdir())
    assert np.isfinite(res["probability"])


def test_a_log_moved_away_or_removed_is_followed_by_a_new_file_at_its_path(tiny_run: Path, tmp_path: Path) -> None:
    """logrotate's default `create` mode moves the file away (and creates an empty one): the lines went on to the
    moved file for as long as the service ran, and after `rm` to no file at all."""
    log = tmp_path / "audit.jsonl"
    with audited(tiny_run, log) as client:
        def post(rid: str) -> None:
            res = client.post("/predict", files={"file": ("x.png", png(1), "image/png")}, headers={"X-Request-ID": rid})
            assert res.status_code == 200

        post("a")
        log.rename(tmp_path / "audit.jsonl.1")  # logrotate's create mode, then the empty file it creates
        log.touch(0o640)
        post("b")
        post("c")
        log.rename(tmp_path / "audit.jsonl.2")  # nocreate: the service makes the new file
        post("d")
        log.unlink()
        post("e")
    assert [line["request_id"] for line in lines(tmp_path / "audit.jsonl.1")] == ["a"]
    assert [line["request_id"] for line in lines(tmp_path / "audit.jsonl.2")] == ["b", "c"]
    assert [line["request_id"] for line in lines(log)] == ["e"]  # d was in the file removed
    assert log.stat().st_mode & 0o777 == 0o640


def test_a_log_whose_folder_is_gone_withholds_results_until_it_is_back(tiny_run: Path, tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "audit"
    folder.mkdir()
    log = folder / "audit.jsonl"
    with audited(tiny_run, log) as client:
        def post() -> int:
            return client.post("/predict", files={"file": ("x.png", png(1), "image/png")}).status_code

        assert post() == 200
        folder.rename(tmp_path / "audit-old")
        assert post() == 503  # not to the moved file, where nobody looks for it
        assert any(str(log) in r.getMessage() and "No such file or directory" in r.getMessage() for r in caplog.records)
        folder.mkdir()
        assert post() == 200
    assert len(lines(tmp_path / "audit-old" / "audit.jsonl")) == 1 and len(lines(log)) == 1


def test_each_write_is_fsynced_before_its_answer(tiny_run: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines were only handed to the operating system: a power loss after the answer could lose its line."""
    import os

    from pneumoscan.service import audit

    log = tmp_path / "audit.jsonl"
    synced: list[int] = []

    def fsync(fd: int) -> None:
        synced.append(len(log.read_bytes().splitlines()))  # lines in the file when it is synced

    with audited(tiny_run, log) as client:
        monkeypatch.setattr(audit.os, "fsync", fsync)
        client.post("/predict", files={"file": ("x.png", png(1), "image/png")})
        client.post("/predict/batch", files=[("files", ("a.png", png(2), "image/png")),
                                             ("files", ("b.png", png(3), "image/png"))])
        assert synced == [1, 3]

        def failing(code: int) -> Callable[[int], None]:
            def fsync(fd: int) -> None:
                raise OSError(code, os.strerror(code))
            return fsync

        monkeypatch.setattr(audit.os, "fsync", failing(errno.EINVAL))  # a file system without fsync: as before
        assert client.post("/predict", files={"file": ("x.png", png(1), "image/png")}).status_code == 200
        monkeypatch.setattr(audit.os, "fsync", failing(errno.EIO))  # a failing disk
        res = client.post("/predict", files={"file": ("x.png", png(1), "image/png")})
    assert res.status_code == 503 and "could not be recorded" in res.json()["detail"]


def test_a_log_moved_while_requests_run_loses_and_repeats_no_line(tiny_run: Path, tmp_path: Path) -> None:
    import threading
    import time

    log, moved = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.1"
    renamed = threading.Event()
    with audited(tiny_run, log, inference_slots=4) as client:
        def post(i: int) -> str:
            if i >= 12:  # the second half surely after the move; the first half's may be under way during it
                assert renamed.wait(60)
            res = client.post("/predict", files={"file": ("x.png", png(i), "image/png")})
            assert res.status_code == 200
            return res.json()["request_id"]

        with ThreadPoolExecutor(8) as pool:
            answered = pool.map(post, range(24))
            deadline = time.monotonic() + 60
            while len(log.read_bytes().splitlines()) < 6:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            log.rename(moved)
            renamed.set()
            ids = list(answered)
    before, after = [line["request_id"] for line in lines(moved)], [line["request_id"] for line in lines(log)]
    assert before and after and sorted(before + after) == sorted(ids) and len(set(ids)) == 24


@pytest.mark.parametrize("endpoint", ["/predict", "/predict/batch"])
def test_the_audit_write_waits_for_the_disk_outside_the_inference_slot(tiny_run: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       endpoint: str) -> None:
    """The write and its fsync ran while the request held its inference slot, so every other request's model run
    waited for the disk as well; the answer still waits for its line to be on disk."""
    import threading

    from pneumoscan.service import audit

    syncing, scored, release = threading.Event(), threading.Event(), threading.Event()

    def slow_fsync(fd: int) -> None:
        if not syncing.is_set():  # the first request's fsync: the disk is slow
            syncing.set()
            release.wait(30)

    log = tmp_path / "audit.jsonl"
    with audited(tiny_run, log, inference_slots=1) as client:
        engine = client.app.state.engine  # type: ignore[attr-defined]
        results = engine.results

        def scoring(uploads: list) -> list:
            if syncing.is_set():
                scored.set()
            return results(uploads)

        monkeypatch.setattr(engine, "results", scoring)
        monkeypatch.setattr(audit.os, "fsync", slow_fsync)
        field = "file" if endpoint == "/predict" else "files"
        with ThreadPoolExecutor(2) as pool:
            try:
                first = pool.submit(client.post, endpoint, files={field: ("a.png", png(1), "image/png")})
                assert syncing.wait(30)
                second = pool.submit(client.post, "/predict", files={"file": ("b.png", png(2), "image/png")})
                assert scored.wait(10), "the second request got no slot while the first's line was being synced"
                with pytest.raises(TimeoutError):
                    first.result(timeout=0.5)  # no answer before its line is on disk
            finally:
                release.set()
            assert first.result().status_code == second.result().status_code == 200
    assert len(lines(log)) == 2


# ----------------------------------------------------------------- the group commit: one fsync for many lines


def written_lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def test_concurrent_writers_lose_reorder_and_leave_unsynced_no_line(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """8 threads append 40 lines each while every fsync takes 1 ms: each line is whole and in its thread's order,
    and no write returns before an fsync that began after its line was in the file has ended."""
    import os
    import threading
    import time

    from pneumoscan.service import audit

    synced_to: list[int] = []  # the file's size when each fsync that has ended began: what it covered
    guard = threading.Lock()

    def fsync(fd: int) -> None:
        size = os.fstat(fd).st_size
        time.sleep(0.001)  # the disk's time: other threads write meanwhile
        with guard:
            synced_to.append(size)

    path = tmp_path / "audit.jsonl"
    log = audit.AuditLog(str(path))
    monkeypatch.setattr(audit.os, "fsync", fsync)
    returned: dict[tuple[int, int], int] = {}  # (thread, line) -> bytes on disk for sure when its write returned

    def writer(thread: int) -> None:
        for i in range(40):
            log.write([{"thread": thread, "line": i}])
            with guard:
                returned[thread, i] = max(synced_to, default=0)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(8)))
    log.close()
    data, ends, end = path.read_bytes(), {}, 0
    for line in data.splitlines(keepends=True):
        end += len(line)
        record = json.loads(line)
        ends[record["thread"], record["line"]] = end
    assert len(data.splitlines()) == len(ends) == 320
    for thread in range(8):
        order = [key[1] for key in ends if key[0] == thread]
        assert order == list(range(40)), order
    unsynced = {key: (ends[key], returned[key]) for key in ends if returned[key] < ends[key]}
    assert not unsynced, unsynced
    assert len(synced_to) < 320  # fsyncs were shared


@pytest.mark.parametrize("disk", ["works", "fails"])
def test_one_fsync_covers_two_lines_written_while_another_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              disk: str) -> None:
    """Two requests write their lines while a third's fsync runs: one fsync then covers both, the other request
    syncs nothing (before, each waited for the lock held through the other's fsync, then fsynced alone). When that
    fsync fails, both are told, though a later fsync would succeed."""
    import os
    import threading
    import time

    from pneumoscan.service import audit

    path = tmp_path / "audit.jsonl"
    log = audit.AuditLog(str(path))
    calls: list[int] = []  # lines in the file at each fsync
    running, release = threading.Event(), threading.Event()

    def fsync(fd: int) -> None:
        calls.append(written_lines(path))
        if len(calls) == 1:
            running.set()
            assert release.wait(30)
        elif len(calls) == 2 and disk == "fails":
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(audit.os, "fsync", fsync)
    outcome: dict[int, str] = {}

    def write(n: int) -> None:
        try:
            log.write([{"n": n}])
            outcome[n] = "written"
        except audit.AuditError:
            outcome[n] = "withheld"

    first = threading.Thread(target=write, args=(0,))
    first.start()
    assert running.wait(30)
    others = [threading.Thread(target=write, args=(n,)) for n in (1, 2)]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 30
    while written_lines(path) < 3:  # both lines are written while the first fsync runs
        assert time.monotonic() < deadline, "the other lines waited for the first fsync"
        time.sleep(0.01)
    release.set()
    for thread in (first, *others):
        thread.join(30)
    assert calls == [1, 3]
    assert outcome == {0: "written", 1: "written" if disk == "works" else "withheld",
                       2: "written" if disk == "works" else "withheld"}
    log.write([{"n": 3}])  # the next fsync succeeds: results are given again
    assert calls == [1, 3, 4]


def test_a_rotation_fsyncs_the_moved_files_lines_before_closing_it(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A line written to the file logrotate then moves away is fsynced in it before it is closed, and its writer
    has nothing left to sync."""
    import os

    from pneumoscan.service import audit

    path, moved = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.1"
    log = audit.AuditLog(str(path))
    calls: list[tuple[int, int]] = []  # (inode, size) of each file fsynced

    def fsync(fd: int) -> None:
        stat = os.fstat(fd)
        if not os.path.samestat(stat, os.stat(tmp_path)):  # the folder's, for the new file's entry
            calls.append((stat.st_ino, stat.st_size))

    monkeypatch.setattr(audit.os, "fsync", fsync)
    pending = log._append(b'{"n":0}\n')  # written, its fsync not yet begun
    path.rename(moved)
    log.write([{"n": 1}])
    log._wait_synced(pending)
    log.close()
    assert calls == [(moved.stat().st_ino, 8), (path.stat().st_ino, 8)]
    assert moved.read_text() == '{"n":0}\n' and path.read_text() == '{"n":1}\n'
