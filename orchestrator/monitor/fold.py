"""The trigger monitor's logic, without its thread: a poll and the triggers' state in,
the new state, the journal's rows and what to announce out. Pure: no clock, no I/O.

    book, folded = fold_poll(poll, book, frame)      # each (host, trigger) folded once
    for f in folded: journal rows f.sample, f.state  # one transaction per cycle
    for a in announcements(folded, metrics): ...     # announce.py: events and fires

`Poll` is what the poller read in one cycle (numeric readings per (host, metric), alert
readings per (host, trigger)); `Book` is every (host, trigger)'s `Live` state (its
`TriggerState` and baseline). Same inputs, same outputs: a `for: 5m` trigger is proven
by folding polls at t, t+60, ... t+300 with a FakeClock's readings, no waiting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from orchestrator.config.inventory import Host
from orchestrator.core.model import Condition, Metric, Trigger
from orchestrator.metrics.sources.base import Reading
from orchestrator.metrics.triggers import (
    TriggerState,
    TriggerStatus,
    Verdict,
    _fmt,
    describe_breach,
    effective_threshold,
    evaluate,
    is_breaching,
)
from orchestrator.monitor.baselines import PHASE_START, needs_baseline
from orchestrator.state.journal import utc_stamp

#: A journal row of `samples` / `trigger_states`, in `Journal.record_cycle`'s order.
SampleRow = tuple[str, str, int, str, str, float, float | None, bool, str, float | None,
                  float | None]
StateRow = tuple[str, int, str, str, str, float | None, float | None, float | None, str | None,
                 str]


class Live(NamedTuple):
    """One trigger on one host: its state and the baseline it is judged against."""

    state: TriggerState = TriggerState()
    baseline: float | None = None


Book = Mapping[tuple[str, str], Live]


@dataclass(frozen=True)
class Frame:
    """What the fold needs besides the poll: the run, the phase's triggers and metrics,
    the monitor's start (`t0`, for the samples' time) and the wall clock now (for the
    `breaching_since` stamp the journal keeps)."""

    run_id: str
    phase: int
    triggers: tuple[Trigger, ...]
    metrics: Mapping[str, Metric]
    t0: float
    wall: datetime


@dataclass(frozen=True)
class Poll:
    """One cycle's reads: at `at` (the monitor's clock), on `hosts`."""

    at: float
    hosts: tuple[Host, ...]
    readings: Mapping[tuple[str, str], Reading]  # (host, metric) -> reading
    alerts: Mapping[tuple[str, str], Any] = field(default_factory=dict)  # (host, trigger)
    #: triggers whose reading comes from elsewhere this cycle (Xid waiters): not folded
    skip: frozenset[str] = frozenset()


class Folded(NamedTuple):
    """One sample folded into one trigger: what to journal, then what to announce. (A
    named tuple: 30,000 are made a cycle at 10,000 hosts, at a fifth of a frozen
    dataclass's cost.)"""

    host: Host
    trigger: Trigger
    reading: Reading
    old: TriggerState
    verdict: Verdict
    baseline: float | None
    sample: SampleRow
    state: StateRow
    labels: dict[str, str] | None = None  # an alert trigger's alert labels
    since: str | None = None  # when that alert started firing


def fold_one(host: Host, t: Trigger, live: Live, reading: Reading, now: float,
             frame: Frame) -> tuple[Live, Folded]:
    """Fold one numeric sample into the trigger's live state."""
    baseline = live.baseline
    if baseline is None and needs_baseline(t) and t.baseline == PHASE_START \
            and reading.value is not None:
        baseline = reading.value  # phase start had no data: first good sample
    state, verdict = evaluate(t, frame.metrics[t.metric], live.state, reading.value, now,
                              baseline, reading.error)
    since = None
    if state.breach_since is not None:
        since = utc_stamp(frame.wall - timedelta(seconds=now - state.breach_since))
    sample: SampleRow = (frame.run_id, host.name, frame.phase, t.name, t.metric,
                         now - frame.t0, reading.value, verdict.breaching,
                         state.status.value, verdict.threshold, baseline)
    row: StateRow = (host.name, frame.phase, t.name, frame.run_id, state.status.value,
                     reading.value, verdict.threshold, baseline, since, verdict.text)
    return Live(state, baseline), Folded(host, t, reading, live.state, verdict, baseline,
                                         sample, row)


def fold_alert_one(host: Host, t: Trigger, live: Live, r: Any, now: float,
                   frame: Frame) -> tuple[Live, Folded]:
    """Fold one alert reading (`AlertReading`) into an `alert:` trigger."""
    from orchestrator.metrics.alerts.condition import fold_alert

    state, verdict = fold_alert(live.state, r, now)
    metric = f"alert:{t.alert.name}" if t.alert else t.name
    sample: SampleRow = (frame.run_id, host.name, frame.phase, t.name, metric, now - frame.t0,
                         r.value, verdict.breaching, state.status.value, None, None)
    row: StateRow = (host.name, frame.phase, t.name, frame.run_id, state.status.value,
                     r.value, None, None, r.since if r.breaching else None, verdict.text)
    return Live(state, live.baseline), Folded(host, t, Reading(r.value, r.error), live.state,
                                              verdict, None, sample, row, r.labels, r.since)


def fold_poll(poll: Poll, book: Book, frame: Frame) -> tuple[dict[tuple[str, str], Live],
                                                             list[Folded]]:
    """Fold a whole poll: every watched host x numeric trigger read this cycle, then
    every host x `alert:` trigger the poll has a reading for. The new book and the
    folded samples, in that order.

    Most samples of a big fleet change nothing but the value: a trigger that is `ok`
    reads a value that does not breach. Those take `_quiet` (the state `evaluate`
    would give, built at once, with what the trigger fixes worked out once a poll);
    every other sample goes through `evaluate`."""
    new = dict(book)
    out: list[Folded] = []
    plans = [_Plan.of(t) for t in frame.triggers
             if t.metric in frame.metrics and t.name not in poll.skip]
    readings, now, empty = poll.readings, poll.at, Live()
    for host in poll.hosts:
        name = host.name
        for plan in plans:
            t = plan.trigger
            reading = readings.get((name, t.metric))
            if reading is None:
                continue
            key = (name, t.name)
            live = new.get(key) or empty
            quiet = _quiet(host, plan, live, reading, now, frame)
            if quiet is None:
                quiet = fold_one(host, t, live, reading, now, frame)
            new[key], folded = quiet
            out.append(folded)
    out += _fold_alerts(poll, new, frame)
    return new, out


_OK = TriggerStatus.OK  # an enum member's lookup costs more than a name's: 30,000 a cycle


class _Plan(NamedTuple):
    """What a trigger fixes for every sample of a poll, worked out once."""

    trigger: Trigger
    first_good: bool  # the first good sample is its baseline (phase start had no data)
    above: bool | None  # a fixed limit: True above it breaches, False below; None: other
    limit_text: str  # the fixed limit as `describe_breach` writes it

    @classmethod
    def of(cls, t: Trigger) -> _Plan:
        fixed = t.condition in (Condition.ABOVE, Condition.BELOW)
        return cls(t, needs_baseline(t) and t.baseline == PHASE_START,
                   t.condition is Condition.ABOVE if fixed else None,
                   _fmt(t.threshold) if fixed else "")


def _quiet(host: Host, plan: _Plan, live: Live, reading: Reading, now: float,
           frame: Frame) -> tuple[Live, Folded] | None:
    """`fold_one` for a sample that changes nothing but the value (the trigger is `ok`
    and the value does not breach), without `evaluate`'s two copies of the state; None
    for any other sample. Same result as `fold_one`, field for field (test_fold_quiet)."""
    value = reading.value
    if value is None or live.state.status is not _OK:
        return None
    t = plan.trigger
    baseline = live.baseline
    if baseline is None and plan.first_good:
        baseline = value
    if plan.above is not None:  # above/below: the limit is the threshold
        limit: float | None = t.threshold
        if value > t.threshold if plan.above else value < t.threshold:
            return None
        text = f"{_fmt(value)} {'>' if plan.above else '<'} {plan.limit_text}"
    else:
        limit = effective_threshold(t, baseline)
        if is_breaching(t, value, limit):
            return None
        text = describe_breach(t, value, limit, baseline, reading.error)
    state = TriggerState(_OK, None, value, now, None, False, None)
    verdict = Verdict(False, False, limit, text, None, False, False)
    sample: SampleRow = (frame.run_id, host.name, frame.phase, t.name, t.metric,
                         now - frame.t0, value, False, "ok", limit, baseline)
    row: StateRow = (host.name, frame.phase, t.name, frame.run_id, "ok", value, limit,
                     baseline, None, text)
    return Live(state, baseline), Folded(host, t, reading, live.state, verdict, baseline,
                                         sample, row)


def fold_events(host: Host, triggers: list[Trigger], book: Book, count: float, now: float,
                frame: Frame) -> tuple[dict[tuple[str, str], Live], list[Folded]]:
    """An event count (Xid waiter) folded into these triggers of one host; counted from the
    waiter's start, so their baseline is 0."""
    new = dict(book)
    out = []
    for t in triggers:
        live = new.get((host.name, t.name)) or Live()
        live = Live(live.state, 0.0 if live.baseline is None else live.baseline)
        new[(host.name, t.name)], folded = fold_one(host, t, live, Reading(count), now, frame)
        out.append(folded)
    return new, out


def fold_alerts_only(poll: Poll, book: Book, frame: Frame) -> tuple[dict[tuple[str, str], Live],
                                                                   list[Folded]]:
    """Only the `alert:` triggers (a pushed alert, folded within milliseconds)."""
    new = dict(book)
    return new, _fold_alerts(poll, new, frame)


def _fold_alerts(poll: Poll, new: dict[tuple[str, str], Live], frame: Frame) -> list[Folded]:
    out = []
    for host in poll.hosts:
        for t in frame.triggers:
            r = poll.alerts.get((host.name, t.name))
            if t.alert is None or r is None:
                continue
            key = (host.name, t.name)
            new[key], folded = fold_alert_one(host, t, new.get(key) or Live(), r, poll.at,
                                              frame)
            out.append(folded)
    return out
