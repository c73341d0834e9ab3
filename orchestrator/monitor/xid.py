"""Xid events as they happen, for the trigger monitor: `nvml` metrics with `field:
xid_errors` are not polled while a waiter runs; each event folds that host's Xid
triggers at once (`TriggerMonitor.on_xid`).

One waiter per group of hosts that join together (a wave): in-process for local
hosts, one long-lived SSH probe for remote ones; a host without NVML stays a clear
error. The waiter counts events since it started, so these triggers' baseline is 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from orchestrator.config.inventory import Host
from orchestrator.core.model import Project, Trigger
from orchestrator.runners.base import CommandRunner


def xid_triggers(project: Project, triggers: Iterable[Trigger]) -> list[Trigger]:
    """The triggers whose metric is NVML's Xid error count."""
    out = []
    for t in triggers:
        metric = project.metrics.get(t.metric)
        if metric is not None and metric.source == "nvml" \
                and metric.config.get("field") == "xid_errors":
            out.append(t)
    return out


class XidWaiters:
    """The waiters of one monitored run; closed together."""

    def __init__(self, project: Project, triggers: list[Trigger],
                 on_event: Callable[[Any], None], commands: CommandRunner | None,
                 module: Any = None, log: Callable[[str], None] = lambda line: None) -> None:
        self.project = project
        self.triggers = xid_triggers(project, triggers)
        self.on_event = on_event
        self.commands = commands
        self.module = module  # the pynvml seam (a fake in tests)
        self.log = log
        self._watches: list[Any] = []

    @property
    def names(self) -> frozenset[str]:
        return frozenset(t.name for t in self.triggers)

    def watch(self, hosts: list[Host]) -> None:
        """Start a waiter for these hosts."""
        if not hosts or not self.triggers:
            return
        from orchestrator.metrics.sources.nvml_events import XidWatch

        gpus = {h.name: sorted({int(self.project.metrics[t.metric].config.get("gpu", 0))
                                for t in self.triggers}) for h in hosts}
        watch = XidWatch(hosts, self.on_event, gpus=gpus, commands=self.commands,
                         module=self.module, log=self.log)
        watch.start()
        self._watches.append(watch)

    def close(self) -> None:
        for watch in self._watches:
            watch.close()
        self._watches = []
