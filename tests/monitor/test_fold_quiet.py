"""The fold's quick path (`fold._quiet`: an `ok` trigger reading a value that does not
breach) gives exactly what `fold_one` (through `evaluate`) gives, field for field, and
declines every other sample; a poll over many hosts folds the same either way."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from orchestrator.config.inventory import Host
from orchestrator.core.model import Condition, Metric, MetricKind, Trigger, TriggerAction
from orchestrator.metrics.sources.base import Reading
from orchestrator.metrics.triggers import TriggerState, TriggerStatus
from orchestrator.monitor.fold import (
    Frame,
    Live,
    Poll,
    _Plan,
    _quiet,
    fold_one,
    fold_poll,
)

HOST = Host("h1", {})


def trigger(condition: Condition, threshold: float, direction: str = "up",
            baseline: str = "phase-start", for_seconds: float = 0.0) -> Trigger:
    return Trigger(f"t_{condition.value}_{direction}_{baseline}", "m", condition, threshold,
                   direction, for_seconds, TriggerAction.ROLLBACK, baseline, 1)


def metric(kind: MetricKind = MetricKind.NUMBER, nodata: str = "skip") -> Metric:
    return Metric("m", "scripted", kind, {}, nodata, 120.0, None, 1)


TRIGGERS = [trigger(Condition.ABOVE, 100.0), trigger(Condition.BELOW, 10.0),
            trigger(Condition.ABOVE, 2.5e6), trigger(Condition.BELOW, 1234.5678),
            trigger(Condition.DEGRADE_PCT, 20.0), trigger(Condition.DEGRADE_PCT, 20.0, "down"),
            trigger(Condition.DEGRADE_PCT, 20.0, baseline="pre"),
            trigger(Condition.INCREASE, 5.0), trigger(Condition.FAILING, 0.0),
            trigger(Condition.ABOVE, 100.0, for_seconds=60.0)]
STATES = [TriggerState(),
          TriggerState(TriggerStatus.OK, None, 50.0, 10.0, 5.0, True, "refused"),
          TriggerState(TriggerStatus.PENDING, 3.0, 150.0, 10.0),
          TriggerState(TriggerStatus.FIRING, 1.0, 150.0, 10.0)]
READINGS = [Reading(0.0), Reading(1.0), Reading(50.0), Reading(99.0), Reading(101.0),
            Reading(8.0), Reading(1e7), Reading(-3.25e-7), Reading(float("nan")), Reading(None, "refused"), Reading(60.0, "stale")]
BASELINES = [None, 50.0, 100.0]


def frame(triggers: list[Trigger], kind: MetricKind = MetricKind.NUMBER) -> Frame:
    return Frame("r1", 1, tuple(triggers), {"m": metric(kind)}, 2.0,
                 datetime(2026, 1, 1, tzinfo=UTC))


def test_the_quick_path_is_fold_one_wherever_it_answers_and_declines_the_rest() -> None:
    answered = declined = 0
    for kind in (MetricKind.NUMBER, MetricKind.PASSFAIL):
        f = frame(TRIGGERS, kind)
        for t, state, reading, baseline in itertools.product(TRIGGERS, STATES, READINGS,
                                                              BASELINES):
            live = Live(state, baseline)
            quick = _quiet(HOST, _Plan.of(t), live, reading, 42.5, f)
            full = fold_one(HOST, t, live, reading, 42.5, f)
            if quick is None:
                declined += 1
                changed = full[1].verdict.changed_to is not None
                assert (reading.value is None or state.status is not TriggerStatus.OK
                        or full[1].verdict.breaching or changed), (t, state, reading)
            else:
                answered += 1
                assert repr(quick) == repr(full), (t, state, reading, baseline)  # NaN too
    assert answered > 100 and declined > 100  # both paths were exercised


def test_a_poll_of_many_hosts_folds_as_sample_by_sample() -> None:
    hosts = [Host(f"h{i}", {}) for i in range(30)]
    f = frame(TRIGGERS)
    book: dict[tuple[str, str], Live] = {}
    for step, values in enumerate(([50.0] * 30, [float(i * 7) for i in range(30)],
                                   [None if i % 4 == 0 else 60.0 for i in range(30)])):
        readings = {(h.name, "m"): Reading(v, None if v is not None else "refused")
                    for h, v in zip(hosts, values, strict=True)}
        at = 10.0 * (step + 1)
        got_book, folded = fold_poll(Poll(at, tuple(hosts), readings), book, f)
        want_book = dict(book)
        want = []
        for h in hosts:
            for t in TRIGGERS:
                key = (h.name, t.name)
                want_book[key], one = fold_one(h, t, want_book.get(key) or Live(),
                                               readings[(h.name, "m")], at, f)
                want.append(one)
        assert got_book == want_book and folded == want
        book = got_book
