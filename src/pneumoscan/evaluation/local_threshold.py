"""Re-choose a model's operating threshold on a site's own labelled images, and save it with the model.

A threshold chosen on one population's validation images need not give the same recall and
specificity on another's (on the official test split, the shipped model flags about one normal film
in eight against 1.5 % on validation). The remedy a site controls is its own labelled films: score
them, pick the threshold that reaches the target recall there, and keep it in the model file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Collection

from pneumoscan.artifact import ARTIFACT_NAME, ArtifactMeta, default_model_path, save_artifact, stored_scores
from pneumoscan.data.cache import ImageSet, load_image_set
from pneumoscan.data.fingerprint import seen_in_training, training_film_fingerprints
from pneumoscan.data import layout
from pneumoscan.data.formats import IMAGE_SUFFIXES
from pneumoscan.data.labels import Sample
from pneumoscan.data.layout import check_out_of_data, evaluation_samples
from pneumoscan.data.patients import found_as_keyed, shared_text, uncounted_reason
from pneumoscan.errors import (InputError, decimals, first_names, one_name, option, raise_if_interrupted,
                               shell_word, warn, words)
from pneumoscan.evaluation.bootstrap import resampled_words, summarize
from pneumoscan.evaluation.evaluate import Evaluation, evaluate, key_choice, listed_under
from pneumoscan.evaluation.thresholds import check_target_recall, threshold_ci95, threshold_for_recall
from pneumoscan.inference.ood.guard import guard_beside, no_guard_fits
from pneumoscan.inference.predictor import Predictor
from pneumoscan.outputs import undone_on_failure
from pneumoscan.progress import write_warning
from pneumoscan.training.config import data_record

# Fewer films of a class than this and the chosen threshold is a coarse estimate: say so.
FEW_IMAGES = 50
SEEN_NAMED = 3  # films the refusal of films the model was trained on names (`evaluate --json` lists all)


@dataclass
class LocalThreshold:
    """The threshold chosen on local images, how sure it is, and what it changes there."""

    threshold: float
    interval: tuple[float, float]  # 95 % bootstrap interval of the threshold itself
    target_recall: float
    before: dict[str, Any]  # `summarize` of the local images at the model's previous threshold
    after: dict[str, Any]  # ... and at the new one
    out: Path
    guard_copied: bool
    skipped: list[str]  # unreadable files, one message each
    trained_on: str | None = None  # the `--data` the model was trained on (`TrainingData.shown`)
    fit_guard: str = ""  # the command that fits its guard (`ArtifactMeta.fit_guard_command`)
    no_guard_fits: str | None = None  # why none can be fitted to the model (`no_guard_fits`), else None
    onnx: Path | None = None  # the copy's ONNX export, written when the source model had a current one


# the names of another model format's file, or of a report's: no folder a user means to make
OTHER_FILE_SUFFIXES = (".onnx", ".pt", ".pth", ".ckpt", ".h5", ".keras", ".pb", ".json", ".csv", ".html")


def out_artifact_path(out: str | os.PathLike) -> Path:
    """`--out` as an artifact file: a `.safetensors` path as given, anything else a folder holding model.safetensors
    but a name of an image or of another file (`OTHER_FILE_SUFFIXES`), which is refused."""
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return path
    if suffix and suffix in IMAGE_SUFFIXES:
        raise InputError(f"{path}: looks like an image file; give --out a folder or a .safetensors file for the model")
    if suffix in OTHER_FILE_SUFFIXES:  # `--out site.onnx` made a folder site.onnx/ holding model.safetensors
        raise InputError(f"{path}: --out names the new model, written as safetensors (its ONNX export, when made, "
                         f"goes beside it), not a {suffix} file; give a folder or a .safetensors file, e.g. "
                         f"--out {shell_word(path.with_suffix('.safetensors'))}")
    return path / ARTIFACT_NAME


def _check_out(source: Path, out: Path) -> None:
    if out.resolve() == source.resolve():
        raise InputError(f"{out}: is the model being re-thresholded; write the new model to another --out")
    if out.resolve() == default_model_path().resolve():
        raise InputError(f"{out}: is the model shipped with pneumoscan; write to your own --out and pass it as --model")
    if out.exists():
        raise InputError(f"{out}: already exists; choose a new --out or delete the file first")
    if out.with_suffix(".onnx").exists():  # the copy's own export would replace it
        raise InputError(f"{out.with_suffix('.onnx')}: already exists, where the copy's ONNX export goes; choose a new "
                         f"--out or delete the file first")


def _check_unseen(meta: ArtifactMeta, data: str | os.PathLike, found: tuple[str, list[Sample]], size: int,
                  cache_dir: str | os.PathLike | None, trained_on: Path | None) -> ImageSet | None:
    """InputError when `data`'s chosen split (`found`: its name and films) is the folder the model was trained on
    (`trained_on`, as `ArtifactMeta.placed_data` found it), or holds films it was trained or validated
    on (copies, or re-encoded or resized; as far as its artifact records them). Returns the films as decoded at the
    model's `size` for their film fingerprints, for the scoring to take on (None when the artifact records only the
    files' bytes, so nothing was decoded)."""
    name, samples = found
    if trained_on is not None and trained_on.resolve() == Path(data).resolve() and name in ("train", "all"):
        raise InputError(f"{data}: {'its ' + name + '/ split' if name == 'train' else 'these images'} trained this model, "
                         f"which scores them better than new films; choose the threshold on labelled films it has not "
                         f"seen (another folder)")
    images = None
    if len(training_film_fingerprints(meta.training)):
        images = load_image_set(samples, size, cache_dir, desc=f"decoding {name}", film_marks=True)
        seen = seen_in_training([s.path for s in images.samples], meta.training, images.images, cache_dir,
                                images.film_marks)
    else:  # an older model records only the bytes: nothing to decode
        seen = seen_in_training([s.path for s in samples], meta.training)
    if seen:
        one = len(seen) == 1
        names = first_names([one_name(str(path)) for path in seen], SEEN_NAMED)
        same = words("the same --model, --data and --split", "the same model, data and split")
        rest = f"; {listed_under()} seen_in_training, given {same}" if len(seen) > SEEN_NAMED else ""
        raise InputError(f"{data}: {len(seen)} of {len(samples)} films {'is one' if one else 'are ones'} this model "
                         f"was trained or validated on ({'a copy' if one else 'copies'}, or the same film re-encoded "
                         f"or resized: {names}{rest}), which it scores better than new ones; remove "
                         f"{'it' if one else 'them'} and choose the threshold on films it has not seen")
    return images


def choose_local_threshold(
    evaluation: Evaluation, target_recall: float, *, n_boot: int = 1000, seed: int = 0
) -> tuple[float, tuple[float, float], dict[str, Any]]:
    """Threshold for `target_recall` on the evaluated images, its bootstrap interval, and the summary there."""
    labels, probs = evaluation.images.labels, evaluation.probs
    threshold = threshold_for_recall(labels, probs, target_recall)
    interval = threshold_ci95(labels, probs, target_recall, n_boot=n_boot, seed=seed, groups=evaluation.patients)
    return threshold, interval, summarize(labels, probs, threshold, n_boot=n_boot, seed=seed,
                                          groups=evaluation.patients)


def threshold_films(data: str | os.PathLike, split: str | None, unopened: Collection[str] = ()) -> layout.ScoredSplit:
    """The split of `data` to choose the threshold on, and its films: `split`, else the only one (a folder of class
    folders, a manifest without a split column); an InputError naming --split when `data` holds several, as the
    default `evaluate` takes, test/, holds the films results are reported on. `unopened`: splits whose files are
    listed by their names alone, none opened, unless scored (`evaluation_samples`)."""
    if split is not None:
        return evaluation_samples(data, split, unopened)
    found = layout.discover(data, unopened)  # never empty: it raises instead
    if len(found) > 1:
        names = ", ".join(found)
        which = (f"{option('split', 'val')}, the films set aside for it" if "val" in found else
                 f"{option('split')} with films set aside for it, not those you report results on")
        raise InputError(f"{data}: holds the splits {names}; name the films to choose the threshold on: {which}")
    name = next(iter(found))
    if name in unopened:  # the only split, scored: its files are opened
        found = layout.discover(data)
    return layout.ScoredSplit(name, found[name], found)


def set_threshold(
    model: str | os.PathLike | None,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str | None = None,
    target_recall: float | None = None,
    backend: str = "auto",
    n_boot: int = 1000,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> LocalThreshold:
    """Score the labelled images of `data`, choose the threshold for `target_recall` on them, write a copy of
    the model with it to `out`. The weights are unchanged, so the model's guard (if any) is copied along."""
    check_target_recall(target_recall)
    predictor = Predictor(model, backend=backend)
    meta = predictor.meta
    target = target_recall if target_recall is not None else (meta.target_recall or 0.95)
    path = out_artifact_path(out)
    _check_out(predictor.path, path)
    check_out_of_data(out, data, path.parent)
    # scanned once, for the check and the scoring (twice when test/'s files, unless scored, are opened: only when the
    # keys of the other films may need their headers)
    found = found_as_keyed(lambda unopened: threshold_films(data, split, unopened), key_choice(meta.training))
    placed = meta.placed_data(predictor.path.parent)  # read once: a record reads each ensemble member's config
    decoded = _check_unseen(meta, data, found, predictor.size, cache_dir, placed.folder)
    # on a failure (a full disk, Ctrl+C) the model file (refused above if already there), its guard and the folders
    # made for them are removed: nothing is left that was not there before
    with undone_on_failure(path.parent, [path, guard_beside(path)]):
        path.parent.mkdir(parents=True, exist_ok=True)  # a bad --out fails before the scoring, not after
        evaluation = evaluate(predictor, data, split, n_boot=n_boot, seed=seed, cache_dir=cache_dir,
                              checked_unseen=True, decoded=decoded, found=found)  # by _check_unseen above
        threshold, interval, after = choose_local_threshold(evaluation, target, n_boot=n_boot, seed=seed)
        labels, probs = evaluation.images.labels, evaluation.probs
        source = {
            # --data as typed, and where it is (`chosen_on_place`: found from any folder, as a run's training data is)
            "data": str(data), "data_resolved": str(Path(data).resolve()), "split": evaluation.split,
            "n_normal": after["n_negative"], "n_pneumonia": after["n_positive"], "previous_threshold": meta.threshold,
            "previous_target_recall": meta.target_recall, "model": str(predictor.path),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "metrics": after,
            # a threshold chosen on films of training patients is optimistic (evaluate warned of them)
            "patients_in_training": evaluation.summary["patients_in_training"],
        }
        new_meta = replace(meta, threshold=threshold, target_recall=target, threshold_source=source,
                           val_scores=stored_scores(labels, probs, evaluation.patients))
        save_artifact(path, predictor.model, new_meta)
        if predictor.guard is not None:  # loaded, and checked to be the source's, by the Predictor
            predictor.guard.save_for(path)
    onnx = _export_like_source(predictor, path)  # optional: its failure must not take the whole copy with it
    return LocalThreshold(threshold, interval, target, evaluation.summary, after, path, predictor.guard is not None,
                          list(evaluation.images.skipped), placed.shown, meta.fit_guard_command(path, placed=placed),
                          no_guard_fits(predictor.model), onnx)


def _export_like_source(predictor: Predictor, path: Path) -> Path | None:
    """The copy at `path` exported beside it (`<path>.onnx`) and checked against PyTorch, as `pneumoscan export` does,
    when the source model had a current export beside it: the copy's new SHA-256 makes the source's stale, and
    without its own every command would import torch and export it in memory. None when the source had none, or
    when the export fails (its check, a full disk: said as a warning with the export command). Ctrl+C removes the
    export begun (`_check_out` refused one already there), keeps the copy and is raised on."""
    from pneumoscan.inference.onnx_backend import export_on_file

    try:
        if export_on_file(predictor.path, predictor.meta, artifact_sha256=predictor.sha256) is None:
            return None
    except ImportError as err:  # no ONNX Runtime: no export to keep up
        raise_if_interrupted(err)
        return None
    except InputError:  # an unreadable export: none to keep up
        return None
    from pneumoscan.export.onnx import ExportError, export_artifact

    onnx = path.with_suffix(".onnx")
    try:
        return export_artifact(path, onnx).path
    except KeyboardInterrupt:
        onnx.unlink(missing_ok=True)
        raise
    except Exception as err:  # the copy is whole without it: say so, and how to export it
        onnx.unlink(missing_ok=True)
        reason = str(err) if isinstance(err, (ExportError, InputError)) else f"{type(err).__name__}: {err}"
        warn(f"{path}: not exported to ONNX ({reason}); {export_command(path)}")
        return None


def export_command(path: Path) -> str:
    """The command that exports the model at `path` beside it, where predict and serve pick it up."""
    return f"pneumoscan export --model {shell_word(path)} --out {shell_word(path.with_suffix('.onnx'))}"


def chosen_on_place(source: dict[str, Any]) -> Path | None:
    """Where the films set-threshold chose a threshold on were (`threshold_source`): the absolute path its --data
    resolved to (`data_resolved`), else --data as typed when absolute; None when only a relative --data is recorded
    (a copy made before `data_resolved` was: relative to the folder set-threshold ran in, which it does not say)."""
    if isinstance(source.get("data_resolved"), str) and source["data_resolved"]:
        return Path(source["data_resolved"])
    typed = source.get("data")
    return Path(typed) if isinstance(typed, str) and typed and Path(typed).is_absolute() else None


def source_notes(meta: ArtifactMeta, data: str | os.PathLike, split: str) -> list[tuple[str, str]]:
    """For `evaluate` with a stored threshold from `set-threshold`: where it was chosen, and a warning when
    `data`/`split` are those very films (then the figures are in-sample). (kind, text) pairs, kind note|warning."""
    source = meta.threshold_source
    if not source.get("data"):
        return []
    n = source["n_normal"] + source["n_pneumonia"]
    notes = [("note", f"the stored threshold was chosen by set-threshold on {source['data']} ({source['split']}, "
                      f"{n} images, {source['date']})")]
    shared = _chosen_on_patients(meta, n)
    if shared:
        notes.append(("note", f"patients of those films also in the training data: {shared}"))
    chosen_on = chosen_on_place(source) or Path(source["data"])  # an older copy's relative --data: as before
    if chosen_on.resolve() == Path(data).resolve() and source["split"] == split:
        notes.append(("warning", "these are the films the threshold was chosen on, so recall and specificity here are "
                                 "in-sample and flatter the model; evaluate on other films"))
    return notes


def _chosen_on_patients(meta: ArtifactMeta, n: int) -> str | None:
    """The patients of the `n` films set-threshold chose the stored threshold on who also have films in the training
    data, as it counted them (`threshold_source.patients_in_training`, `shared_text`); None when it did not record
    them (an older version, or an edited file)."""
    source = meta.threshold_source
    if "patients_in_training" not in source:
        return None
    shared = source["patients_in_training"]
    if shared is None:  # why is not recorded: the data was not found where set-threshold ran, or there is none
        data = data_record(meta.training)[0].get("data")
        return shared_text(None, n, uncounted_reason(None, meta.training) if not data else
                           "the data the model was trained on was not found where set-threshold ran")
    if not isinstance(shared, dict) or not {"patients", "films"} <= shared.keys():
        return None
    return shared_text(shared, n, uncounted_reason(shared))


def warn_if_threshold_chosen_here(meta: ArtifactMeta, data: str | os.PathLike, split: str) -> None:
    """Warn, as `evaluate` does, when `data`/`split` are the films `set-threshold` chose the stored threshold on."""
    for kind, text in source_notes(meta, data, split):
        if kind == "warning":
            warn(text)


def format_local_threshold(result: LocalThreshold) -> str:
    """What the new threshold changes on the local images, for the terminal."""
    before, after = result.before, result.after
    lo, hi = result.interval
    lines = [
        f"{after['n']} labelled images ({after['n_negative']} NORMAL, {after['n_positive']} PNEUMONIA)",
        f"threshold for recall {result.target_recall:g}: {decimals(result.threshold, 4)} (95% bootstrap interval "
        f"{decimals(lo, 4)} to {decimals(hi, 4)}, {resampled_words(after['intervals'])}); it was "
        f"{decimals(before['threshold'], 4)}",
        f"  {'':<12}{'before':>8}{'after':>8}",
    ]
    # precision and npv: how far a PNEUMONIA call, and a NORMAL one, can be trusted at these films' class mix
    for key in ("recall", "specificity", "precision", "npv", "accuracy"):
        lines.append(f"  {key:<12} {decimals(before[key]['value'], 4):>7} {decimals(after[key]['value'], 4):>7}")
    (tn, fp), (fn, tp) = after["confusion_matrix"]["matrix"]
    lines.append(f"  after: TN {tn}  FP {fp}  FN {fn}  TP {tp}")
    lines.append("These figures are measured on the images the threshold was chosen on; on new patients expect "
                 "recall and specificity to scatter around them (check with `pneumoscan evaluate` on other films).")
    lines.append(f"model: {result.out}" + (" (with its chest X-ray guard)" if result.guard_copied else "")
                 + (f"; its ONNX export: {result.onnx}" if result.onnx else ""))
    lines.append(f"use it: pneumoscan predict --model {shell_word(result.out)} IMAGE, or pneumoscan serve --model {shell_word(result.out)}"
                 + ("" if result.onnx else f"; export it first, so they load without torch: {export_command(result.out)}"))
    return "\n".join(lines)


def few_images_warning(result: LocalThreshold) -> str | None:
    """A warning when either class has fewer than FEW_IMAGES films, else None."""
    n_pos, n_neg = result.after["n_positive"], result.after["n_negative"]
    if min(n_pos, n_neg) >= FEW_IMAGES:
        return None
    return (f"only {n_pos} PNEUMONIA and {n_neg} NORMAL images: recall moves in steps of {1 / n_pos:.1%} here, so the "
            f"threshold is a coarse estimate (see its interval); {FEW_IMAGES} or more of each class is better")


def no_guard_warning(result: LocalThreshold) -> str | None:
    """A warning when the new model has no chest X-ray guard (its source had none), else None."""
    if result.guard_copied:
        return None
    return (f"{result.out} has no chest X-ray guard, as the model it copies had none: it will score any image, a "
            f"photo or an upside-down film too, instead of refusing it; " + (result.no_guard_fits or (
                f"fit one with {result.fit_guard}" + (" (the data the model was trained on)" if result.trained_on
                                                      else ""))))


def print_local_threshold(result: LocalThreshold) -> None:
    print(format_local_threshold(result))
    for warning in (few_images_warning(result), no_guard_warning(result)):
        if warning:
            write_warning(warning)
    for message in result.skipped:
        write_warning(f"skipped {message}")
