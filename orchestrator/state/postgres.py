"""The team journal: the same tables in PostgreSQL, reached through psycopg 3.

Used when `state.url` (or $MIGRATE_STATE_URL) is a postgresql:// URL; the password
comes from libpq's usual places (PGPASSWORD, ~/.pgpass, the URL), and is never
printed. What differs from SQLite, and why:

- Writers are serialized like SQLite's BEGIN IMMEDIATE, by a transaction-level
  advisory lock taken in the same round trip as BEGIN: a move along the transition
  graph reads the old state and writes the new one, and two machines must not both
  read "running". The transactions are a few statements long.
- A host lock is a session-level advisory lock on a connection of its own held by the
  run (`locks.AdvisorySession`), plus the `locks` row that names the holder for the
  refusal message. A row whose advisory lock nobody holds is a dead run's.
- A COMMIT whose answer was lost with the connection is not blindly retried (that
  could journal a transition twice): its transaction id is looked up with
  `pg_xact_status` once the server answers again.
- One connection per journal, shared by the run's threads under a mutex, like the
  SQLite connection: a pool would only add connections that the write lock
  serializes anyway. Host locks and leadership use their own connections, because an
  advisory lock's lifetime is its session's. Do not put a transaction-pooling proxy
  (pgbouncer in transaction mode) in front: session locks need a real session.
"""

from __future__ import annotations

import functools
import json
import operator
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import conninfo

from orchestrator._exceptions import ConfigError
from orchestrator.state import schema
from orchestrator.state.base import JournalUnavailableError
from orchestrator.state.locks import (
    NS_HOST,
    NS_LEADER,
    NS_WRITE,
    AdvisorySession,
    advisory_key,
    as_oid,
)

if TYPE_CHECKING:
    from orchestrator.state.base import Availability, Bulk, Conn, HostClaim
    from orchestrator.state.proc import ProcessId
    from orchestrator.state.records import LockHolder

T = TypeVar("T")

#: libpq keepalives on our side, and the server's own (settable per session), so that a
#: dead peer is noticed in ~5 s in both directions: idle 2 s, then 3 probes 1 s apart;
#: tcp_user_timeout bounds how long sent data may stay unacknowledged.
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1,
             "keepalives_count": 3, "tcp_user_timeout": 5000}
SERVER_KEEPALIVE = ("-c tcp_keepalives_idle=2 -c tcp_keepalives_interval=1 "
                    "-c tcp_keepalives_count=3 -c tcp_user_timeout=5000")
#: The journal connection also bounds lock waits and stray open transactions, so that
#: one frozen writer (a SIGSTOPped process mid-transaction) cannot hold every other
#: machine's writes forever: its session is ended after 10 s and the wait is retried.
#: It plans every statement for its parameters (`plan_cache_mode`): psycopg prepares a
#: statement run five times, and the server then keeps one generic plan, made while
#: the run's tables were nearly empty. For the batched reads of current states (`host
#: IN (500 hosts)`, state/run_rows.py) that plan scans the run's rows comparing each
#: with all 500 hosts: 1.4 s a query once a 10,000-host run has 30,000 step rows, 16 ms
#: planned for its parameters (bench/scale.py (a) spent most of its wall time there).
JOURNAL_OPTIONS = (" -c lock_timeout=5s -c idle_in_transaction_session_timeout=10s"
                   " -c plan_cache_mode=force_custom_plan")

#: Errors that are about the request, not the connection: retrying cannot help.
_PERMANENT_SQLSTATES = {"28P01", "28000", "3D000", "42501"}
_PERMANENT_WORDS = ("password authentication failed", "does not exist", "no pg_hba.conf entry",
                    "permission denied", "invalid connection option", "invalid dsn",
                    "invalid integer value", "invalid sslmode")

_BEGIN = (f"BEGIN; SELECT pg_advisory_xact_lock({NS_WRITE}, 0), "
          "pg_current_xact_id()::text")
_ADVISORY_HELD = ("SELECT classid::bigint, objid::bigint FROM pg_locks WHERE "
                  "locktype = 'advisory' AND objsubid = 2 AND granted AND database = "
                  "(SELECT oid FROM pg_database WHERE datname = current_database())")


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(malformed URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = str(parts.get("host") or "localhost")
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


@functools.lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    """The journal writes `?` placeholders (sqlite3's); psycopg wants `%s`."""
    return sql.replace("?", "%s")


class _PgConn:
    """A psycopg connection seen through the `Conn` protocol (qmark placeholders)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        return self._conn.execute(_pg(sql), tuple(args) if args else None)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> None:
        """Many rows of one INSERT as few multi-row statements (a poll cycle of 10,000
        hosts x 3 triggers is 60,000 rows: psycopg's executemany spends ~0.1 ms of Python
        on each); anything else row by row."""
        todo = [tuple(r) for r in rows]
        plan = _multi_row(sql)
        if plan is None or len(todo) < 2:
            with self._conn.cursor() as cur:
                cur.executemany(_pg(sql), todo)
            return
        head, width, tail, key = plan
        if key:  # ON CONFLICT DO UPDATE may not touch one row twice: the last one wins,
            todo = list({tuple(r[i] for i in key): r for r in todo}.values())  # as in turn
        if len(todo) >= JSON_FROM and self.json_rows(head, tail, todo):
            return
        per = max(1, min(1000, 30000 // width))
        for start in range(0, len(todo), per):
            chunk = todo[start:start + per]
            values = ",".join([f"({','.join(['%s'] * width)})"] * len(chunk))
            self._conn.execute(f"{head} VALUES {values}{tail}",
                               [v for row in chunk for v in row])

    def copy_rows(self, insert: str, rows: Sequence[Sequence[Any]]) -> None:
        """The rows of `insert` (an INSERT `_multi_row` can send), loaded by COPY: into
        the table itself for a plain INSERT; for an upsert, into a staging table of this
        session (emptied at each commit) that one INSERT ... SELECT then upserts from.
        COPY's binary format, each value dumped by psycopg's C code as its column's type
        (from the catalog): 30,000 rows in 0.01-0.02 s of our CPU here, against 0.04-0.06
        s in the text format (and CSV from the csv module, slower still), with the same
        server time, half that of JSON; the upsert of a cycle's states through staging,
        ~0.08 s less than JSON."""
        plan = _multi_row(insert)
        assert plan is not None, insert
        head, _, tail, key = plan
        table, cols = _table_columns(head)
        target = table
        if tail:
            if key:  # ON CONFLICT DO UPDATE may not touch one row twice: the last one wins
                keys = map(operator.itemgetter(*key), rows)
                rows = list(dict(zip(keys, rows, strict=True)).values())
            target = _staging(table)
        names = ", ".join(cols)
        types = self._types(table)
        with self._conn.cursor() as cur, cur.copy(
                f"COPY {target} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([types[c] for c in cols])
            for row in rows:
                copy.write_row(row)
        if target != table:
            self._conn.execute(f"{head} SELECT {names} FROM {target}{tail}")

    def stage(self, insert: str) -> None:
        """Make sure the staging table an upsert's `copy_rows` needs exists (in the
        pipeline, so at no round trip of its own; quietly, when it already does)."""
        plan = _multi_row(insert)
        if plan is not None and plan[2]:
            table, _ = _table_columns(plan[0])
            self._conn.execute("SET LOCAL client_min_messages = warning")
            self._conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_staging(table)} "
                               f"(LIKE {table}) ON COMMIT DELETE ROWS")

    def _types(self, table: str) -> dict[str, str]:
        """{column: its SQL type} of `table`, read from the catalog once per process."""
        types = _COLUMN_TYPES.get(table)
        if types is None:
            got = self._conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (table,)).fetchall()
            types = _COLUMN_TYPES[table] = {name: kind for name, kind in got}
        return types

    def json_rows(self, head: str, tail: str, rows: list[tuple[Any, ...]]) -> bool:
        """Many rows of `head` (`INSERT INTO t (cols)`) as one JSON parameter, unpacked
        by the server (`jsonb_array_elements`, each field cast to its column's type), with
        the same effect as the multi-row statements. Why: psycopg parses a statement's
        text for its placeholders in Python (~2 us each): the 60,000 rows x 12 values of
        a 10,000-host poll cycle took seconds; their JSON is one C call. (COPY would
        do too, but not in the pipeline a write runs in.) False, having sent nothing,
        when a value is not plain JSON (NaN, bytes, ...): the caller sends them as
        before."""
        try:
            doc = json.dumps(rows, allow_nan=False)
        except (TypeError, ValueError):
            return False
        table, cols = _table_columns(head)
        types = self._types(table)
        fields = ", ".join(f"(e->>{i})::{types[c]}" for i, c in enumerate(cols))
        self._conn.execute(f"{head} SELECT {fields} FROM jsonb_array_elements(%s::jsonb) e"
                           f"{tail}", (doc,))  # jsonb: each row parsed once, not per field
        return True


def _staging(table: str) -> str:
    """This session's staging table for upserts into `table`."""
    return f"migrate_staging_{table}"


def _table_columns(head: str) -> tuple[str, list[str]]:
    """`INSERT INTO t (a, b)` -> ("t", ["a", "b"])."""
    found = _HEAD.match(head)
    assert found is not None, head
    return found.group(1), [c.strip() for c in found.group(2).split(",")]


#: From this many rows on, one INSERT's rows travel as JSON (`_PgConn.json_rows`).
JSON_FROM = 200
#: From this many rows on, a write's `Bulk` rows are loaded by COPY: below it
#: the two round trips more cost more than COPY saves
COPY_FROM = 1000
_HEAD = re.compile(r"^INSERT INTO (\w+) \(([^)]*)\)$", re.I)
#: table -> {column: its SQL type}, read from the catalog once per process
_COLUMN_TYPES: dict[str, dict[str, str]] = {}

_INSERT = re.compile(r"^\s*(INSERT INTO \w+ \(([^)]*)\))\s*VALUES\s*\((\?(?:\s*,\s*\?)*)\)"
                     r"(.*)$", re.S | re.I)
_CONFLICT = re.compile(r"^\s*ON CONFLICT\s*\(([^)]*)\)\s*DO\s+(NOTHING|UPDATE SET\s+(.*))$",
                       re.S | re.I)
_EXCLUDED = re.compile(r"^\s*(\w+)\s*=\s*excluded\.(\w+)\s*$", re.I)


@functools.lru_cache(maxsize=64)
def _multi_row(sql: str) -> tuple[str, int, str, tuple[int, ...]] | None:
    """(INSERT head, columns, tail, conflict key indices) when `sql` may be sent for many
    rows at once with the same effect as row by row: a plain INSERT, ON CONFLICT DO
    NOTHING, or DO UPDATE whose every assignment is `col = excluded.col` (the last row of
    a key wins either way). None otherwise."""
    found = _INSERT.match(sql)
    if found is None:
        return None
    head, cols, marks, tail = found.groups()
    columns = [c.strip() for c in cols.split(",")]
    if len(columns) != marks.count("?"):
        return None
    key: tuple[int, ...] = ()
    if tail.strip():
        conflict = _CONFLICT.match(tail)
        if conflict is None:
            return None
        if conflict.group(3) is not None:
            sets = [_EXCLUDED.match(part) for part in conflict.group(3).split(",")]
            if not all(m is not None and m.group(1) == m.group(2) for m in sets):
                return None
            names = [c.strip() for c in conflict.group(1).split(",")]
            if not all(n in columns for n in names):
                return None
            key = tuple(columns.index(n) for n in names)
    return head, len(columns), (" " + tail.strip()) if tail.strip() else "", key


class PgHostClaim:
    """A run's advisory locks on its hosts (exclusive: holding them proves the hosts ours)."""

    exclusive = True

    def __init__(self, session: AdvisorySession, busy: list[str]) -> None:
        self.session = session
        self.busy = busy

    @property
    def count(self) -> int:
        return len(self.session.keys)

    @property
    def backend_pid(self) -> int:
        return self.session.backend_pid

    def check(self) -> None:
        self.session.check()

    def release(self) -> None:
        self.session.release()


class PgLeaderLock:
    def __init__(self, make: Callable[[], AdvisorySession]) -> None:
        self._make = make
        self._session: AdvisorySession | None = None

    def try_lock(self) -> bool:
        if self.held:
            return True
        self.unlock()
        session = self._make()
        try:
            if session.take():
                return False
        except Exception:
            session.release()
            raise
        self._session = session
        return True

    @property
    def held(self) -> bool:
        """Still ours: the keeper has not seen the session drop (checked every second)."""
        return self._session is not None and self._session.held

    def check(self) -> None:
        """Ask the server now (a round trip): raises when the session is gone."""
        if self._session is not None:
            self._session.check()

    def unlock(self) -> None:
        if self._session is not None:
            self._session.release()
            self._session = None


class PgStore:
    dialect = schema.POSTGRES

    def __init__(self, url: str, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.location = redact(url)
        self.connect_timeout = connect_timeout
        self.machine = socket.gethostname()
        self._conn: psycopg.Connection[Any] | None = None
        self._mutex = threading.RLock()
        self._unresolved: dict[int, tuple[str, Any]] = {}
        self.version = 0
        #: how often a lock session is pinged: the bound on how late a run in the middle
        #: of a long step learns that it lost its hosts
        self.keeper_interval = 1.0

    # --- connections -------------------------------------------------------------------------
    def connect(self, purpose: str, journal: bool = False) -> psycopg.Connection[Any]:
        """A new autocommit connection with keepalives both ways (see KEEPALIVE)."""
        options = SERVER_KEEPALIVE + (JOURNAL_OPTIONS if journal else "")
        try:
            return psycopg.Connection.connect(
                self.url, autocommit=True, connect_timeout=max(1, round(self.connect_timeout)),
                application_name=f"migrate {purpose} ({self.machine})", options=options,
                **KEEPALIVE)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            if self._permanent(exc):
                raise ConfigError(f"state.url {self.location}: {_first_line(exc)}") from exc
            raise

    def _ensure(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = self.connect("journal", journal=True)
        return self._conn

    def open(self) -> None:
        """Connect and bring the schema to the latest version (one exclusive upgrader)."""
        try:
            try:
                self._open()
            except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
                # two checkouts creating the tables at the same moment: the other one won;
                # look again (the version is now the latest)
                if self._conn is not None:
                    self._conn.rollback()
                self._open()
        except psycopg.Error as exc:
            if self.is_transient(exc):
                raise
            raise ConfigError(f"state.url {self.location}: cannot set up the journal's tables "
                              f"({_first_line(exc)}); the role needs CREATE on the database's "
                              "schema, or its owner runs migrate once") from exc

    def _open(self) -> None:
        with self._mutex:
            conn = self._ensure()
            found = self._version(conn)
            schema.check_version(found, self.location)
            if found < schema.LATEST:
                with self.transaction() as db:  # the write lock: one upgrader at a time
                    found = self._version(conn)
                    schema.check_version(found, self.location)
                    if found < schema.LATEST:
                        self.upgrade(db, found)
            self.version = schema.LATEST

    def upgrade(self, db: Conn, found: int, target: int = schema.LATEST) -> None:
        """Apply the migrations after `found` and record them (inside a transaction)."""
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                   "applied_at TEXT, description TEXT)")
        from orchestrator.state.records import utc_stamp

        for version in schema.apply(db, self.dialect, found, target):
            db.execute("INSERT INTO schema_version VALUES (?, ?, ?)",
                       (version, utc_stamp(), schema.describe(version)))

    @staticmethod
    def _version(conn: psycopg.Connection[Any]) -> int:
        exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return 0
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- statements --------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[_PgConn]:
        """BEGIN with the journal-wide write lock, in one round trip; COMMIT at the end."""
        with self._mutex:
            conn = self._ensure()
            cur = conn.execute(_BEGIN)
            cur.nextset()
            try:
                yield _PgConn(conn)
            except BaseException:
                self._rollback(conn)
                raise
            conn.execute("COMMIT")

    def write(self, body: Callable[[Conn], T], claims: Sequence[HostClaim] = (),
              bulk: Sequence[Bulk] = ()) -> T:
        """One attempt at a write transaction, in three round trips whatever its size.

        Pipelined (psycopg pipeline mode): BEGIN and the write lock, then the body's
        reads; its writes and the COMMIT travel together. `bulk` rows, when there
        are enough of them to be worth it (`COPY_FROM`), are loaded by COPY after the
        pipeline and before COMMIT (two round trips more); fewer go in the pipeline.
        The first round trip also checks, on this connection, that the run's host-lock
        sessions still hold their advisory locks (`claims`), so a run that lost its
        hosts journals nothing more.
        A COMMIT whose answer was lost with the connection is resolved on the next
        attempt by its transaction id, never blindly re-run.
        """
        with self._mutex:
            pending = self._unresolved.pop(id(body), None)
            if pending is not None:
                found = self._ensure().execute("SELECT pg_xact_status(%s::xid8)",
                                               (pending[0],)).fetchone()
                status = found[0] if found else None
                if status == "committed":
                    return pending[1]  # type: ignore[no-any-return]
                if status == "in progress":  # its session has not ended yet: ask again later
                    self._unresolved[id(body)] = pending
                    raise psycopg.OperationalError(f"the outcome of transaction {pending[0]} "
                                                   "is not known yet")
            conn = self._ensure()
            held = [c for c in claims if c.count]
            check = ""
            if held:
                pids = ", ".join(str(int(c.backend_pid)) for c in held)
                check = (", (SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND "
                         f"granted AND objsubid = 2 AND classid = {as_oid(NS_HOST)} AND "
                         f"pid IN ({pids}))")
            xid: str | None = None
            committing = False
            try:
                with conn.pipeline():
                    conn.execute("BEGIN")
                    row = conn.execute(f"SELECT pg_advisory_xact_lock({NS_WRITE}, 0), "
                                       f"pg_current_xact_id()::text{check}").fetchone()
                    assert row is not None
                    xid = row[1]
                    if held and row[2] < sum(c.count for c in held):
                        raise _LockSessionDown
                    pg = _PgConn(conn)
                    result = body(pg)
                    copies = []
                    for rows in bulk:
                        if len(rows.rows) >= COPY_FROM and _multi_row(rows.insert):
                            copies.append(rows)
                            pg.stage(rows.insert)
                        elif rows.rows:
                            pg.executemany(rows.insert, rows.rows)
                    if not copies:
                        committing = True
                        conn.execute("COMMIT")
                for many in copies:  # COPY cannot run in pipeline mode
                    pg.copy_rows(many.insert, many.rows)
                if copies:
                    committing = True
                    conn.execute("COMMIT")
            except _LockSessionDown:
                self._rollback(conn)
                for claim in held:  # take the locks back, or declare them lost
                    claim.check()
                raise psycopg.OperationalError("a host lock session was re-established; "
                                               "retrying") from None
            except BaseException as exc:
                if committing and xid is not None and isinstance(exc, Exception) \
                        and self.is_transient(exc):
                    self._unresolved[id(body)] = (xid, result)
                else:
                    self._rollback(conn)
                raise
            return result

    def _rollback(self, conn: psycopg.Connection[Any]) -> None:
        if not conn.closed and not conn.broken:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                conn.close()

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._mutex:
            return self._ensure().execute(_pg(sql), tuple(args) if args else None).fetchall()

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, psycopg.InterfaceError | psycopg.errors.AdminShutdown
                      | psycopg.errors.CannotConnectNow | psycopg.errors.ReadOnlySqlTransaction
                      | psycopg.errors.TransactionRollback):
            return True
        if isinstance(exc, psycopg.OperationalError):
            return not self._permanent(exc)
        return False

    @staticmethod
    def _permanent(exc: BaseException) -> bool:
        if isinstance(exc, psycopg.Error) and exc.sqlstate in _PERMANENT_SQLSTATES:
            return True
        text = str(exc).lower()
        return isinstance(exc, psycopg.ProgrammingError) or \
            any(word in text for word in _PERMANENT_WORDS)

    # --- locks -------------------------------------------------------------------------------
    def claim(self, run_id: str, hosts: list[str], availability: Availability) -> PgHostClaim:
        names = sorted(set(hosts))

        def verify(conn: psycopg.Connection[Any]) -> str | None:
            rows = dict(conn.execute("SELECT host, run_id FROM locks WHERE host = ANY(%s)",
                                     (names,)).fetchall())
            for host in names:
                if rows.get(host) != run_id:
                    now = f"held by run {rows[host]}" if rows.get(host) else \
                        "it was marked interrupted"
                    return (f"run {run_id} lost its lock on host {host} while the journal was "
                            f"unreachable ({now}); stopped before the next change")
            return None

        session = AdvisorySession(
            lambda: self.connect(f"lock {run_id}"),
            [(f"host {h}", NS_HOST, advisory_key(h)) for h in names], availability,
            on_lost=availability.declare, is_transient=self.is_transient, verify=verify,
            retake=True, interval=self.keeper_interval, what="host lock")
        busy = session.take()
        return PgHostClaim(session, [b.removeprefix("host ") for b in busy])

    def _held(self, db: Conn | None) -> set[tuple[int, int]]:
        rows = db.execute(_ADVISORY_HELD).fetchall() if db is not None else \
            self.read(_ADVISORY_HELD)
        return {(int(c), int(o)) for c, o in rows}

    def dead_runs(self, db: Conn | None, holders: list[LockHolder]) -> set[str]:
        if not holders:
            return set()
        held = self._held(db)
        return {h.run_id for h in holders
                if (as_oid(NS_HOST), as_oid(advisory_key(h.host))) not in held}

    def leader_lock(self, name: str, availability: Availability,
                    on_lost: Callable[[str], None]) -> PgLeaderLock:
        return PgLeaderLock(lambda: AdvisorySession(
            lambda: self.connect(f"leader {name}"),
            [(name, NS_LEADER, advisory_key(name))], availability, on_lost=on_lost,
            is_transient=self.is_transient, retake=False, interval=self.keeper_interval,
            what="leader"))

    def leader_alive(self, name: str, holder: ProcessId) -> bool:
        return (as_oid(NS_LEADER), as_oid(advisory_key(name))) in self._held(None)

    def after_copy(self, db: Conn) -> None:
        """Rows came with their keys: move the identity sequences past them."""
        for table in ("events", "samples"):
            db.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'seq'), "
                       f"COALESCE((SELECT MAX(seq) FROM {table}), 0) + 1, false)")


class _LockSessionDown(Exception):
    """A run's host-lock session no longer holds its locks (seen inside a write)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def wait_for_server(url: str, timeout: float = 10.0) -> None:
    """Block until the server accepts connections (for tests and benchmarks)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise JournalUnavailableError(f"{redact(url)}: {_first_line(exc)}") from exc
            time.sleep(0.1)
