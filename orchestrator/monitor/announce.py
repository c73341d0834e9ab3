"""What a folded cycle calls for, in order: the events to journal, the warnings to show
and the fires to tell the run (after the cycle's rows are journaled).

Apart from fold.py because it is the other half of a cycle's logic: the fold decides each
(host, trigger)'s new state, this reads those decisions out as announcements. Pure, too.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.core.events import EventKind, Firing
from orchestrator.core.model import Metric, TriggerAction
from orchestrator.metrics.triggers import TriggerStatus
from orchestrator.monitor.fold import Folded


class Say(enum.Enum):
    """What an announcement asks the monitor to do besides journaling its event."""

    NOTHING = "nothing"
    WARN = "warn"  # a WARNING line to the operator
    FIRE = "fire"  # a fire line, then (acting) the run is told


@dataclass(frozen=True)
class Announcement:
    """An event the fold calls for, in order; `firing` when a trigger fired."""

    host: str
    kind: EventKind
    detail: str
    payload: dict[str, Any]
    say: Say = Say.NOTHING
    firing: Firing | None = None


def announcements(folded: list[Folded], metrics: Mapping[str, Metric]) -> list[Announcement]:
    """The events and fires the folded samples call for (after they are journaled)."""
    out: list[Announcement] = []
    for f in folded:
        host, t, reading, verdict = f.host, f.trigger, f.reading, f.verdict
        metric = metrics.get(t.metric)
        if verdict.nodata_alert:
            limit = metric.nodata_alert if metric is not None else 120.0
            msg = (f"no data from {t.metric or 'the alert source'} on {host.name} for over "
                   f"{limit:g}s: {reading.error}")
            out.append(Announcement(host.name, EventKind.METRIC_NODATA, msg,
                                    {"metric": t.metric, "error": reading.error}, Say.WARN))
        if verdict.changed_to is None:
            continue
        reason = f"trigger {t.name}: {verdict.text}"
        facts: dict[str, Any] = {"trigger": t.name, "metric": t.metric or None,
                                 "value": reading.value, "threshold": verdict.threshold,
                                 "baseline": f.baseline, "labels": f.labels, "since": f.since}
        if verdict.changed_to is TriggerStatus.PENDING:
            out.append(Announcement(host.name, EventKind.TRIGGER_PENDING, reason, facts))
        elif verdict.changed_to is TriggerStatus.OK:
            kind = EventKind.TRIGGER_RESOLVED if f.old.status is TriggerStatus.FIRING \
                else EventKind.TRIGGER_RESET
            out.append(Announcement(host.name, kind, reason, facts))
        elif verdict.fired:
            firing = Firing(t.name, reason, host.name, t.action.value)
            payload = {"trigger": t.name, "metric": t.metric or None, "value": reading.value,
                       "threshold": verdict.threshold, "baseline": f.baseline,
                       "action": t.action.value, "labels": f.labels, "since": f.since}
            out.append(Announcement(host.name, EventKind.TRIGGER_FIRED, reason, payload,
                                    Say.FIRE, firing))
    return out


def acts_on(firing: Firing) -> bool:
    """A fire the run must hear (rollback or pause); `notify` fires are only journaled."""
    return firing.action in (TriggerAction.ROLLBACK.value, TriggerAction.PAUSE.value)
