from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest

from pneumoscan.cli import main
from pneumoscan.progress import progress_bar


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stderr, progress, shown", [(_Tty, True, True), (_Tty, False, False),
                                                     (io.StringIO, True, False)])
def test_bar_only_on_a_terminal_and_when_asked(stderr: type, progress: bool, shown: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    stream = stderr()
    monkeypatch.setattr(sys, "stderr", stream)
    assert list(progress_bar(range(3), desc="decoding", progress=progress)) == [0, 1, 2]
    assert ("decoding" in stream.getvalue()) is shown


# Every command that reads images, with stderr a pipe or a file (pytest's capture): no bar text in the log.
@pytest.mark.parametrize("argv", [
    ["audit", "{data}"],
    ["evaluate", "--model", "{run}", "--data", "{data}", "--backend", "torch", "--n-boot", "10"],
    ["report", "{run}", "--data", "{data}", "--out", "{tmp}/r.html", "--n-boot", "10", "--cases", "1"],
    ["set-threshold", "--model", "{run}", "--data", "{data}", "--split", "test", "--out", "{tmp}/t",
     "--backend", "torch", "--n-boot", "10"],
    ["fit-guard", "--model", "{run}", "--data", "{data}", "--out", "{tmp}/g.ood.safetensors"],
    ["train", "--data", "{data}", "--out", "{tmp}/run", "--model", "cnn", "--image-size", "32", "--epochs", "1"],
    ["pretrain", "--data", "{data}", "--out", "{tmp}/pre", "--model", "cnn", "--image-size", "32", "--epochs", "1",
     "--batch-size", "16"],
])
def test_no_bar_when_stderr_is_not_a_terminal(argv: list[str], tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main([a.format(run=tiny_run, data=tiny_data, tmp=tmp_path) for a in argv]) == 0
    err = capsys.readouterr().err
    for bar_text in ("%|", "reading:", "decoding", "patient IDs", "img/s", "batch/s", "it/s"):
        assert bar_text not in err, err


def test_evaluate_shows_scoring_progress_on_a_terminal(fitted: Path, tiny_data: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring and screening thousands of decoded films takes tens of seconds after the decoding bar ends: a bar
    counts them, and the probabilities and the guard's verdicts are those of one pass over all images."""
    from pneumoscan.evaluation.evaluate import evaluate
    from pneumoscan.inference.predictor import Predictor

    predictor = Predictor(fitted, backend="torch", batch_size=2)  # a few batches at a time: 8 films
    assert predictor.guard is not None
    images = evaluate(predictor, tiny_data, "test", n_boot=10, cache_dir=tmp_path).images
    whole, verdicts = predictor.screen(np.asarray(images.images), list(images.colours), list(images.levels),
                                       list(images.tones), list(images.dithers),
                                       list(images.peaks))
    stream = _Tty()
    monkeypatch.setattr(sys, "stderr", stream)
    result = evaluate(predictor, tiny_data, "test", n_boot=10, cache_dir=tmp_path)
    assert len(result.probs) > 8 and "scoring:" in stream.getvalue()
    assert f" 0/{len(result.probs)} [" in stream.getvalue()
    assert np.allclose(result.probs, whole, atol=1e-6)
    assert result.summary["refused_by_guard"] == [f"{s.path}: {v.message}" for s, v in zip(images.samples, verdicts)
                                                  if not v.in_distribution]


def test_fit_guard_shows_feature_progress_on_a_terminal(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """After decoding, fit-guard runs the model over every training film (half a minute for 5,216): a bar counts them."""
    stream = _Tty()
    monkeypatch.setattr(sys, "stderr", stream)
    assert main(["fit-guard", "--model", str(tiny_run), "--data", str(tiny_data), "--out",
                 str(tmp_path / "g.ood.safetensors"), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "guard features:" in stream.getvalue() and "guard statistics:" in stream.getvalue()


def test_fit_guard_statistics_are_counted_chunk_by_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard's image statistics of thousands of films take seconds after the features bar: a bar counts them,
    and the rows are those of one call over all images."""
    from pneumoscan.inference.ood.cues import image_statistics
    from pneumoscan.inference.ood.fit import chunked_statistics

    images = np.random.default_rng(0).integers(0, 256, (7, 32, 32), dtype=np.uint8)
    stream = _Tty()
    monkeypatch.setattr(sys, "stderr", stream)
    assert np.allclose(chunked_statistics(images, chunk=3), image_statistics(images), rtol=1e-6, atol=1e-9)
    assert "guard statistics:" in stream.getvalue() and " 0/7 [" in stream.getvalue()


def test_report_counts_its_sections_on_a_terminal(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Figures and Grad-CAM take seconds after the scoring bar (6 s for a run on 5,216 films): a bar counts them."""
    stream = _Tty()
    monkeypatch.setattr(sys, "stderr", stream)
    assert main(["report", str(tiny_run), "--data", str(tiny_data), "--out", str(tmp_path / "r.html"), "--n-boot", "10",
                 "--cases", "1", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "report sections:" in stream.getvalue() and " 0/9 [" in stream.getvalue()


def test_bar_shows_on_a_terminal_that_reports_no_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pseudo-terminal whose size was never set (`script -qc` without a terminal, some CI runners) reports 0
    columns, and tqdm then draws nothing at all: the bar falls back to 80 columns."""
    import os

    controller, terminal = os.openpty()  # a new pty is 0 x 0
    stream = open(terminal, "w", closefd=True)
    try:
        assert os.get_terminal_size(terminal).columns == 0
        monkeypatch.setattr(sys, "stderr", stream)
        assert list(progress_bar(range(3), desc="decoding", unit="img")) == [0, 1, 2]
        stream.flush()
        os.set_blocking(controller, False)  # nothing drawn must not hang the test
        try:
            shown = os.read(controller, 65536).decode()
        except BlockingIOError:
            shown = ""
    finally:
        stream.close()
        os.close(controller)
    assert "decoding:" in shown and "0/3 [" in shown


@pytest.mark.parametrize("progress", [True, False])
def test_a_notebook_shows_a_text_bar_without_ipywidgets(progress: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Jupyter kernel's stderr is no terminal, yet a notebook cell should count its images, unless told not to."""
    import tqdm.notebook

    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", type(sys)("ipykernel.zmqshell"))
    monkeypatch.setattr(tqdm.notebook, "IProgress", None)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    assert list(progress_bar(range(3), desc="decoding", progress=progress)) == [0, 1, 2]
    assert ("decoding" in stream.getvalue()) is progress


def test_a_notebook_with_ipywidgets_gets_a_widget_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    import tqdm.notebook

    made: list[dict[str, object]] = []

    class Widget(list):  # stands in for tqdm.notebook.tqdm, which needs a live kernel to display
        def __init__(self, iterable: object, **options: object) -> None:
            super().__init__(iterable)  # type: ignore[arg-type]
            made.append(options)

    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", type(sys)("ipykernel.zmqshell"))
    monkeypatch.setattr(tqdm.notebook, "IProgress", object)
    monkeypatch.setattr(tqdm.notebook, "tqdm", Widget)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert list(progress_bar(range(3), desc="decoding")) == [0, 1, 2]
    assert made == [{"leave": False, "desc": "decoding"}]
    assert list(progress_bar(range(3), desc="decoding", progress=False)) == [0, 1, 2] and len(made) == 1


def _dicom_films(root: Path, n: int) -> list[Path]:
    """`n` tiny DICOM films, each with a PatientID of its own, in root/train/NORMAL and root/train/PNEUMONIA."""
    from tests.conftest import dicom_to_bytes, make_dicom

    paths = []
    for i in range(n):
        path = root / "train" / ("NORMAL", "PNEUMONIA")[i % 2] / f"film{i}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.full((40, 40), 30 + 20 * i, np.uint8)
        path.write_bytes(dicom_to_bytes(make_dicom(pixels, patient_id=f"PID{i}")))
        paths.append(path)
    return paths


@pytest.mark.parametrize("progress", [True, False])
def test_reading_dicom_patient_ids_is_counted_on_a_terminal(progress: bool, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`--patient-key auto` reads every DICOM header before anything else (about 0.8 ms a film: 10 s for 12,000, with
    no sign of life): a bar counts the films, unless progress is off (`--quiet`)."""
    pytest.importorskip("pydicom")
    from pneumoscan.data.labels import Sample
    from pneumoscan.data.patients import patient_keys

    samples = [Sample(path, 0) for path in _dicom_films(tmp_path, 4)]
    stream = _Tty()
    monkeypatch.setattr(sys, "stderr", stream)
    keys = patient_keys(samples, progress=progress)
    assert keys.sources == {"dicom": 4} and len(set(keys.keys.values())) == 4
    assert ("patient IDs:" in stream.getvalue() and " 0/4 [" in stream.getvalue()) is progress


def test_audit_counts_the_patient_ids_it_reads_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pydicom")
    _dicom_films(tmp_path, 4)
    stream = _Tty()
    monkeypatch.setattr(sys, "stderr", stream)
    main(["audit", str(tmp_path)])
    assert "patient IDs:" in stream.getvalue() and " 0/4 [" in stream.getvalue()
