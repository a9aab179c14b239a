"""`pneumoscan predict`'s output, written chunk by chunk as the predictions come: text lines, CSV or a JSON array.

A complete run writes the very bytes the whole list would have given. An interrupted one (Ctrl+C, a crash) leaves
the rows of every finished chunk: whole lines of text or CSV, and a JSON array without its closing `]`."""
from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from pneumoscan.errors import decimals, one_name
from pneumoscan.progress import progress_bar

if TYPE_CHECKING:
    from pneumoscan.inference.prediction import Prediction
    from pneumoscan.inference.predictor import Predictor


class PredictionWriter:
    """The text of each chunk of predictions in one format ("text", "csv" or "json"), then of the end."""

    def __init__(self, fmt: str) -> None:
        if fmt not in ("text", "csv", "json"):
            raise ValueError(f"unknown format {fmt!r}")
        self.fmt = fmt
        self.rows = 0

    def chunk(self, predictions: Sequence["Prediction"]) -> str:
        """What to write for these predictions, following those of the earlier chunks."""
        rows = [p.to_dict() for p in predictions]
        first, self.rows = self.rows == 0, self.rows + len(rows)
        if self.fmt == "text":
            return "".join(f"{p.label:<10} P(pneumonia)={decimals(p.probability, 4)}  {'borderline  ' if p.borderline else ''}"
                           f"{'too-small  ' if p.size_warning else ''}{one_name(p.path)}\n"
                           for p in predictions if p.error is None and p.in_distribution is not False)
        if not rows:
            return ""
        if self.fmt == "csv":
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=list(rows[0]))
            if first:
                writer.writeheader()
            writer.writerows(rows)
            return out.getvalue()
        # each row as json.dumps(all rows, indent=2) sets it in the array; the closing "\n]" waits for the end
        items = [json.dumps([row], indent=2)[2:-2] for row in rows]
        return ("[\n" if first else ",\n") + ",\n".join(items)

    def end(self) -> str:
        """What closes the output once every chunk is written."""
        if self.fmt != "json":
            return ""
        return "\n]\n" if self.rows else "[]\n"


def problems(predictions: Sequence["Prediction"]) -> list[str]:
    """The stderr lines for inputs that got no prediction, one each: refused by the guard, then unreadable."""
    return ([f"pneumoscan: warning: {one_name(p.path)}: {p.ood_reason}; no prediction made" for p in predictions
             if p.in_distribution is False]
            + [f"pneumoscan: error: {p.error}" for p in predictions if p.error])


def size_warnings(predictions: Sequence["Prediction"]) -> list[str]:
    """The stderr lines for films too small to read reliably (thumbnails), one each: they are predicted all the
    same (or refused by the guard), so these lines do not make the run fail."""
    return [f"pneumoscan: warning: {one_name(p.path)}: {p.size_warning}" for p in predictions if p.size_warning]


def borderline_note(predictor: "Predictor", borderline: int, predicted: int) -> str | None:
    """The stderr line saying what `borderline` means, with the interval, when some of the `predicted` films are."""
    interval = predictor.threshold_ci95
    if not borderline or interval is None:
        return None
    films = "this site's films" if predictor.operating_point()["chosen_on"] == "local" else "the validation films"
    return (f"pneumoscan: note: borderline films: {borderline} of {predicted}, P within {decimals(interval[0], 4)} to "
            f"{decimals(interval[1], 4)} (the 95 % bootstrap interval of the threshold {decimals(predictor.threshold, 4)} on {films} it "
            f"was chosen on); their label stands, but a threshold re-chosen on a plausible resample of those films "
            f"would give the other one")


def stream_predictions(predictor: "Predictor", files: Sequence[tuple[Path, str | None]], fmt: str, *,
                       progress: bool = True, notes: bool = True) -> bool:
    """Predict `files` (from `input_files`) chunk by chunk, writing each chunk's rows to stdout (flushed) and its
    problems to stderr as soon as it is done; a progress bar on stderr when `progress` and stderr is a terminal;
    in text, with `notes`, a last stderr line saying what borderline means when some film is. Returns whether every
    input got a prediction."""
    writer = PredictionWriter(fmt)
    complete = True
    borderline = predicted = 0
    with progress_bar(total=len(files), desc="predict", unit="img", progress=progress) as bar:
        for chunk in predictor.predict_chunks(files):
            text, lines = writer.chunk(chunk), problems(chunk)
            with tqdm.external_write_mode(file=sys.stdout):  # the bar makes way when stdout is the terminal too
                sys.stdout.write(text)  # in one write, which Ctrl+C does not cut when stdout is a file
                sys.stdout.flush()
            for line in size_warnings(chunk) + lines:
                bar.write(line, file=sys.stderr)
            complete = complete and not lines
            borderline += sum(bool(p.borderline) for p in chunk)
            predicted += sum(p.probability is not None for p in chunk)
            bar.update(len(chunk))
    sys.stdout.write(writer.end())
    sys.stdout.flush()
    note = borderline_note(predictor, borderline, predicted) if fmt == "text" and notes else None  # CSV, JSON: a column
    if note:
        print(note, file=sys.stderr)
    return complete
