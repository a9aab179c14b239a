"""Seconds per training step of the default recipe, with contiguous and with channels-last activations.

    PYTHONPATH=src .venv/bin/python bench/train_step_speed.py [--steps 10] [--rounds 3] [--model resnet10]

One step as `pneumoscan train` runs it by default: a batch of 64 images at the model's input size, two
augmented views each (the consistency loss), forward, loss, backward and an AdamW update. The two memory
layouts alternate round by round so that a change of machine speed hits both alike; each round reports
the mean of --steps steps after two warm-up steps. Writes bench/results/train_step_speed.{json,md}.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch
import torch.nn.functional as F

from _results import write_results

from pneumoscan.data.augment import AugmentConfig, augment_batch
from pneumoscan.models.registry import create_model
from pneumoscan.training.config import DEFAULT_CONSISTENCY, TrainConfig
from pneumoscan.training.trainer import bernoulli_js

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def seconds_per_step(model_name: str, layout: torch.memory_format, steps: int, size: int, batch: int) -> float:
    """Mean wall seconds of `steps` training steps (after two warm-up steps) in memory `layout`."""
    torch.manual_seed(0)
    model = create_model(model_name).to(memory_format=layout).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(batch, 1, size, size, generator=generator)
    targets = (torch.rand(batch, generator=generator) > 0.5).float()
    aug = AugmentConfig(scale=TrainConfig.aug_zoom, aspect=TrainConfig.aug_aspect, sharpness=TrainConfig.aug_sharpness,
                        strength=TrainConfig.augment)

    def step() -> None:
        x = torch.cat([augment_batch(pixels, aug, generator), augment_batch(pixels, aug, generator)])
        first, second = model(x).reshape(-1).chunk(2)  # one-channel input: both layouts at once
        loss = (F.binary_cross_entropy_with_logits(first, targets) + F.binary_cross_entropy_with_logits(second, targets)) / 2
        loss = loss + DEFAULT_CONSISTENCY * bernoulli_js(first, second)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=TrainConfig.model)
    parser.add_argument("--size", type=int, default=128, help="input size (the default recipe's is 128)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    batch = TrainConfig.batch_size
    times: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    for round_index in range(args.rounds):
        for name, layout in LAYOUTS.items():
            times[name].append(seconds_per_step(args.model, layout, args.steps, args.size, batch))
            print(f"round {round_index + 1} {name:13s} {times[name][-1]:.3f} s/step", flush=True)
    base = min(times["contiguous"])
    rows = [{"layout": name, "model": args.model, "input_px": args.size, "batch": f"{batch} x 2 views",
             "threads": torch.get_num_threads(), "best_s_per_step": round(min(t), 4),
             "median_s_per_step": round(sorted(t)[len(t) // 2], 4), "speedup_vs_contiguous": round(base / min(t), 2)}
            for name, t in times.items()]
    write_results("train_step_speed", rows, list(rows[0]),
                  command="PYTHONPATH=src .venv/bin/python bench/train_step_speed.py " + shlex.join(sys.argv[1:]),
                  note="One training step of the default recipe (two augmented views, consistency loss, AdamW) on "
                       "random pixels; layouts alternate round by round. `pneumoscan train` uses channels-last.")


if __name__ == "__main__":
    main()
