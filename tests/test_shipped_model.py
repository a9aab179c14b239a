"""The shipped default model: it loads, and reproduces on the real test split the figures its model card states."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pneumoscan.artifact import default_model_path, read_meta
from pneumoscan.data.preprocess import Preprocessing
from tests.conftest import ROOT, SHARED

TOLERANCE = 0.005


def test_default_model_is_shipped_and_self_describing() -> None:
    path = default_model_path()
    assert path.is_file(), "src/pneumoscan/weights/default.safetensors is missing"
    assert path.stat().st_size <= 25 * 1024 * 1024
    meta = read_meta(path)
    assert meta.class_names == ["NORMAL", "PNEUMONIA"] and 0 < meta.threshold < 1
    assert meta.test_metrics and meta.val_metrics and meta.val_scores["labels"]


def test_shipped_model_and_guard_carry_the_equalised_preprocessing() -> None:
    from pneumoscan.inference.ood import load_guard

    meta = read_meta(default_model_path())
    assert meta.preprocessing == Preprocessing(meta.mean, meta.std, equalize=True)
    guard = load_guard(None)
    assert guard is not None and guard.preprocessing == meta.preprocessing


def test_model_card_states_the_artifact_figures() -> None:
    meta = read_meta(default_model_path())
    card = (ROOT / "MODEL_CARD.md").read_text()
    for key in ("accuracy", "recall", "specificity", "roc_auc", "f1", "precision"):
        match = re.search(rf"^\| {key} \| ([0-9.]+) \|", card, re.MULTILINE)
        assert match, f"MODEL_CARD.md has no row for {key}"
        assert float(match.group(1)) == pytest.approx(meta.test_metrics[key]["value"], abs=5e-5)


@pytest.mark.skipif(not (SHARED / "test").is_dir(), reason=f"{SHARED}/test is absent: the full test split is needed")
def test_default_model_reproduces_card_on_test_split() -> None:
    from pneumoscan.evaluation.evaluate import evaluate
    from pneumoscan.inference.predictor import Predictor

    meta = read_meta(default_model_path())
    summary = evaluate(Predictor(None), SHARED, "test", n_boot=50).summary
    assert summary["n"] == meta.test_metrics["n"] == 624
    for key in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc"):
        assert summary[key]["value"] == pytest.approx(meta.test_metrics[key]["value"], abs=TOLERANCE), key
