"""A team on one journal, as two operators' checkouts of one project against a real
PostgreSQL: locks that hold across checkouts, a dead holder finished from the other one,
the database going away mid-phase, two watchers acting once, and `state copy`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.pg import PgServer, running_server, wait_until
from tests.support.projects import Proj, make_project
from tests.support.servers import AgentServer

pytestmark = pytest.mark.integration

MIGRATION = """\
name: team
inventory: inventory/hosts.yml
poll_interval: 300ms
state:
  timeout: 3s
metrics:
  health:
    source: http
    url: '{agent}/health'
    expect: {{status: ok}}
triggers:
  health_failure: {{metric: health, failing: true}}
"""

PHASE = """\
phase: 1
steps:
  - id: one
    playbook: playbooks/touch.yml
    rollback: rollback/untouch.yml
  - id: soak
    wait: {wait}
"""


@pytest.fixture
def pg() -> Iterator[PgServer]:
    with running_server() as server:
        yield server


def checkouts(tmp_path: Path, agent: AgentServer, wait: str = "1s") -> tuple[Proj, Proj]:
    a = make_project(tmp_path / "a", MIGRATION.format(agent=agent.url))
    a.phase(1, "p", PHASE.format(wait=wait))
    b_root = tmp_path / "b" / "proj"
    shutil.copytree(a.root, b_root)
    return a, Proj(b_root, a.markers)


def env(url: str) -> dict[str, str]:
    return {"MIGRATE_STATE_URL": url}


def spawn(proj: Proj, url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "--project", str(proj.root),
                             *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **env(url)))


def state_of(proj: Proj, url: str, host: str = "main") -> str:
    res = proj.migrate("--output", "json", "status", env=env(url))
    assert res.returncode == 0, res.stderr
    return str(json.loads(res.stdout)["hosts"][host]["phases"]["1"]["state"])


def test_a_lock_held_in_one_checkout_is_refused_in_the_other(
        tmp_path: Path, pg: PgServer, agent: AgentServer) -> None:
    url = pg.create_database()
    a, b = checkouts(tmp_path, agent, wait="10s")
    child = spawn(a, url, "phase", "1", "--host", "main")
    try:
        wait_until(lambda: state_of(b, url) == "running", 30)
        res = b.migrate("phase", "1", "--host", "main", env=env(url))
        assert res.returncode == 4, res.stderr
        assert "pid" in res.stderr and "phase 1 --host main" in res.stderr and "since" in res.stderr
        assert not (a.root / ".migrate" / "state.db").exists()  # all in the team database
    finally:
        child.send_signal(signal.SIGTERM)
        child.communicate(timeout=60)


def test_concurrent_starts_from_both_checkouts_run_exactly_once(
        tmp_path: Path, pg: PgServer, agent: AgentServer) -> None:
    url = pg.create_database()
    a, b = checkouts(tmp_path, agent, wait="2s")
    runs = [spawn(p, url, "phase", "1", "--host", "main") for p in (a, b)]
    codes = sorted(p.wait(timeout=120) for p in runs)
    assert codes == [0, 4], [p.stderr.read() if p.stderr else "" for p in runs]


def test_a_killed_holder_is_finished_from_the_other_checkout(
        tmp_path: Path, pg: PgServer, agent: AgentServer) -> None:
    url = pg.create_database()
    a, b = checkouts(tmp_path, agent, wait="60s")
    child = spawn(a, url, "phase", "1", "--host", "main")
    wait_until(lambda: (a.markers / "main-one").exists(), 60)
    wait_until(lambda: state_of(b, url) == "running", 30)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    took = wait_until(lambda: state_of(b, url) == "interrupted", 10)
    assert took <= 10
    res = b.migrate("--output", "json", "rollback", "--host", "main", "--phase", "1",
                    env=env(url))
    assert res.returncode == 0, res.stderr
    assert not (a.markers / "main-one").exists()  # b's rollback playbook undid a's step
    assert state_of(a, url) == "rolled_back"


def test_database_stopped_mid_phase_stops_the_run_then_resume_completes(
        tmp_path: Path, pg: PgServer, agent: AgentServer) -> None:
    url = pg.create_database()
    a, b = checkouts(tmp_path, agent, wait="8s")
    child = spawn(a, url, "phase", "1", "--host", "main")
    wait_until(lambda: state_of(b, url) == "running", 30)
    time.sleep(0.5)
    pg.stop(mode="immediate")
    out, err = child.communicate(timeout=60)
    assert child.returncode == 3, err
    assert "journal" in err.splitlines()[-1].lower()
    # no thread died loudly: the monitor, the heartbeat and the receiver were supervised
    assert "Traceback" not in err and "Exception in thread" not in err, err
    pg.start()
    wait_until(lambda: state_of(b, url) == "interrupted", 15)
    assert pg.locks(url) == []  # no lock held by the dead run
    dead = json.loads(b.migrate("--output", "json", "history", env=env(url)).stdout)["events"]
    assert [e["kind"] for e in dead if e["kind"] in ("run_interrupted", "phase_completed")] \
        == ["run_interrupted"]
    res = b.migrate("--output", "json", "resume", "--host", "main", env=env(url), timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    assert state_of(a, url) == "completed"
    assert pg.locks(url) == []


def test_two_watchers_one_active_one_rollback_and_takeover(
        tmp_path: Path, pg: PgServer, agent: AgentServer) -> None:
    url = pg.create_database()
    a, b = checkouts(tmp_path, agent, wait="0s")
    res = a.migrate("phase", "1", "--host", "main", env=env(url))
    assert res.returncode == 0, res.stderr
    first = spawn(a, url, "watch", "--host", "main", "--for", "60s")
    time.sleep(2)
    second = spawn(b, url, "watch", "--host", "main", "--for", "60s")
    time.sleep(2)
    first.send_signal(signal.SIGKILL)  # the active one dies
    first.wait(timeout=10)
    killed_at = time.monotonic()
    events: list[dict[str, object]] = []

    def second_took_over() -> bool:
        nonlocal events
        events = json.loads(b.migrate("--output", "json", "history", env=env(url)).stdout
                            )["events"]
        return any(e["kind"] == "watch_started" and e["run_id"] != events[0]["run_id"]
                   for e in events if e["kind"] == "watch_started") and \
            sum(1 for e in events if e["kind"] == "watch_started") >= 2
    wait_until(second_took_over, 15)
    assert time.monotonic() - killed_at <= 12
    agent.health["status"] = "degraded"  # now a trigger fires: the active one acts, once
    out, err = second.communicate(timeout=60)
    assert second.returncode == 1, err
    events = json.loads(b.migrate("--output", "json", "history", env=env(url)).stdout)["events"]
    assert sum(1 for e in events if e["kind"] == "rollback_started") == 1
    assert state_of(b, url) == "rolled_back"


def test_two_live_watchers_act_once(tmp_path: Path, pg: PgServer, agent: AgentServer) -> None:
    url = pg.create_database()
    a, b = checkouts(tmp_path, agent, wait="0s")
    assert a.migrate("phase", "1", "--host", "main", env=env(url)).returncode == 0
    watchers = [spawn(p, url, "watch", "--host", "main", "--for", "20s") for p in (a, b)]
    time.sleep(3)
    agent.health["status"] = "degraded"
    codes = []
    wait_until(lambda: any(w.poll() is not None for w in watchers), 30)
    for w in watchers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
        w.wait(timeout=30)
        codes.append(w.returncode)
    events = json.loads(a.migrate("--output", "json", "history", env=env(url)).stdout)["events"]
    assert sum(1 for e in events if e["kind"] == "rollback_started") == 1
    assert 1 in codes  # the active one rolled back and said so


def test_state_copy_moves_an_embedded_journal(tmp_path: Path, pg: PgServer,
                                              agent: AgentServer) -> None:
    a, _ = checkouts(tmp_path, agent, wait="0s")
    assert a.migrate("phase", "1", "--host", "main").returncode == 0  # embedded
    url = pg.create_database()
    res = a.migrate("--output", "json", "state", "copy", "--to", url)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["rows"]["events"] > 0
    assert state_of(a, url) == "completed"  # the team database has the history
    again = a.migrate("state", "copy", "--to", url)
    assert again.returncode == 4 and "not empty" in again.stderr


# --- a watcher whose database session is killed while a fire is pending ------------------------
def events_of(proj: Proj, url: str) -> list[dict[str, object]]:
    res = proj.migrate("--output", "json", "history", env=env(url))
    assert res.returncode == 0, res.stderr
    events: list[dict[str, object]] = json.loads(res.stdout)["events"]
    return events


def kinds(events: list[dict[str, object]], kind: str) -> list[dict[str, object]]:
    return [e for e in events if e["kind"] == kind]


@contextmanager
def deposed(pg: PgServer, url: str, key: str,
            standbys: list[subprocess.Popen[str]]) -> Iterator[None]:
    """Kill the active watcher's leader session and take its leadership before anyone else
    can, as another watcher would; hold it in the block.

    A standby watcher tries the lock every few hundred milliseconds, and one of its tries
    can land between the kill and the take however close together they are (it did, in
    CI). So the standbys are paused for the moment of the change: stopped, given time for
    a try already sent to be answered (the lock was still held then), and let go once the
    test holds the lock."""
    import psycopg

    from orchestrator.state.locks import NS_LEADER, advisory_key, as_oid

    for p in standbys:
        p.send_signal(signal.SIGSTOP)
    try:
        time.sleep(0.5)
        with psycopg.connect(url, autocommit=True) as conn:
            # the session that holds the leadership, found by its lock (a standby's
            # leader session carries the same application name)
            row = conn.execute(
                "WITH killed AS MATERIALIZED (SELECT count(pg_terminate_backend(pid, 10000)) "
                "AS n FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = %s AND objid = %s AND objsubid = 2 "
                "AND database = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())) "
                "SELECT n, pg_try_advisory_lock(%s, %s) FROM killed",
                (as_oid(NS_LEADER), as_oid(advisory_key(key)), NS_LEADER,
                 advisory_key(key))).fetchone()
            for p in standbys:
                p.send_signal(signal.SIGCONT)
            standbys = []
            assert row is not None and tuple(row) == (1, True), row
            yield
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (NS_LEADER, advisory_key(key)))
    finally:
        for p in standbys:
            p.send_signal(signal.SIGCONT)


@pytest.mark.parametrize("watchers", [1, 2])
def test_a_watcher_whose_session_is_killed_while_a_fire_is_pending_stands_by(
        tmp_path: Path, pg: PgServer, agent: AgentServer, watchers: int) -> None:
    """The deposed watcher does not act on the fire it had pending, says it stands by, and
    acts again only after winning an election; with two, the phase is rolled back once."""
    url = pg.create_database()
    a, b = checkouts(tmp_path, agent, wait="0s")
    for proj in (a, b):  # the trigger must hold 8 s before it fires: a pending fire
        proj.write("migration.yaml", (proj.root / "migration.yaml").read_text().replace(
            "failing: true}", "failing: true, for: 8s}"))
    assert a.migrate("phase", "1", "--host", "main", env=env(url)).returncode == 0
    first = spawn(a, url, "watch", "--host", "main", "--for", "60s")
    procs = [first]
    try:
        wait_until(lambda: len(kinds(events_of(a, url), "watch_started")) == 1, 30)
        if watchers == 2:
            procs.append(spawn(b, url, "watch", "--host", "main", "--for", "60s"))
            wait_until(lambda: any(e["detail"] == "standby"
                                   for e in kinds(events_of(a, url), "watch_role")), 30)
        active_run = kinds(events_of(a, url), "watch_started")[0]["run_id"]
        agent.health["status"] = "degraded"
        wait_until(lambda: kinds(events_of(a, url), "trigger_pending"), 10, every=0.05)
        pending_at = time.monotonic()
        with deposed(pg, url, "watch:main", procs[1:]):
            assert not kinds(events_of(a, url), "trigger_fired")  # pending, not yet fired
            # the fire comes due (8 s) while another leads: the deposed one must not act
            wait_until(lambda: any(e["run_id"] == active_run and
                                   str(e["detail"]).startswith("standby:")
                                   for e in kinds(events_of(a, url), "watch_role")), 15)
            time.sleep(max(0.0, pending_at + 11 - time.monotonic()))
            events = events_of(a, url)
            assert kinds(events, "rollback_started") == [], events
            assert kinds(events, "rollback_requested") == [], events
            assert state_of(a, url) == "completed"
            before = len(events)
        # now one of them wins the election and acts, once
        wait_until(lambda: any(p.poll() is not None for p in procs), 60)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        outs = [p.communicate(timeout=60) for p in procs]
        codes = [p.returncode for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate(timeout=30)
    for _, err in outs:
        assert "Traceback" not in err and "Exception in thread" not in err, err
    assert "no longer the active watcher" in outs[0][1], outs[0][1]
    assert "standing by" in outs[0][1]
    events = events_of(a, url)
    started = kinds(events, "rollback_started")
    assert len(started) == 1, [(e["kind"], e["run_id"]) for e in events]
    assert events.index(started[0]) >= before  # only after the election was won again
    assert codes.count(1) == 1 and 3 not in codes, (codes, outs)
    actor = codes.index(1)
    assert "active again" in outs[actor][1] or "taking over" in outs[actor][1], outs[actor][1]
    assert state_of(a, url) == "rolled_back"
    assert pg.locks(url) == []
