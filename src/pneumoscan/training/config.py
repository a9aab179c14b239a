"""Training configuration: every knob of a run, saved verbatim as RUN_DIR/config.json."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

DEFAULT_MODEL = "resnet10"
# The TrainConfig defaults below are the shipped model's recipe, chosen on validation
# (bench/results/ablation.md): resnet10 at 128 px, histogram-equalised, with a class-balanced sampler.


@dataclass
class TrainConfig:
    """One training run. `image_size` None means the model's registered default."""

    data: str
    out: str
    model: str = DEFAULT_MODEL
    image_size: int | None = None
    epochs: int = 25
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    seed: int = 0  # initialisation, batch order and augmentation
    split_seed: int = 0  # which patients go to validation; fixed so runs with other seeds share it
    val_fraction: float = 0.15
    use_given_val: bool = False
    patience: int = 8
    target_recall: float = 0.95
    augment: float = 1.0
    balance: str = "sampler"  # sampler (class-balanced batches) | weighted (loss) | none
    label_smoothing: float = 0.0
    mixup: float = 0.0  # Beta(alpha, alpha) of mixup; 0 disables it
    ema_decay: float = 0.0  # 0 disables the exponential moving average of weights
    tta: bool = False
    equalize: bool = True  # per-image histogram equalisation, in training and at every prediction
    init: str | None = None  # pretrained.safetensors of `pneumoscan pretrain` to start from
    max_images: int | None = None  # cap per class, for quick experiments
    cache_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_args(cls, args: Any) -> "TrainConfig":
        """The config of parsed command-line options: those left unset (None) keep their defaults."""
        return cls.from_dict({k: v for k, v in vars(args).items() if v is not None})
