"""Metrics at fleet scale come from a federating Prometheus: the `prometheus` source gives
the same readings through it as through the Prometheus it federates.

Both are real servers (Debian's prometheus). The first scrapes an exporter the test
controls (three GPU hosts' `DCGM_FI_DEV_FB_USED`); the second scrapes the first's
`/federate` with `honor_labels: true`, as a regional or global Prometheus does. Each
metric is read for all three hosts in one poll cycle (`read_hosts`, one query per
metric), through both servers, before and after the exporter's values change. With
`honor_labels` the federated series keep their `job` and `instance`, so a query that
names them reads the same through either server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import orchestrator.metrics.sources  # noqa: F401 - registers every source
from orchestrator.config.inventory import Host
from orchestrator.core.model import Metric, MetricKind
from orchestrator.metrics.sources.base import ReadContext, read_hosts
from tests.support.prom import prometheus_with, query

pytestmark = pytest.mark.integration

HOSTS = [Host(f"gpu-{i}", {"ansible_host": f"10.0.0.{i}"}) for i in (1, 2, 3)]


class Exporter:
    """dcgm-exporter's shape: one series per host (the `Hostname` label) and GPU."""

    def __init__(self) -> None:
        self.values = {h.name: 1000.0 * (i + 1) for i, h in enumerate(HOSTS)}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = "".join(
                    f'DCGM_FI_DEV_FB_USED{{Hostname="{h}",gpu="0"}} {v}\n'
                    f'DCGM_FI_DEV_FB_USED{{Hostname="{h}",gpu="1"}} {v / 2}\n'
                    for h, v in owner.values.items()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]


@contextmanager
def exporting() -> Iterator[Exporter]:
    exporter = Exporter()
    thread = threading.Thread(target=exporter.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield exporter
    finally:
        exporter.server.shutdown()
        exporter.server.server_close()


def metric(name: str, config: dict[str, Any]) -> Metric:
    return Metric(name, "prometheus", MetricKind.NUMBER, config, "skip", 120, None, 1)


def readings(m: Metric, url: str) -> dict[str, float | None]:
    ctx = ReadContext(host=HOSTS[0], hostvars={h.name: dict(h.vars) for h in HOSTS}, phase=1,
                      run_id="r", elapsed=0, timeout=5, prometheus_url=url,
                      hosts={h.name: h for h in HOSTS})
    got = read_hosts(m, HOSTS, ctx)
    return {name: r.value for name, r in got.items()}


def test_a_federating_prometheus_gives_the_same_readings(tmp_path: Path) -> None:
    with exporting() as exporter:
        first_scrape = ("  - job_name: dcgm\n"
                        f"    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]\n")
        with prometheus_with(tmp_path / "first", first_scrape, "DCGM_FI_DEV_FB_USED") as first:
            upstream = first.removeprefix("http://")
            federate = ("  - job_name: federate\n"
                        "    honor_labels: true\n"
                        "    metrics_path: /federate\n"
                        "    params: {'match[]': ['{__name__=~\"DCGM_.*\"}']}\n"
                        f"    static_configs: [{{targets: ['{upstream}']}}]\n")
            with prometheus_with(tmp_path / "global", federate,
                                 'DCGM_FI_DEV_FB_USED{job="dcgm"}') as federating:
                instance = f"127.0.0.1:{exporter.port}"
                metrics = [
                    metric("vram_used_mib",
                           {"query": 'sum(DCGM_FI_DEV_FB_USED{Hostname="{{ host }}"})'}),
                    metric("vram_gpu0_mib",
                           {"query": 'DCGM_FI_DEV_FB_USED{gpu="0"}', "host_label": "Hostname"}),
                    metric("vram_of_the_job",  # names job and instance: honor_labels keeps them
                           {"query": f'max(DCGM_FI_DEV_FB_USED{{job="dcgm",instance="{instance}",'
                                     'Hostname="{{ host }}"})'}),
                ]
                # the federating server's series are the first's, labels and all
                labels = {tuple(sorted(s["metric"].items()))  # type: ignore[union-attr]
                          for s in query(federating, "DCGM_FI_DEV_FB_USED")}
                assert all(dict(ls)["job"] == "dcgm" and dict(ls)["instance"] == instance
                           for ls in labels), labels
                assert len(labels) == 6
                expected = {"vram_used_mib": {"gpu-1": 1500.0, "gpu-2": 3000.0, "gpu-3": 4500.0},
                            "vram_gpu0_mib": {"gpu-1": 1000.0, "gpu-2": 2000.0, "gpu-3": 3000.0},
                            "vram_of_the_job": {"gpu-1": 1000.0, "gpu-2": 2000.0,
                                                "gpu-3": 3000.0}}
                for m in metrics:
                    assert readings(m, first) == expected[m.name], m.name
                    assert readings(m, federating) == expected[m.name], m.name

                exporter.values["gpu-2"] = 7000.0  # a leak on one host: both servers see it
                want = {"gpu-1": 1500.0, "gpu-2": 10500.0, "gpu-3": 4500.0}
                deadline = time.monotonic() + 30
                while True:
                    seen = (readings(metrics[0], first), readings(metrics[0], federating))
                    if seen == (want, want):
                        break
                    assert time.monotonic() < deadline, seen
                    time.sleep(0.5)
                assert readings(metrics[1], federating)["gpu-2"] == 7000.0
