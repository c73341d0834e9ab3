"""`alert:` triggers inside `migrate phase` and `migrate watch`: a push from Alertmanager
rolls the phase back at once, a forged push changes nothing, and status, history and
plan treat an alert trigger like any other."""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path

import pytest

from tests.support.projects import Proj, make_project
from tests.support.webhook import payload

pytestmark = pytest.mark.integration

TOKEN = "alert-token-for-the-phase-test"

MIGRATION = """\
name: alerting
inventory: inventory/hosts.yml
poll_interval: 5s
alertmanager:
  listen: 127.0.0.1:{port}
  token_env: MIGRATE_TEST_ALERT_TOKEN
triggers:
  rollback_alert:
    alert: MMAMigrationRollbackTrigger
    match: {{component: ModelManagerAgent}}
    host_label: instance
"""

PHASE = """\
phase: 1
steps:
  - id: one
    playbook: playbooks/touch.yml
    rollback: rollback/untouch.yml
  - id: soak
    wait: 30s
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def push(port: int, body: bytes, token: str | None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("POST", "/alerts", body=body, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def wait_listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listened on {port}")


def project(tmp_path: Path) -> tuple[Proj, int]:
    port = free_port()
    proj = make_project(tmp_path, MIGRATION.format(port=port))
    proj.phase(1, "p", PHASE)
    return proj, port


def test_a_pushed_alert_rolls_the_phase_back_and_a_forged_one_does_not(tmp_path: Path) -> None:
    proj, port = project(tmp_path)
    env = {"MIGRATE_TEST_ALERT_TOKEN": TOKEN}
    import os
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-m", "orchestrator", "--project", str(proj.root),
                              "--output", "json", "phase", "1", "--host", "main"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=dict(os.environ, **env))
    try:
        wait_listening(port)
        assert push(port, payload(), None) == 401
        assert push(port, payload(), "wrong-token") == 401
        assert push(port, b"{not json", TOKEN) == 400
        time.sleep(0.5)
        assert child.poll() is None  # none of that changed anything
        pushed = time.time()
        assert push(port, payload(), TOKEN) == 200
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 1, err
    doc = json.loads(out)
    assert doc["outcome"] == "rolled_back"
    assert doc["reason"].startswith("trigger rollback_alert: alert MMAMigrationRollbackTrigger")
    events = json.loads(proj.migrate("--output", "json", "history").stdout)["events"]
    fired = [e for e in events if e["kind"] == "trigger_fired"]
    assert len(fired) == 1
    assert fired[0]["payload"]["labels"]["component"] == "ModelManagerAgent"
    at = time.mktime(time.strptime(fired[0]["at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone \
        + float("0." + fired[0]["at"][20:23])
    assert at - pushed < 0.5  # fired on the push, not on the next 5 s poll
    assert not (proj.markers / "main-one").exists()  # the step was undone
    status = json.loads(proj.migrate("--output", "json", "status").stdout)
    assert status["hosts"]["main"]["phases"]["1"]["state"] == "rolled_back"


def test_plan_and_validate_show_the_alert_trigger(tmp_path: Path) -> None:
    proj, _ = project(tmp_path)
    res = proj.migrate("--output", "json", "plan", "1", "--host", "main")
    assert res.returncode == 0, res.stderr
    trig = json.loads(res.stdout)["triggers"][0]
    assert trig["condition"] == "alert" and "MMAMigrationRollbackTrigger" in trig["describe"]


def test_a_missing_token_is_a_clear_error_before_anything_runs(tmp_path: Path) -> None:
    proj, _ = project(tmp_path)
    res = proj.migrate("phase", "1", "--host", "main",
                       env={"MIGRATE_TEST_ALERT_TOKEN": ""})
    assert res.returncode == 2, res.stderr
    assert "MIGRATE_TEST_ALERT_TOKEN" in res.stderr and "Traceback" not in res.stderr
    assert not (proj.markers / "main-one").exists()
    history = json.loads(proj.migrate("--output", "json", "history").stdout)["events"]
    assert history == []  # no run was recorded
