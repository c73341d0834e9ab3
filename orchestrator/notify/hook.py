"""Turns journaled run events into webhook notifications.

Subscribed to a run's `EventHooks`, so every path that journals a rollback
(a phase's own, `migrate rollback`, `resume`, `watch`) notifies the same way, and
the text comes from the event's payload, never from parsing its prose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.core.events import EventKind, RunEvent

if TYPE_CHECKING:
    from orchestrator.notify.sender import Notifications

_TEXT = {
    EventKind.TRIGGER_FIRED: "trigger fired on {host} (phase {phase}): {detail}",
    EventKind.ROLLBACK_STARTED: "rolling back phase {phase} on {host}: {detail}",
    EventKind.ROLLBACK_COMPLETED: "phase {phase} rolled back on {host}: {detail}",
    EventKind.ROLLBACK_FAILED: "ROLLBACK FAILED for phase {phase} on {host}: {detail}",
    EventKind.PHASE_COMPLETED: "phase {phase} completed on {host}",
    EventKind.METRIC_NODATA: "no data on {host} (phase {phase}): {detail}",
    EventKind.RUN_INTERRUPTED: "run interrupted on {host} (phase {phase}): {detail}",
    EventKind.RUN_STARTED: "phase {phase} started on {host}",
    EventKind.BUDGET_EXHAUSTED: "failure budget exhausted (phase {phase}): {detail}",
    EventKind.WAVE_STARTED: "phase {phase}: {detail}",
    EventKind.WAVE_COMPLETED: "phase {phase}: {detail}",
    EventKind.ANALYSIS_COMPLETED: "canary analysis (phase {phase}): {detail}",
    EventKind.JOURNAL_UNAVAILABLE: "journal unreachable (phase {phase}): {detail}",
}


class NotificationHook:
    def __init__(self, notifications: Notifications) -> None:
        self.notifications = notifications

    def __call__(self, event: RunEvent) -> None:
        kind = event.kind.value
        if event.kind not in _TEXT or not self.notifications.wants(kind):
            return
        text = _TEXT[event.kind].format(host=event.host or "all hosts", phase=event.phase,
                                        detail=event.detail or "")
        self.notifications.send(kind, text, run_id=event.run_id, host=event.host,
                                phase=event.phase, step=event.step, detail=event.detail,
                                **{k: v for k, v in event.payload.items()
                                   if k not in ("host", "phase", "step", "detail")})
