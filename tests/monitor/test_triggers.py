"""Trigger evaluation as a pure function of samples and a clock: exact firing moments."""

from __future__ import annotations

from orchestrator.core.clock import FakeClock
from orchestrator.core.model import Condition, Metric, MetricKind, Trigger, TriggerAction
from orchestrator.metrics.triggers import TriggerState, TriggerStatus, evaluate


def metric(kind: MetricKind = MetricKind.NUMBER, nodata: str = "skip",
           nodata_alert: float = 120.0) -> Metric:
    return Metric("m", "scripted", kind, {}, nodata, nodata_alert, None, 1)


def trigger(cond: Condition, threshold: float = 0.0, for_s: float = 0.0,
            direction: str = "up") -> Trigger:
    return Trigger("t", "m", cond, threshold, direction, for_s, TriggerAction.ROLLBACK,
                   "phase-start", 1)


def run(t: Trigger, m: Metric, samples: list[tuple[float, float | None]],
        baseline: float | None = None) -> list[tuple[float, TriggerStatus, bool]]:
    """Feed (time, value) samples; return (time, status, fired) after each."""
    state = TriggerState()
    out = []
    for at, value in samples:
        state, verdict = evaluate(t, m, state, value, at, baseline, "err" if value is None else None)
        out.append((at, state.status, verdict.fired))
    return out


def test_above_under_threshold_never_fires() -> None:
    res = run(trigger(Condition.ABOVE, 100), metric(), [(0, 50), (5, 100), (10, 99.9)])
    assert all(s is TriggerStatus.OK and not f for _, s, f in res)


def test_above_fires_at_first_breach_without_for() -> None:
    res = run(trigger(Condition.ABOVE, 100), metric(), [(0, 50), (5, 101)])
    assert res[1] == (5, TriggerStatus.FIRING, True)


def test_flap_shorter_than_for_does_not_fire() -> None:
    t = trigger(Condition.ABOVE, 100, for_s=60)
    samples = [(0, 150), (30, 150), (55, 150), (60, 90), (65, 150), (120, 150)]
    res = run(t, metric(), samples)
    assert [s for _, s, _ in res] == [TriggerStatus.PENDING] * 3 + [TriggerStatus.OK] + \
        [TriggerStatus.PENDING] * 2
    assert not any(f for _, _, f in res)


def test_sustained_breach_fires_exactly_when_for_has_elapsed() -> None:
    clock = FakeClock(start=0)
    t = trigger(Condition.FAILING, for_s=300)
    m = metric(MetricKind.PASSFAIL)
    state = TriggerState()
    fired_at = None
    for _ in range(100):  # poll every 5s
        state, verdict = evaluate(t, m, state, 0.0, clock.monotonic(), None)
        if verdict.fired:
            fired_at = clock.monotonic()
            break
        clock.sleep(5)
    assert fired_at == 300  # first breach at 0, held on every sample through 300
    assert "for 5m" in verdict.text


def test_degrade_pct_uses_baseline_and_reason_reads_like_spec() -> None:
    t = Trigger("vram_degradation", "m", Condition.DEGRADE_PCT, 20, "up", 0,
                TriggerAction.ROLLBACK, "phase-start", 1)
    state, v = evaluate(t, metric(), TriggerState(), 1200, 0, 1000)
    assert not v.breaching  # exactly +20% is not more than 20%
    state, v = evaluate(t, metric(), state, 1301, 5, 1000)
    assert v.fired
    assert v.text == "1301 > 1200 (baseline 1000, +20%)"


def test_degrade_down() -> None:
    t = trigger(Condition.DEGRADE_PCT, 10, direction="down")
    res = run(t, metric(), [(0, 95), (5, 89)], baseline=100)
    assert [s for _, s, _ in res] == [TriggerStatus.OK, TriggerStatus.FIRING]


def test_increase_counts_from_phase_start() -> None:
    t = trigger(Condition.INCREASE, 0)
    res = run(t, metric(), [(0, 3), (5, 3), (10, 4)], baseline=3)
    assert [f for _, _, f in res] == [False, False, True]


def test_nodata_skip_keeps_state_and_breach_counts() -> None:
    t = trigger(Condition.ABOVE, 10, for_s=10)
    res = run(t, metric(nodata="skip"), [(0, 20), (5, None), (10, 20)])
    assert res[1][1] is TriggerStatus.PENDING  # skipped: neither reset nor counted
    assert res[2] == (10, TriggerStatus.FIRING, True)
    res = run(trigger(Condition.ABOVE, 10), metric(nodata="breach"), [(0, None)])
    assert res[0] == (0, TriggerStatus.FIRING, True)


def test_passfail_nodata_counts_as_failing() -> None:
    res = run(trigger(Condition.FAILING), metric(MetricKind.PASSFAIL), [(0, 1.0), (5, None)])
    assert res[1] == (5, TriggerStatus.FIRING, True)


def test_nodata_alert_once_after_its_duration() -> None:
    m = metric(nodata_alert=120)
    t = trigger(Condition.ABOVE, 10)
    state = TriggerState()
    alerts = []
    for at in range(0, 300, 30):
        state, v = evaluate(t, m, state, None, at, None, "refused")
        alerts.append(v.nodata_alert)
    assert alerts.count(True) == 1 and alerts.index(True) == 4  # at t=120


def test_one_good_sample_resolves_firing() -> None:
    res = run(trigger(Condition.ABOVE, 10), metric(), [(0, 20), (5, 20), (10, 5)])
    assert [s for _, s, _ in res] == [TriggerStatus.FIRING, TriggerStatus.FIRING, TriggerStatus.OK]
    assert [f for _, _, f in res] == [True, False, False]
