"""The trigger monitor's fold without its thread: polls on a FakeClock, no waiting.

`fold_poll` is pure (a poll and the triggers' state in; the new state, the journal's
rows and, through `announcements`, the events and fires out), so a `for: 5m` trigger is
proven by folding one poll a minute on a fake clock: pending at the first breach,
firing exactly when five minutes have held, not a poll before.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from orchestrator.config.project import load_project
from orchestrator.core.bus import Cycle, RunBus
from orchestrator.core.clock import FakeClock
from orchestrator.core.events import EventKind
from orchestrator.metrics.sources.base import Reading
from orchestrator.monitor.announce import announcements
from orchestrator.monitor.fold import Frame, Live, Poll, fold_poll
from orchestrator.monitor.telling import cycle_value, tell
from tests.support.projects import make_project

MIGRATION = (
    "name: fold\ninventory: inventory/hosts.yml\npoll_interval: 60s\nmetrics:\n"
    "  vram:\n    source: scripted\n    values: [{at: 0s, value: 1000}]\n"
    "triggers:\n  vram_high: {metric: vram, above: 5000, for: 5m}\n")


def setup(tmp_path: Path) -> tuple[Frame, list, FakeClock]:  # type: ignore[type-arg]
    proj = make_project(tmp_path, MIGRATION, hosts=("main",))
    proj.phase(1, "p", "phase: 1\ntriggers: [vram_high]\nsteps:\n  - id: w\n    wait: 1s\n")
    project, inventory = load_project(proj.root)
    clock = FakeClock()
    frame = Frame("r1", 1, (project.triggers["vram_high"],), project.metrics,
                  clock.monotonic(), datetime(2026, 1, 1, tzinfo=UTC))
    return frame, [inventory.hosts["main"]], clock


def poll(clock: FakeClock, hosts: list, value: float | None) -> Poll:  # type: ignore[type-arg]
    return Poll(clock.monotonic(), tuple(hosts), {("main", "vram"): Reading(value)})


def test_for_five_minutes_fires_exactly_when_the_breach_has_held_five_minutes(
        tmp_path: Path) -> None:
    frame, hosts, clock = setup(tmp_path)
    book: dict[tuple[str, str], Live] = {}
    kinds: list[tuple[float, list[EventKind]]] = []
    for minute in range(7):
        book, folded = fold_poll(poll(clock, hosts, 6000.0), book, frame)
        assert [f.sample[6] for f in folded] == [6000.0]  # the row the journal keeps
        kinds.append((minute, [a.kind for a in announcements(folded, frame.metrics)]))
        clock.advance(60)
    assert kinds[0] == (0, [EventKind.TRIGGER_PENDING])
    assert all(k == [] for _, k in kinds[1:5])  # held 1..4 min: still pending, nothing new
    assert kinds[5] == (5, [EventKind.TRIGGER_FIRED])  # 5 min after the first breach
    assert kinds[6] == (6, [])  # firing stays firing: announced once
    assert book[("main", "vram_high")].state.status.value == "firing"


def test_a_breach_that_ends_before_five_minutes_resets_and_never_fires(tmp_path: Path) -> None:
    frame, hosts, clock = setup(tmp_path)
    book: dict[tuple[str, str], Live] = {}
    seen: list[EventKind] = []
    for value in (6000.0, 6000.0, 6000.0, 6000.0, 1000.0, 6000.0, 6000.0):
        book, folded = fold_poll(poll(clock, hosts, value), book, frame)
        seen += [a.kind for a in announcements(folded, frame.metrics)]
        clock.advance(60)
    assert EventKind.TRIGGER_FIRED not in seen
    assert seen == [EventKind.TRIGGER_PENDING, EventKind.TRIGGER_RESET,
                    EventKind.TRIGGER_PENDING]


def test_the_fold_is_pure_same_inputs_same_outputs(tmp_path: Path) -> None:
    frame, hosts, clock = setup(tmp_path)
    first = fold_poll(poll(clock, hosts, 6000.0), {}, frame)
    again = fold_poll(poll(clock, hosts, 6000.0), {}, frame)
    assert first[0] == again[0] and [f.state for f in first[1]] == [f.state for f in again[1]]


def test_a_fire_is_posted_on_the_bus_and_the_cycle_published_as_a_value(
        tmp_path: Path) -> None:
    frame, hosts, clock = setup(tmp_path)
    bus = RunBus("r1")
    cycles: list[Cycle] = []
    bus.subscribe_cycles(cycles.append)
    book: dict[tuple[str, str], Live] = {}
    fired = []
    for _ in range(6):
        book, folded = fold_poll(poll(clock, hosts, 6000.0), book, frame)
        bus.publish(cycle_value("r1", 1, clock.monotonic(), book,
                                {t.name: t for t in frame.triggers}))
        fired += tell(announcements(folded, frame.metrics), bus, 1, None, lambda line: None,
                      dry_run=False, act=True)
        clock.advance(60)
    assert [f.trigger for f in fired] == ["vram_high"]
    assert bus.cancel.cancelled  # no screen: a rollback fire stops the run at once
    [msg] = bus.drain()
    assert msg.firing.host == "main"  # type: ignore[union-attr]
    last = cycles[-1].values[0]
    assert (last.status, last.value, last.threshold, last.breaching_for) == \
        ("firing", 6000.0, 5000.0, 300.0)
