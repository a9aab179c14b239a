"""Ctrl+C: exit code 130 and, for a training or pretraining run, the command that continues it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pneumoscan.cli import main
from tests.conftest import per_film_lines


def _interrupt_after(files: tuple[str, ...]) -> Any:
    """A stand-in for train or pretrain that writes `files` in the run folder, then is interrupted."""
    def run(cfg: Any, **_: Any) -> Path:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        for name in files:
            (Path(cfg.out) / name).write_text("{}")
        raise KeyboardInterrupt
    return run


def test_an_interrupted_pretraining_is_continued_with_pretrain_not_train(tiny_dataset: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import pneumoscan.training.pretrain as pretrain

    monkeypatch.setattr(pretrain, "pretrain", _interrupt_after((pretrain.PRETRAIN_CHECKPOINT,)))
    out = tmp_path / "pre"
    assert main(["pretrain", "--data", str(tiny_dataset), "--out", str(out), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert f"pneumoscan pretrain --data {tiny_dataset} --out {out} --resume" in err
    assert "pneumoscan train" not in err


def test_an_interrupted_training_names_its_own_run_folder(tiny_dataset: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import pneumoscan.training.trainer as trainer

    monkeypatch.setattr(trainer, "train", _interrupt_after(("config.json",)))
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(out), "--quiet"]) == 130
    assert f"pneumoscan train --out {out} --resume" in capsys.readouterr().err

    monkeypatch.setattr(trainer, "train", _interrupt_after(()))  # stopped while decoding: nothing to resume
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "early"), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "--resume" not in err and "start the run again" in err


def test_an_interrupted_evaluation_does_not_talk_of_training(tiny_run: Path, tiny_data: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import pneumoscan.evaluation.evaluate as evaluate

    def interrupted(*_: Any, **__: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "evaluate", interrupted)
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(tiny_data)]) == 130
    assert capsys.readouterr().err.strip() == "pneumoscan: interrupted"


@pytest.mark.parametrize("flag", ["", "--csv", "--json"])
def test_an_interrupted_prediction_keeps_the_rows_written(flag: str, tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl+C in the second chunk: the first chunk's rows and its error stay, the exit code is 130."""
    import json

    import pneumoscan.inference.predictor as predictor

    films = sorted((tiny_data / "train" / "NORMAL").iterdir())[:3]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    calls: list[int] = []
    real = predictor.Predictor.results

    def results(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(predictor, "CHUNK_SIZE", 2)
    monkeypatch.setattr(predictor.Predictor, "results", results)
    inputs = [str(films[0]), str(broken), str(films[1]), str(films[2])]
    assert main(["predict", "--model", str(tiny_run), *inputs, *filter(None, [flag])]) == 130
    out, err = capsys.readouterr()
    lines = per_film_lines(err)
    assert len(lines) == 2 and lines[0].startswith(f"pneumoscan: error: {broken}: ") and lines[1] == "pneumoscan: interrupted"
    if flag == "--json":  # the array is left open; closing it gives the rows written
        assert [r["path"] for r in json.loads(out + "\n]")] == inputs[:2]
    elif flag == "--csv":
        assert [line.split(",")[0] for line in out.splitlines()] == ["path", *inputs[:2]]
    else:
        assert len(out.splitlines()) == 1 and out.endswith(f"  {inputs[0]}\n")


@pytest.mark.usefixtures("ctrl_c_raises")
@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("when", ["before the rename", "during the rename", "after the rename"])
def test_an_interrupted_export_leaves_the_old_file_or_says_the_new_one_is_whole(
        when: str, existing: bool, tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl+C once the file was in place printed the bare 'interrupted' (or, during the rename, removed it again), so
    a whole, checked export looked like a failed one."""
    import os
    import signal

    from pneumoscan import outputs
    from pneumoscan.export import onnx as onnx_module

    out = tmp_path / "m.onnx"
    if existing:
        out.write_bytes(b"an earlier export")
    if when == "before the rename":  # the temp file is written, not yet renamed
        def fsync_file(path: Path) -> None:
            raise KeyboardInterrupt
        monkeypatch.setattr(outputs, "fsync_file", fsync_file)
    elif when == "during the rename":  # a real SIGINT, right after os.replace
        real = os.replace

        def replace(src: Path, dst: Path) -> None:
            real(src, dst)
            signal.raise_signal(signal.SIGINT)
        monkeypatch.setattr(outputs.os, "replace", replace)
    else:
        def report(*_: Any) -> None:
            raise KeyboardInterrupt
        monkeypatch.setattr(onnx_module, "ExportReport", report)

    assert main(["export", "--model", str(tiny_run), "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == (["m.onnx"] if existing or when != "before the rename" else [])
    if when == "before the rename":
        assert err == "pneumoscan: interrupted\n"
        assert not existing or out.read_bytes() == b"an earlier export"
    else:
        assert err == f"pneumoscan: interrupted after {out} was written: it is whole and passed its check against " \
                      "PyTorch\n"
        assert onnx_module.read_onnx_metadata(out)["model_name"] == "resnet10"


@pytest.mark.usefixtures("ctrl_c_raises")
@pytest.mark.parametrize("module", ["pneumoscan", "pneumoscan.cli"])
def test_ctrl_c_while_python_shuts_down_after_a_finished_command_changes_nothing(module: str, tmp_path: Path) -> None:
    """Ctrl+C in the second or so Python takes to shut down after a command (torch's clean-up) killed the process
    silently with exit code 130, its work done (bench: an export, its file whole), or printed a traceback."""
    import subprocess
    import sys
    import textwrap

    child = textwrap.dedent(f"""
        import atexit, os, runpy, signal, sys, time
        atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.1)))  # Ctrl+C during shut-down
        sys.argv = ["pneumoscan", "cache", "--cache-dir", {str(tmp_path)!r}]
        runpy.run_module({module!r}, run_name="__main__")
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "") and str(tmp_path) in done.stdout


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_while_the_command_line_is_read_is_one_line_too(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Before the command runs (its parser built, its modules imported), Ctrl+C printed a traceback."""
    import signal

    from pneumoscan import cli

    def build_parser() -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", build_parser)
    try:
        with pytest.raises(SystemExit) as stopped:
            cli.entry()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # entry() leaves Ctrl+C ignored for the shut-down
    assert stopped.value.code == 130 and capsys.readouterr().err == "pneumoscan: interrupted\n"


def _sigterm_to_self(*_: object) -> None:
    """SIGTERM to this process, as `kill PID` or a scheduler sends it; refused where it would kill it (and pytest)."""
    import os
    import signal

    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None), "SIGTERM would end the process silently"
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("twice", [False, True])
def test_sigterm_during_training_says_how_to_resume_and_leaves_the_run_whole(
        twice: bool, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`kill PID` (a scheduler's stop) ended `train` silently; it stops it as Ctrl+C does, with exit code 143.
    `twice`: a second SIGTERM while the first is reported, which made it 'pneumoscan: interrupted' and 130."""
    import signal

    import pneumoscan.cli as cli
    import pneumoscan.training.trainer as trainer

    saved, hint = trainer.atomic_torch_save, cli._resume_hint

    def hint_after_another(args: Any) -> str:
        _sigterm_to_self()
        return hint(args)

    if twice:
        monkeypatch.setattr(cli, "_resume_hint", hint_after_another)

    def save_then_terminated(obj: Any, path: Any) -> None:  # SIGTERM just after epoch 1's checkpoint
        saved(obj, path)
        if obj["state"]["epoch"] == 1:
            _sigterm_to_self()

    monkeypatch.setattr(trainer, "atomic_torch_save", save_then_terminated)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), "--model", "cnn", "--image-size", "16",
                 "--epochs", "2", "--quiet"]) == 143
    assert capsys.readouterr().err == (f"pneumoscan: interrupted by SIGTERM; continue the run with `pneumoscan train "
                                       f"--out {run} --resume`\n")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored once the command is done
    assert not list(run.glob(".*.tmp"))
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0
    assert "resuming" in capsys.readouterr().out and (run / "model.safetensors").is_file()


def test_sigterm_among_the_renames_of_a_set_of_files_waits_until_all_are_in_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As Ctrl+C: never some files new and others old."""
    import os
    import signal

    from pneumoscan import outputs
    from pneumoscan.errors import Terminated, raise_terminated

    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    for path in (first, second):
        path.write_text("old")
    renamed = os.replace

    def replace_then_terminated(src: Any, dst: Any) -> None:
        renamed(src, dst)
        if Path(dst) == first:
            _sigterm_to_self()

    monkeypatch.setattr(outputs.os, "replace", replace_then_terminated)
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        with pytest.raises(Terminated):
            outputs.atomic_write_all({first: lambda tmp: tmp.write_text("new"),
                                      second: lambda tmp: tmp.write_text("new")})
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert (first.read_text(), second.read_text()) == ("new", "new")
