"""A training run, start to end: the model, optimiser and films set up (afresh, or from the checkpoint of a resume),
the epoch loop (augmentation, loss, the kept epoch, early stopping, a checkpoint per epoch) and the final artifact."""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pneumoscan.artifact import ARTIFACT_NAME, BEST_WEIGHTS, ArtifactMeta, save_artifact
from pneumoscan.data.augment import AugmentConfig, augment_batch, mixup
from pneumoscan.data.fingerprint import film_fingerprints, film_record, fingerprints
from pneumoscan.data.patients import patient_groups
from pneumoscan.data.preprocess import prepare_pixels, to_unit
from pneumoscan.errors import InputError, option
from pneumoscan.evaluation.metrics import roc_auc
from pneumoscan.inference.batch import device_for, predict_logits, sigmoid
from pneumoscan.inference.ood.guard import guard_beside
from pneumoscan.models.registry import (check_model_output, create_model, get_spec, is_registered, model_config,
                                        model_sources, require_registered)
from pneumoscan.outputs import recover_interrupted
from pneumoscan.progress import progress_bar, write_warning
from pneumoscan.training.checkpoint import atomic_torch_save, check_writable, load_checkpoint, restore_rng_states, \
    rng_states, run_lock
from pneumoscan.training.config import TrainConfig
from pneumoscan.training.finish import (finish_artifact, fitted_guard, kept_guard, one_output, one_output_warning,
                                        stale_after_resume, stale_guard)
from pneumoscan.training.recipe import (bernoulli_js, image_stats, lr_at, seed_everything, steps_per_epoch,
                                        update_ema)
from pneumoscan.training.resume import finished_line, note_resume, resume_weights, resumed_model
from pneumoscan.training.run_data import RunData, decoded_film_marks, data_warnings, prepare_data
from pneumoscan.training.run_folder import (LAST_CHECKPOINT, checkpoint_epoch, recorded_model_sources, run_resumes,
                                            write_history, write_json)
from pneumoscan.training.selection import becomes_kept, epochs_word, no_better, selection_state
from pneumoscan.training.split_check import resume_advice, split_change
from pneumoscan.training.transfer import init_source, load_transfer, written_by_pneumoscan

if TYPE_CHECKING:
    from pneumoscan.inference.ood.guard import OODGuard
    from pneumoscan.training.pretrain import InitRecord


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
            trained = recorded_model_sources(self.out, checkpoint_epoch(self.out))
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
        resume = run_resumes(self.out, resume)
        if resume:  # a crash among the renames of the model and its re-keyed guard (`finish_artifact`): both old
            recover_interrupted([self.out / ARTIFACT_NAME, guard_beside(self.out / ARTIFACT_NAME)])
        saved_ckpt = load_checkpoint(ckpt_path) if resume else None  # read once, here and for its weights below
        if saved_ckpt is not None and (done := finished_line(self.out, saved_ckpt["state"], cfg)) is not None:
            self._say(done)
            self._warn_stale_guard(self.out / ARTIFACT_NAME)
            return self.out / ARTIFACT_NAME
        check_writable(self.out)
        for stale in self.out.glob(".*.tmp"):  # left by a run killed mid-write
            stale.unlink()
        if not resume and (decay := cfg.decay_warning()):
            self.warn(decay)
        seed_everything(cfg.seed)
        if saved_ckpt is not None:
            model, self.model_cfg = resumed_model(cfg.model, self.out, self.model_cfg, saved_ckpt["state"]["epoch"])
        else:
            model = create_model(cfg.model, **self.model_cfg)
        check_model_output(model, cfg.model, self.image_size)  # a plugin's model that breaks the contract: one line
        # its weights are loaded before minutes of decoding
        ckpt = None if saved_ckpt is None else resume_weights(model, cfg.model, saved_ckpt, ckpt_path, self.out,
                                                              self.warn)
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
            note_resume(cfg, self.out, state, lr_at(state["step"], total_steps, warmup, cfg.lr), self._say, self.warn)
        else:
            write_json(self.out, "config.json", {**cfg.record(), "image_size": self.image_size,
                                                 "model_config": self.model_cfg,
                                                 # what to install to resume it, when it is a plugin's (the artifact's too)
                                                 "model_sources": model_sources([cfg.model]),
                                                 **({"init_source": init_source(cfg.init)} if cfg.init else {})})
            write_json(self.out, "split.json", data.split_record)
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
                lr = lr_at(state["step"], total_steps, warmup, cfg.lr)
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
            write_history(self.out, state["history"])
            atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "ema": ema.state_dict() if ema is not None else {}, "generator": generator.get_state(),
                               **rng_states(), "state": state, "mean": mean, "std": std}, ckpt_path)
            if state["best_epoch"] == epoch:  # after the checkpoint, which holds these weights if the run stops here
                save_artifact(self.out / BEST_WEIGHTS, eval_model, meta)
            self._say(f"epoch {epoch:3d}  loss {train_loss:.4f}  val_loss {val_loss:.4f}  val_auc {auc:.4f}  "
                       f"{speed:.0f} img/s" + ("  *best*" if state["best_epoch"] == epoch else ""))
        if state["bad_epochs"] >= cfg.patience and first_epoch < state["epoch"] < cfg.epochs:  # a resume's: `note_resume`
            self._say(f"stopped early after epoch {state['epoch']} of {cfg.epochs}: {no_better(cfg.auc_tie)} for "
                       f"{epochs_word(cfg.patience)} ({option('patience')}); the model keeps epoch {state['best_epoch']} "
                       f"(validation AUC {state['best_auc']:.4f})")
        fitted = fitted_guard(self.out / ARTIFACT_NAME)  # read before the model file it is keyed to is replaced
        artifact, guard_kept = self._finish(meta, data, state, fitted)
        self._warn_stale(artifact, kept_guard=guard_kept)
        return artifact

    def _warn_stale(self, artifact: Path, kept_guard: bool) -> None:
        """After a resume replaced `artifact`: warn which of its guard and ONNX export belong to the model before
        (`stale_after_resume`; a guard `kept_guard` is not stale)."""
        if (stale := stale_after_resume(self.out, artifact, kept_guard)) is not None:
            self.warn(stale)

    def _warn_stale_guard(self, artifact: Path) -> None:
        """On a finished run: warn when its guard is keyed to another model file than `artifact` (`stale_guard`)."""
        if (stale := stale_guard(self.out, artifact)) is not None:
            self.warn(stale)

    def _finish(self, meta: ArtifactMeta, data: RunData, state: dict[str, Any],
                fitted: tuple[OODGuard, dict[str, torch.Tensor]] | None) -> tuple[Path, bool]:
        """Choose the threshold on validation with the best weights and write the final artifact, with the guard of
        `fitted` (`fitted_guard` of the file it replaces) keyed to it when `kept_guard` keeps it; the artifact's
        path and whether the guard was kept."""
        from safetensors.torch import load_file

        model = create_model(self.cfg.model, **self.model_cfg).to(self.device)
        model.load_state_dict(load_file(str(self.out / BEST_WEIGHTS), device=str(self.device)))
        meta.training.update(best_epoch=state["best_epoch"], epochs_run=state["epoch"],
                             train_seconds=round(state["train_seconds"], 1))
        guard = kept_guard(model, meta, fitted)
        artifact = finish_artifact(self.out, model, meta, data.val, self.cfg.target_recall, seed=self.cfg.seed,
                                   guard=guard, patients=patient_groups(data.val.samples, data.patients))
        if (probability := one_output(meta.val_scores["probs"])) is not None:
            self.warn(one_output_warning(self.out, probability, self.cfg.collapse_advice()))
        return artifact, guard is not None


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True, verbose: bool = True,
          warn: Callable[[str], None] = write_warning) -> Path:
    """Train a model as configured; returns the final artifact path. Without `verbose`, no epoch lines; `warn`
    says each warning (default: a `pneumoscan: warning:` line on stderr)."""
    return Trainer(cfg, progress=progress, verbose=verbose, warn=warn, resume=resume).run()
