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

PHASE_EDGES: Mapping[PhaseState, frozenset[PhaseState]] = {
    P.PENDING: frozenset({P.RUNNING}),
    P.RUNNING: frozenset({P.BAKING, P.COMPLETED, P.ROLLING_BACK, P.INTERRUPTED}),
    P.BAKING: frozenset({P.COMPLETED, P.ROLLING_BACK, P.INTERRUPTED}),
    P.COMPLETED: frozenset({P.ROLLING_BACK}),
    P.ROLLING_BACK: frozenset({P.ROLLED_BACK, P.ROLLBACK_FAILED, P.INTERRUPTED}),
    P.ROLLED_BACK: frozenset({P.RUNNING}),
    P.ROLLBACK_FAILED: frozenset({P.ROLLING_BACK}),
    P.INTERRUPTED: frozenset({P.RUNNING, P.ROLLING_BACK}),
}

STEP_EDGES: Mapping[StepState, frozenset[StepState]] = {
    S.PENDING: frozenset({S.RUNNING, S.SKIPPED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.ROLLING_BACK, S.RUNNING}),
    S.SUCCEEDED: frozenset({S.ROLLING_BACK}),
    S.FAILED: frozenset({S.ROLLING_BACK}),
    S.SKIPPED: frozenset(),
    S.ROLLING_BACK: frozenset({S.ROLLED_BACK, S.ROLLBACK_FAILED, S.ROLLING_BACK}),
    S.ROLLED_BACK: frozenset(),
    S.ROLLBACK_FAILED: frozenset({S.ROLLING_BACK}),
}

#: Phase states a new `migrate phase` may start from.
STARTABLE = frozenset({P.PENDING, P.ROLLED_BACK})
#: Phase states that mean a run is (or was, until it died) in flight.
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
