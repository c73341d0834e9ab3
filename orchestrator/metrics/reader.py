"""One metric on one host, read through its source with the right context.

Shared by the trigger monitor, the checker and baseline capture: the context carries
the host's variables, the run and phase for templates, the time since phase start
(scripted timelines) and a timeout shorter than the poll interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from orchestrator.config.inventory import Host, Inventory
from orchestrator.core.clock import Clock
from orchestrator.core.http import HttpClient
from orchestrator.core.model import Metric, Project
from orchestrator.metrics.sources.base import CycleMemo, ReadContext, Reading, read_metric
from orchestrator.runners.base import CommandRunner


@dataclass
class MetricReader:
    """Reads one metric on one host with the right context; shared by monitor and checker."""

    project: Project
    inventory: Inventory
    commands: CommandRunner | None
    clock: Clock
    t0: float = 0.0
    run_id: str | None = None
    phase: int | None = None
    #: the pooled client of the `http` and `exporter` reads (the app's, shared; else its own)
    http: HttpClient = field(default_factory=HttpClient)

    def read(self, metric: Metric, host: Host, timeout: float | None = None) -> Reading:
        return read_metric(metric, self.context(metric, host, timeout))

    def context(self, metric: Metric, host: Host, timeout: float | None = None,
                memo: CycleMemo | None = None) -> ReadContext:
        limit = min(metric.timeout or 1e9, timeout or self.default_timeout())
        return ReadContext(host=host, hostvars=self.hostvars, phase=self.phase,
                           run_id=self.run_id, elapsed=self.clock.monotonic() - self.t0,
                           timeout=max(0.1, limit), prometheus_url=self.project.prometheus_url,
                           commands=self.commands, hosts=self.inventory.hosts, memo=memo,
                           groups=self.inventory.groups, root=self.project.root,
                           http=self.http)

    @cached_property
    def hostvars(self) -> dict[str, dict[str, Any]]:
        """Every host's variables, copied once: the inventory does not change under a
        run, and a copy per read was 200 dict copies for each of 600 reads a cycle."""
        return self.inventory.hostvars()

    def default_timeout(self) -> float:
        return max(0.2, self.project.poll_interval * 0.8)
