"""Predictor safety: a damaged model must not call every film NORMAL."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pneumoscan.errors import InputError
from pneumoscan.inference.predictor import Predictor


@pytest.mark.parametrize("guard", [False, True])
def test_nan_probabilities_are_an_error_not_a_normal_label(guard: bool) -> None:
    predictor = Predictor(None, backend="torch", guard=guard)
    with torch.no_grad():
        for weight in predictor.model.parameters():
            weight.fill_(float("nan"))
    images = np.random.default_rng(0).integers(0, 256, (2, predictor.size, predictor.size), dtype=np.uint8)
    with pytest.raises(InputError, match="NaN.*damaged"):
        predictor.results(["a.png", "b.png"], images)


def test_auto_backend_falls_back_to_torch_when_the_onnx_export_fails_its_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """--backend auto means 'ONNX when it can': an export that disagrees with PyTorch is warned about and the
    torch model predicts; --backend onnx asked for ONNX, so the failure stops it."""
    import pneumoscan.inference.onnx_backend as onnx_backend
    from pneumoscan.export.onnx import ExportCheckError

    def failing(*args: object, **kwargs: object) -> None:
        raise ExportCheckError("ONNX and PyTorch differ by 0.3")

    monkeypatch.setattr(onnx_backend, "open_for_artifact", failing)
    monkeypatch.setattr(onnx_backend, "resolve_backend", lambda backend: "onnx" if backend == "auto" else backend)
    with pytest.warns(UserWarning, match="failed the check against PyTorch .*differ by 0.3.*PyTorch instead"):
        predictor = Predictor(None, backend="auto", guard=False)
    assert predictor.backend == "torch" and predictor.onnx is None
    with pytest.raises(ExportCheckError):
        Predictor(None, backend="onnx", guard=False)


def test_predict_chunks_reads_one_chunk_at_a_time_in_input_order(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory bounded by a chunk: the second chunk is not read before the first is handed back; the chunks
    together are the one list of `predict_files`."""
    import pneumoscan.inference.predictor as predictor_module
    from pneumoscan.inference.predictor import input_files

    films = sorted((tiny_data / "train" / "PNEUMONIA").iterdir())[:4]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    paths = [films[0], broken, *films[1:]]
    read: list[str] = []
    real_load = predictor_module.load_image_with_levels

    def load(data: bytes, size: int, name: str = "") -> object:
        read.append(name)
        return real_load(data, size, name=name)

    monkeypatch.setattr(predictor_module, "load_image_with_levels", load)
    predictor = Predictor(tiny_run, backend="torch")
    chunks = predictor.predict_chunks(input_files(paths), chunk_size=2)
    first = next(chunks)
    assert sorted(read) == sorted(map(str, paths[:2])) and [p.path for p in first] == list(map(str, paths[:2]))
    rest = list(chunks)
    assert [len(c) for c in rest] == [2, 1]
    whole = predictor.predict_files(paths)
    chunked = first + [p for chunk in rest for p in chunk]
    assert [(p.path, p.error is None, p.label) for p in chunked] == [(p.path, p.error is None, p.label) for p in whole]
    assert [p.probability for p in chunked] == pytest.approx([p.probability for p in whole], abs=1e-6)


def test_the_model_is_loaded_onto_the_device_device_for_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA when present: predict, evaluate, explain, report, set-threshold and the service load their model
    through the Predictor. No GPU here: the meta device stands in for one (loading needs no values)."""
    import pneumoscan.inference.batch as batch

    monkeypatch.setattr(batch, "device_for", lambda preferred=None: torch.device("meta"))
    model = Predictor(None, backend="torch").model
    assert {t.device.type for t in [*model.parameters(), *model.buffers()]} == {"meta"}
