"""The journal's core: one store, the state.timeout rule, transactions, events.

Every read and write goes through `Availability` (`state.timeout`): transient
failures are retried that long; after that the journal is unavailable, writes raise
`JournalUnavailableError` (exit 3) at once, and `on_unavailable` has been called so
that the engine can cancel the step in flight. The tables' rules live in the modules
that build on this one: `run_rows` (runs, phase states, steps), `lock_rows` (host
locks, reaping, leaders), `metric_rows` (baselines, samples, trigger states);
`journal.Journal` is all of them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.state.base import Availability, Bulk, Conn, HostClaim, Store
from orchestrator.state.records import (
    Event,
    Interrupted,
    utc_stamp,
)

T = TypeVar("T")

class JournalCore:
    """The journal's core, shared by every thread of a process (see `journal.Journal`).

    `Journal(path)` is the embedded SQLite journal (as it always was); pass a `Store`
    for another backend. `timeout` is `state.timeout`; `clock` and `sleep` are
    parameters for the tests of that rule.
    """

    def __init__(self, where: Path | Store, timeout: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 on_unavailable: Callable[[str], None] | None = None,
                 on_interrupted: Callable[[Interrupted], None] | None = None) -> None:
        """`on_unavailable(reason)`: the journal has become unwritable (once).
        `on_interrupted(row)`: a phase a dead run (or a run's end) left in flight was
        journaled `interrupted` (so the app can tell its subscribers; the journal never
        sends anything itself)."""
        if isinstance(where, Path):
            from orchestrator.state.sqlite import SqliteStore

            where = SqliteStore(where)
        self.store: Store = where
        self.path: Path | None = getattr(where, "path", None)
        self.availability = Availability(timeout, where.location, clock, sleep,
                                         on_unavailable)
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
        self._on_interrupted = on_interrupted
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

    def _tell_interrupted(self, rows: list[Interrupted]) -> None:
        """Each phase found in flight and journaled `interrupted`, once committed."""
        if self._on_interrupted is not None:
            for row in rows:
                self._on_interrupted(row)

    # --- the state.timeout rule ------------------------------------------------------------
    @property
    def on_unavailable(self) -> Callable[[str], None] | None:
        """Called once, from whichever thread notices, with a one-line reason, when the
        journal has been unwritable for `timeout` or a run lost its host lock. Keep it
        short and non-blocking: cancel the step in flight (e.g. `CancelToken.cancel`).
        Given at construction only: the app routes it to whichever run is running
        (`core.supervision.Supervisor.journal_lost`)."""
        return self.availability.on_unavailable

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

    def _pending(self) -> list[Callable[[Conn], None]] | None:
        """This thread's batch of bodies not yet written, or None outside a `batch`."""
        pending: list[Callable[[Conn], None]] | None = getattr(self._local, "pending", None)
        return pending

    def _write_or_batch(self, body: Callable[[Conn], None]) -> None:
        pending = self._pending()
        if pending is not None:
            pending.append(body)
        else:
            self._write(body)

    def _write(self, body: Callable[[Conn], T], bulk: Sequence[Bulk] = ()) -> T:
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
            return self.store.write(counted, claims, bulk)

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
        if not every_migration and not run_id and self.migration:
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

