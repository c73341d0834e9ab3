"""One run's bus: everything a run hears and everything it says, as typed messages.

A `RunBus` is made when a run starts (`RunLifecycle.run`, `Watcher.run`) and passed in
to what serves the run (the trigger monitor, the phase run, the rollback). It has two
directions:

- **Inbound** (`Fire`, `WorkerDied`, `JournalLost`, `Cancel`): posted from any thread
  (the monitor's, a dying worker's, the journal's), queued, and drained by the run's
  own thread at its safe points (between steps, each slice of a bake). A message that
  stops the run also cancels the run's token at once, so the step in flight is cut
  without waiting for the next safe point; whether a fire stops the run is the run's
  call (`screening`: the failure budget), made on the posting thread.
- **Outbound** (`RunEvent`: each journaled event with its transition; `Cycle`: each
  monitoring cycle as an immutable value): published, in the publishing thread, to
  the `Subscribers` the app built once (notifications, the live view, /metrics, the
  canary buffer, the journal's cycle writer), in subscription order. A subscriber that
  raises is logged and skipped, never allowed to stop a run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from orchestrator.core.clock import CancelToken
from orchestrator.core.events import EventHooks, EventKind, Firing, RunEvent
from orchestrator.core.supervision import describe


# --- inbound ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fire:
    """A trigger with `action: rollback` or `pause` fired on a host."""

    firing: Firing


@dataclass(frozen=True)
class WorkerDied:
    """A supervised background worker of the run died (monitor, receiver, waiter, heartbeat)."""

    worker: str
    cause: BaseException
    text: str = ""  # how the run names it (the bus fills it in when posted without one)


@dataclass(frozen=True)
class JournalLost:
    """The journal has been unwritable for longer than `state.timeout`."""

    reason: str

    @property
    def text(self) -> str:
        return f"journal unreachable: {self.reason}"


@dataclass(frozen=True)
class Cancel:
    """Stop the run (the operator's signal, or a watch told to end)."""

    reason: str
    by_operator: bool = False


Inbound = Fire | WorkerDied | JournalLost | Cancel


# --- outbound -----------------------------------------------------------------------------------
class TriggerValue(NamedTuple):
    """One trigger on one host after a cycle: what /metrics and the live view show. (A
    named tuple: a cycle of 10,000 hosts makes 30,000.)"""

    phase: int
    trigger: str
    host: str
    status: str  # ok, pending, firing
    value: float | None
    threshold: float | None
    baseline: float | None
    breaching_for: float | None  # seconds it has been breaching, None when it is not


@dataclass(frozen=True)
class Cycle:
    """One monitoring cycle, as a value: every watched trigger's state once it was folded.

    `samples` are the cycle's raw readings ((host, metric) -> value) of the metrics the
    canary analysis wants, on the watched and the control hosts; `at` is the monitor's
    clock."""

    run_id: str
    phase: int
    at: float
    values: tuple[TriggerValue, ...]
    samples: tuple[tuple[str, str, float | None], ...] = ()


Outbound = RunEvent | Cycle


@dataclass(frozen=True)
class SampleRequest:
    """What a run's canary analysis asks of its monitor: read these metrics at each cycle
    on the watched hosts and on `hosts` (inventory names: the control, not watched for
    triggers); the readings ride on each `Cycle` (`samples`)."""

    metrics: tuple[str, ...]
    hosts: tuple[str, ...]
M = TypeVar("M")


class Subscribers(EventHooks):
    """Who hears a run: `subscribe(hook)` for journaled events (as `EventHooks`),
    `subscribe_cycles(fn)` for monitoring cycles. Built once by the app; every run's
    bus delivers to them."""

    def __init__(self, log: Callable[[str], None] = lambda line: None) -> None:
        super().__init__(log)
        self._cycles: list[Callable[[Cycle], None]] = []

    def subscribe_cycles(self, fn: Callable[[Cycle], None]) -> None:
        with self._lock:
            self._cycles.append(fn)

    def unsubscribe_cycles(self, fn: Callable[[Cycle], None]) -> None:
        with self._lock:
            if fn in self._cycles:
                self._cycles.remove(fn)

    def run_interrupted(self, row: tuple[str, str, int, str]) -> None:
        """The journal's `on_interrupted`: a phase a dead run (or a run's end) left in
        flight was journaled `interrupted`; `row` is (run_id, host, phase, detail)."""
        run_id, host, phase, detail = row
        self.emit(RunEvent(EventKind.RUN_INTERRUPTED, run_id, host, phase, None, detail))

    def deliver_cycle(self, cycle: Cycle) -> None:
        with self._lock:
            fns = list(self._cycles)
        for fn in fns:
            try:
                fn(cycle)
            except Exception as exc:  # a listener must never stop a run
                self._log(f"cycle subscriber {getattr(fn, '__qualname__', fn)!s} failed: {exc}")


class RunBus:
    """The bus of one run (see the module docstring)."""

    def __init__(self, run_id: str, cancel: CancelToken | None = None,
                 subscribers: EventHooks | None = None,
                 log: Callable[[str], None] = lambda line: None,
                 death_text: Callable[[str, BaseException], str] | None = None) -> None:
        self.run_id = run_id
        self._death_text = death_text or (
            lambda name, exc: f"background worker {name!r} died: {describe(exc)}")
        self.cancel = cancel if cancel is not None else CancelToken()
        self.subscribers = subscribers if subscribers is not None else Subscribers(log)
        self._log = log
        self._inbox: list[Inbound] = []
        self._lock = threading.Lock()
        self._screens: list[Callable[[Fire], bool]] = []
        self._wake = threading.Event()
        self._cycle_listeners: list[Callable[[Cycle], None]] = []  # this run's own

    # --- inbound -------------------------------------------------------------------------------
    def post(self, msg: Inbound) -> None:
        """Queue `msg` for the run (any thread). A death, a lost journal or a cancel stops
        the run: the run's token is cancelled now. A fire does when the run's screen says
        it stops the run (no screen: every fire does)."""
        with self._lock:
            self._inbox.append(msg)
            screens = list(self._screens)
        self._wake.set()
        if isinstance(msg, WorkerDied):
            self._log(f"FAILED: {msg.text}; stopping the run")
            self.cancel.cancel(msg.text)
        elif isinstance(msg, JournalLost):
            self.cancel.cancel(msg.text)
        elif isinstance(msg, Cancel):
            self.cancel.cancel(msg.reason, by_operator=msg.by_operator)
        elif isinstance(msg, Fire) and msg.firing.action == "rollback":
            if all(screen(msg) for screen in screens):
                self.cancel.cancel(msg.firing.reason)

    def drain(self) -> list[Inbound]:
        """Every message posted since the last drain, in order (the run's thread)."""
        with self._lock:
            out, self._inbox = self._inbox, []
            self._wake.clear()
        return out

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, woken by a post; True if a message is waiting."""
        return self._wake.wait(max(0.0, seconds))

    @contextmanager
    def screening(self, stops: Callable[[Fire], bool]) -> Iterator[None]:
        """While the block runs, a fire cancels the run's token only when `stops(fire)`
        (a fleet run's failure budget absorbs some fires: those hosts alone roll back)."""
        with self._lock:
            self._screens.append(stops)
        try:
            yield
        finally:
            with self._lock:
                self._screens.remove(stops)

    def worker_died(self, name: str, exc: BaseException) -> None:
        """A `DeathSink`: a supervised thread of this run died."""
        self.post(WorkerDied(name, exc, self._death_text(name, exc)))

    def journal_lost(self, reason: str) -> None:
        self.post(JournalLost(reason))

    # --- outbound ------------------------------------------------------------------------------
    def subscribe_cycles(self, fn: Callable[[Cycle], None]) -> None:
        """A subscriber of this run's cycles only (the canary buffer of its analysis),
        heard after the app's."""
        with self._lock:
            self._cycle_listeners.append(fn)

    def publish(self, msg: Outbound) -> None:
        """Deliver `msg` to the subscribers, in this thread, in subscription order."""
        if not isinstance(msg, Cycle):
            self.subscribers.emit(msg)
            return
        if isinstance(self.subscribers, Subscribers):
            self.subscribers.deliver_cycle(msg)
        with self._lock:
            own = list(self._cycle_listeners)
        for fn in own:
            try:
                fn(msg)
            except Exception as exc:  # a listener must never stop a run
                self._log(f"cycle subscriber {getattr(fn, '__qualname__', fn)!s} failed: {exc}")

    def emit(self, event: RunEvent) -> None:
        """The recorder's side: a journaled event goes out (`publish`)."""
        self.publish(event)


def first(messages: list[Inbound], kind: type[M]) -> M | None:
    """The first message of `kind` among `messages`."""
    return next((m for m in messages if isinstance(m, kind)), None)
