"""--consistency: two augmented views per image and a Jensen-Shannon agreement loss between them."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from pneumoscan.errors import InputError
from pneumoscan.training.config import DEFAULT_CONSISTENCY, TrainConfig
from pneumoscan.training.recipe import bernoulli_js
from pneumoscan.training.trainer import train

logits = st.lists(st.floats(-12, 12, allow_nan=False), min_size=1, max_size=8)


def test_js_is_zero_for_agreement_and_matches_a_hand_value() -> None:
    a = torch.tensor([3.0, -2.0, 0.0])
    assert float(bernoulli_js(a, a)) == pytest.approx(0.0, abs=1e-7)
    p, q = 0.9, 0.6  # JS of Bernoulli(0.9) and Bernoulli(0.6), from the definition
    m = (p + q) / 2
    kl = lambda a, b: a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b))  # noqa: E731
    expected = (kl(p, m) + kl(q, m)) / 2
    got = bernoulli_js(torch.tensor([math.log(p / (1 - p))]), torch.tensor([math.log(q / (1 - q))]))
    assert float(got) == pytest.approx(expected, rel=1e-4)


@settings(max_examples=50, deadline=None)
@given(logits, st.data())
def test_js_is_symmetric_bounded_and_grows_with_disagreement(first: list[float], data: st.DataObject) -> None:
    second = data.draw(st.lists(st.floats(-12, 12, allow_nan=False), min_size=len(first), max_size=len(first)))
    a, b = torch.tensor(first), torch.tensor(second)
    js = float(bernoulli_js(a, b))
    assert js == pytest.approx(float(bernoulli_js(b, a)), abs=1e-6)
    assert -1e-6 <= js <= math.log(2) + 1e-6
    assert float(bernoulli_js(a, a + 1.0)) <= float(bernoulli_js(a, a + 3.0)) + 1e-6


def test_consistency_and_mixup_are_refused_together_and_the_flag_parses() -> None:
    from pneumoscan.parser import build_parser

    with pytest.raises(InputError, match="--consistency"):
        TrainConfig(data="d", out="o", consistency=10, mixup=0.2).check()
    with pytest.raises(InputError, match="--consistency"):
        TrainConfig(data="d", out="o", consistency=-1).check()
    with pytest.raises(InputError, match="--augment is 0"):
        TrainConfig(data="d", out="o", consistency=10, augment=0).check()
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--consistency", "0"])
    assert TrainConfig.from_args(args).consistency == 0


def test_the_default_weight_is_the_shipped_recipe_and_steps_aside_for_options_it_cannot_join() -> None:
    from pneumoscan.parser import build_parser

    assert TrainConfig(data="d", out="o").consistency == DEFAULT_CONSISTENCY == 10
    for flags in (["--augment", "0"], ["--mixup", "0.2"]):  # the default must not turn these into errors
        cfg = TrainConfig.from_args(build_parser().parse_args(["train", "--data", "d", "--out", "o", *flags]))
        cfg.check()
        assert cfg.consistency == 0, flags
    assert TrainConfig.from_dict(TrainConfig(data="d", out="o", augment=0).to_dict()).consistency == 0


def run(tiny_run: Path, tiny_data: Path, out: Path, consistency: float) -> dict[str, torch.Tensor]:
    train(TrainConfig(data=str(tiny_data), out=str(out), model="cnn", image_size=24, epochs=1, batch_size=16,
                      val_fraction=0.2, consistency=consistency, cache_dir=str(tiny_run.parent / "cache")),
          progress=False)
    return load_file(str(out / "model.safetensors"))


def test_a_consistency_run_is_reproducible_and_its_loss_term_acts(tiny_run: Path, tiny_data: Path,
                                                                   tmp_path: Path) -> None:
    negligible = run(tiny_run, tiny_data, tmp_path / "negligible", 1e-12)  # the same two views, no agreement term
    first = run(tiny_run, tiny_data, tmp_path / "first", 10.0)
    again = run(tiny_run, tiny_data, tmp_path / "again", 10.0)
    assert all(torch.equal(first[k], again[k]) for k in first)
    moved = max(float((first[k].float() - negligible[k].float()).abs().max()) for k in first)
    assert moved > 1e-4
