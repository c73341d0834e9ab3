"""The durable record of every run, the same on SQLite and on PostgreSQL.

Every transition is written before the action it announces starts and again when
it ends, so a crash at any moment leaves a journal that says what was in flight.

`Journal` holds every rule once (the transition graph, lock refusals, reaping);
where the rows live is its `Store`: `SqliteStore` (`.migrate/state.db`, the
default: one operator, one machine) or `PgStore` (a team's PostgreSQL database,
`state.url`). See base.py for what a store supplies, schema.py for the tables and
their versions, open.py for choosing a store from the project's settings.

Tables: `runs` (one per `migrate phase`/`rollback`/`resume` invocation, with the
checksums of the definitions it ran) and `run_hosts`, `phase_states` (the current
state of each phase on each host), `steps` (each step execution on each host),
`events` (the append-only timeline that `migrate history` prints), `locks` (which
run holds which host), `leaders` (the active `watch`), `baselines` and `samples`
(metrics, for triggers and reports), `trigger_states`.

Every read and write goes through `Availability` (`state.timeout`): transient
failures are retried that long; after that the journal is unavailable, writes raise
`JournalUnavailableError` (exit 3) at once, and `on_unavailable` has been called so
that the engine can cancel the step in flight.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator._exceptions import LockHeldError
from orchestrator.core.states import PHASE_EDGES, STEP_EDGES, PhaseState, StepState, advance
from orchestrator.state.base import Availability, Conn, HostClaim, Store
from orchestrator.state.proc import ProcessId
from orchestrator.state.records import (
    Event,
    Interrupted,
    LeaderRecord,
    LockHolder,
    PhaseRecord,
    StepRow,
    utc_stamp,
)

__all__ = ["Event", "Interrupted", "Journal", "LeaderRecord", "LockHolder", "PhaseRecord",
           "StepRow", "open_journal", "utc_stamp"]

if TYPE_CHECKING:
    from orchestrator.state.base import LeaderLock

T = TypeVar("T")

#: Phase states in which a run is acting; its death leaves them `interrupted`.
_IN_FLIGHT = (PhaseState.RUNNING, PhaseState.BAKING, PhaseState.ROLLING_BACK)


class Journal:
    """The journal: every rule, over one store, shared by every thread of a process.

    `Journal(path)` is the embedded SQLite journal (as it always was); pass a `Store`
    for another backend. `timeout` is `state.timeout`; `clock` and `sleep` are
    parameters for the tests of that rule.
    """

    def __init__(self, where: Path | Store, timeout: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if isinstance(where, Path):
            from orchestrator.state.sqlite import SqliteStore

            where = SqliteStore(where)
        self.store: Store = where
        self.path: Path | None = getattr(where, "path", None)
        self.availability = Availability(timeout, where.location, clock, sleep)
        opener = getattr(where, "open", None)
        if opener is not None:  # connect and upgrade the schema, within state.timeout
            self.availability.run(opener, where.is_transient, write=False)
        self._claims: dict[str, list[HostClaim]] = {}
        #: the migration (its `name`) whose runs, phases and events this journal object
        #: reads and writes; another migration's are read only when asked by name
        self.migration = ""
        self._events_written = 0
        self._tx_events = 0
        self._local = threading.local()  # this thread's batch of moves (see `batch`)
        #: every phase that `reap` (or a run's end) found in flight and interrupted
        self.interrupted: list[Interrupted] = []
        # Fault-injection seam for the crash tests: SIGKILL this process right after the
        # Nth journal event of this process is committed. Unset in normal use.
        self._kill_at = int(os.environ.get("MIGRATE_FAULT_KILL_AFTER_EVENT", "0") or 0)

    def use_migration(self, name: str) -> None:
        """Read and write as migration `name`. Rows from before the journal held several
        migrations (migration '') are adopted by the first migration that opens it."""
        self.migration = name
        if not name:
            return
        rows = self._query("SELECT 1 FROM runs WHERE migration = '' UNION ALL "
                           "SELECT 1 FROM phase_states WHERE migration = '' LIMIT 1")
        if rows:
            def body(db: Conn) -> None:
                for table in ("runs", "events", "phase_states", "trigger_states", "locks"):
                    db.execute(f"UPDATE {table} SET migration = ? WHERE migration = ''",
                               (name,))
            self._write(body)

    def migrations(self) -> list[str]:
        """Every migration this journal has a record of."""
        rows = self._query("SELECT DISTINCT migration FROM runs UNION "
                           "SELECT DISTINCT migration FROM phase_states")
        return sorted({r[0] for r in rows if r[0]})

    # --- the state.timeout rule ------------------------------------------------------------
    @property
    def on_unavailable(self) -> Callable[[str], None] | None:
        """Called once, from whichever thread notices, with a one-line reason, when the
        journal has been unwritable for `timeout` or a run lost its host lock. Keep it
        short and non-blocking: cancel the step in flight (e.g. `CancelToken.cancel`)."""
        return self.availability.on_unavailable

    @on_unavailable.setter
    def on_unavailable(self, callback: Callable[[str], None] | None) -> None:
        self.availability.on_unavailable = callback

    @property
    def unavailable(self) -> str | None:
        """The reason the journal stopped accepting writes, or None while it works."""
        return self.availability.reason

    @property
    def location(self) -> str:
        return self.store.location

    def close(self) -> None:
        for claims in self._claims.values():
            for claim in claims:
                claim.release()
        self._claims.clear()
        self.store.close()

    # --- transactions ----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        """A raw write transaction (`?` placeholders), without retries: for tests and tools."""
        with self.store.transaction() as db:
            yield db
        self._after_commit()

    def _after_commit(self) -> None:
        if self._kill_at and self._events_written >= self._kill_at:
            import signal

            os.kill(os.getpid(), signal.SIGKILL)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Moves made by this thread inside the block are written in one transaction when
        it ends (before the caller acts on them): a step starting on 200 hosts is one
        commit, not 200. Other threads (the monitor) keep writing on their own."""
        if getattr(self._local, "pending", None) is not None:
            yield  # already batching: the outer block writes
            return
        self._local.pending = []
        try:
            yield
        except BaseException:
            self._local.pending = None
            raise
        bodies, self._local.pending = self._local.pending, None
        if bodies:
            def all_of(db: Conn) -> None:
                for body in bodies:
                    body(db)
            self._write(all_of)

    def _write_or_batch(self, body: Callable[[Conn], None]) -> None:
        pending = getattr(self._local, "pending", None)
        if pending is not None:
            pending.append(body)
        else:
            self._write(body)

    def _write(self, body: Callable[[Conn], T]) -> T:
        """Run `body` in one write transaction, under the state.timeout rule.

        Each attempt first checks that this process's runs still hold their host locks
        (on PostgreSQL, that their sessions still hold the advisory locks, in the same
        round trip as BEGIN), so that nothing is journaled, and then done, by a run that
        lost its hosts.
        """
        def counted(db: Conn) -> tuple[T, int]:
            self._tx_events = 0
            result = body(db)
            return result, self._tx_events

        def attempt() -> tuple[T, int]:
            claims = [c for run_claims in list(self._claims.values()) for c in run_claims]
            return self.store.write(counted, claims)

        result, events = self.availability.run(attempt, self.store.is_transient, write=True)
        self._events_written += events
        self._after_commit()
        return result

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        return self.availability.run(lambda: self.store.read(sql, args),
                                     self.store.is_transient, write=False)

    # --- events ----------------------------------------------------------------------------
    def _event(self, db: Conn, run_id: str | None, host: str | None,
               phase: int | None, step: str | None, kind: str, detail: str | None,
               payload: dict[str, Any] | None = None, migration: str | None = None) -> str:
        at = utc_stamp()
        self._tx_events += 1
        db.execute("INSERT INTO events (at, run_id, host, phase, step, kind, detail, payload, "
                   "migration) VALUES (?,?,?,?,?,?,?,?,?)",
                   (at, run_id, host, phase, step, kind, detail,
                    json.dumps(payload) if payload else None,
                    self.migration if migration is None else migration))
        return at

    def event(self, run_id: str | None, host: str | None, phase: int | None, step: str | None,
              kind: str, detail: str | None = None,
              payload: dict[str, Any] | None = None) -> None:
        self._write(lambda db: self._event(db, run_id, host, phase, step, kind, detail,
                                           payload))

    def events(self, host: str | None = None, run_id: str | None = None,
               every_migration: bool = False) -> list[Event]:
        """The journal's events, oldest first: this migration's (a run id asked for by
        name is shown whichever migration it belongs to), or every migration's."""
        sql = ("SELECT seq, at, run_id, host, phase, step, kind, detail, payload, migration "
               "FROM events WHERE 1=1")
        args: list[Any] = []
        if not every_migration and not run_id:
            sql += " AND migration = ?"
            args.append(self.migration)
        if host:
            # exact membership in the run's hosts (run_hosts): LIKE would treat _ and % in
            # a host name as wildcards, and its case rules differ between the backends
            sql += " AND (host = ? OR host IS NULL AND run_id IN " \
                   "(SELECT run_id FROM run_hosts WHERE host = ?))"
            args += [host, host]
        if run_id:
            sql += " AND run_id = ?"
            args.append(run_id)
        sql += " ORDER BY seq"
        return [Event(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7],
                      json.loads(row[8]) if row[8] else None, row[9] or "")
                for row in self._query(sql, tuple(args))]

    def latest_events(self, kind: str, run_ids: list[str]) -> dict[str, Event]:
        """The latest event of `kind` of each of these runs that has one (one query)."""
        if not run_ids:
            return {}
        marks = ", ".join("?" for _ in run_ids)
        rows = self._query("SELECT seq, at, run_id, host, phase, step, kind, detail, payload, "
                           f"migration FROM events WHERE kind = ? AND run_id IN ({marks}) "
                           "ORDER BY seq", (kind, *run_ids))
        return {row[2]: Event(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7],
                              json.loads(row[8]) if row[8] else None, row[9] or "")
                for row in rows}

    # --- runs ------------------------------------------------------------------------------
    def create_run(self, run_id: str, phase: int | None, hosts: list[str], command: str,
                   kind: str, dry_run: bool, checksums: dict[str, str],
                   origins: dict[str, str] | None = None) -> None:
        """Record a run. `origins` (rollback runs): {host: the run whose steps it undoes}."""
        me = ProcessId.current()
        origins = origins or {}

        def body(db: Conn) -> None:
            db.execute("INSERT INTO runs (id, phase, hosts, command, kind, pid, pid_start, "
                       "machine, started_at, dry_run, checksums, migration) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                       (run_id, phase, json.dumps(hosts), command, kind, me.pid, me.start,
                        me.machine, utc_stamp(), int(dry_run), json.dumps(checksums),
                        self.migration))
            db.executemany("INSERT INTO run_hosts (run_id, host, origin_run) VALUES (?, ?, ?) "
                           "ON CONFLICT (run_id, host) DO NOTHING",
                           [(run_id, h, origins.get(h)) for h in dict.fromkeys(hosts)])

        self._write(body)

    def end_run(self, run_id: str, outcome: str) -> None:
        self._write(lambda db: db.execute("UPDATE runs SET ended_at = ?, outcome = ? "
                                          "WHERE id = ?", (utc_stamp(), outcome, run_id)))

    def reopen_run(self, run_id: str) -> None:
        """A resumed run is in flight again: its end is written when the resume ends."""
        self._write(lambda db: db.execute("UPDATE runs SET ended_at = NULL, outcome = NULL "
                                          "WHERE id = ?", (run_id,)))

    def steps_run(self, run_id: str, host: str) -> str:
        """The run whose step rows `run_id` acts on for `host`: a rollback run undoes the
        steps of the run that made them (followed through rollbacks of rollbacks)."""
        seen = {run_id}
        while True:
            rows = self._query("SELECT origin_run FROM run_hosts WHERE run_id = ? AND host = ?",
                               (run_id, host))
            origin = rows[0][0] if rows else None
            if not origin or origin in seen:
                return run_id
            seen.add(origin)
            run_id = origin

    def finish_run(self, run_id: str, outcome: str, detail: str) -> list[tuple[str, int]]:
        """End a run on any way out, in one transaction: each of its phases still in flight
        (running, baking, rolling_back under this run id) becomes `interrupted`, the run
        records `outcome` (an outcome already written stays), and its host locks go.

        Returns the (host, phase) pairs it interrupted. When the journal is unavailable,
        nothing can be written: the lock rows stay, so that the run reads `interrupted`
        once the database is back, and the store's claims are let go regardless."""
        claims = self._claims.pop(run_id, [])
        try:
            if self.availability.reason is not None:
                return []

            def body(db: Conn) -> list[tuple[str, int]]:
                done = self._interrupt_phases(db, run_id, detail)
                self.interrupted.extend(done)
                db.execute("UPDATE runs SET ended_at = COALESCE(ended_at, ?), "
                           "outcome = COALESCE(outcome, ?) WHERE id = ?",
                           (utc_stamp(), outcome, run_id))
                db.execute("DELETE FROM locks WHERE run_id = ?", (run_id,))
                return [(host, phase) for _, host, phase, _ in done]

            return self._write(body)
        finally:
            for claim in claims:
                claim.release()

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

    # --- locks -----------------------------------------------------------------------------
    def acquire(self, hosts: list[str], run_id: str, command: str) -> None:
        """Take every host or none; a dead holder's lock is taken over (its run is reaped).

        First the store's claim (on PostgreSQL: the hosts' advisory locks on a session
        of this run's own), then the `locks` rows that name the holder, in one
        transaction. A refusal raises LockHeldError naming the holder.
        """
        self.reap()
        me = ProcessId.current()
        claim = self.availability.run(
            lambda: self.store.claim(run_id, list(hosts), self.availability),
            self.store.is_transient, write=True)
        try:
            if claim.busy:
                raise self._held_error(claim.busy[0])

            def body(db: Conn) -> list[Interrupted]:
                interrupted: list[Interrupted] = []
                for host in hosts:
                    row = db.execute("SELECT run_id, pid, pid_start, machine, command, since, "
                                     "migration FROM locks WHERE host = ?", (host,)).fetchone()
                    if row is None:
                        continue
                    if not claim.exclusive:
                        raise LockHeldError(host, row[1], row[3], row[4], row[5], row[6])
                    # we hold the host's advisory lock, so the row is a dead run's
                    interrupted += self._interrupt(db, row[0])
                    db.execute("DELETE FROM locks WHERE host = ?", (host,))
                now = utc_stamp()
                for host in dict.fromkeys(hosts):
                    db.execute("INSERT INTO locks (host, run_id, pid, pid_start, machine, "
                               "command, since, migration) VALUES (?,?,?,?,?,?,?,?)",
                               (host, run_id, me.pid, me.start, me.machine, command, now,
                                self.migration))
                return interrupted

            self.interrupted.extend(self._write(body))
        except BaseException:
            claim.release()
            raise
        self._claims.setdefault(run_id, []).append(claim)

    def _held_error(self, host: str, wait: float = 2.0) -> LockHeldError:
        """The refusal, naming the holder (whose row may lag its lock by a moment)."""
        deadline = time.monotonic() + wait
        while True:
            rows = self._query("SELECT pid, machine, command, since, migration FROM locks "
                               "WHERE host = ?", (host,))
            if rows:
                pid, machine, command, since, migration = rows[0]
                return LockHeldError(host, pid, machine, command, since, migration)
            if time.monotonic() > deadline:
                return LockHeldError(host, 0, "another machine", "a run that is starting",
                                     utc_stamp())
            time.sleep(0.05)

    def release(self, run_id: str) -> None:
        """Free the run's hosts. When the journal is unavailable the rows stay, so that the
        run reads `interrupted` once it is back; the store's locks are let go regardless."""
        claims = self._claims.pop(run_id, [])
        try:
            if self.availability.reason is None:
                self._write(lambda db: db.execute("DELETE FROM locks WHERE run_id = ?",
                                                  (run_id,)))
        finally:
            for claim in claims:
                claim.release()

    def holders(self) -> list[LockHolder]:
        rows = self._query("SELECT host, run_id, pid, pid_start, machine, command, since, "
                           "migration FROM locks ORDER BY host")
        return [LockHolder(h, r, ProcessId(p, s or 0, m), c, since, mig)
                for h, r, p, s, m, c, since, mig in rows]

    def reap(self) -> list[str]:
        """Mark runs whose holder died as interrupted and free their hosts.

        Called by every command before it looks at state, so a run killed with -9 is
        `interrupted` the next time anyone looks. "Died" is the store's call: a process
        gone from this machine (SQLite), or a host whose advisory lock nobody holds
        (PostgreSQL: the holder's process, machine or connection is gone). It is asked
        again inside the write transaction, so a run resumed meanwhile under the same
        run id is not reaped. The move to `interrupted` goes through the transition
        graph like every other; what was interrupted is kept in `self.interrupted` so
        that the caller can notify about it (the journal never sends anything itself).
        """
        holders = self.holders()
        dead = self.availability.run(lambda: self.store.dead_runs(None, holders),
                                     self.store.is_transient, write=False)
        reaped = []
        for run_id in sorted(dead):
            def body(db: Conn, run_id: str = run_id) -> list[Interrupted] | None:
                rows = db.execute("SELECT host, run_id, pid, pid_start, machine, command, since "
                                  "FROM locks WHERE run_id = ?", (run_id,)).fetchall()
                current = [LockHolder(h, r, ProcessId(p, s or 0, m), c, since)
                           for h, r, p, s, m, c, since in rows]
                if not current or run_id not in self.store.dead_runs(db, current):
                    return None
                return self._interrupt(db, run_id)

            found = self._write(body)
            if found is not None:
                reaped.append(run_id)
                self.interrupted.extend(found)
        return reaped

    def _interrupt(self, db: Conn, run_id: str) -> list[Interrupted]:
        """Inside a transaction: the dead run's phases in flight become `interrupted`, its
        run (and every other run of the same dead process that never ended) ends
        `interrupted`, its lock rows go."""
        out = self._interrupt_phases(db, run_id, "the process of run {run} died while the "
                                                 "phase was {state}", "process died while {state}")
        holder = db.execute("SELECT pid, pid_start, machine FROM locks WHERE run_id = ?",
                            (run_id,)).fetchone()
        now = utc_stamp()
        db.execute("UPDATE runs SET outcome = COALESCE(outcome, 'interrupted'), "
                   "ended_at = COALESCE(ended_at, ?) WHERE id = ?", (now, run_id))
        if holder is not None:  # a watch or rollback run of the same process, say
            db.execute("UPDATE runs SET outcome = 'interrupted', ended_at = ? WHERE "
                       "ended_at IS NULL AND pid = ? AND pid_start = ? AND machine = ?",
                       (now, holder[0], holder[1], holder[2]))
        db.execute("DELETE FROM locks WHERE run_id = ?", (run_id,))
        return out

    def _interrupt_phases(self, db: Conn, run_id: str, detail: str,
                          reason: str = "interrupted while {state}"
                          ) -> list[Interrupted]:
        """Inside a transaction: every phase that `run_id` owns (its lock and its phase
        state carry the same run id) and that is still in flight becomes `interrupted`."""
        out = []
        for migration, host, phase, state in db.execute(
                "SELECT migration, host, phase, state FROM phase_states WHERE run_id = ? "
                "ORDER BY host, phase", (run_id,)).fetchall():
            if PhaseState(state) not in _IN_FLIGHT:
                continue
            new = advance(PHASE_EDGES, PhaseState(state),  # type: ignore[arg-type]
                          PhaseState.INTERRUPTED)
            text = detail.format(run=run_id, state=state)
            at = self._event(db, run_id, host, phase, None, "run_interrupted", text,
                             {"was": state}, migration=migration)
            db.execute("UPDATE phase_states SET state = ?, updated_at = ?, "
                       "reason = COALESCE(reason, ?) WHERE migration = ? AND host = ? "
                       "AND phase = ?",
                       (new.value, at, reason.format(state=state), migration, host, phase))
            out.append(Interrupted(run_id, host, phase, text))
        return out

    # --- leadership (HA watch; see leader.py) ----------------------------------------------
    def leader_lock(self, name: str, on_lost: Callable[[str], None]) -> LeaderLock:
        return self.store.leader_lock(name, self.availability, on_lost)

    def set_leader(self, name: str, command: str) -> None:
        """Write down who leads `name`: one attempt, no retries, never declares the journal
        unavailable (the lock is the truth; this row is for people)."""
        me = ProcessId.current()
        self.store.write(lambda db: db.execute(
            "INSERT INTO leaders (name, machine, pid, pid_start, command, since) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET machine = excluded.machine, "
            "pid = excluded.pid, pid_start = excluded.pid_start, command = excluded.command, "
            "since = excluded.since", (name, me.machine, me.pid, me.start, command, utc_stamp())))

    def clear_leader(self, name: str) -> None:
        me = ProcessId.current()
        self.store.write(lambda db: db.execute(
            "DELETE FROM leaders WHERE name = ? AND machine = ? AND pid = ?",
            (name, me.machine, me.pid)))

    def leader(self, name: str) -> LeaderRecord | None:
        """The active watcher for `name`, if one is alive (a dead one's row is ignored)."""
        rows = self._query("SELECT machine, pid, pid_start, command, since FROM leaders "
                           "WHERE name = ?", (name,))
        if not rows:
            return None
        machine, pid, start, command, since = rows[0]
        process = ProcessId(pid, start or 0, machine)
        if not self.availability.run(lambda: self.store.leader_alive(name, process),
                                     self.store.is_transient, write=False):
            return None
        return LeaderRecord(name, process, command, since)

    # --- baselines and samples (metrics) ---------------------------------------------------
    def save_baseline(self, host: str, name: str, values: dict[str, float],
                      run_id: str | None) -> None:
        at = utc_stamp()
        self._write_or_batch(lambda db: db.executemany(
            "INSERT INTO baselines (host, name, metric, value, captured_at, run_id) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT (host, name, metric) DO UPDATE SET "
            "value = excluded.value, captured_at = excluded.captured_at, "
            "run_id = excluded.run_id",
            [(host, name, metric, value, at, run_id) for metric, value in values.items()]))

    def baseline(self, host: str, name: str) -> dict[str, float]:
        rows = self._query("SELECT metric, value FROM baselines WHERE host = ? AND name = ?",
                           (host, name))
        return {m: v for m, v in rows}

    def add_sample(self, run_id: str, host: str, phase: int, trigger: str, metric: str,
                   t: float, value: float | None, breaching: bool, state: str,
                   threshold: float | None = None, baseline: float | None = None) -> None:
        self._write(lambda db: db.execute(
            "INSERT INTO samples (run_id, host, phase, trigger, metric, at, t, value, breaching, "
            "state, threshold, baseline) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, host, phase, trigger, metric, utc_stamp(), t, value, int(breaching), state,
             threshold, baseline)))

    def set_trigger_state(self, host: str, phase: int, trigger: str, run_id: str, status: str,
                          value: float | None, threshold: float | None, baseline: float | None,
                          breaching_since: str | None, text: str) -> None:
        self._write(lambda db: db.execute(
            "INSERT INTO trigger_states (migration, host, phase, trigger, run_id, status, value, "
            "threshold, baseline, breaching_since, updated_at, text) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (migration, host, phase, trigger) DO UPDATE SET run_id = excluded.run_id, "
            "status = excluded.status, value = excluded.value, threshold = excluded.threshold, "
            "baseline = excluded.baseline, breaching_since = excluded.breaching_since, "
            "updated_at = excluded.updated_at, text = excluded.text",
            (self.migration, host, phase, trigger, run_id, status, value, threshold, baseline,
             breaching_since, utc_stamp(), text)))

    def record_cycle(self, samples: Sequence[tuple[str, str, int, str, str, float, float | None,
                                                   bool, str, float | None, float | None]],
                     states: Sequence[tuple[str, int, str, str, str, float | None, float | None,
                                            float | None, str | None, str]]) -> None:
        """One poll cycle's samples and trigger states, in one transaction.

        A cycle of 200 hosts x 3 triggers is 1,200 rows; written one transaction each
        (`add_sample`, `set_trigger_state`) that is 1,200 commits (fsyncs on SQLite,
        round trips on PostgreSQL) per poll interval. Rows are in the order of those
        two methods' parameters: samples `(run_id, host, phase, trigger, metric, t,
        value, breaching, state, threshold, baseline)`, states `(host, phase, trigger,
        run_id, status, value, threshold, baseline, breaching_since, text)`.
        """
        if not samples and not states:
            return
        at = utc_stamp()

        def body(db: Conn) -> None:
            if samples:
                db.executemany(
                    "INSERT INTO samples (run_id, host, phase, trigger, metric, at, t, value, "
                    "breaching, state, threshold, baseline) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(r, h, p, tr, m, at, t, v, int(b), st, th, bl)
                     for r, h, p, tr, m, t, v, b, st, th, bl in samples])
            if states:
                db.executemany(
                    "INSERT INTO trigger_states (migration, host, phase, trigger, run_id, status, "
                    "value, threshold, baseline, breaching_since, updated_at, text) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (migration, host, phase, trigger) DO UPDATE SET "
                    "run_id = excluded.run_id, "
                    "status = excluded.status, value = excluded.value, "
                    "threshold = excluded.threshold, baseline = excluded.baseline, "
                    "breaching_since = excluded.breaching_since, "
                    "updated_at = excluded.updated_at, text = excluded.text",
                    [(self.migration, h, p, tr, r, st, v, th, bl, since, at, text)
                     for h, p, tr, r, st, v, th, bl, since, text in states])

        self._write(body)

    def trigger_states(self, host: str, phase: int) -> list[dict[str, Any]]:
        rows = self._query("SELECT trigger, run_id, status, value, threshold, baseline, "
                           "breaching_since, updated_at, text FROM trigger_states "
                           "WHERE migration = ? AND host = ? AND phase = ? ORDER BY trigger",
                           (self.migration, host, phase))
        keys = ("trigger", "run_id", "status", "value", "threshold", "baseline",
                "breaching_since", "updated_at", "text")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def all_trigger_states(self, hosts: list[str] | None = None
                           ) -> dict[tuple[str, int], list[dict[str, Any]]]:
        """`trigger_states` of every (host, phase), in one query: for `status` on many hosts
        (one query per phase costs a round trip each on a team database)."""
        rows = self._query("SELECT host, phase, trigger, run_id, status, value, threshold, "
                           "baseline, breaching_since, updated_at, text FROM trigger_states "
                           "WHERE migration = ? ORDER BY host, phase, trigger",
                           (self.migration,))
        keys = ("trigger", "run_id", "status", "value", "threshold", "baseline",
                "breaching_since", "updated_at", "text")
        wanted = set(hosts) if hosts is not None else None
        out: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for host, phase, *rest in rows:
            if wanted is None or host in wanted:
                out.setdefault((host, phase), []).append(dict(zip(keys, rest, strict=True)))
        return out

    def samples(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT host, phase, trigger, metric, at, t, value, breaching, state, "
                           "threshold, baseline FROM samples WHERE run_id = ? ORDER BY "
                           f"{self.store.dialect.samples_order}", (run_id,))
        keys = ("host", "phase", "trigger", "metric", "at", "t", "value", "breaching", "state",
                "threshold", "baseline")
        return [dict(zip(keys, r, strict=True)) for r in rows]


def open_journal(state_dir: Path) -> Journal:
    """The embedded journal of a project (see open.open_state for `state.url`)."""
    journal = Journal(state_dir / "state.db")
    journal.reap()
    return journal
