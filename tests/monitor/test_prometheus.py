"""The prometheus source against a real Prometheus server, and a VRAM rollback driven
by it: the exporter the test controls is scraped every second."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from orchestrator.config.inventory import Host
from orchestrator.core.model import Metric, MetricKind
from orchestrator.metrics.sources.base import ReadContext, read_metric
from tests.support.projects import make_project
from tests.support.prom import prometheus
from tests.support.servers import AgentServer, serving

pytestmark = pytest.mark.integration


def prom_metric(query: str) -> Metric:
    return Metric("vram", "prometheus", MetricKind.NUMBER, {"query": query}, "skip", 120, None, 1)


def ctx(url: str | None) -> ReadContext:
    return ReadContext(host=Host("main", {}), hostvars={"main": {}}, phase=1, run_id="r",
                       elapsed=0, timeout=2, prometheus_url=url)


def test_prometheus_source_reads_aggregates_and_reports_no_data(tmp_path: Path) -> None:
    with serving(AgentServer()) as agent:
        agent.gauges["DCGM_FI_DEV_FB_USED"] = 1234
        target = f"127.0.0.1:{agent.port}"
        with prometheus(tmp_path, target, "DCGM_FI_DEV_FB_USED") as url:
            r = read_metric(prom_metric('sum(DCGM_FI_DEV_FB_USED{gpu="0"})'), ctx(url))
            assert r.value == 1234
            none = read_metric(prom_metric('DCGM_FI_DEV_FB_USED{gpu="7"}'), ctx(url))
            assert none.value is None and "no series" in (none.error or "")
            bad = read_metric(prom_metric("sum(("), ctx(url))
            assert bad.value is None and bad.error
            nourl = read_metric(prom_metric("up"), ctx(None))
            assert nourl.value is None and "no prometheus url" in (nourl.error or "")
        down = read_metric(prom_metric("up"), ctx(url))  # server stopped: no data, no crash
        assert down.value is None


def test_vram_degradation_seen_through_prometheus_rolls_back(tmp_path: Path) -> None:
    with serving(AgentServer()) as agent, prometheus(
            tmp_path, f"127.0.0.1:{agent.port}", "DCGM_FI_DEV_FB_USED") as url:
        proj = make_project(tmp_path, migration=(
            "name: prom\ninventory: inventory/hosts.yml\npoll_interval: 500ms\n"
            f"prometheus: {{url: '{url}'}}\n"
            "metrics:\n  vram_used_mib:\n    source: prometheus\n"
            "    query: 'sum(DCGM_FI_DEV_FB_USED{gpu=\"0\"})'\n"
            "triggers:\n  vram_degradation: {metric: vram_used_mib, degrade_pct: 20}\n"))
        proj.phase(1, "soak", "phase: 1\nsteps:\n  - id: one\n    playbook: playbooks/touch.yml\n"
                   "    rollback: rollback/untouch.yml\n  - id: soak\n    wait: 60s\n")
        proc = proj.spawn("--output", "json", "phase", "1", "--host", "main")
        try:
            deadline = time.monotonic() + 60
            while not (proj.markers / "main-one").exists():
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
            time.sleep(1.0)
            agent.gauges["DCGM_FI_DEV_FB_USED"] = 1301
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 1, err
    assert json.loads(out)["reason"] == \
        "trigger vram_degradation: 1301 > 1200 (baseline 1000, +20%)"
    assert not (proj.markers / "main-one").exists()
