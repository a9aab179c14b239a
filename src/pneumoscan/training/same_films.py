"""Which films runs were validated on, named so that one data set kept in two places names them alike, by content, for
`compare`'s note and `ensemble`'s check of a shared validation split; when a film cannot be read now, `compare` matches
the films by their names inside each run's data and `ensemble` refuses."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# a run's training record (its model file's `training`), its run folder, the films it was validated on and their labels
RunFilms = tuple[dict[str, Any], Path, Sequence[Path], Sequence[int]]
# a film as runs are matched by: its label, and its content (or its path when some film cannot be read)
FilmKey = tuple[int, str]


def film_keys(runs: Sequence[RunFilms]) -> tuple[list[list[FilmKey]], list[tuple[Path, Path]]]:
    """Each run's films named by their label and content (`file_fingerprint`, the SHA-256 of their bytes): a film
    reached through another `--data` spelling, or in a copy of the data set elsewhere, is the same film, and another
    image under the same name, or the same image under another label, is not. When any of them cannot be read now (a
    copy that is gone), every run's films are named by their label and path inside the data the run was trained on
    (`data_keys`) instead, rather than count an unread film as another; with the films that could not be read, each
    with its run folder (none when named by content)."""
    from pneumoscan.data.fingerprint import fingerprints

    marks = [fingerprints(paths) for _, _, paths, _ in runs]
    unread = [(Path(run_dir), Path(path)) for (_, run_dir, paths, _), run_marks in zip(runs, marks)
              for path, mark in zip(paths, run_marks) if not mark]
    if unread:
        marks = [data_keys(training, run_dir, paths) for training, run_dir, paths, _ in runs]
    return [list(zip(map(int, labels), run_marks)) for (*_, labels), run_marks in zip(runs, marks)], unread


def data_keys(training: dict[str, Any], run_dir: Path, paths: Sequence[Path]) -> list[str]:
    """Each film of `paths` as a path inside the data the run (`training`, `run_dir`) was trained on (`data_places`),
    else as an absolute path: runs trained on one data set kept in two places name the same films alike."""
    from pneumoscan.training.config import data_places, data_record

    roots = [os.path.abspath(root) for root in data_places(*data_record(training, run_dir))]
    keys = []
    for path in map(os.path.abspath, paths):
        root = next((root for root in roots if path.startswith(root + os.sep)), None)
        keys.append(os.path.relpath(path, root) if root else path)
    return keys
