"""Combine trained runs into one ensemble artifact, with its threshold chosen on their shared validation split."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pneumoscan.artifact import ARTIFACT_NAME, ArtifactMeta, load_artifact, read_meta
from pneumoscan.data.cache import load_image_set
from pneumoscan.data.labels import Sample
from pneumoscan.errors import InputError, check_seed, counted
from pneumoscan.evaluation.evaluate import film_patients, read_prediction_samples
from pneumoscan.evaluation.thresholds import check_target_recall
from pneumoscan.inference.batch import device_for
from pneumoscan.models.ensemble import Ensemble
from pneumoscan.models.registry import create_model
from pneumoscan.outputs import atomic_write, undone_on_failure
from pneumoscan.data.patients import in_training_data, recorded_patient_key
from pneumoscan.training.config import TrainConfig, data_places, data_record, member_data_placed, run_folders
from pneumoscan.training.same_films import film_keys
from pneumoscan.training.finish import finish_artifact
from pneumoscan.training.run_folder import LAST_CHECKPOINT


def _val_samples(run: Path) -> list[Sample]:
    path = run / "val_predictions.csv"
    if not path.exists():
        raise InputError(f"{path}: missing; ensemble members must be finished `pneumoscan train` runs")
    samples, _ = read_prediction_samples(path, bases=run_folders(run))
    return samples


def _val_patients(first: ArtifactMeta, val: list[Sample], progress: bool, run: Path) -> list[str | None] | None:
    """Each of the shared validation films' patient (`val`: the first member's val_predictions.csv, in its order), so
    the ensemble's intervals are drawn by patient as its members' are: as the first member stores them with its
    scores (keyed as its training keyed them, by a manifest's patient column too, which the CSV does not keep), else,
    for a member from before they were stored, read from the files as `evaluate` reads them, over every split of the
    data it was trained on when found (`in_training_data`; `run`: its run folder)."""
    groups = first.score_groups()
    if groups is not None and len(groups) == len(val):
        return groups
    films, dataset = in_training_data(val, first.training, run) or (val, None)
    return film_patients(films, first.training, progress, dataset=dataset)


SPLIT_SETTINGS = ("split_seed", "val_fraction", "use_given_val", "patient_key", "max_images")
# what `build_ensemble` writes into --out
ENSEMBLE_FILES = ("split.json", "config.json", "val_predictions.csv", ARTIFACT_NAME)


def _split_settings(run: Path) -> dict[str, Any] | None:
    """A run's validation-split settings: its config.json as trained (a run before a setting existed has the value
    it trained with), and under `patient_split` how its split.json says the split read the patients
    (`recorded_patient_key`: `auto` that read every patient from the file name is `name`); an ensemble's folder
    those of its first member, whose split it shares (its settings as its model file records them); None when
    unreadable."""
    try:
        config = json.loads((run / "config.json").read_text())
        split = json.loads((run / "split.json").read_text()) if (run / "split.json").is_file() else {}
        if isinstance(config, dict) and "ensemble_of" in config:
            members = read_meta(run / ARTIFACT_NAME).training.get("members")
            config = members[0].get("config") if isinstance(members, list) and members else None
    except (OSError, ValueError, InputError, AttributeError):
        return None
    if not (isinstance(config, dict) and isinstance(split, dict)):
        return None
    config = TrainConfig.as_trained(config)
    return {**config, "patient_split": recorded_patient_key(split) if split else config["patient_key"]}


def _unreadable(runs: list[Path], metas: list[ArtifactMeta], unread: list[tuple[Path, Path]]) -> str:
    """The refusal of the members' validation films `unread` (run folder, film) that cannot be read: the first film,
    whose validation film it is (every member's, or a run's), how many other films, and why it must be readable
    when the members were trained on data kept in different places (their films are matched by their content)."""
    films = list(dict.fromkeys(film for _, film in unread))
    film = films[0]
    owners = [run for run, path in unread if path == film]
    others = counted(len(films) - 1, "other")
    if len(owners) == len(runs):
        more = f"; {others} cannot be read either" if len(films) > 1 else ""
        said = f"{film}: cannot be read (a validation film of every member{more})"
    else:
        more = f" (and {others})" if len(films) > 1 else ""
        said = f"{film}: a validation film of {owners[0]} cannot be read{more}"
    places = {next((path.resolve() for path in data_places(*data_record(meta.training, run))), None)
              for run, meta in zip(runs, metas)}
    if len(places) == 1 and None not in places:  # one data folder: no copy elsewhere to match it with
        return f"{said}; put it back"
    return f"{said}; the members' validation films are matched by their content, so it must be readable: put it back"


def _split_difference(run: Path, other: Path) -> str:
    """The validation-split settings in which two runs differ, as ' (--val-fraction 0.2 vs 0.15)', or '' when
    they agree or cannot be read. --patient-key counts only where the splits also read patients differently
    (`auto` and `name` read alike from Kermany's file names)."""
    a, b = _split_settings(run), _split_settings(other)
    if a is None or b is None:
        return ""
    differ = [f"--{key.replace('_', '-')} {a.get(key)} vs {b.get(key)}" for key in SPLIT_SETTINGS
              if a.get(key) != b.get(key) and (key != "patient_key" or a["patient_split"] != b["patient_split"])]
    return f" ({', '.join(differ)})" if differ else ""


def _holds_training_run(out: Path) -> bool:
    """True when OUT has a training checkpoint, or a config.json that is not an ensemble's."""
    if (out / LAST_CHECKPOINT).exists():
        return True
    try:
        config = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):  # none, or not ours to judge: written over like before
        return False
    return isinstance(config, dict) and "ensemble_of" not in config


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    """True when two networks have the same tensors (same names, shapes and values)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa)


def member_entry(meta: ArtifactMeta) -> dict[str, Any]:
    """How the ensemble rebuilds and feeds one member."""
    return {"model": meta.model_name, "config": meta.model_config, "image_size": meta.image_size,
            "mean": meta.mean, "std": meta.std}


def _member_record(run: Path, meta: ArtifactMeta) -> dict[str, Any]:
    """What the ensemble records of a member's training: its run folder as given, its model and input size, and its
    training record with its `--data` placed from its run folder (`member_data_placed`: a relative one from a run
    that did not record where it was is placed from the run folder, which the ensemble's file is not in)."""
    record = {"run": str(run), "model": meta.model_name, "image_size": meta.image_size, **meta.training}
    config = meta.training.get("config")
    if isinstance(config, dict) and config.get("data"):
        record["config"] = member_data_placed(config, run)
    return record


def build_ensemble(runs: list[str | Path], out: str | Path, *, target_recall: float | None = None,
                   cache_dir: str | Path | None = None, progress: bool = True, seed: int = 0) -> Path:
    """Average the members' logits; returns OUT/model.safetensors. All runs must share a validation split. `seed`
    draws the bootstrap of its validation intervals (`val_metrics`), as `train --seed` draws a run's."""
    runs = [Path(r) for r in runs]
    out = Path(out)
    if len(runs) < 2:
        raise InputError("an ensemble needs at least two run folders")
    check_target_recall(target_recall)
    check_seed(seed)  # it draws only the bootstrap (np.random.default_rng), which takes any seed >= 0
    if (out / ARTIFACT_NAME).exists():
        raise InputError(f"{out / ARTIFACT_NAME}: already exists; choose another --out")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; give --out a folder for the ensemble")
    if _holds_training_run(out):
        raise InputError(f"{out}: holds a `pneumoscan train` run (interrupted: no {ARTIFACT_NAME} yet), which the ensemble "
                         f"would overwrite; choose another --out")
    if len({run.resolve() for run in runs}) < len(runs):
        raise InputError("the same run is given twice; an ensemble needs different runs")
    for run in runs:
        if run.is_file():  # a model file: its run folder holds the validation split the members must share
            raise InputError(f"{run}: a file; an ensemble is built from `pneumoscan train` run folders, each with its "
                             f"{ARTIFACT_NAME} and the validation split it was chosen on: pass the run folder")
        if not (run / ARTIFACT_NAME).is_file():
            raise InputError(f"{run}: not a finished `pneumoscan train` run (no {ARTIFACT_NAME}); check the path")
    # the members' training data, among whose films the ensemble's files (its report's figures) would be taken for films
    for run in runs:
        read_meta(run / ARTIFACT_NAME).check_out_of_training_data(out, run)
    loaded = [load_artifact(run) for run in runs]
    for i, (net, _) in enumerate(loaded):  # a copy of a run, or a run trained again with the same settings and seed
        for earlier, (other, _) in zip(runs, loaded[:i]):
            if _same_weights(net, other):
                raise InputError(f"{runs[i]}: has the same weights as {earlier}, so it would add nothing; train the "
                                 f"members with different --seed values or models")
    vals = [_val_samples(run) for run in runs]
    val = vals[0]
    # by content, as `compare` tells them: members trained on copies of one data set share their validation films
    films = [(meta.training, run, [Path(s.path) for s in samples], [s.label for s in samples])
             for run, (_, meta), samples in zip(runs, loaded, vals)]
    keyed, unread = film_keys(films)
    if unread:  # names alone would take another image under the same name for it
        raise InputError(_unreadable(runs, [meta for _, meta in loaded], unread))
    for run, keys in zip(runs[1:], keyed[1:]):
        if Counter(keys) != Counter(keyed[0]):
            raise InputError(f"{run}: validated on other images than {runs[0]}{_split_difference(run, runs[0])}; train "
                             f"the members with the same data, --split-seed, --val-fraction and --patient-key so the "
                             f"ensemble's threshold is chosen on images none of them saw")
    for run, (_, meta) in zip(runs, loaded):
        if meta.tta or meta.model_name == "ensemble":
            raise InputError(f"{run}: members must be single models without test-time augmentation")
    metas = [meta for _, meta in loaded]
    for flag, values in (("--equalize", {m.equalize for m in metas}), ("--crop", {m.crop for m in metas})):
        if len(values) > 1:
            raise InputError(f"members differ in {flag}; build an ensemble of runs trained all with it or all without it")
    lead = max(metas, key=lambda m: m.image_size)  # the ensemble takes its largest member's input
    members = [member_entry(m) for m in metas]
    config = {"members": members, "input_mean": lead.mean, "input_std": lead.std}
    model = create_model("ensemble", **config).to(device_for())  # where load_artifact put the members
    assert isinstance(model, Ensemble)
    model.load_members([net for net, _ in loaded])
    recall = target_recall if target_recall is not None else metas[0].target_recall or 0.95
    meta = ArtifactMeta(
        model_name="ensemble", model_config=config, image_size=lead.image_size, mean=lead.mean, std=lead.std,
        equalize=lead.equalize,  # smaller members see the equalised image resized: close to their own preprocessing
        crop=lead.crop, model_sources={name: source for m in metas for name, source in m.model_sources.items()},
        train_prevalence=metas[0].train_prevalence, class_names=metas[0].class_names,
        training={"members": [_member_record(run, m) for run, m in zip(runs, metas)],
                  "train_seconds": round(sum(float(m.training.get("train_seconds", 0)) for m in metas), 1),
                  "data": metas[0].training.get("data"), "seed": seed},  # the --seed that reproduces it
    )
    # a failure (a full disk, Ctrl+C) leaves nothing that was not there before: no half-written ensemble folder
    with undone_on_failure(out, [out / name for name in ENSEMBLE_FILES]):
        out.mkdir(parents=True, exist_ok=True)
        images = load_image_set(val, lead.image_size, Path(cache_dir) if cache_dir else None, desc="decoding val",
                                progress=progress)
        if images.skipped:
            raise InputError(f"validation images of {runs[0]} are no longer readable: {images.skipped[0]}")
        if (runs[0] / "split.json").exists():
            atomic_write(out / "split.json", lambda tmp: shutil.copyfile(runs[0] / "split.json", tmp))
        # its --seed, not as "seed": a run's config.json with that key is a single run's recipe (report's RECIPE_KEYS)
        text = json.dumps({"ensemble_of": [str(r) for r in runs], "ensemble_seed": seed, **config}, indent=2)
        atomic_write(out / "config.json", lambda tmp: tmp.write_text(text))
        return finish_artifact(out, model, meta, images, recall, seed=seed,
                               patients=_val_patients(metas[0], val, progress, runs[0]))
