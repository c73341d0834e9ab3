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

from orchestrator.canary.judge import AnalysisResult, MetricRule, Samples, judge_metrics, score
from orchestrator.core.model import AnalysisSpec


def analyse(spec: AnalysisSpec, canary: Mapping[str, Samples], control: Mapping[str, Samples],
            wave: int | None = None, workers: int | None = None) -> AnalysisResult:
    """Judge every metric of `spec` and score them.

    The metrics' samples are sorted on up to `workers` threads (default: the CPUs, at
    most 8; numpy's sorts release the GIL), their p-values computed together."""
    import os

    rules = [MetricRule(m.name, m.allowed_change_pct, m.fail_on, m.critical, m.dry_run,
                        m.spread_allowed_pct) for m in spec.metrics]
    samples = [(canary.get(m.name, ()), control.get(m.name, ())) for m in spec.metrics]
    n = workers if workers is not None else min(8, os.cpu_count() or 1)
    judgements = judge_metrics(samples, rules, confidence=spec.confidence,
                               min_samples=spec.min_samples, workers=n)
    return score(judgements, nodata=spec.nodata, pass_score=spec.pass_score,
                 marginal=spec.marginal, wave=wave)
