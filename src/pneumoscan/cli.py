"""The `pneumoscan` program: runs one command, its failures as one line on stderr and an exit code, never a
traceback; stdout holds the result only, written whole or failing."""
from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable, Sequence

from pneumoscan.errors import (MAX_REASON, PneumoscanError, RefusedFilm, WriteError, cli_words, gpu_out_of_memory,
                               host_out_of_memory, interruption, memory_reason, one_line, option,
                               out_of_memory_text, raise_terminated, shell_word)
from pneumoscan.parser import build_parser, parse_args
from pneumoscan.stream_failures import DISK_FULL, DISK_FULL_FIX, reader_gone, stdout_name, tell, to_devnull

EXIT_WARNING_AS_ERROR = 4  # a warning that Python's warnings filter makes an error (-W error, PYTHONWARNINGS=error)


def _one_line_warnings() -> Callable[..., None]:
    """A `warnings.showwarning` for one command: each warning as one line like the errors, without the source file
    and line that raised it, and a warning repeated word for word (an unwritable image cache's, given by each set of
    images decoded) only the first time."""
    shown: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: object = None, line: str | None = None) -> None:
        text = f"pneumoscan: warning: {message}"
        if text not in shown:
            shown.add(text)
            print(text, file=sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user mistakes become one line on stderr and exit code 2, never a traceback."""
    args = parse_args(build_parser(), list(sys.argv[1:] if argv is None else argv))
    if sys.stdout is None and _result_on_stdout(args):  # `>&-`: the output would be lost
        print(f"pneumoscan: error: stdout is closed, so the output of {args.command} would be lost; send it to a "
              f"file (> out.txt) or to /dev/null", file=sys.stderr)
        return 2
    if sys.stdout is None:
        _fill_closed_descriptor(1)
    from pneumoscan.data.decode import quiet_decoder_warnings
    from pneumoscan.stdout import whole_writes

    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 prints escaped (\udcf6), not as a traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")

    quiet_decoder_warnings()
    shown, warnings.showwarning = warnings.showwarning, _one_line_warnings()
    try:
        # messages name --flags, even from the code a notebook calls (a Predictor); stdout is written whole or fails
        with cli_words(), whole_writes():
            return _run(args)
    finally:
        warnings.showwarning = shown


def _result_on_stdout(args: argparse.Namespace) -> bool:
    """Whether what the command is run for is what it prints (a closed stdout would lose it): `predict`, `models`,
    `card`, `docs`, `cache` without --clear, `--json -`, and `audit` and `evaluate` without `--json FILE` (evaluate's
    --predictions CSV is a by-product: the printout is what it is run for); not a command whose result is files
    (`export`, `set-threshold`, `report`, `train`, ...: its stdout only tells of them)."""
    if getattr(args, "json", None) == "-" or args.command in ("predict", "models", "card", "docs"):
        return True
    if args.command == "cache":
        return not args.clear
    if args.command in ("audit", "evaluate"):
        return not args.json
    return False


def _fill_closed_descriptor(fd: int) -> None:
    """Open /dev/null as file descriptor FD when it is closed (`>&-`): else the first file the command opens (its
    output's temporary file) would take it, and whatever a library prints to it would go into that file."""
    try:
        os.fstat(fd)
    except OSError:
        to_devnull(fd)


def _resume_hint(args: argparse.Namespace) -> str:
    """After Ctrl+C or a failed write: the command that continues this training or pretraining run, if it saved
    something to continue."""
    if args.command not in ("train", "pretrain"):
        return ""
    from pneumoscan.artifact import PRETRAIN_CHECKPOINT

    if args.command == "train" and (Path(args.out) / "config.json").is_file():
        return f"; continue the run with `pneumoscan train --out {shell_word(args.out)} --resume`"
    if args.command == "pretrain" and (Path(args.out) / PRETRAIN_CHECKPOINT).is_file():
        return (f"; continue it with `pneumoscan pretrain --data {shell_word(args.data)} --out {shell_word(args.out)} "
                f"--resume` and the options it was started with")
    return f"; nothing was saved in {args.out} yet: start the run again"


def _run(args: argparse.Namespace) -> int:
    """The chosen command, with its failures turned into one line and an exit code; `train` and `pretrain` take
    SIGTERM (`kill PID`, a scheduler's stop) as Ctrl+C, saying so and how to resume, with exit code 143."""
    stops = args.command in ("train", "pretrain") and threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    if stops:
        signal.signal(signal.SIGTERM, raise_terminated)
    try:
        return _run_command(args)
    finally:
        if stops:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_command(args: argparse.Namespace) -> int:
    """`_run` without its SIGTERM handler."""
    try:
        code = args.func(args)
        if sys.stdout is not None:  # None: closed (`>&-`), for a command whose result is files
            sys.stdout.flush()  # here, not at exit: a full disk under `> FILE` must get its line too
        return code
    except WriteError as err:  # e.g. a full disk: the files written before are whole, so a run can continue
        tell(f"pneumoscan: error: {err}{_resume_hint(args)}")
        return 2
    except RefusedFilm as err:  # the guard's verdict on the film, not a mistake: exit 1 as `predict` does
        tell(f"pneumoscan: error: {err}")
        return 1
    except PneumoscanError as err:
        tell(f"pneumoscan: error: {err}")
        return 2
    except Warning as err:  # the user asked to stop on warnings: the warning's one line, not a traceback
        tell(f"pneumoscan: error: {one_line(str(err)) or type(err).__name__} (a warning, which -W error or "
              f"PYTHONWARNINGS=error makes an error: exit code {EXIT_WARNING_AS_ERROR}){_resume_hint(args)}")
        return EXIT_WARNING_AS_ERROR
    except OSError as err:  # e.g. --out or --json in a folder that cannot be created or written
        if reader_gone(err):  # e.g. `pneumoscan predict DIR | head`
            to_devnull(sys.stdout.fileno())
            return 1
        if err.filename is None and err.errno in DISK_FULL:  # files written by name say so: this is stdout
            tell(f"pneumoscan: error: {stdout_name()}: {err.strerror}; the output is cut short: "
                  f"{DISK_FULL_FIX.get(err.errno, DISK_FULL_FIX[errno.ENOSPC])}"
                  f"{_resume_hint(args) or ' and run the command again'}")
            to_devnull(sys.stdout.fileno())  # no second failure at exit
            return 2
        if err.filename is None:
            raise
        name, reason = err.filename, err.strerror or str(err)
        if isinstance(err, (FileExistsError, NotADirectoryError)):  # `--out notes.txt/run`: name the file in the way
            blocking = next((p for p in (Path(name), *Path(name).parents) if p.is_file()), None)
            if blocking is not None:
                name, reason = blocking, "a file where a folder is needed" + (
                    f" (for {err.filename})" if blocking != Path(err.filename) else "")
        tell(f"pneumoscan: error: {name}: {reason}; check the path and its permissions")
        return 2
    except KeyboardInterrupt as err:  # a command may say what was done before it ('after FILE was written: ...')
        by, code = interruption(err)
        if by and signal.getsignal(signal.SIGTERM) is raise_terminated:  # a second one must not cut this report
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        done = f" {err}" if str(err) else ""
        tell(f"pneumoscan: interrupted{by}{done}{_resume_hint(args)}")
        return code
    except (RuntimeError, MemoryError) as err:
        if gpu_out_of_memory(err):
            tell(f"pneumoscan: error: {_out_of_memory_advice(args, err)}{_resume_hint(args)}")
            return 2
        if not host_out_of_memory(err):
            raise
        # numpy's allocations and torch's CPU allocator say how much they wanted
        reason = f" ({one_line(memory_reason(err), MAX_REASON)})" if str(err) else ""
        tell(f"pneumoscan: error: the machine ran out of memory{reason}; close other programs, or "
              f"{_host_memory_way(args)}, and try again{_resume_hint(args)}")
        return 2


def _smaller_batch(args: argparse.Namespace) -> str | None:
    """The command's smaller batch as a way out of memory ('lower --batch-size ...'), None when it has no batch size."""
    if not hasattr(args, "batch_size"):
        return None
    if args.command in ("train", "pretrain"):  # each film's memory grows with the square of --image-size
        return (f"lower {option('batch_size')} or {option('image_size')} in a new {option('out')} (a resume keeps "
                f"the run's)")
    return f"lower {option('batch_size')}"


def _host_memory_way(args: argparse.Namespace) -> str:
    """What the user can change for the command the machine ran out of memory in: its batch size, else how many films
    it reads (fit-guard's --max-images), else the films given."""
    if hasattr(args, "max_images") and not hasattr(args, "batch_size"):
        return f"fit on fewer films ({option('max_images')})"
    return _smaller_batch(args) or "give fewer or smaller films"


def _out_of_memory_advice(args: argparse.Namespace, err: BaseException) -> str:
    """One line for a command the GPU ran out of memory in: torch's reason, and the ways out (the command's smaller
    batch, ONNX Runtime, or the CPU with the GPU hidden)."""
    ways = ["free it (`nvidia-smi` lists the processes holding it)"]
    batch = _smaller_batch(args)
    if batch:
        ways.append(batch)
    if hasattr(args, "backend"):
        ways.append(f"pass {option('backend', 'onnx')} (ONNX Runtime, on the CPU)")
    ways.append(f"run it on the CPU with the GPU hidden: `CUDA_VISIBLE_DEVICES= pneumoscan {args.command} ...`")
    return out_of_memory_text(err, ways)


def entry() -> None:
    """The `pneumoscan` program (and `python -m pneumoscan`): `main`, then exit with its code.

    Ctrl+C is ignored once the command is done: in the second or so Python then takes to shut down (torch's clean-up)
    it killed the process silently with exit code 130 after a finished command, or printed a traceback.
    """
    code = None
    try:
        code = main()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt as err:  # while the command line was read, or just after the command returned its code
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if code is None:
            by, code = interruption(err)
            print(f"pneumoscan: interrupted{by}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    entry()
