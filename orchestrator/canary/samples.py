"""Where the judge's samples come from: a window of readings per host and metric.

Two sources:

(a) `SampleBuffer`: the monitor's own readings at the poll interval. The monitor appends
    every reading it takes (`append(host, metric, at, value)`, `value=None` for no data,
    `at` on the monitor's clock); the analysis reads a window back, per host or pooled
    over a side's hosts. A ring per (host, metric): bounded by `retain` seconds and by
    `maxlen` readings. Thread-safe.

        buf = SampleBuffer(retain=window + bake)
        buf.append("gpu-017", "vram_used_mib", clock.monotonic(), 14210.0)
        canary, control = buf.sides(["vram_used_mib"], canary_hosts, control_hosts,
                                    start=end - window, end=end)

(b) `prometheus_window` / `prometheus_metric_window`: for `prometheus` metrics, the
    window is read at once with a range query (through `metrics.promql`, the one
    Prometheus client: prometheus-api-client, imported on first use), so that a 10-minute
    window is available at the end of the bake without having polled through it, and
    the `before` control is the real history before the first step. Times are Unix
    seconds (Prometheus's clock, the wall clock), `step` the poll interval.

        win = prometheus_metric_window(metric, hosts, hostvars, url, start, end, step=5.0)
        win.values["gpu-017"]   # [float | None, ...] (NaN kept: the judge drops it)
        win.errors["gpu-018"]   # why that host has no samples

One query per host, rendered as the instant source renders it (`{{ host }}`,
`{{ vars.* }}`), 16 at a time; with `host_label:` on the metric, one query for every
host, each series going to the host whose name (or `ansible_host`) its label carries,
`:port` ignored. A host whose query gives several series has no samples and an error
saying to aggregate, as for the instant source.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from orchestrator.core.hostport import strip_port
from orchestrator.metrics.promql import PromQL, PromQLError

Sample = float | None


class SampleBuffer:
    """Recent readings per (host, metric), with the time each was taken."""

    def __init__(self, retain: float = 3600.0, maxlen: int | None = 100_000) -> None:
        self.retain = retain
        self.maxlen = maxlen
        self._rings: dict[tuple[str, str], deque[tuple[float, Sample]]] = {}
        self._lock = threading.Lock()

    def append(self, host: str, metric: str, at: float, value: Sample) -> None:
        if value is not None and not math.isfinite(value):
            value = None
        with self._lock:
            ring = self._rings.get((host, metric))
            if ring is None:
                ring = self._rings[(host, metric)] = deque(maxlen=self.maxlen)
            ring.append((at, value))
            horizon = at - self.retain
            while ring and ring[0][0] < horizon:
                ring.popleft()

    def window(self, host: str, metric: str, start: float, end: float) -> list[Sample]:
        """Readings taken in [start, end], oldest first (None where there was no data)."""
        with self._lock:
            ring = self._rings.get((host, metric))
            if not ring:
                return []
            out: list[Sample] = []
            for at, value in reversed(ring):
                if at < start:
                    break
                if at <= end:
                    out.append(value)
        out.reverse()
        return out

    def collect(self, hosts: Iterable[str], metric: str, start: float,
                end: float) -> list[Sample]:
        """The window pooled over `hosts`: one side of the comparison."""
        out: list[Sample] = []
        for host in hosts:
            out.extend(self.window(host, metric, start, end))
        return out

    def sides(self, metrics: Iterable[str], canary: Sequence[str], control: Sequence[str],
              start: float, end: float) -> tuple[dict[str, list[Sample]],
                                                 dict[str, list[Sample]]]:
        """Canary and control samples per metric over the same window."""
        names = list(metrics)
        return ({m: self.collect(canary, m, start, end) for m in names},
                {m: self.collect(control, m, start, end) for m in names})

    def forget(self, hosts: Iterable[str]) -> None:
        gone = set(hosts)
        with self._lock:
            for key in [k for k in self._rings if k[0] in gone]:
                del self._rings[key]


@dataclass
class Window:
    """A range query's answer: samples per host, and why a host has none."""

    values: dict[str, list[Sample]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def pooled(self, hosts: Iterable[str]) -> list[Sample]:
        out: list[Sample] = []
        for host in hosts:
            out.extend(self.values.get(host, []))
        return out


def _values(series: Mapping[str, Any]) -> list[Sample]:
    out: list[Sample] = []
    for _, raw in series.get("values", []):
        try:
            out.append(float(raw))
        except (TypeError, ValueError):
            out.append(None)
    return out


def range_query(url: str, query: str, start: float | dt.datetime, end: float | dt.datetime,
                step: float, timeout: float = 10.0,
                client: PromQL | None = None) -> list[dict[str, Any]]:
    """Every series of one PromQL range query (raises PromQLError: no answer)."""
    return (client or PromQL()).range(url, query, start, end, step, timeout)


def prometheus_window(url: str, queries: Mapping[str, str], start: float | dt.datetime,
                      end: float | dt.datetime, step: float, timeout: float = 10.0,
                      parallel: int = 16, client: PromQL | None = None) -> Window:
    """One range query per host (`queries`: host -> rendered PromQL), `parallel` at once."""
    out = Window()
    client = client or PromQL(pool_size=parallel)

    def one(item: tuple[str, str]) -> tuple[str, list[Sample] | None, str | None]:
        host, query = item
        try:
            series = client.range(url, query, start, end, step, timeout)
        except PromQLError as exc:  # a refused query or a dead server: that host has no data
            return host, None, f"range query failed: {exc}"
        if not series:
            return host, [], "no series in the window"
        if len(series) > 1:
            return host, None, (f"{len(series)} series: aggregate the query to one series "
                                "per host (sum, max, ...)")
        return host, _values(series[0]), None

    items = list(queries.items())
    if len(items) <= 1:
        results = [one(i) for i in items]
    else:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(items)))) as pool:
            results = list(pool.map(one, items))
    for host, values, error in results:
        out.values[host] = values or []
        if error is not None:
            out.errors[host] = error
    return out


def prometheus_metric_window(metric: Any, hosts: Sequence[Any],
                             hostvars: Mapping[str, Mapping[str, Any]],
                             url: str | None, start: float | dt.datetime,
                             end: float | dt.datetime, step: float,
                             phase: int | None = None, run_id: str | None = None,
                             timeout: float = 10.0, client: PromQL | None = None) -> Window:
    """The window of a `prometheus` metric (core.model.Metric) on inventory hosts
    (config.inventory.Host: `.name`, `.vars`). `url`: the metric's `url:`, else this."""
    from orchestrator.config.templating import context_for, render

    base = metric.config.get("url") or url
    names = [h.name for h in hosts]
    if not base:
        return Window({n: [] for n in names}, {n: "no prometheus url" for n in names})
    host_label = metric.config.get("host_label")
    query = str(metric.config["query"])
    hv = {k: dict(v) for k, v in hostvars.items()}
    if not host_label:
        rendered = {h.name: render(query, context_for(h.name, hv, phase, run_id))
                    for h in hosts}
        return prometheus_window(str(base), rendered, start, end, step, timeout,
                                 client=client)
    out = Window({n: [] for n in names})
    try:
        series = range_query(str(base), render(query, context_for("", hv, phase, run_id)),
                             start, end, step, timeout, client)
    except PromQLError as exc:
        out.errors = {n: f"range query failed: {exc}" for n in names}
        return out
    owners: dict[str, list[str]] = {}
    for h in hosts:
        owners.setdefault(h.name, []).append(h.name)
        addr = (getattr(h, "vars", None) or {}).get("ansible_host")
        if addr and addr != h.name:
            owners.setdefault(str(addr), []).append(h.name)
    seen: dict[str, int] = {}
    for s in series:
        label = strip_port(str(s.get("metric", {}).get(host_label, "")))
        for name in owners.get(label, []):
            seen[name] = seen.get(name, 0) + 1
            out.values[name] = _values(s)
    for name in names:
        if seen.get(name, 0) == 0:
            out.errors[name] = f"no series with {host_label} naming the host"
        elif seen[name] > 1:
            out.values[name] = []
            out.errors[name] = (f"{seen[name]} series for the host: aggregate by "
                                f"{host_label}")
    return out
