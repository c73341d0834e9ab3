"""`MetricChecker`: `check:` and `baseline:` steps, preconditions and the re-check after a
rollback, read with the same sources as the trigger monitor."""

from __future__ import annotations

import statistics

from orchestrator.config.inventory import Host, Inventory
from orchestrator.core.clock import CancelToken, Clock
from orchestrator.core.http import HttpClient
from orchestrator.core.model import PASS_CUTOFF, Metric, MetricKind, Project
from orchestrator.metrics.reader import MetricReader
from orchestrator.metrics.sources.base import Reading
from orchestrator.runners.base import CommandRunner, Result
from orchestrator.state.journal import Journal


class MetricChecker:
    """`check` steps, `baseline` steps, preconditions and post-rollback checks."""

    def __init__(self, project: Project, inventory: Inventory, journal: Journal, clock: Clock,
                 commands: CommandRunner | None, http: HttpClient | None = None) -> None:
        self.project = project
        self.journal = journal
        self.clock = clock
        self.reader = MetricReader(project, inventory, commands, clock,
                                   http=http or HttpClient())

    def check(self, metric: str, host: Host, phase: int, run_id: str, timeout: float,
              cancel: CancelToken, t0: float | None = None) -> Result:
        """Poll until the metric passes or `timeout`. `t0` is the phase's start on this
        clock, so a scripted timeline's `at:` counts from phase start, not from boot."""
        m = self.project.metrics[metric]
        reader = MetricReader(self.project, self.reader.inventory, self.reader.commands,
                              self.clock, self.clock.monotonic() if t0 is None else t0,
                              run_id, phase, http=self.reader.http)
        deadline = self.clock.monotonic() + timeout
        interval = min(self.project.poll_interval, 1.0)
        last = Reading(None, "not read")
        while True:
            last = reader.read(m, host)
            if last.value is not None and last.value >= PASS_CUTOFF:
                return Result(host.name, True, f"{metric} passes")
            if self.clock.monotonic() + interval > deadline:
                why = last.error or "fails"
                return Result(host.name, False, f"{metric} still failing after {timeout:g}s "
                              f"({why})")
            if self.clock.sleep(interval, cancel):
                return Result(host.name, False, f"cancelled: {cancel.reason}", cancelled=True)

    def passes_now(self, metric: str, host: Host) -> tuple[bool, str]:
        r = self.reader.read(self.project.metrics[metric], host)
        ok = r.value is not None and r.value >= PASS_CUTOFF
        return ok, "passes" if ok else (r.error or "fails")

    def numeric_metrics(self) -> list[Metric]:
        used = {t.metric for t in self.project.triggers.values()}
        return [m for n, m in sorted(self.project.metrics.items())
                if m.kind is MetricKind.NUMBER and n in used]

    def capture(self, name: str, host: Host, duration: float, run_id: str | None,
                cancel: CancelToken | None = None) -> dict[str, float]:
        """Sample every numeric metric each poll interval over `duration`; store the medians."""
        metrics = self.numeric_metrics()
        samples: dict[str, list[float]] = {m.name: [] for m in metrics}
        deadline = self.clock.monotonic() + duration
        while True:
            for m in metrics:
                r = self.reader.read(m, host)
                if r.value is not None:
                    samples[m.name].append(r.value)
            if self.clock.monotonic() >= deadline:
                break
            step = min(self.project.poll_interval, max(0.0, deadline - self.clock.monotonic()))
            if self.clock.sleep(step, cancel):
                break
        medians = {n: statistics.median(v) for n, v in samples.items() if v}
        if medians:
            self.journal.save_baseline(host.name, name, medians, run_id)
        return medians

    def capture_baseline(self, name: str, host: Host, phase: int, run_id: str,
                         duration: float, cancel: CancelToken) -> Result:
        self.reader.run_id, self.reader.phase = run_id, phase
        values = self.capture(name, host, duration, run_id, cancel)
        missing = [m.name for m in self.numeric_metrics() if m.name not in values]
        if not values:
            return Result(host.name, False, f"baseline {name}: no metric gave data")
        text = ", ".join(f"{k}={v:g}" for k, v in values.items())
        if missing:
            text += f"; no data: {', '.join(missing)}"
        return Result(host.name, True, f"baseline {name}: {text}")
