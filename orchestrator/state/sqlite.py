"""The embedded journal: one SQLite file in WAL mode with synchronous writes.

This is the default and stays what it was on disk (`.migrate/state.db`, the same
tables; the schema version lives in `PRAGMA user_version`, and versions after 1 only
add). The file and its directory are created readable by their owner only. Writers
are serialized with BEGIN IMMEDIATE, so other processes wait rather than interleave
half a change. A host lock is a `locks` row whose holder process is checked for
liveness (pid and start time), which is proof only on this machine: that is why a
team on several machines uses the PostgreSQL store instead.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator.state import schema
from orchestrator.state.locks import FlockLeader, NoClaim

if TYPE_CHECKING:
    from orchestrator.state.base import Availability, Bulk, Conn, HostClaim
    from orchestrator.state.proc import ProcessId
    from orchestrator.state.records import LockHolder

T = TypeVar("T")

_TRANSIENT = ("locked", "busy", "disk i/o error", "disk is full", "unable to open database")


class SqliteStore:
    dialect = schema.SQLITE

    def __init__(self, path: Path, busy_timeout: float = 5.0) -> None:
        self.path = path
        self.location = str(path)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        os.chmod(path, 0o600)
        old_umask = os.umask(0o077)  # the -wal and -shm files, too
        try:
            self._db = sqlite3.connect(str(path), timeout=busy_timeout, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
        finally:
            os.umask(old_umask)
        self._mutex = threading.RLock()
        self.version = self._upgrade()

    def _upgrade(self) -> int:
        """Bring the file to the latest schema in place (a no-op read when it is current)."""
        found = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        schema.check_version(found, self.location)
        if found < schema.LATEST:
            old_umask = os.umask(0o077)
            try:
                with self.transaction() as db:
                    found = int(db.execute("PRAGMA user_version").fetchone()[0])
                    schema.check_version(found, self.location)
                    if found < schema.LATEST:
                        schema.apply(db, self.dialect, found)
                        db.execute(f"PRAGMA user_version = {schema.LATEST}")
            finally:
                os.umask(old_umask)
        return schema.LATEST

    def close(self) -> None:
        with self._mutex:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def write(self, body: Callable[[Conn], T], claims: Sequence[HostClaim] = (),
              bulk: Sequence[Bulk] = ()) -> T:
        with self.transaction() as db:  # (host locks are rows here: no session to check)
            result = body(db)
            for rows in bulk:
                if rows.rows:
                    db.executemany(rows.insert, rows.rows)
            return result

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._mutex:
            return self._db.execute(sql, args).fetchall()

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and \
            any(word in str(exc).lower() for word in _TRANSIENT)

    # --- locks -------------------------------------------------------------------------------
    def claim(self, run_id: str, hosts: list[str], availability: Availability) -> NoClaim:
        return NoClaim()

    def dead_runs(self, db: Conn | None, holders: list[LockHolder]) -> set[str]:
        return {h.run_id for h in holders if not h.process.is_alive()}

    def leader_lock(self, name: str, availability: Availability,
                    on_lost: Callable[[str], None]) -> FlockLeader:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        return FlockLeader(self.path.parent / f"leader-{digest}.lock")

    def leader_alive(self, name: str, holder: ProcessId) -> bool:
        return holder.is_alive()

    def after_copy(self, db: Conn) -> None:
        return None  # AUTOINCREMENT follows explicit keys on its own
