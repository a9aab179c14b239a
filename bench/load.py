"""Load test of `pneumoscan serve`: concurrent clients posting X-rays to /predict on loopback.

    PYTHONPATH=src .venv/bin/python bench/load.py [--model RUN_OR_SAFETENSORS] [--seconds 60] [--clients 16]
        [--images DIR] [-- SERVE OPTIONS...]

Starts the service in a subprocess on a free 127.0.0.1 port (with SERVE OPTIONS, such as --slots 2
--audit-log FILE), runs --clients threads that each send one image after another (224 px JPEGs from
--images, by default the train split, ../shared/data/chest_xray/train, else the bundled sample's train
folder: timing needs no test film, and the test split is kept for final reports) for --seconds (at
most 60 by default), then stops the server. Writes
bench/results/load.json and .md: requests/s, latency p50/p99 (client side, includes the upload),
errors, and the server's RSS (sampled, and its peak from /proc). Targets: 0 errors,
p99 <= 500 ms, server RSS <= 600 MB.
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from _results import write_report
from _subprocess import model_or_shipped, src_env

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
IMAGE_DIRS = (ROOT.parent / "shared" / "data" / "chest_xray" / "train", ROOT / "sample" / "chest_xray" / "train")
TARGETS = {"errors": 0, "p99_ms": 500.0, "server_rss_mb": 600.0}
HOST = "127.0.0.1"  # loopback only


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process from /proc (VmRSS now, VmHWM = peak), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_images(limit: int = 64, folders: tuple[Path, ...] = IMAGE_DIRS) -> list[tuple[str, bytes]]:
    """Up to LIMIT JPEGs spread over the first of FOLDERS that has any: (file name, bytes)."""
    for folder in folders:
        files = sorted(p for p in folder.rglob("*.jpeg"))
        if files:
            step = max(1, len(files) // limit)
            return [(p.name, p.read_bytes()) for p in files[::step][:limit]]
    raise SystemExit(f"bench/load.py: no .jpeg images found in {' or '.join(map(str, folders))}")


def start_server(model: str, port: int, backend: str, *options: str) -> subprocess.Popen:
    """`pneumoscan serve` of this checkout on HOST:PORT, quiet but for warnings; `options`: more serve options."""
    env = src_env()
    cmd = [sys.executable, "-m", "pneumoscan.cli", "serve", "--model", model, "--host", HOST, "--port", str(port),
           "--backend", backend, "--log-level", "warning", *options]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_server(server: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    """Ask the server to shut down with `sig`; kill it if it has not exited after 20 s."""
    server.send_signal(sig)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def wait_ready(base: str, server: subprocess.Popen, timeout: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited early:\n{server.stderr.read().decode() if server.stderr else ''}")
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("server did not become ready")


def run_clients(base: str, images: list[tuple[str, bytes]], clients: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(index: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            k = index
            while time.monotonic() < deadline:
                name, data = images[k % len(images)]
                k += clients
                t0 = time.perf_counter()
                try:
                    res = http.post("/predict", files={"file": (name, data, "image/jpeg")})
                    ok = res.status_code == 200 and "probability" in res.json()
                    problem = None if ok else f"HTTP {res.status_code}"
                except httpx.HTTPError as err:
                    problem = type(err).__name__
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
                    if problem:
                        errors.append(problem)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = np.asarray(latencies) * 1000
    return {"requests": len(latencies), "wall_s": round(wall, 2), "requests_per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "max_ms": round(float(ms.max()), 1), "errors": len(errors), "error_kinds": sorted(set(errors))}


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="run folder or model.safetensors (default: the shipped model)")
    parser.add_argument("--seconds", type=float, default=60, help="test duration (default 60)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--backend", default="auto", choices=["torch", "onnx", "auto"])
    parser.add_argument("--images", type=Path,
                        help="folder of the JPEGs to send, searched recursively (default: the train split, "
                             "../shared/data/chest_xray/train, else sample/chest_xray/train)")
    parser.add_argument("--out", default=str(RESULTS), help="results folder (default: %(default)s)")
    parser.add_argument("serve_options", nargs="*", help="more `pneumoscan serve` options, after --")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.model = model_or_shipped(parser, args.model)

    images = load_images(folders=(args.images,) if args.images else IMAGE_DIRS)
    port = free_port()
    base = f"http://{HOST}:{port}"
    server = start_server(args.model, port, args.backend, *args.serve_options)
    samples: list[float] = []
    stop = threading.Event()
    try:
        wait_ready(base, server)
        idle_rss = rss_mb(server.pid)

        def sample_rss() -> None:
            while not stop.wait(0.5):
                samples.append(rss_mb(server.pid))

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        print(f"{args.clients} clients for {args.seconds:g} s against {base} ...", flush=True)
        result = run_clients(base, images, args.clients, args.seconds)
        stop.set()
        sampler.join()
        peak = rss_mb(server.pid, "VmHWM")
        import httpx

        backend = httpx.get(base + "/health", timeout=5).json()["backend"]
    finally:
        stop.set()
        stop_server(server)

    report = {
        "model": args.model, "backend": backend, "clients": args.clients, "seconds": args.seconds,
        "images": str(args.images or "default"), "serve_options": args.serve_options,
        "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()[0], **result,
        "server_rss_idle_mb": round(idle_rss, 1), "server_rss_max_sampled_mb": round(max(samples, default=idle_rss), 1),
        "server_rss_peak_mb": round(peak, 1), "targets": TARGETS,
        "targets_met": {"errors==0": result["errors"] == 0, "p99<=500ms": result["p99_ms"] <= TARGETS["p99_ms"],
                        "server_rss<=600MB": peak <= TARGETS["server_rss_mb"]},
        "command": "PYTHONPATH=src .venv/bin/python bench/load.py " + shlex.join(argv or sys.argv[1:]),
    }
    md = "\n".join([
        "# Load test", "",
        f"`pneumoscan serve` ({report['backend']} backend{', ' + ' '.join(args.serve_options) if args.serve_options else ''}"
        f", model `{args.model}`) on loopback; {args.clients} concurrent "
        f"clients posting 224 px JPEGs to /predict for {result['wall_s']} s; {report['cpus']} CPU cores shared "
        f"with the clients (load average {report['load_avg_at_end']:.2f} at the end).", "",
        "| requests | requests/s | p50 ms | p99 ms | max ms | errors | server RSS idle / peak MB |",
        "|---|---|---|---|---|---|---|",
        f"| {result['requests']} | {result['requests_per_s']} | {result['p50_ms']} | {result['p99_ms']} | "
        f"{result['max_ms']} | {result['errors']} | {report['server_rss_idle_mb']} / {report['server_rss_peak_mb']} |",
        "", "Targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in report["targets_met"].items()),
        "", f"Command: `{report['command']}`", ""])
    write_report(args.out, "load", report, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
