"""A phase's canary verdict: its `AnalysisSpec` (core/model.py) applied through the judge.

    analyse(spec, canary, control, wave=None, workers=None) -> AnalysisResult
        canary/control: metric name -> samples (pooled over the side's hosts, None/NaN =
        no data); a metric absent from a side has no samples there.

The judge (canary/judge.py) takes only arrays and numbers; this is the one place that
reads a spec's options into its arguments, so a new per-metric option is one line here
and one argument there.
"""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.canary.judge import AnalysisResult, MetricJudgement, Samples, judge_metric, score
from orchestrator.core.model import AnalysisMetric, AnalysisSpec


def analyse(spec: AnalysisSpec, canary: Mapping[str, Samples], control: Mapping[str, Samples],
            wave: int | None = None, workers: int | None = None) -> AnalysisResult:
    """Judge every metric of `spec` and score them.

    Metrics are judged on up to `workers` threads (default: the CPUs, at most 8): the
    time goes into numpy's sorts inside Mann-Whitney U, which release the GIL."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    def one(m: AnalysisMetric) -> MetricJudgement:
        return judge_metric(canary.get(m.name, ()), control.get(m.name, ()), name=m.name,
                            confidence=spec.confidence,
                            allowed_change_pct=m.allowed_change_pct,
                            min_samples=spec.min_samples, fail_on=m.fail_on,
                            critical=m.critical, dry_run=m.dry_run,
                            spread_allowed_pct=m.spread_allowed_pct)

    n = workers if workers is not None else min(8, os.cpu_count() or 1)
    if n <= 1 or len(spec.metrics) <= 1:
        judgements = [one(m) for m in spec.metrics]
    else:
        with ThreadPoolExecutor(max_workers=min(n, len(spec.metrics))) as pool:
            judgements = list(pool.map(one, spec.metrics))
    return score(judgements, nodata=spec.nodata, pass_score=spec.pass_score,
                 marginal=spec.marginal, wave=wave)
