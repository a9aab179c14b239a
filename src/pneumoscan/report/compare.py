"""`pneumoscan compare RUN_DIR...`: one table (HTML, CSV, JSON) and overlaid ROC curves across runs."""
from __future__ import annotations

import csv
import functools
import json
import math
import operator
import os
import textwrap
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from pneumoscan import __version__
from pneumoscan.errors import InputError, warn, words
from pneumoscan.report import figures as figs
from pneumoscan.report import html as h
from pneumoscan.outputs import check_companion, check_output, recover_interrupted
from pneumoscan.report.build import (Figures, check_out_of_data_used, files_folder, guard_refusals, init_text,
                                     recipe_text, refusals_html, seen_html, write_report)
from pneumoscan.report.run import RunInfo, load_run, run_folder
from pneumoscan.report.scores import Scores, run_scores
from pneumoscan.training.same_films import FilmKey

# the figures table of the page (HEADERS), then what the page's recipe table shows (RECIPE_HEADERS)
# each run's ROC AUC minus the first run's on the films both were scored on, by DeLong's paired test (`paired_auc`)
# (and the images both hold under different labels, left out: `relabelled`)
PAIRED_COLUMNS = ("auc_diff_vs_first", "auc_diff_ci_low", "auc_diff_ci_high", "auc_diff_p", "auc_diff_films",
                  "auc_diff_relabelled")
PAIRED_HEADERS = ("AUC minus first run's", "difference 95% CI low", "difference 95% CI high", "p (DeLong)",
                  "paired images", "images under the other label (left out)")
FIGURE_COLUMNS = ("run", "model", "params", "image_size", "loss", "accuracy", "precision", "recall", "specificity", "f1",
                  "roc_auc", "roc_auc_ci_low", "roc_auc_ci_high", *PAIRED_COLUMNS, "threshold", "n", "train_seconds")
HEADERS = ("run", "model", "params", "input (px)", "loss (BCE)", "accuracy", "precision", "recall", "specificity", "F1",
           "ROC AUC", "AUC 95% CI low", "AUC 95% CI high", *PAIRED_HEADERS, "threshold", "images", "train time (s)")
RECIPE_COLUMNS = ("tta", "init", "recipe")
RECIPE_HEADERS = ("run", "test-time augmentation", "initial weights", "recipe")
COLUMNS = FIGURE_COLUMNS + RECIPE_COLUMNS  # of the CSV and JSON
# the tables earlier versions wrote (without the input size and recipe; without the paired AUC test; without its
# relabelled images), which compare replaces as its own
EARLIER_COLUMNS = (("run", "model", "params", "loss", "accuracy", "precision", "recall", "specificity", "f1", "roc_auc",
                    "roc_auc_ci_low", "roc_auc_ci_high", "threshold", "n", "train_seconds"),
                   tuple(c for c in COLUMNS if c not in PAIRED_COLUMNS),
                   tuple(c for c in COLUMNS if c != "auc_diff_relabelled"))


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Short unique names for run folders: the folder name, with parents added until they differ."""
    depth = 1
    while True:
        labels = ["/".join(p.resolve().parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels) or depth >= max(len(p.resolve().parts) for p in paths):
            return labels
        depth += 1


def input_sizes(run: RunInfo) -> int | list[int]:
    """The input size of the run's model (px); of an ensemble whose members take other sizes, each member's, in their
    order ([32, 48]; the table and CSV show '32/48'): the ensemble's own is only its largest member's, which the others
    resize from."""
    members = run.meta.model_config.get("members") if run.meta.model_name == "ensemble" else None
    sizes = [int(member["image_size"]) for member in members or [] if isinstance(member, dict) and "image_size" in member]
    if len(set(sizes)) > 1:
        return sizes
    return run.meta.image_size


def _shown(value: Any) -> Any:
    """A row's value as a table cell or CSV field shows it: a list of sizes as '32/48'."""
    return "/".join(map(str, value)) if isinstance(value, list) else value


def comparison_row(label: str, run: RunInfo, scores: Scores) -> dict[str, Any]:
    """The table row of one run: metrics at its operating threshold on `scores`, with what tells runs of one model
    apart (its input size, test-time augmentation, initial weights and training recipe, as `report` says them)."""
    from pneumoscan.evaluation.metrics import log_loss

    s = scores.summary
    return {
        "run": label, "model": run.meta.model_name, "params": run.parameter_count(), "image_size": input_sizes(run),
        "loss": log_loss(scores.labels, scores.probs),
        **{k: s[k]["value"] for k in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")},
        "roc_auc_ci_low": s["roc_auc"]["ci95"][0], "roc_auc_ci_high": s["roc_auc"]["ci95"][1],
        "threshold": scores.threshold, "n": s["n"], "train_seconds": run.train_seconds,
        "tta": run.meta.tta, "init": init_text(run), "recipe": recipe_text(run),
    }


PAIRED_NOTE = ("AUC minus first run's: each run's ROC AUC minus the first run's on the images both were scored on, "
               "with its 95% interval and two-sided p-value by DeLong's paired test (the same images score both, "
               "so their AUCs are correlated; each patient's images one cluster when their patients are known), "
               "not adjusted for comparing several runs; list the reference run first.")


def paired_auc(first: Scores, other: Scores,
               keys: tuple[Sequence[Any], Sequence[Any]] | None = None) -> dict[str, Any]:
    """`PAIRED_COLUMNS` of `other` against `first`: the difference of their ROC AUCs (other's minus first's) on the
    films both were scored on (matched by `keys`, each film's of either run, such as `film_keys`' label and content;
    else by path, with the same label), its 95 % interval and two-sided p-value by DeLong's paired test, each
    patient one cluster (`delong_auc_difference`), two films one patient's when either run keys them so
    (`shared_patients`); NaN when those films lack two of a class; with the films both hold under different
    labels, which it leaves out (`relabelled`)."""
    from pneumoscan.evaluation.metrics import UndefinedMetricWarning, delong_auc_difference

    if keys is None:
        keys = tuple([(int(y), str(Path(p).resolve())) for p, y in zip(run.paths, run.labels)]
                     for run in (first, other))
    where = {key: i for i, key in enumerate(keys[0])}
    pairs = [(where[key], j) for j, key in enumerate(keys[1]) if key in where]
    mine, theirs = np.array([i for i, _ in pairs], dtype=np.intp), np.array([j for _, j in pairs], dtype=np.intp)
    groups = shared_patients([None if first.groups is None else [first.groups[i] for i in mine],
                              None if other.groups is None else [other.groups[j] for j in theirs]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # shown as 'n/a', as the table's undefined figures
        test = delong_auc_difference(first.labels[mine], other.probs[theirs], first.probs[mine], groups=groups)
    return dict(zip(PAIRED_COLUMNS, (test.difference, *test.ci95, test.p_value, len(pairs),
                                     relabelled(keys[0], keys[1]))))


def shared_patients(keyings: Sequence[Sequence[str | None] | None]) -> list[str] | None:
    """One patient key a film from several keyings of the same films (each a key per film, None a film of no known
    patient; a keying None: none known): films are one patient's when any keying joins them, directly or through
    other films. None when no keying is known."""
    known = [keys for keys in keyings if keys is not None]
    if not known:
        return None
    root = list(range(len(known[0])))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for keys in known:
        seen: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key is not None:
                root[find(i)] = find(seen.setdefault(key, i))
    return [f"patient {find(i)}" for i in range(len(root))]


def _roc_curve(label: str, scores: Scores) -> figs.Curve | None:
    return roc_curve_for(label, scores.labels, scores.probs, scores.summary)


def roc_curve_for(label: str, labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray,
                  s: dict[str, Any]) -> figs.Curve | None:
    """The ROC curve of scored films, named `label` with its AUC interval from their summary `s` (the metrics of
    `evaluate`) and marked at its operating point; None unless both classes were scored."""
    from pneumoscan.evaluation.metrics import roc_curve

    if not s["n_positive"] or not s["n_negative"]:
        return None
    fpr, tpr, _ = roc_curve(np.asarray(labels), np.asarray(probs, dtype=np.float64))
    auc = s["roc_auc"]
    name = f"{figs.printable(label)}: AUC {h.fmt(auc['value'])} [{h.fmt(auc['ci95'][0])}, {h.fmt(auc['ci95'][1])}]"
    return figs.Curve(name, fpr, tpr, (1 - s["specificity"]["value"], s["recall"]["value"]))


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as the table's JSON holds them: an undefined figure (NaN) is None."""
    return [{k: _finite(v) for k, v in row.items()} for row in rows]


def _table_files(rows: list[dict[str, Any]], out: Path) -> dict[Path, Callable[[Path], object]]:
    """The table's CSV and JSON files next to `out` (NaN written as empty / null), each with its writer."""
    rows = table_rows(rows)
    csv_path, json_path = _table_paths(out)

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8", errors="backslashreplace") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
            writer.writeheader()
            writer.writerows({k: _shown(v) for k, v in row.items()} for row in rows)

    return {csv_path: write_csv, json_path: lambda tmp: tmp.write_text(json.dumps(rows, indent=2), encoding="utf-8")}


def _table_paths(out: Path) -> tuple[Path, Path]:
    return out.with_suffix(".csv"), out.with_suffix(".json")


def _earlier_table(path: Path) -> bool:
    """Whether PATH is a comparison table this command wrote, now or as an earlier version did (`EARLIER_COLUMNS`):
    its CSV header, or its JSON rows."""
    schemas = (COLUMNS, *EARLIER_COLUMNS)
    try:
        if path.suffix == ".csv":
            with path.open(newline="", encoding="utf-8", errors="replace") as handle:
                return tuple(next(csv.reader(handle), ())) in schemas
        rows = json.loads(path.read_text(encoding="utf-8"))
        return (isinstance(rows, list) and bool(rows) and all(isinstance(r, dict) for r in rows)
                and any(all(set(r) == set(schema) for r in rows) for schema in schemas))
    except (OSError, ValueError):
        return False


def _check_tables(target: Path) -> None:
    """Refuse, before the work, to replace a CSV or JSON beside `target` that is not an earlier comparison table
    (a run's val_predictions.csv, the metrics of `evaluate --json`)."""
    for path in _table_paths(target):
        check_companion(path, target, folder=False)
        if path.exists() and not _earlier_table(path):
            raise InputError(f"{path}: exists and is not a comparison table, but {target.name} writes its table to a "
                             f"file of that name; choose another --out")


# a run, the films of --data it had seen, its guard's refusals as counted and as named, images
Screening = tuple[str, list[str], str, list[str], int]


def screening_row(label: str, scores: Scores) -> Screening | None:
    """What `evaluate` found about a run's images of --data: (run, the films it trained or validated on, the guard's
    refusals as `guard_refusals` says them and as `refused_by_guard` names them, images); None for a run's own
    validation predictions (not screened)."""
    summary = scores.summary
    if "seen_in_training" not in summary:
        return None
    return (label, list(summary["seen_in_training"]), guard_refusals(scores), list(summary["refused_by_guard"]),
            int(summary["n"]))


def screening_html(screening: Sequence[Screening]) -> tuple[str, str]:
    """A warning naming the runs scored on films they trained or validated on (their figures are in-sample; empty
    when none was) and the table of `screening_row`s, each run's films it had seen and its guard would refuse named
    under it (empty without --data)."""
    if not screening:
        return "", ""
    in_sample = [f"{run} ({len(seen)} of {n})" for run, seen, _, _, n in screening if seen]
    warning = (h.paragraph(f"Warning: runs scored on films they trained or validated on: {', '.join(in_sample)}; "
                           "their figures are in-sample and flatter them; compare on films none of them has seen.")
               if in_sample else "")
    rows = [[run, f"{len(seen)} of {n}", refused] for run, seen, refused, _, n in screening]
    table = h.table(["run", "films the model trained or validated on (in-sample)",
                     "images its out-of-distribution guard would refuse (scored anyway)"], rows)
    named = "".join(seen_html({"seen_in_training": seen}, run)
                    + refusals_html({"refused_by_guard": refusals}, f"{run}'s")
                    for run, seen, _, refusals, _ in screening)
    return warning, "<h3>Images of --data the runs had seen or would refuse</h3>" + table + named


def resampled_unit_of(summary: dict[str, Any]) -> str:
    """What the bootstrap of a run's figures resampled, for the comparison's caption: 'patients' (each with all of
    their films of a class: `evaluate` with the patients keyed as the run's training keyed them) or 'films'; with
    ', unreliable' when a class had fewer than `MIN_UNITS` of them."""
    from pneumoscan.evaluation.bootstrap import MIN_UNITS, too_few_units

    info = summary.get("intervals") or {}
    unit = "patients" if info.get("resampled") == "patients" else "films"
    return f"{unit}, unreliable (fewer than {MIN_UNITS} in a class)" if too_few_units(info) else unit


def resampled_caption(units: Sequence[tuple[str, str]]) -> str:
    """What each run's AUC interval resampled (`units`: run and `resampled_unit_of`), grouped: 'of films for every
    run', or 'of patients (each with all of their films of a class) for a, b; of films for c', as runs keyed
    differently (or a set-threshold copy beside plain runs without --data) resample differently."""
    grouped: dict[str, list[str]] = {}
    for run, unit in units:
        grouped.setdefault(unit, []).append(run)
    said = {unit: unit.replace("patients", "patients (each with all of their films of a class)", 1) for unit in grouped}
    if len(grouped) == 1:
        return f"of {said[units[0][1]]} for every run"
    return "; ".join(f"of {said[unit]} for {', '.join(runs)}" for unit, runs in grouped.items())


# a run as the comparison labels it, the run, and the films it was scored on, in its order, with their labels
ScoredFilms = tuple[str, RunInfo, list[Path], list[int]]


def film_keys(scored: Sequence[ScoredFilms]) -> tuple[list[list[FilmKey]], list[Path]]:
    """Each run's films named as `same_films.film_keys` names them, with the films that could not be read (each
    once, however many runs were validated on it)."""
    from pneumoscan.training.same_films import film_keys as keyed

    keys, unread = keyed([(run.meta.training, run.path, paths, labels) for _, run, paths, labels in scored])
    return keys, list(dict.fromkeys(film for _, film in unread))


def relabelled(first: Sequence[FilmKey], other: Sequence[FilmKey]) -> int:
    """How many films (by content, or by name: `film_keys`) both runs hold, each under one label, but under other
    labels: their keys differ, so the paired AUC test leaves them out. Content one run holds under both labels (the
    same image filed in both classes) is not counted."""
    def labels(keys: Sequence[FilmKey]) -> dict[str, set[int]]:
        found: dict[str, set[int]] = {}
        for label, film in keys:
            found.setdefault(film, set()).add(label)
        return found

    mine, theirs = labels(first), labels(other)
    return sum(1 for film, held in theirs.items()
               if film in mine and len(held) == len(mine[film]) == 1 and held != mine[film])


def validation_films_note(scored: Sequence[ScoredFilms],
                          films: tuple[list[list[FilmKey]], list[Path]] | None = None) -> str:
    """Whether the runs, each scored on its own validation predictions, were scored on the same films (`film_keys`):
    'All runs were scored on the same 31 validation films', or the runs whose films differ from the first run's, with
    how many of them all share and the split settings that differ (`_split_difference`, as `ensemble` names them);
    either saying so when films were matched by their names, as some could not be read (`films`: `film_keys(scored)`
    when already found)."""
    from pneumoscan.training.ensemble import _split_difference

    if len(scored) < 2:
        return ""
    keyed, unread = films or film_keys(scored)
    how = ""
    if unread:
        gone = (f"{unread[0]}" if len(unread) == 1 else f"{len(unread)} of the films, {unread[0]} among them,")
        how = f" (matched by their names inside each run's data, as {gone} cannot be read now)"
    films = [Counter(keys) for keys in keyed]  # a film copied twice into a split counts twice
    (first_label, first_run, *_), first = scored[0], keyed[0]
    if all(counted == films[0] for counted in films[1:]):
        return f"All runs were scored on the same {len(first)} validation films{how}."
    shared = sum(functools.reduce(operator.and_, films).values())
    others, relabels = [], []
    for (label, run, *_), keys, counted in list(zip(scored, keyed, films))[1:]:
        if counted != films[0]:
            settings = _split_difference(run.path, first_run.path).strip().removeprefix("(").removesuffix(")")
            others.append(f"{label} ({len(keys)} films{', ' + settings if settings else ''})")
            moved = relabelled(first, keys)
            if moved:
                relabels.append(f"{moved} film{'s' if moved > 1 else ''} of {label}'s {'are' if moved > 1 else 'is'}"
                                f" in {first_label}'s under the other label")
    told = (f" The same image labelled differently: {'; '.join(relabels)}; the paired AUC test leaves such films out."
            if relabels else "")
    return (f"The runs were validated on different films{how}: {', '.join(others)} against {first_label} "
            f"({len(first)} films); {shared} films are in every run's, so the figures differ by their films "
            f"as well as by their models.{told}")


def comparison(run_dirs: Sequence[str | os.PathLike], data: str | os.PathLike | None = None, split: str | None = None,
               *, n_boot: int = 500, seed: int = 0, cache_dir: str | os.PathLike | None = None,
               progress: bool = True) -> tuple[list[dict[str, Any]], list[figs.Curve], str, list[Screening],
                                               list[tuple[str, str]], list[ScoredFilms],
                                               tuple[list[list[FilmKey]], list[Path]] | None]:
    """The runs' table rows (`COLUMNS`), their ROC curves (runs with both classes scored), what they were scored
    on (each run on `data` at its own operating threshold, else on its own validation predictions), with `data`
    each run's `screening_row`, what each run's bootstrap resampled (`resampled_unit_of`), the films each run
    was scored on (`ScoredFilms`) and, without `data`, those films named by `film_keys` (None with one run)."""
    from pneumoscan.evaluation.metrics import UndefinedMetricWarning

    paths = [run_folder(p) for p in run_dirs]  # read once, before the check: an empty iterator is not false
    if not paths:
        raise InputError(words("compare needs at least one RUN_DIR", "compare needs at least one run folder in `runs`"))
    twice = sorted({str(p) for p in paths if sum(q.resolve() == p.resolve() for q in paths) > 1})
    if twice:
        raise InputError(f"{', '.join(twice)}: given more than once; list each run once")
    runs = [load_run(p) for p in paths]
    rows, curves, screening, units, scored, runs_scores = [], [], [], [], [], []
    source = ""
    for label, run in zip(run_labels(paths), runs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", UndefinedMetricWarning)  # undefined metrics show as 'n/a' in the table
            scores = run_scores(run, data, split, n_boot=n_boot, seed=seed, cache_dir=cache_dir, progress=progress)
        for caught_warning in caught:  # each names its run: several runs' 'this model ...' would read alike
            warn(caught_warning.category(f"{run.path}: {caught_warning.message}"))
        source = scores.source if data is not None else "each run's own validation predictions"
        runs_scores.append(scores)
        row = {**comparison_row(label, run, scores), **dict.fromkeys(PAIRED_COLUMNS)}
        rows.append({column: row[column] for column in COLUMNS})
        units.append((label, resampled_unit_of(scores.summary)))
        # named (hashed) only for the note without --data
        scored.append((label, run, list(scores.paths), [int(y) for y in scores.labels]))
        screened = screening_row(label, scores)
        if screened is not None:
            screening.append(screened)
        curve = _roc_curve(label, scores)
        if curve is not None:
            curves.append(curve)
    # each on its own validation films, which the runs may hold in other places: matched as the note matches them
    films = film_keys(scored) if data is None and len(scored) > 1 else None
    for row, scores, keys in zip(rows[1:], runs_scores[1:], films[0][1:] if films else [None] * len(rows)):
        row.update(paired_auc(runs_scores[0], scores, (films[0][0], keys) if films else None))
    return rows, curves, source, screening, units, scored, films


def compare_runs(run_dirs: Sequence[str | os.PathLike], *, out: str | os.PathLike, data: str | os.PathLike | None = None,
                 split: str | None = None, n_boot: int = 500, seed: int = 0,
                 cache_dir: str | os.PathLike | None = None) -> Path:
    """Write `out` (HTML), `out`.csv, `out`.json and the ROC figure comparing runs, together (`write_report`), their
    AUC intervals from `n_boot` resamples drawn with `seed`; returns the HTML path."""
    if not run_dirs:
        raise InputError("compare needs at least one RUN_DIR")
    target = check_output(out, (".html", ".htm"), "the comparison (with its CSV and JSON next to it)")
    _check_tables(target)
    check_companion(files_folder(target), target, folder=True)
    recover_interrupted([target])  # an earlier comparison to `target` that a crash stopped among its renames
    paths = list(run_dirs)  # read once: an iterator is checked here and compared
    check_out_of_data_used(target, [run_folder(p) for p in paths], data)
    rows, curves, source, screening, units, scored, films = comparison(paths, data, split, n_boot=n_boot, seed=seed,
                                                                       cache_dir=cache_dir)
    csv_path, json_path = _table_paths(target)
    digits = [1 if c == "train_seconds" else 4 for c in FIGURE_COLUMNS]
    body = h.table(HEADERS, [[_shown(row[c]) for c in FIGURE_COLUMNS] for row in rows], digits=digits)
    recipes = "<h3>How each run was made</h3>" + h.table(
        RECIPE_HEADERS, [[row["run"], "on" if row["tta"] else "off", row["init"], row["recipe"]] for row in rows])
    note = (f"Scored on {source}, each run at its own stored operating threshold. Loss: binary cross-entropy of the "
            f"probabilities. {PAIRED_NOTE} The table is also in {csv_path.name} and {json_path.name}.")
    if data is None:
        note += (f" {validation_films_note(scored, films)} Training chose each run's kept epoch (and its threshold, unless "
                 "set-threshold chose it elsewhere) on its validation films, so these figures are optimistic; pass "
                 "--data DIR to compare on the same images, ones no run has seen.").replace("  ", " ")
    warning, screened = screening_html(screening)
    sections = [("table", "Runs", warning + h.paragraph(note, note=True) + body + recipes + screened)]
    pngs: dict[str, bytes] = {}
    if curves:
        title = "\n".join(["ROC curves", *textwrap.wrap(figs.printable(source), 48)])  # a long --data path fits
        pngs["roc"] = figs.to_png(figs.roc_curves(curves, title))
        sections.append(("roc", "ROC curves", h.figure(
            pngs["roc"], f"ROC curves of all runs on {source}",
            f"Circles: each run's operating point. Brackets: the 95% bootstrap interval of each AUC ({n_boot} "
            f"resamples within each class, seed {seed}) {resampled_caption(units)}.")))
    page = h.page("pneumoscan run comparison", f"{len(rows)} runs - {source}", sections,
                  f"pneumoscan {__version__} - generated {time.strftime('%Y-%m-%d %H:%M')}")
    return write_report(target, page, Figures(pngs), _table_files(rows, target))
