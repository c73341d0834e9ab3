"""A run's canary analysis (SPEC section 2, "Canary analysis"): which waves are judged,
against which control, on which samples; `PhaseRun` acts on the verdict.

    analysis = RunAnalysis(ctx, spec, run_hosts, waves)   # its buffer hears the run's cycles
    monitor.start(..., samples=analysis.samples())   # the monitor reads the judged metrics
                                           # on the run's and control hosts at each cycle
    wait = analysis.before_steps(number)   # `before`: seconds still to sample first
    result = analysis.judge(number, wave_label, canary, started, out)   # end of the bake

Samples are the monitor's own readings, carried by each `Cycle` on the run's bus to the
analysis's `SampleBuffer` (a subscriber of that bus);
`prometheus` metrics are read for the window at once with a range query instead
(`canary.samples.prometheus_metric_window`), so their window never waits on polling.

Controls: `not-migrated`: the run's hosts not yet in any wave (nor rolled back);
`before`: the canary hosts themselves over `window` before the wave's first step (the
run samples them that long before its first step when the monitor is the source);
a list: those hosts and groups, minus the canary.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from orchestrator.canary.samples import Sample, SampleBuffer
from orchestrator.config.inventory import Host
from orchestrator.core.bus import SampleRequest
from orchestrator.core.model import BEFORE, HOSTS, NOT_MIGRATED, AnalysisSpec, judged_waves

if TYPE_CHECKING:
    from orchestrator.canary.judge import AnalysisResult
    from orchestrator.core.bus import Cycle
    from orchestrator.engine.context import StepContext

PROMETHEUS = "prometheus"


class RunAnalysis:
    def __init__(self, ctx: StepContext, spec: AnalysisSpec, run_hosts: list[Host],
                 waves: list[list[Host]]) -> None:
        self.ctx, self.spec, self.run_hosts = ctx, spec, run_hosts
        sizes = list(accumulate(len(w) for w in waves))
        self.judged = set(judged_waves(spec, sizes, len(run_hosts)))
        self.count = len(waves)
        bake = ctx.phase.bake
        self.buffer = SampleBuffer(retain=spec.window * 2 + (bake + 3600.0) * len(waves))
        metrics = ctx.project.metrics
        self.polled = [m for m in spec.metric_names
                       if m in metrics and metrics[m].source != PROMETHEUS]
        self.ranged = [m for m in spec.metric_names
                       if m in metrics and metrics[m].source == PROMETHEUS]
        self.control_list: list[Host] = []
        if spec.control == HOSTS:
            self.control_list = ctx.inventory.resolve(list(spec.control_hosts))
        self.sampling_since: float | None = None
        self.first_step: dict[int, float] = {}  # wave -> monotonic time of its first step

    # --- set-up -----------------------------------------------------------------------------
    def samples(self) -> SampleRequest | None:
        """What the monitor must read at each cycle for this analysis (the polled metrics
        on every host that can be a side), None when nothing is polled; from now on the
        buffer keeps what the run's cycles carry."""
        self.sampling_since = self.ctx.parts.clock.monotonic()
        if not self.polled or not self.judged:
            return None
        self.ctx.bus.subscribe_cycles(self._keep)
        hosts = self.control_list if self.spec.control == HOSTS else self.run_hosts
        return SampleRequest(tuple(self.polled), tuple(h.name for h in hosts))

    def _keep(self, cycle: Cycle) -> None:
        """The canary buffer's subscription: a cycle's readings, at the monitor's clock."""
        for host, metric, value in cycle.samples:
            self.buffer.append(host, metric, cycle.at, value)

    def before_steps(self, number: int) -> float:
        """Seconds the run must still sample before wave `number`'s first step (control
        `before`, from the monitor's readings); 0 when nothing is owed."""
        if self.spec.control != BEFORE or number not in self.judged or not self.polled:
            return 0.0
        now = self.ctx.parts.clock.monotonic()
        since = self.sampling_since if self.sampling_since is not None else now
        # one poll more than the window, so the window's first sample is in it
        return max(0.0, self.spec.window + self.ctx.project.poll_interval - (now - since))

    def steps_begin(self, number: int) -> None:
        self.first_step[number] = self.ctx.parts.clock.monotonic()

    # --- the judgement ----------------------------------------------------------------------
    def control_hosts(self, canary: list[Host], started: Collection[str],
                      out: Collection[str]) -> list[Host]:
        names = {h.name for h in canary}
        if self.spec.control == NOT_MIGRATED:
            return [h for h in self.run_hosts if h.name not in started and h.name not in out]
        if self.spec.control == BEFORE:
            return list(canary)
        return [h for h in self.control_list if h.name not in names]

    def judge(self, number: int, canary: list[Host], started: Collection[str],
              out: Collection[str]) -> tuple[AnalysisResult, dict[str, Any]]:
        """Judge the canary (this wave's live hosts) against the control over the last
        `window` (the control of `before`: the window before the wave's first step); the
        verdict, and each metric's two distributions (`distributions`) for the report."""
        from orchestrator.canary.verdict import analyse

        spec, clock = self.spec, self.ctx.parts.clock
        end = clock.monotonic()
        control = self.control_hosts(canary, started, out)
        c_end = self.first_step.get(number, end) if spec.control == BEFORE else end
        canary_names = [h.name for h in canary]
        control_names = [h.name for h in control]
        canary_s: dict[str, list[Sample]] = {}
        control_s: dict[str, list[Sample]] = {}
        for m in self.polled:
            canary_s[m] = self.buffer.collect(canary_names, m, end - spec.window, end)
            control_s[m] = self.buffer.collect(control_names, m, c_end - spec.window, c_end)
        if self.ranged:
            self._ranged(canary, control, end, c_end, canary_s, control_s)
        wave = number if self.count > 1 else None
        return analyse(spec, canary_s, control_s, wave=wave), \
            distributions(canary_s, control_s)

    def _ranged(self, canary: list[Host], control: list[Host], end: float, c_end: float,
                canary_s: dict[str, list[Sample]], control_s: dict[str, list[Sample]]) -> None:
        """`prometheus` metrics: the window read at once (Prometheus's clock is the wall's)."""
        from orchestrator.canary.samples import prometheus_metric_window

        ctx, spec = self.ctx, self.spec
        offset = time.time() - ctx.parts.clock.monotonic()
        step = max(1.0, ctx.project.poll_interval)
        for m in self.ranged:
            metric = ctx.project.metrics[m]
            for side, hosts, stop in ((canary_s, canary, end), (control_s, control, c_end)):
                win = prometheus_metric_window(
                    metric, hosts, ctx.hostvars, ctx.project.prometheus_url,
                    stop + offset - spec.window, stop + offset, step,
                    phase=ctx.phase.number, run_id=ctx.run_id)
                side[m] = win.pooled(h.name for h in hosts)


def distributions(canary: dict[str, list[Sample]], control: dict[str, list[Sample]]
                  ) -> dict[str, Any]:
    """metric -> {"canary": box, "control": box}: each side as the judge sees it (no data
    and outliers beyond 3 x IQR dropped), as the five numbers of a box plot and its mean
    and count (matplotlib's `bxp` draws them; the journal keeps 14 numbers, not 600)."""
    from orchestrator.canary.judge import clean, without_outliers

    def box(samples: list[Sample]) -> dict[str, float] | None:
        import numpy as np

        arr = without_outliers(clean(samples))
        if arr.size == 0:
            return None
        q1, med, q3 = (float(x) for x in np.percentile(arr, [25, 50, 75]))
        return {"whislo": float(arr.min()), "q1": q1, "med": med, "q3": q3,
                "whishi": float(arr.max()), "mean": float(arr.mean()), "n": int(arr.size)}

    return {m: {"canary": box(canary.get(m, [])), "control": box(control.get(m, []))}
            for m in canary}
