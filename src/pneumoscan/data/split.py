"""Patient-aware, class-stratified train/validation split."""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np

from pneumoscan.data.labels import Sample
from pneumoscan.data.patients import patient_keys


def patient_split(samples: list[Sample], val_fraction: float = 0.15, seed: int = 0,
                  keys: Callable[[Sample], str] | None = None) -> tuple[list[Sample], list[Sample]]:
    """Split samples so that no patient is on both sides and each class keeps about `val_fraction` in validation.

    Patients are grouped by their majority label and shuffled with `seed`; whole patients are moved to
    validation until the class's image quota is met. `keys` gives each sample's patient (`patient_keys` of the
    whole data set); by default `patient_keys(samples)`, `--patient-key auto`.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    key = keys if keys is not None else patient_keys(samples)
    by_patient: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_patient[key(sample)].append(sample)
    rng = np.random.default_rng(seed)
    val_patients: set[str] = set()
    for label in (0, 1):
        patients = sorted(p for p, items in by_patient.items() if round(np.mean([s.label for s in items])) == label)
        order = rng.permutation(len(patients))
        quota = val_fraction * sum(len(by_patient[p]) for p in patients)
        taken = 0
        for index in order:
            if taken >= quota:
                break
            val_patients.add(patients[index])
            taken += len(by_patient[patients[index]])
    train = [s for s in samples if key(s) not in val_patients]
    val = [s for s in samples if key(s) in val_patients]
    return train, val
