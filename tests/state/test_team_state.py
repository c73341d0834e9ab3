"""The team journal against a real PostgreSQL that misbehaves: stopped mid-run (pg_ctl
stop -m immediate), restarted, a lock session killed, a COMMIT whose answer is lost;
plus `state copy` of an embedded journal, and the `state:` settings.

Tests that crash or restart the server start their own (`running_server()`); the
others share the worker's one and take a fresh database each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from orchestrator._exceptions import ConfigError, LockHeldError, RefusedError
from orchestrator.core.states import PhaseState, StepState
from orchestrator.state.base import JournalUnavailableError
from orchestrator.state.copy import copy_journal, copy_state
from orchestrator.state.journal import Journal
from orchestrator.state.leader import Leadership, watch_key
from orchestrator.state.open import StateSettings, open_state, parse_state_settings
from tests.support.pg import PgServer, running_server, spawn_holder, wait_until

P = PhaseState
S = StepState


@pytest.fixture
def server(pg_server: PgServer) -> PgServer:
    """The worker's shared server (tests/conftest.py): these tests leave it running."""
    return pg_server


@pytest.fixture
def own_server() -> Iterator[PgServer]:
    """A server of this test's own, to stop and restart."""
    with running_server() as s:
        yield s


def team(url: str, tmp_path: Path, timeout: float = 30.0,
         on_unavailable: Callable[[str], None] | None = None) -> Journal:
    return open_state(tmp_path / ".migrate", StateSettings(url=url, timeout=timeout),
                      on_unavailable=on_unavailable)


def start(journal: Journal, run_id: str = "r1", host: str = "main") -> None:
    journal.acquire([host], run_id, f"migrate phase 1 --host {host}")
    journal.create_run(run_id, 1, [host], "migrate phase 1", "phase", False, {})
    journal.move_phase(run_id, host, 1, P.RUNNING, "run_started", "started")
    journal.move_step(run_id, host, 1, "a", 0, S.RUNNING, "step_started", "run a")


# --- settings ----------------------------------------------------------------------------------
def test_settings_from_yaml_and_environment() -> None:
    assert parse_state_settings(None, {}) == (StateSettings(None, 30.0), [])
    url = "postgresql://migrate@db.internal/migrate"
    assert parse_state_settings({"url": url, "timeout": "45s"}, {}) == \
        (StateSettings(url, 45.0), [])
    env = {"MIGRATE_STATE_URL": "postgres://other@db2/m"}
    assert parse_state_settings({"url": url}, env)[0].url == "postgres://other@db2/m"
    assert parse_state_settings({"url": url}, {"MIGRATE_STATE_URL": ""})[0].url == url
    settings, problems = parse_state_settings(
        {"url": "mysql://u:secret@h/db", "timeout": "30", "ttl": 1}, {})
    assert settings == StateSettings(None, 30.0)
    assert any("unknown key(s) ttl" in p for p in problems)
    assert any("not a postgresql:// or sqlite:/// URL" in p and "secret" not in p
               for p in problems)
    assert any(p.startswith("state.timeout: malformed duration") for p in problems)
    assert parse_state_settings("x", {})[1] == \
        ["state: must be a mapping with `url` and/or `timeout`"]


def test_a_database_that_cannot_exist_is_a_config_error_at_once(server: PgServer,
                                                               tmp_path: Path) -> None:
    url = server.url("no_such_db")
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"state.url postgresql://migrate@127.0.0.1:\d+/"
                                          r"no_such_db: .*does not exist"):
        team(url, tmp_path)
    assert time.monotonic() - t0 < 5


def test_an_unreachable_server_is_exit_3_after_the_timeout(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(JournalUnavailableError, match="could not be read for 1s") as failed:
        team(f"postgresql://migrate:hunter2@127.0.0.1:{port}/x", tmp_path, timeout=1.0)
    assert 1 <= time.monotonic() - t0 < 5
    assert failed.value.exit_code == 3 and "hunter2" not in str(failed.value)


def test_nothing_is_written_under_state_db_when_the_url_is_set(server: PgServer,
                                                              tmp_path: Path) -> None:
    j = team(server.create_database(), tmp_path)
    start(j)
    j.release("r1")
    j.close()
    assert not (tmp_path / ".migrate").exists()  # no state.db, not even its directory


# --- the database goes away ----------------------------------------------------------------
def test_server_stopped_mid_run_stops_the_run_then_it_reads_interrupted(
        own_server: PgServer, tmp_path: Path) -> None:
    url = own_server.create_database()
    heard: list[str] = []
    j = team(url, tmp_path, timeout=2.0, on_unavailable=heard.append)
    start(j)
    own_server.stop("immediate")
    t0 = time.monotonic()
    with pytest.raises(JournalUnavailableError) as stopped:
        j.move_step("r1", "main", 1, "a", 0, S.SUCCEEDED, "step_succeeded", "ok")
    took = time.monotonic() - t0
    assert 2 <= took < 10, took
    assert stopped.value.exit_code == 3 and "\n" not in stopped.value.reason
    assert heard == [stopped.value.reason]
    j.release("r1")  # what the engine's `finally` does: no write, the lock session goes
    own_server.start()
    other = team(url, tmp_path)
    assert other.phase_record("main", 1).state is P.INTERRUPTED
    assert other.step_state("r1", "main", "a") is S.RUNNING  # what was in flight
    assert other.events(run_id="r1")[-1].kind == "run_interrupted"
    other.acquire(["main"], "r1", "migrate resume --host main")  # from another checkout


def test_a_run_in_a_long_step_hears_of_the_outage_without_writing(
        own_server: PgServer, tmp_path: Path) -> None:
    heard: list[str] = []
    got = threading.Event()

    def hear(reason: str) -> None:
        heard.append(reason)
        got.set()

    j = team(own_server.create_database(), tmp_path, timeout=2.0, on_unavailable=hear)
    start(j)
    own_server.stop("immediate")
    t0 = time.monotonic()
    assert got.wait(10), "the lock keeper never reported the outage"
    assert 2 <= time.monotonic() - t0 < 8
    assert "unreachable for 2s" in heard[0]
    with pytest.raises(JournalUnavailableError):
        j.event("r1", "main", 1, "a", "step_output", "x")


def test_a_restart_shorter_than_the_timeout_is_ridden_out(own_server: PgServer,
                                                          tmp_path: Path) -> None:
    url = own_server.create_database()
    j = team(url, tmp_path, timeout=30.0)
    start(j)
    own_server.stop("immediate")
    own_server.start()
    j.move_step("r1", "main", 1, "a", 0, S.SUCCEEDED, "step_succeeded", "ok")
    assert j.unavailable is None
    other = team(url, tmp_path)
    assert other.phase_record("main", 1).state is P.RUNNING  # not reaped: the lock is back
    with pytest.raises(LockHeldError):
        other.acquire(["main"], "r2", "migrate phase 1 --host main")
    j.move_phase("r1", "main", 1, P.COMPLETED, "phase_completed")
    j.release("r1")


def test_a_run_whose_lock_was_lost_and_reaped_stops(server: PgServer, tmp_path: Path) -> None:
    url = server.create_database()
    heard: list[str] = []
    j = team(url, tmp_path, on_unavailable=heard.append)
    j.store.keeper_interval = 3600  # type: ignore[attr-defined]  # the next write finds out
    start(j)
    server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE 'migrate lock r1 %'")
    other = team(url, tmp_path)  # looks meanwhile: the holder's session is gone
    assert other.phase_record("main", 1).state is P.INTERRUPTED
    with pytest.raises(JournalUnavailableError, match="lost its lock on host main .*marked "
                                                      "interrupted"):
        j.move_step("r1", "main", 1, "a", 0, S.SUCCEEDED, "step_succeeded", "ok")
    assert len(heard) == 1
    assert other.step_state("r1", "main", "a") is S.RUNNING  # the late write did not land


@pytest.mark.parametrize("committed", [True, False])
def test_a_commit_whose_answer_was_lost_is_not_journaled_twice(server: PgServer, tmp_path: Path,
                                                               committed: bool) -> None:
    """The connection dies around COMMIT: after it ran (resolved as committed by its
    transaction id, not re-run) or before it reached the server (aborted: run again)."""
    import psycopg

    j = team(server.create_database(), tmp_path)
    start(j)
    store: Any = j.store
    real_ensure = store._ensure
    lose = [True]

    class DiesAroundCommit:
        def __init__(self, conn: Any) -> None:
            self._conn = conn

        @contextmanager
        def pipeline(self) -> Iterator[None]:
            if not (lose and committed):
                with self._conn.pipeline():
                    yield
                return
            with self._conn.pipeline():
                yield  # the COMMIT is queued here and sent as the pipeline ends
            lose.clear()
            self._conn.close()  # committed, but the answer never came back
            raise psycopg.OperationalError("server closed the connection unexpectedly")

        def execute(self, sql: Any, *args: Any) -> Any:
            if sql == "COMMIT" and lose and not committed:
                lose.clear()
                self._conn.close()  # the COMMIT never leaves
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            return self._conn.execute(sql, *args)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._conn, name)

    store._ensure = lambda: DiesAroundCommit(real_ensure())
    j.move_step("r1", "main", 1, "a", 0, S.SUCCEEDED, "step_succeeded", "ok")
    store._ensure = real_ensure
    kinds = [e.kind for e in j.events(run_id="r1")]
    assert kinds.count("step_succeeded") == 1 and not lose
    assert j.step_state("r1", "main", "a") is S.SUCCEEDED


# --- HA watch ----------------------------------------------------------------------------------
def test_a_leader_whose_session_drops_becomes_a_standby(own_server: PgServer,
                                                        tmp_path: Path) -> None:
    url = own_server.create_database()
    lost: list[str] = []
    a = Leadership(team(url, tmp_path), watch_key(["main"]), on_lost=lost.append)
    assert a.try_acquire() and a.role == "active"
    own_server.stop("immediate")
    wait_until(lambda: not a.is_leader, timeout=10)
    assert a.role == "standby" and "dropped" in lost[0]
    own_server.start()
    b = Leadership(team(url, tmp_path), watch_key(["main"]))
    assert b.try_acquire()  # whoever asks first after the restart leads
    assert not a.try_acquire()
    b.release()
    assert a.try_acquire()


# --- state copy --------------------------------------------------------------------------------
def embedded_history(tmp_path: Path) -> Journal:
    j = open_state(tmp_path / ".migrate")
    start(j)
    j.move_step("r1", "main", 1, "a", 0, S.SUCCEEDED, "step_succeeded", "ok", {"rc": 0})
    j.move_phase("r1", "main", 1, P.COMPLETED, "phase_completed")
    j.end_run("r1", "completed")
    j.release("r1")
    j.save_baseline("main", "pre", {"vram": 1000.0}, None)
    for i in range(3):
        j.add_sample("r1", "main", 1, "vram", "vram_used", float(i), 1000.0 + i, False, "ok")
    j.set_trigger_state("main", 1, "vram", "r1", "ok", 1002.0, 1200.0, 1000.0, None, "x")
    return j


def test_copy_of_an_embedded_journal_into_an_empty_database(server: PgServer,
                                                            tmp_path: Path) -> None:
    source = embedded_history(tmp_path)
    url = server.create_database()
    result = copy_state(tmp_path / ".migrate", url)
    assert result["rows"]["events"] == 4 and result["rows"]["samples"] == 3
    assert result["to"] == url  # (no password in the test URL to hide)
    copied = team(url, tmp_path)
    assert [(e.seq, e.kind, e.payload) for e in copied.events()] == \
        [(e.seq, e.kind, e.payload) for e in source.events()]
    assert copied.phase_record("main", 1) == source.phase_record("main", 1)
    assert copied.samples("r1") == source.samples("r1")
    assert copied.baseline("main", "pre") == {"vram": 1000.0}
    assert copied.trigger_states("main", 1) == source.trigger_states("main", 1)
    assert copied.run_info("r1") == source.run_info("r1")
    assert copied.steps_of("r1", "main") == source.steps_of("r1", "main")
    assert [e.kind for e in copied.events(host="main")][-1] == "phase_completed"
    copied.event("r1", None, 1, None, "rollback_requested", "after the move")
    assert copied.events()[-1].seq > source.events()[-1].seq  # numbering continues
    with pytest.raises(RefusedError, match="is not empty .*state copy only fills an empty"):
        copy_state(tmp_path / ".migrate", url)


def test_copy_is_refused_while_a_run_holds_a_host(server: PgServer, tmp_path: Path) -> None:
    source = embedded_history(tmp_path)
    source.acquire(["main"], "r2", "migrate phase 2 --host main")
    target = team(server.create_database(), tmp_path)
    with pytest.raises(RefusedError, match="run r2 holds host main"):
        copy_journal(source, target)
    assert target.events() == []


def test_copy_needs_a_postgres_url_and_a_journal(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a postgresql:// URL"):
        copy_state(tmp_path / ".migrate", "sqlite:///x.db")
    with pytest.raises(ConfigError, match="no embedded journal"):
        copy_state(tmp_path / ".migrate", "postgresql://u@127.0.0.1:1/x")


# --- two operators -----------------------------------------------------------------------------
def test_a_holder_on_another_machine_is_named_and_outlives_process_checks(
        server: PgServer, tmp_path: Path) -> None:
    """The refusal names the holder, and a remote holder's pid (which this machine cannot
    check) does not matter: only its session does."""
    url = server.create_database()
    holder = spawn_holder(url, "host", "main", "r-far")
    try:
        me = team(url, tmp_path)
        # pretend the holder's row was written on another machine with a pid that is dead here
        with me.transaction() as db:
            db.execute("UPDATE locks SET machine = 'bastion', pid = 999999 WHERE host = 'main'")
        assert me.reap() == []
        with pytest.raises(LockHeldError, match="pid 999999 on bastion, command "
                                                "'migrate phase 1 --host main', since 20"):
            me.acquire(["main"], "r2", "migrate phase 1 --host main")
    finally:
        holder.kill()
        holder.wait()
    wait_until(lambda: me.reap() == ["r-far"], timeout=10)


def test_a_holder_whose_machine_dies_frees_the_host_within_10s(tmp_path: Path) -> None:
    """The holder's machine stops answering (its link is cut, nothing is closed): the
    server's keepalives on the lock session end it, and the run is reaped."""
    from tests.support.pg import far_machine

    with far_machine() as far, running_server(listen_also=far.server_address) as srv:
        db = srv.create_database()
        holder = spawn_holder(f"postgresql://migrate@{far.server_address}:{srv.port}/"
                              f"{db.rsplit('/', 1)[1]}", "host", "main", "r-far",
                              prefix=far.prefix)
        try:
            me = team(db, tmp_path)
            with pytest.raises(LockHeldError, match="host main is held"):
                me.acquire(["main"], "r2", "migrate phase 1 --host main")
            far.cut()
            took = wait_until(lambda: me.reap() == ["r-far"], timeout=15, every=0.25)
            assert took < 10, took
            assert me.phase_record("main", 1).state is P.INTERRUPTED
            me.acquire(["main"], "r2", "migrate rollback --host main")
        finally:
            holder.kill()
            holder.wait()


def test_a_role_that_cannot_create_the_tables_is_told_so(server: PgServer,
                                                        tmp_path: Path) -> None:
    name = server.create_database().rsplit("/", 1)[1]
    server.psql(f"ALTER DATABASE {name} OWNER TO postgres")
    server.psql("REVOKE CREATE ON SCHEMA public FROM PUBLIC", db=name)
    with pytest.raises(ConfigError, match="cannot set up the journal's tables .*permission "
                                          "denied for schema public"):
        team(server.url(name), tmp_path)
