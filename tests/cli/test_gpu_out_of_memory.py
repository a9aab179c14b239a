"""A GPU that runs out of memory: one line saying what to do, not torch's traceback. No GPU here: the error is
raised as torch raises it (torch.OutOfMemoryError, the class of torch.cuda.OutOfMemoryError)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pneumoscan.cli import main
from tests.conftest import per_film_lines
from tests.training.test_audit_mistakes import QUICK

OOM = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 7.79 GiB of which 1.02 GiB "
       "is free.\nIncluding non-PyTorch memory, this process has 6.7 GiB memory in use.")


def _out_of_memory(*_: Any, **__: Any) -> None:
    raise torch.OutOfMemoryError(OOM)


def test_training_out_of_gpu_memory_names_the_batch_size_the_cpu_and_the_resume(
        tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import pneumoscan.training.trainer as trainer

    monkeypatch.setattr(trainer, "augment_batch", _out_of_memory)  # in the first training step
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(out), *QUICK]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("pneumoscan: error: the GPU ran out of memory (CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "lower --batch-size or --image-size in a new --out (a resume keeps the run's)" in err
    assert "`CUDA_VISIBLE_DEVICES= pneumoscan train ...`" in err
    assert f"continue the run with `pneumoscan train --out {out} --resume`" in err


def _cublas_alloc_failed(*_: Any, **__: Any) -> None:
    raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")


@pytest.mark.parametrize("failure", [_out_of_memory, _cublas_alloc_failed])
def test_scoring_out_of_gpu_memory_names_the_onnx_backend(failure: Any, tiny_run: Path, tiny_data: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Out of the caching allocator's memory (OutOfMemoryError), or a cuBLAS handle that could not be allocated (a
    RuntimeError)."""
    import pneumoscan.evaluation.evaluate as evaluate

    monkeypatch.setattr(evaluate, "evaluate", failure)
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--backend", "torch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the GPU ran out of memory" in err
    assert "pass --backend onnx (ONNX Runtime, on the CPU)" in err and "`CUDA_VISIBLE_DEVICES= pneumoscan evaluate" in err
    assert "--batch-size" not in err and "--resume" not in err


def test_other_runtime_errors_are_not_taken_for_a_full_gpu(tiny_run: Path, tiny_data: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import pneumoscan.evaluation.evaluate as evaluate

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(evaluate, "evaluate", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["evaluate", "--model", str(tiny_run), "--data", str(tiny_data)])


def test_training_stops_on_a_film_the_machine_runs_out_of_memory_for(
        tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The film was skipped as an unreadable file and the run trained on another set than the one given."""
    import pneumoscan.data.decode as decode

    from tests.conftest import write_xray

    big = write_xray(tiny_dataset / "train" / "NORMAL" / "IM-0099-0001.png", 0, 99)  # the one PNG
    gray = decode._pil_to_gray

    def short(im: Any, *args: object) -> Any:
        if im.format == "PNG":
            raise MemoryError()
        return gray(im, *args)

    monkeypatch.setattr(decode, "_pil_to_gray", short)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(out), "--cache-dir", str(tmp_path / "c"),
                 *QUICK]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"pneumoscan: error: {big}: the machine ran out of memory decoding it, even on its own "
                          "(40 x 40 px; "), err
    assert "stopped" in err and not (out / "model.safetensors").exists()


def test_predict_gives_a_film_that_runs_short_after_its_decoding_an_error_row_and_goes_on(
        tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A MemoryError just after the decoder (the full-size film's grey levels) stopped `predict` of a folder at that
    film, naming none ('the machine ran out of memory (Unable to allocate ...)'), where the decoder's own gives the film
    an error row: both are the film's, named with its size, and the other films are scored."""
    import shutil

    from PIL import Image

    import pneumoscan.data.preprocess as preprocess

    films = sorted((tiny_run.parent / "data" / "train" / "NORMAL").iterdir())[:2]
    for film in films:
        shutil.copy(film, tmp_path / film.name)
    big = tmp_path / "big.png"  # the film the machine runs short for: the one 50 x 50 px
    with Image.open(films[0]) as im:
        im.convert("L").resize((50, 50)).save(big)
    levels = preprocess.grey_levels

    def short(gray: Any) -> int:
        if gray.shape == (50, 50):
            raise MemoryError("Unable to allocate 1.07 GiB for an array with shape (12000, 12000)")
        return levels(gray)

    monkeypatch.setattr(preprocess, "grey_levels", short)
    main(["predict", str(tmp_path), "--model", str(tiny_run), "--csv"])
    out, err = capsys.readouterr()
    rows = {Path(r.split(",")[0]).name: r for r in out.splitlines()[1:]}
    assert sorted(rows) == sorted([big.name, *(f.name for f in films)]), (out, err)
    assert f"{big}: the machine ran out of memory decoding it (50 x 50 px; " in rows[big.name], rows[big.name]
    assert all("out of memory" not in rows[f.name] for f in films), rows
    assert "Traceback" not in err, err


def test_the_host_out_of_memory_elsewhere_in_a_command_is_one_line(
        tiny_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A MemoryError raised outside a film's reading (scoring the films) was a traceback, exit 1."""
    import pneumoscan.inference.predictor as predictor

    def short(*_: Any, **__: Any) -> None:
        raise MemoryError("Unable to allocate 1.07 GiB for an array with shape (12000, 12000)")

    monkeypatch.setattr(predictor.Predictor, "_predict", short)
    film = next((tiny_run.parent / "data" / "train" / "NORMAL").iterdir())
    assert main(["predict", str(film), "--model", str(tiny_run)]) == 2
    err = capsys.readouterr().err
    assert per_film_lines(err) == [
        "pneumoscan: error: the machine ran out of memory (Unable to allocate 1.07 GiB for an array with shape "
        "(12000, 12000)); close other programs, or give fewer or smaller films, and try again"]


def _cpu_allocation_fails(*_: Any, **__: Any) -> None:
    torch.empty(10**17, dtype=torch.uint8)  # torch's CPU allocator fails: a RuntimeError, not a MemoryError


@pytest.mark.parametrize("command", ["train", "fit-guard", "evaluate"])
def test_torch_running_out_of_the_machines_memory_is_one_line_naming_what_to_change(
        command: str, tiny_dataset: Path, tiny_run: Path, tiny_data: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """torch's 'DefaultCPUAllocator: can't allocate memory' (the likeliest way CPU training runs short) was a
    traceback: now the host's one line, whose way out is the command's own (a smaller batch for training, fewer films
    for fit-guard), with train's resume hint."""
    import pneumoscan.evaluation.evaluate as evaluate
    import pneumoscan.inference.ood.fit as fit
    import pneumoscan.training.trainer as trainer

    out = tmp_path / "run"
    if command == "train":
        monkeypatch.setattr(trainer, "augment_batch", _cpu_allocation_fails)
        args = ["train", "--data", str(tiny_dataset), "--out", str(out), *QUICK]
    elif command == "fit-guard":
        monkeypatch.setattr(fit, "forward_with_features", _cpu_allocation_fails)
        args = ["fit-guard", "--model", str(tiny_run), "--data", str(tiny_data), "--out",
                str(tmp_path / "g.ood.safetensors")]
    else:
        monkeypatch.setattr(evaluate, "evaluate", _cpu_allocation_fails)
        args = ["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--backend", "torch"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("pneumoscan: error: the machine ran out of memory (can't allocate memory: you tried to "
                          "allocate 100000000000000000 bytes."), err
    way = {"train": "lower --batch-size or --image-size in a new --out (a resume keeps the run's)",
           "fit-guard": "fit on fewer films (--max-images)", "evaluate": "give fewer or smaller films"}[command]
    assert f"; close other programs, or {way}, and try again" in err, err
    assert ("--resume" in err or "nothing was saved" in err) == (command == "train") and "GPU" not in err


def _cpu_alloc_failed(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you "
                       "tried to allocate 4294967296 bytes. Error code 12 (Cannot allocate memory)")


def test_a_model_check_out_of_memory_is_the_machine_out_of_memory_not_a_broken_model(
        tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`train --image-size 4096` with little memory (`ulimit -v 3000000`) ran out of it in the check of the model's
    output on two images, and was told "model 'cnn' fails on a batch of 4096 px images (RuntimeError: ...); a
    pneumoscan model takes normalised images...", blaming the model. Now it gets the out-of-memory advice."""
    from pneumoscan.models.cnn import SmallCNN

    monkeypatch.setattr(SmallCNN, "forward", _cpu_alloc_failed)
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "run"), *QUICK]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "fails on a batch" not in err
    assert err.startswith("pneumoscan: error: the machine ran out of memory (can't allocate memory: you tried to "
                          "allocate 4294967296 bytes")
