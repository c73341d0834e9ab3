"""Runs, phase states and steps: the journal's record of what ran, and where it is now.

Every transition goes through the graph (`core.states.advance`) in the transaction that
journals it; phase states are this migration's (`Journal.migration`) unless another
migration is named."""

from __future__ import annotations

import json
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
        run that made them."""
        out: dict[str, list[str]] = {}
        for host in hosts:
            start = (self.phase_record(host, phase).run_id if phase is not None else None) \
                or run_id
            out.setdefault(self._origin_run(start, host), []).append(host)
        return out

    def _origin_run(self, run_id: str, host: str) -> str:
        seen = {run_id}
        while True:
            rows = self._query("SELECT origin_run FROM run_hosts WHERE run_id = ? AND host = ?",
                               (run_id, host))
            origin = rows[0][0] if rows else None
            if not origin or origin in seen:
                return run_id
            seen.add(origin)
            run_id = origin

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
        return {(h, p): PhaseRecord(h, p, PhaseState(s), r, u, why)
                for h, p, s, r, u, why in rows if wanted is None or h in wanted}

    def every_phase_record(self) -> dict[str, dict[tuple[str, int], PhaseRecord]]:
        """{migration: {(host, phase): record}} for every migration in the journal, in one
        query (`status --all`)."""
        rows = self._query("SELECT migration, host, phase, state, run_id, updated_at, reason "
                           "FROM phase_states ORDER BY migration, host, phase")
        out: dict[str, dict[tuple[str, int], PhaseRecord]] = {}
        for m, h, p, s, r, u, why in rows:
            out.setdefault(m, {})[(h, p)] = PhaseRecord(h, p, PhaseState(s), r, u, why)
        return out

    def move_phase(self, run_id: str, host: str, phase: int, new: PhaseState, kind: str,
                   detail: str | None = None, reason: str | None = None,
                   payload: dict[str, Any] | None = None) -> None:
        """Change a phase's state along a legal edge and journal it in one transaction."""
        def body(db: Conn) -> None:
            row = db.execute("SELECT state, reason FROM phase_states WHERE migration = ? AND "
                             "host = ? AND phase = ?", (self.migration, host, phase)).fetchone()
            old = PhaseState(row[0]) if row else PhaseState.PENDING
            if old is not new:
                advance(PHASE_EDGES, old, new)  # type: ignore[arg-type]
            keep_reason = reason if reason is not None else (
                row[1] if row and new in (PhaseState.ROLLING_BACK, PhaseState.ROLLED_BACK,
                                          PhaseState.ROLLBACK_FAILED) else None)
            at = self._event(db, run_id, host, phase, None, kind, detail, payload)
            db.execute("INSERT INTO phase_states (migration, host, phase, state, run_id, "
                       "updated_at, reason) VALUES (?,?,?,?,?,?,?) ON CONFLICT (migration, host, "
                       "phase) DO UPDATE SET state = excluded.state, run_id = excluded.run_id, "
                       "updated_at = excluded.updated_at, reason = excluded.reason",
                       (self.migration, host, phase, new.value, run_id, at, keep_reason))

        self._write_or_batch(body)

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
        def body(db: Conn) -> None:
            row = db.execute("SELECT state FROM steps WHERE run_id = ? AND host = ? AND step = ?",
                             (run_id, host, step)).fetchone()
            old = StepState(row[0]) if row else StepState.PENDING
            advance(STEP_EDGES, old, new)  # type: ignore[arg-type]
            at = self._event(db, owner or run_id, host, phase, step, kind, detail, payload)
            if row is None:
                db.execute("INSERT INTO steps (run_id, host, phase, step, idx, state, attempts, "
                           "started_at, detail) VALUES (?,?,?,?,?,?,?,?,?)",
                           (run_id, host, phase, step, idx, new.value,
                            1 if new is StepState.RUNNING else 0, at, detail))
            else:
                bump = 1 if new is StepState.RUNNING else 0
                ended = at if new is not StepState.RUNNING else None
                db.execute("UPDATE steps SET state = ?, attempts = attempts + ?, "
                           "ended_at = COALESCE(?, ended_at), detail = COALESCE(?, detail) "
                           "WHERE run_id = ? AND host = ? AND step = ?",
                           (new.value, bump, ended, detail, run_id, host, step))

        self._write_or_batch(body)

    def steps_of(self, run_id: str, host: str) -> list[StepRow]:
        rows = self._query("SELECT step, idx, state FROM steps WHERE run_id = ? AND host = ? "
                           "ORDER BY idx", (run_id, host))
        return [StepRow(s, i, StepState(st)) for s, i, st in rows]

