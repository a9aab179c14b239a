from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pneumoscan.data.layout import Sample
from pneumoscan.data.patients import patient_id
from pneumoscan.data.split import patient_split


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
