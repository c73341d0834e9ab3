"""Locks that die with their holder: advisory locks on a PostgreSQL session, flock locally.

Why a session lock and not a row with a lease: a session-level advisory lock
(`pg_try_advisory_lock`) belongs to one connection, and PostgreSQL releases it the
moment that connection ends, whether its process exited, was SIGKILLed, or its
machine vanished (the server notices a silent peer through TCP keepalives, which the
lock connection turns on for both ends, so within about 5 s). Nothing has to renew
anything, and nobody has to guess from clocks whether a holder is alive: "the row
says run R holds host H, but nobody holds H's advisory lock" is proof that R died.

Keys: the two-int4 form `(namespace, key)`, which never collides with one-bigint
advisory locks other software may take in the same database. The key is computed
here (4 bytes of sha256 of the name) rather than with the server's `hashtext`, so the
client knows which `pg_locks` row to look for without asking.

`AdvisorySession` is a dedicated connection holding some advisory locks, pinged by a
keeper thread every second so that a run in the middle of a long step (no journal
writes) still notices that it lost its hosts. After a short outage it takes its locks
back, but only if nobody reaped or took the run meanwhile (the `verify` callback);
otherwise, or when the outage outlasts `state.timeout`, it calls `on_lost`.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.core.supervision import spawn
from orchestrator.state.base import JournalUnavailableError

if TYPE_CHECKING:
    from orchestrator.state.base import Availability


def advisory_key(name: str) -> int:
    """A stable signed 32-bit key for a name (same on every machine and server version)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)


def as_oid(key: int) -> int:
    """How `pg_locks` shows a signed int4 key (classid/objid are unsigned oids)."""
    return key & 0xFFFFFFFF


NS_HOST = advisory_key("migrate:host")  # one per host: held by the run that holds the host
NS_LEADER = advisory_key("migrate:leader")  # one per watched host set: the active watcher
NS_WRITE = advisory_key("migrate:write")  # transaction-level: serializes journal writers


@dataclass
class NoClaim:
    """SQLite: the `locks` table, checked under BEGIN IMMEDIATE, is the whole lock."""

    exclusive: bool = False
    busy: list[str] = field(default_factory=list)
    count: int = 0
    backend_pid: int = 0

    def check(self) -> None:
        return None

    def release(self) -> None:
        return None


class FlockLeader:
    """The embedded journal's HA mutex: flock(2) on a file beside state.db.

    The kernel drops it when the holder's process dies, like an advisory lock when a
    session ends; the file is opened close-on-exec so step subprocesses cannot keep it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_lock(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    @property
    def held(self) -> bool:
        return self._fd is not None

    def unlock(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class AdvisorySession:
    """A dedicated PostgreSQL connection holding session-level advisory locks.

    `keys` are (label, namespace, key); `retake` says whether to take the locks back
    after the connection dropped (host locks: yes, if `verify` agrees; leadership: no,
    the standby loop competes for it again like anyone else).
    """

    def __init__(self, connect: Callable[[], Any], keys: list[tuple[str, int, int]],
                 availability: Availability, on_lost: Callable[[str], None],
                 is_transient: Callable[[BaseException], bool],
                 verify: Callable[[Any], str | None] | None = None, retake: bool = True,
                 interval: float = 1.0, what: str = "lock") -> None:
        self._connect = connect
        self.keys = keys
        self.availability = availability
        self.on_lost = on_lost
        self.is_transient = is_transient
        self.verify = verify
        self.retake = retake
        self.interval = interval
        self.what = what
        self.lost: str | None = None
        self._conn: Any = None
        self._down_since: float | None = None
        self._mutex = threading.Lock()
        self._announce_lock = threading.Lock()
        self._announced = False
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    # --- taking and giving back ------------------------------------------------------------
    def _try_all(self, conn: Any) -> list[str]:
        """Try every lock; if one is refused give back those taken and name the first busy
        one. One statement each way: a run on 10,000 hosts took its locks in 10,000 round
        trips, one `pg_try_advisory_lock` at a time."""
        if not self.keys:
            return []
        got = conn.execute(
            "SELECT array_agg(pg_try_advisory_lock(ns, key) ORDER BY i) FROM "
            "unnest(%s::int4[], %s::int4[]) WITH ORDINALITY AS t(ns, key, i)",
            ([ns for _, ns, _ in self.keys], [key for _, _, key in self.keys])).fetchone()[0]
        if all(got):
            return []
        taken = [(ns, key) for (_, ns, key), ok in zip(self.keys, got, strict=True) if ok]
        if taken:
            conn.execute("SELECT count(pg_advisory_unlock(ns, key)) FROM "
                         "unnest(%s::int4[], %s::int4[]) AS t(ns, key)",
                         ([ns for ns, _ in taken], [key for _, key in taken]))
        return [next(label for (label, _, _), ok in zip(self.keys, got, strict=True) if not ok)]

    def take(self) -> list[str]:
        """Connect and take every lock: [] on success, else the labels that are busy."""
        with self._mutex:
            self._conn = self._connect()
            try:
                busy = self._try_all(self._conn)
            except BaseException:
                self._close()  # ending the session gives back whatever it took
                raise
            if busy:
                self._close()
                return busy
        self._keeper = spawn(f"{self.what} heartbeat", self._keep)
        return []

    def release(self) -> None:
        self._stop.set()
        with self._mutex:
            if self._conn is not None and not self._conn.closed:
                try:
                    self._conn.execute("SELECT pg_advisory_unlock_all()")
                except Exception:  # noqa: S110 - closing the session frees them anyway
                    pass
            self._close()
        if self._keeper is not None and self._keeper is not threading.current_thread():
            self._keeper.join(timeout=5)

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: S110 - a broken connection may fail to close
                pass
            self._conn = None

    @property
    def held(self) -> bool:
        return self.lost is None and self._conn is not None and not self._stop.is_set()

    @property
    def backend_pid(self) -> int:
        """The server process of the session (0 while it is being re-established)."""
        conn = self._conn
        return int(conn.info.backend_pid) if conn is not None and not conn.closed else 0

    # --- staying alive ---------------------------------------------------------------------
    def check(self) -> None:
        """Ping the session; after a drop, take the locks back or report them lost.

        Raises JournalUnavailableError when lost, or the transient driver error while
        the outage is shorter than `state.timeout` (the caller's retry loop waits).
        `on_lost` is called once, outside the session's mutex, so that it may do
        anything (even touch the journal) without deadlocking a keeper.
        """
        try:
            self._check()
        finally:
            self._announce()

    def _announce(self) -> None:
        with self._announce_lock:
            if self.lost is None or self._announced:
                return
            self._announced = True
        self.on_lost(self.lost)

    def _check(self) -> None:
        with self._mutex:
            if self.lost is not None:
                raise JournalUnavailableError(self.lost)
            if self._stop.is_set():
                return
            try:
                if self._conn is None or self._conn.closed:
                    raise ConnectionError("the lock connection is closed")
                self._conn.execute("SELECT 1")
                self._down_since = None
                return
            except Exception as exc:
                if not (isinstance(exc, ConnectionError) or self.is_transient(exc)):
                    raise
                self._close()
                if not self.retake:
                    self._lose(f"the {self.what} connection dropped ({_first_line(exc)})")
                    raise JournalUnavailableError(self.lost or "") from exc
                first = exc
            self._recover(first)

    def _recover(self, first: BaseException) -> None:
        clock = self.availability.clock
        if self._down_since is None:
            self._down_since = clock()
        try:
            conn = self._connect()
        except Exception as exc:
            if not self.is_transient(exc):
                raise
            if clock() - self._down_since >= self.availability.timeout:
                self._lose(f"the journal at {self.availability.location} was unreachable for "
                           f"{self.availability.timeout:g}s ({_first_line(exc)}); stopped "
                           "before the next change")
                raise JournalUnavailableError(self.lost or "") from exc
            raise
        self._conn = conn
        busy = self._try_all(conn)
        why = (f"{busy[0]} was taken by another run while the journal was unreachable"
               if busy else (self.verify(conn) if self.verify else None))
        if why is not None:
            self._close()
            self._lose(why)
            raise JournalUnavailableError(self.lost or "") from first
        self._down_since = None

    def _lose(self, reason: str) -> None:
        self.lost = " ".join(reason.split())
        self._stop.set()

    def _keep(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except JournalUnavailableError:
                return
            except Exception:  # noqa: S112 - transient: the next round retries
                continue


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
