"""Peak memory of `pneumoscan serve` under concurrent large /predict/batch uploads.

    PYTHONPATH=src:bench .venv/bin/python bench/upload_memory.py [--clients 8] [--batch-mb 95] [--label NAME]
        [--src DIR] [-- SERVE OPTIONS...]

Starts the service (shipped model) in a subprocess on a free 127.0.0.1 port, then --clients threads each
post one /predict/batch request at the same moment: 16 files of one bundled sample X-ray padded with
zero bytes after its end (JPEG decoders ignore them) to --batch-mb MB in all. Reports the answers'
status codes and the server's resident memory when idle and at its peak (VmHWM from /proc), and
adds a row named --label to bench/results/upload_memory.json and .md. Not a test: the numbers
depend on timing and on the machine.
"""
from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from _results import carry_over, write_results
from load import HOST, ROOT, free_port, rss_mb, stop_server, wait_ready

FILES = 16
COLUMNS = ["label", "serve_options", "clients", "body_mb", "statuses", "rss_idle_mb", "rss_peak_mb",
           "peak_minus_idle_mb", "wall_s"]


def batch_body(total_mb: float) -> tuple[bytes, str]:
    """A multipart body of FILES padded copies of one sample X-ray, about `total_mb` MB, and its boundary."""
    xray = sorted((ROOT / "sample" / "chest_xray" / "train" / "PNEUMONIA").glob("*.jpeg"))[0].read_bytes()
    size = int(total_mb * 1024 * 1024 / FILES) - 200
    padded = xray + bytes(size - len(xray))
    boundary = "uploadmemorybench"
    parts = [(f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"x{i}.jpeg\"\r\n"
              "Content-Type: image/jpeg\r\n\r\n").encode() + padded + b"\r\n" for i in range(FILES)]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), boundary


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="simultaneous batch uploads (default 8)")
    parser.add_argument("--batch-mb", type=float, default=95, help="size of each batch body in MB (default 95)")
    parser.add_argument("--label", default="run", help="name of the result row (default run)")
    parser.add_argument("--src", default=str(ROOT / "src"), help="source tree to serve (default: this checkout's)")
    parser.add_argument("serve_options", nargs="*", help="options passed on to pneumoscan serve (after --)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import httpx

    body, boundary = batch_body(args.batch_mb)
    port = free_port()
    base = f"http://{HOST}:{port}"
    env = {"PYTHONPATH": args.src, "PATH": "/usr/bin:/bin"}
    server = subprocess.Popen([sys.executable, "-m", "pneumoscan.cli", "serve", "--host", HOST, "--port", str(port),
                               "--log-level", "warning", *args.serve_options],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    statuses: list[int | str] = []
    try:
        wait_ready(base, server)
        idle = rss_mb(server.pid)
        start = threading.Barrier(args.clients)

        def client() -> None:
            with httpx.Client(base_url=base, timeout=300) as http:
                start.wait()
                try:
                    res = http.post("/predict/batch", content=body,
                                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
                    statuses.append(res.status_code)
                except httpx.HTTPError as err:
                    statuses.append(type(err).__name__)

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        peak = rss_mb(server.pid, "VmHWM")
    finally:
        stop_server(server, signal.SIGTERM)
    row = {"label": args.label, "serve_options": " ".join(args.serve_options) or "(defaults)",
           "clients": args.clients, "body_mb": round(len(body) / 1024 / 1024),
           "statuses": ", ".join(f"{n} x {code}" for code, n in sorted(Counter(map(str, statuses)).items())),
           "rss_idle_mb": round(idle), "rss_peak_mb": round(peak), "peak_minus_idle_mb": round(peak - idle),
           "wall_s": round(wall, 2)}
    print(row)
    command = "PYTHONPATH=src:bench .venv/bin/python bench/upload_memory.py " + shlex.join(argv or sys.argv[1:])
    rows, sources = [row], ""
    if (ROOT / "bench" / "results" / "upload_memory.json").is_file():
        rows, sources = carry_over("upload_memory", rows, "label", command)
    write_results("upload_memory", rows, COLUMNS, command=command,
                  note="Peak server RSS while --clients batch uploads arrive at once (VmHWM)." + sources)
    return 0


if __name__ == "__main__":
    sys.exit(main())
