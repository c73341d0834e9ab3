"""Issue 10's engine-side promises, end to end through the real `migrate` on local hosts:
the default step timeout (steps and undos), undo retries only for what may pass next time
(an unreachable host, a timeout) on the `undo_retry_delay` schedule, the `run_interrupted`
notification, a resumed rollback that ends its run, `history --host` matching names
exactly, and a check step whose scripted timeline starts at the phase's start."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.support.projects import Proj, make_project
from tests.support.servers import WebhookSink, serving

pytestmark = pytest.mark.integration


def with_defaults(tmp_path: Path, defaults: str, hosts: tuple[str, ...] = ("main",),
                  extra: str = "") -> Proj:
    return make_project(tmp_path, hosts=hosts, migration=(
        "name: engine\ninventory: inventory/hosts.yml\npoll_interval: 200ms\n"
        f"defaults: {defaults}\n{extra}"))


def events(proj: Proj, *args: str) -> list[dict[str, object]]:
    return json.loads(proj.migrate("--output", "json", "history", *args).stdout)["events"]


def test_default_step_timeout_stops_commands_and_undos(tmp_path: Path) -> None:
    proj = with_defaults(tmp_path, "{step_timeout: 1s, undo_retries: 0}")
    proj.phase(1, "slow", """\
        phase: 1
        triggers: []
        steps:
          - id: own-timeout
            command: 'sleep 2 && touch {{ vars.marker_dir }}/own'
            rollback_command: 'sleep 30'
            timeout: 10s
          - id: slow
            command: 'sleep 30'
            rollback: none
        """)
    t0 = time.monotonic()
    res = proj.migrate("--output", "json", "phase", "1", "--host", "main")
    took = time.monotonic() - t0
    assert (proj.markers / "own").exists()  # a step's own timeout wins over the default
    assert res.returncode == 3, res.stderr  # the undo `sleep 30` hit own-timeout's 10s
    doc = json.loads(res.stdout)
    assert [n for n in doc["needs_human"] if n.startswith("main: step own-timeout")], doc
    failed = [e for e in events(proj) if e["kind"] == "step_failed"]
    assert failed and "timed out after 1s" in str(failed[0]["detail"])
    assert took < 25


def test_default_step_timeout_stops_a_playbook(tmp_path: Path) -> None:
    proj = with_defaults(tmp_path, "{step_timeout: 2s}")
    proj.write("playbooks/hang.yml", "- hosts: all\n  gather_facts: false\n  tasks:\n"
               "    - ansible.builtin.command: sleep 60\n")
    proj.phase(1, "hang", """\
        phase: 1
        triggers: []
        steps:
          - id: hang
            playbook: playbooks/hang.yml
            rollback: none
        """)
    t0 = time.monotonic()
    res = proj.migrate("phase", "1", "--host", "main")
    assert res.returncode == 1, res.stderr
    assert time.monotonic() - t0 < 30
    failed = [e for e in events(proj) if e["kind"] == "step_failed"]
    assert "timed out after 2s" in str(failed[0]["detail"])


def test_a_failing_undo_is_not_retried_a_timed_out_one_is_on_schedule(tmp_path: Path) -> None:
    proj = with_defaults(tmp_path, "{step_timeout: 1s, undo_retries: 2, undo_retry_delay: 700ms}")
    proj.phase(1, "undo", """\
        phase: 1
        triggers: []
        steps:
          - id: fails-to-undo
            command: 'true'
            rollback_command: 'date +%s.%N >> {{ vars.marker_dir }}/failing; exit 1'
          - id: hangs-to-undo
            command: 'true'
            rollback_command: 'date +%s.%N >> {{ vars.marker_dir }}/hanging; sleep 30'
          - id: breaks
            command: 'exit 1'
            rollback: none
        """)
    res = proj.migrate("phase", "1", "--host", "main")
    assert res.returncode == 3, res.stderr
    failing = (proj.markers / "failing").read_text().split()
    hanging = [float(t) for t in (proj.markers / "hanging").read_text().split()]
    assert len(failing) == 1  # exit 1 fails the same way again: no retry
    assert len(hanging) == 3  # a timeout may pass next time: 1 + undo_retries
    gaps = [b - a for a, b in zip(hanging, hanging[1:], strict=False)]
    assert all(gap >= 1.0 + 0.7 - 0.2 for gap in gaps), gaps  # timeout, then the delay
    kinds = [e["kind"] for e in events(proj)]
    assert kinds.count("step_rollback_retry") == 2


def test_history_host_is_an_exact_name_not_a_pattern(tmp_path: Path) -> None:
    proj = make_project(tmp_path, hosts=("a_b", "axb", "a%"))
    proj.phase(1, "w", "phase: 1\ntriggers: []\nsteps:\n  - id: w\n    wait: 1ms\n")
    assert proj.migrate("phase", "1", "--host", "axb").returncode == 0
    assert {e["host"] for e in events(proj, "--host", "axb")} == {"axb"}
    assert events(proj, "--host", "a_b") == []  # `_` is not a wildcard
    assert events(proj, "--host", "a%") == []  # nor `%`


def test_run_interrupted_is_notified(tmp_path: Path) -> None:
    with serving(WebhookSink()) as sink:
        proj = make_project(tmp_path, hosts=("main",), migration=(
            "name: engine\ninventory: inventory/hosts.yml\npoll_interval: 200ms\n"
            f"notify:\n  - url: {sink.url}\n    events: [run_interrupted]\n"))
        proj.phase(1, "w", """\
            phase: 1
            triggers: []
            steps:
              - id: a
                command: 'true'
                rollback: none
              - id: b
                command: 'true'
                rollback: none
            """)
        res = proj.migrate("phase", "1", "--host", "main",
                           env={"MIGRATE_FAULT_KILL_AFTER_EVENT": "3"})
        assert res.returncode == -signal.SIGKILL
        proj.migrate("rollback", "--host", "main", "--yes")  # finds the dead run
        sink.got.wait(10)
    assert [p["event"] for p in sink.received] == ["run_interrupted"], sink.received
    assert "main" in sink.received[0]["text"]


def test_a_resumed_rollback_ends_its_run(tmp_path: Path) -> None:
    proj = make_project(tmp_path, hosts=("main",))
    proj.phase(1, "r", """\
        phase: 1
        triggers: []
        steps:
          - id: a
            command: 'touch {{ vars.marker_dir }}/a'
            rollback_command: 'rm -f {{ vars.marker_dir }}/a'
          - id: b
            command: 'exit 1'
            rollback: none
        """)
    # run_started, a started, a ok, b started, b failed, rollback_started, undo b started:
    # killed in the middle of the rollback
    res = proj.migrate("phase", "1", "--host", "main", env={"MIGRATE_FAULT_KILL_AFTER_EVENT": "7"})
    assert res.returncode == -signal.SIGKILL
    run_id = str(events(proj)[0]["run_id"])
    done = proj.migrate("resume", "--host", "main")
    assert done.returncode in (0, 1), done.stderr
    assert not (proj.markers / "a").exists()
    report = json.loads(proj.migrate("report", run_id, "--format", "json").stdout)
    assert report["outcome"] == "rolled_back", report


def test_a_check_steps_timeline_starts_at_the_phase_start(tmp_path: Path) -> None:
    proj = make_project(tmp_path, hosts=("main",), migration=(
        "name: engine\ninventory: inventory/hosts.yml\npoll_interval: 200ms\n"
        "metrics:\n  ready:\n    source: scripted\n"
        "    values: [{at: 0s, value: fail}, {at: 3s, value: pass}]\n"))
    proj.phase(1, "c", """\
        phase: 1
        triggers: []
        steps:
          - id: ready
            check: ready
            timeout: 30s
        """)
    t0 = time.monotonic()
    res = proj.migrate("phase", "1", "--host", "main")
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t0 >= 2.5  # not at once: the timeline did not jump to its end
