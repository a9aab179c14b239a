from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pneumoscan.data.labels import Sample
from pneumoscan.data.layout import discover
from pneumoscan.data.patients import patient_id, patient_keys
from pneumoscan.data.split import patient_split
from tests.conftest import SHARED as DATA
from tests.conftest import write_dicom


def _samples(images_per_patient: list[int], label: int) -> list[Sample]:
    out = []
    for p, count in enumerate(images_per_patient):
        for k in range(count):
            name = f"IM-{p:04d}-{k + 1:04d}.jpeg" if label == 0 else f"person{p}_bacteria_{p * 10 + k}.jpeg"
            out.append(Sample(Path(name), label))
    return out


@settings(max_examples=60, deadline=None)
@given(
    normal=st.lists(st.integers(1, 4), min_size=2, max_size=40),
    pneumonia=st.lists(st.integers(1, 4), min_size=2, max_size=40),
    fraction=st.floats(0.05, 0.5),
    seed=st.integers(0, 1000),
)
def test_no_patient_on_both_sides(normal: list[int], pneumonia: list[int], fraction: float, seed: int) -> None:
    samples = _samples(normal, 0) + _samples(pneumonia, 1)
    train, val = patient_split(samples, fraction, seed)
    assert sorted(map(str, (s.path for s in train + val))) == sorted(map(str, (s.path for s in samples)))
    assert not {patient_id(s.path) for s in train} & {patient_id(s.path) for s in val}
    for label in (0, 1):
        assert any(s.label == label for s in val)


def test_split_is_stratified_and_reproducible() -> None:
    samples = _samples([1, 2, 3] * 40, 0) + _samples([1, 1, 2] * 120, 1)
    train, val = patient_split(samples, 0.15, seed=3)
    again, _ = patient_split(samples, 0.15, seed=3)
    assert train == again
    for label in (0, 1):
        n_val = sum(s.label == label for s in val)
        n_all = sum(s.label == label for s in samples)
        assert 0.13 <= n_val / n_all <= 0.20
    other, _ = patient_split(samples, 0.15, seed=4)
    assert other != train


def test_dicom_images_of_one_patient_stay_on_one_side(tmp_path: Path) -> None:
    """UID-named DICOM files, three per patient: keyed by their PatientID no patient is split; keyed by name (each
    file its own patient, as before --patient-key) the same carve puts patients on both sides."""
    for p in range(12):
        for k in range(3):
            for label, cls in enumerate(("NORMAL", "PNEUMONIA")):
                write_dicom(tmp_path / cls / f"1.2.826.0.1.{label}.{p}.{k}", label, 100 * p + 10 * k + label,
                            patient_id=f"{cls[0]}{p}", size=8)
    samples = discover(tmp_path)["all"]
    patient = patient_keys(samples, "auto")
    train, val = patient_split(samples, 0.25, 0, patient)
    assert val and not {patient(s) for s in train} & {patient(s) for s in val}
    train, val = patient_split(samples, 0.25, 0, patient_keys(samples, "name"))
    assert {patient(s) for s in train} & {patient(s) for s in val}


@pytest.mark.skipif(not (DATA / "train").is_dir(),
                    reason=f"{DATA}/train is absent: the full training split is needed to reproduce the shipped "
                           f"model's validation split")
def test_the_shipped_models_validation_split_is_reproduced() -> None:
    """The shipped artifact records its split settings, the counts of its split and the validation scores in
    split order (not the file names): the default split of train/ must give the same counts and patients, and the
    shipped model must score every 8th of its validation films as the artifact recorded for that place."""
    from pneumoscan.artifact import default_model_path, load_artifact
    from pneumoscan.data.cache import load_image_set
    from pneumoscan.inference.batch import predict_logits, sigmoid

    model, meta = load_artifact(default_model_path())
    config, recorded = meta.training["config"], meta.training["data"]
    assert (config["split_seed"], config["val_fraction"], config["use_given_val"], config["max_images"]) == \
        (0, 0.15, False, None)
    if not meta.val_scores.get("probs"):
        pytest.skip("the shipped model stores no validation scores to compare the split with")
    samples = discover(DATA / "train")["all"]
    keys = patient_keys(samples)  # the default, --patient-key auto
    train, val = patient_split(samples, 0.15, 0, keys)
    for name, part in (("train", train), ("val", val)):
        counted = {"NORMAL": sum(s.label == 0 for s in part), "PNEUMONIA": sum(s.label == 1 for s in part),
                   "patients": len({keys(s) for s in part})}
        assert recorded[name] == counted
    assert [s.label for s in val] == meta.val_scores["labels"]
    images = load_image_set(val[::8], meta.image_size, progress=False)
    assert not images.skipped
    probs = sigmoid(predict_logits(model, images.images, meta.preprocessing))
    np.testing.assert_allclose(probs, np.asarray(meta.val_scores["probs"])[::8], atol=1e-5)
