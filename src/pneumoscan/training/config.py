"""Training configuration: every knob of a run, saved verbatim as RUN_DIR/config.json."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from pneumoscan import PATIENT_KEYS
from pneumoscan.errors import InputError, in_python, option, words

# Largest input side a model may have: `train --image-size` refuses more, and a model header, guard or ONNX export
# saying more is an edited file. No chest film holds detail beyond about 4,000 px a side, and at this size one film's
# first ResNet feature map alone takes 1 GiB, so a larger size only exhausts memory.
MAX_IMAGE_SIZE = 4096  # read by the CLI parser and model headers: this module imports nothing heavy

DEFAULT_MODEL = "resnet10"
API_ONLY = ("weight_decay", "warmup_epochs")  # settings the Python API takes and `train` has no flag for
RESUME_MAY_CHANGE = ("out", "epochs", "data", "cache_dir")  # a resumed run's folders may have moved; more epochs
# The zoom and stretch of every recipe before the sixth session (--aug-zoom/--aug-aspect did not exist).
EARLIER_GEOMETRY_AUGMENT = {"aug_zoom": 0.10, "aug_aspect": 0.0}
# One view of each image for at most 25 epochs: every recipe before the eighth session.
EARLIER_ONE_VIEW = {"consistency": 0.0, "epochs": 25}
# Settings added after runs had been saved, with the values those runs trained with (not today's defaults).
# (split_seed is the other such setting: before it existed, `seed` chose the validation patients.)
# Before --patient-key, the patient was read from the file name alone: `name`.
SAVED_BEFORE_THEY_EXISTED = {"equalize": False, "crop": False, "consistency": 0.0, "aug_sharpness": 0.0,
                             "patient_key": "name", "auc_tie": 0.0, **EARLIER_GEOMETRY_AUGMENT}
# The TrainConfig defaults below are the shipped model's recipe, chosen on validation
# (bench/results/ablation.md, row AC): resnet10 at 128 px, histogram-equalised, with a class-balanced
# sampler, zoom +-20 %, a stretch of up to 10 % of one axis against the other, and a consistency loss
# of weight 10 between two augmented views of each image, for at most 30 epochs.
DEFAULT_CONSISTENCY = 10.0
PRETRAIN_EPOCHS = 15  # `pretrain --epochs` of a new pretraining (a resume keeps its own)
MAX_SEED = 2**32 - 1  # numpy seeds its generators with 0 to 2**32 - 1 only
# --balance: class-balanced batches, a class-weighted loss, or neither
BALANCES = ("sampler", "weighted", "none")


@dataclass
class TrainConfig:
    """One training run. `image_size` None means the model's registered default."""

    data: str
    out: str
    model: str = DEFAULT_MODEL
    image_size: int | None = None
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    seed: int = 0  # initialisation, batch order and augmentation
    split_seed: int = 0  # which patients go to validation; fixed so runs with other seeds share it
    val_fraction: float = 0.15
    use_given_val: bool = False
    patient_key: str = "auto"  # where the patient of an image is read (data/patients.py): auto | name | folder
    patience: int = 8
    # Validation AUCs within this of the highest so far count as a tie: an epoch in it replaces the kept one when its
    # validation loss is lower, or when the kept one's AUC has fallen more than this below the highest (online, epoch
    # by epoch: training/selection.py); 0: the epoch of the highest AUC is kept.
    auc_tie: float = 0.0
    target_recall: float = 0.95
    augment: float = 1.0
    aug_zoom: float = 0.20  # random zoom in or out by up to this fraction (scaled by `augment`)
    aug_aspect: float = 0.10  # one axis x up to (1 + this), the other / as much (scaled by `augment`)
    aug_sharpness: float = 0.0  # soften or sharpen: x + k (x - blur(x)), |k| up to this (scaled by `augment`)
    balance: str = "sampler"  # sampler (class-balanced batches) | weighted (loss) | none
    label_smoothing: float = 0.0
    mixup: float = 0.0  # Beta(alpha, alpha) of mixup; 0 disables it
    # Weight of the agreement loss between two augmented views of each image; 0: one view. None:
    # DEFAULT_CONSISTENCY, or 0 when augmentation is off or mixup is on (which it cannot be combined with).
    consistency: float | None = None
    ema_decay: float = 0.0  # 0 disables the exponential moving average of weights
    tta: bool = False
    equalize: bool = True  # per-image histogram equalisation, in training and at every prediction
    crop: bool = False  # crop every image to a square as wide as the body (data/framing.py), likewise
    init: str | None = None  # pretrained.safetensors of `pneumoscan pretrain` to start from
    max_images: int | None = None  # cap per class, for quick experiments
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.consistency is None:
            self.consistency = DEFAULT_CONSISTENCY if self.augment > 0 and not self.mixup > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def record(self) -> dict[str, Any]:
        """What config.json and the model file's training record keep of the settings: every one, and beside `data`
        as typed (relative to the folder `train` is started in) the absolute path it resolves to, `data_resolved`,
        so that later commands find the training data from any folder (`training_data_folder`)."""
        return {**self.to_dict(), "data_resolved": str(Path(self.data).resolve())}

    def check(self, resumed: bool = False) -> None:
        """InputError naming the option when a setting is out of range (before anything is written). `resumed`: the
        settings of a run being resumed, which a resume cannot change: a negative warmup_epochs, which the Python
        API took before it was checked, is kept (the run's learning-rate schedule was made with it); an --out in the
        data folder (`check_out_of_data`) is to be moved out."""
        limits = [
            ("epochs", self.epochs, self.epochs >= 1, "at least 1"),
            ("batch_size", self.batch_size, self.batch_size >= 2, "at least 2 (batch normalisation needs two images)"),
            ("lr", self.lr, 0 < self.lr < math.inf, "above 0 and finite, e.g. 2e-3"),
            ("weight_decay", self.weight_decay, 0 <= self.weight_decay < math.inf, "0 (off) or more, and finite, e.g. 0.05"),
            ("warmup_epochs", self.warmup_epochs,
             (resumed or 0 <= self.warmup_epochs) and abs(self.warmup_epochs) < math.inf,
             "0 (none) or more, and finite, e.g. 1"),
            ("seed", self.seed, 0 <= self.seed <= MAX_SEED, f"0 to {MAX_SEED} (numpy's seeds)"),
            ("split_seed", self.split_seed, 0 <= self.split_seed <= MAX_SEED, f"0 to {MAX_SEED} (numpy's seeds)"),
            ("patience", self.patience, self.patience >= 1, "at least 1"),
            ("auc_tie", self.auc_tie, 0 <= self.auc_tie < 1, "0 (the highest AUC) or more and below 1, e.g. 0.002"),
            ("val_fraction", self.val_fraction, 0 < self.val_fraction < 1, "strictly between 0 and 1, e.g. 0.15"),
            ("target_recall", self.target_recall, 0 < self.target_recall <= 1, "above 0 and at most 1, e.g. 0.95"),
            ("augment", self.augment, 0 <= self.augment < math.inf, "0 (off) or more, and finite"),
            ("aug_zoom", self.aug_zoom, 0 <= self.aug_zoom and self.aug_zoom * self.augment < 1,
             f"at least 0, and below 1 once multiplied by {option('augment')}, e.g. 0.2"),
            ("aug_aspect", self.aug_aspect, 0 <= self.aug_aspect < 1, "at least 0 and below 1, e.g. 0.15"),
            ("aug_sharpness", self.aug_sharpness, 0 <= self.aug_sharpness and self.aug_sharpness * self.augment <= 1,
             f"at least 0, and at most 1 once multiplied by {option('augment')}, e.g. 0.5"),
            ("label_smoothing", self.label_smoothing, 0 <= self.label_smoothing < 1, "at least 0 and below 1"),
            ("mixup", self.mixup, 0 <= self.mixup < math.inf, "0 (off) or more, and finite, e.g. 0.2"),
            ("consistency", self.consistency, 0 <= self.consistency < math.inf, "0 (off) or more, and finite, e.g. 10"),
            ("consistency", self.consistency, not (self.consistency > 0 and self.mixup > 0),
             f"0 when {option('mixup')} is on (a blend has no second view to agree with)"),
            ("consistency", self.consistency, not (self.consistency > 0 and self.augment <= 0),
             f"0 when {option('augment')} is 0 (two unaugmented views are the same image)"),
            ("ema_decay", self.ema_decay, 0 <= self.ema_decay < 1, "0 (off) or below 1, e.g. 0.999"),
            ("image_size", self.image_size, self.image_size is None or 16 <= self.image_size <= MAX_IMAGE_SIZE,
             f"from 16 to {MAX_IMAGE_SIZE}"),
            ("balance", self.balance, self.balance in BALANCES, f"one of {', '.join(BALANCES)}"),
            ("patient_key", self.patient_key, self.patient_key in PATIENT_KEYS, f"one of {', '.join(PATIENT_KEYS)}"),
            ("max_images", self.max_images, self.max_images is None or self.max_images >= 1, "at least 1"),
        ]
        for name, value, ok, rule in limits:
            if not ok:  # NaN fails every comparison, so it lands here too
                raise InputError(f"{_named(name, value)}: must be {rule}")
        from pneumoscan.data.layout import check_out_of_data

        check_out_of_data(self.out, self.data, resume=resumed)

    def decay_warning(self) -> str:
        """A warning when weight_decay x lr is 1 or more: AdamW then scales every weight by 1 - lr x weight_decay
        each step, which zeroes or flips them and the model collapses; '' otherwise."""
        shrink = self.weight_decay * self.lr
        if not shrink >= 1:
            return ""
        return (f"{_named('weight_decay', self.weight_decay)} with {option('lr', self.lr)}: AdamW scales every weight "
                f"by 1 - lr x weight_decay ({1 - shrink:.3g}) each step, which zeroes or flips them and collapses the "
                f"model; keep weight_decay x lr below 1 (default weight_decay 0.05)")

    def collapse_advice(self) -> tuple[str, str]:
        """The likely cause of a run whose model collapsed to one output, and what to change: its weight decay when
        that is further above its default than the learning rate is above its own (it pulls every weight toward 0
        each step), else its learning rate."""
        new_run = f"start a new run (another {option('out')})"
        if self.weight_decay / TrainConfig.weight_decay > max(1.0, self.lr / TrainConfig.lr):
            return (f"the run collapsed, most likely from its weight decay, {_named('weight_decay', self.weight_decay)} "
                    f"(default {TrainConfig.weight_decay}), which pulls every weight toward 0 each step",
                    f"{new_run} with a lower weight_decay, or a lower {option('lr')} (this one: {self.lr:g})")
        return ("the run collapsed, most often from a learning rate too high for it",
                f"{new_run} with a lower {option('lr')} (this one: {self.lr:g})")

    @staticmethod
    def resume_conflicts(saved: dict[str, Any], given: dict[str, Any], label: str) -> str:
        """The settings in `given` that differ from the interrupted run's `saved` ones, as
        '--seed 5 (LABEL: 0), ...' ('' when none; an unset one as '--image-size left out (LABEL: 32)'); the folders
        and --epochs may change."""
        saved = TrainConfig.as_trained(saved)
        changed = [k for k in given if k not in RESUME_MAY_CHANGE and given[k] != saved.get(k)]

        def said(key: str, value: Any) -> str:
            return f"{option(key)} left out" if value is None else option(key, value)

        return ", ".join(f"{said(k, given[k])} ({label}: {'left out' if saved.get(k) is None else saved[k]})"
                         for k in changed)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @staticmethod
    def as_trained(saved: dict[str, Any]) -> dict[str, Any]:
        """A run's saved settings with those it predates filled in as it trained with them."""
        return {**SAVED_BEFORE_THEY_EXISTED, "split_seed": saved.get("seed", 0), **saved}

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> "TrainConfig":
        """The config a run saved in its config.json, as it trained (older runs lack newer settings)."""
        return cls.from_dict(cls.as_trained(saved))

    @classmethod
    def from_args(cls, args: Any) -> "TrainConfig":
        """The config of parsed command-line options: those left unset (None) keep their defaults."""
        return cls.from_dict({k: v for k, v in vars(args).items() if v is not None})


def _named(name: str, value: Any) -> str:
    """Setting `name` at `value` as an error names it: as `option` does, but a setting `train` has no flag for
    (API_ONLY: one a run made through the Python API saved) by its Python name on the command line too."""
    return f"{name}={value}" if name in API_ONLY and not in_python() else option(name, value)


def train_config(given: dict[str, Any], *, resume: bool = False) -> TrainConfig:
    """The config `train` runs with, from the settings `given` (TrainConfig field names; `out` always, unset ones
    left out): a new run's, or with `resume` the saved run's own, where only the folders and --epochs may change.
    InputError when `data` is missing or a resumed run is given other settings."""
    resume_cfg = Path(given["out"]) / "config.json"
    if resume and resume_cfg.exists():
        try:
            saved = json.loads(resume_cfg.read_text())
        except ValueError:
            saved = None
        if not isinstance(saved, dict) or "data" not in saved:
            raise InputError(f"{resume_cfg}: not a `pneumoscan train` run; check {option('out')}")
        flags = TrainConfig.resume_conflicts(saved, given, "run")
        if flags:
            raise InputError(f"{resume_cfg}: {flags}: a resumed run keeps its settings (only "
                             f"{', '.join(map(option, ('epochs', 'data')))} and {option('cache_dir')} may change); "
                             f"drop {words('the option', 'the argument')}, or start a new run with another {option('out')}")
        cfg = TrainConfig.from_saved({**saved, **_resumed_data(saved, Path(given["out"])),
                                      **{k: given[k] for k in RESUME_MAY_CHANGE if k in given}})
        cfg.image_size = saved.get("image_size")
        return cfg
    if resume and not given.get("data"):
        raise InputError(f"{resume_cfg}: no run to resume here; check {option('out')}, or start the run with "
                         f"{words('--data DIR', '`data`')}")
    if not given.get("data"):
        raise InputError(f"train needs {words('--data DIR', '`data`')} (a folder with train/NORMAL and "
                         f"train/PNEUMONIA)")
    return TrainConfig.from_dict(given)


def _resumed_data(saved: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The `data` a run resumed without --data reads: its recorded --data when that is where it is found from this
    folder too, else where it is found (`training_data_folder`: `train --resume` run from another folder than the
    one the run was started in); {} (as recorded) when it is not found."""
    found = training_data_folder(saved, run_dir)
    if found is None or Path(str(saved.get("data"))).resolve() == found.resolve():
        return {}
    return {"data": str(found)}


def started_in(run_dir: str | Path) -> Path | None:
    """The folder `train` was started in, inferred from the `out` in the run folder's config.json (the run folder's
    path ends in it); None when it cannot be: no config.json, an absolute `out`, or one the folder's path does not
    end in (a model file copied out of its run folder)."""
    run_dir = Path(run_dir)
    try:
        out = Path(json.loads((run_dir / "config.json").read_text())["out"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    here = run_dir.resolve()
    n = len(out.parts)
    if out.is_absolute() or here.parts[len(here.parts) - n:] != out.parts:
        return None
    return here.parents[n - 1] if n else here  # `--out .`: started in the run folder itself


def run_folders(run_dir: str | Path) -> list[Path]:
    """Where a run's relative file paths may be found: the run folder, then the folder `train` was started in
    (`started_in`; runs before the twelfth session recorded their validation paths relative to that folder)."""
    run_dir = Path(run_dir)
    start = started_in(run_dir)
    return [run_dir] if start is None or start == run_dir.resolve() else [run_dir, start]


def data_places(config: dict[str, Any], run_dir: str | Path | None = None) -> list[Path]:
    """Where the `--data` of a run's settings (`config`: its config.json, or a model file's training["config"]) may be:
    the absolute path it resolved to when training started (`data_resolved`, recorded since the twenty-third
    session), and `--data` as typed when absolute, or when relative (older runs), joined to the folder `train` was
    started in, inferred (`started_in`) when `run_dir` (the model file's folder) is its run folder. Empty when the
    settings name no data, or only a relative path that cannot be placed (judged from the current folder, it could
    name another folder)."""
    places = [Path(config["data_resolved"])] if config.get("data_resolved") else []
    typed = Path(config["data"]) if config.get("data") else None
    if typed is not None and typed.is_absolute():
        places.append(typed)
    elif typed is not None and run_dir is not None:
        start = started_in(run_dir)
        if start is not None:
            places.append(start / typed)
    return list(dict.fromkeys(places))


def trained_patient_key(config: dict[str, Any]) -> str:
    """The --patient-key a model's training settings (`config`, as `data_record` gives them) keyed its films by:
    `name` when they record none, as a run before --patient-key existed (SAVED_BEFORE_THEY_EXISTED) or a model
    recording no training keyed them."""
    return config.get("patient_key") or SAVED_BEFORE_THEY_EXISTED["patient_key"]


def data_record(training: dict[str, Any],
                run_dir: str | Path | None = None) -> tuple[dict[str, Any], str | Path | None]:
    """The settings recording a model's training `--data` (`training`: the model file's training record) and the run
    folder to place a relative one from (`data_places`): its own `config` with `run_dir` (the model file's folder),
    else, for an ensemble, the first member's whose run folder as recorded is still one (`member_run_folder`), with
    it, or failing that its first member's, with None (the members all trained on one data set, as they share a
    validation split; `pneumoscan ensemble` records where it was, `member_data_placed`, which an ensemble moved with
    its runs and data outlives); ({}, None) when none does."""
    config = training.get("config")
    if isinstance(config, dict) and config.get("data"):
        return config, run_dir
    members = training.get("members")
    recorded = [member for member in (members if isinstance(members, list) else [])
                if isinstance(member, dict) and isinstance(member.get("config"), dict) and member["config"].get("data")]
    for member in recorded:  # one member's run folder gone or renamed: another's may still place the data
        folder = member_run_folder(member)
        if folder is not None:
            return member["config"], folder
    return (recorded[0]["config"], None) if recorded else ({}, None)


def member_run_folder(record: dict[str, Any]) -> Path | None:
    """An ensemble member's run folder as its record names it (`run`: as given to `pneumoscan ensemble`, so a relative
    one from the current folder), when that is still a run folder trained on the `--data` the record names (its
    config.json); else None."""
    run, config = record.get("run"), record.get("config")
    if not isinstance(run, str) or not run or not isinstance(config, dict):
        return None
    try:
        found = json.loads((Path(run) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return Path(run) if isinstance(found, dict) and found.get("data") == config.get("data") else None


def member_data_placed(config: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """An ensemble member's settings (`config`, of the run in `run_dir`) with where its `--data` is (`data_resolved`)
    as its run folder places it (`data_places`) when it does not record that itself (a run from before it was
    recorded), so that the ensemble finds it from any folder as the run does; as they are when it cannot be placed."""
    if config.get("data_resolved"):
        return config
    places = data_places(config, run_dir)
    return {**config, "data_resolved": str(places[0].resolve())} if places else config


def training_data_folder(config: dict[str, Any], run_dir: str | Path | None = None) -> Path | None:
    """The data a run's settings name (`data_places`) as found now: the first of its places that exists; None when
    none does or none can be placed."""
    return next((place for place in data_places(config, run_dir) if place.exists()), None)
