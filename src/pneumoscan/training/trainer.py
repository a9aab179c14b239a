"""The training loop: model, optimiser, augmentation, early stopping, checkpoints and resume, the threshold at the end."""
from __future__ import annotations

import copy
import csv
import json
import math
import os
import random
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pneumoscan.artifact import (ARTIFACT_NAME, BEST_WEIGHTS, PRETRAINING_FILES, ArtifactMeta, artifact_writer,
                                  read_meta, save_artifact, stored_scores)
from pneumoscan.data.augment import AugmentConfig, augment_batch, mixup
from pneumoscan.data.cache import ImageSet
from pneumoscan.data.fingerprint import film_fingerprints, film_record, fingerprints
from pneumoscan.data.patients import patient_groups
from pneumoscan.data.preprocess import prepare_pixels, to_unit
from pneumoscan.errors import InputError, ModelConfigError, first_line, option, shell_word, switch
from pneumoscan.evaluation.bootstrap import summarize
from pneumoscan.evaluation.evaluate import write_predictions
from pneumoscan.evaluation.metrics import UndefinedMetricWarning, roc_auc
from pneumoscan.evaluation.thresholds import threshold_for_recall
from pneumoscan.inference.batch import device_for, predict_logits, sigmoid
from pneumoscan.inference.ood import guard_path
from pneumoscan.inference.ood.guard import guard_beside
from pneumoscan.models.registry import (check_model_output, create_model, get_spec, is_registered, model_config,
                                        model_sources, require_registered, version_change)
from pneumoscan.outputs import atomic_write, atomic_write_all, recover_interrupted
from pneumoscan.progress import progress_bar, write_warning
from pneumoscan.training.checkpoint import (atomic_torch_save, check_writable, files_in, load_checkpoint,
                                            restore_rng_states, rng_states, run_lock, schedule_change)
from pneumoscan.training.config import RESUME_MAY_CHANGE, TrainConfig
from pneumoscan.training.run_data import RunData, decoded_film_marks, data_warnings, prepare_data
from pneumoscan.training.selection import becomes_kept, selection_state
from pneumoscan.training.split_check import resume_advice, split_change
from pneumoscan.training.transfer import init_source, load_transfer, written_by_pneumoscan

if TYPE_CHECKING:
    from pneumoscan.inference.ood.guard import OODGuard
    from pneumoscan.training.pretrain import InitRecord

LAST_CHECKPOINT = "last.pt"
HISTORY_FIELDS = ["epoch", "lr", "train_loss", "val_loss", "val_auc", "val_accuracy", "seconds", "images_per_s"]


def recorded_model_sources(out: Path, epoch: int | None = None) -> dict[str, dict[str, str]]:
    """Where the model of the run in `out` comes from (`model_sources`): its config.json's record, else (a run
    started before config.json kept one) its model files'; {} when none says. With `epoch`, the epoch its
    checkpoint ends, where its weights were trained: the record a resume with another version replaced after that
    very epoch (`earlier_model_sources`) when that resume stopped before it finished an epoch."""
    saved = _saved_config(out)
    replaced = _replaced_at(saved, epoch)
    if replaced is not None:
        return replaced
    sources = saved.get("model_sources")
    if isinstance(sources, dict) and all(isinstance(source, dict) for source in sources.values()):
        return sources
    for path in (out / BEST_WEIGHTS, out / ARTIFACT_NAME):
        if path.is_file():
            try:
                return read_meta(path).model_sources
            except InputError:  # a damaged file: the next one may say
                continue
    return {}


def _replaced_at(saved: dict[str, Any], epoch: int | None) -> dict[str, dict[str, str]] | None:
    """The `model_sources` that config.json `saved` says a resume replaced after `epoch` (its last
    `earlier_model_sources` entry, when it ends at `epoch`: the version recorded since has trained no epoch), else
    None."""
    earlier = saved.get("earlier_model_sources")
    last = earlier[-1] if isinstance(earlier, list) and earlier else None
    if epoch is None or not isinstance(last, dict) or last.get("until_epoch") != epoch:
        return None
    sources = last.get("model_sources")
    return sources if isinstance(sources, dict) else None


def _checkpoint_epoch(out: Path) -> int | None:
    """The epoch the checkpoint of the run in `out` ends; None without a readable one."""
    try:
        return load_checkpoint(out / LAST_CHECKPOINT)["state"]["epoch"] if (out / LAST_CHECKPOINT).is_file() else None
    except (InputError, KeyError, TypeError):
        return None


def _saved_config(out: Path) -> dict[str, Any]:
    """The run's config.json, or {} when it is missing or unreadable."""
    try:
        saved = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def _epochs(n: int) -> str:
    """'1 epoch', '3 epochs'."""
    return f"{n} epoch{'' if n == 1 else 's'}"


def _patience_stop(state: dict[str, Any], run_epochs: int, tie: float) -> str:
    """Why a run whose kept epoch has not changed for --patience epochs trains no more: 'the run stopped early
    after epoch 2 (--patience)' when it stopped before its `run_epochs`, else (it trained them all) that its last
    epochs did not replace the kept one (`_no_better`, in the words of its --auc-tie `tie`)."""
    if state["epoch"] < run_epochs:
        return f"the run stopped early after epoch {state['epoch']} ({option('patience')})"
    return f"{_no_better(tie, past=True)} in the run's last {_epochs(state['bad_epochs'])} ({option('patience')})"


def _no_better(tie: float, past: bool = False) -> str:
    """What --patience counts, in the words of the run's --auc-tie: 'validation AUC has not improved' (`past`: 'did
    not improve')."""
    if tie <= 0:
        return f"validation AUC {'did not improve' if past else 'has not improved'}"
    return (f"no epoch {'replaced' if past else 'has replaced'} the kept one (by the {option('auc_tie', tie)} rule of "
            f"validation AUC and loss)")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA), and hold cuDNN to deterministic convolution algorithms, chosen
    without benchmarking: its fastest ones, and the ones a benchmark picks, vary from run to run on a GPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def bernoulli_js(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Mean Jensen-Shannon divergence (nats) between the Bernoulli predictions of two logit vectors."""
    p = torch.stack([torch.sigmoid(first), torch.sigmoid(second)]).clamp(1e-7, 1 - 1e-7)
    m = p.mean(0)

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * (a / b).log() + (1 - a) * ((1 - a) / (1 - b)).log()

    return ((kl(p[0], m) + kl(p[1], m)) / 2).mean()


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch over `n` images: a last batch of one image joins the one before it (batch
    normalisation cannot train on a single image)."""
    return max(1, n // batch_size) if n % batch_size == 1 else math.ceil(n / batch_size)


def image_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation (0..1 scale) of uint8 images, from a subsample of about 500."""
    sample = np.asarray(images[:: max(1, len(images) // 500)], dtype=np.float32) / 255.0
    return float(sample.mean()), float(max(sample.std(), 1e-3))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """Average parameters with a warmed-up decay; copy buffers (batch-norm statistics) as they are.

    Averaging running variances too leaves them near their initial 1.0 for thousands of steps.
    """
    decay = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _pretraining_files(out: Path) -> str:
    """The files of a pretraining in `out` (`artifact.PRETRAINING_FILES`), as 'pretrain_last.pt, ...'; '' when none."""

    return files_in(out, PRETRAINING_FILES)


def runs_inside(folder: Path, shown: int = 3) -> list[str]:
    """The first `shown` sub-folders of `folder` that are training runs (`train --out runs`, the folder of every
    run, would put this run's files among them), as `first/`; then `...` when there are more."""
    if not folder.is_dir():
        return []
    runs = [f"{p.name}/" for p in sorted(folder.iterdir()) if p.is_dir() and (p / "config.json").is_file()
            and ((p / LAST_CHECKPOINT).is_file() or (p / ARTIFACT_NAME).is_file())]
    return runs[:shown] + (["..."] if len(runs) > shown else [])


class Trainer:
    """Trains one model for one `TrainConfig`, writing everything under `cfg.out`."""

    def __init__(self, cfg: TrainConfig, *, progress: bool = True, verbose: bool = True,
                 warn: Callable[[str], None] = write_warning, resume: bool = False) -> None:
        cfg.check(resumed=resume)  # `resume`: the settings are a saved run's (`TrainConfig.check`)
        self.cfg = cfg
        self.resume = resume  # continue the run in `cfg.out` (`run`)
        self.out = Path(cfg.out)
        self.progress = progress
        self.verbose = verbose
        self.warn = warn  # the command's `pneumoscan: warning:` line; the Python API's warnings.warn
        if not is_registered(cfg.model):  # a run's plugin since uninstalled: say the version that trained it
            trained = recorded_model_sources(self.out, _checkpoint_epoch(self.out))
            require_registered({k: v for k, v in trained.items() if k == cfg.model}, self.out)
        spec = get_spec(cfg.model)
        if not spec.trainable:
            raise InputError(f"model '{cfg.model}' is built from trained runs, not trained: train its members, "
                             f"then run `pneumoscan ensemble RUN RUN ... --out DIR`")
        self.image_size = cfg.image_size or spec.image_size
        self.model_cfg = model_config(cfg.model, image_size=self.image_size)
        self.device = device_for()

    def _say(self, line: str) -> None:
        """A line of the run's log on stdout (above any bar), unless not `verbose`: history.csv keeps the figures."""
        if self.verbose:
            tqdm.write(line)

    # -- persistence -------------------------------------------------------------------------
    def _write_history(self, history: list[dict[str, float]]) -> None:
        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS)
                writer.writeheader()
                writer.writerows(history)

        atomic_write(self.out / "history.csv", write)

    def _write_json(self, name: str, data: Any) -> None:
        text = json.dumps(data, indent=2)
        atomic_write(self.out / name, lambda tmp: tmp.write_text(text))

    def _note_resume(self, state: dict[str, Any], next_lr: float) -> None:
        """Say where a resumed run continues, and record in config.json the --epochs, --data and --cache-dir it
        continues with, and the version of its model's plugin (`_model_sources_update`). With another --epochs the
        learning rate follows, from the next epoch on, the cosine schedule of a run of that many epochs, at
        `next_lr` for its next step: the warning says from what to what it moves, or that no epoch is left."""
        saved = json.loads((self.out / "config.json").read_text())
        given = f"{option('epochs', self.cfg.epochs)} (run: {saved.get('epochs')})"
        stopped_early = state["bad_epochs"] >= self.cfg.patience  # the loop trains no epoch then, as for the below
        run_epochs = saved.get("epochs", self.cfg.epochs)
        same_epochs = run_epochs == self.cfg.epochs
        # said here, once: the loop, which trains no epoch, does not say it as if it had just stopped
        stopped = (f"; the run stopped early there ({_no_better(self.cfg.auc_tie)} for {_epochs(self.cfg.patience)}, "
                   f"{option('patience')}), so no epoch is left to train: the model is made from epoch "
                   f"{state['best_epoch']}") if same_epochs and stopped_early and state["epoch"] < self.cfg.epochs else ""
        self._say(f"resuming {self.out} after epoch {state['epoch']} (best so far: epoch {state['best_epoch']}, "
                  f"validation AUC {state['best_auc']:.4f}){stopped}")
        if not same_epochs:
            if self.cfg.epochs <= state["epoch"] or stopped_early:
                why = _patience_stop(state, run_epochs, self.cfg.auc_tie) if stopped_early else ""
                self.warn(f"{given}: no epoch is left to train{', as ' + why if why else ''}; the model is made "
                          f"from the best of the {_epochs(state['epoch'])} trained")
            else:
                last = state["history"][-1]["lr"] if state["history"] else next_lr
                self.warn(f"{given}: {schedule_change(self.cfg.epochs, state['epoch'], last, next_lr, 'run')}; the "
                          f"model will differ from one of a run started with {option('epochs', self.cfg.epochs)}")
        if self.cfg.epochs < state["epoch"]:  # the run's record (config.json, the model's) keeps the epochs trained
            self.cfg.epochs = state["epoch"]
        now = {k: v for k, v in self.cfg.record().items() if k in (*RESUME_MAY_CHANGE, "data_resolved")}
        updated = {**saved, **now, **self._model_sources_update(saved, state["epoch"])}
        if not updated.get("earlier_model_sources"):
            updated.pop("earlier_model_sources", None)
        if updated != saved:
            self._write_json("config.json", updated)

    def _model_sources_update(self, saved: dict[str, Any], epoch: int) -> dict[str, Any]:
        """config.json's record of where the model comes from, for a run resumed after `epoch` with another version of
        its plugin than trained its checkpoint (which the resume has warned about): `model_sources` as installed now,
        so a later resume does not warn again, and the record of the version that trained the checkpoint appended to
        `earlier_model_sources` as {'until_epoch': E, 'model_sources': ...}. A version recorded by a resume that
        stopped before it finished an epoch trained none, so it is named nowhere: a run continued with the version
        before it again records no change. {} when nothing changes."""
        name, now = self.cfg.model, model_sources([self.cfg.model])
        trained = recorded_model_sources(self.out, epoch)
        earlier = list(saved.get("earlier_model_sources") or [])
        if _replaced_at(saved, epoch) is not None:
            earlier.pop()
        elif trained.get(name) == now.get(name):
            return {}
        if trained and trained.get(name) != now.get(name):
            earlier.append({"until_epoch": epoch, "model_sources": trained})
        return {"model_sources": now, "earlier_model_sources": earlier}

    def _resumed_model(self, epoch: int) -> nn.Module:
        """The model built with the options the run started with (config.json's `model_config`; a later version of
        its plugin may have changed its defaults), kept for the rest of the run; InputError naming both versions
        when the installed version no longer takes one of them (the version that trained its checkpoint, after
        `epoch`)."""
        saved = _saved_config(self.out).get("model_config")
        if isinstance(saved, dict):
            self.model_cfg = saved
        try:
            return create_model(self.cfg.model, **self.model_cfg)
        except ModelConfigError as err:
            changed = version_change(recorded_model_sources(self.out, epoch))
            if changed is None:
                raise
            raise InputError(f"{self.out}: {err}, as {changed[0]}; install {changed[1]} to resume it") from None

    def _resume_weights(self, model: nn.Module, ckpt: dict[str, Any], ckpt_path: Path) -> dict[str, Any]:
        """`ckpt`, the checkpoint read from `ckpt_path`, its weights loaded into `model`; InputError in one line when
        they do not fit (naming both versions when the model's plugin is another version than trained them), and a
        warning when they fit another version."""
        changed = version_change(recorded_model_sources(self.out, ckpt["state"]["epoch"]))
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as err:  # names, shapes or number of tensors other than this model has
            why = (f"as {changed[0]}; install {changed[1]} to resume it" if changed else
                   "as the code that builds it is not the code the run started with; resume it with the versions of "
                   f"pneumoscan and of the model's package it started with, or start a new run with another "
                   f"{option('out')}")
            raise InputError(f"{ckpt_path}: its weights do not fit model {self.cfg.model!r} ({first_line(err)}), "
                             f"{why}") from None
        if changed:
            self.warn(f"{self.out}: {changed[0]}; its checkpoint loads, but the run continues with the installed "
                      f"version, so its model may differ from one trained with a single version (pip install "
                      f"'{changed[1]}' to continue as it started)")
        return ckpt

    # -- one epoch ---------------------------------------------------------------------------
    def _loss(self, logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None) -> torch.Tensor:
        smooth = self.cfg.label_smoothing
        soft = targets * (1 - smooth) + 0.5 * smooth
        return F.binary_cross_entropy_with_logits(logits, soft, pos_weight=pos_weight)

    def _finite(self, value: float, epoch: int, what: str) -> float:
        """`value`, or InputError when training has diverged (NaN or infinity), before anything of it is saved."""
        if not math.isfinite(value):
            raise InputError(f"{self.out}: training diverged in epoch {epoch} ({what} {value}); nothing of that epoch "
                             f"was saved, and resuming would diverge again: start a new run (another {option('out')}) "
                             f"with a lower {option('lr')} (this one: {self.cfg.lr})")
        return value

    def _order(self, labels: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        if self.cfg.balance == "sampler":
            weights = torch.as_tensor(np.where(labels == 1, 1.0 / labels.sum(), 1.0 / (labels == 0).sum()))
            return torch.multinomial(weights, len(labels), replacement=True, generator=generator)
        return torch.randperm(len(labels), generator=generator)

    def _load_init(self, model: nn.Module) -> InitRecord | None:
        """Copy the --init weights into `model` (InputError naming the file when they do not fit, or when its record
        is unreadable); the record of a file of pneumoscan's own (pretrain's weights, or a model), whose films it
        trained on are compared with the data later; None for any other file."""
        cfg = self.cfg
        if not written_by_pneumoscan(cfg.init):
            self._say(load_transfer(model, cfg.init, cfg.model))  # e.g. torchvision's or timm's ImageNet weights
            return None
        from pneumoscan.training.pretrain import load_pretrained, read_init_record

        load_pretrained(model, cfg.init)
        return read_init_record(cfg.init)

    def _warn_pretraining_differences(self, data: RunData, init: InitRecord) -> None:
        """Warn when the pretraining that wrote --init prepared the images otherwise than this run (or, for a file
        without a record of its films, split them otherwise), and when the --init file trained on any of this run's
        validation films (or cannot tell: a file from before its record)."""
        from pneumoscan.training.pretrain import differences_warning, overlap_warning

        if differences := differences_warning(init, self.cfg, data.patients.effective, self.image_size):
            self.warn(differences)
        val = data.val.samples
        marks = film_fingerprints([s.path for s in val], data.val.images, self.cfg.cache_dir, data.val.film_marks)
        if seen := overlap_warning(init, self.cfg, marks, [data.patients(s) for s in val],
                                   data.patients.effective):
            self.warn(seen)

    def run(self) -> Path:
        """Train (or continue, with `resume`) and return the path of the final model artifact."""
        with run_lock(self.out, resume=self.resume):  # a run refused before it wrote anything leaves no empty folder
            return self._run(self.resume)

    def _run(self, resume: bool) -> Path:
        cfg = self.cfg
        ckpt_path = self.out / LAST_CHECKPOINT
        if resume and not ckpt_path.exists():
            if not (self.out / "config.json").exists():
                raise InputError(f"{ckpt_path}: nothing to resume; run without {switch('resume')} to start training")
            resume = False  # interrupted before its first epoch ended: start the run again
        if not resume and ckpt_path.exists():
            raise InputError(f"{self.out}: holds an earlier run; pass {switch('resume')} to continue it or choose "
                             f"another {option('out')}")
        if not resume and (self.out / ARTIFACT_NAME).exists():  # an ensemble, a set-threshold copy, a run without last.pt
            raise InputError(f"{self.out / ARTIFACT_NAME}: a model is already there and has no {LAST_CHECKPOINT} to "
                             f"resume from; choose another {option('out')} (training would replace it)")
        if not resume and (held := _pretraining_files(self.out)):
            raise InputError(f"{self.out}: holds a `pneumoscan pretrain` pretraining ({held}), beside whose files the "
                             f"run would write; give {option('out')} a folder of its own for the run")
        if not resume and (others := runs_inside(self.out)):
            raise InputError(f"{self.out}: holds other runs ({', '.join(others)}), so it is no run of its own; give "
                             f"{option('out')} a new folder for this run, such as {self.out / 'NAME'}")
        if resume:  # a crash among the renames of the model and its re-keyed guard (`finish_artifact`): both old
            recover_interrupted([self.out / ARTIFACT_NAME, guard_beside(self.out / ARTIFACT_NAME)])
        saved_ckpt = load_checkpoint(ckpt_path) if resume else None  # read once, here and for its weights below
        if saved_ckpt is not None and (self.out / ARTIFACT_NAME).exists():
            done = saved_ckpt["state"]
            # a model made before the last epochs of a resume with more --epochs is not this run's result
            made_after = read_meta(self.out / ARTIFACT_NAME).training.get("epochs_run", done["epoch"])
            if made_after == done["epoch"] and (done["epoch"] >= cfg.epochs or done["bad_epochs"] >= cfg.patience):
                # leave the finished model (and the guard and ONNX export made for it) untouched
                run_epochs = _saved_config(self.out).get("epochs", cfg.epochs)
                why = (f" (pass a larger {option('epochs')} to train it further)" if done["epoch"] >= cfg.epochs else
                       f", as {_patience_stop(done, run_epochs, cfg.auc_tie)}")
                self._say(f"{self.out}: this run already finished ({_epochs(done['epoch'])}, best "
                          f"{done['best_epoch']}); nothing to resume{why}")
                self._warn_stale_guard(self.out / ARTIFACT_NAME)
                return self.out / ARTIFACT_NAME
        check_writable(self.out)
        for stale in self.out.glob(".*.tmp"):  # left by a run killed mid-write
            stale.unlink()
        if not resume and (decay := cfg.decay_warning()):
            self.warn(decay)
        seed_everything(cfg.seed)
        model = self._resumed_model(saved_ckpt["state"]["epoch"]) if saved_ckpt is not None else \
            create_model(cfg.model, **self.model_cfg)
        check_model_output(model, cfg.model, self.image_size)  # a plugin's model that breaks the contract: one line
        # its weights are loaded before minutes of decoding
        ckpt = None if saved_ckpt is None else self._resume_weights(model, saved_ckpt, ckpt_path)
        # --init is read before the images are decoded, so a wrong file is refused before minutes of work
        init = self._load_init(model) if cfg.init and not resume else None
        data = prepare_data(cfg, self.image_size, self.progress)
        if resume and (self.out / "split.json").is_file():
            saved_split = json.loads((self.out / "split.json").read_text())
            if change := split_change(saved_split, data.split_record, self.out):
                # a moved copy is welcome; other images would mix validation sets and leak training images
                advice = resume_advice(saved_split, data.split_record, manifest=Path(cfg.data).is_file())
                raise InputError(f"{cfg.data}: {change}; {advice}")
        for message in data_warnings(cfg, data):
            self.warn(message)
        # cropped and equalised once here rather than every batch of every epoch; validation where it is scored
        train_images = prepare_pixels(data.train.images, equalize=cfg.equalize, crop=cfg.crop)
        mean, std = image_stats(train_images)
        if init is not None:
            self._warn_pretraining_differences(data, init)
        # channels-last weights, so every activation after the first convolution is channels-last too (a one-channel
        # input is both layouts at once): a training step of the default recipe runs about a fifth faster on this CPU
        # (bench/train_step_speed.py); only the memory layout changes, and the artifact's weights are saved contiguous
        model = model.to(self.device, memory_format=torch.channels_last)
        ema = copy.deepcopy(model).eval() if cfg.ema_decay > 0 else None
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        generator = torch.Generator().manual_seed(cfg.seed)
        labels = data.train.labels
        n_pos, n_neg = int(labels.sum()), int((labels == 0).sum())
        pos_weight = torch.tensor(n_neg / n_pos, device=self.device) if cfg.balance == "weighted" else None
        steps = steps_per_epoch(len(labels), cfg.batch_size)
        total_steps, warmup = cfg.epochs * steps, int(cfg.warmup_epochs * steps)
        state: dict[str, Any] = {"epoch": 0, "step": 0, "best_auc": -1.0, "best_epoch": 0, "bad_epochs": 0, "history": [],
                                 "train_seconds": 0.0, "best_loss": math.inf, "top_auc": -1.0}
        if ckpt is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
            if ema is not None:
                ema.load_state_dict(ckpt["ema"])
            generator.set_state(ckpt["generator"])
            restore_rng_states(ckpt)
            state = {**selection_state(ckpt["state"]["history"], ckpt["state"]["best_epoch"]), **ckpt["state"]}
            mean, std = ckpt["mean"], ckpt["std"]
            self._note_resume(state, _lr_at(state["step"], total_steps, warmup, cfg.lr))
        else:
            self._write_json("config.json", {**cfg.record(), "image_size": self.image_size,
                                             "model_config": self.model_cfg,
                                             # what to install to resume it, when it is a plugin's (the artifact's too)
                                             "model_sources": model_sources([cfg.model]),
                                             **({"init_source": init_source(cfg.init)} if cfg.init else {})})
            self._write_json("split.json", data.split_record)
        recorded = json.loads((self.out / "config.json").read_text())
        init_from = recorded.get("init_source")  # as recorded at the start
        earlier_sources = recorded.get("earlier_model_sources")  # the plugin versions of its epochs before a resume
        meta = ArtifactMeta(
            model_name=cfg.model, model_config=self.model_cfg, image_size=self.image_size, mean=mean, std=std,
            target_recall=cfg.target_recall, train_prevalence=n_pos / len(labels), tta=cfg.tta, equalize=cfg.equalize,
            crop=cfg.crop, model_sources=model_sources([cfg.model]),
            training={"config": cfg.record(), "data": data.split_record["counts"],
                      "skipped": len(data.split_record["skipped"]),
                      # what `evaluate` and `set-threshold` recognise as in-sample films, wherever they are copied
                      "fingerprints": sorted(set(fingerprints(s.path for s in data.train.samples + data.val.samples))),
                      # ... and re-encoded or resized: the same films decoded (see bench/film_fingerprint.py)
                      **film_record([s.path for s in data.train.samples + data.val.samples],
                                    [*data.train.images, *data.val.images], cfg.cache_dir, decoded_film_marks(data)),
                      **({"init": init_from} if init_from else {}),
                      **({"earlier_model_sources": earlier_sources} if earlier_sources else {})},
        )
        aug = AugmentConfig(scale=cfg.aug_zoom, aspect=cfg.aug_aspect, sharpness=cfg.aug_sharpness, strength=cfg.augment)
        eval_model = ema if ema is not None else model
        if resume and state["best_epoch"] == state["epoch"]:  # the run may have stopped before it wrote them
            save_artifact(self.out / BEST_WEIGHTS, eval_model, meta)

        first_epoch = state["epoch"]  # a resume's; the loop may train none
        while state["epoch"] < cfg.epochs and state["bad_epochs"] < cfg.patience:
            epoch = state["epoch"] + 1
            model.train()
            started, seen, loss_sum = time.time(), 0, 0.0
            order = self._order(labels, generator)
            bar = progress_bar(range(steps), desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", progress=self.progress)
            for batch_index in bar:
                end = (batch_index + 1) * cfg.batch_size if batch_index + 1 < steps else len(order)
                idx = np.sort(order[batch_index * cfg.batch_size : end].numpy())
                pixels = to_unit(np.asarray(train_images[idx]))
                x = augment_batch(pixels, aug, generator)
                if cfg.consistency > 0:  # a second view of the same images, drawn only when asked for
                    x = torch.cat([x, augment_batch(pixels, aug, generator)])
                x = ((x - mean) / std).to(self.device)
                y = torch.from_numpy(labels[idx]).float().to(self.device)
                x, y = mixup(x, y, cfg.mixup, generator)
                lr = _lr_at(state["step"], total_steps, warmup, cfg.lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if cfg.consistency > 0:
                    first, second = model(x).reshape(-1).chunk(2)
                    loss = (self._loss(first, y, pos_weight) + self._loss(second, y, pos_weight)) / 2
                    loss = loss + cfg.consistency * bernoulli_js(first, second)
                else:
                    loss = self._loss(model(x), y, pos_weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if ema is not None:
                    update_ema(ema, model, cfg.ema_decay, state["step"])
                state["step"] += 1
                seen += len(idx)
                loss_sum += self._finite(loss.item(), epoch, "training loss") * len(idx)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", img_s=f"{seen / (time.time() - started):.0f}")
            bar.close()
            val_logits = predict_logits(eval_model, data.val.images, meta.preprocessing, tta=cfg.tta)
            self._finite(float(np.abs(val_logits).max()), epoch, "largest validation logit")
            val_probs = sigmoid(val_logits)
            val_labels = data.val.labels
            val_loss = float(F.binary_cross_entropy_with_logits(torch.from_numpy(val_logits), torch.from_numpy(val_labels).float()))
            auc = roc_auc(val_labels, val_probs)
            seconds = time.time() - started
            state["train_seconds"] += seconds
            train_loss, speed = loss_sum / seen, seen / seconds  # the epoch line rounds these once, as the bar does
            row = {"epoch": epoch, "lr": round(lr, 8), "train_loss": round(train_loss, 6), "val_loss": round(val_loss, 6),
                   "val_auc": round(auc, 6), "val_accuracy": round(float(((val_probs >= 0.5) == val_labels).mean()), 6),
                   "seconds": round(seconds, 2), "images_per_s": round(speed, 1)}
            state["history"].append(row)
            state["epoch"] = epoch
            if becomes_kept(state, auc, val_loss, cfg.auc_tie):
                state.update(best_auc=auc, best_loss=val_loss, best_epoch=epoch, bad_epochs=0)
            else:
                state["bad_epochs"] += 1
            state["top_auc"] = max(state["top_auc"], auc)
            self._write_history(state["history"])
            atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "ema": ema.state_dict() if ema is not None else {}, "generator": generator.get_state(),
                               **rng_states(), "state": state, "mean": mean, "std": std}, ckpt_path)
            if state["best_epoch"] == epoch:  # after the checkpoint, which holds these weights if the run stops here
                save_artifact(self.out / BEST_WEIGHTS, eval_model, meta)
            self._say(f"epoch {epoch:3d}  loss {train_loss:.4f}  val_loss {val_loss:.4f}  val_auc {auc:.4f}  "
                       f"{speed:.0f} img/s" + ("  *best*" if state["best_epoch"] == epoch else ""))
        if state["bad_epochs"] >= cfg.patience and first_epoch < state["epoch"] < cfg.epochs:  # a resume's: `_note_resume`
            self._say(f"stopped early after epoch {state['epoch']} of {cfg.epochs}: {_no_better(cfg.auc_tie)} for "
                       f"{_epochs(cfg.patience)} ({option('patience')}); the model keeps epoch {state['best_epoch']} "
                       f"(validation AUC {state['best_auc']:.4f})")
        fitted = _fitted_guard(self.out / ARTIFACT_NAME)  # read before the model file it is keyed to is replaced
        artifact, kept_guard = self._finish(meta, data, state, fitted)
        self._warn_stale(artifact, kept_guard=kept_guard)
        return artifact

    def _warn_stale(self, artifact: Path, kept_guard: bool) -> None:
        """After a resume replaced `artifact`: which of its guard and ONNX export, of those there are, belong to the
        model before, with the command that makes each again (the guard's with the run's recorded data). A guard
        `kept_guard` (`_kept_guard`) is not stale."""
        guard, onnx = guard_path(artifact), artifact.with_suffix(".onnx")
        stale = {}
        if guard.exists() and not kept_guard:
            stale[guard] = read_meta(artifact).fit_guard_command(self.out, self.out)
        if onnx.exists():
            stale[onnx] = f"`pneumoscan export --model {shell_word(self.out)} --out {shell_word(onnx)}`"
        if stale:
            self.warn(f"{' and '.join(p.name for p in stale)} in {self.out} belong{'s' if len(stale) == 1 else ''} "
                      f"to the model before this resume; run {' and '.join(stale.values())} again")

    def _warn_stale_guard(self, artifact: Path) -> None:
        """On a finished run: warn when its guard is keyed to another model file than `artifact` (a resume that
        replaced the model was stopped before its own warning said so), with the command that fits it again."""
        from pneumoscan.inference.ood.guard import OODGuard

        guard = guard_beside(artifact)
        try:
            stale = guard.is_file() and not OODGuard.read(guard).keyed_to(artifact)
        except InputError:  # unreadable: predict and serve say so, with the fix
            return
        if stale:
            self.warn(f"{guard.name} in {self.out} was fitted for another version of {artifact.name}; run "
                      f"{read_meta(artifact).fit_guard_command(self.out, self.out)} again")

    def _finish(self, meta: ArtifactMeta, data: RunData, state: dict[str, Any],
                fitted: tuple[OODGuard, dict[str, torch.Tensor]] | None) -> tuple[Path, bool]:
        """Choose the threshold on validation with the best weights and write the final artifact, with the guard of
        `fitted` (`_fitted_guard` of the file it replaces) keyed to it when `_kept_guard` keeps it; the artifact's
        path and whether the guard was kept."""
        from safetensors.torch import load_file

        model = create_model(self.cfg.model, **self.model_cfg).to(self.device)
        model.load_state_dict(load_file(str(self.out / BEST_WEIGHTS), device=str(self.device)))
        meta.training.update(best_epoch=state["best_epoch"], epochs_run=state["epoch"],
                             train_seconds=round(state["train_seconds"], 1))
        guard = _kept_guard(model, meta, fitted)
        artifact = finish_artifact(self.out, model, meta, data.val, self.cfg.target_recall, seed=self.cfg.seed,
                                   guard=guard, patients=patient_groups(data.val.samples, data.patients))
        return artifact, guard is not None


def _fitted_guard(artifact: Path) -> tuple[OODGuard, dict[str, torch.Tensor]] | None:
    """The guard beside `artifact` with the tensors of `artifact`, when the guard was fitted for that very file;
    None otherwise (no guard, or a stale or unreadable one)."""
    from safetensors.torch import load_file

    from pneumoscan.inference.ood.guard import OODGuard

    path = guard_beside(artifact)
    if not (path.is_file() and artifact.is_file()):
        return None
    try:
        guard = OODGuard.read(path)
    except InputError:
        return None
    return (guard, load_file(str(artifact))) if guard.keyed_to(artifact) else None


def _kept_guard(model: nn.Module, meta: ArtifactMeta,
                fitted: tuple[OODGuard, dict[str, torch.Tensor]] | None) -> OODGuard | None:
    """The guard of `fitted` (`_fitted_guard` of the file the artifact of `model` and `meta` replaces) when the
    tensors and preprocessing it was fitted on are `model`'s and `meta`'s (a resume that kept the same epoch: only
    the training record changed), as its features are then the same; None otherwise. Decided before the artifact
    is written, so the guard is written with it (`finish_artifact`)."""
    if fitted is None:
        return None
    guard, before = fitted
    now = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if now.keys() != before.keys() or not all(torch.equal(now[k], before[k]) for k in now) or \
            (guard.image_size, guard.preprocessing, guard.meta.get("model_name")) != \
            (meta.image_size, meta.preprocessing, meta.model_name):
        return None
    return guard


def finish_artifact(out: Path, model: nn.Module, meta: ArtifactMeta, val: ImageSet, target_recall: float,
                    *, seed: int = 0, guard: OODGuard | None = None,
                    patients: list[str | None] | None = None) -> Path:
    """Score `val` with `model`, store the threshold for `target_recall`, the validation scores (with `patients`, each
    film's patient key, as integers: `stored_scores`) and metrics in `meta`, their intervals drawn by patient as
    `evaluate` draws them (of films without `patients`), write OUT/val_predictions.csv and the artifact
    OUT/model.safetensors. `guard`: one fitted on `model`'s very weights and preprocessing (`_kept_guard`), keyed to
    the new artifact and written with it, both or neither (`atomic_write_all`), so no interruption leaves the model
    new and its guard keyed to the one before."""
    probs = sigmoid(predict_logits(model, val.images, meta.preprocessing, tta=meta.tta))
    labels = val.labels
    meta.target_recall = target_recall
    meta.threshold = float(threshold_for_recall(labels, probs, target_recall))
    # unrounded, so the stored threshold reaches the target recall on the stored scores exactly
    meta.val_scores = stored_scores(labels, probs, patients)
    with warnings.catch_warnings():  # stored, not printed: `evaluate` and `report` warn where they show them
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        # a patient's several films are not independent: resampled one by one, they gave intervals much too narrow
        meta.val_metrics = summarize(labels, probs, meta.threshold, n_boot=500, seed=seed, groups=patients)
    # absolute, so `report` finds the films from any folder (older runs hold paths relative to where they trained)
    write_predictions(out / "val_predictions.csv", [replace(s, path=Path(os.path.abspath(s.path))) for s in val.samples],
                      probs)
    if guard is None:
        return save_artifact(out / ARTIFACT_NAME, model, meta)
    written: list[Path] = []  # the artifact's temp file, which the guard is keyed to (a rename keeps its bytes)
    write_artifact = artifact_writer(model, meta)

    def artifact(tmp: Path) -> None:
        write_artifact(tmp)
        written.append(tmp)

    def keyed_guard(tmp: Path) -> None:
        guard.key_to(written[-1])
        guard.write(tmp)

    return atomic_write_all({out / ARTIFACT_NAME: artifact, guard_beside(out / ARTIFACT_NAME): keyed_guard},
                            mode=0o644)[0]


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True, verbose: bool = True,
          warn: Callable[[str], None] = write_warning) -> Path:
    """Train a model as configured; returns the final artifact path. Without `verbose`, no epoch lines; `warn`
    says each warning (default: a `pneumoscan: warning:` line on stderr)."""
    return Trainer(cfg, progress=progress, verbose=verbose, warn=warn, resume=resume).run()
