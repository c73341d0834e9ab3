"""Real Prometheus + Alertmanager for the alert tests: Debian's `prometheus` and
`prometheus-alertmanager` (/usr/bin/prometheus-alertmanager), each on a free loopback
port with its own storage directory, Alertmanager with clustering off
(`--cluster.listen-address=`). Started through `orchestrator.rehearsal.alert_lab`,
the same code the sandbox uses. Without the binaries the tests skip, except under
CI=true, where they fail: CI must never skip them silently.

`MetricsServer` is the exporter the tests control: it serves whatever exposition text
the test sets, the way the stand-in agent and dcgm-exporter would.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator.rehearsal.alert_lab import (
    AlertLab,
    Daemon,
    LabUnavailable,
    default_rule_files,
    missing_binaries,
    start_alertmanager,
    start_lab,
)
from tests.support.real_parts import missing, require

ROOT = Path(__file__).resolve().parents[2]
RULES = default_rule_files(ROOT)


def require_binaries(alertmanager: bool = True) -> None:
    absent = [m for m in missing_binaries() if alertmanager or m == "prometheus"]
    require(not absent, f"Debian package(s) {', '.join(absent)} not installed")


def require_promtool() -> str:
    path = shutil.which("promtool")
    require(path is not None, "promtool (Debian package prometheus) is not installed")
    assert path is not None
    return path


class MetricsServer:
    """An exporter on 127.0.0.1: `series` maps a series (name and labels) to its value."""

    def __init__(self) -> None:
        self.series: dict[str, float] = {}
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def address_string(self) -> str:
                return str(self.client_address[0])

            def do_GET(self) -> None:
                with owner.lock:
                    body = "".join(f"{k} {v:g}\n" for k, v in owner.series.items()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.address = f"127.0.0.1:{self.port}"
        self.thread: threading.Thread | None = None

    def set(self, series: str, value: float) -> None:
        with self.lock:
            self.series[series] = value

    def __enter__(self) -> MetricsServer:
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def alert_lab(tmp: Path, targets: Mapping[str, str], *, webhook_url: str | None,
              token: str | None, time_scale: float = 1 / 60,
              rule_files: Sequence[Path] = RULES) -> Iterator[AlertLab]:
    """Prometheus with the shipped rules (`for:` scaled: 1m -> 1s) scraping `targets`
    (instance label -> address) every second, and Alertmanager pushing to `webhook_url`."""
    require_binaries(alertmanager=webhook_url is not None)
    try:
        lab = start_lab(tmp / "lab", targets, rule_files=rule_files, webhook_url=webhook_url,
                        token=token, time_scale=time_scale)
    except LabUnavailable as exc:
        missing(f"the alert lab would not start: {exc}")
    with lab:
        yield lab


@contextmanager
def alertmanager(tmp: Path, webhook_url: str, token: str | None) -> Iterator[Daemon]:
    """Alertmanager alone (alerts posted to its API by the test)."""
    require_binaries()
    daemon = start_alertmanager(tmp / "alertmanager", webhook_url, token=token)
    try:
        yield daemon
    finally:
        daemon.close()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0,
             every: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)
