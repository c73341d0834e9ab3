"""The states a phase and a step can be in, and the only transitions between them.

The graphs are data, checked when this module is imported: every state is
reachable from the initial one and every state that is not final can leave.
Rollback is an edge of the graph (running -> rolling_back -> rolled_back), not an
`except` somewhere; the engine asks `advance(old, new)` and an illegal move is a
bug that fails loudly instead of writing a nonsense journal.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.core.events import EventKind


class PhaseState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    BAKING = "baking"
    COMPLETED = "completed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    INTERRUPTED = "interrupted"


class StepState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"


P = PhaseState
S = StepState


@dataclass(frozen=True)
class Edge:
    """A named transition: the event that announces it, where it may start, where it ends."""

    event: EventKind
    sources: frozenset[enum.Enum]
    target: enum.Enum


class PhaseTransition(enum.Enum):
    """Every way a phase's state may change on a host; the journal writes nothing else."""

    START = Edge(EventKind.RUN_STARTED, frozenset({P.PENDING, P.ROLLED_BACK}), P.RUNNING)
    RESUME = Edge(EventKind.RUN_RESUMED, frozenset({P.INTERRUPTED, P.RUNNING}), P.RUNNING)
    BAKE = Edge(EventKind.BAKE_STARTED, frozenset({P.RUNNING}), P.BAKING)
    COMPLETE = Edge(EventKind.PHASE_COMPLETED, frozenset({P.RUNNING, P.BAKING}), P.COMPLETED)
    ROLL_BACK = Edge(EventKind.ROLLBACK_STARTED,
                     frozenset({P.RUNNING, P.BAKING, P.COMPLETED, P.INTERRUPTED,
                                P.ROLLBACK_FAILED, P.ROLLING_BACK}), P.ROLLING_BACK)
    ROLLED_BACK = Edge(EventKind.ROLLBACK_COMPLETED, frozenset({P.ROLLING_BACK}), P.ROLLED_BACK)
    ROLLBACK_FAILED = Edge(EventKind.ROLLBACK_FAILED, frozenset({P.ROLLING_BACK}),
                           P.ROLLBACK_FAILED)
    INTERRUPT = Edge(EventKind.RUN_INTERRUPTED,
                     frozenset({P.RUNNING, P.BAKING, P.ROLLING_BACK}), P.INTERRUPTED)


class StepTransition(enum.Enum):
    """Every way a step's state may change on a host."""

    START = Edge(EventKind.STEP_STARTED, frozenset({S.PENDING, S.RUNNING}), S.RUNNING)
    SUCCEED = Edge(EventKind.STEP_SUCCEEDED, frozenset({S.RUNNING}), S.SUCCEEDED)
    FAIL = Edge(EventKind.STEP_FAILED, frozenset({S.RUNNING}), S.FAILED)
    SKIP = Edge(EventKind.STEP_SKIPPED, frozenset({S.PENDING}), S.SKIPPED)
    UNDO = Edge(EventKind.STEP_ROLLBACK_STARTED,
                frozenset({S.RUNNING, S.SUCCEEDED, S.FAILED, S.ROLLING_BACK,
                           S.ROLLBACK_FAILED}), S.ROLLING_BACK)
    UNDONE = Edge(EventKind.STEP_ROLLED_BACK, frozenset({S.ROLLING_BACK}), S.ROLLED_BACK)
    UNDO_FAILED = Edge(EventKind.STEP_ROLLBACK_FAILED, frozenset({S.ROLLING_BACK}),
                       S.ROLLBACK_FAILED)


def _edges(table: type[enum.Enum], states: type[enum.Enum]) -> dict[enum.Enum, frozenset]:  # type: ignore[type-arg]
    graph: dict[enum.Enum, set[enum.Enum]] = {s: set() for s in states}
    for t in table:
        for src in t.value.sources:
            graph[src].add(t.value.target)
    return {k: frozenset(v) for k, v in graph.items()}


#: The graphs, derived from the named transitions (a state may also "move" to itself).
PHASE_EDGES: Mapping[PhaseState, frozenset[PhaseState]] = _edges(PhaseTransition, PhaseState)  # type: ignore[assignment]
STEP_EDGES: Mapping[StepState, frozenset[StepState]] = _edges(StepTransition, StepState)  # type: ignore[assignment]

#: Phase states a new `migrate phase` may start from.
STARTABLE = frozenset({P.PENDING, P.ROLLED_BACK})
#: Phase states that mean a run is (or was, until it died) in flight: the one definition
#: (the journal turns them `interrupted` when their run died; `status` lists them as active).
ACTIVE = frozenset({P.RUNNING, P.BAKING, P.ROLLING_BACK})
#: Phase states that `migrate rollback` may act on.
ROLLBACKABLE = frozenset({P.COMPLETED, P.INTERRUPTED, P.ROLLBACK_FAILED, P.BAKING, P.RUNNING})


class IllegalTransition(RuntimeError):
    """A transition that the graph does not allow: a bug in the engine, never user error."""


def advance(graph: Mapping[enum.Enum, frozenset], old: enum.Enum, new: enum.Enum) -> enum.Enum:  # type: ignore[type-arg]
    if new not in graph[old]:
        raise IllegalTransition(f"{old.value} -> {new.value} is not a transition")
    return new


def check_graph(graph: Mapping[enum.Enum, frozenset], initial: enum.Enum) -> None:  # type: ignore[type-arg]
    """Every state is in the graph and reachable from `initial`."""
    states = set(type(initial))
    if set(graph) != states:
        raise IllegalTransition(f"graph misses states: {states - set(graph)}")
    seen = {initial}
    frontier = [initial]
    while frontier:
        for nxt in graph[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    if seen != states:
        raise IllegalTransition(f"unreachable states: {sorted(s.value for s in states - seen)}")


check_graph(PHASE_EDGES, P.PENDING)  # type: ignore[arg-type]
check_graph(STEP_EDGES, S.PENDING)  # type: ignore[arg-type]
for _t in (*PhaseTransition, *StepTransition):  # every transition announces a distinct event
    assert sum(1 for u in (*PhaseTransition, *StepTransition)
               if u.value.event is _t.value.event) == 1, _t
