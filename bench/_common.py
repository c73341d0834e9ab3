"""What several bench scripts share: the fleet's host names, the small threaded HTTP
server each runs in a process of its own (so that serving does not share a GIL with what
is measured), and Prometheus's own count of the queries it answered.

Imported by the scripts beside it (`python bench/X.py` puts this folder on sys.path).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def host_names(n: int) -> list[str]:
    return [f"h{i:04d}" for i in range(n)]


def serve_forever(handler: type[BaseHTTPRequestHandler]) -> None:
    """Serve `handler` on a free port of 127.0.0.1, print the port (the parent reads it,
    see `served_by`), and serve until killed."""

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024  # listen() backlog: 16 readers at once, and bursts
        daemon_threads = True

    server = Server(("127.0.0.1", 0), handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


@contextmanager
def served_by(script: str | Path, n_hosts: int) -> Iterator[str]:
    """Start `script --serve N_HOSTS` (which calls `serve_forever`); yield its base URL."""
    proc = subprocess.Popen([sys.executable, str(script), "--serve", str(n_hosts)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield f"http://127.0.0.1:{int(proc.stdout.readline())}"
    finally:
        proc.terminate()
        proc.wait(10)


def answered(prom: str) -> float:
    """How many instant queries the Prometheus at `prom` has answered so far."""
    import urllib.request

    with urllib.request.urlopen(f"{prom}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("prometheus_http_requests_total{")
               and 'handler="/api/v1/query"' in line)


def cycle_spans(monitor: Any, cycles: int, pause: float,
                cpu: bool = False) -> Any:
    """The wall time of each of `cycles` + 1 TriggerMonitor cycles (the first one pays for
    connections and baselines), `pause` seconds apart, with the watch's 16 readers. With
    `cpu`, also each cycle's CPU time of this process (all its threads): (walls, cpus)."""
    import resource

    def used() -> float:
        use = resource.getrusage(resource.RUSAGE_SELF)
        return use.ru_utime + use.ru_stime

    spans, cpus = [], []
    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="metric") as pool:
        for _ in range(cycles + 1):
            t0, c0 = time.perf_counter(), used()
            monitor.cycle(pool)
            spans.append(time.perf_counter() - t0)
            cpus.append(used() - c0)
            time.sleep(pause)
    return (spans, cpus) if cpu else spans
