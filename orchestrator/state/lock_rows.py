"""Host locks, reaping and leaders: who may act on a host, and what a dead run left.

A lock and the phase state it guards carry the same run id, so the reaper (and a run's
own end, `finish_run`) interrupts exactly the phases that run had in flight."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchestrator._exceptions import LockHeldError
from orchestrator.core.states import ACTIVE, PHASE_EDGES, PhaseState, advance
from orchestrator.state.base import Conn
from orchestrator.state.journal_core import JournalCore
from orchestrator.state.proc import ProcessId
from orchestrator.state.records import (
    Interrupted,
    LeaderRecord,
    LockHolder,
    utc_stamp,
)

if TYPE_CHECKING:
    from orchestrator.state.base import LeaderLock


class LockRows(JournalCore):
    """Host locks, reaping and leaders: who may act on a host, and what a dead run left."""

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
                rows = self._lock_rows(db, list(dict.fromkeys(hosts)))
                gone: set[str] = set()  # dead runs whose every lock row _interrupt removed
                for host in hosts:
                    row = rows.pop(host, None)
                    if row is None or row[0] in gone:
                        continue
                    if not claim.exclusive:
                        raise LockHeldError(host, row[1], row[3], row[4], row[5], row[6])
                    # we hold the host's advisory lock, so the row is a dead run's
                    interrupted += self._interrupt(db, row[0])
                    gone.add(row[0])
                    db.execute("DELETE FROM locks WHERE host = ?", (host,))
                now = utc_stamp()
                db.executemany("INSERT INTO locks (host, run_id, pid, pid_start, machine, "
                               "command, since, migration) VALUES (?,?,?,?,?,?,?,?)",
                               [(host, run_id, me.pid, me.start, me.machine, command, now,
                                 self.migration) for host in dict.fromkeys(hosts)])
                return interrupted

            self._tell_interrupted(self._write(body))
        except BaseException:
            claim.release()
            raise
        self._claims.setdefault(run_id, []).append(claim)

    @staticmethod
    def _lock_rows(db: Conn, hosts: list[str]) -> dict[str, tuple[Any, ...]]:
        """{host: (run_id, pid, pid_start, machine, command, since, migration)} of the
        hosts' lock rows, 500 hosts a query (a run on 10,000 hosts read them one round
        trip each)."""
        out: dict[str, tuple[Any, ...]] = {}
        for start in range(0, len(hosts), 500):
            part = hosts[start:start + 500]
            for host, *row in db.execute(
                    "SELECT host, run_id, pid, pid_start, machine, command, since, migration "
                    f"FROM locks WHERE host IN ({','.join('?' * len(part))})",
                    tuple(part)).fetchall():
                out[host] = tuple(row)
        return out

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

            def body(db: Conn) -> list[Interrupted]:
                done = self._interrupt_phases(db, run_id, detail)
                db.execute("UPDATE runs SET ended_at = COALESCE(ended_at, ?), "
                           "outcome = COALESCE(outcome, ?) WHERE id = ?",
                           (utc_stamp(), outcome, run_id))
                db.execute("DELETE FROM locks WHERE run_id = ?", (run_id,))
                return done

            done = self._write(body)
            self._tell_interrupted(done)
            return [(host, phase) for _, host, phase, _ in done]
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
        graph like every other; what was interrupted is handed to
        `on_interrupted` once committed, so that the app can tell its subscribers.
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
                self._tell_interrupted(found)
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
            if PhaseState(state) not in ACTIVE:  # a dead run's acting states become interrupted
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

