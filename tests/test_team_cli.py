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
from pathlib import Path

import pytest

from tests.pg import PgServer, running_server, wait_until
from tests.projects import Proj, make_project
from tests.servers import AgentServer, serving

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


@pytest.fixture
def agent() -> Iterator[AgentServer]:
    with serving(AgentServer()) as server:
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
    pg.start()
    wait_until(lambda: state_of(b, url) == "interrupted", 15)
    res = b.migrate("--output", "json", "resume", "--host", "main", env=env(url), timeout=120)
    assert res.returncode == 0, res.stderr
    assert state_of(a, url) == "completed"


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
