"""`pneumoscan report RUN_DIR`: one self-contained HTML report of a run, plus its figures as PNG files."""
from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pneumoscan import CLASS_NAMES, __version__
from pneumoscan.artifact import ArtifactMeta
from pneumoscan.data.patients import keys_read, shared_clause
from pneumoscan.errors import words
from pneumoscan.evaluation.bootstrap import intervals_text, resampled_words
from pneumoscan.inference.threshold import INTERVAL_BOOT, INTERVAL_SEED
from pneumoscan.inference.prevalence import model_prior, prior_problem
from pneumoscan.outputs import atomic_write_all, check_companion, check_output, recover_interrupted
from pneumoscan.progress import progress_bar
from pneumoscan.report import figures as figs
from pneumoscan.report import html as h
from pneumoscan.report.run import HISTORY_NAMES, RunInfo, load_run
from pneumoscan.report.scores import Scores, run_scores

SECTION_IDS = ("summary", "learning-curves", "confusion", "roc-pr", "thresholds", "calibration", "subgroups", "cases",
               "feature-maps")
RECALL_TARGETS = (0.90, 0.95, 0.98)
HEADLINE = (("accuracy", "accuracy"), ("precision", "precision (PPV)"), ("recall", "recall (sensitivity)"),
            ("specificity", "specificity"), ("npv", "NPV"), ("f1", "F1"), ("roc_auc", "ROC AUC"),
            ("pr_auc", "average precision (PR AUC)"), ("brier", "Brier score"))


# every figure a report or comparison may write: a re-run removes those it does not make again, and nothing else
FIGURE_NAMES = ("learning_curves", "confusion_matrix", "roc", "pr", "calibration", "recall_by_cause", "recall_by_size",
                "cases_TP", "cases_TN", "cases_FP", "cases_FN", "feature_maps")


@dataclass
class Figures:
    """PNG figures by file stem (one of FIGURE_NAMES), in the order they were made."""

    pngs: dict[str, bytes] = field(default_factory=dict)

    def add(self, name: str, fig: Any, alt: str, caption: str = "") -> str:
        if name not in FIGURE_NAMES:
            raise ValueError(f"figure {name!r} is not in FIGURE_NAMES, so a re-run would not replace it")
        self.pngs[name] = figs.to_png(fig)
        return h.figure(self.pngs[name], alt, caption)

    def files(self, folder: Path) -> dict[Path, Callable[[Path], object]]:
        """Each figure's PNG file in `folder`, with its writer (for `write_report`)."""
        return {folder / f"{name}.png": lambda tmp, png=png: tmp.write_bytes(png) for name, png in self.pngs.items()}

    def stale(self, folder: Path) -> list[Path]:
        """The figures an earlier report may have left in `folder` that this one lacks (to remove); any other file
        there (a folder the user named, holding their own PNGs) is not the report's."""
        return [folder / f"{name}.png" for name in FIGURE_NAMES if name not in self.pngs]


def write_report(target: Path, page: str, figures: Figures,
                 tables: Mapping[Path, Callable[[Path], object]] | None = None) -> Path:
    """The HTML `page` at `target`, its figures as PNG files in `files_folder(target)` and any `tables` beside it,
    with the earlier report's figures this one lacks removed, all or none (`atomic_write_all`): a failure (a full
    disk, a failed rename, Ctrl+C) leaves the earlier report's files as they were and no new file or folder, and
    what a crash among the renames leaves is put back by the next report to `target`. The report owns only these
    files: the PNGs of `FIGURE_NAMES` in its folder; any other file there is left as it is."""
    folder = files_folder(target)
    # a file name that is not UTF-8 shows escaped (\udcf6) rather than stopping the report
    atomic_write_all({**(tables or {}), **figures.files(folder),
                      target: lambda tmp: tmp.write_text(page, encoding="utf-8", errors="backslashreplace")},
                     remove=figures.stale(folder))
    return target


def files_folder(out: Path) -> Path:
    """The folder next to an HTML file that holds its figures as PNG files."""
    return out.with_name(f"{out.stem}_files")


def check_out_of_data_used(target: Path, runs: Sequence[Path], data: str | os.PathLike | None) -> None:
    """InputError when the page `target` (its figures in `files_folder(target)` beside it) is in the training data of
    one of `runs` (run folders; one without a model is named later) or in the `data` it evaluates on, or in their split
    or class folders, where its figures would be taken for films (`check_out_of_data`)."""
    from pneumoscan.artifact import ARTIFACT_NAME, read_meta
    from pneumoscan.data.layout import check_out_of_data

    for run in runs:
        if (run / ARTIFACT_NAME).is_file():
            read_meta(run / ARTIFACT_NAME).check_out_of_training_data(target, run, target.parent)
    if data is not None:
        check_out_of_data(target, data, target.parent)


def default_output(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "report.html"


# -- sections --------------------------------------------------------------------------------------
def _ci(entry: dict[str, Any]) -> str:
    lo, hi = entry.get("ci95", [float("nan")] * 2)
    return f"{h.fmt(float(lo))} - {h.fmt(float(hi))}"


def _threshold_origin(meta: Any) -> str:
    """Where the stored threshold was chosen: on validation in training, or by `set-threshold` on local films."""
    source = meta.threshold_source
    if source.get("data"):
        return (f" (chosen by set-threshold for recall {meta.target_recall} on {source['data']}, "
                f"{source['split']}: {source['n_normal'] + source['n_pneumonia']} images, {source['date']}; "
                f"{source['previous_threshold']:.4f} before)")
    return f" (chosen for recall {meta.target_recall} on validation)" if meta.target_recall else ""


NO_GUARD = "none: this model has no guard (pneumoscan fit-guard fits one)"
# --tta: what the mirror view is, and what it measured (the model card's ablation table, from
# bench/results/ablation.md: val AUC, mirror TTA beside val AUC)
TTA_ON = ("on: each prediction averaged with its left-right mirror, a view training never shows; it lowered "
          "validation AUC in all 54 runs of the ablation table of the shipped model's card (`pneumoscan card`)")


def guard_refusals(scores: Scores) -> str:
    """How many images the model's guard would refuse, 'k of n'; when the model has none, which refuses nothing, so
    '0 of n' would read as every image passing it, NO_GUARD, or why none can be fitted to it (a model without an
    nn.Linear layer, which `fit-guard` refuses)."""
    if not scores.guarded:
        return f"none: {scores.no_guard_fits}" if scores.no_guard_fits else NO_GUARD
    return f"{len(scores.summary['refused_by_guard'])} of {scores.summary['n']}"


def selection_note(run: RunInfo, scores: Scores) -> str:
    """Why figures on the run's own validation films are optimistic: what training chose on them (the kept epoch,
    the threshold), or on a set-threshold copy's films what it chose on them; empty on other films, or when nothing
    was chosen on them."""
    if scores.threshold_films:
        return (f"Optimistic: set-threshold chose the operating threshold (for recall {run.meta.target_recall}) on "
                "these films, so the figures here flatter the model; pass --data with films it has not seen for an "
                "unbiased estimate.")
    if not scores.own_validation:
        return ""
    # an ensemble keeps no epoch of its own, but its members (validated on these films, as `ensemble` requires) did
    members = run.meta.training.get("members") or []
    chosen = ([f"the kept epoch ({kept_epoch_rule([recipe_config(run)])})"] if run.best_epoch else
              [f"each member's kept epoch ({kept_epoch_rule([m.get('config') or {} for m in members])})"]
              if any(member.get("best_epoch") for member in members) else [])
    if run.meta.target_recall and not run.meta.threshold_source.get("data"):
        chosen.append(f"the operating threshold (for recall {run.meta.target_recall})")
    if not chosen:
        return ""
    return (f"Optimistic: {' and '.join(chosen)} {'were' if len(chosen) > 1 else 'was'} chosen on these validation "
            "films, so the figures here flatter the model; pass --data with films it has not seen (a test split) "
            "for an unbiased estimate.")


SHOWN_FILMS = 20  # films listed on the page under what counts them; evaluate --json lists them all


def films_html(title: str, header: str, entries: Sequence[str], key: str) -> str:
    """`entries` (films of --data, one line each) as a table of the first SHOWN_FILMS under `title`, with how many
    more and where they are all listed (`key` of evaluate's JSON); empty when there are none."""
    if not entries:
        return ""
    more = len(entries) - SHOWN_FILMS
    where = words("`evaluate --json` lists them all under", "the dict evaluate returns lists them all under")
    rest = h.paragraph(f"... and {more} more; {where} {key}.", note=True) if more > 0 else ""
    return f"<h3>{h.esc(title)}</h3>" + h.table([header], [[entry] for entry in entries[:SHOWN_FILMS]]) + rest


def refusals_html(summary: dict[str, Any], whose: str = "its") -> str:
    """The images of --data `whose` guard would refuse, each with why (`films_html`): the summary counts them,
    and a reader of the page had no way to find which."""
    return films_html(f"Images {whose} guard would refuse (scored anyway)", "image: why the guard would refuse it",
                      summary.get("refused_by_guard") or [], "refused_by_guard")


def seen_html(summary: dict[str, Any], whose: str = "the model") -> str:
    """The films of --data that `whose` trained or validated on (`films_html`), which the summary counts."""
    return films_html(f"Films {whose} trained or validated on (in-sample)", "image",
                      summary.get("seen_in_training") or [], "seen_in_training")


def _screening_pairs(scores: Scores, run: RunInfo) -> list[tuple[str, object]]:
    """What `evaluate` found about the images of --data (absent for the run's own validation predictions)."""
    summary = scores.summary
    if "seen_in_training" not in summary:
        return []
    return [("films the model trained or validated on (in-sample)", f"{len(summary['seen_in_training'])} of {summary['n']}"),
            ("patients also in the data the model was trained on", _shared_text(summary, run)),
            ("images its out-of-distribution guard would refuse (scored anyway)", guard_refusals(scores))]


def _shared_text(summary: dict[str, Any], run: RunInfo) -> str:
    """The evaluation's `patients_in_training` for people: '2 (5 of 40 films; by DICOM PatientID)', or why they were
    not counted."""
    from pneumoscan.data.patients import shared_text, uncounted_reason

    shared = summary.get("patients_in_training")
    return shared_text(shared, summary["n"], uncounted_reason(shared, run.meta.training, run.artifact.parent))


RECIPE_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "augment", "balance", "label_smoothing",
               "mixup", "ema_decay", "consistency", "equalize", "crop", "patience", "auc_tie", "seed")


def recipe_config(run: RunInfo) -> dict[str, Any]:
    """The run's training settings: its config.json, else the artifact's record of them (a set-threshold folder or a
    model copied alone has no config.json); {} for an ensemble, whose members have their own."""
    return run.config if any(k in run.config for k in RECIPE_KEYS) else (run.meta.training.get("config") or {})


def kept_epoch_rule(configs: Sequence[dict[str, Any]]) -> str:
    """How training chose the kept epoch of runs with these settings: the best validation ROC AUC, or under their
    --auc-tie (none before it existed) epoch by epoch, as `training.selection.becomes_kept` does; an ensemble's
    members trained with and without one each by theirs."""
    ties = {float(config.get("auc_tie") or 0) if isinstance(config, dict) else 0.0 for config in configs}
    used = ties - {0.0}
    if not used:
        return "best validation ROC AUC"
    tie = f"{used.pop():g}" if len(used) == 1 else "the member's --auc-tie"
    rule = (f"an epoch within {tie} of the highest AUC so far replaced the kept one when its validation loss was "
            f"lower or the kept one's AUC had fallen more than {tie} below the highest")
    if 0.0 in ties:
        return f"best validation ROC AUC, or for the members trained with --auc-tie, validation ROC AUC: {rule}"
    return f"validation ROC AUC: {rule}"


def recipe_text(run: RunInfo) -> str:
    """The training settings (`recipe_config`); an ensemble points to its members."""
    cfg = recipe_config(run)
    recipe = ", ".join(f"{k} {cfg[k]}" for k in RECIPE_KEYS if k in cfg)
    if recipe:
        return recipe
    if run.meta.training.get("members"):
        return "an ensemble: each member's recipe is in the report of its own run folder"
    return "not recorded (no config.json, and the model file does not say)"


def init_text(run: RunInfo) -> str:
    """Where training started from: the --init file (name, SHA-256, what wrote it), else random weights."""
    source = run.meta.training.get("init")
    if source:
        return f"{source['file']} (SHA-256 {source['sha256']}; {source['kind']})"
    init = run.config.get("init") or (run.meta.training.get("config") or {}).get("init")
    if init:  # a run from before the file's checksum was recorded
        return f"{init} (no checksum recorded)"
    if run.meta.training.get("members"):
        return "an ensemble: each member's is in the report of its own run folder"
    return "random (trained from scratch)"


def _prior_text(meta: ArtifactMeta) -> str:
    """The prior the model's probabilities assume, or why it cannot be read (an edited file)."""
    problem = prior_problem(meta)
    return f"{model_prior(meta):.3f}" if problem is None else f"unusable: {problem}, as in an edited file"


def _shared_warning(shared: dict[str, Any], n: int) -> str:
    """The page's warning about evaluated films whose patients also have films in the training data (`shared`, as
    `patients_in_training` counts them, of `n` films), in the singular for one patient."""
    lists = "lists that patient" if shared["patients"] == 1 else "lists them"
    only = " only" if shared["patients"] == 1 else ""
    return (f"Warning: {shared_clause(shared, n, 'the evaluated images', its=False)}, so the figures below are not "
            f"those of new patients{only}; `pneumoscan audit DATA` {lists} (DATA: the data set both are splits of, "
            f"or one CSV manifest listing both with a split column).")


def _summary_section(run: RunInfo, scores: Scores, params: int) -> str:
    meta, training = run.meta, run.meta.training
    recipe = recipe_text(run)
    seconds = run.train_seconds
    pairs: list[tuple[str, object]] = [
        ("run folder", str(run.path)),
        ("model", f"{meta.model_name} ({params:,} parameters, input {meta.image_size} x {meta.image_size} px)"),
        ("normalisation", f"mean {meta.mean:.4f}, std {meta.std:.4f}"
                          + (", after per-image histogram equalisation" if meta.equalize else "")
                          + (", each image cropped to the body's width first" if meta.crop else "")),
        ("recipe", recipe),
        ("initial weights", init_text(run)),
        ("test-time augmentation", TTA_ON if meta.tta else "off"),
        ("epochs run / best epoch", f"{training.get('epochs_run', 'n/a')} / {training.get('best_epoch', 'n/a')}"),
        ("training time", f"{seconds:.1f} s ({seconds / 60:.1f} min)" if seconds is not None else "n/a"),
        ("operating threshold", f"{scores.threshold:.4f}" + _threshold_origin(meta)),
        ("training prevalence of PNEUMONIA", f"{meta.train_prevalence:.3f}"),
        ("prior its probabilities assume (what --prevalence corrects from)", _prior_text(meta)),
        ("evaluated on", scores.source),
        ("unreadable images skipped", len(scores.skipped)),
        *_screening_pairs(scores, run),
        ("pneumoscan version", f"model {meta.version}, report {__version__}"),
    ]
    counts_rows = []
    for name, info in (run.split.get("counts") or {}).items():
        counts_rows.append([name, info.get("NORMAL"), info.get("PNEUMONIA"), info.get("patients")])
    if scores.images is not None or not counts_rows:  # evaluated on --data: its own row
        counts_rows.append([f"{scores.split} (evaluated)", int((scores.labels == 0).sum()), int(scores.labels.sum()),
                            scores.patients if scores.patients is not None else "n/a"])
    method = run.split.get("method")
    split_note = f"Validation: {method}; patient keys: {keys_read(run.split)}." if method else "split.json not found."
    summary = scores.summary
    metric_rows = [[label, summary[key]["value"], _ci(summary[key])] for key, label in HEADLINE if key in summary]
    metric_rows.append(["expected calibration error", summary["ece"]["value"], ""])
    seen = len(summary.get("seen_in_training") or [])
    warning = (h.paragraph(f"Warning: {seen} of {summary['n']} evaluated images are films this model was trained or "
                           "validated on (copies, or the same film re-encoded or resized), so the figures below are "
                           "in-sample and flatter it; report on films it has not seen.") if seen else "")
    shared = summary.get("patients_in_training") or {}
    if shared.get("patients"):
        warning += h.paragraph(_shared_warning(shared, summary["n"]))
    return (
        warning
        + h.key_values(pairs)
        + seen_html(summary)
        + refusals_html(summary)
        + "<h3>Images per split and class</h3>"
        + h.table(["split", "NORMAL", "PNEUMONIA", "patients"], counts_rows)
        + h.paragraph(split_note, note=True)
        + f"<h3>Metrics on {h.esc(scores.split)} at threshold {scores.threshold:.4f}</h3>"
        + (h.paragraph(selection, note=True) if (selection := selection_note(run, scores)) else "")
        + h.table(["metric", "value", "95% interval"], metric_rows)
        + h.paragraph(f"{summary['n']} images ({summary['n_negative']} NORMAL, {summary['n_positive']} PNEUMONIA). "
                      f"{intervals_text(summary, ' (--n-boot, --seed)')}.", note=True)
    )


def training_loss_label(config: dict[str, Any]) -> str:
    """What the history's train_loss sums, from the run's config: the objective training minimised on augmented
    views, which is not the validation loss's plain binary cross-entropy (a consistency term alone can double it)."""
    if not config:
        return "training loss (the training objective)"
    bce = "class-weighted BCE" if config.get("balance") == "weighted" else "BCE"
    extras = [f"label smoothing {config['label_smoothing']:g}" if config.get("label_smoothing") else "",
              f"mixup {config['mixup']:g}" if config.get("mixup") else ""]
    on = f"{bce} on augmented views" if float(config.get("augment") or 0) > 0 else bce
    label = f"training objective: {on}" + "".join(f", {e}" for e in extras if e)
    if config.get("consistency"):
        label += f"\n+ {config['consistency']:g} x consistency (JS of two views)"
    return label


def _learning_section(run: RunInfo, out: Figures) -> str:
    members = run.meta.training.get("members")
    if not run.history and members:
        rows = [[m.get("run"), m.get("model"), m.get("image_size"), m.get("best_epoch"), m.get("epochs_run")]
                for m in members]
        return (h.paragraph("This model is an ensemble (the mean of its members' logits); each member's learning "
                            "curves are in the report of its own run folder.", note=True)
                + h.table(["member run", "model", "size", "kept epoch", "epochs run"], rows, digits=4))
    if not run.history:
        return h.paragraph("history.csv not found in the run folder; no learning curves.", note=True)
    body = out.add("learning_curves", figs.learning_curves(run.history, run.best_epoch, training_loss_label(run.config)),
                   "learning curves: loss, validation AUC and accuracy per epoch",
                   f"Dotted vertical line: the epoch whose weights were kept ({kept_epoch_rule([recipe_config(run)])}). "
                   "The training "
                   "loss is the objective training minimised, on augmented images and with any extra terms; the "
                   "validation loss is the plain binary cross-entropy of the unaugmented validation images, so the gap "
                   "between the two curves is not a measure of overfitting by itself.")
    best = next((row for row in run.history if run.best_epoch and int(row["epoch"]) == run.best_epoch), run.history[-1])
    keys = [k for k in ("epoch", "lr", "train_loss", "val_loss", "val_auc", "val_accuracy", "seconds") if k in best]
    row = [int(best[k]) if k == "epoch" else best[k] for k in keys]
    return body + "<h3>Kept epoch</h3>" + h.table([HISTORY_NAMES[k] for k in keys], [row], digits=4)


def _confusion_section(scores: Scores, out: Figures) -> str:
    from pneumoscan.evaluation.bootstrap import CLASSIFICATION_COLUMNS, classification_report_rows

    matrix = scores.summary["confusion_matrix"]["matrix"]
    body = out.add("confusion_matrix", figs.confusion_matrix(matrix, CLASS_NAMES, scores.threshold, scores.films),
                   f"confusion matrix on {scores.films}", "Rows: true class; columns: predicted class at the operating threshold.")
    rows = classification_report_rows(scores.labels, scores.preds)
    return body + "<h3>Classification report</h3>" + h.table(CLASSIFICATION_COLUMNS, rows)


def _roc_pr_section(scores: Scores, out: Figures) -> str:
    from pneumoscan.evaluation.metrics import pr_curve, roc_curve

    summary = scores.summary
    if summary["n_positive"] == 0 or summary["n_negative"] == 0:
        return h.paragraph("ROC and PR curves need both classes in the evaluated images.", note=True)
    recall, spec, ppv = (summary[k]["value"] for k in ("recall", "specificity", "precision"))
    fpr, tpr, _ = roc_curve(scores.labels, scores.probs)
    prec, rec, _ = pr_curve(scores.labels, scores.probs)
    auc, ap = summary["roc_auc"], summary["pr_auc"]
    roc = figs.Curve(f"model: AUC {h.fmt(auc['value'])} (95% CI {_ci(auc)})", fpr, tpr, (1 - spec, recall))
    pr = figs.Curve(f"model: AP {h.fmt(ap['value'])} (95% CI {_ci(ap)})", rec, prec, (recall, ppv))
    note = (f"Circle: the operating point at threshold {scores.threshold:.4f} (sensitivity {h.fmt(recall)}, "
            f"specificity {h.fmt(spec)}, PPV {h.fmt(ppv)}).")
    prevalence = summary["n_positive"] / max(1, summary["n"])
    return ('<div class="grid">'
            + out.add("roc", figs.roc_curves([roc], f"ROC curve\n{scores.films}"), f"ROC curve on {scores.films}")
            + out.add("pr", figs.pr_curves([pr], prevalence, f"Precision-recall curve\n{scores.films}"),
                      f"precision-recall curve on {scores.films}")
            + "</div>" + h.paragraph(note, note=True))


def _thresholds_section(scores: Scores) -> str:
    from pneumoscan.evaluation.thresholds import threshold_for_recall, threshold_table, youden_threshold

    rules: dict[float, list[str]] = {scores.threshold: ["operating threshold"]}
    if scores.summary["n_positive"] and scores.summary["n_negative"]:
        for target in RECALL_TARGETS:
            t = threshold_for_recall(scores.labels, scores.probs, target)
            rules.setdefault(t, []).append(f"recall >= {target:.2f}")
        rules.setdefault(youden_threshold(scores.labels, scores.probs), []).append("max Youden's J")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table_rows = threshold_table(scores.labels, scores.probs, rules)
    rows, marked = [], []
    for i, row in enumerate(table_rows):
        names = rules.get(row["threshold"], [])
        if names:
            marked.append(i)
        rows.append([row["threshold"], row["sensitivity"], row["specificity"], row["ppv"], row["npv"], row["f1"],
                     ", ".join(names)])
    note = ("Decision rule: P(pneumonia) >= threshold means PNEUMONIA. Highlighted rows: the operating threshold, the "
            "thresholds reaching recall 0.90 / 0.95 / 0.98 with the highest specificity and the threshold maximising "
            "Youden's J (sensitivity + specificity - 1), all found on these images, each midway in the gap below the "
            "film it is chosen on.")
    if not (scores.summary["n_positive"] and scores.summary["n_negative"]):
        note = ("Decision rule: P(pneumonia) >= threshold means PNEUMONIA. Highlighted row: the operating threshold; "
                "the thresholds for a recall target and Youden's J need both classes, and these images hold only "
                f"{'PNEUMONIA' if scores.summary['n_positive'] else 'NORMAL'} films.")
    return (h.paragraph(note, note=True)
            + h.table(["threshold", "sensitivity", "specificity", "PPV", "NPV", "F1", "chosen by"], rows,
                      highlight=marked, digits=4)
            + borderline_html(scores.summary))


def borderline_html(summary: dict[str, Any]) -> str:
    """`evaluate`'s borderline films (P within the threshold's 95% interval, which predict marks borderline) and
    the decisions on the films outside it; empty when there is none (the run's own validation predictions, or a
    threshold with no interval)."""
    border = summary.get("borderline")
    if not border:
        return ""
    low, high = border["interval"]
    classes = ", ".join(f"{name} {row['n']} ({row['share']:.1%} of {name})" for name, row in border["by_class"].items())
    outside = border["outside"]
    # a summary from before `resampled` was recorded says nothing of it
    drawn = f" ({resampled_words(border['resampled'])})" if border.get("resampled") else ""
    return ("<h3>Borderline films</h3>" + h.key_values([
        ("threshold's 95% interval (P inside it: borderline)", f"{low:.4f} - {high:.4f}"),
        ("borderline films", f"{border['n']} of {summary['n']} ({border['share']:.1%}): {classes}"),
        (f"accuracy / recall / specificity on the {outside['n']} films outside it",
         f"{h.fmt(outside['accuracy'])} / {h.fmt(outside['recall'])} / {h.fmt(outside['specificity'])}"),
    ]) + h.paragraph("Borderline: a threshold re-chosen on a bootstrap resample of the films the threshold was chosen "
                     "on would give the film the other label; predict marks such films for a radiologist. The rates "
                     "outside the interval are what deciding only the others gives. The threshold's interval is the "
                     f"one predict marks films by: {INTERVAL_BOOT} resamples of those films drawn with seed "
                     f"{INTERVAL_SEED}{drawn}, whatever --n-boot and --seed say.", note=True))


def _calibration_section(scores: Scores, out: Figures) -> str:
    from pneumoscan.evaluation.metrics import expected_calibration_error, reliability_curve

    mean_prob, freq, counts = reliability_curve(scores.labels, scores.probs, n_bins=10)
    ece = expected_calibration_error(scores.labels, scores.probs, n_bins=10)
    body = out.add("calibration", figs.reliability(mean_prob, freq, counts, ece, scores.labels, scores.probs, scores.films),
                   f"reliability diagram and probability histogram on {scores.films}",
                   "Numbers next to the points: images per bin. Probabilities are not adjusted for prevalence.")
    brier = scores.summary["brier"]
    return body + h.key_values([("expected calibration error (10 bins)", ece),
                                ("Brier score", f"{h.fmt(brier['value'])} (95% CI {_ci(brier)})")])


def _subgroups_section(scores: Scores, out: Figures) -> str:
    from pneumoscan.report.subgroups import by_cause, by_size

    body = ""
    headers = ["group", "images", "PNEUMONIA", "recall", "specificity"]
    no_cause = ("No PNEUMONIA image has a known cause: give it in a CSV manifest's label (bacteria, virus) or cause "
                "column, or in Kermany's file names (person1_bacteria_1.jpeg).")
    for key, title, short, rows, xlabel, none in (
        ("recall_by_cause", "Recall by cause (PNEUMONIA images; cause from the manifest, else the file name)",
         "Recall by cause", by_cause(scores.causes, scores.labels, scores.preds), "cause of pneumonia", no_cause),
        ("recall_by_size", "Recall by original image size (longest side)", "Recall by original image size",
         by_size(scores.paths, scores.labels, scores.preds), "longest side of the original image", ""),
    ):
        body += f"<h3>{h.esc(title)}</h3>"
        if not rows:
            known_none = none and scores.labels.any()  # PNEUMONIA images, but none of known cause
            body += h.paragraph(none if known_none else "No PNEUMONIA images to group.", note=True)
            continue
        table_rows = [[r.group, r.n, r.n_positive, r.recall, r.specificity] for r in rows]
        shown = [r for r in rows if r.n_positive]
        chart = ""
        if shown:
            chart = out.add(key, figs.group_bars([r.group for r in shown], [r.recall for r in shown],
                                                 [r.n_positive for r in shown], "recall (sensitivity)", xlabel,
                                                 f"{short}\n{scores.films}"), f"{short.lower()} on {scores.films}")
        body += '<div class="grid">' + f"<div>{h.table(headers, table_rows)}</div>" + f"<div>{chart}</div></div>"
    return body + h.paragraph("Recall among PNEUMONIA images and specificity among NORMAL images of each group, at the "
                              "operating threshold; 'n/a' where a group has no such images.", note=True)


def _cases_section(model: Any, run: RunInfo, scores: Scores, out: Figures, per_group: int) -> str:
    from pneumoscan.report.cases import case_groups, overlay_layers

    layers, below = overlay_layers(model, run.meta)  # found once, for every case
    body = h.paragraph(f"The {per_group} most confident cases of each kind. Top: the original image; bottom: "
                       f"{below}.", note=True)
    for group in case_groups(model, run.meta, scores, per_group, layers):
        body += f"<h3>{h.esc(group.key)}: {h.esc(group.title)}</h3>"
        if not group.tiles:
            body += h.paragraph("No such cases (or their files could not be read).", note=True)
            continue
        body += out.add(f"cases_{group.key}", figs.case_grid(group.tiles, f"{group.key}: {group.title}\n{scores.films}"),
                        f"{group.key} cases of {scores.films} with Grad-CAM")
    return body


def _feature_map_section(model: Any, run: RunInfo, scores: Scores, out: Figures) -> str:
    from pneumoscan.report.cases import first_conv_maps, model_input, most_confident

    chosen = most_confident(scores.labels, scores.probs, scores.threshold, 1)
    index = next((idxs[0] for idxs in chosen.values() if idxs), None)
    image = model_input(scores, index, run.meta.image_size) if index is not None else None
    if image is None:
        return h.paragraph("No readable image to show feature maps for.", note=True)
    found = first_conv_maps(model, run.meta, image)
    if found is None:
        return h.paragraph(f"Model '{run.meta.model_name}' has no convolutional layer.", note=True)
    layer, maps = found
    from pneumoscan.data.preprocess import prepare_pixels

    shown = prepare_pixels(image[None], equalize=run.meta.equalize, crop=run.meta.crop)[0]  # the pixels the net reads
    return out.add("feature_maps", figs.feature_maps(shown, maps, layer), "first conv layer feature maps",
                   f"Image: {scores.paths[index].name} (P(pneumonia) = {h.fmt(float(scores.probs[index]))}), as the "
                   "model sees it. Each map is scaled to its own range.")


# -- entry point -----------------------------------------------------------------------------------
def build_report(run_dir: str | os.PathLike, *, data: str | os.PathLike | None = None, split: str | None = None,
                 out: str | os.PathLike | None = None, n_boot: int = 1000, seed: int = 0, per_group: int = 4,
                 cache_dir: str | os.PathLike | None = None) -> Path:
    """Write the HTML report of a run (and its figures as PNGs in `<name>_files/`); returns the HTML path."""
    from pneumoscan.artifact import load_artifact
    from pneumoscan.evaluation.metrics import UndefinedMetricWarning
    from pneumoscan.models.registry import count_parameters

    started = time.time()
    run = load_run(run_dir)  # first: the default output is in the run folder, which RUN/model.safetensors names
    target = check_output(out if out is not None else default_output(run.path), (".html", ".htm"), "the report")
    # the default place, the run folder, passed train's check (DATA/train/runs/r for --data DATA/train), which --data
    # DATA/test, its split folders beside it, would refuse
    check_out_of_data_used(target, [run.path], data if out is not None else None)
    check_companion(files_folder(target), target, folder=True)
    recover_interrupted([target])  # an earlier report to `target` that a crash stopped among its renames
    with warnings.catch_warnings():  # undefined metrics show as 'n/a' in the report
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        scores = run_scores(run, data, split, n_boot=n_boot, seed=seed, cache_dir=cache_dir, threshold_films=True)
    model, _ = load_artifact(run.artifact)
    params = count_parameters(model)
    fig_out = Figures()
    builders: list[tuple[str, str, Callable[[], str]]] = [
        ("summary", "Run summary", lambda: _summary_section(run, scores, params)),
        ("learning-curves", "Learning curves", lambda: _learning_section(run, fig_out)),
        ("confusion", "Confusion matrix and classification report", lambda: _confusion_section(scores, fig_out)),
        ("roc-pr", "ROC and precision-recall curves", lambda: _roc_pr_section(scores, fig_out)),
        ("thresholds", "Threshold table", lambda: _thresholds_section(scores)),
        ("calibration", "Calibration", lambda: _calibration_section(scores, fig_out)),
        ("subgroups", "Recall by cause and image size", lambda: _subgroups_section(scores, fig_out)),
        ("cases", "Most confident right and wrong cases, with Grad-CAM",
         lambda: _cases_section(model, run, scores, fig_out, per_group)),
        ("feature-maps", "First convolutional layer", lambda: _feature_map_section(model, run, scores, fig_out)),
    ]
    # figures and Grad-CAM take seconds after the scoring bar: a bar counts the sections
    sections = [(key, title, build()) for key, title, build in
                progress_bar(builders, desc="report sections", unit="section")]
    subtitle = f"{run.meta.model_name} run {run.name} - evaluated on {scores.source}: {scores.summary['n']} images"
    footer = (f"pneumoscan {__version__} - generated {time.strftime('%Y-%m-%d %H:%M')} in {time.time() - started:.1f} s; "
              f"figures also in {files_folder(target).name}/")
    return write_report(target, h.page(f"pneumoscan report: {run.name}", subtitle, sections, footer), fig_out)

