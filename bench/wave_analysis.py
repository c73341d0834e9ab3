"""What a wave's canary judgement adds beyond its window (issue 24: at most 1 s).

At the end of a wave's bake the engine (engine/analysis.py `RunAnalysis.judge`) pools
the last `window` of the monitor's readings for the canary and the control hosts from
its `SampleBuffer`, then judges every metric. This times exactly that work on a fleet:
200 hosts (the wave's 100 canaries against 100 not-migrated hosts), the two judged
metrics of phase 3 plus 18 more, a 10-minute window read every 5 s (120 samples a host
and metric), the buffer holding an hour of readings. Journaling the one
`analysis_completed` event is a single insert on top.
Run: python bench/wave_analysis.py [--hosts 200] [--metrics 20] [--runs 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.canary.samples import SampleBuffer  # noqa: E402
from orchestrator.canary.verdict import analyse  # noqa: E402
from orchestrator.core.model import AnalysisMetric, AnalysisSpec  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--metrics", type=int, default=20)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    window, poll, kept = 600.0, 5.0, 3600.0
    names = [f"m{i}" for i in range(args.metrics)]
    hosts = [f"h{i:03d}" for i in range(args.hosts)]
    canary, control = hosts[: len(hosts) // 2], hosts[len(hosts) // 2:]
    rng = random.Random(7)
    buffer = SampleBuffer(retain=kept * 2, maxlen=None)
    for t in range(int(kept / poll)):
        for host in hosts:
            for m in names:
                shift = 1.12 if host in canary and m in ("m3", "m7") else 1.0
                buffer.append(host, m, t * poll, 1000 * shift * (1 + rng.gauss(0, 0.01)))
    spec = AnalysisSpec(metrics=tuple(AnalysisMetric(m, fail_on="increase") for m in names),
                        window=window)
    analyse(spec, {names[0]: [1.0] * 20}, {names[0]: [1.0] * 20})  # scipy imported once
    end = kept - poll
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        c = {m: buffer.collect(canary, m, end - window, end) for m in names}
        k = {m: buffer.collect(control, m, end - window, end) for m in names}
        result = analyse(spec, c, k, wave=2)
        times.append(time.perf_counter() - t0)
    samples = len(c[names[0]])
    print(f"wave judgement, {len(canary)} canaries vs {len(control)} controls, {len(names)} "
          f"metrics, {samples} samples a side each: median {statistics.median(times):.3f} s, "
          f"max {max(times):.3f} s (goal: <= 1 s beyond the window) -> score "
          f"{result.score:.0f} {result.result}")


if __name__ == "__main__":
    main()
