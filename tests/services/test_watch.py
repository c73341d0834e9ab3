"""On-call: `migrate watch` against an agent endpoint the test controls, its /metrics
scraped over HTTP, and Ctrl-C pressed twice leaving the run interrupted."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request

import pytest

from tests.support.projects import Proj, running
from tests.support.servers import AgentServer

pytestmark = pytest.mark.integration

PHASES = {
    1: "phase: 1\nsteps:\n  - id: one\n    playbook: playbooks/touch.yml\n"
       "    rollback: rollback/untouch.yml\n",
    2: "phase: 2\nrequires: [1]\nsteps:\n  - id: two\n    playbook: playbooks/touch.yml\n"
       "    rollback: rollback/untouch.yml\n",
}


def completed(proj: Proj) -> Proj:
    """Phases 1 and 2 run and completed on main."""
    for n, body in PHASES.items():
        proj.phase(n, f"p{n}", body)
    for n in PHASES:
        res = proj.migrate("phase", str(n), "--host", "main")
        assert res.returncode == 0, res.stderr
    return proj


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, ...], float]:
    """/metrics as (name, host or phase, trigger or reason) -> value, migration checked."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
        text = r.read().decode()
    out: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            assert s.labels.get("migration") == "watched", s
            key = (s.name, *(s.labels[k] for k in ("host", "phase", "trigger", "reason")
                             if k in s.labels and not (k == "phase" and "host" in s.labels)))
            out[key] = s.value
    return out


def test_once_reports_nothing_fired(watched_project: Proj) -> None:
    proj = completed(watched_project)
    res = proj.migrate("--output", "json", "watch", "--host", "main", "--once")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["watched"] == ["main/phase 1", "main/phase 2"] and doc["cycles"] == 1


def test_watch_rolls_back_latest_phase_and_serves_metrics(watched_project: Proj,
                                                          agent: AgentServer) -> None:
    proj = completed(watched_project)
    port = free_port()
    proc = proj.spawn("--output", "json", "watch", "--host", "main", "--for", "60s",
                      "--metrics-port", str(port))
    try:
        # HELP/TYPE lines exist before the first poll; wait for the samples themselves.
        # SPEC section 7's names (migrate_trigger_state and migrate_watch_rollbacks are gone)
        wanted = {("migrate_trigger_value", "main", "model_load_failure"): 0.0,
                  ("migrate_trigger_firing", "main", "health_failure"): 0.0}
        got: dict[tuple[str, ...], float] = {}
        deadline = time.monotonic() + 20
        while not all(got.get(k) == v for k, v in wanted.items()) \
                or got.get(("migrate_watch_active",)) != 1.0:
            assert time.monotonic() < deadline, got
            assert proc.poll() is None, proc.communicate()
            try:
                got = scrape(port)
            except OSError:
                pass
            time.sleep(0.2)
        assert got[("migrate_rollbacks_total", "2", "model_load_failure")] == 0.0
        assert not any(k[0] in ("migrate_trigger_state", "migrate_watch_rollbacks_total")
                       for k in got)
        agent.health["model_load_failures"] = 2
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    doc = json.loads(out)
    assert doc["rollback"]["phase"] == 2 and doc["rollback"]["outcome"] == "rolled_back"
    assert "model_load_failure" in doc["rollback"]["reason"]
    assert not (proj.markers / "main-two").exists()
    assert (proj.markers / "main-one").exists()  # only the latest completed phase
    status = json.loads(proj.migrate("--output", "json", "status").stdout)
    assert status["hosts"]["main"]["phases"]["2"]["state"] == "rolled_back"
    assert status["hosts"]["main"]["phases"]["1"]["state"] == "completed"


def test_no_rollback_only_records_and_sigterm_stops_cleanly(watched_project: Proj,
                                                             agent: AgentServer) -> None:
    proj = completed(watched_project)
    agent.health["model_load_failures"] = 5
    proc = proj.spawn("--output", "json", "watch", "--host", "main", "--no-rollback")
    time.sleep(0.5)  # baselines are taken from the phases' own runs, so this fires at once
    deadline = time.monotonic() + 20
    while True:
        events = json.loads(proj.migrate("--output", "json", "history").stdout)["events"]
        if any(e["kind"] == "trigger_fired" for e in events):
            break
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "watch stopping" in err
    assert json.loads(out)["rollback"] is None
    status = json.loads(proj.migrate("--output", "json", "status").stdout)
    assert status["hosts"]["main"]["phases"]["2"]["state"] == "completed"


def test_ctrl_c_twice_leaves_the_run_interrupted(watched_project: Proj) -> None:
    proj = watched_project
    proj.phase(1, "slow", "phase: 1\ntriggers: []\nsteps:\n  - id: one\n"
               "    playbook: playbooks/touch.yml\n    rollback: rollback/untouch.yml\n"
               "  - id: soak\n    wait: 60s\n")
    proc = proj.spawn("phase", "1", "--host", "main")
    deadline = time.monotonic() + 60
    while not (proj.markers / "main-one").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "left interrupted" in err
    assert "Traceback" not in err
    status = json.loads(proj.migrate("--output", "json", "status").stdout)
    assert status["hosts"]["main"]["phases"]["1"]["state"] == "interrupted"
    refused = proj.migrate("phase", "1", "--host", "main")
    assert refused.returncode == 4
    rolled = proj.migrate("rollback", "--host", "main", "--yes")
    assert rolled.returncode == 0, rolled.stderr
    assert not (proj.markers / "main-one").exists()


SLOW_PLAY = """\
- name: slow
  hosts: all
  gather_facts: false
  tasks:
    - name: started
      ansible.builtin.file: {path: "{{ marker_dir }}/slow-started", state: touch, mode: "0644"}
    - name: long
      ansible.builtin.command: sleep 47.25
      changed_when: true
    - name: after
      ansible.builtin.file: {path: "{{ marker_dir }}/slow-after", state: touch, mode: "0644"}
"""


def test_ctrl_c_twice_during_a_playbook_stops_the_playbook_too(
        watched_project: Proj) -> None:
    proj = watched_project
    proj.write("playbooks/slow.yml", SLOW_PLAY)
    proj.phase(1, "slow", "phase: 1\ntriggers: []\nsteps:\n  - id: slow\n"
               "    playbook: playbooks/slow.yml\n    rollback: rollback/untouch.yml\n")
    proc = proj.spawn("phase", "1", "--host", "main")
    deadline = time.monotonic() + 60
    while not running("sleep 47.25"):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    time.sleep(0.5)
    left = running("sleep 47.25") + running(str(proj.root / "playbooks" / "slow.yml"))
    for pid in left:  # do not leave them running if the assertion below fails
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"the playbook outlived a double Ctrl-C: {err[-600:]}"
    assert not (proj.markers / "slow-after").exists()
    status = json.loads(proj.migrate("--output", "json", "status").stdout)
    assert status["hosts"]["main"]["phases"]["1"]["state"] == "interrupted"
