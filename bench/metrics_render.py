"""Rendering /metrics for a watch over 200 hosts (issue 24's goal: at most 50 ms).

A MigrateMetrics declared as `migrate watch` declares it: 200 hosts, 4 phases each with
the project's 4 triggers (+ `analysis`), every trigger updated through `observe` as the
monitor's poll would, some hosts fired and rolled back through the event hook, canary
scores for 4 waves. Timed: the body of GET /metrics (prometheus_client's
generate_latest over the private registry) after a change, so the families are rebuilt
each time (the worst case: no cache hit), and once over real HTTP.
Run: python bench/metrics_render.py [RUNS]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import urllib.request

from orchestrator.core.events import EventKind, RunEvent
from orchestrator.telemetry.metrics import MigrateMetrics

HOSTS, PHASES = 200, 4
TRIGGERS = ["vram_degradation", "health_failure", "model_load_failure", "cross_machine_failure"]
BUDGET = 0.050


def build() -> MigrateMetrics:
    m = MigrateMetrics("model-manager-agent")
    hosts = [f"gpu-{i:03d}" for i in range(HOSTS)]
    m.declare(hosts, {p: [*TRIGGERS, "analysis"] for p in range(1, PHASES + 1)},
              states={(h, p): "completed" for h in hosts for p in range(1, PHASES + 1)})
    for i, h in enumerate(hosts):
        for t in TRIGGERS:
            m.set_trigger(h, t, value=1000.0 + i, threshold=1200.0, firing=False)
    for h in hosts[:5]:
        m.on_event(RunEvent(EventKind.TRIGGER_FIRED, "r", h, 4, None, "",
                            {"trigger": "vram_degradation", "value": 1301.0,
                             "threshold": 1200.0}))
        m.on_event(RunEvent(EventKind.ROLLBACK_STARTED, "r", h, 4, None, "",
                            {"origin": "watch", "trigger": "vram_degradation"}))
    for w in range(1, 5):
        m.set_analysis_score(4, w, 100.0)
    m.set_watch_active(True)
    return m


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    m = build()
    body = m.render()
    lines = sum(1 for line in body.splitlines() if not line.startswith(b"#"))
    times, cpu = [], []
    for i in range(runs):
        m.set_trigger("gpu-000", "vram_degradation", value=1000.0 + i)  # invalidates the cache
        t, c = time.perf_counter(), time.process_time()
        m.render()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    port = m.serve(0)
    try:
        http = []
        for i in range(runs):
            m.set_trigger("gpu-000", "vram_degradation", value=2000.0 + i)
            t = time.perf_counter()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                r.read()
            http.append(time.perf_counter() - t)
    finally:
        m.close()
    med, worst = statistics.median(times), max(times)
    print(f"/metrics over {HOSTS} hosts ({lines} samples, {len(body) / 1024:.0f} KiB): render "
          f"median {med * 1000:.1f} ms, max {worst * 1000:.1f} ms (budget "
          f"{BUDGET * 1000:.0f} ms; CPU time median {statistics.median(cpu) * 1000:.1f} ms, "
          f"load {os.getloadavg()[0]:.1f}); over HTTP median "
          f"{statistics.median(http) * 1000:.1f} ms")
    return 0 if med <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
