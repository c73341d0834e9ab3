"""main and pc2 for real: network namespaces with their own sshd, reached by ansible-runner
over SSH and by fabric; tcp probes run *from* main; cut-offs and unreachable hosts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.netns import Lab
from tests.support.projects import Proj, make_project

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("netns")]

MIGRATION = """\
name: two-hosts
inventory: inventory/hosts.yml
poll_interval: 500ms
metrics:
  pc2_reachable:
    source: tcp
    address: '{{ hostvars.pc2.ansible_host }}:22'
    from: main
    timeout: 1s
triggers:
  cross_machine_failure: {metric: pc2_reachable, failing: true, for: 2s}
"""


def project(tmp_path: Path, lab: Lab, extra_host: str = "") -> Proj:
    proj = make_project(tmp_path, migration=MIGRATION)
    inv = ("all:\n  vars:\n"
           f"    marker_dir: {proj.markers}\n"
           "    agent_service: \"agent; touch /tmp/migrate-injected\"\n"
           "  hosts:\n"
           f"    main:\n{lab.host_vars('main')}"
           f"    pc2:\n{lab.host_vars('pc2')}" + extra_host)
    proj.write("inventory/hosts.yml", inv)
    return proj


def whoami_phase(proj: Proj) -> None:
    proj.phase(1, "whoami", """\
        phase: 1
        triggers: []
        steps:
          - id: ansible-here
            playbook: playbooks/whoami.yml
            rollback: none
          - id: fabric-here
            command: 'ip -4 -o addr show eth0 > {{ vars.marker_dir }}/{{ host }}-fabric && echo {{ vars.agent_service }} > {{ vars.marker_dir }}/{{ host }}-quoted'
            rollback_command: 'rm -f {{ vars.marker_dir }}/{{ host }}-fabric'
        """)
    proj.write("playbooks/whoami.yml", """\
- name: record where this ran
  hosts: all
  gather_facts: false
  tasks:
    - name: this host's own address
      ansible.builtin.shell: "ip -4 -o addr show eth0 > {{ marker_dir }}/{{ inventory_hostname }}-ansible"
      changed_when: true
""")


def test_work_runs_on_each_host_over_ssh(tmp_path: Path, lab: Lab) -> None:
    proj = project(tmp_path, lab)
    whoami_phase(proj)
    res = proj.migrate("phase", "1", "--host", "main", "--host", "pc2")
    assert res.returncode == 0, res.stderr
    for name, host in lab.hosts.items():
        for how in ("ansible", "fabric"):
            text = (proj.markers / f"{name}-{how}").read_text()
            assert f"inet {host.address}/24" in text, (name, how, text)
        # the host variable with shell metacharacters arrived as one quoted argument
        assert (proj.markers / f"{name}-quoted").read_text().strip() == \
            "agent; touch /tmp/migrate-injected"
    assert not Path("/tmp/migrate-injected").exists()
    # fabric output was kept in the run's artifacts
    run_dir = next((proj.root / ".migrate" / "runs").iterdir())
    assert (run_dir / "fabric-here" / "main.log").exists()


def test_precondition_is_probed_from_main_and_refuses(tmp_path: Path, lab: Lab) -> None:
    proj = project(tmp_path, lab)
    whoami_phase(proj)
    body = (proj.root / "phases/1-whoami.yaml").read_text()
    (proj.root / "phases/1-whoami.yaml").write_text(
        body.replace("triggers: []", "triggers: []\npreconditions: [pc2_reachable]"))
    pc2 = lab.hosts["pc2"].address
    # main loses its route to pc2; the orchestrator itself can still reach pc2
    lab.hosts["main"].run(f"ip route add blackhole {pc2}/32")
    try:
        res = proj.migrate("phase", "1", "--host", "main")
        assert res.returncode == 4, res.stderr
        assert "preconditions failing" in res.stderr and "pc2_reachable on main" in res.stderr
        assert not list(proj.markers.glob("main-*"))
    finally:
        lab.hosts["main"].run(f"ip route del blackhole {pc2}/32")
    ok = proj.migrate("phase", "1", "--host", "main")
    assert ok.returncode == 0, ok.stderr


def test_cutting_pc2_off_rolls_main_back(tmp_path: Path, lab: Lab) -> None:
    proj = project(tmp_path, lab)
    proj.phase(1, "soak", """\
        phase: 1
        steps:
          - id: one
            playbook: playbooks/touch.yml
            rollback: rollback/untouch.yml
          - id: soak
            wait: 60s
        """)
    proc = proj.spawn("--output", "json", "phase", "1", "--host", "main")
    try:
        deadline = time.monotonic() + 60
        while not (proj.markers / "main-one").exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        time.sleep(1.0)
        lab.cut("pc2")
        cut_at = time.monotonic()
        out, err = proc.communicate(timeout=90)
        took = time.monotonic() - cut_at
    finally:
        lab.restore("pc2")
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    # fires within `for` (2 s) plus two polls (plus the probe's own 1 s timeout)
    assert json.loads(out)["reason"].startswith("trigger cross_machine_failure: pc2_reachable")
    events = json.loads(proj.migrate("--output", "json", "history").stdout)["events"]
    kinds = [e["kind"] for e in events]
    assert kinds.index("trigger_fired") < kinds.index("rollback_completed")
    assert took < 30
    assert not (proj.markers / "main-one").exists()  # undone over SSH on main


def test_unreachable_host_fails_bounded_and_rollback_failure_names_it(tmp_path: Path,
                                                                      lab: Lab) -> None:
    proj = project(tmp_path, lab)
    proj.phase(1, "lost", """\
        phase: 1
        triggers: []
        steps:
          - id: one
            playbook: playbooks/touch.yml
            rollback: rollback/untouch.yml
            timeout: 15s
          - id: soak
            wait: 3s
          - id: two
            command: 'true'
            rollback: none
            timeout: 10s
        """)
    proc = proj.spawn("--output", "json", "phase", "1", "--host", "main")
    try:
        deadline = time.monotonic() + 60
        while "do main one" not in proj.order():  # the play's last task has run
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        time.sleep(0.5)  # step one ends; the soak begins
        lab.cut("main")
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=240)
        took = time.monotonic() - t0
    finally:
        lab.restore("main")
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err
    doc = json.loads(out)
    assert doc["outcome"] == "rollback_failed"
    assert any(n.startswith("main: step one") for n in doc["needs_human"]), doc
    assert took < 90
    events = json.loads(proj.migrate("--output", "json", "history").stdout)["events"]
    kinds = [e["kind"] for e in events]
    assert "step_rollback_retry" in kinds  # the undo on the unreachable host was retried
    assert (proj.markers / "main-one").exists()  # the marker really was left behind


def test_remote_host_without_nvml_is_a_clear_error_at_plan_time(tmp_path: Path, lab: Lab) -> None:
    proj = project(tmp_path, lab)
    proj.write("migration.yaml", MIGRATION.replace(
        "triggers:\n", "  gpu_mem:\n    source: nvml\n    field: memory_used_mib\n"
        "triggers:\n  gpu_full: {metric: gpu_mem, above: 20000}\n"))
    proj.phase(1, "gpu", "phase: 1\ntriggers: [gpu_full]\nsteps:\n  - id: w\n    wait: 1s\n")
    res = proj.migrate("plan", "1", "--host", "main")
    assert res.returncode == 2, res.stderr
    assert "metric 'gpu_mem' (nvml) cannot be read: main: NVML unavailable" in res.stderr
    assert "Traceback" not in res.stderr
