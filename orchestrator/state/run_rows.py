"""Runs, phase states and steps: the journal's record of what ran, and where it is now.

Every transition goes through the graph (`core.states.advance`) in the transaction that
journals it; phase states are this migration's (`Journal.migration`) unless another
migration is named."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from orchestrator.core.states import PHASE_EDGES, STEP_EDGES, PhaseState, StepState, advance
from orchestrator.state.base import Conn
from orchestrator.state.journal_core import JournalCore
from orchestrator.state.proc import ProcessId
from orchestrator.state.records import (
    PhaseRecord,
    StepRow,
    utc_stamp,
)

#: a phase state as stored, for the read views: (state, run_id, updated_at, reason)
PhaseRow = tuple[str, str | None, str | None, str | None]


@dataclass(frozen=True)
class PhaseTally:
    """Phase states folded per migration (`RunRows.phase_tally`)."""

    #: migration -> how many hosts have a phase state
    hosts: dict[str, int]
    #: migration -> phase -> state -> hosts
    states: dict[str, dict[int, dict[str, int]]]
    #: migration -> phase -> the candidates for its newest completion stamp (one per shape)
    completed: dict[str, dict[int, list[str]]]


class RunRows(JournalCore):
    """Runs, phase states and steps: the journal's record of what ran, and where it is now."""

    # --- runs ------------------------------------------------------------------------------
    def create_run(self, run_id: str, phase: int | None, hosts: list[str], command: str,
                   kind: str, dry_run: bool, checksums: dict[str, str],
                   origin_runs: dict[str, list[str]] | None = None) -> None:
        """Record a run. `origin_runs` (rollback runs): `rollback_targets`' answer, {the run
        whose steps it undoes: its hosts}."""
        me = ProcessId.current()
        origin_of = {h: run for run, hosts in (origin_runs or {}).items() for h in hosts}

        def body(db: Conn) -> None:
            db.execute("INSERT INTO runs (id, phase, hosts, command, kind, pid, pid_start, "
                       "machine, started_at, dry_run, checksums, migration) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                       (run_id, phase, json.dumps(hosts), command, kind, me.pid, me.start,
                        me.machine, utc_stamp(), int(dry_run), json.dumps(checksums),
                        self.migration))
            db.executemany("INSERT INTO run_hosts (run_id, host, origin_run) VALUES (?, ?, ?) "
                           "ON CONFLICT (run_id, host) DO NOTHING",
                           [(run_id, h, origin_of.get(h)) for h in dict.fromkeys(hosts)])

        self._write(body)

    def end_run(self, run_id: str, outcome: str) -> None:
        self._write(lambda db: db.execute("UPDATE runs SET ended_at = ?, outcome = ? "
                                          "WHERE id = ?", (utc_stamp(), outcome, run_id)))

    def reopen_run(self, run_id: str) -> None:
        """A resumed run is in flight again: its end is written when the resume ends."""
        self._write(lambda db: db.execute("UPDATE runs SET ended_at = NULL, outcome = NULL "
                                          "WHERE id = ?", (run_id,)))

    def rollback_targets(self, hosts: list[str], run_id: str,
                         phase: int | None = None) -> dict[str, list[str]]:
        """The origin run of a rollback, resolved in this one place: {the run whose steps
        the rollback undoes: its hosts}, in the hosts' order.

        From `run_id` (a phase run rolling itself back, or a rollback run recorded with
        its hosts' origin runs); with `phase`, from the run that holds each host's phase
        (`migrate rollback`, watch: before their own run is recorded), else `run_id`.
        Followed through rollbacks of rollbacks: a rollback run undoes the steps of the
        run that made them. A few queries for any number of hosts (500 hosts a query,
        one round per link of the longest chain), not two round trips per host."""
        holders = self._phase_run_ids(hosts, phase) if phase is not None else {}
        origin = self._origin_runs({h: holders.get(h) or run_id for h in hosts})
        out: dict[str, list[str]] = {}
        for host in hosts:
            out.setdefault(origin[host], []).append(host)
        return out

    def _phase_run_ids(self, hosts: list[str], phase: int) -> dict[str, str | None]:
        """{host: the run id of its phase state} of this migration, for the hosts that
        have one."""
        out: dict[str, str | None] = {}
        for part in _chunks(list(dict.fromkeys(hosts))):
            for host, run in self._query(
                    "SELECT host, run_id FROM phase_states WHERE migration = ? AND phase = ? "
                    f"AND host IN ({','.join('?' * len(part))})",
                    (self.migration, phase, *part)):
                out[host] = run
        return out

    def _origin_runs(self, starts: dict[str, str]) -> dict[str, str]:
        """{host: the run its steps were made by}, from {host: a run}: each host's
        `origin_run` followed until a run has none (or one already seen)."""
        current = dict(starts)
        seen = {h: {r} for h, r in starts.items()}
        pending = list(starts)
        while pending:
            by_run: dict[str, list[str]] = {}
            for host in pending:
                by_run.setdefault(current[host], []).append(host)
            found: dict[tuple[str, str], str | None] = {}
            for run, members in by_run.items():
                for part in _chunks(members):
                    for host, origin in self._query(
                            "SELECT host, origin_run FROM run_hosts WHERE run_id = ? AND "
                            f"host IN ({','.join('?' * len(part))})", (run, *part)):
                        found[(run, host)] = origin
            moved = []
            for host in pending:
                origin = found.get((current[host], host))
                if origin and origin not in seen[host]:
                    seen[host].add(origin)
                    current[host] = origin
                    moved.append(host)
            pending = moved
        return current

    def run_info(self, run_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT id, phase, hosts, command, kind, started_at, ended_at, "
                           "dry_run, outcome, checksums, machine, pid, migration FROM runs "
                           "WHERE id = ?", (run_id,))
        if not rows:
            return None
        r = rows[0]
        return {"id": r[0], "phase": r[1], "hosts": json.loads(r[2]), "command": r[3],
                "kind": r[4], "started_at": r[5], "ended_at": r[6], "dry_run": bool(r[7]),
                "outcome": r[8], "checksums": json.loads(r[9] or "{}"), "machine": r[10],
                "pid": r[11], "migration": r[12]}

    # --- phase states ----------------------------------------------------------------------
    def phase_record(self, host: str, phase: int, migration: str | None = None) -> PhaseRecord:
        """The phase's state on the host, of this migration or of `migration`."""
        rows = self._query("SELECT state, run_id, updated_at, reason FROM phase_states "
                           "WHERE migration = ? AND host = ? AND phase = ?",
                           (self.migration if migration is None else migration, host, phase))
        if not rows:
            return PhaseRecord(host, phase, PhaseState.PENDING, None, None, None)
        state, run_id, updated_at, reason = rows[0]
        return PhaseRecord(host, phase, PhaseState(state), run_id, updated_at, reason)

    def phase_records(self, hosts: list[str] | None = None) -> dict[tuple[str, int], PhaseRecord]:
        """Every recorded phase state (of `hosts`), in one query: for `status` on many hosts
        (200 hosts x 4 phases are 800 round trips one by one, 1 this way).

        Phases never started are absent (they are `pending`, as `phase_record` says).
        """
        rows = self._query("SELECT host, phase, state, run_id, updated_at, reason "
                           "FROM phase_states WHERE migration = ? ORDER BY host, phase",
                           (self.migration,))
        wanted = set(hosts) if hosts is not None else None
        state_of = _PHASE_STATE_OF  # a dict lookup, not an enum call, per row (40,000)
        return {(h, p): PhaseRecord(h, p, state_of.get(s) or PhaseState(s), r, u, why)
                for h, p, s, r, u, why in rows if wanted is None or h in wanted}

    def phase_rows(self) -> dict[tuple[str, int], PhaseRow]:
        """Every recorded phase state of this migration as it is stored: {(host, phase):
        (state, run_id, updated_at, reason)}, in one query and unordered.

        For the read views (`status` at 10,000 hosts x 4 phases): they show the state as
        text, so neither a PhaseState nor a PhaseRecord is built per row. Phases never
        started are absent (`pending`)."""
        rows = self._query("SELECT host, phase, state, run_id, updated_at, reason "
                           "FROM phase_states WHERE migration = ?", (self.migration,))
        return {(h, p): (s, r, u, why) for h, p, s, r, u, why in rows}

    def every_phase_row(self) -> dict[str, dict[tuple[str, int], PhaseRow]]:
        """{migration: {(host, phase): (state, run_id, updated_at, reason)}} for every
        migration in the journal, in one query (`status --all`), as `phase_rows`."""
        rows = self._query("SELECT migration, host, phase, state, run_id, updated_at, reason "
                           "FROM phase_states")
        out: dict[str, dict[tuple[str, int], PhaseRow]] = {}
        for m, h, p, s, r, u, why in rows:
            mine = out.get(m)
            if mine is None:
                mine = out[m] = {}
            mine[(h, p)] = (s, r, u, why)
        return out

    def phase_tally(self) -> PhaseTally:
        """Every migration's phase states folded by the server (`status --all`, whose text
        shows counts, not hosts): per migration its host count, per phase its hosts
        counted by state, and the newest stamp of a `completed` one. Four small answers
        instead of 40,000 rows at 10,000 hosts x 4 phases.

        Stamps ending in `Z` of one length (ours: `...HH:MM:SS.mmmZ`) order as text as in
        time, so the server takes their greatest; any other (an explicit offset) comes
        back whole and is compared by time."""
        tally = PhaseTally({}, {}, {})
        for migration, hosts in self._query("SELECT migration, COUNT(DISTINCT host) FROM "
                                            "phase_states GROUP BY migration"):
            tally.hosts[migration] = hosts
        for migration, phase, state, n in self._query(
                "SELECT migration, phase, state, COUNT(*) FROM phase_states "
                "GROUP BY migration, phase, state ORDER BY migration, phase, state"):
            tally.states.setdefault(migration, {}).setdefault(phase, {})[state] = n
        completed = PhaseState.COMPLETED.value
        for migration, phase, _, stamp in self._query(
                "SELECT migration, phase, LENGTH(updated_at), MAX(updated_at) FROM phase_states "
                "WHERE state = ? AND updated_at LIKE ? GROUP BY migration, phase, "
                "LENGTH(updated_at)", (completed, "%Z")) + self._query(
                "SELECT migration, phase, 0, updated_at FROM phase_states WHERE state = ? "
                "AND updated_at <> '' AND updated_at NOT LIKE ?", (completed, "%Z")):
            tally.completed.setdefault(migration, {}).setdefault(phase, []).append(stamp)
        return tally

    def move_phase(self, run_id: str, host: str, phase: int, new: PhaseState, kind: str,
                   detail: str | None = None, reason: str | None = None,
                   payload: dict[str, Any] | None = None) -> None:
        """Change a phase's state along a legal edge and journal it in one transaction."""
        self._move(PhaseMove(run_id, host, phase, new, kind, detail, reason, payload))

    # --- steps -----------------------------------------------------------------------------
    def step_state(self, run_id: str, host: str, step: str) -> StepState:
        rows = self._query("SELECT state FROM steps WHERE run_id = ? AND host = ? AND step = ?",
                           (run_id, host, step))
        return StepState(rows[0][0]) if rows else StepState.PENDING

    def move_step(self, run_id: str, host: str, phase: int, step: str, idx: int,
                  new: StepState, kind: str, detail: str | None = None,
                  payload: dict[str, Any] | None = None, owner: str | None = None) -> None:
        """Move the step row of run `run_id`; the event is journaled under `owner` (the
        rollback run undoing another run's steps) when given."""
        self._move(StepMove(run_id, host, phase, step, idx, new, kind, detail, payload, owner))

    def _move(self, move: StepMove | PhaseMove) -> None:
        """Moves made one after another in a `batch` join one `_Moves`: their current
        states are read in one query, not one round trip per host."""
        pending = self._pending()
        if pending is None:
            self._write(_Moves(self, [move]))
        elif pending and isinstance(pending[-1], _Moves) and pending[-1].journal is self:
            pending[-1].moves.append(move)
        else:
            pending.append(_Moves(self, [move]))

    def steps_of(self, run_id: str, host: str) -> list[StepRow]:
        rows = self._query("SELECT step, idx, state FROM steps WHERE run_id = ? AND host = ? "
                           "ORDER BY idx", (run_id, host))
        return [StepRow(s, i, StepState(st)) for s, i, st in rows]



@dataclass(frozen=True)
class StepMove:
    """One `move_step`, held until its transaction is written."""

    run_id: str
    host: str
    phase: int
    step: str
    idx: int
    new: StepState
    kind: str
    detail: str | None
    payload: dict[str, Any] | None
    owner: str | None


@dataclass(frozen=True)
class PhaseMove:
    """One `move_phase`, held until its transaction is written."""

    run_id: str
    host: str
    phase: int
    new: PhaseState
    kind: str
    detail: str | None
    reason: str | None
    payload: dict[str, Any] | None


_PHASE_STATE_OF = {s.value: s for s in PhaseState}
_CHUNK = 500  # hosts per IN (...) list: well under SQLite's bound on parameters


class _Moves:
    """A transaction body for moves made one after another: one read of the current
    states of all their rows (per run and per 500 hosts), then the moves applied in turn
    (each along a legal edge, from the state the move before it left), then every event,
    step row and phase row written with `executemany` (multi-row statements on
    PostgreSQL). The same rows and events, in the same order, as moving them one by one;
    at 10,000 hosts it is a few round trips instead of one per host."""

    def __init__(self, journal: RunRows, moves: list[StepMove | PhaseMove]) -> None:
        self.journal = journal
        self.moves = moves

    def __call__(self, db: Conn) -> None:
        j = self.journal
        steps = self._step_states(db)
        phases = self._phase_states(db)
        events: list[tuple[Any, ...]] = []
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        upserts: list[tuple[Any, ...]] = []
        for m in self.moves:
            at = utc_stamp()
            if isinstance(m, StepMove):
                key = (m.run_id, m.host, m.step)
                had = steps.get(key)
                advance(STEP_EDGES, had or StepState.PENDING, m.new)  # type: ignore[arg-type]
                events.append((at, m.owner or m.run_id, m.host, m.phase, m.step, m.kind,
                               m.detail, json.dumps(m.payload) if m.payload else None,
                               j.migration))
                running = m.new is StepState.RUNNING
                if had is None:
                    inserts.append((m.run_id, m.host, m.phase, m.step, m.idx, m.new.value,
                                    1 if running else 0, at, m.detail))
                else:
                    updates.append((m.new.value, 1 if running else 0,
                                    None if running else at, m.detail,
                                    m.run_id, m.host, m.step))
                steps[key] = m.new
            else:
                pkey = (m.host, m.phase)
                old, old_reason = phases.get(pkey, (PhaseState.PENDING, None))
                if old is not m.new:
                    advance(PHASE_EDGES, old, m.new)  # type: ignore[arg-type]
                keep_reason = m.reason if m.reason is not None else (
                    old_reason if m.new in (PhaseState.ROLLING_BACK, PhaseState.ROLLED_BACK,
                                            PhaseState.ROLLBACK_FAILED) else None)
                events.append((at, m.run_id, m.host, m.phase, None, m.kind, m.detail,
                               json.dumps(m.payload) if m.payload else None, j.migration))
                upserts.append((j.migration, m.host, m.phase, m.new.value, m.run_id, at,
                                keep_reason))
                phases[pkey] = (m.new, keep_reason)
        j._tx_events += len(events)
        db.executemany("INSERT INTO events (at, run_id, host, phase, step, kind, detail, "
                       "payload, migration) VALUES (?,?,?,?,?,?,?,?,?)", events)
        if inserts:
            db.executemany("INSERT INTO steps (run_id, host, phase, step, idx, state, "
                           "attempts, started_at, detail) VALUES (?,?,?,?,?,?,?,?,?)", inserts)
        if updates:
            db.executemany("UPDATE steps SET state = ?, attempts = attempts + ?, "
                           "ended_at = COALESCE(?, ended_at), detail = COALESCE(?, detail) "
                           "WHERE run_id = ? AND host = ? AND step = ?", updates)
        if upserts:
            db.executemany("INSERT INTO phase_states (migration, host, phase, state, run_id, "
                           "updated_at, reason) VALUES (?,?,?,?,?,?,?) ON CONFLICT (migration, "
                           "host, phase) DO UPDATE SET state = excluded.state, run_id = "
                           "excluded.run_id, updated_at = excluded.updated_at, reason = "
                           "excluded.reason", upserts)

    def _step_states(self, db: Conn) -> dict[tuple[str, str, str], StepState]:
        wanted: dict[str, dict[str, set[str]]] = {}
        for m in self.moves:
            if isinstance(m, StepMove):
                wanted.setdefault(m.run_id, {}).setdefault(m.host, set()).add(m.step)
        out: dict[tuple[str, str, str], StepState] = {}
        for run_id, by_host in wanted.items():
            for hosts in _chunks(list(by_host)):
                marks = ",".join("?" * len(hosts))
                for host, step, state in db.execute(
                        f"SELECT host, step, state FROM steps WHERE run_id = ? AND host IN "
                        f"({marks})", (run_id, *hosts)).fetchall():
                    if step in by_host[host]:
                        out[(run_id, host, step)] = StepState(state)
        return out

    def _phase_states(self, db: Conn) -> dict[tuple[str, int], tuple[PhaseState, str | None]]:
        wanted: dict[str, set[int]] = {}
        for m in self.moves:
            if isinstance(m, PhaseMove):
                wanted.setdefault(m.host, set()).add(m.phase)
        out: dict[tuple[str, int], tuple[PhaseState, str | None]] = {}
        for hosts in _chunks(list(wanted)):
            marks = ",".join("?" * len(hosts))
            for host, phase, state, reason in db.execute(
                    f"SELECT host, phase, state, reason FROM phase_states WHERE migration = ? "
                    f"AND host IN ({marks})", (self.journal.migration, *hosts)).fetchall():
                if phase in wanted[host]:
                    out[(host, phase)] = (PhaseState(state), reason)
        return out


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]
