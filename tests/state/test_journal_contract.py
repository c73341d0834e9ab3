"""One contract, two journals: every test here runs on SQLite and on a real PostgreSQL.

"One schema, one set of semantics" is what these tests check: events, runs, moves
along the transition graph, host locks (refusal naming the holder, all or nothing,
concurrent takers, a SIGKILLed holder reaped as `interrupted`), baselines, samples,
trigger states, leadership, the schema upgrade, and the state.timeout rule.
Each backend gets a fresh journal per test (a temp dir, or a new database on the
session's server); `backend.open()` opens another `Journal` on the same storage, as
another checkout (another connection, another machine for PostgreSQL) would.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator._exceptions import ConfigError, LockHeldError
from orchestrator.core.states import IllegalTransition, PhaseState, StepState
from orchestrator.state import schema
from orchestrator.state.base import JournalUnavailableError
from orchestrator.state.journal import Journal
from orchestrator.state.leader import Leadership, watch_key
from orchestrator.state.open import StateSettings, open_state
from tests.support.pg import PgServer, spawn_holder, wait_until

P = PhaseState
S = StepState


@dataclass
class Backend:
    name: str
    state_dir: Path
    url: str | None = None
    opened: list[Journal] = field(default_factory=list)

    @property
    def target(self) -> str:
        return self.url or str(self.state_dir / "state.db")

    def open(self, **kw: Any) -> Journal:
        journal = open_state(self.state_dir, StateSettings(url=self.url), **kw)
        self.opened.append(journal)
        return journal

    def transient(self) -> Exception:
        """An error of the kind a lost connection or a locked database raises."""
        if self.url is None:
            return sqlite3.OperationalError("database is locked")
        import psycopg

        return psycopg.OperationalError("server closed the connection unexpectedly")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        b = Backend("sqlite", tmp_path / ".migrate")
    else:
        server: PgServer = request.getfixturevalue("pg_server")
        b = Backend("postgresql", tmp_path / ".migrate", server.create_database())
    yield b
    for journal in b.opened:
        journal.close()


def start(journal: Journal, run_id: str = "r1", host: str = "main", phase: int = 1) -> None:
    journal.create_run(run_id, phase, [host], "migrate phase 1 --host main", "phase", False,
                       {"phases/1-x.yaml": "abc"})
    journal.move_phase(run_id, host, phase, P.RUNNING, "run_started", "started")


# --- events and runs -----------------------------------------------------------------------
def test_events_keep_order_stamps_and_payload(backend: Backend) -> None:
    j = backend.open()
    start(j)
    j.event("r1", "main", 1, "a", "step_output", "hello", {"lines": 2, "tail": ["x", "y"]})
    j.event("r1", None, 1, None, "wave_started", None)
    events = j.events(run_id="r1")
    assert [e.kind for e in events] == ["run_started", "step_output", "wave_started"]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert events[1].payload == {"lines": 2, "tail": ["x", "y"]}
    assert events[2].payload is None and events[2].as_json()["payload"] == {}
    stamps = [e.at for e in events]
    assert stamps == sorted(stamps)
    assert all(s.endswith("Z") and len(s) == len("2026-11-23T23:59:00.123Z") for s in stamps)


def test_history_by_host_is_exact_and_includes_the_runs_phase_wide_events(
        backend: Backend) -> None:
    j = backend.open()
    j.create_run("r1", 1, ["mma_main", "pc2"], "c", "phase", False, {})
    j.create_run("r2", 1, ["mmaXmain"], "c", "phase", False, {})
    j.event("r1", None, 1, None, "wave_started", "both")
    j.event("r1", "pc2", 1, None, "step_output", "pc2 only")
    j.event("r2", None, 1, None, "wave_started", "the other run")
    j.event("r2", "mmaXmain", 1, None, "step_output", "x")
    assert [e.detail for e in j.events(host="mma_main")] == ["both"]  # `_` is no wildcard
    assert [e.detail for e in j.events(host="pc2")] == ["both", "pc2 only"]
    assert [e.detail for e in j.events(host="MMA_MAIN")] == []  # case matters on both
    assert len(j.events()) == 4


def test_runs_are_recorded_and_ended(backend: Backend) -> None:
    j = backend.open()
    start(j)
    info = j.run_info("r1")
    assert info is not None
    assert info["hosts"] == ["main"] and info["checksums"] == {"phases/1-x.yaml": "abc"}
    assert info["machine"] == socket.gethostname() and info["outcome"] is None
    assert info["dry_run"] is False
    j.end_run("r1", "completed")
    assert (j.run_info("r1") or {})["outcome"] == "completed"
    assert j.run_info("nope") is None


# --- phase and step moves --------------------------------------------------------------------
def test_phase_moves_follow_the_graph_and_keep_the_rollback_reason(backend: Backend) -> None:
    j = backend.open()
    assert j.phase_record("main", 1).state is P.PENDING
    start(j)
    j.move_phase("r1", "main", 1, P.ROLLING_BACK, "rollback_started", "why",
                 reason="trigger vram: 1301 > 1200")
    j.move_phase("r1", "main", 1, P.ROLLED_BACK, "rollback_completed", "done")
    rec = j.phase_record("main", 1)
    assert rec.state is P.ROLLED_BACK and rec.reason == "trigger vram: 1301 > 1200"
    assert rec.run_id == "r1" and rec.updated_at == j.events(run_id="r1")[-1].at
    before = len(j.events())
    with pytest.raises(IllegalTransition):
        j.move_phase("r1", "main", 1, P.COMPLETED, "phase_completed")
    assert len(j.events()) == before  # an illegal move writes nothing, not even its event
    assert j.phase_record("main", 1).state is P.ROLLED_BACK


def test_step_moves_count_attempts_and_refuse_illegal_edges(backend: Backend) -> None:
    j = backend.open()
    start(j)
    j.move_step("r1", "main", 1, "a", 0, S.RUNNING, "step_started", "run a")
    j.move_step("r1", "main", 1, "a", 0, S.RUNNING, "step_started", "run a (attempt 2)")
    j.move_step("r1", "main", 1, "a", 0, S.SUCCEEDED, "step_succeeded", "ok")
    j.move_step("r1", "main", 1, "b", 1, S.SKIPPED, "step_skipped")
    assert j.step_state("r1", "main", "a") is S.SUCCEEDED
    assert j.steps_of("r1", "main") == [("a", 0, S.SUCCEEDED), ("b", 1, S.SKIPPED)]
    with pytest.raises(IllegalTransition):
        j.move_step("r1", "main", 1, "b", 1, S.RUNNING, "step_started")
    rows = j.store.read("SELECT attempts FROM steps WHERE run_id = ? AND step = ?", ("r1", "a"))
    assert rows[0][0] == 2


def test_bulk_phase_records_match_single_reads(backend: Backend) -> None:
    j = backend.open()
    for n, host in enumerate(["a", "b", "c"]):
        start(j, f"r{n}", host)
    bulk = j.phase_records(["a", "c"])
    assert set(bulk) == {("a", 1), ("c", 1)}
    assert bulk[("a", 1)] == j.phase_record("a", 1)
    j.set_trigger_state("a", 1, "vram", "r0", "ok", 1.0, 2.0, 1.0, None, "x")
    j.set_trigger_state("a", 1, "health", "r0", "ok", None, None, None, None, "y")
    j.set_trigger_state("b", 1, "vram", "r1", "firing", 3.0, 2.0, 1.0, "t", "z")
    triggers = j.all_trigger_states(["a", "c"])
    assert triggers == {("a", 1): j.trigger_states("a", 1)}
    assert set(j.all_trigger_states()) == {("a", 1), ("b", 1)}


# --- locks -----------------------------------------------------------------------------------
def test_a_held_host_is_refused_in_another_checkout_naming_the_holder(backend: Backend) -> None:
    mine, theirs = backend.open(), backend.open()
    mine.acquire(["main"], "r1", "migrate phase 2 --host main")
    with pytest.raises(LockHeldError) as refused:
        theirs.acquire(["main"], "r2", "migrate phase 3 --host main")
    text = str(refused.value)
    assert f"on {socket.gethostname()}" in text and "'migrate phase 2 --host main'" in text
    assert refused.value.pid > 0 and "since 20" in text
    with pytest.raises(LockHeldError):  # the same checkout is refused as well
        mine.acquire(["main"], "r3", "again")
    [holder] = theirs.holders()
    assert (holder.host, holder.run_id, holder.command) == \
        ("main", "r1", "migrate phase 2 --host main")
    mine.release("r1")
    theirs.acquire(["main"], "r2", "migrate phase 3 --host main")
    assert [h.run_id for h in mine.holders()] == ["r2"]
    theirs.release("r2")
    assert mine.holders() == []


def test_hosts_are_taken_all_or_none(backend: Backend) -> None:
    mine, theirs = backend.open(), backend.open()
    mine.acquire(["pc2"], "r1", "holds pc2")
    with pytest.raises(LockHeldError, match="host pc2"):
        theirs.acquire(["main", "pc2"], "r2", "wants both")
    assert [h.host for h in mine.holders()] == ["pc2"]  # main was not taken either
    theirs.acquire(["main"], "r3", "main only")
    assert sorted(h.host for h in mine.holders()) == ["main", "pc2"]


def test_concurrent_acquires_exactly_one_wins(backend: Backend) -> None:
    journals = [backend.open() for _ in range(6)]
    barrier = threading.Barrier(len(journals))
    won: list[str] = []
    refused: list[str] = []

    def take(i: int, j: Journal) -> None:
        barrier.wait()
        try:
            j.acquire(["main", "pc2"], f"r{i}", f"run {i}")
            won.append(f"r{i}")
        except LockHeldError:
            refused.append(f"r{i}")

    threads = [threading.Thread(target=take, args=(i, j)) for i, j in enumerate(journals)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1 and len(refused) == len(journals) - 1, (won, refused)
    assert {h.run_id for h in journals[0].holders()} == set(won)


def test_a_sigkilled_holder_frees_the_host_and_its_run_reads_interrupted(
        backend: Backend) -> None:
    holder = spawn_holder(backend.target, "host", "main", "r-dead")
    told: list[tuple[str, str, int, str]] = []
    other = backend.open(on_interrupted=told.append)
    try:
        with pytest.raises(LockHeldError, match=f"pid {holder.pid} on"):
            other.acquire(["main"], "r2", "migrate phase 1 --host main")
        assert other.phase_record("main", 1).state is P.RUNNING
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        took = wait_until(lambda: other.reap() == ["r-dead"], timeout=10)
        assert took < 10
    finally:
        holder.kill()
        holder.wait()
    rec = other.phase_record("main", 1)
    assert rec.state is P.INTERRUPTED and rec.reason == "process died while running"
    assert (other.run_info("r-dead") or {})["outcome"] == "interrupted"
    last = other.events(run_id="r-dead")[-1]
    assert (last.kind, last.payload) == ("run_interrupted", {"was": "running"})
    assert told == [("r-dead", "main", 1, last.detail)]  # told once it was committed
    assert other.holders() == []
    # from any checkout: resume (or roll back) the dead run under its own id
    other.acquire(["main"], "r-dead", "migrate resume --host main")
    other.move_phase("r-dead", "main", 1, P.ROLLING_BACK, "rollback_started", "operator")
    other.release("r-dead")


def test_reap_leaves_live_holders_alone(backend: Backend) -> None:
    mine, theirs = backend.open(), backend.open()
    mine.acquire(["main"], "r1", "c")
    start(mine)
    assert theirs.reap() == []
    assert theirs.phase_record("main", 1).state is P.RUNNING


# --- baselines, samples, trigger states ---------------------------------------------------
def test_baselines_are_replaced_per_metric(backend: Backend) -> None:
    j = backend.open()
    j.save_baseline("main", "pre", {"vram": 1000.0, "load": 0.5}, None)
    j.save_baseline("main", "pre", {"vram": 1100.0}, "r1")
    assert j.baseline("main", "pre") == {"vram": 1100.0, "load": 0.5}
    assert j.baseline("main", "other") == {}
    assert j.baseline("pc2", "pre") == {}


def test_samples_keep_insertion_order_and_nulls(backend: Backend) -> None:
    j = backend.open()
    for i, v in enumerate([3.0, None, 1.5]):
        j.add_sample("r1", "main", 1, "vram", "vram_used", float(i), v, v == 3.0, "ok",
                     1200.0 if i else None, 1000.0)
    j.add_sample("r2", "main", 1, "vram", "vram_used", 0.0, 9.0, False, "ok")
    rows = j.samples("r1")
    assert [r["value"] for r in rows] == [3.0, None, 1.5]
    assert [r["breaching"] for r in rows] == [1, 0, 0]
    assert rows[0]["threshold"] is None and rows[1]["threshold"] == 1200.0
    assert set(rows[0]) == {"host", "phase", "trigger", "metric", "at", "t", "value",
                            "breaching", "state", "threshold", "baseline"}


def test_trigger_states_are_one_row_per_trigger(backend: Backend) -> None:
    j = backend.open()
    j.set_trigger_state("main", 1, "vram", "r1", "pending", 1250.0, 1200.0, 1000.0, "t0", "x")
    j.set_trigger_state("main", 1, "vram", "r1", "firing", 1300.0, 1200.0, 1000.0, "t0", "y")
    j.set_trigger_state("main", 1, "health", "r1", "ok", None, None, None, None, "z")
    states = j.trigger_states("main", 1)
    assert [s["trigger"] for s in states] == ["health", "vram"]
    assert states[1]["status"] == "firing" and states[1]["value"] == 1300.0
    assert states[0]["value"] is None
    assert j.trigger_states("main", 2) == []


# --- leadership (HA watch) -------------------------------------------------------------------
def test_of_two_leaders_exactly_one_is_active_and_the_other_takes_over(
        backend: Backend) -> None:
    key = watch_key(["pc2", "main"])
    assert key == watch_key(["main", "pc2", "main"])
    a = Leadership(backend.open(), key)
    b = Leadership(backend.open(), key)
    assert a.try_acquire() is True
    assert b.try_acquire() is False
    assert (a.role, b.role) == ("active", "standby")
    current = b.current()
    assert current is not None and current.process.machine == socket.gethostname()
    a.release()
    assert b.try_acquire() is True and not a.is_leader
    assert a.try_acquire() is False
    b.release()


def test_a_standby_takes_over_within_10s_of_the_leader_dying(backend: Backend) -> None:
    key = watch_key(["main"])
    leader = spawn_holder(backend.target, "leader", key)
    standby = Leadership(backend.open(), key)
    try:
        assert standby.try_acquire() is False
        current = standby.current()
        assert current is not None and current.process.pid == leader.pid
        stop = threading.Event()
        result: list[float] = []

        def stand_by() -> None:
            if standby.wait(stop, poll=0.5):
                result.append(time.monotonic())

        t = threading.Thread(target=stand_by)
        t.start()
        killed = time.monotonic()
        leader.send_signal(signal.SIGKILL)
        t.join(15)
        stop.set()
        assert result and result[0] - killed < 10
        assert standby.is_leader
        assert (standby.current() or object()).process.pid != leader.pid  # type: ignore[attr-defined]
    finally:
        leader.kill()
        leader.wait()
        standby.release()


# --- schema ------------------------------------------------------------------------------------
def make_v1(backend: Backend) -> None:
    """A journal at schema version 1 (as first released), with a run in it."""
    from orchestrator.state.schema import SQLITE, apply

    run = ("r-old", 1, json.dumps(["main", "pc2"]), "migrate phase 1", "phase", 1, 1, "m",
           "2026-01-01T00:00:00.000Z", None, 0, None, "{}")
    if backend.url is None:
        backend.state_dir.mkdir(parents=True)
        db = sqlite3.connect(backend.state_dir / "state.db", isolation_level=None)
        db.execute("BEGIN")
        apply(db, SQLITE, 0, target=1)  # type: ignore[arg-type]
        db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", run)
        db.execute("INSERT INTO events (at, run_id, host, phase, step, kind, detail) VALUES "
                   "('2026-01-01T00:00:00.001Z', 'r-old', NULL, 1, NULL, 'wave_started', 'w')")
        db.execute("COMMIT")
        db.close()
        return
    from orchestrator.state.postgres import PgStore

    store = PgStore(backend.url)
    with store.transaction() as pg:
        store.upgrade(pg, 0, target=1)
        pg.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", run)
        pg.execute("INSERT INTO events (at, run_id, host, phase, step, kind, detail) VALUES "
                   "('2026-01-01T00:00:00.001Z', 'r-old', NULL, 1, NULL, 'wave_started', 'w')")
    store.close()


def schema_version(j: Journal) -> int:
    if j.store.dialect.name == "sqlite":
        return int(j.store.read("PRAGMA user_version")[0][0])
    return int(j.store.read("SELECT MAX(version) FROM schema_version")[0][0])


def test_a_journal_at_the_previous_version_is_upgraded_in_place(backend: Backend) -> None:
    make_v1(backend)
    j = backend.open()
    assert schema_version(j) == schema.LATEST
    # version 2's run_hosts was filled from version 1's JSON host lists
    assert [e.detail for e in j.events(host="pc2")] == ["w"]
    assert j.events(run_id="r-old")[0].payload is None
    j.event("r-old", None, 1, None, "wave_completed", "w2", {"wave": 1})
    assert j.events(run_id="r-old")[-1].payload == {"wave": 1}
    # version 3: an old run undoes its own steps (no origin recorded)
    assert j.rollback_targets(["pc2"], "r-old") == {"r-old": ["pc2"]}
    j.close()
    assert schema_version(backend.open()) == schema.LATEST  # opening again changes nothing


def test_a_journal_newer_than_this_code_is_refused(backend: Backend) -> None:
    j = backend.open()
    if j.store.dialect.name == "sqlite":
        j.store.read("PRAGMA user_version = 99")
    else:
        with j.transaction() as db:
            db.execute("INSERT INTO schema_version VALUES (99, 'x', 'future')")
    with pytest.raises(ConfigError, match="schema version 99, newer than"):
        backend.open()


# --- state.timeout ---------------------------------------------------------------------------
class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def failing(j: Journal, errors: list[Exception]) -> list[int]:
    """Make the journal's next writes fail with `errors`, one per attempt."""
    real = j.store.write
    calls = [0]

    def write(body: Any, claims: Any = (), bulk: Any = ()) -> Any:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return real(body, claims, bulk)

    j.store.write = write  # type: ignore[method-assign]
    return calls


def test_a_write_rides_out_a_short_outage(backend: Backend) -> None:
    fake = FakeTime()
    j = backend.open(clock=fake.clock, sleep=fake.sleep)
    start(j)
    calls = failing(j, [backend.transient() for _ in range(4)])
    j.move_step("r1", "main", 1, "a", 0, S.RUNNING, "step_started")
    assert calls[0] == 5 and j.unavailable is None
    assert 0 < fake.now < 30 and j.step_state("r1", "main", "a") is S.RUNNING
    assert len([e for e in j.events(run_id="r1") if e.kind == "step_started"]) == 1


def test_a_write_that_keeps_failing_stops_the_run_after_the_timeout(backend: Backend) -> None:
    fake = FakeTime()
    heard: list[str] = []
    j = backend.open(clock=fake.clock, sleep=fake.sleep, on_unavailable=heard.append)
    j.acquire(["main"], "r1", "migrate phase 1 --host main")
    start(j)
    failing(j, [backend.transient() for _ in range(10_000)])
    with pytest.raises(JournalUnavailableError) as stopped:
        j.move_step("r1", "main", 1, "a", 0, S.RUNNING, "step_started")
    assert stopped.value.exit_code == 3
    assert 30 <= fake.now < 33 and max(fake.slept) <= 2.0
    assert "could not be written for 30s" in str(stopped.value)
    assert "\n" not in str(stopped.value) and heard == [stopped.value.reason]
    assert j.unavailable == stopped.value.reason
    # from now on every write refuses at once, even once the database answers again
    j.store.write = type(j.store).write.__get__(j.store)  # type: ignore[method-assign]
    t = fake.now
    with pytest.raises(JournalUnavailableError):
        j.event("r1", "main", 1, None, "step_output", "x")
    assert fake.now == t and heard == [stopped.value.reason]
    j.release("r1")  # lets go of the lock but leaves its row: the run reads interrupted
    told: list[tuple[str, str, int, str]] = []
    other = backend.open(on_interrupted=told.append)
    assert other.step_state("r1", "main", "a") is S.PENDING  # nothing was journaled...
    if backend.name == "postgresql":  # ...and the holder is gone as far as anyone can see
        assert [i[0] for i in told] == ["r1"]  # reaped as it opened
        assert other.phase_record("main", 1).state is P.INTERRUPTED


def test_a_bug_is_not_retried(backend: Backend) -> None:
    fake = FakeTime()
    j = backend.open(clock=fake.clock, sleep=fake.sleep)
    with pytest.raises(Exception, match="no_such_table|no such table|does not exist"):
        j._write(lambda db: db.execute("INSERT INTO no_such_table VALUES (1)"))
    assert fake.now == 0 and j.unavailable is None
    start(j)  # the journal still works
