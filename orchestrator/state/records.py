"""The journal's named records: what its reads return, in the lowest module of state/.

Every backend module (base, sqlite, postgres) and the journal itself import these from
here, so that no module of state/ needs another one in a circle. Rows are never
handed out as bare tuples: a record names its fields (the NamedTuples still unpack
like the tuples they replaced).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from orchestrator.core.states import PhaseState, StepState
from orchestrator.state.proc import ProcessId


def utc_stamp(moment: datetime | None = None) -> str:
    """UTC with milliseconds, as the spec's journal shows: 2026-11-23T23:59:00.123Z."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class PhaseRecord:
    host: str
    phase: int
    state: PhaseState
    run_id: str | None
    updated_at: str | None
    reason: str | None


@dataclass(frozen=True)
class Event:
    seq: int
    at: str
    run_id: str | None
    host: str | None
    phase: int | None
    step: str | None
    kind: str
    detail: str | None
    payload: dict[str, Any] | None = None  # the structured facts behind `detail`
    migration: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at, "run_id": self.run_id, "host": self.host, "phase": self.phase,
                "step": self.step, "kind": self.kind, "detail": self.detail,
                "payload": self.payload or {}, "migration": self.migration}


@dataclass(frozen=True)
class LockHolder:
    host: str
    run_id: str
    process: ProcessId
    command: str
    since: str
    migration: str = ""


@dataclass(frozen=True)
class LeaderRecord:
    """Who is the active `watch` for a key, as it wrote itself down (machine, pid, since)."""

    name: str
    process: ProcessId
    command: str
    since: str


class Interrupted(NamedTuple):
    """A phase that the journal found in flight under a dead (or ended) run."""

    run_id: str
    host: str
    phase: int
    detail: str


class StepRow(NamedTuple):
    """One step of a run on a host, as `Journal.steps_of` lists them."""

    step: str
    idx: int
    state: StepState
