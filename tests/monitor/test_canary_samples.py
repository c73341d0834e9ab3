"""Sample windows for the canary judge: the monitor's ring buffer, and range queries
against a real Prometheus scraping an exporter the test controls."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.canary.judge import HIGH, judge_metric
from orchestrator.canary.samples import SampleBuffer, prometheus_metric_window
from orchestrator.config.inventory import Host
from orchestrator.core.model import Metric, MetricKind
from tests.support.prom import prometheus
from tests.support.servers import AgentServer, serving


def test_buffer_windows_per_host_and_pooled() -> None:
    buf = SampleBuffer(retain=100)
    for t in range(50):
        buf.append("main", "vram", float(t), 1000.0 + t)
        buf.append("pc2", "vram", float(t), None if t % 10 == 0 else 2000.0)
    assert buf.window("main", "vram", 10, 12) == [1010.0, 1011.0, 1012.0]
    assert buf.window("pc2", "vram", 9, 11) == [2000.0, None, 2000.0]
    assert buf.window("main", "latency", 0, 100) == []
    assert len(buf.collect(["main", "pc2"], "vram", 40, 49)) == 20
    canary, control = buf.sides(["vram"], ["main"], ["pc2"], 45, 49)
    assert canary == {"vram": [1045.0, 1046.0, 1047.0, 1048.0, 1049.0]}
    assert control["vram"] == [2000.0] * 5
    buf.forget(["pc2"])
    assert buf.window("pc2", "vram", 0, 100) == []


def test_buffer_forgets_what_is_older_than_retain_and_past_maxlen() -> None:
    buf = SampleBuffer(retain=10, maxlen=5)
    for t in range(30):
        buf.append("h", "m", float(t), float(t))
    assert buf.window("h", "m", 0, 100) == [25.0, 26.0, 27.0, 28.0, 29.0]
    aged = SampleBuffer(retain=10)
    for t in range(30):
        aged.append("h", "m", float(t), float("nan") if t == 29 else float(t))
    assert aged.window("h", "m", 0, 100) == [float(t) for t in range(19, 29)] + [None]


def prom_metric(query: str, **extra: str) -> Metric:
    return Metric("vram", "prometheus", MetricKind.NUMBER, {"query": query, **extra}, "skip",
                  120, None, 1)


@pytest.mark.integration
def test_range_query_reads_a_window_without_polling(tmp_path: Path) -> None:
    with serving(AgentServer()) as agent, prometheus(
            tmp_path, f"127.0.0.1:{agent.port}", "DCGM_FI_DEV_FB_USED") as url:
        began = time.time()
        for value in (1000.0, 1010.0, 990.0, 1005.0, 995.0, 1002.0):
            agent.gauges["DCGM_FI_DEV_FB_USED"] = value
            time.sleep(1.0)
        end = time.time()
        hosts = [Host("main", {"gpu": "0", "ansible_host": "127.0.0.1"}),
                 Host("pc2", {"gpu": "7", "ansible_host": "10.0.0.9"})]
        hostvars = {h.name: h.vars for h in hosts}
        win = prometheus_metric_window(
            prom_metric('sum(DCGM_FI_DEV_FB_USED{gpu="{{ vars.gpu }}"})'), hosts, hostvars,
            url, began, end, step=0.5)
        main = [v for v in win.values["main"] if v is not None]
        assert len(main) >= 8, win
        assert set(main) <= {1000.0, 1010.0, 990.0, 1005.0, 995.0, 1002.0}
        assert len(set(main)) >= 3  # the readings of the whole window, not one poll
        assert "main" not in win.errors
        assert win.values["pc2"] == [] and "no series" in win.errors["pc2"]

        # host_label: one query for every host, series matched by instance (port dropped)
        labelled = prometheus_metric_window(
            prom_metric("DCGM_FI_DEV_FB_USED", host_label="instance"), hosts, hostvars, url,
            began, end, step=0.5)
        assert labelled.values["main"] == win.values["main"]
        assert "pc2" in labelled.errors and "main" not in labelled.errors

        several = prometheus_metric_window(prom_metric('{__name__=~"DCGM_FI_DEV_FB_USED|up"}'),
                                           hosts[:1], hostvars, url, began, end, step=1)
        assert several.values["main"] == [] and "aggregate" in several.errors["main"]
        bad = prometheus_metric_window(prom_metric("sum(("), hosts[:1], hostvars, url, began,
                                       end, step=1)
        assert bad.values["main"] == [] and "range query failed" in bad.errors["main"]

        # the window judged: a canary 12 % above this control is high
        judged = judge_metric([v * 1.12 for v in main], main, min_samples=5)
        assert judged.cls == HIGH
    nourl = prometheus_metric_window(prom_metric("up"), hosts[:1], {}, None, 0, 1, 1)
    assert nourl.errors["main"] == "no prometheus url"
