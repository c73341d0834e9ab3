"""Trigger evaluation as a pure function of (state, sample, clock time, baseline).

Semantics follow Prometheus alerting rules: a breaching sample moves a trigger to
`pending`; it becomes `firing` once the condition has held on every sample for
`for:` measured from the first breaching sample; one good sample resets it
(`resolved` if it was firing). Nothing here reads a clock, a metric or the journal:
the monitor passes them in, so tests can name the exact second a trigger fires.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from orchestrator.core.durations import format_duration
from orchestrator.core.model import PASS_CUTOFF, Condition, Metric, MetricKind, Trigger


class TriggerStatus(enum.Enum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"


class TriggerState(NamedTuple):
    """One trigger on one host between samples. (Named tuples, this and `Verdict`: a poll
    of 10,000 hosts x 3 triggers makes 30,000 of each, and a named tuple is built in a
    fifth of a frozen dataclass's time.)"""

    status: TriggerStatus = TriggerStatus.OK
    breach_since: float | None = None
    last_value: float | None = None
    last_at: float | None = None
    nodata_since: float | None = None
    nodata_alerted: bool = False
    last_error: str | None = None


class Verdict(NamedTuple):
    """What one sample did to one trigger."""

    breaching: bool
    skipped: bool  # numeric no data with nodata: skip
    threshold: float | None  # the effective limit the value was compared with
    text: str  # "1301 > 1200 (baseline 1000, +20%)"
    changed_to: TriggerStatus | None  # set when the status changed
    fired: bool  # became firing with this sample
    nodata_alert: bool  # no data has now lasted longer than nodata_alert


def effective_threshold(trigger: Trigger, baseline: float | None) -> float | None:
    """The number a value is compared with; None when it needs a baseline we lack."""
    c = trigger.condition
    if c in (Condition.ABOVE, Condition.BELOW):
        return trigger.threshold
    if baseline is None:
        return None
    if c is Condition.DEGRADE_PCT:
        factor = 1 + trigger.threshold / 100 if trigger.direction == "up" \
            else 1 - trigger.threshold / 100
        return baseline * factor
    if c is Condition.INCREASE:
        return baseline + trigger.threshold
    return None


def _fmt(x: float) -> str:
    return f"{x:.6g}" if abs(x) < 1e6 else f"{x:.0f}"


def describe_breach(trigger: Trigger, value: float | None, limit: float | None,
                    baseline: float | None, error: str | None = None) -> str:
    c = trigger.condition
    if c is Condition.FAILING:
        why = f"no data: {error}" if value is None else "fails"
        return f"{trigger.metric} {why}"
    if value is None:
        return f"no data for {trigger.metric}" + (f": {error}" if error else "")
    if c is Condition.ABOVE:
        return f"{_fmt(value)} > {_fmt(trigger.threshold)}"
    if c is Condition.BELOW:
        return f"{_fmt(value)} < {_fmt(trigger.threshold)}"
    if limit is None or baseline is None:
        return f"{_fmt(value)} (no baseline)"
    if c is Condition.DEGRADE_PCT:
        op = ">" if trigger.direction == "up" else "<"
        sign = "+" if trigger.direction == "up" else "-"
        return (f"{_fmt(value)} {op} {_fmt(limit)} "
                f"(baseline {_fmt(baseline)}, {sign}{_fmt(trigger.threshold)}%)")
    return (f"{_fmt(value)} rose by {_fmt(value - baseline)} since phase start "
            f"(from {_fmt(baseline)}), more than {_fmt(trigger.threshold)}")


def is_breaching(trigger: Trigger, value: float, limit: float | None) -> bool:
    c = trigger.condition
    if c is Condition.FAILING:
        return value < PASS_CUTOFF
    if limit is None:
        return False
    if c is Condition.ABOVE or c is Condition.INCREASE or (
            c is Condition.DEGRADE_PCT and trigger.direction == "up"):
        return value > limit
    return value < limit


def evaluate(trigger: Trigger, metric: Metric, state: TriggerState, value: float | None,
             now: float, baseline: float | None, error: str | None = None,
             ) -> tuple[TriggerState, Verdict]:
    """Fold one sample into the trigger's state. Pure: same inputs, same outputs."""
    limit = effective_threshold(trigger, baseline)
    nodata = value is None
    nodata_since = (state.nodata_since if state.nodata_since is not None else now) \
        if nodata else None
    nodata_alert = bool(nodata and nodata_since is not None and not state.nodata_alerted
                        and now - nodata_since >= metric.nodata_alert)
    new = state._replace(last_value=value, last_at=now, nodata_since=nodata_since,
                  nodata_alerted=(state.nodata_alerted or nodata_alert) if nodata else False,
                  last_error=error if nodata else None)
    text = describe_breach(trigger, value, limit, baseline, error)

    if nodata and metric.kind is MetricKind.NUMBER and metric.nodata == "skip":
        return new, Verdict(False, True, limit, text, None, False, nodata_alert)
    if nodata:
        breaching = True  # pass/fail with no data fails; numeric with nodata: breach
    else:
        assert value is not None
        breaching = is_breaching(trigger, value, limit)

    if not breaching:
        changed = TriggerStatus.OK if state.status is not TriggerStatus.OK else None
        new = new._replace(status=TriggerStatus.OK, breach_since=None)
        return new, Verdict(False, False, limit, text, changed, False, nodata_alert)

    since = state.breach_since if state.breach_since is not None else now
    held = now - since
    if state.status is TriggerStatus.FIRING:
        status = TriggerStatus.FIRING
    elif held >= trigger.for_seconds:
        status = TriggerStatus.FIRING
    else:
        status = TriggerStatus.PENDING
    if trigger.for_seconds and status is TriggerStatus.FIRING:
        text += f" for {format_duration(held)}"
    changed = status if status is not state.status else None
    new = new._replace(status=status, breach_since=since)
    fired = changed is TriggerStatus.FIRING
    return new, Verdict(True, False, limit, text, changed, fired, nodata_alert)
