"""Self-supervised pretraining (SimSiam, Chen & He 2021) on the training images, labels unused.

Two strongly augmented views of each training image go through the network without its final
linear layer, a projector and a predictor; the loss pulls one view's prediction towards the other
view's projection (negative cosine, stop-gradient on the target). The validation patients of the
same split are left out, so a later `train --init` is still validated on unseen patients; the film fingerprints of
the films it trained on are recorded, and `train --init` warns when any of its validation films is among them.
The result is `pretrained.safetensors`: the network's weights without its final linear layer.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from pneumoscan.artifact import PRETRAIN_CHECKPOINT, PRETRAINED_META_KEY, PRETRAINED_NAME, PRETRAINING_FILES
from pneumoscan.data.augment import AugmentConfig, augment_batch
from pneumoscan.data.fingerprint import FILM_MAX_DISTANCE, FILM_METHOD, film_distances, film_record, \
    training_film_fingerprints
from pneumoscan.data.preprocess import prepare_pixels, to_unit
from pneumoscan.errors import InputError, counted, option, switch, words
from pneumoscan.inference.batch import device_for
from pneumoscan.models.registry import (create_model, final_linear_name, get_spec, is_registered, model_config,
                                        model_sources, require_registered)
from pneumoscan.outputs import atomic_write, os_error_of
from pneumoscan.progress import progress_bar, write_warning
from pneumoscan.training.checkpoint import (atomic_torch_save, check_writable, files_in, load_checkpoint, run_lock,
                                            schedule_change)
from pneumoscan.training.config import TrainConfig

# Views far stronger than the supervised augmentation: SimSiam learns what survives them.
VIEW_AUGMENT = AugmentConfig(rotation_deg=15.0, scale=0.25, translate=0.12, brightness=0.25, contrast=0.35)
VIEW_NOISE = 0.03
PROJECTION_DIM = 512
# The settings pretraining reads (besides the folders and --epochs, which a resume may change); a resume
# compares only these, so supervised-training settings, whose defaults may move, never block one.
PRETRAINING_SETTINGS = ("model", "image_size", "seed", "split_seed", "val_fraction", "use_given_val", "patient_key",
                        "max_images", "batch_size", "lr", "equalize", "crop")
# The settings `train --init` must share with the pretraining: the validation patients it left out (--max-images
# caps each class before the patient carve, so another cap carves other patients), and the inputs.
# (patient_key is recorded as the split made it, `PatientKeys.effective`: `auto` that read every key from the file
# name is `name`, as every pretraining recorded before --patient-key existed read them.)
SPLIT_SETTINGS = ("split_seed", "val_fraction", "use_given_val", "patient_key", "max_images")
INPUT_SETTINGS = ("equalize", "crop")
SHARED_WITH_TRAIN = SPLIT_SETTINGS + INPUT_SETTINGS


def strip_final_linear(model: nn.Module) -> int:
    """Replace the classifier's final nn.Linear by an identity, in place; return the feature width."""
    name = final_linear_name(model)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    width = getattr(parent, attr).in_features
    setattr(parent, attr, nn.Identity())
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return width


class SimSiam(nn.Module):
    """Backbone (network without its final linear), 3-layer projector, 2-layer bottleneck predictor."""

    def __init__(self, backbone: nn.Module, width: int, dim: int = PROJECTION_DIM) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = nn.Sequential(
            nn.Linear(width, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
            nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
            nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim, affine=False),
        )
        self.predictor = nn.Sequential(
            nn.Linear(dim, dim // 4, bias=False), nn.BatchNorm1d(dim // 4), nn.ReLU(inplace=True), nn.Linear(dim // 4, dim),
        )

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Symmetric negative-cosine loss of the two views, and the projections' per-dimension std
        of the L2-normalised output (about 1/sqrt(dim) when healthy, 0 when collapsed)."""
        z1, z2 = self.projector(self.backbone(x1)), self.projector(self.backbone(x2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = -(F.cosine_similarity(p1, z2.detach()).mean() + F.cosine_similarity(p2, z1.detach()).mean()) / 2
        return loss, F.normalize(z1.detach(), dim=1).std(dim=0).mean()


def _view(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    view = augment_batch(x, VIEW_AUGMENT, generator)
    return (view + torch.randn(view.shape, generator=generator) * VIEW_NOISE).clamp(0.0, 1.0)


def pretrain(cfg: TrainConfig, *, resume: bool = False, progress: bool = True, keep_patient_key: bool = False,
             keep_epochs: bool = False, warn: Callable[[str], None] = write_warning) -> Path:
    """SimSiam on the run's training split (cfg.epochs, cfg.batch_size, SGD at cfg.lr scaled by batch/256);
    returns the path of `pretrained.safetensors` in cfg.out. The folder is locked against a second process
    while this one runs, as `train` locks its run folder. `keep_patient_key`: a resume keeps the pretraining's
    own --patient-key (not given again; `name` for one started before the option existed), and with `keep_epochs`
    its own --epochs (not given again; cfg.epochs for a checkpoint that records none). `warn` says what
    `train` would say about the data and matters to pretraining too (`data_warnings`)."""
    cfg.check(resumed=resume)
    out = Path(cfg.out)
    if resume and not is_registered(cfg.model) and (out / PRETRAIN_CHECKPOINT).is_file():
        # a plugin's model whose package has since been uninstalled: say which one, as its checkpoint records it
        sources = load_checkpoint(out / PRETRAIN_CHECKPOINT).get("model_sources") or {}
        require_registered({k: v for k, v in sources.items() if k == cfg.model}, out)
    if not get_spec(cfg.model).trainable:
        raise InputError(f"model '{cfg.model}' is built from trained runs; pretrain one of its member architectures")
    with run_lock(out, resume=resume):  # a pretraining refused before it wrote anything leaves no empty folder behind
        return _pretrain(cfg, out, resume, progress, keep_patient_key, keep_epochs, warn)


def _train_files(out: Path) -> str:
    """The files of a training run or model in `out` (`last.pt`, `model.safetensors`), as 'last.pt, ...'; '' when
    none."""
    from pneumoscan.artifact import ARTIFACT_NAME
    from pneumoscan.training.run_folder import LAST_CHECKPOINT

    return files_in(out, (LAST_CHECKPOINT, ARTIFACT_NAME))


def _pretrain(cfg: TrainConfig, out: Path, resume: bool, progress: bool, keep_patient_key: bool, keep_epochs: bool,
              warn: Callable[[str], None]) -> Path:
    from pneumoscan.training.run_data import data_warnings, prepare_data
    from pneumoscan.training.split_check import resume_advice, split_change
    from pneumoscan.training.recipe import image_stats, seed_everything

    spec = get_spec(cfg.model)
    ckpt_path = out / PRETRAIN_CHECKPOINT
    if resume and not ckpt_path.exists():
        raise InputError(f"{ckpt_path}: nothing to resume; run without {switch('resume')} to start pretraining")
    ckpt = load_checkpoint(ckpt_path) if resume else None
    saved = ckpt.get("config") if ckpt else None  # older checkpoints carry no settings and are not checked
    if saved and keep_patient_key:
        cfg.patient_key = TrainConfig.as_trained(saved)["patient_key"]
    if saved and keep_epochs and isinstance(saved.get("epochs"), int):
        cfg.epochs = saved["epochs"]
    # settings newer than the checkpoint count as it ran (no --equalize, no --crop), so resuming with them
    # switched on is refused rather than silently mixed
    given = {k: v for k, v in cfg.to_dict().items() if k in PRETRAINING_SETTINGS}
    if saved and (flags := TrainConfig.resume_conflicts(saved, given, "pretraining")):
        raise InputError(f"{ckpt_path}: {flags}: resume with the options the pretraining was started with")
    if not resume and files_in(out, PRETRAINING_FILES):
        raise InputError(f"{out}: holds an earlier pretraining; pass {switch('resume')} to continue it or choose "
                         f"another {option('out')}")
    if not resume and (held := _train_files(out)):
        raise InputError(f"{out}: holds a `pneumoscan train` run or model ({held}), beside whose files the pretraining "
                         f"would write; give {option('out')} a folder of its own for the pretraining")
    check_writable(out)
    image_size = cfg.image_size or spec.image_size
    seed_everything(cfg.seed)
    data = prepare_data(cfg, image_size, progress, command="pretrain")
    started_on = ckpt.get("split") if ckpt else None  # older checkpoints carry no split and are not checked
    if started_on and (change := split_change(started_on, data.split_record, out, "pretraining")):
        # a moved copy is welcome; other images would mix two splits' training images, validation patients among them
        advice = resume_advice(started_on, data.split_record, "pretraining", Path(cfg.data).is_file())
        raise InputError(f"{cfg.data}: {change}; {advice}")
    # not films under both labels: pretraining reads no labels (`train` on these folders says it)
    for message in data_warnings(cfg, data, labels_used=False):
        warn(message)
    images = prepare_pixels(data.train.images, equalize=cfg.equalize, crop=cfg.crop)
    mean, std = image_stats(images)
    device = device_for()
    backbone = create_model(cfg.model, **model_config(cfg.model, image_size=image_size))
    net = SimSiam(backbone, strip_final_linear(backbone)).to(device)
    lr = cfg.lr * cfg.batch_size / 256
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(cfg.seed)
    steps = len(images) // cfg.batch_size  # whole batches: BatchNorm in the projector needs more than one row
    if steps < 1:
        raise InputError(f"{cfg.data}: {len(images)} training images are fewer than one batch of {cfg.batch_size}; "
                         f"lower {option('batch_size')}")
    for stale in out.glob(".*.tmp"):  # left by a run killed mid-write
        stale.unlink()
    state: dict[str, Any] = {"epoch": 0, "history": [], "seconds": 0.0}
    if ckpt is not None:
        net.load_state_dict(ckpt["net"])
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"])
        state = ckpt["state"]
        if change := _epochs_change(saved, cfg.epochs, state["epoch"], lr):
            warn(change)
        _note_epochs(ckpt, cfg, state["epoch"], ckpt_path)
    while state["epoch"] < cfg.epochs:
        epoch = state["epoch"] + 1
        for group in optimizer.param_groups:  # cosine decay per epoch
            group["lr"] = _lr_in(epoch, cfg.epochs, lr)
        net.train()
        started, loss_sum, spread_sum = time.time(), 0.0, 0.0
        order = torch.randperm(len(images), generator=generator)
        bar = progress_bar(range(steps), desc=f"pretrain {epoch}/{cfg.epochs}", unit="batch", progress=progress)
        for step in bar:
            idx = np.sort(order[step * cfg.batch_size : (step + 1) * cfg.batch_size].numpy())
            x = to_unit(np.asarray(images[idx]))
            x1, x2 = ((_view(x, generator) - mean) / std).to(device), ((_view(x, generator) - mean) / std).to(device)
            loss, spread = net(x1, x2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.item()
            if not math.isfinite(value):  # nothing of this epoch is saved: the checkpoint before it is kept
                raise InputError(f"{out}: pretraining diverged in epoch {epoch} (loss {value}); start a new "
                                 f"pretraining (another {option('out')}) with a lower {option('lr')} (this one: "
                                 f"{cfg.lr})")
            loss_sum, spread_sum = loss_sum + value, spread_sum + spread.item()
            bar.set_postfix(loss=f"{loss_sum / (step + 1):.4f}")
        bar.close()
        seconds = time.time() - started
        mean_loss, spread = loss_sum / steps, spread_sum / steps  # the epoch line rounds these once, as the bar does
        row = {"epoch": epoch, "loss": round(mean_loss, 5), "spread": round(spread, 5), "seconds": round(seconds, 1)}
        state["history"].append(row)
        state["epoch"], state["seconds"] = epoch, state["seconds"] + seconds
        atomic_torch_save({"net": net.state_dict(), "optimizer": optimizer.state_dict(),
                           "generator": generator.get_state(), "state": state, "config": cfg.to_dict(),
                           "split": started_on or data.split_record, "model_sources": model_sources([cfg.model])},
                          ckpt_path)
        tqdm.write(f"pretrain epoch {epoch:3d}  loss {mean_loss:.4f}  spread {spread:.4f} "
                   f"(collapse = 0, healthy ~ {1 / math.sqrt(PROJECTION_DIM):.3f})  {seconds:.0f} s")
    target = out / PRETRAINED_NAME
    weights = {k: v.detach().cpu().contiguous() for k, v in net.backbone.state_dict().items()}
    record = {"model_name": cfg.model, "image_size": image_size, "method": "simsiam", "epochs": state["epoch"],
              "seconds": round(state["seconds"], 1), "history": state["history"],
              **{key: getattr(cfg, key) for key in SHARED_WITH_TRAIN}, "patient_key": data.patients.effective,
              "skipped": len(data.split_record["skipped"]),  # unreadable files, each named in a warning
              # what it trained on, for `train --init` to find its own validation films among (`validation_overlap`)
              **film_record([s.path for s in data.train.samples], data.train.images, cfg.cache_dir,
                            data.train.film_marks)}

    def write(tmp: Path) -> None:
        try:
            save_file(weights, str(tmp), metadata={PRETRAINED_META_KEY: json.dumps(record)})
        except SafetensorError as err:  # e.g. a full disk
            raise os_error_of(err) from None

    return atomic_write(target, write, mode=0o644)  # readable like model.safetensors


def _lr_in(epoch: int, epochs: int, lr: float) -> float:
    """The learning rate of `epoch` (1, 2, ...) of a pretraining of `epochs` epochs at `lr`: cosine decay per epoch."""
    return lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))


def _note_epochs(ckpt: dict[str, Any], cfg: TrainConfig, done: int, path: Path) -> None:
    """Record in the checkpoint `ckpt` (at `path`) the --epochs a resume after `done` epochs continues with, at once
    (as `train` records them in config.json), so that a plain --resume after one interrupted before its first epoch
    ended continues to them too; an --epochs below `done` is recorded as `done`. Not in a checkpoint from before
    settings were recorded."""
    cfg.epochs = max(cfg.epochs, done)
    saved = ckpt.get("config")
    if saved and saved.get("epochs") != cfg.epochs:
        atomic_torch_save({**ckpt, "config": {**saved, "epochs": cfg.epochs}}, path)


def _epochs_change(saved: dict[str, Any] | None, epochs: int, done: int, lr: float) -> str:
    """The warning of a pretraining resumed after epoch `done` with another --epochs (`epochs`) than its checkpoint's
    settings `saved` record: that no epoch is left to train, or from what to what the learning rate (`lr`, scaled)
    moves; '' when it is the same, or not recorded (a checkpoint from before they were)."""
    started = (saved or {}).get("epochs")
    if not isinstance(started, int) or started == epochs:
        return ""
    given = f"{option('epochs', epochs)} (pretraining: {started})"
    if epochs <= done:
        return f"{given}: no epoch is left to train; {PRETRAINED_NAME} holds the {counted(done, 'epoch')} trained"
    moves = schedule_change(epochs, done, _lr_in(done, started, lr), _lr_in(done + 1, epochs, lr), "pretraining")
    return (f"{given}: {moves}; the weights will differ from those of a pretraining started with "
            f"{option('epochs', epochs)}")


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> None:
    """Copy `pretrain`'s weights into `model` (same architecture); only the final linear stays as built."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; pass the {PRETRAINED_NAME} that `pneumoscan pretrain` wrote")
    try:
        weights = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for foreign files
        raise InputError(f"{path}: not a safetensors weights file ({exc}); pass the {PRETRAINED_NAME} of `pneumoscan pretrain`") from exc
    broken = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise InputError(f"{path}: holds NaN or infinite weights (e.g. {broken[0]}): the pretraining diverged; "
                         f"pretrain again with a lower --lr")
    head = final_linear_name(model)
    own = model.state_dict()
    mismatched = [k for k, v in weights.items() if k not in own or own[k].shape != v.shape]
    missing = [k for k in own if k not in weights and not k.startswith(head + ".")]
    if mismatched or missing:
        record = pretraining_record(path)
        made_for, size = record.get("model_name"), record.get("image_size")
        matched = sum(k in own and own[k].shape == v.shape for k, v in weights.items())
        raise InputError(f"{path}: weights do not fit this model ({matched} tensors match, {len(mismatched)} foreign, "
                         f"{len(missing)} missing, e.g. {(mismatched + missing)[0]}"
                         + (f"; pretrained for --model {made_for}" if made_for else "")
                         + (f" at {size} px" if made_for and size else "")  # a model of one input size (the mlp)
                         + "); pretrain with the same --model, --image-size and model config")
    model.load_state_dict(weights, strict=False)


def pretraining_record(path: str | os.PathLike) -> dict[str, Any]:
    """What `pretrain` recorded in `path` of the pretraining ({} for a file without a record); InputError naming the
    file when the record is not readable (an edited file)."""
    with safe_open(str(path), "pt") as handle:
        return _record_of(handle.metadata() or {}, path)


def _record_of(metadata: dict[str, str], path: str | os.PathLike) -> dict[str, Any]:
    """`pretraining_record` of the file `path` whose safetensors metadata is `metadata`."""
    try:
        record = json.loads(metadata.get(PRETRAINED_META_KEY, "{}"))
    except ValueError as err:
        raise InputError(f"{path}: its record of the pretraining is unreadable ({err}), as in an edited file; restore "
                         f"the file or pretrain again") from None
    return record if isinstance(record, dict) else {}


def _checks_films(record: dict[str, Any]) -> bool:
    """Whether a pretraining record holds the films it trained on in the form this pneumoscan compares."""
    return record.get("film_fingerprint_method") == FILM_METHOD


def _setting(key: str, value: Any) -> str:
    """Setting `key` at `value` as `differences_warning` names it: 'val-fraction 0.2', 'max-images none'."""
    return option(key, value).removeprefix("--") if value is not None else words(f"{key.replace('_', '-')} none",
                                                                                  f"{key}=None")


def _differences(record: dict[str, Any], keys: tuple[str, ...], cfg: TrainConfig, patient_key: str | None) -> list[str]:
    """The settings `keys` in which `cfg` differs from the pretraining `record`, as 'val-fraction 0.2 (pretrained
    with 0.15)'; a record of the split settings without a patient key read them by name."""
    if "split_seed" in record:
        record = {"patient_key": "name", **record}
    ours = {key: getattr(cfg, key) for key in keys} | {"patient_key": patient_key or cfg.patient_key}
    return [f"{_setting(key, ours[key])} (pretrained with {'none' if record[key] is None else record[key]})"
            for key in keys if key in record and record[key] != ours[key]]


def differences_warning(init: InitRecord, cfg: TrainConfig, patient_key: str | None = None,
                        image_size: int | None = None) -> str:
    """The one-line warning `train --init` gives for the settings in which `cfg` differs from the pretraining that
    wrote the file `init` read, as 'val-fraction 0.2 (pretrained with 0.15)'; '' when they agree or the file predates their record.
    The split settings (SPLIT_SETTINGS) only for a file without a record of its films: where `validation_overlap`
    counts the films themselves, another split, cap or data set is no cause for a warning by itself. `patient_key`:
    how the run's split read its patients (`PatientKeys.effective`; default cfg.patient_key). `image_size`: the input
    size the run trains at, compared with the one the weights were learned at."""
    path, record = init.path, init.pretraining
    split = [] if _checks_films(record) else _differences(record, SPLIT_SETTINGS, cfg, patient_key)
    differences = split + _differences(record, INPUT_SETTINGS, cfg, patient_key)
    if image_size is not None and record.get("image_size") not in (None, image_size):
        differences.append(f"{_setting('image_size', image_size)} (pretrained with {record['image_size']})")
    if not differences:
        return ""
    if not split:
        inputs = words("--image-size, --equalize/--no-equalize and --crop/--no-crop", "`image_size`, `equalize` and "
                       "`crop`")
        return (f"{path}: {'; '.join(differences)}: the pretraining prepared its inputs otherwise; pretrain again "
                f"with this run's {inputs} for a clean start")
    # SimSiam may have seen this run's validation images (without labels)
    return (f"{path}: {'; '.join(differences)}: the pretraining may have used this run's validation images, or "
            f"prepared its inputs otherwise; pretrain again with this run's "
            f"{', '.join(map(option, ('max_images', 'split_seed', 'val_fraction', 'patient_key')))} and "
            f"preprocessing for a clean start")


def validation_overlap(init: InitRecord, marks: list[str | None], patients: list[str]) -> tuple[int, int] | None:
    """How many of a run's validation films (`marks`: their film fingerprints, None where unknown; `patients`:
    their patient keys) the pneumoscan file `init` read trained on (within FILM_MAX_DISTANCE bits, as the same film
    re-encoded), and of how many patients: (films, patients); None when the file records no films of this method
    (written before they were recorded). A pretraining's record holds the films it trained on, a model's the films
    it was trained and validated on."""
    known = _recorded_films(init)
    if known is None:
        return None
    found = [i for i, mark in enumerate(marks) if mark is not None]
    near = film_distances([marks[i] for i in found], known) <= FILM_MAX_DISTANCE
    seen = [i for i, hit in zip(found, near) if hit]
    return len(seen), len({patients[i] for i in seen})


@dataclass(frozen=True)
class InitRecord:
    """What `train --init` checks of a pneumoscan file `path`, from its header read once: whether it is a model
    (`train`'s, not `pretrain`'s), its `pretraining_record` ({} for a model) and a model's `training` record."""
    path: str | os.PathLike
    is_model: bool
    pretraining: dict[str, Any]
    training: dict[str, Any]


def read_init_record(path: str | os.PathLike) -> InitRecord:
    """The record of the pneumoscan file `path` (a pretraining or a model) that `train --init` checks later:
    InputError naming the file when it is unreadable, before any image is decoded."""
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata() or {}
    if "pneumoscan" in meta and PRETRAINED_META_KEY not in meta:
        from pneumoscan.artifact import read_meta

        return InitRecord(path, True, {}, read_meta(path).training or {})
    return InitRecord(path, False, _record_of(meta, path), {})


def _recorded_films(init: InitRecord) -> np.ndarray | None:
    """The film fingerprints the pneumoscan file `init` read records (`training_film_fingerprints`); None when it
    records none of FILM_METHOD."""
    if init.is_model:
        methods = [init.training] + [m for m in init.training.get("members") or [] if isinstance(m, dict)]
        return training_film_fingerprints(init.training) if any(_checks_films(m) for m in methods) else None
    return training_film_fingerprints(init.pretraining) if _checks_films(init.pretraining) else None


def _unchecked(init: InitRecord) -> str:
    """Why the films of the pneumoscan file `init` read cannot be compared with the run's validation films."""
    if init.is_model:
        return "records no films it was trained on in a form this pneumoscan reads"
    method = init.pretraining.get("film_fingerprint_method")
    if method is None:
        return "records no films it was pretrained on (written by an earlier pneumoscan)"
    return f"records the films it was pretrained on in a form this pneumoscan does not read ({method})"


def overlap_warning(init: InitRecord, cfg: TrainConfig, marks: list[str | None], patients: list[str],
                    patient_key: str | None = None) -> str:
    """The one-line warning `train --init` gives when the pneumoscan file `init` read (a pretraining, or a model)
    trained on any of the run's validation films (`validation_overlap`), or cannot tell; '' when it saw none of them.
    `patient_key`: as `differences_warning` takes it."""
    path, overlap = init.path, validation_overlap(init, marks, patients)
    if overlap is None:
        return (f"{path}: {_unchecked(init)}, so whether it saw this run's validation patients cannot be checked; "
                + ("start from a pretraining (`pneumoscan pretrain`) for a checked start" if init.is_model
                   else "pretrain again for a checked start"))
    films, seen = overlap
    if not films:
        return ""
    count = f"{films} of this run's {len(marks)} validation films ({seen} of its {len(set(patients))} validation patients)"
    optimistic = "so validation (early stopping, threshold) may be optimistic"
    if init.is_model:
        return (f"{path}: the model given to {option('init')} was trained or validated on {count}, with their labels, "
                f"{optimistic}; start from a pretraining (`pneumoscan pretrain` with this run's split settings) or from "
                f"a model trained on other patients")
    if not cfg.use_given_val and _differences(init.pretraining, SPLIT_SETTINGS, cfg, patient_key):
        same = ", ".join(option(key, getattr(cfg, key)) if getattr(cfg, key) is not None else
                         words(f"no {option(key)}", f"{key}=None") for key in ("split_seed", "val_fraction", "max_images"))
        return (f"{path}: the pretraining trained on {count}, {optimistic}; pretrain again with this run's {same} "
                f"({option('max_images')} caps each class before the patient carve, so it too chooses the validation "
                f"patients)")
    # the same split settings (or a given val/ folder, which pretrain never carves): the films are in its data twice
    return (f"{path}: the pretraining trained on {count}, {optimistic}; its split settings are this run's, so its "
            f"data holds these films elsewhere: another {option('data')} holding them, or copies filed under other "
            f"patients (`pneumoscan audit` lists them); pretrain on this run's {option('data')} without the copies "
            f"for a clean start")
