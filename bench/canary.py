"""Judging a wave: 20 metrics over 200 hosts with 600 samples a host, each metric with
`spread:` set (issue 24's goal, and issue 30's with spread: at most 0.5 s).

Half the hosts are the canary and half the control; each side's samples are pooled
(60,000 a side per metric), so each metric is two 60,000-sample arrays: no-data samples
dropped, 3 x IQR outliers removed, Mann-Whitney U, effect, class, and the spread check
(Brown-Forsythe and the IQR ratio); then the score. Three metrics are shifted (+12 %)
and two made jittery (the same middle, 8 x the spread) so the verdict is not trivially
"pass". The samples are lists of Python floats with some None, as SampleBuffer gives
them.

The first judgement in the process (it imports scipy.special, once per process: the
judge needs no scipy.stats) is reported on its own line; the timed runs come after it.
Each line: median and max of RUNS (default 5), wall and CPU (this process, every thread:
the sorts run on up to 8 threads).
Run: python bench/canary.py [RUNS]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import replace

import numpy as np

from orchestrator.canary.judge import AnalysisResult
from orchestrator.canary.verdict import analyse
from orchestrator.core.model import AnalysisMetric, AnalysisSpec

METRICS, HOSTS, SAMPLES = 20, 200, 600
BUDGET = 0.5


def data() -> tuple[AnalysisSpec, dict[str, list[float | None]], dict[str, list[float | None]]]:
    rng = np.random.default_rng(24)
    spec = AnalysisSpec(metrics=tuple(AnalysisMetric(f"m{i}", "increase", 5.0, i == 0,
                                                     spread_allowed_pct=50.0)
                                      for i in range(METRICS)), window=600, min_samples=10)
    per_side = HOSTS // 2 * SAMPLES
    canary: dict[str, list[float | None]] = {}
    control: dict[str, list[float | None]] = {}
    for i in range(METRICS):
        shift = 1.12 if i in (3, 7, 11) else 1.0
        ctl: list[float | None] = list(rng.normal(1000, 30, per_side))
        sd = 240 if i in (5, 9) else 30  # jittery: the same middle, 8 x the spread
        can: list[float | None] = list(rng.normal(1000 * shift, sd, per_side))
        for side in (ctl, can):
            for j in range(0, per_side, 97):
                side[j] = None
        canary[f"m{i}"], control[f"m{i}"] = can, ctl
    return spec, canary, control


def timed(spec: AnalysisSpec, canary: dict[str, list[float | None]],
          control: dict[str, list[float | None]], runs: int
          ) -> tuple[list[float], list[float], AnalysisResult]:
    times, cpu = [], []
    result = None
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        result = analyse(spec, canary, control, wave=2)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    assert result is not None
    return times, cpu, result


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    spec, canary, control = data()
    first, first_cpu, _ = timed(spec, canary, control, 1)
    print(f"first judgement (imports scipy.special, once per process): {first[0]:.3f} s, "
          f"CPU {first_cpu[0]:.3f} s; scipy.stats imported: {'scipy.stats' in sys.modules}")
    plain = AnalysisSpec(metrics=tuple(replace(m, spread_allowed_pct=None)
                                       for m in spec.metrics), window=600, min_samples=10)
    worst = 0.0
    for label, judged in (("with spread", spec), ("without spread (for comparison)", plain)):
        times, cpu, result = timed(judged, canary, control, runs)
        med = statistics.median(times)
        worst = max(times) if judged is spec else worst
        print(f"judge {METRICS} metrics x {HOSTS} hosts x {SAMPLES} samples/host {label}: "
              f"median {med:.3f} s, max {max(times):.3f} s (budget {BUDGET} s; CPU time "
              f"median {statistics.median(cpu):.3f} s on {os.cpu_count()} CPUs, load "
              f"{os.getloadavg()[0]:.1f}) -> score {result.score:g} {result.result}, high: "
              f"{', '.join(m.name for m in result.metrics if m.cls == 'high')}, spread: "
              f"{', '.join(m.name for m in result.metrics if m.cls == 'spread') or '-'}")
    return 0 if worst <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
