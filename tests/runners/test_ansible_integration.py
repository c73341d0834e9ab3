"""Real ansible-playbook through ansible-runner on local-connection hosts, driven by the CLI.

Order and reversal are proven by files the playbooks write, not by the engine's report.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.projects import Proj, make_project, running

pytestmark = pytest.mark.integration

PHASE = """\
phase: 1
name: Markers
steps:
  - id: one
    playbook: playbooks/touch.yml
    rollback: rollback/untouch.yml
  - id: two
    command: 'echo do {{ host }} two >> {{ vars.marker_dir }}/order.log && touch {{ vars.marker_dir }}/{{ host }}-two'
    rollback_command: 'echo undo {{ host }} two >> {{ vars.marker_dir }}/order.log && rm {{ vars.marker_dir }}/{{ host }}-two'
  - id: three
    playbook: playbooks/{last}.yml
    rollback: rollback/{undo}.yml
"""


def project(tmp_path: Path, last: str = "touch", undo: str = "untouch") -> Proj:
    proj = make_project(tmp_path)
    proj.phase(1, "markers", PHASE.replace("{last}", last).replace("{undo}", undo))
    proj.phase(2, "next", "phase: 2\nrequires: [1]\nsteps:\n  - id: w\n    wait: 1ms\n")
    return proj


def test_two_hosts_complete_with_markers_on_each(tmp_path: Path) -> None:
    proj = project(tmp_path)
    res = proj.migrate("phase", "1", "--host", "main", "--host", "pc2")
    assert res.returncode == 0, res.stderr
    for host in ("main", "pc2"):
        for step in ("one", "two", "three"):
            assert (proj.markers / f"{host}-{step}").exists()
    # one Ansible run per step for both hosts, commands per host: all before the next step
    order = proj.order()
    assert order.index("do main one") < order.index("do pc2 two")
    assert order.index("do pc2 one") < order.index("do main two")
    status = json.loads(proj.migrate("--output", "json", "status").stdout)
    assert status["hosts"]["main"]["phases"]["1"]["state"] == "completed"
    assert status["hosts"]["main"]["phases"]["2"]["state"] == "pending"
    assert status["hosts"]["pc2"]["phases"]["1"]["state"] == "completed"
    # requires is now met on main
    res2 = proj.migrate("phase", "2", "--host", "main")
    assert res2.returncode == 0, res2.stderr


def test_failed_step_rolls_back_in_reverse_proven_by_files(tmp_path: Path) -> None:
    proj = project(tmp_path, last="fail")
    res = proj.migrate("phase", "1", "--host", "main")
    assert res.returncode == 1, res.stderr
    assert proj.order() == ["do main one", "do main two", "do main three",
                            "undo main three", "undo main two", "undo main one"]
    assert sorted(p.name for p in proj.markers.iterdir()) == ["order.log"]
    status = json.loads(proj.migrate("--output", "json", "status", "--host", "main").stdout)
    entry = status["hosts"]["main"]["phases"]["1"]
    assert entry["state"] == "rolled_back"
    assert "step three failed on main" in entry["reason"]
    history = json.loads(proj.migrate("--output", "json", "history", "--host", "main").stdout)
    kinds = [e["kind"] for e in history["events"]]
    assert kinds[0] == "run_started" and kinds[-1] == "rollback_completed"
    assert kinds.count("step_rolled_back") == 3
    first = history["events"][0]
    assert set(first) == {"at", "run_id", "host", "phase", "step", "kind", "detail", "payload",
                          "migration"}
    assert first["step"] is None and first["phase"] == 1


def test_rollback_failure_exits_3_and_names_the_step(tmp_path: Path) -> None:
    proj = project(tmp_path, last="fail", undo="fails")
    res = proj.migrate("--output", "json", "phase", "1", "--host", "main")
    assert res.returncode == 3, res.stderr
    doc = json.loads(res.stdout)
    assert doc["outcome"] == "rollback_failed"
    assert any("step three" in n for n in doc["needs_human"])
    # the remaining undos still ran
    assert proj.order()[-2:] == ["undo main two", "undo main one"]
    assert "A HUMAN IS NEEDED" not in res.stdout  # json output: one document only


def test_requires_refused_with_exit_4(tmp_path: Path) -> None:
    proj = project(tmp_path)
    res = proj.migrate("phase", "2", "--host", "main")
    assert res.returncode == 4
    assert "requires phase 1 completed, and it is pending" in res.stderr


def test_dry_run_leaves_no_trace_but_a_rehearsal_entry(tmp_path: Path) -> None:
    proj = project(tmp_path)
    res = proj.migrate("phase", "1", "--host", "main", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "would run" in res.stderr
    assert list(proj.markers.iterdir()) == []  # check mode wrote nothing, commands not run
    status = json.loads(proj.migrate("--output", "json", "status").stdout)
    assert status["hosts"]["main"]["phases"]["1"]["state"] == "pending"
    history = json.loads(proj.migrate("--output", "json", "history").stdout)
    assert [e["kind"] for e in history["events"]] == ["rehearsal"]
    assert not (proj.root / ".migrate" / "runs").exists()


def test_journal_files_are_owner_only(tmp_path: Path) -> None:
    proj = project(tmp_path)
    assert proj.migrate("phase", "1", "--host", "main").returncode == 0
    state = proj.root / ".migrate"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for path in state.glob("state.db*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    runs = state / "runs"
    for path in [runs, *runs.iterdir(), *[d for r in runs.iterdir() for d in r.iterdir()]]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def test_second_concurrent_run_is_refused_and_sigterm_rolls_back(tmp_path: Path) -> None:
    proj = make_project(tmp_path)
    proj.phase(1, "slow", """\
        phase: 1
        steps:
          - id: one
            playbook: playbooks/touch.yml
            rollback: rollback/untouch.yml
          - id: soak
            wait: 60s
        """)
    first = proj.spawn("phase", "1", "--host", "main")
    try:
        deadline = time.monotonic() + 60
        while not (proj.markers / "main-one").exists():
            assert time.monotonic() < deadline and first.poll() is None, first.stderr.read() if first.stderr else ""
            time.sleep(0.2)
        second = proj.migrate("phase", "1", "--host", "main")
        assert second.returncode == 4
        assert f"pid {first.pid}" in second.stderr
        assert "phase 1 --host main" in second.stderr and "since 20" in second.stderr
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, err
    assert "rolling the phase back" in err
    assert not (proj.markers / "main-one").exists()
    status = json.loads(proj.migrate("--output", "json", "status").stdout)
    assert status["hosts"]["main"]["phases"]["1"]["state"] == "rolled_back"
    assert "interrupted by the operator (SIGTERM)" in status["hosts"]["main"]["phases"]["1"]["reason"]


def test_manual_rollback_of_completed_phase_exits_0(tmp_path: Path) -> None:
    proj = project(tmp_path)
    assert proj.migrate("phase", "1", "--host", "main").returncode == 0
    res = proj.migrate("rollback", "--host", "main", "--yes")
    assert res.returncode == 0, res.stderr
    assert proj.order()[-3:] == ["undo main three", "undo main two", "undo main one"]
    assert not any(p.name.startswith("main-") for p in proj.markers.iterdir())


def test_status_is_fast_enough_to_not_import_ansible(tmp_path: Path) -> None:
    proj = project(tmp_path)
    code = (f"import sys; sys.argv=['migrate','--project',{str(proj.root)!r},'status']\n"
            "import orchestrator.cli as c\n"
            "try:\n c.main()\nexcept SystemExit: pass\n"
            "bad=[m for m in sys.modules if m.split('.')[0] in ('ansible_runner','fabric','paramiko','matplotlib','pynvml','jinja2')]\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ))
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_playbook_step_timeout_stops_the_task_and_rolls_back(tmp_path: Path) -> None:
    proj = make_project(tmp_path)
    proj.write("playbooks/hang.yml", """\
- name: hangs
  hosts: all
  gather_facts: false
  tasks:
    - name: begin
      ansible.builtin.file: {path: "{{ marker_dir }}/hang-began", state: touch, mode: "0644"}
    - name: hang
      ansible.builtin.command: sleep 30.75
      changed_when: true
""")
    proj.phase(1, "hang", """\
        phase: 1
        steps:
          - id: one
            playbook: playbooks/touch.yml
            rollback: rollback/untouch.yml
          - id: hang
            playbook: playbooks/hang.yml
            rollback: rollback/untouch.yml
            timeout: 3s
        """)
    t0 = time.monotonic()
    res = proj.migrate("--output", "json", "phase", "1", "--host", "main")
    took = time.monotonic() - t0
    assert res.returncode == 1, res.stderr
    assert (proj.markers / "hang-began").exists()
    assert "timed out after 3s" in json.loads(res.stdout)["reason"]
    assert took < 25  # the 30 s task did not run out its time
    assert running("sleep 30.75") == []  # nor does it go on behind the rollback
    assert not (proj.markers / "main-one").exists()
