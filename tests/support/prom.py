"""A real Prometheus server (Debian's `prometheus`) on a free loopback port, scraping an
exporter the test controls every second. Skips without the binary, fails under CI=true."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.real_parts import require


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(url: str, promql: str) -> list[dict[str, object]]:
    q = urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=2) as resp:
        return list(json.loads(resp.read())["data"]["result"])


@contextmanager
def prometheus(tmp: Path, target: str, first_series: str) -> Iterator[str]:
    """Start Prometheus scraping `target` (host:port); yield its URL once `first_series`
    has been scraped."""
    binary = shutil.which("prometheus")
    require(binary is not None, "Debian's prometheus is not installed")
    assert binary is not None
    port = free_port()
    cfg = tmp / "prometheus.yml"
    cfg.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                   "scrape_configs:\n  - job_name: agent\n"
                   f"    static_configs: [{{targets: ['{target}']}}]\n")
    proc = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'db'}",
                             f"--web.listen-address=127.0.0.1:{port}",
                             "--query.lookback-delta=3s"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "prometheus exited"
            try:
                if query(url, first_series):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "prometheus never scraped the exporter"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def prometheus_with(tmp: Path, scrape_configs: str, first_series: str,
                    lookback: str = "3s") -> Iterator[str]:
    """Start Prometheus with these `scrape_configs:` (YAML, indented as a list under the
    key); yield its URL once `first_series` answers (a federating Prometheus, say).
    `lookback` must exceed the slowest scrape interval, or series go stale between
    scrapes."""
    binary = shutil.which("prometheus")
    require(binary is not None, "Debian's prometheus is not installed")
    assert binary is not None
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tmp / "prometheus.yml"
    cfg.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                   f"scrape_configs:\n{scrape_configs}")
    proc = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'db'}",
                             f"--web.listen-address=127.0.0.1:{port}",
                             f"--query.lookback-delta={lookback}"],
                            stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "prometheus.log", "wb"))  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log = (tmp / "prometheus.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"prometheus exited: {log}")
            try:
                if query(url, first_series):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{url} never answered {first_series}"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def nonzero(results: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The label sets of an instant query's series whose value is not 0."""
    return [r["metric"] for r in results if float(r["value"][1]) != 0]  # type: ignore[index]


def wait_for(url: str, promql: str, ok: Any, timeout: float = 30) -> list[dict[str, Any]]:
    """Query until `ok(results)` (scrapes and rule evaluations take their interval)."""
    deadline = time.monotonic() + timeout
    while True:
        results = query(url, promql)
        if ok(results):
            return results
        assert time.monotonic() < deadline, f"{promql}: {results}"
        time.sleep(0.3)
