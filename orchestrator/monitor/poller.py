"""The trigger monitor's reads: every (host, metric) a cycle needs, at once, as a `Poll`.

A metric whose source reads many hosts at once (`prometheus`: one query for the fleet;
`http` and `exporter`: every host's GET at once from one thread, through libcurl) is one
job; any other is one job per host, all on the cycle's thread pool. The
cycle's reads share a `CycleMemo`, so an exporter or URL several hosts or metrics
name is fetched once. The alert triggers' readings come from one snapshot of the
alert book. Reading is all this module does: folding is `monitor.fold`'s.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from orchestrator.config.inventory import Host
from orchestrator.core.model import Project, Trigger
from orchestrator.metrics.reader import MetricReader
from orchestrator.metrics.sources.base import CycleMemo, Reading, batched, read_hosts, read_metric
from orchestrator.monitor.fold import Poll

if TYPE_CHECKING:
    from orchestrator.metrics.alerts.service import AlertService


class Poller:
    def __init__(self, project: Project, reader: MetricReader) -> None:
        self.project = project
        self.reader = reader

    def poll(self, at: float, hosts: list[Host], triggers: Iterable[Trigger],
             skip: frozenset[str], alerts: AlertService | None,
             pool: ThreadPoolExecutor | None) -> Poll:
        """Read what `triggers` need on `hosts` (not those in `skip`), with the alert
        triggers' readings from one snapshot of `alerts`."""
        triggers = list(triggers)
        metrics = sorted({t.metric for t in triggers
                          if t.metric in self.project.metrics and t.name not in skip})
        readings = self.read(metrics, hosts, pool)
        return Poll(at, tuple(hosts), readings, self.alert_readings(hosts, triggers, alerts),
                    skip)

    def alert_readings(self, hosts: list[Host], triggers: Iterable[Trigger],
                       alerts: AlertService | None) -> dict[tuple[str, str], Any]:
        """(host, trigger) -> AlertReading for every `alert:` trigger, from one snapshot."""
        alerting = [t for t in triggers if t.alert is not None]
        if not alerting or alerts is None:
            return {}
        snap = alerts.snapshot()
        return {(h.name, t.name): alerts.reading(t, h, snap) for h in hosts for t in alerting}

    def samples(self, readings: dict[tuple[str, str], Reading], watched: list[Host],
                control: list[Host], metrics: list[str],
                pool: ThreadPoolExecutor | None) -> dict[tuple[str, str], Reading]:
        """The canary analysis's readings of this cycle: those the triggers already read,
        and the rest (and every one on the control hosts) read now, all at once."""
        names = {h.name for h in watched}
        extra = [h for h in control if h.name not in names]
        more = self.read([m for m in metrics if not any(
            (h.name, m) in readings for h in watched[:1])], watched, pool)
        more.update(self.read(metrics, extra, pool))
        return {key: r for key, r in (*readings.items(), *more.items()) if key[1] in metrics}

    def read(self, metrics: list[str], hosts: list[Host],
             pool: ThreadPoolExecutor | None) -> dict[tuple[str, str], Reading]:
        """{(host, metric): reading} for the cycle, batched where the source can."""
        if not hosts or not metrics:
            return {}
        memo = CycleMemo()
        own = None
        if pool is None and len(hosts) > 1:  # one host (watch): its few reads in turn
            pool = own = ThreadPoolExecutor(max_workers=16, thread_name_prefix="metric")
        try:
            batches: list[tuple[str, Future[dict[str, Reading]]]] = []
            singles: list[tuple[str, str, Future[Reading]]] = []
            for name in metrics:
                metric = self.project.metrics[name]
                ctx = self.reader.context(metric, hosts[0], memo=memo)
                if batched(metric) or pool is None:
                    if pool is None:
                        done: Future[dict[str, Reading]] = Future()
                        done.set_result(read_hosts(metric, hosts, ctx))
                        batches.append((name, done))
                    else:
                        batches.append((name, pool.submit(read_hosts, metric, hosts, ctx)))
                    continue
                for host in hosts:
                    singles.append((host.name, name,
                                    pool.submit(read_metric, metric, ctx.for_host(host))))
            readings: dict[tuple[str, str], Reading] = {}
            for name, many in batches:
                for host_name, reading in many.result().items():
                    readings[(host_name, name)] = reading
            for host_name, name, one in singles:
                readings[(host_name, name)] = one.result()
            return readings
        finally:
            if own is not None:
                own.shutdown(wait=True)

    def medians(self, metrics: list[str], hosts: list[Host], rounds: int,
                gap: float) -> dict[tuple[str, str], float]:
        """`rounds` batched reads of `metrics` on `hosts`, `gap` seconds apart on the
        reader's clock: each (host, metric)'s median (phase-start baselines)."""
        got: dict[tuple[str, str], list[float]] = {}
        for i in range(rounds):
            if i:
                self.reader.clock.sleep(gap)
            for key, reading in self.read(metrics, hosts, None).items():
                if reading.value is not None:
                    got.setdefault(key, []).append(reading.value)
        return {key: statistics.median(v) for key, v in got.items() if v}
