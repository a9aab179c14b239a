"""`pneumoscan predict` writes its rows chunk by chunk: the same bytes as the whole list, but as they come."""
from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from pathlib import Path

import pytest

import pneumoscan.inference.predictor as predictor_module
from pneumoscan.cli import main
from pneumoscan.errors import decimals
from pneumoscan.inference.predict_stream import PredictionWriter
from pneumoscan.inference.inputs import input_files
from pneumoscan.inference.prediction import Prediction
from pneumoscan.inference.predictor import Predictor
from tests.conftest import blank_image, per_film_lines


def _old_output(results: list[Prediction], fmt: str) -> str:
    """What `pneumoscan predict` printed before it streamed: everything formatted from the one list (a name on one
    line, `one_name`)."""
    from pneumoscan.errors import one_name

    rows = [r.to_dict() for r in results]
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    out = io.StringIO()
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    return "".join(f"{r.label:<10} P(pneumonia)={decimals(r.probability, 4)}  {'borderline  ' if r.borderline else ''}"
                   f"{one_name(r.path)}\n" for r in results if r.error is None and r.in_distribution is not False)


@pytest.fixture
def five_inputs(sample_dir: Path, tmp_path: Path) -> list[Path]:
    """Two films | an unreadable file and a film | a blank image the guard refuses: chunks of two."""
    films = sorted((sample_dir / "train" / "NORMAL").iterdir())[:3]
    folder = tmp_path / "export"
    folder.mkdir()
    for index, film in enumerate(films):
        shutil.copy(film, folder / f"{(0, 1, 3)[index]}_{film.name}")
    (folder / "2_broken.jpeg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (folder / "4_blank.png").write_bytes(blank_image())
    return sorted(folder.iterdir())


_FLAGS = {"text": [], "csv": ["--csv"], "json": ["--json"]}


@pytest.mark.parametrize("fmt", ["text", "csv", "json"])
def test_chunks_of_two_print_what_the_whole_list_printed(fmt: str, fitted: Path, five_inputs: list[Path],
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    reference = [p for chunk in Predictor(fitted, backend="onnx").predict_chunks(input_files(five_inputs),
                                                                                 chunk_size=100) for p in chunk]
    assert [(r.error is not None, r.in_distribution) for r in reference] == \
        [(False, True), (False, True), (True, None), (False, True), (False, False)]
    monkeypatch.setattr(predictor_module, "CHUNK_SIZE", 2)
    assert main(["predict", "--model", str(fitted), "--backend", "onnx", *map(str, five_inputs), *_FLAGS[fmt]]) == 1
    out, err = capsys.readouterr()
    assert out == _old_output(reference, fmt)
    # each chunk's problems as it is done: the unreadable file (second chunk), then the refusal (third)
    assert per_film_lines(err) == [f"pneumoscan: error: {reference[2].error}",
                                f"pneumoscan: warning: {five_inputs[4]}: {reference[4].ood_reason}; no prediction made"]


@pytest.mark.parametrize("fmt", ["text", "csv", "json"])
def test_the_first_chunk_is_out_before_the_last_is_read(fmt: str, tiny_run: Path, tiny_data: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    films = sorted((tiny_data / "train" / "NORMAL").iterdir())[:3]

    class Terminal(io.StringIO):
        """stdout that remembers what had been flushed, i.e. what a reader of the pipe could see."""
        flushed = ""

        def flush(self) -> None:
            self.flushed = self.getvalue()

    stdout = Terminal()
    seen_when_last_read: list[str] = []
    real_load = predictor_module.load_image_levels_rgb_and_gray

    def load(data: bytes, size: int, name: str = "") -> object:
        if name == str(films[-1]):
            seen_when_last_read.append(stdout.flushed)
        return real_load(data, size, name=name)

    monkeypatch.setattr(predictor_module, "CHUNK_SIZE", 2)
    monkeypatch.setattr(predictor_module, "load_image_levels_rgb_and_gray", load)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["predict", "--model", str(tiny_run), "--backend", "torch", *map(str, films), *_FLAGS[fmt]]) == 0
    first_rows = seen_when_last_read[0]
    assert str(films[0]) in first_rows and str(films[1]) in first_rows and str(films[2]) not in first_rows
    assert stdout.getvalue().startswith(first_rows)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal, quiet, bar", [(False, False, False), (True, False, True), (True, True, False)])
def test_progress_bar_only_on_a_terminal_and_not_with_quiet(terminal: bool, quiet: bool, bar: bool, tiny_run: Path,
                                                            tiny_data: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    stderr = _Tty() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    argv = ["predict", "--model", str(tiny_run), str(tiny_data / "train" / "NORMAL"), "--csv"]
    assert main(argv + ["--quiet"] * quiet) == 0
    assert ("predict:" in stderr.getvalue()) is bar
    if not bar:
        assert per_film_lines(stderr.getvalue()) == []  # nothing in a log but the model's lack of a guard
    assert len(capsys.readouterr().out.splitlines()) == 1 + len(list((tiny_data / "train" / "NORMAL").iterdir()))


def _prediction(index: int, **fields: object) -> Prediction:
    base: dict = {"path": f"films/{index}, \"odd\"\n.png", "probability": index / 10, "label": "NORMAL",
                  "threshold": 0.5}
    return Prediction(**{**base, **fields})


@pytest.mark.parametrize("sizes", [[], [0], [1], [3], [2, 0, 1], [1, 1, 1, 1]])
@pytest.mark.parametrize("fmt", ["text", "csv", "json"])
def test_any_chunking_writes_the_bytes_of_the_whole_list(fmt: str, sizes: list[int]) -> None:
    predictions = [_prediction(0), _prediction(1, error="films/1: not a readable image", probability=None, label=None),
                   _prediction(2, in_distribution=False, ood_reason="not a chest X-ray: colour image (chest X-rays "
                               "are grayscale)", refused_by="colour", probability=None, label=None),
                   _prediction(3, in_distribution=True)][:sum(sizes)]
    writer, text, start = PredictionWriter(fmt), "", 0
    for size in sizes:
        text += writer.chunk(predictions[start : start + size])
        start += size
    text += writer.end()
    assert text == ("" if fmt == "csv" and not predictions else _old_output(predictions, fmt))  # JSON: "[]"


def test_text_rows_never_print_a_p_short_of_certainty_as_1_or_0() -> None:
    """P = 0.99997 printed as 1.0000 and 0.00003 as 0.0000: a clinician reads certainty. The text rows follow
    `errors.decimals`, as the report and the page; CSV and JSON keep the full number for machines."""
    rows = [Prediction("a.jpeg", 0.99997, "PNEUMONIA", 0.5), Prediction("b.jpeg", 3e-05, "NORMAL", 0.5),
            Prediction("c.jpeg", 0.25, "NORMAL", 0.5)]
    text = PredictionWriter("text").chunk(rows)
    assert [line.split()[1] for line in text.splitlines()] == \
        ["P(pneumonia)=0.99997", "P(pneumonia)=3e-05", "P(pneumonia)=0.2500"]
    table = list(csv.DictReader(io.StringIO(PredictionWriter("csv").chunk(rows))))
    assert [float(row["probability"]) for row in table] == [0.99997, 3e-05, 0.25]


def test_quiet_hides_the_notes_but_not_the_warnings_nor_the_errors(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # `predict --quiet` hid the progress bar alone: the threshold note and the borderline note still printed
    from tests.conftest import interval_scores, with_scores

    films = [film for name in ("NORMAL", "PNEUMONIA") for film in sorted((tiny_data / "train" / name).iterdir())[:2]]
    probs = [p.probability for p in Predictor(tiny_run, backend="torch").predict_files(films)]
    low, high = min(probs) - 0.005, max(probs) + 0.005  # every film within the threshold's interval
    model = with_scores(tiny_run, tmp_path / "model.safetensors", *interval_scores(low, high))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    argv = ["predict", "--backend", "torch", "--model", str(model), *map(str, films), str(broken)]
    assert main(argv) == 1
    loud = capsys.readouterr()
    notes = [line for line in loud.err.splitlines() if line.startswith("pneumoscan: note: ")]
    assert [note.split()[2] for note in notes] == ["PNEUMONIA", "borderline"]  # what --quiet is to hide
    assert main(argv + ["--quiet"]) == 1
    quiet = capsys.readouterr()
    assert quiet.out == loud.out
    assert quiet.err.splitlines() == [line for line in loud.err.splitlines() if line not in notes]
    assert any("no chest X-ray guard" in line for line in quiet.err.splitlines())  # a warning stays
    assert any(line.startswith(f"pneumoscan: error: {broken}") for line in quiet.err.splitlines())  # an error too


def test_a_newline_in_a_file_name_stays_within_its_line_and_the_name_stays_distinct(
        sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A name holding a newline split its text row in two (CSV and JSON quote it), and its stderr lines too; or, in
    an error, became a space, naming 'c d.png' instead. Each is one line, the newline escaped as `\\n`."""
    film = sorted((sample_dir / "train" / "NORMAL").iterdir())[0]
    folder = tmp_path / "odd"
    folder.mkdir()
    shutil.copy(film, folder / "a\nb.jpeg")
    shutil.copy(film, folder / "a b.jpeg")
    (folder / "c\nd.png").write_bytes(b"not an image")
    (folder / "e\nf.png").write_bytes(blank_image())
    (tmp_path / "empty\nfolder").mkdir()
    (tmp_path / "list\n.csv").write_text("path,label\n")
    args = [str(folder), str(tmp_path / "missing\n.png"), str(tmp_path / "empty\nfolder"), str(tmp_path / "list\n.csv")]
    assert main(["predict", *args, "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert [line.split()[-1] for line in out.splitlines()] == [f"{folder}/a\\nb.jpeg", "b.jpeg"]  # a, then "a b"
    assert out.splitlines()[1].endswith(f"{folder}/a b.jpeg")
    lines = per_film_lines(err)
    assert [line.split(": ")[2] for line in lines] == [  # the refusal, then the errors in order
        f"{folder}/e\\nf.png", f"{folder}/c\\nd.png", f"{tmp_path}/missing\\n.png", f"{tmp_path}/empty\\nfolder",
        f"{tmp_path}/list\\n.csv"]
    assert f"--data $'{tmp_path}/list\\n.csv'`" in lines[4]  # the command to paste, in bash's quoting
