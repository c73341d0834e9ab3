"""The judge's batch path (`judge_metrics`, what `analyse` runs: each side sorted once,
Mann-Whitney's U counted from the sorted sides, every metric's p-values in one call) gives
the judgements of the plain per-metric path (scipy.stats.mannwhitneyu and levene on each
metric, below), to the bit, on random data with known seeds: continuous, tied, tiny (scipy's
exact test), constant, with gaps and outliers."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from orchestrator.canary.judge import (
    _FAILING,
    HIGH,
    LOW,
    NODATA,
    PASS,
    SPREAD,
    MetricJudgement,
    MetricRule,
    Samples,
    SpreadJudgement,
    _ratio,
    clean,
    judge_metric,
    judge_metrics,
    without_outliers,
)


def per_metric(canary: Samples, control: Samples, rule: MetricRule, *,
               confidence: float, min_samples: int) -> MetricJudgement:
    """The judge as it was written before the batch path: scipy.stats on each metric."""
    from scipy.stats import levene, mannwhitneyu

    can, ctl = without_outliers(clean(canary)), without_outliers(clean(control))
    can_mean = float(can.mean()) if can.size else None
    ctl_mean = float(ctl.mean()) if ctl.size else None
    base = dict(name=rule.name, canary_mean=can_mean, control_mean=ctl_mean,
                canary_samples=int(can.size), control_samples=int(ctl.size),
                fail_on=rule.fail_on, critical=rule.critical, dry_run=rule.dry_run)
    if can.size < max(1, min_samples) or ctl.size < max(1, min_samples):
        spread = None if rule.spread_allowed_pct is None else SpreadJudgement(None, None, NODATA)
        return MetricJudgement(cls=NODATA, effect=_ratio(can_mean, ctl_mean), p_value=None,
                               spread=spread, **base)  # type: ignore[arg-type]
    assert can_mean is not None and ctl_mean is not None
    if min(can.min(), ctl.min()) == max(can.max(), ctl.max()):
        p = 1.0
    else:
        p = float(mannwhitneyu(can, ctl, alternative="two-sided").pvalue)
        p = 1.0 if np.isnan(p) else p
    cls = PASS
    if p < 1 - confidence:
        margin = rule.allowed_change_pct / 100 * abs(ctl_mean)
        cls = HIGH if can_mean > ctl_mean + margin else LOW if can_mean < ctl_mean - margin \
            else PASS
    spread = None
    if rule.spread_allowed_pct is not None:
        q1c, q3c = np.percentile(can, [25.0, 75.0])
        q1k, q3k = np.percentile(ctl, [25.0, 75.0])
        ratio = _ratio(float(q3c - q1c), float(q3k - q1k))
        assert ratio is not None
        if can.min() == can.max() and ctl.min() == ctl.max():
            sp = 1.0
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                sp = float(levene(can, ctl, center="median").pvalue)
            sp = 1.0 if np.isnan(sp) else sp
        grew = sp < 1 - confidence and ratio > 1 + rule.spread_allowed_pct / 100
        spread = SpreadJudgement(ratio, sp, "fail" if grew else "pass")
        if spread.failed and cls not in _FAILING[rule.fail_on]:
            cls = SPREAD
    return MetricJudgement(cls=cls, effect=_ratio(can_mean, ctl_mean), p_value=p,
                           spread=spread, **base)  # type: ignore[arg-type]


Gen = Callable[[np.random.Generator], tuple[list[float | None] | np.ndarray, np.ndarray]]

SHAPES: dict[str, Gen] = {
    "continuous": lambda r: (r.normal(1000, 30, 3000), r.normal(1000, 30, 2500)),
    "shifted": lambda r: (r.normal(1080, 30, 2000), r.normal(1000, 30, 2000)),
    "lower": lambda r: (r.normal(850, 30, 1000), r.normal(1000, 30, 1200)),
    "jittery": lambda r: (r.normal(100, 16, 1500), r.normal(100, 2, 1500)),
    "narrower": lambda r: (r.normal(100, 1, 800), r.normal(100, 4, 900)),
    "integer ties": lambda r: (r.integers(0, 12, 4000).astype(float),
                               r.integers(0, 11, 3000).astype(float)),
    "few levels": lambda r: (r.choice([1.0, 2.0, 2.0, 3.0], 600), r.choice([1.0, 2.0], 500)),
    "tiny exact": lambda r: (r.normal(10, 1, 6), r.normal(12, 1, 7)),
    "tiny tied": lambda r: (r.integers(0, 3, 7).astype(float), r.integers(0, 3, 8).astype(float)),
    "small": lambda r: (r.normal(10, 1, 11), r.normal(10.5, 1, 12)),
    "one constant": lambda r: (np.full(300, 7.0), r.normal(7, 1, 300)),
    "both constant": lambda r: (np.full(50, 3.0), np.full(40, 3.0)),
    "constant apart": lambda r: (np.full(50, 4.0), np.full(40, 3.0)),
    "zero control": lambda r: (r.normal(5, 1, 200), np.zeros(200)),
    "negative": lambda r: (r.normal(-50, 5, 700), r.normal(-52, 5, 650)),
    "outliers": lambda r: (np.concatenate([r.normal(100, 3, 900), r.normal(1e5, 10, 9)]),
                           np.concatenate([r.normal(100, 3, 900), [-1e6, 1e7]])),
    "gaps": lambda r: ([None if i % 13 == 0 else float(v) if i % 29 else math.nan
                        for i, v in enumerate(r.normal(40, 4, 1200))], r.normal(40, 4, 1100)),
    "too few": lambda r: (r.normal(10, 1, 4), r.normal(10, 1, 100)),
    "empty": lambda r: (np.array([]), r.normal(10, 1, 100)),
    "one each": lambda r: (np.array([1.0]), np.array([2.0])),
}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("min_samples", [1, 10])
def test_the_batch_path_equals_scipy_per_metric_to_the_bit(seed: int, min_samples: int) -> None:
    rng = np.random.default_rng(seed)
    samples, rules = [], []
    for i, (name, gen) in enumerate(SHAPES.items()):
        canary, control = gen(rng)
        samples.append((canary, control))
        rules.append(MetricRule(name, allowed_change_pct=float(i % 3) * 5,
                                fail_on=("increase", "decrease", "either")[i % 3],
                                critical=i % 4 == 0, dry_run=i % 5 == 0,
                                spread_allowed_pct=None if i % 7 == 6 else 25.0 * (i % 3)))
    expected = [per_metric(c, k, rule, confidence=0.95, min_samples=min_samples)
                for (c, k), rule in zip(samples, rules, strict=True)]
    for workers in (1, 4):
        got = judge_metrics(samples, rules, confidence=0.95, min_samples=min_samples,
                            workers=workers)
        for want, have in zip(expected, got, strict=True):
            assert have == want, want.name
    # the classes cover every outcome, so the comparison is not of passes alone
    assert {m.cls for m in expected} >= {PASS, HIGH, LOW, SPREAD, NODATA}
    one = [judge_metric(c, k, name=r.name, allowed_change_pct=r.allowed_change_pct,
                        min_samples=min_samples, fail_on=r.fail_on, critical=r.critical,
                        dry_run=r.dry_run, spread_allowed_pct=r.spread_allowed_pct)
           for (c, k), r in zip(samples, rules, strict=True)]
    assert one == expected


def test_the_batch_refuses_mismatched_rules() -> None:
    with pytest.raises(ValueError, match="2 sample pairs for 1 rules"):
        judge_metrics([([1.0], [1.0]), ([1.0], [1.0])], [MetricRule("a")])
