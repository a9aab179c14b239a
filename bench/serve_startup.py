"""Start-up cost of `pneumoscan serve` with the shipped model (backend auto, ONNX Runtime on this CPU).

    PYTHONPATH=src:bench .venv/bin/python bench/serve_startup.py --label NAME [--repeats 5] [--src SRC] [--page]

Starts `python -m pneumoscan serve --port PORT` in a fresh process, `--repeats` times, and from its launch times:
the first 200 of GET /health, then the answer of POST /predict of one film of `sample/` (a 224 px JPEG), then
POST /predict?explain=true of the same film (the first heatmap: what a doctor's first upload on the page asks),
then a second one. `--page`: before the heatmaps, GET / then POST /warm-up (a doctor opens the page, whose script asks
the service to start loading Grad-CAM's torch model in the background; a service without /warm-up, before it, started
that load at GET /), then at once POST /predict (its latency while that loads), and GET /model every
10 ms until it says `explain_loaded` (the seconds from GET /; a service without the field counts as loaded). After the first prediction and after the heatmaps it reads the process's peak RSS (VmHWM) and
whether PyTorch was loaded (libtorch in /proc/PID/maps). Every answer must be a 200 with a probability (and the
heatmap requests a heatmap). The machine's 1-minute load average (mean of before and after) says how busy the shared
cores were. `--src`: the source tree to run (default this checkout's src/; an export of an earlier commit gives the
row before a change). Sample films only (never the test split). The row `--label` is merged into
bench/results/serve_startup.json and .md (rows of other labels are kept).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from _results import carry_over, write_results
from _subprocess import src_env

ROOT = Path(__file__).resolve().parents[1]
FILM = ROOT / "sample" / "chest_xray" / "train" / "NORMAL" / "IM-0240-0001.jpeg"
COLUMNS = ["label", "page opened first", "health s", "first predict s", "first predict ms", "peak RSS MB at first predict",
           "torch loaded at first predict", "predict ms while loading", "loaded s after GET /", "first heatmap ms", "second heatmap ms", "peak RSS MB after heatmaps",
           "load average", "source"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post_film(url: str) -> dict:
    """POST the sample film as multipart to `url`; the JSON answer (HTTPError unless 200)."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"film.jpeg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + FILM.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.load(answer)


def wait_health(url: str, process: subprocess.Popen, limit_s: float = 120) -> None:
    """Poll GET /health every 10 ms until a 200; RuntimeError when the process ends or `limit_s` passes."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"serve ended with code {process.returncode}: {process.stderr.read()[-500:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"no answer from /health in {limit_s} s")


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


def torch_loaded(pid: int) -> bool:
    return "libtorch_cpu" in Path(f"/proc/{pid}/maps").read_text()


def open_page(url: str, limit_s: float = 120) -> dict[str, float]:
    """GET / and POST /warm-up (as the page's script), then POST /predict at once, then GET /model until
    `explain_loaded`: the prediction's ms and the seconds from GET / to loaded."""
    opened = time.monotonic()
    with urllib.request.urlopen(url + "/", timeout=30) as answer:
        answer.read()
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/warm-up", data=b"", method="POST"),
                                    timeout=30) as answer:
            answer.read()
    except urllib.error.HTTPError:  # a service from before /warm-up (its GET / started the load)
        pass
    sent = time.monotonic()
    post_film(url + "/predict")
    predict_ms = round((time.monotonic() - sent) * 1000, 1)
    while time.monotonic() < opened + limit_s:
        with urllib.request.urlopen(url + "/model", timeout=30) as answer:
            if json.load(answer).get("explain_loaded", True):
                return {"predict ms while loading": predict_ms, "loaded s after GET /": round(time.monotonic() - opened, 2)}
        time.sleep(0.01)
    raise RuntimeError(f"GET /model did not say explain_loaded within {limit_s} s of GET /")


def one_run(src: Path, page: bool) -> dict[str, object]:
    """Start serve, time its first answers (opening the page first with `page`), stop it (SIGTERM)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**src_env(), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(src)}
    start = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "pneumoscan", "serve", "--port", str(port), "--log-level",
                                "warning"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_health(url, process)
        health = time.monotonic() - start
        answer = post_film(url + "/predict")
        predicted = time.monotonic() - start
        if answer.get("probability") is None:
            raise RuntimeError(f"no probability: {answer}")
        row = {"health s": round(health, 2), "first predict s": round(predicted, 2),
               "first predict ms": round((predicted - health) * 1000, 1),
               "peak RSS MB at first predict": round(peak_rss_mb(process.pid)),
               "torch loaded at first predict": torch_loaded(process.pid)}
        if page:
            row.update(open_page(url))
        for key in ("first heatmap ms", "second heatmap ms"):
            sent = time.monotonic()
            answer = post_film(url + "/predict?explain=true")
            row[key] = round((time.monotonic() - sent) * 1000, 1)
            if not answer.get("heatmap_png_base64") and not answer.get("heatmap_empty"):
                raise RuntimeError(f"no heatmap: { {k: v for k, v in answer.items() if 'heatmap' in k} }")
        row["peak RSS MB after heatmaps"] = round(peak_rss_mb(process.pid))
        return row
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="the row's name, such as before or after")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the source tree to run (default: src/)")
    parser.add_argument("--page", action="store_true", help="GET / (open the page) before the heatmaps")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    load = os.getloadavg()[0]
    runs = [one_run(args.src, args.page) for _ in range(args.repeats)]
    row: dict[str, object] = {"label": args.label, "page opened first": args.page}
    for key in COLUMNS[2:-2]:
        values = [run[key] for run in runs if key in run]
        if not values:
            continue
        row[key] = values[0] if isinstance(values[0], bool) and len(set(values)) == 1 else (
            values if isinstance(values[0], bool) else statistics.median(values))
    row["load average"] = round((load + os.getloadavg()[0]) / 2, 1)
    row["runs"] = runs
    command = "PYTHONPATH=src:bench .venv/bin/python bench/serve_startup.py " + shlex.join(sys.argv[1:])
    try:
        rows, sources = carry_over("serve_startup", [row], "label", command)
    except FileNotFoundError:
        rows, sources = [row], ""
    write_results("serve_startup", rows, COLUMNS, command=command,
                  note=f"`pneumoscan serve` with the shipped model, backend auto (ONNX Runtime), OMP_NUM_THREADS=1, "
                       f"medians of {args.repeats} starts, times from the launch of the process (s) or of the request "
                       f"(ms), 2 CPU cores shared with other jobs. A row labelled 'before (COMMIT)' runs "
                       f"`--src DIR/src` of `git archive COMMIT src | tar -x -C DIR`.{sources}")
    print((Path(__file__).parent / "results" / "serve_startup.md").read_text())


if __name__ == "__main__":
    main()
