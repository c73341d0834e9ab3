"""What a run says happened: typed journal events and the hooks that listen to them.

Every event has a kind from `EventKind`, a human `detail` (what `history` prints)
and a structured `payload` (trigger, value, threshold, baseline, host, step, wave,
...). Consumers read the payload; nobody parses the prose back into data.

Listeners (notifications, the live view, watch's /metrics, report collectors)
subscribe to an `EventHooks` in the manner of httpx's `event_hooks`: a list of
callables, each called with every event after it is durably journaled. A hook
that raises is logged and dropped from that call, never allowed to stop a run.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class EventKind(enum.Enum):
    # phase transitions (see core.states.PhaseTransition)
    RUN_STARTED = "run_started"
    RUN_RESUMED = "run_resumed"
    BAKE_STARTED = "bake_started"
    PHASE_COMPLETED = "phase_completed"
    ROLLBACK_STARTED = "rollback_started"
    ROLLBACK_COMPLETED = "rollback_completed"
    ROLLBACK_FAILED = "rollback_failed"
    RUN_INTERRUPTED = "run_interrupted"
    PHASE_REFUSED = "phase_refused"  # exit 4 before anything ran (never journaled: no run)
    # step transitions (see core.states.StepTransition)
    STEP_STARTED = "step_started"
    STEP_SUCCEEDED = "step_succeeded"
    STEP_FAILED = "step_failed"
    STEP_SKIPPED = "step_skipped"
    STEP_ROLLBACK_STARTED = "step_rollback_started"
    STEP_ROLLED_BACK = "step_rolled_back"
    STEP_ROLLBACK_FAILED = "step_rollback_failed"
    # facts that move no state
    STEP_RETRY = "step_retry"
    STEP_ROLLBACK_RETRY = "step_rollback_retry"
    STEP_OUTPUT = "step_output"
    TRIGGER_PENDING = "trigger_pending"
    TRIGGER_FIRED = "trigger_fired"
    TRIGGER_RESOLVED = "trigger_resolved"
    TRIGGER_RESET = "trigger_reset"
    METRIC_NODATA = "metric_nodata"
    ROLLBACK_REQUESTED = "rollback_requested"
    ROLLBACK_VERIFIED = "rollback_verified"
    ROLLBACK_VERIFY_FAILED = "rollback_verify_failed"
    OPERATOR_ANSWER = "operator_answer"
    CHANGES_ACCEPTED = "changes_accepted"
    REHEARSAL = "rehearsal"
    WAVE_STARTED = "wave_started"
    WAVE_COMPLETED = "wave_completed"
    BUDGET_EXHAUSTED = "budget_exhausted"
    ANALYSIS_COMPLETED = "analysis_completed"  # a wave's canary judgement (SPEC section 2)
    WATCH_STARTED = "watch_started"
    WATCH_ROLE = "watch_role"
    OBSERVATION_CHECKPOINT = "observation_checkpoint"
    JOURNAL_UNAVAILABLE = "journal_unavailable"


#: the events a `notify:` entry may name (SPEC section 2); without `events:`, all of them
NOTIFIABLE = (
    EventKind.RUN_STARTED, EventKind.PHASE_COMPLETED, EventKind.TRIGGER_FIRED,
    EventKind.ROLLBACK_STARTED, EventKind.ROLLBACK_COMPLETED, EventKind.ROLLBACK_FAILED,
    EventKind.RUN_INTERRUPTED, EventKind.PHASE_REFUSED, EventKind.METRIC_NODATA,
    EventKind.BUDGET_EXHAUSTED, EventKind.WAVE_STARTED, EventKind.WAVE_COMPLETED,
    EventKind.ANALYSIS_COMPLETED, EventKind.JOURNAL_UNAVAILABLE,
)


@dataclass(frozen=True)
class RunEvent:
    kind: EventKind
    run_id: str | None
    host: str | None
    phase: int | None
    step: str | None = None
    detail: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


Hook = Callable[[RunEvent], None]


class EventSink(Protocol):
    """Where a recorder sends each event once it is journaled (a run's bus, or hooks)."""

    def emit(self, event: RunEvent) -> None: ...


@dataclass(frozen=True)
class Firing:
    """A trigger that fired on a host: why the run must act (the monitor tells the run)."""

    trigger: str
    reason: str  # e.g. "trigger vram_degradation: 1301 > 1200 (baseline 1000, +20%)"
    host: str
    action: str = "rollback"


FireSink = Callable[[Firing], None]


class EventHooks:
    """The subscribers of a run's events; thread-safe, called in subscription order."""

    def __init__(self, log: Callable[[str], None] = lambda line: None) -> None:
        self._hooks: list[Hook] = []
        self._lock = threading.Lock()
        self._log = log

    def subscribe(self, hook: Hook) -> None:
        with self._lock:
            self._hooks.append(hook)

    def unsubscribe(self, hook: Hook) -> None:
        with self._lock:
            if hook in self._hooks:
                self._hooks.remove(hook)

    def emit(self, event: RunEvent) -> None:
        with self._lock:
            hooks = list(self._hooks)
        for hook in hooks:
            try:
                hook(event)
            except Exception as exc:  # a listener must never stop a run
                self._log(f"event hook {getattr(hook, '__qualname__', hook)!s} failed on "
                          f"{event.kind.value}: {exc}")
