"""The suite on parallel pytest-xdist workers (`make test`): each worker takes its share of the cores."""
from __future__ import annotations

import os

import pytest

from tests import conftest
from tests.conftest import worker_threads


@pytest.mark.parametrize(("cores", "workers", "threads"), [(2, 2, 1), (1, 2, 1), (8, 2, 4), (4, 4, 1), (16, 4, 4)])
def test_each_worker_gets_its_share_of_the_cores(cores: int, workers: int, threads: int) -> None:
    assert worker_threads(cores, workers) == threads


def test_the_share_goes_to_torch_and_onnx_runtime_but_an_explicit_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1})
    monkeypatch.setattr(os, "environ", {"PYTEST_XDIST_WORKER_COUNT": "2"})
    conftest.share_the_cores()
    assert os.environ == {"PYTEST_XDIST_WORKER_COUNT": "2", "OMP_NUM_THREADS": "1", "PNEUMOSCAN_ORT_THREADS": "1"}
    monkeypatch.setattr(os, "environ", {"PYTEST_XDIST_WORKER_COUNT": "2", "OMP_NUM_THREADS": "3"})
    conftest.share_the_cores()
    assert os.environ["OMP_NUM_THREADS"] == "3" and os.environ["PNEUMOSCAN_ORT_THREADS"] == "1"
    monkeypatch.setattr(os, "environ", {})  # not under xdist: nothing is set
    conftest.share_the_cores()
    assert os.environ == {}


@pytest.mark.skipif("PYTEST_XDIST_WORKER_COUNT" not in os.environ, reason="only on a pytest-xdist worker (-n)")
def test_a_worker_runs_torch_and_onnx_runtime_on_its_share() -> None:
    import torch

    from pneumoscan.inference.onnx_backend import default_threads

    assert torch.get_num_threads() == int(os.environ["OMP_NUM_THREADS"])
    assert default_threads() == int(os.environ["PNEUMOSCAN_ORT_THREADS"])
