"""The durable record of every run: SQLite in WAL mode with synchronous writes.

Every transition is written before the action it announces starts and again when
it ends, so a crash at any moment leaves a journal that says what was in flight.
The file and its directory are created readable by their owner only.

Tables: `runs` (one per `migrate phase`/`rollback`/`resume` invocation, with the
checksums of the definitions it ran), `phase_states` (the current state of each
phase on each host), `steps` (each step execution on each host), `events` (the
append-only timeline that `migrate history` prints), `locks` (which run holds
which host), `baselines` and `samples` (metrics, for triggers and reports).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator._exceptions import LockHeldError
from orchestrator.core.states import PHASE_EDGES, STEP_EDGES, PhaseState, StepState, advance
from orchestrator.state.proc import ProcessId

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, phase INTEGER, hosts TEXT, command TEXT, kind TEXT,
    pid INTEGER, pid_start INTEGER, machine TEXT, started_at TEXT, ended_at TEXT,
    dry_run INTEGER, outcome TEXT, checksums TEXT
);
CREATE TABLE IF NOT EXISTS phase_states (
    host TEXT, phase INTEGER, state TEXT, run_id TEXT, updated_at TEXT, reason TEXT,
    PRIMARY KEY (host, phase)
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT, host TEXT, phase INTEGER, step TEXT, idx INTEGER, state TEXT,
    attempts INTEGER DEFAULT 0, started_at TEXT, ended_at TEXT, detail TEXT,
    PRIMARY KEY (run_id, host, step)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT, run_id TEXT, host TEXT, phase INTEGER,
    step TEXT, kind TEXT, detail TEXT
);
CREATE TABLE IF NOT EXISTS locks (
    host TEXT PRIMARY KEY, run_id TEXT, pid INTEGER, pid_start INTEGER, machine TEXT,
    command TEXT, since TEXT
);
CREATE TABLE IF NOT EXISTS baselines (
    host TEXT, name TEXT, metric TEXT, value REAL, captured_at TEXT, run_id TEXT,
    PRIMARY KEY (host, name, metric)
);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT, host TEXT, phase INTEGER, trigger TEXT, metric TEXT, at TEXT, t REAL,
    value REAL, breaching INTEGER, state TEXT, threshold REAL, baseline REAL
);
CREATE TABLE IF NOT EXISTS trigger_states (
    host TEXT, phase INTEGER, trigger TEXT, run_id TEXT, status TEXT, value REAL,
    threshold REAL, baseline REAL, breaching_since TEXT, updated_at TEXT, text TEXT,
    PRIMARY KEY (host, phase, trigger)
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id);
CREATE INDEX IF NOT EXISTS samples_run ON samples (run_id, trigger);
"""


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

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at, "run_id": self.run_id, "host": self.host, "phase": self.phase,
                "step": self.step, "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class LockHolder:
    host: str
    run_id: str
    process: ProcessId
    command: str
    since: str


class Journal:
    """One SQLite database, shared by every thread of a run through one serialized connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        os.chmod(path, 0o600)
        old_umask = os.umask(0o077)  # the -wal and -shm files, too
        try:
            self._db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        finally:
            os.umask(old_umask)
        self._mutex = threading.RLock()
        self._events_written = 0
        # Fault-injection seam for the crash tests: SIGKILL this process right after the
        # Nth journal event of this process is committed. Unset in normal use.
        self._kill_at = int(os.environ.get("MIGRATE_FAULT_KILL_AFTER_EVENT", "0") or 0)

    def close(self) -> None:
        with self._mutex:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: other processes wait rather than interleave half a change."""
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            if self._kill_at and self._events_written >= self._kill_at:
                import signal

                os.kill(os.getpid(), signal.SIGKILL)

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._mutex:
            cur = self._db.execute(sql, args)
            return cur.fetchall()

    # --- events ----------------------------------------------------------------------------
    def _event(self, db: sqlite3.Connection, run_id: str | None, host: str | None,
               phase: int | None, step: str | None, kind: str, detail: str | None) -> str:
        at = utc_stamp()
        self._events_written += 1
        db.execute("INSERT INTO events (at, run_id, host, phase, step, kind, detail) "
                   "VALUES (?,?,?,?,?,?,?)", (at, run_id, host, phase, step, kind, detail))
        return at

    def event(self, run_id: str | None, host: str | None, phase: int | None, step: str | None,
              kind: str, detail: str | None = None) -> None:
        with self.transaction() as db:
            self._event(db, run_id, host, phase, step, kind, detail)

    def events(self, host: str | None = None, run_id: str | None = None) -> list[Event]:
        sql = "SELECT seq, at, run_id, host, phase, step, kind, detail FROM events WHERE 1=1"
        args: list[Any] = []
        if host:
            sql += " AND (host = ? OR host IS NULL AND run_id IN " \
                   "(SELECT id FROM runs WHERE hosts LIKE ?))"
            args += [host, f'%"{host}"%']
        if run_id:
            sql += " AND run_id = ?"
            args.append(run_id)
        sql += " ORDER BY seq"
        return [Event(*row) for row in self._query(sql, tuple(args))]

    # --- runs ------------------------------------------------------------------------------
    def create_run(self, run_id: str, phase: int | None, hosts: list[str], command: str,
                   kind: str, dry_run: bool, checksums: dict[str, str]) -> None:
        me = ProcessId.current()
        with self.transaction() as db:
            db.execute("INSERT INTO runs (id, phase, hosts, command, kind, pid, pid_start, "
                       "machine, started_at, dry_run, checksums) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (run_id, phase, json.dumps(hosts), command, kind, me.pid, me.start,
                        me.machine, utc_stamp(), int(dry_run), json.dumps(checksums)))

    def end_run(self, run_id: str, outcome: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET ended_at = ?, outcome = ? WHERE id = ?",
                       (utc_stamp(), outcome, run_id))

    def run_info(self, run_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT id, phase, hosts, command, kind, started_at, ended_at, "
                           "dry_run, outcome, checksums FROM runs WHERE id = ?", (run_id,))
        if not rows:
            return None
        r = rows[0]
        return {"id": r[0], "phase": r[1], "hosts": json.loads(r[2]), "command": r[3],
                "kind": r[4], "started_at": r[5], "ended_at": r[6], "dry_run": bool(r[7]),
                "outcome": r[8], "checksums": json.loads(r[9] or "{}")}

    # --- phase states ----------------------------------------------------------------------
    def phase_record(self, host: str, phase: int) -> PhaseRecord:
        rows = self._query("SELECT state, run_id, updated_at, reason FROM phase_states "
                           "WHERE host = ? AND phase = ?", (host, phase))
        if not rows:
            return PhaseRecord(host, phase, PhaseState.PENDING, None, None, None)
        state, run_id, updated_at, reason = rows[0]
        return PhaseRecord(host, phase, PhaseState(state), run_id, updated_at, reason)

    def phase_records(self) -> list[PhaseRecord]:
        rows = self._query("SELECT host, phase, state, run_id, updated_at, reason "
                           "FROM phase_states ORDER BY host, phase")
        return [PhaseRecord(h, p, PhaseState(s), r, u, why) for h, p, s, r, u, why in rows]

    def move_phase(self, run_id: str, host: str, phase: int, new: PhaseState, kind: str,
                   detail: str | None = None, reason: str | None = None) -> None:
        """Change a phase's state along a legal edge and journal it in one transaction."""
        with self.transaction() as db:
            row = db.execute("SELECT state, reason FROM phase_states WHERE host = ? AND phase = ?",
                             (host, phase)).fetchone()
            old = PhaseState(row[0]) if row else PhaseState.PENDING
            if old is not new:
                advance(PHASE_EDGES, old, new)  # type: ignore[arg-type]
            keep_reason = reason if reason is not None else (
                row[1] if row and new in (PhaseState.ROLLING_BACK, PhaseState.ROLLED_BACK,
                                          PhaseState.ROLLBACK_FAILED) else None)
            at = self._event(db, run_id, host, phase, None, kind, detail)
            db.execute("INSERT INTO phase_states (host, phase, state, run_id, updated_at, reason)"
                       " VALUES (?,?,?,?,?,?) ON CONFLICT (host, phase) DO UPDATE SET "
                       "state = excluded.state, run_id = excluded.run_id, "
                       "updated_at = excluded.updated_at, reason = excluded.reason",
                       (host, phase, new.value, run_id, at, keep_reason))

    # --- steps -----------------------------------------------------------------------------
    def step_state(self, run_id: str, host: str, step: str) -> StepState:
        rows = self._query("SELECT state FROM steps WHERE run_id = ? AND host = ? AND step = ?",
                           (run_id, host, step))
        return StepState(rows[0][0]) if rows else StepState.PENDING

    def move_step(self, run_id: str, host: str, phase: int, step: str, idx: int,
                  new: StepState, kind: str, detail: str | None = None) -> None:
        with self.transaction() as db:
            row = db.execute("SELECT state FROM steps WHERE run_id = ? AND host = ? AND step = ?",
                             (run_id, host, step)).fetchone()
            old = StepState(row[0]) if row else StepState.PENDING
            advance(STEP_EDGES, old, new)  # type: ignore[arg-type]
            at = self._event(db, run_id, host, phase, step, kind, detail)
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

    def steps_of(self, run_id: str, host: str) -> list[tuple[str, int, StepState]]:
        rows = self._query("SELECT step, idx, state FROM steps WHERE run_id = ? AND host = ? "
                           "ORDER BY idx", (run_id, host))
        return [(s, i, StepState(st)) for s, i, st in rows]

    # --- locks -----------------------------------------------------------------------------
    def acquire(self, hosts: list[str], run_id: str, command: str) -> None:
        """Take every host or none; a dead holder's lock is taken over (its run is reaped)."""
        self.reap()
        me = ProcessId.current()
        with self.transaction() as db:
            for host in hosts:
                row = db.execute("SELECT run_id, pid, pid_start, machine, command, since "
                                 "FROM locks WHERE host = ?", (host,)).fetchone()
                if row is not None:
                    raise LockHeldError(host, row[1], row[3], row[4], row[5])
            now = utc_stamp()
            for host in hosts:
                db.execute("INSERT INTO locks VALUES (?,?,?,?,?,?,?)",
                           (host, run_id, me.pid, me.start, me.machine, command, now))

    def release(self, run_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM locks WHERE run_id = ?", (run_id,))

    def holders(self) -> list[LockHolder]:
        rows = self._query("SELECT host, run_id, pid, pid_start, machine, command, since "
                           "FROM locks")
        return [LockHolder(h, r, ProcessId(p, s or 0, m), c, since)
                for h, r, p, s, m, c, since in rows]

    def reap(self) -> list[str]:
        """Mark runs whose process died as interrupted and free their hosts.

        Called by every command before it looks at state, so a run killed with -9 is
        `interrupted` the next time anyone looks.
        """
        dead_runs: set[str] = set()
        for holder in self.holders():
            if not holder.process.is_alive():
                dead_runs.add(holder.run_id)
        for run_id in sorted(dead_runs):
            with self.transaction() as db:
                hosts = [r[0] for r in db.execute("SELECT host FROM locks WHERE run_id = ?",
                                                  (run_id,))]
                for host in hosts:
                    for phase, state in db.execute(
                            "SELECT phase, state FROM phase_states WHERE host = ? AND run_id = ?",
                            (host, run_id)).fetchall():
                        if PhaseState(state) in (PhaseState.RUNNING, PhaseState.BAKING,
                                                 PhaseState.ROLLING_BACK):
                            at = self._event(db, run_id, host, phase, None, "run_interrupted",
                                             f"the process of run {run_id} died while the phase "
                                             f"was {state}")
                            db.execute("UPDATE phase_states SET state = ?, updated_at = ?, "
                                       "reason = COALESCE(reason, ?) WHERE host = ? AND phase = ?",
                                       (PhaseState.INTERRUPTED.value, at,
                                        f"process died while {state}", host, phase))
                db.execute("UPDATE runs SET outcome = COALESCE(outcome, 'interrupted'), "
                           "ended_at = COALESCE(ended_at, ?) WHERE id = ?", (utc_stamp(), run_id))
                db.execute("DELETE FROM locks WHERE run_id = ?", (run_id,))
        return sorted(dead_runs)

    # --- baselines and samples (metrics) ---------------------------------------------------
    def save_baseline(self, host: str, name: str, values: dict[str, float],
                      run_id: str | None) -> None:
        with self.transaction() as db:
            at = utc_stamp()
            for metric, value in values.items():
                db.execute("INSERT OR REPLACE INTO baselines VALUES (?,?,?,?,?,?)",
                           (host, name, metric, value, at, run_id))

    def baseline(self, host: str, name: str) -> dict[str, float]:
        rows = self._query("SELECT metric, value FROM baselines WHERE host = ? AND name = ?",
                           (host, name))
        return {m: v for m, v in rows}

    def baseline_names(self, host: str) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT name FROM baselines WHERE host = ?",
                                          (host,))]

    def add_sample(self, run_id: str, host: str, phase: int, trigger: str, metric: str,
                   t: float, value: float | None, breaching: bool, state: str,
                   threshold: float | None = None, baseline: float | None = None) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO samples VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                       (run_id, host, phase, trigger, metric, utc_stamp(), t, value,
                        int(breaching), state, threshold, baseline))

    def set_trigger_state(self, host: str, phase: int, trigger: str, run_id: str, status: str,
                          value: float | None, threshold: float | None, baseline: float | None,
                          breaching_since: str | None, text: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO trigger_states VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (host, phase, trigger, run_id, status, value, threshold, baseline,
                        breaching_since, utc_stamp(), text))

    def trigger_states(self, host: str, phase: int) -> list[dict[str, Any]]:
        rows = self._query("SELECT trigger, run_id, status, value, threshold, baseline, "
                           "breaching_since, updated_at, text FROM trigger_states "
                           "WHERE host = ? AND phase = ? ORDER BY trigger", (host, phase))
        keys = ("trigger", "run_id", "status", "value", "threshold", "baseline",
                "breaching_since", "updated_at", "text")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def samples(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT host, phase, trigger, metric, at, t, value, breaching, state, "
                           "threshold, baseline FROM samples WHERE run_id = ? ORDER BY rowid",
                           (run_id,))
        keys = ("host", "phase", "trigger", "metric", "at", "t", "value", "breaching", "state",
                "threshold", "baseline")
        return [dict(zip(keys, r, strict=True)) for r in rows]


def open_journal(state_dir: Path) -> Journal:
    journal = Journal(state_dir / "state.db")
    journal.reap()
    return journal
