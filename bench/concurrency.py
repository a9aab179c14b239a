"""A few doctors at once: /predict latency and the server's peak memory for 1, 2 and 4 concurrent uploads.

    PYTHONPATH=src:bench .venv/bin/python bench/concurrency.py [--model RUN_OR_SAFETENSORS] [--backend auto]
        [--requests 12] [-- SERVE OPTIONS...]

Starts `pneumoscan serve` (default backend: auto, as the CLI) in a subprocess on a free 127.0.0.1 port. For each
upload kind (a 224 px JPEG of the train split, and a 3000 x 3000 PNG made by upscaling it, with a little noise so
that it weighs what a scanner's PNG does), with and without the heatmap (?explain=true is what the clinicians'
page asks for), 1, 2 and 4 clients each send --requests uploads one after another, all at the same time.
Each row: client-side latency p50/p95/max (upload included), errors, and the server's peak RSS during that row
(VmHWM, reset before each row through /proc/PID/clear_refs). The mixed rows time one client's 224 px JPEGs while
other clients keep sending 3000 px PNGs: whether one slow upload makes the others wait. Writes
bench/results/concurrency.json and .md. Not a test: the numbers depend on the machine and what else runs on it.
"""
from __future__ import annotations

import argparse
import io
import os
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from _results import write_report
from _subprocess import model_or_shipped
from load import HOST, ROOT, free_port, rss_mb, start_server, stop_server, wait_ready

TRAIN = ROOT.parent / "shared" / "data" / "chest_xray" / "train" / "PNEUMONIA"
SAMPLE = ROOT / "sample" / "chest_xray" / "train" / "PNEUMONIA"
CONCURRENCY = (1, 2, 4)
SLOW_RATE = 512 * 1024  # bytes/s of a slow link


def payloads() -> dict[str, tuple[str, bytes, str]]:
    """The uploads: name -> (file name, bytes, content type)."""
    from PIL import Image

    folder = TRAIN if TRAIN.is_dir() else SAMPLE
    source = sorted(folder.glob("*.jpeg"))[0]
    with Image.open(source) as im:
        big = np.asarray(im.convert("L").resize((3000, 3000), Image.Resampling.BICUBIC), dtype=np.float32)
    noisy = np.clip(big + np.random.default_rng(0).normal(0, 3, big.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="PNG")
    return {"jpeg_224": (source.name, source.read_bytes(), "image/jpeg"),
            "png_3000": ("film.png", buffer.getvalue(), "image/png")}


def reset_peak(pid: int) -> bool:
    """Start the process's peak RSS (VmHWM) afresh; False where the kernel does not allow it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def trickle(upload: tuple[str, bytes, str], rate: int) -> tuple[Iterator[bytes], str]:
    """A multipart body of `upload` sent at `rate` bytes/s (a slow link), and its content type."""
    name, data, kind = upload
    boundary = "concurrencybench"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: {kind}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            time.sleep(64 * 1024 / rate)
            yield body[start:start + 64 * 1024]

    return chunks(), f"multipart/form-data; boundary={boundary}"


Job = tuple[str, tuple[str, bytes, str], bool, "int | None", "int | None", float]


def clients(base: str, jobs: list[Job]) -> dict[str, list[float]]:
    """Run one thread per job (tag, upload, explain, count: None = until the counted jobs end, rate: bytes/s of a
    slow link or None, delay: seconds before the first request); each posts its upload one request after another.
    Returns the latencies by tag and, under 'errors', one entry per failed counted request."""
    import httpx

    times: dict[str, list[float]] = {"errors": []}
    lock = threading.Lock()
    counted_done = threading.Event()
    remaining = [sum(job[3] is not None for job in jobs)]

    def run(tag: str, upload: tuple[str, bytes, str], explain: bool, count: int | None, rate: int | None,
            delay: float) -> None:
        time.sleep(delay)
        with httpx.Client(base_url=base, timeout=120) as http:
            k = 0
            while (k < count) if count is not None else not counted_done.is_set():
                t0 = time.perf_counter()
                params = {"explain": str(explain).lower()}
                try:
                    if rate:
                        body, kind = trickle(upload, rate)
                        res = http.post("/predict", params=params, content=body, headers={"Content-Type": kind})
                    else:
                        res = http.post("/predict", params=params, files={"file": upload})
                    ok = res.status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    times.setdefault(tag, []).append(time.perf_counter() - t0)
                    if not ok and count is not None:
                        times["errors"].append(1.0)
                k += 1
        if count is not None:
            with lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    counted_done.set()

    threads = [threading.Thread(target=run, args=job, daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times


def summary(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "max_ms": round(float(ms.max()), 1)}


def measure(base: str, pid: int, jobs: list, tag: str) -> dict:
    """One row: warm-up, reset the peak, run `jobs`, and summarise the latencies of `tag`."""
    reset_peak(pid)
    wall = time.perf_counter()
    times = clients(base, jobs)
    return {**summary(times[tag]), "errors": len(times["errors"]), "wall_s": round(time.perf_counter() - wall, 2),
            "rss_peak_mb": round(rss_mb(pid, "VmHWM"), 1)}


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="run folder or model.safetensors (default: the shipped model)")
    parser.add_argument("--backend", default="auto", choices=["torch", "onnx", "auto"])
    parser.add_argument("--requests", type=int, default=12, help="uploads per client in each row (default 12)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="results folder")
    parser.add_argument("serve_options", nargs="*", help="more `pneumoscan serve` options, after --")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.model = model_or_shipped(parser, args.model)
    uploads = payloads()
    port = free_port()
    base = f"http://{HOST}:{port}"
    server = start_server(args.model, port, args.backend, *args.serve_options)
    rows = []
    try:
        wait_ready(base, server)
        import httpx

        backend = httpx.get(base + "/health", timeout=5).json()["backend"]
        idle = round(rss_mb(server.pid), 1)
        for kind, upload in uploads.items():
            for explain in (False, True):
                clients(base, [("warm", upload, explain, 2, None, 0.0)])
                for n in CONCURRENCY:
                    jobs: list[Job] = [("timed", upload, explain, args.requests, None, 0.0) for _ in range(n)]
                    row = {"upload": kind, "explain": explain, "clients": n, **measure(base, server.pid, jobs, "timed")}
                    rows.append(row)
                    print(row, flush=True)
        for slow in (1, 3):  # one doctor's small JPEGs while others send 3000 px PNGs
            jobs = [("timed", uploads["jpeg_224"], True, args.requests, None, 0.0)]
            jobs += [("busy", uploads["png_3000"], True, None, None, 0.0) for _ in range(slow)]
            row = {"upload": f"jpeg_224 beside {slow} x png_3000", "explain": True, "clients": 1 + slow,
                   **measure(base, server.pid, jobs, "timed")}
            rows.append(row)
            print(row, flush=True)
        # ... and while two others' 3000 px PNGs crawl in over slow links (SLOW_RATE): a slow upload holds no slot
        jobs = [("timed", uploads["jpeg_224"], True, args.requests, None, 1.0)]
        jobs += [("crawl", uploads["png_3000"], True, 1, SLOW_RATE, 0.0) for _ in range(2)]
        row = {"upload": f"jpeg_224 beside 2 x png_3000 at {SLOW_RATE // 1024} kB/s", "explain": True, "clients": 3,
               **measure(base, server.pid, jobs, "timed")}
        rows.append(row)
        print(row, flush=True)
    finally:
        stop_server(server)
    command = "PYTHONPATH=src:bench .venv/bin/python bench/concurrency.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    sizes = {kind: round(len(data) / 1024 / 1024, 2) for kind, (_, data, _) in uploads.items()}
    report = {"model": args.model, "backend": backend, "serve_options": args.serve_options, "cpus": os.cpu_count(),
              "load_avg_at_end": os.getloadavg()[0], "upload_mb": sizes, "server_rss_idle_mb": idle,
              "requests_per_client": args.requests, "rows": rows, "command": command}
    lines = ["# Concurrent uploads", "",
             f"`pneumoscan serve` ({backend} backend{', ' + ' '.join(args.serve_options) if args.serve_options else ''}"
             f", model `{Path(args.model).name}`) on loopback, {os.cpu_count()} CPU cores shared with the clients "
             f"(load average {report['load_avg_at_end']:.2f} at the end). Uploads: a 224 px JPEG "
             f"({sizes['jpeg_224']} MB) and a 3000 x 3000 PNG ({sizes['png_3000']} MB); each client sends "
             f"{args.requests} one after another. Latency is the client's (upload included); peak RSS is the "
             f"server's during the row (idle: {idle} MB).", "",
             "| upload | heatmap | clients | requests | p50 ms | p95 ms | max ms | errors | server peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['upload']} | {'yes' if r['explain'] else 'no'} | {r['clients']} | {r['n']} | {r['p50_ms']} | "
              f"{r['p95_ms']} | {r['max_ms']} | {r['errors']} | {r['rss_peak_mb']} |" for r in rows]
    lines += ["", "Mixed rows: latency of the one client sending 224 px JPEGs while the others send 3000 px PNGs "
              "without pause, or (the last row) while two 3000 px PNGs are being uploaded over slow links. Other jobs "
              "shared the machine's cores, so rows vary from run to run by up to about 2x.", "",
              f"Command: `{command}`", ""]
    write_report(args.out, "concurrency", report, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
