"""The seam between the journal's rules and where it keeps them (SQLite or PostgreSQL).

`Journal` (journal.py) holds every rule once: the transition graph, what a lock
refusal says, what reaping a dead run writes. A `Store` supplies only what differs
between backends: a connection and its transactions, the dialect of the DDL, how a
host lock is held (a row checked against process liveness on one machine, or a
PostgreSQL advisory lock held by the run's session across machines), and the local
or distributed mutex behind HA `watch`. Both stores pass one contract suite
(tests/state/test_journal_contract.py), which is what "one set of semantics" means here.

`Availability` is the `state.timeout` rule ("no action without a record"): an
operation that fails for a transient reason (connection lost, server restarting,
database locked) is retried until `timeout`, then the journal is declared
unavailable, `on_unavailable` is called once so the engine can cancel the step in
flight, and every later write raises `JournalUnavailableError` at once, so the run
cannot start another change it could not record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from orchestrator._exceptions import MigrateError

if TYPE_CHECKING:
    from orchestrator.state.proc import ProcessId
    from orchestrator.state.records import LockHolder

T = TypeVar("T")


@dataclass(frozen=True)
class Dialect:
    """What differs between the backends' SQL, and nothing else (state/schema.py writes
    its tables once with these placeholders; each store names its dialect)."""

    name: str
    serial_pk: str  # an auto-assigned, increasing integer key (events.seq)
    real: str
    bigint: str
    samples_seq: str  # a column that orders samples (SQLite has the implicit rowid)
    samples_order: str


class JournalUnavailableError(MigrateError):
    """The journal could not be written for longer than `state.timeout`: stop, exit 3.

    Exit 3 ("a human is needed"): the run stopped at a point only the journal knew
    about; once the database is back the run reads `interrupted`, for `resume` or
    `rollback`.
    """

    exit_code = 3

    def __init__(self, reason: str) -> None:
        self.reason = " ".join(reason.split())  # one line, whatever the driver said
        super().__init__(self.reason)


class Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """The part of a DB-API connection the journal uses, with `?` placeholders."""

    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...


class HostClaim(Protocol):
    """A run's hold on its hosts at the store level, taken before the `locks` rows.

    `exclusive`: holding the claim proves nobody else holds the hosts (PostgreSQL
    advisory locks), so a `locks` row found for them is a dead run's. When False
    (SQLite), the `locks` table itself decides, under the write transaction.
    """

    exclusive: bool
    busy: list[str]  # hosts another live session holds; empty when the claim succeeded

    @property
    def count(self) -> int:
        """Locks held at the store level (0: nothing to check inside a write)."""
        ...

    @property
    def backend_pid(self) -> int:
        """PostgreSQL: the server process of the session holding them."""
        ...

    def check(self) -> None:
        """Still held? Raises JournalUnavailableError if lost, a transient error if unsure."""
        ...

    def release(self) -> None: ...


class LeaderLock(Protocol):
    """A mutex that dies with its holder's process, machine or connection (HA watch)."""

    def try_lock(self) -> bool: ...

    @property
    def held(self) -> bool: ...

    def unlock(self) -> None: ...


@dataclass(frozen=True)
class Bulk:
    """Many rows of one INSERT that nothing in their transaction reads back: a poll
    cycle's 30,000 samples and 30,000 trigger states at 10,000 hosts. PostgreSQL loads
    them by COPY (about half the server time of an INSERT of their JSON; an upsert's
    rows through a staging table), which cannot run inside the pipeline a body's
    statements travel in, so they go after the body, before COMMIT."""

    #: `INSERT INTO t (cols) VALUES (?, ...)`, plain or with `ON CONFLICT ... DO UPDATE
    #: SET col = excluded.col, ...`, as for `executemany` (the last row of a key wins)
    insert: str
    rows: Sequence[Sequence[Any]]


class Store(Protocol):
    dialect: Dialect
    location: str  # where the journal is, fit to print (never a password)

    def transaction(self) -> AbstractContextManager[Conn]:
        """One write transaction, serialized with every other writer of the journal."""
        ...

    def write(self, body: Callable[[Conn], T], claims: Sequence[HostClaim] = (),
              bulk: Sequence[Bulk] = ()) -> T:
        """One attempt at running `body` in a write transaction and committing it, after
        making sure the `claims` are still held. `bulk` rows are inserted after the
        body, in the same transaction, by whatever way the backend loads rows fastest."""
        ...

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]: ...

    def is_transient(self, exc: BaseException) -> bool:
        """True when retrying may succeed (connection lost, locked); False for bugs."""
        ...

    def claim(self, run_id: str, hosts: list[str], availability: Availability) -> HostClaim: ...

    def dead_runs(self, db: Conn | None, holders: list[LockHolder]) -> set[str]:
        """The run ids among `holders` whose holder is provably gone (`db`: inside a
        transaction, else on the store's own connection)."""
        ...

    def leader_lock(self, name: str, availability: Availability,
                    on_lost: Callable[[str], None]) -> LeaderLock: ...

    def leader_alive(self, name: str, holder: ProcessId) -> bool: ...

    def after_copy(self, db: Conn) -> None:
        """Fix-ups after rows were copied in with their keys (identity sequences)."""
        ...

    def close(self) -> None: ...


class Availability:
    """`state.timeout`: retry transient failures that long, then stop for good.

    The clock and sleep are parameters so tests can run a 30 s outage in microseconds.
    `tenacity` is imported only when a first attempt fails, which keeps it (70 ms of
    imports) off `migrate status`'s path.
    """

    def __init__(self, timeout: float, location: str,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 on_unavailable: Callable[[str], None] | None = None) -> None:
        self.timeout = timeout
        self.location = location
        self.clock = clock
        self.sleep = sleep
        self.on_unavailable = on_unavailable
        self.reason: str | None = None
        self._lock = threading.Lock()

    def declare(self, reason: str) -> None:
        """Mark the journal unavailable (first reason wins) and call `on_unavailable` once."""
        with self._lock:
            if self.reason is not None:
                return
            self.reason = " ".join(reason.split())
            callback = self.on_unavailable
        if callback is not None:
            callback(self.reason)

    def run(self, attempt: Callable[[], T], is_transient: Callable[[BaseException], bool],
            write: bool) -> T:
        """Call `attempt` until it succeeds, fails for good, or `timeout` has passed.

        Once unavailable, writes raise at once (nothing may be done that is not
        recorded) and reads get a single attempt.
        """
        if self.reason is not None:
            if write:
                raise JournalUnavailableError(self.reason)
            try:
                return attempt()
            except Exception as exc:
                if is_transient(exc):
                    raise JournalUnavailableError(self.reason) from exc
                raise
        try:
            return attempt()
        except Exception as exc:
            if not is_transient(exc):
                raise
        return self._retry(attempt, is_transient, write)

    def _retry(self, attempt: Callable[[], T], is_transient: Callable[[BaseException], bool],
               write: bool) -> T:
        import tenacity

        deadline = self.clock() + self.timeout
        backoff = tenacity.wait_exponential(multiplier=0.25, max=2.0)

        def wait(state: tenacity.RetryCallState) -> float:
            return max(0.0, min(backoff(state), deadline - self.clock()))

        retrying = tenacity.Retrying(
            sleep=self.sleep, wait=wait, reraise=True,
            stop=lambda state: self.clock() >= deadline,
            retry=tenacity.retry_if_exception(is_transient))
        try:
            return retrying(attempt)
        except Exception as exc:
            if not is_transient(exc):
                raise
            cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if not write:  # a reader (status, history) just fails; nothing was in flight
                raise JournalUnavailableError(
                    f"the journal at {self.location} could not be read for "
                    f"{self.timeout:g}s ({cause})") from exc
            self.declare(f"the journal at {self.location} could not be written for "
                         f"{self.timeout:g}s ({cause}); stopped before the next change")
            assert self.reason is not None
            raise JournalUnavailableError(self.reason) from exc
