"""Triggers watched for real: the CLI runs real playbooks while a test-controlled agent
endpoint degrades; the monitor fires, cancels the step in flight and rolls back."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.projects import Proj, make_project, running
from tests.support.servers import AgentServer, WebhookSink, serving

pytestmark = pytest.mark.integration

MIGRATION = """\
name: monitored
inventory: inventory/hosts.yml
poll_interval: 500ms
metrics:
  vram:
    source: exporter
    url: '{agent}/metrics'
    series: 'DCGM_FI_DEV_FB_USED{{gpu="0"}}'
  health:
    source: http
    url: '{agent}/health'
    expect: {{status: ok}}
    timeout: 300ms
  failures:
    source: http
    url: '{agent}/health'
    field: model_load_failures
  dead:
    source: http
    url: 'http://127.0.0.1:9/none'
    field: x
    nodata_alert: 1s
triggers:
  vram_degradation: {{metric: vram, degrade_pct: 20, direction: up, baseline: phase-start}}
  health_failure: {{metric: health, failing: true, for: 2s}}
  model_load_failure: {{metric: failures, increase: 0}}
  vram_named: {{metric: vram, degrade_pct: 20, baseline: pre}}
  vram_notify: {{metric: vram, above: 5000, action: notify}}
  dead_metric: {{metric: dead, above: 1}}
notify:
  - url: '{hook}'
    events: [trigger_fired, rollback_started, rollback_completed, phase_completed, metric_nodata]
"""

SOAK = """\
phase: 1
name: Soak
triggers: {triggers}
bake: {bake}
steps:
  - id: one
    playbook: playbooks/touch.yml
    rollback: rollback/untouch.yml
  - id: soak
    wait: {wait}
"""


@pytest.fixture
def hook() -> Iterator[WebhookSink]:
    with serving(WebhookSink(fail_first=1)) as sink:
        yield sink


def project(tmp_path: Path, agent: AgentServer, hook: WebhookSink, triggers: str,
            wait: str = "60s", bake: str = "0s") -> Proj:
    proj = make_project(tmp_path, migration=MIGRATION.format(agent=agent.url, hook=hook.url))
    proj.phase(1, "soak", SOAK.format(triggers=triggers, wait=wait, bake=bake))
    return proj


def start(proj: Proj, *args: str) -> subprocess.Popen[str]:
    return proj.spawn("--output", "json", *args)


def wait_for(path: Path, proc: subprocess.Popen[str], limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"exited early: {proc.communicate()}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_vram_degradation_fires_cuts_the_wait_and_rolls_back(
        tmp_path: Path, agent: AgentServer, hook: WebhookSink) -> None:
    proj = project(tmp_path, agent, hook, "[vram_degradation, health_failure]")
    proc = start(proj, "phase", "1", "--host", "main")
    wait_for(proj.markers / "main-one", proc)
    time.sleep(1.0)  # a few good samples at the 1000 MiB baseline
    agent.gauges["DCGM_FI_DEV_FB_USED"] = 1301
    breach = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert time.monotonic() - breach < 20  # the 60 s wait was cut short
    doc = json.loads(out)
    assert doc["reason"] == "trigger vram_degradation: 1301 > 1200 (baseline 1000, +20%)"
    assert not (proj.markers / "main-one").exists()
    history = json.loads(proj.migrate("--output", "json", "history").stdout)["events"]
    fired = [e for e in history if e["kind"] == "trigger_fired"]
    assert len(fired) == 1
    # the human detail stays text; the facts are in the payload beside it
    assert fired[0]["detail"].startswith("trigger vram_degradation: 1301 > 1200")
    payload = fired[0]["payload"]
    assert (payload["value"], payload["threshold"], payload["baseline"]) == (1301, 1200, 1000)
    assert payload["trigger"] == "vram_degradation"
    kinds = [e["kind"] for e in history]
    assert kinds.index("trigger_fired") < kinds.index("rollback_started")
    # the monitor kept sampling, acting on nothing, through the rollback: the report's
    # chart shows whether the metric came back
    import sqlite3

    db = sqlite3.connect(proj.root / ".migrate" / "state.db")
    done = next(e["at"] for e in history if e["kind"] == "rollback_completed")
    during = db.execute("SELECT COUNT(*) FROM samples WHERE at > ? AND at <= ?",
                        (fired[0]["at"], done)).fetchone()[0]
    db.close()
    assert during >= 1, "no sample between the fire and the end of the rollback"
    status = json.loads(proj.migrate("--output", "json", "status").stdout)
    assert status["hosts"]["main"]["phases"]["1"]["reason"].startswith("trigger vram_degradation")
    # the webhook got the fire (after one 500, retried) with a human text
    deadline = time.monotonic() + 10
    while len(hook.received) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    events = [p["event"] for p in hook.received]
    assert "trigger_fired" in events and "rollback_completed" in events
    text = next(p["text"] for p in hook.received if p["event"] == "trigger_fired")
    assert "1301 > 1200" in text and hook.attempts > len(hook.received)


def test_trigger_cancels_a_running_playbook(tmp_path: Path, agent: AgentServer,
                                            hook: WebhookSink) -> None:
    proj = make_project(tmp_path, migration=MIGRATION.format(agent=agent.url, hook=hook.url))
    proj.write("playbooks/slow.yml", """\
- name: slow step
  hosts: all
  gather_facts: false
  tasks:
    - name: start
      ansible.builtin.shell: "echo do {{ inventory_hostname }} slow >> {{ marker_dir }}/order.log; touch {{ marker_dir }}/slow-started"
      changed_when: true
    - name: take long
      ansible.builtin.command: sleep 120.25
      changed_when: true
""")
    proj.write("rollback/slow.yml", """\
- name: undo slow
  hosts: all
  gather_facts: false
  tasks:
    - name: log
      ansible.builtin.shell: "echo undo {{ inventory_hostname }} slow >> {{ marker_dir }}/order.log"
      changed_when: true
""")
    proj.phase(1, "slow", """\
        phase: 1
        triggers: [model_load_failure]
        steps:
          - id: slow
            playbook: playbooks/slow.yml
            rollback: rollback/slow.yml
        """)
    proc = start(proj, "phase", "1", "--host", "main")
    wait_for(proj.markers / "slow-started", proc)
    agent.health["model_load_failures"] = 1
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 1, err
    assert time.monotonic() - t0 < 30, "the 120 s playbook was not cancelled"
    assert json.loads(out)["reason"].startswith("trigger model_load_failure: 1 rose by 1")
    assert proj.order() == ["do main slow", "undo main slow"]
    # ansible-core's task workers live in sessions of their own: the task itself is gone too
    assert running("sleep 120.25") == []


def test_flap_shorter_than_for_does_not_fire_and_bake_completes(
        tmp_path: Path, agent: AgentServer, hook: WebhookSink) -> None:
    proj = project(tmp_path, agent, hook, "[health_failure, vram_notify]", wait="1s", bake="3s")
    proc = start(proj, "phase", "1", "--host", "main")
    wait_for(proj.markers / "main-one", proc)
    agent.health_code = 500
    time.sleep(0.7)
    agent.health_code = 200
    agent.gauges["DCGM_FI_DEV_FB_USED"] = 6000  # notify-only trigger: must not roll back
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert (proj.markers / "main-one").exists()
    kinds = [e["kind"] for e in json.loads(
        proj.migrate("--output", "json", "history").stdout)["events"]]
    assert "bake_started" in kinds and kinds[-1] == "phase_completed"
    assert "rollback_started" not in kinds
    assert "trigger_fired" in kinds  # the notify one


def test_sustained_health_failure_during_bake_rolls_back(
        tmp_path: Path, agent: AgentServer, hook: WebhookSink) -> None:
    proj = project(tmp_path, agent, hook, "[health_failure]", wait="1ms", bake="30s")
    proc = start(proj, "phase", "1", "--host", "main")
    wait_for(proj.markers / "main-one", proc)
    agent.health["status"] = "degraded"
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1, err
    assert 2.0 <= elapsed < 20  # not before `for: 2s`
    assert re.fullmatch(r"trigger health_failure: health fails for [23]s", json.loads(out)["reason"])


def test_named_baseline_capture_then_use_and_missing_is_exit_2(
        tmp_path: Path, agent: AgentServer, hook: WebhookSink) -> None:
    proj = project(tmp_path, agent, hook, "[vram_named]", wait="1ms")
    missing = proj.migrate("phase", "1", "--host", "main")
    assert missing.returncode == 2
    assert missing.stderr.startswith("migration.yaml:27: trigger 'vram_named'")
    agent.gauges["DCGM_FI_DEV_FB_USED"] = 800
    cap = proj.migrate("--output", "json", "baseline", "capture", "--host", "main",
                       "--name", "pre", "--duration", "1s")
    assert cap.returncode == 0, cap.stderr
    assert json.loads(cap.stdout)["hosts"]["main"]["vram"] == 800
    plan = proj.migrate("plan", "1", "--host", "main")
    assert "baseline main: 800" in plan.stdout
    agent.gauges["DCGM_FI_DEV_FB_USED"] = 1000  # +25% over the named baseline
    res = proj.migrate("--output", "json", "phase", "1", "--host", "main")
    assert res.returncode == 1, res.stderr
    assert json.loads(res.stdout)["reason"] == \
        "trigger vram_named: 1000 > 960 (baseline 800, +20%)"


def test_nodata_is_alerted_not_dropped(tmp_path: Path, agent: AgentServer,
                                       hook: WebhookSink) -> None:
    proj = project(tmp_path, agent, hook, "[dead_metric]", wait="2500ms")
    res = proj.migrate("phase", "1", "--host", "main")
    assert res.returncode == 0, res.stderr  # numeric no data is skipped by default
    assert "no data from dead" in res.stderr
    events = json.loads(proj.migrate("--output", "json", "history").stdout)["events"]
    assert [e["kind"] for e in events].count("metric_nodata") == 1


def test_check_step_and_preconditions(tmp_path: Path, agent: AgentServer,
                                      hook: WebhookSink) -> None:
    proj = make_project(tmp_path, migration=MIGRATION.format(agent=agent.url, hook=hook.url))
    proj.phase(1, "check", """\
        phase: 1
        triggers: []
        preconditions: [health]
        steps:
          - id: one
            playbook: playbooks/touch.yml
            rollback: rollback/untouch.yml
          - id: health-green
            check: health
            timeout: 1500ms
        """)
    agent.health_code = 503
    refused = proj.migrate("phase", "1", "--host", "main")
    assert refused.returncode == 4
    assert "preconditions failing" in refused.stderr and "health on main" in refused.stderr
    assert not (proj.markers / "main-one").exists()
    agent.health_code = 200
    assert proj.migrate("phase", "1", "--host", "main").returncode == 0
    assert proj.migrate("rollback", "--host", "main", "--yes").returncode == 0
    # now the check fails after its timeout: the phase rolls back
    proc = start(proj, "phase", "1", "--host", "main")
    wait_for(proj.markers / "main-one", proc)
    agent.health_code = 500  # precondition passed; the check itself now fails
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "health still failing after 1.5s" in json.loads(out)["reason"]


def test_status_while_running_shows_trigger_values(tmp_path: Path, agent: AgentServer,
                                                   hook: WebhookSink) -> None:
    proj = project(tmp_path, agent, hook, "[vram_degradation, health_failure]")
    proc = start(proj, "phase", "1", "--host", "main")
    try:
        wait_for(proj.markers / "main-one", proc)
        agent.gauges["DCGM_FI_DEV_FB_USED"] = 1100  # +10%: breaching nothing yet
        deadline = time.monotonic() + 20
        while True:
            doc = json.loads(proj.migrate("--output", "json", "status").stdout)
            phase = doc["hosts"]["main"]["phases"]["1"]
            vram = [t for t in phase.get("triggers", []) if t["trigger"] == "vram_degradation"]
            if vram and vram[0]["value"] == 1100:
                break
            assert time.monotonic() < deadline, doc
            time.sleep(0.3)
        assert phase["state"] == "running"
        assert (vram[0]["threshold"], vram[0]["baseline"], vram[0]["status"]) == (1200, 1000, "ok")
        text = proj.migrate("status").stdout
        assert "vram_degradation" in text and "1100 vs limit 1200 (baseline 1000)" in text
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
