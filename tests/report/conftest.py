"""Reports built once per session from the shared `tiny_run`."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def odd_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of `tiny_run` in a folder whose name needs HTML escaping."""
    target = tmp_path_factory.mktemp("odd") / 'run <b>"x"&y'
    shutil.copytree(tiny_run, target)
    return target


@pytest.fixture(scope="session")
def val_report(odd_run: Path) -> Path:
    """The report of `odd_run` from its validation predictions, written to the default place."""
    from pneumoscan.report.build import build_report

    return build_report(odd_run, n_boot=50)
