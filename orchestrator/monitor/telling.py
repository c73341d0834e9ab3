"""What the trigger monitor says after a cycle is journaled: the cycle as a value on the
run's bus, then each announcement (`fold.announcements`) as a journaled event, an
operator line, and for a fire that the run must act on, a `Fire` on the bus."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from orchestrator.core.bus import Cycle, Fire, RunBus, TriggerValue
from orchestrator.core.events import Firing
from orchestrator.core.model import Trigger
from orchestrator.metrics.triggers import TriggerStatus, effective_threshold
from orchestrator.monitor.announce import Announcement, Say, acts_on
from orchestrator.monitor.fold import Live

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from orchestrator.state.recorder import Recorder

T = TypeVar("T")


def cycle_value(run_id: str, phase: int, at: float, book: Mapping[tuple[str, str], Live],
                triggers: Mapping[str, Trigger],
                samples: tuple[tuple[str, str, float | None], ...] = ()) -> Cycle:
    """Every watched trigger's state now, as a value (what /metrics and views show)."""
    values = []
    ok, text = TriggerStatus.OK, {s: s.value for s in TriggerStatus}  # enum lookups, hoisted
    for (host, name), live in sorted(book.items()):
        state = live.state
        status = state.status
        breaching = None if state.breach_since is None or status is ok \
            else at - state.breach_since
        values.append(TriggerValue(phase, name, host, text[status], state.last_value,
                                   effective_threshold(triggers[name], live.baseline),
                                   live.baseline, breaching))
    return Cycle(run_id, phase, at, tuple(values), samples)


def while_writing(write: Callable[[], object] | None, build: Callable[[], T],
                  pool: ThreadPoolExecutor | None) -> T:
    """`build()` while `write()` runs on the pool (before it, without a pool), returning
    once both are done, the write's error raised here. Why: at 10,000 hosts the journal
    write of a cycle is a third of a second spent mostly waiting on the database, and the
    cycle's value is published only after its rows are journaled, as before."""
    if write is None:
        return build()
    if pool is None:
        write()
        return build()
    writing = pool.submit(write)
    try:
        return build()
    finally:
        writing.result()


def tell(announced: list[Announcement], bus: RunBus, phase: int, recorder: Recorder | None,
         say: Callable[[str], None], dry_run: bool, act: bool) -> list[Firing]:
    """Journal each announcement's event and say what the operator must see; post the
    fires the run acts on (not in a dry run, nor with `act` off). Every fire, returned."""
    fired = []
    for a in announced:
        if a.firing is not None:
            fired.append(a.firing)
            prefix = "dry run: would fire: " if dry_run else ""
            say(f"{prefix}{a.detail} on {a.host} -> {a.firing.action}")
        if recorder is not None:
            recorder.event(a.kind, bus.run_id, a.host, phase, None, a.detail, **a.payload)
        if a.say is Say.WARN:
            say(f"WARNING {a.detail}")
        if a.firing is not None and not dry_run and act and acts_on(a.firing):
            bus.post(Fire(a.firing))
    return fired
