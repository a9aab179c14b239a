"""Every pneumoscan command on the full train folder (5,216 films; never the test split): wall time and peak RSS with
a cold and a warm decoded-image cache, whether stderr stays clean and stdout parseable off a terminal, when the first
progress line appears on a terminal, and what Ctrl+C (SIGINT at half the run) leaves.

    OMP_NUM_THREADS=1 python bench/commands_full_train.py [--train DIR] [--work DIR]

Writes bench/results/commands_full_train.{json,md}. Needs `script` (util-linux) and GNU `/usr/bin/time`. The shipped
model is used (no --model), except by `report`, which needs a run folder: a 1-epoch `cnn` run made here.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_results  # noqa: E402

BAR_TEXT = ("%|", "img/s", "batch/s", "it/s")
PROGRESS = re.compile(rb"\d+/\d+ \[")  # tqdm's 'n/total [elapsed<eta, rate]'


@dataclass
class Command:
    """One command: its argv (WORK, CACHE, TRAIN placeholders), the files it writes, what its stdout must parse as."""

    name: str
    argv: list[str]
    outputs: list[str] = field(default_factory=list)
    stdout: str = ""  # "json", "csv" or "" (text)
    cached: bool = True  # takes --cache-dir


def commands() -> list[Command]:
    return [
        Command("audit", ["audit", "{TRAIN}", "--json", "-"], cached=False, stdout="json"),
        Command("evaluate", ["evaluate", "--data", "{TRAIN}", "--json", "-", "--predictions", "{WORK}/ev.csv"],
                ["ev.csv"], "json"),
        Command("predict", ["predict", "{WORK}/predict2000", "--csv"], cached=False, stdout="csv"),
        Command("fit-guard", ["fit-guard", "--data", "{TRAIN}", "--out", "{WORK}/g.ood.safetensors"],
                ["g.ood.safetensors"]),
        Command("set-threshold", ["set-threshold", "--data", "{WORK}/site500", "--out", "{WORK}/site_model",
                                  "--json", "-"], ["site_model"], "json"),
        Command("report", ["report", "{WORK}/run_cnn", "--data", "{TRAIN}", "--out", "{WORK}/r.html"],
                ["r.html", "r_files"]),
        Command("export", ["export", "--out", "{WORK}/m.onnx", "--images", "{WORK}/predict2000"], ["m.onnx"],
                cached=False),
        Command("train", ["train", "--data", "{TRAIN}", "--model", "cnn", "--epochs", "1", "--max-images", "300",
                          "--out", "{WORK}/run"], ["run"]),
        Command("cache", ["cache", "--cache-dir", "{WORK}/cache_evaluate"], cached=False),  # as filled by evaluate
    ]


def prepare(train: Path, work: Path) -> None:
    """predict2000: 1,000 films of each class (symlinks); site500: 250 of each re-encoded as PNG (a site's own
    films: byte-identical copies of the model's training films are refused by set-threshold); run_cnn."""
    from PIL import Image

    shutil.rmtree(work, ignore_errors=True)
    (work / "predict2000").mkdir(parents=True)
    for cls in ("NORMAL", "PNEUMONIA"):
        files = sorted((train / cls).iterdir())
        for f in files[:1000]:
            (work / "predict2000" / f"{cls}_{f.name}").symlink_to(f)
        (work / "site500" / cls).mkdir(parents=True)
        for f in files[-250:]:
            Image.open(f).save(work / "site500" / cls / f"{f.stem}.png")
    subprocess.run(pneumoscan("train", "--data", str(train), "--model", "cnn", "--epochs", "1", "--max-images", "300",
                              "--out", str(work / "run_cnn"), "--cache-dir", str(work / "prep_cache"), "--quiet"),
                   check=True, capture_output=True)


def pneumoscan(*argv: str) -> list[str]:
    return [sys.executable, "-m", "pneumoscan", *argv]


def argv_for(cmd: Command, train: Path, work: Path, cache: Path) -> list[str]:
    argv = [a.format(TRAIN=train, WORK=work) for a in cmd.argv]
    return argv + (["--cache-dir", str(cache)] if cmd.cached else [])


def clean(cmd: Command, work: Path) -> None:
    for name in cmd.outputs:
        path = work / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def timed(argv: list[str]) -> dict:
    """Run off a terminal (stdout and stderr to pipes) under /usr/bin/time -v."""
    proc = subprocess.run(["/usr/bin/time", "-v", *pneumoscan(*argv)], capture_output=True, stdin=subprocess.DEVNULL)
    err = proc.stderr.decode(errors="replace")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", err).group(1)
    seconds = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(":"))))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1))
    own = err.split("\tCommand being timed")[0]
    return {"rc": proc.returncode, "wall_s": round(seconds, 2), "rss_mb": round(rss / 1024),
            "stderr_clean": not any(t in own for t in BAR_TEXT), "stdout": proc.stdout.decode(errors="replace")}


def parses(kind: str, text: str) -> bool:
    try:
        if kind == "json":
            json.loads(text)
        elif kind == "csv":
            rows = list(csv.reader(io.StringIO(text)))
            return len(rows) > 1 and all(len(r) == len(rows[0]) for r in rows)
        return True
    except ValueError:
        return False


def on_terminal(argv: list[str], interrupt_after: float | None) -> dict:
    """Run under `script` (a 100x30 terminal); SIGINT to the command after `interrupt_after` s. Returns when the
    first progress count appeared, the exit code and the lines printed after the interrupt."""
    shell = "stty cols 100 rows 30; exec " + " ".join(shlex.quote(a) for a in pneumoscan(*argv))
    start = time.monotonic()
    # a shell's background job ignores SIGINT, and a Python started so would too: restore the default for the command
    proc = subprocess.Popen(["script", "-qefc", shell, "/dev/null"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.set_blocking(proc.stdout.fileno(), False)
    out, first, sent_at = b"", None, None
    while proc.poll() is None:
        time.sleep(0.02)
        chunk = proc.stdout.read() or b""
        out += chunk
        now = time.monotonic() - start
        if first is None and PROGRESS.search(out):
            first = now
        if interrupt_after is not None and sent_at is None and now >= interrupt_after:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            for child in children:  # the command itself (script's child, in its own session)
                os.kill(int(child), signal.SIGINT)
            sent_at, mark = now, len(out)
    out += proc.stdout.read() or b""
    after = out[mark:] if sent_at is not None else b""
    lines = [ln.strip() for ln in re.split(rb"[\r\n]+", after) if ln.strip()]
    return {"first_progress_s": None if first is None else round(first, 2), "rc": proc.returncode,
            "sigint_at_s": None if sent_at is None else round(sent_at, 2),
            "lines_after": [ln.decode(errors="replace") for ln in lines], "traceback": b"Traceback" in out}


def bench(cmd: Command, train: Path, work: Path) -> dict:
    cache, tty_cache = work / f"cache_{cmd.name}", work / f"cache_{cmd.name}_tty"
    for c in (cache, tty_cache):
        shutil.rmtree(c, ignore_errors=True)
    clean(cmd, work)
    cold = timed(argv_for(cmd, train, work, cache))
    row = {"command": "pneumoscan " + shlex.join(argv_for(cmd, train, Path("WORK"), Path("CACHE"))).replace(
        str(train), "TRAIN"), "rc": cold["rc"], "cold_s": cold["wall_s"], "cold_rss_mb": cold["rss_mb"],
        "quiet_off_tty": cold["stderr_clean"], "stdout_parses": parses(cmd.stdout, cold["stdout"]) if cmd.stdout else None}
    if cmd.cached and cmd.name != "train":  # train with an existing --out would be refused
        clean(cmd, work)
        warm = timed(argv_for(cmd, train, work, cache))
        row.update(warm_s=warm["wall_s"], warm_rss_mb=warm["rss_mb"])
    if cmd.name == "cache":  # a listing: nothing to follow or interrupt
        return row
    # on a terminal, cold cache: SIGINT at half the cold run (at least 2.5 s in, to see the first progress)
    clean(cmd, work)
    tty = on_terminal(argv_for(cmd, train, work, tty_cache), max(2.5, cold["wall_s"] / 2))
    left = [name for name in cmd.outputs if (work / name).exists()]
    row.update(first_progress_s=tty["first_progress_s"], sigint_rc=tty["rc"], sigint_at_s=tty["sigint_at_s"],
               sigint_lines=len(tty["lines_after"]), sigint_last=(tty["lines_after"] or [""])[-1][:90],
               traceback=tty["traceback"], left_behind=", ".join(left))
    if cmd.cached and cmd.name != "train":
        # the cache the interrupted cold run was filling, used again; then Ctrl+C with the warm cache, and it again
        clean(cmd, work)
        again = timed(argv_for(cmd, train, work, tty_cache))
        row.update(after_cold_sigint_rc=again["rc"], after_cold_sigint_s=again["wall_s"])
        clean(cmd, work)
        warm_tty = on_terminal(argv_for(cmd, train, work, cache), max(1.0, row["warm_s"] / 2))
        clean(cmd, work)
        again = timed(argv_for(cmd, train, work, cache))
        row.update(warm_sigint_rc=warm_tty["rc"], warm_sigint_traceback=warm_tty["traceback"],
                   after_warm_sigint_rc=again["rc"], after_warm_sigint_s=again["wall_s"])
    clean(cmd, work)
    return row


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray" / "train",
                        help="the train split's class folders (never the test split)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "pneumoscan-bench",
                        help="scratch folder (default: pneumoscan-bench in the system's temporary folder)")
    parser.add_argument("--only", nargs="*", help="bench only these commands")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if "test" in args.train.resolve().parts:
        sys.exit("bench/commands_full_train.py: the test split must not be used; pass a train folder")
    prepare(args.train, args.work)
    rows = []
    for cmd in commands():
        if args.only and cmd.name not in args.only:
            continue
        rows.append(bench(cmd, args.train, args.work))
        print(json.dumps(rows[-1]), flush=True)
    columns = ["command", "rc", "cold_s", "cold_rss_mb", "warm_s", "warm_rss_mb", "quiet_off_tty", "stdout_parses",
               "first_progress_s", "sigint_at_s", "sigint_rc", "sigint_lines", "sigint_last", "traceback",
               "left_behind", "after_cold_sigint_rc", "after_cold_sigint_s", "warm_sigint_rc",
               "warm_sigint_traceback", "after_warm_sigint_rc", "after_warm_sigint_s"]
    command = " ".join(["OMP_NUM_THREADS=1 python bench/commands_full_train.py",
                        shlex.join(sys.argv[1:] if argv is None else argv)]).strip()
    write_results("commands_full_train", rows, columns, command=command,
                  note=f"Data: {args.train} (train split only), shipped model, OMP_NUM_THREADS="
                       f"{os.environ.get('OMP_NUM_THREADS', 'unset')}. cold = fresh --cache-dir, warm = the same "
                       "again; both with stdout and stderr piped (quiet_off_tty: no bar text on stderr). On a "
                       "100x30 terminal (`script`), with another fresh cache: first_progress_s = first 'n/total' "
                       "count on screen; SIGINT sent at sigint_at_s; sigint_lines/last = what was printed after it; "
                       "left_behind = output files present afterwards; after_cold_sigint = that run's half-filled cache "
                       "used again (piped); warm_sigint = SIGINT at half a warm run on a terminal, after_warm_sigint "
                       "= the warm cache used again (piped). predict's rc 1 = some films refused by the "
                       "guard (as documented). Times include Python start-up and imports (~1.5 s).")


if __name__ == "__main__":
    main()
