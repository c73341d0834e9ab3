"""Latency of the event-driven trigger paths (issue 13's goal: at most 100 ms).

1. push: an Alertmanager webhook POST (Bearer token, real HTTP on loopback) -> the
   alert book's change callback, which is where a trigger fires. Measured with a new
   connection per POST and on one keep-alive connection (Alertmanager keeps them).
2. NVML: an Xid event -> the waiter's callback, in-process (a fake pynvml whose
   nvmlEventSetWait blocks like NVML's) and through the remote probe (a real python3
   process with a fake pynvml module, read over a real CommandRunner's pipe).
3. For comparison, the metric turning bad -> the callback through the real chain: the
   shipped MMAThreadUnhealthy rule in a real Prometheus (1 s scrape and evaluation,
   `for:` set to 0 so only the pipeline is measured) -> a real Alertmanager
   (group_wait 0s, group_interval 1s) -> the receiver. In production add the rule's
   own `for:` (1m) and your scrape/evaluation intervals.

Each line is the median and max of RUNS (default 20). Timestamps are
time.perf_counter() in this one process, taken just before the cause (the request is
sent, the event is queued, the metric is changed) and inside the callback.
Run: python bench/alert_latency.py [RUNS] [--no-lab]
"""

from __future__ import annotations

import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.config.inventory import Host  # noqa: E402
from orchestrator.metrics.alerts.book import AlertBook, BookChange  # noqa: E402
from orchestrator.metrics.alerts.receiver import AlertReceiver  # noqa: E402
from orchestrator.metrics.sources.nvml_events import XidEvent, XidWaiter  # noqa: E402
from orchestrator.rehearsal.alert_lab import (  # noqa: E402
    LabUnavailable,
    default_rule_files,
    start_lab,
)
from orchestrator.runners.local import LocalCommandRunner  # noqa: E402
from tests.monitor.test_alerts_nvml import FakeNvml, fake_remote, put_event  # noqa: E402
from tests.support.alertmanager import MetricsServer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789abcdef"
GOAL_MS = 100.0


class Stamps:
    """Callback times by key, and a way to wait for one."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.cond = threading.Condition()

    def mark(self, key: str) -> None:
        now = time.perf_counter()
        with self.cond:
            self.at.setdefault(key, now)
            self.cond.notify_all()

    def wait(self, key: str, timeout: float) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: key in self.at, timeout):
                raise TimeoutError(f"no callback for {key} within {timeout:g}s")
            return self.at[key]


def summary(label: str, ms: list[float], goal: float | None = GOAL_MS) -> str:
    med, top = statistics.median(ms), max(ms)
    verdict = "" if goal is None else ("  ok" if top <= goal else f"  OVER the {goal:g} ms goal")
    return f"{label:<46} median {med:8.2f} ms   max {top:8.2f} ms   (n={len(ms)}){verdict}"


def webhook(name: str, status: str = "firing") -> bytes:
    return json.dumps({"version": "4", "status": status, "receiver": "migrate",
                       "groupLabels": {}, "commonLabels": {}, "alerts": [{
                           "status": status, "labels": {"alertname": name,
                                                        "instance": "main:9400"},
                           "startsAt": "2026-11-23T23:58:00Z"}]}).encode()


def bench_push(runs: int, keep_alive: bool) -> list[float]:
    stamps = Stamps()
    book = AlertBook()

    def on_change(change: BookChange) -> None:
        for alert in change.fired:
            stamps.mark(alert.name)

    book.subscribe(on_change)
    out = []
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    with AlertReceiver(book, "127.0.0.1:0", TOKEN) as rx:
        host, port = rx.address
        conn = http.client.HTTPConnection(host, port, timeout=5) if keep_alive else None
        for i in range(runs):
            name = f"BenchAlert{i}"
            body = webhook(name)
            c = conn or http.client.HTTPConnection(host, port, timeout=5)
            sent = time.perf_counter()
            c.request("POST", "/alerts", body=body, headers=headers)
            got = stamps.wait(name, 5)
            resp = c.getresponse()
            resp.read()
            assert resp.status == 200, resp.status
            if conn is None:
                c.close()
            out.append((got - sent) * 1000)
        if conn is not None:
            conn.close()
    return out


def bench_nvml_local(runs: int) -> list[float]:
    fake = FakeNvml()
    stamps = Stamps()
    out = []

    def on_event(event: XidEvent) -> None:
        stamps.mark(str(event.count))

    with XidWaiter(Host("main", {"ansible_connection": "local"}), on_event, module=fake):
        for i in range(1, runs + 1):
            time.sleep(0.02)  # the waiter is idle in nvmlEventSetWait, as in production
            sent = time.perf_counter()
            fake.put(0, 79)
            out.append((stamps.wait(str(i), 5) - sent) * 1000)
    return out


def bench_nvml_remote(runs: int) -> list[float]:
    stamps = Stamps()
    out = []

    def on_event(event: XidEvent) -> None:
        stamps.mark(str(event.count))

    with tempfile.TemporaryDirectory() as tmp:
        events, python = fake_remote(Path(tmp))
        waiter = XidWaiter(Host("pc2", {"ansible_host": "192.0.2.20"}), on_event,
                           commands=LocalCommandRunner(), python=python, wait_ms=250)
        with waiter:
            for i in range(1, runs + 1):
                time.sleep(0.02)
                sent = put_event(events, 0, i, 79)
                out.append((stamps.wait(str(i), 5) - sent) * 1000)
    return out


def bench_metric_to_callback(runs: int, say: Callable[[str], None]) -> list[float] | None:
    stamps = Stamps()
    book = AlertBook()

    def on_change(change: BookChange) -> None:
        for alert in change.fired:
            if alert.name == "MMAThreadUnhealthy":
                stamps.mark(alert.labels.get("thread", ""))

    book.subscribe(on_change)
    out = []
    with tempfile.TemporaryDirectory() as tmp, MetricsServer() as agent, \
            AlertReceiver(book, "127.0.0.1:0", TOKEN) as rx:
        agent.set('mma_thread_health_status{thread="warmup"}', 0)
        try:
            lab = start_lab(Path(tmp), {f"main:{agent.port}": agent.address},
                            rule_files=default_rule_files(ROOT), webhook_url=rx.url,
                            token=TOKEN, time_scale=0)
        except LabUnavailable as exc:
            say(f"metric -> callback: skipped ({exc})")
            return None
        with lab:
            stamps.wait("warmup", 60)  # the chain works end to end; groups exist
            for i in range(runs):
                thread = f"bench-{i}"
                sent = time.perf_counter()
                agent.set(f'mma_thread_health_status{{thread="{thread}"}}', 0)
                out.append((stamps.wait(thread, 30) - sent) * 1000)
                say(f"  metric -> callback run {i + 1}: {out[-1]:.0f} ms")
    return out


def main(argv: list[str]) -> int:
    runs = int(next((a for a in argv if a.isdigit()), "20"))

    def say(line: str) -> None:
        print(line, flush=True)

    say(f"alert and NVML event latency, {runs} runs each; goal <= {GOAL_MS:g} ms\n")
    lines = [summary("push POST -> callback (new connection)", bench_push(runs, False)),
             summary("push POST -> callback (keep-alive)", bench_push(runs, True)),
             summary("NVML Xid event -> callback (in-process)", bench_nvml_local(runs)),
             summary("NVML Xid event -> callback (remote probe)", bench_nvml_remote(runs))]
    for line in lines:
        say(line)
    if "--no-lab" not in argv:
        metric = bench_metric_to_callback(runs, say)
        if metric:
            lines.append(summary("metric bad -> callback (Prometheus+Alertmanager)",
                                 metric, goal=None))
            say(lines[-1])
    say("\nsummary:")
    for line in lines:
        say("  " + line)
    return 0 if all("OVER" not in line for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
