"""The canary judge on data whose answer is known (SPEC section 2, "Canary analysis")."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from orchestrator.canary.judge import (
    HIGH,
    LOW,
    NODATA,
    PASS,
    SPREAD,
    MetricJudgement,
    clean,
    judge_metric,
    score,
    without_outliers,
)
from orchestrator.canary.verdict import analyse
from orchestrator.core.model import AnalysisMetric, AnalysisSpec


def noisy(mean: float, n: int = 200, sd_pct: float = 2.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(mean, mean * sd_pct / 100, n)


def j(name: str, cls: str, fail_on: str = "either", critical: bool = False) -> MetricJudgement:
    return MetricJudgement(name, cls, 1.0, 1.0, 1.0, 0.5, 10, 10, fail_on, critical)


def test_identical_samples_pass_with_p_one() -> None:
    data = noisy(1000)
    m = judge_metric(data, data.copy(), name="vram")
    assert m.cls == PASS and m.p_value == pytest.approx(1.0) and m.effect == pytest.approx(1.0)
    assert m.canary_samples == m.control_samples == 200


def test_same_distribution_different_draws_pass() -> None:
    m = judge_metric(noisy(1000, seed=1), noisy(1000, seed=2))
    assert m.cls == PASS and m.p_value is not None and m.p_value > 0.05


def test_shift_of_twelve_percent_is_high_and_fails_increase() -> None:
    m = judge_metric(noisy(1120, seed=3), noisy(1000, seed=4), name="vram",
                     fail_on="increase", allowed_change_pct=10)
    assert m.cls == HIGH and m.failed
    assert m.effect == pytest.approx(1.12, abs=0.01)
    assert m.p_value is not None and m.p_value < 1e-10


def test_shift_within_allowed_change_passes() -> None:
    m = judge_metric(noisy(1120, seed=3), noisy(1000, seed=4), allowed_change_pct=15)
    assert m.cls == PASS  # differs, but by less than 15 %


def test_shift_down_is_low_and_fail_on_decides() -> None:
    canary, control = noisy(850, seed=5), noisy(1000, seed=6)
    assert judge_metric(canary, control, fail_on="decrease").failed
    m = judge_metric(canary, control, fail_on="increase")
    assert m.cls == LOW and not m.failed
    assert judge_metric(canary, control, fail_on="either").failed


def test_too_few_samples_is_nodata() -> None:
    m = judge_metric(np.linspace(990, 1010, 9), noisy(1000, n=50), min_samples=10)
    assert m.cls == NODATA and m.p_value is None and m.canary_samples == 9
    assert judge_metric([], noisy(1000), min_samples=0).cls == NODATA


def test_all_ties_identical_constants_pass() -> None:
    m = judge_metric([5.0] * 30, [5.0] * 30)
    assert m.cls == PASS and m.p_value == 1.0 and m.effect == 1.0


def test_constant_but_different_sides_are_high() -> None:
    m = judge_metric([6.0] * 30, [5.0] * 30)
    assert m.cls == HIGH and m.effect == pytest.approx(1.2)


def test_nan_and_none_are_dropped_before_counting() -> None:
    canary: list[float | None] = [*noisy(1000, n=20).tolist(), None, math.nan, math.inf] * 1
    m = judge_metric(canary, noisy(1000, n=20, seed=9), min_samples=20)
    assert m.canary_samples == 20 and m.cls == PASS
    nan_only = judge_metric([math.nan] * 50, noisy(1000), min_samples=1)
    assert nan_only.cls == NODATA and nan_only.canary_mean is None


def test_outliers_beyond_three_iqr_are_removed_per_side() -> None:
    base = [100.0, 101.0, 102.0, 103.0, 104.0] * 4
    kept = without_outliers(clean([*base, 1e6]))
    assert kept.size == 20 and kept.max() == 104.0
    # one wild sample on the canary does not make it "high"
    m = judge_metric([*base, 1e6], base)
    assert m.cls == PASS and m.canary_samples == 20


def test_zero_control_mean() -> None:
    m = judge_metric([0.0] * 20, [0.0] * 20)
    assert m.cls == PASS and m.effect == 1.0
    up = judge_metric(noisy(10, n=40), [0.0] * 40)
    assert up.cls == HIGH and up.effect == math.inf
    assert up.detail()["effect"] is None  # JSON has no infinity
    json.dumps(up.detail(), allow_nan=False)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        judge_metric([1.0], [1.0], fail_on="up")
    with pytest.raises(ValueError):
        judge_metric([1.0], [1.0], confidence=1.0)


def test_score_counts_passed_over_judged() -> None:
    r = score([j("a", PASS), j("b", PASS), j("c", PASS), j("d", HIGH)], pass_score=90,
              marginal=70)
    assert r.score == 75.0 and r.result == "marginal"
    assert score([j("a", PASS)] * 10).result == "pass"
    assert score([j("a", PASS), j("b", HIGH)]).result == "fail"


def test_fail_on_increase_ignores_low() -> None:
    r = score([j("a", LOW, fail_on="increase"), j("b", PASS)])
    assert r.score == 100.0 and r.result == "pass"


def test_nodata_fail_counts_as_failed_and_ignore_leaves_it_out() -> None:
    metrics = [j("a", PASS), j("b", PASS), j("c", PASS), j("d", NODATA)]
    assert score(metrics, nodata="fail").score == 75.0
    assert score(metrics, nodata="ignore").score == 100.0


def test_nodata_on_half_the_metrics_or_more_scores_zero() -> None:
    metrics = [j("a", PASS), j("b", NODATA)]
    for mode in ("fail", "ignore"):
        r = score(metrics, nodata=mode)
        assert r.score == 0 and r.result == "fail" and "no data" in (r.why_zero or "")


def test_failed_critical_metric_scores_zero() -> None:
    metrics = [j("vram", HIGH, fail_on="increase", critical=True)] + [j(f"m{i}", PASS)
                                                                      for i in range(9)]
    r = score(metrics)
    assert r.score == 0 and r.result == "fail" and "vram" in (r.why_zero or "")
    # a critical metric that went the way fail_on does not watch is no failure
    ok = score([j("vram", LOW, fail_on="increase", critical=True), j("b", PASS)])
    assert ok.score == 100


def test_marginal_band() -> None:
    metrics = [j(f"m{i}", PASS) for i in range(8)] + [j("x", HIGH), j("y", PASS)]
    r = score(metrics, pass_score=95, marginal=80)
    assert r.score == 90 and r.result == "marginal"
    assert score(metrics, pass_score=90, marginal=80).result == "pass"


def test_analyse_gives_the_journal_detail() -> None:
    spec = AnalysisSpec(metrics=(AnalysisMetric("vram_used_mib", "increase", 10, True),
                                 AnalysisMetric("latency_ms", "increase")),
                        window=60, min_samples=10)
    canary = {"vram_used_mib": noisy(1120, seed=1), "latency_ms": noisy(115, seed=2)}
    control = {"vram_used_mib": noisy(1000, seed=3), "latency_ms": noisy(100, seed=4)}
    r = analyse(spec, canary, control, wave=2)
    detail = json.loads(json.dumps(r.detail(), allow_nan=False))
    assert detail["wave"] == 2 and detail["score"] == 0 and detail["result"] == "fail"
    assert [m["name"] for m in detail["metrics"]] == ["vram_used_mib", "latency_ms"]
    for m in detail["metrics"]:
        assert set(m) == {"name", "class", "canary_mean", "control_mean", "effect", "p_value",
                          "canary_samples", "control_samples", "dry_run"}  # no spread: set
        assert m["class"] == "high" and m["canary_samples"] == 200
    assert r.failed_metrics == ["vram_used_mib", "latency_ms"]


def test_threaded_and_serial_analysis_agree() -> None:
    spec = AnalysisSpec(metrics=tuple(AnalysisMetric(f"m{i}", "increase") for i in range(6)),
                        window=60, min_samples=10)
    canary = {f"m{i}": noisy(1000 * (1.1 if i % 2 else 1.0), seed=i) for i in range(6)}
    control = {f"m{i}": noisy(1000, seed=10 + i) for i in range(6)}
    assert analyse(spec, canary, control, workers=1) == analyse(spec, canary, control, workers=4)


# --- spread (Brown-Forsythe and the IQR ratio) and dry-run metrics ---------------------------
def spread_out(center: float, width: float, n: int = 600) -> np.ndarray:
    """n samples at the normal quantiles: median `center` exactly, IQR 1.349 x `width`
    exactly, symmetric; two of them with one center differ only in their spread."""
    from scipy.stats import norm

    return center + width * norm.ppf(np.linspace(0.5 / n, 1 - 0.5 / n, n))


def test_the_same_middle_eight_times_wider_fails_as_spread() -> None:
    control, canary = spread_out(100, 2), spread_out(100, 16)
    m = judge_metric(canary, control, name="latency_ms", spread_allowed_pct=50)
    assert m.cls == SPREAD and m.failed
    assert m.p_value is not None and m.p_value > 0.9  # Mann-Whitney: the middles agree
    assert m.effect == pytest.approx(1.0)
    assert m.spread is not None and m.spread.result == "fail"
    assert m.spread.ratio == pytest.approx(8.0, rel=0.01)
    assert m.spread.p_value is not None and m.spread.p_value < 1e-50
    assert m.detail()["spread"] == {"ratio": pytest.approx(8.0, rel=0.01),
                                    "p_value": m.spread.p_value, "result": "fail"}


def test_without_spread_set_mann_whitney_alone_passes_it() -> None:
    m = judge_metric(spread_out(100, 16), spread_out(100, 2), name="latency_ms")
    assert m.cls == PASS and not m.failed and m.spread is None
    assert "spread" not in m.detail()


def test_a_spread_within_its_allowance_or_narrower_passes() -> None:
    control = spread_out(100, 2)
    within = judge_metric(spread_out(100, 2.6), control, spread_allowed_pct=50)  # 1.3x
    assert within.cls == PASS and within.spread is not None
    assert within.spread.result == "pass" and within.spread.p_value is not None
    assert within.spread.p_value < 0.05  # the spreads differ, but within the allowance
    narrower = judge_metric(spread_out(100, 0.25), control, spread_allowed_pct=0)
    assert narrower.cls == PASS and narrower.spread is not None
    assert narrower.spread.ratio == pytest.approx(0.125, rel=0.01)


def test_a_moved_middle_keeps_its_class_and_constant_sides_have_no_spread() -> None:
    m = judge_metric(spread_out(130, 16), spread_out(100, 2), fail_on="increase",
                     spread_allowed_pct=50)
    assert m.cls == HIGH and m.spread is not None and m.spread.failed
    flat = judge_metric([5.0] * 30, [5.0] * 30, spread_allowed_pct=0)
    assert flat.cls == PASS and flat.spread is not None
    assert (flat.spread.ratio, flat.spread.p_value, flat.spread.result) == (1.0, 1.0, "pass")
    none = judge_metric([], spread_out(100, 2), spread_allowed_pct=10)
    assert none.cls == NODATA and none.detail()["spread"] == {
        "ratio": None, "p_value": None, "result": "nodata"}


def test_a_dry_run_metric_that_fails_is_reported_failed_and_not_counted() -> None:
    spec = AnalysisSpec(metrics=(
        AnalysisMetric("vram_used_mib", "increase", 10),
        AnalysisMetric("latency_ms", "increase", dry_run=True, critical=True),
        AnalysisMetric("jitter_ms", "either", dry_run=True, spread_allowed_pct=50)),
        window=60, min_samples=10)
    canary = {"vram_used_mib": noisy(1000, seed=1), "latency_ms": noisy(130, seed=2),
              "jitter_ms": spread_out(100, 16)}
    control = {"vram_used_mib": noisy(1000, seed=3), "latency_ms": noisy(100, seed=4),
               "jitter_ms": spread_out(100, 2)}
    r = analyse(spec, canary, control, wave=1)
    latency, jitter = r.metrics[1], r.metrics[2]
    assert latency.cls == HIGH and latency.failed and jitter.cls == SPREAD and jitter.failed
    assert r.score == 100 and r.result == "pass" and r.why_zero is None
    assert r.failed_metrics == [] and r.dry_run_failed == ["latency_ms", "jitter_ms"]
    detail = json.loads(json.dumps(r.detail(), allow_nan=False))
    assert [(m["name"], m["class"], m["dry_run"]) for m in detail["metrics"]] == [
        ("vram_used_mib", "pass", False), ("latency_ms", "high", True),
        ("jitter_ms", "spread", True)]
    assert "spread" not in detail["metrics"][1]
    assert set(detail["metrics"][2]["spread"]) == {"ratio", "p_value", "result"}
    counted = AnalysisSpec(metrics=tuple(
        AnalysisMetric(m.name, m.fail_on, m.allowed_change_pct, m.critical,
                       spread_allowed_pct=m.spread_allowed_pct) for m in spec.metrics),
        window=60, min_samples=10)
    assert analyse(counted, canary, control).score == 0  # the same metrics counted: critical


def test_dry_run_metrics_without_data_do_not_zero_the_score() -> None:
    metrics = [j("a", PASS), j("b", PASS),
               MetricJudgement("c", NODATA, None, None, None, None, 0, 0, dry_run=True),
               MetricJudgement("d", NODATA, None, None, None, None, 0, 0, dry_run=True)]
    r = score(metrics)
    assert r.score == 100 and r.result == "pass"
    assert score(metrics[:2] + [j("c", NODATA), j("d", NODATA)]).score == 0  # half nodata
