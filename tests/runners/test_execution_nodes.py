"""Playbook steps on execution nodes, over ansible-runner's remote job protocol, for real.

Two network namespaces, each with its own sshd (tests/support/netns.py), are the nodes
`east` (namespace main) and `west` (namespace pc2). The managed hosts are local to their
node (`ansible_connection: local`, `migrate_execution_node: east|west`), so a step that
ran on its node ran inside that node's namespace: the playbook writes `ip netns
identify` into a marker file that the test reads. The nodes' "installed" ansible-runner
is this machine's (the namespaces share its filesystem), named by its full path, as an
operator names /opt/.../bin/ansible-runner.

Run with `flock /tmp/migrate-netns.lock python3 -m pytest tests/runners/test_execution_nodes.py`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.core.model import SshSettings
from orchestrator.runners.node_commands import alone_after
from tests.support.netns import Lab, long_step
from tests.support.projects import Proj, carrying, make_project, running, shell_play

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("netns")]

RUNNER = str(Path(sys.executable).parent / "ansible-runner")
KEEPALIVE, COUNT, UNDO_DEADLINE = 1.0, 3, 10.0
SSH = SshSettings(keepalive=KEEPALIVE, keepalive_count=COUNT)
#: the run ends within keepalive x count + undo_deadline + a few seconds of the cut;
#: "a few" is generous on a 2-core machine shared by several test runs
BOUND = KEEPALIVE * COUNT + UNDO_DEADLINE + 15

MIGRATION = f"""\
name: nodes
inventory: inventory/hosts.yml
poll_interval: 1s
ssh: {{keepalive: {KEEPALIVE:g}s, keepalive_count: {COUNT}, connect_timeout: 3s}}
defaults: {{step_timeout: 5m, undo_retries: 2, undo_retry_delay: 1s, undo_deadline: {UNDO_DEADLINE:g}s}}
execution:
  nodes:
    east: {{host: node-east, runner: {RUNNER}}}
    west: {{host: node-west, runner: WEST_RUNNER}}
"""

WHERE = shell_play(
    "record where the step ran", "where am I",
    'echo "{{ inventory_hostname }} {{ migrate_step }} $(ip netns identify $$)"',
    ">> {{ marker_dir }}/where.log;",
    "touch {{ marker_dir }}/{{ inventory_hostname }}-{{ migrate_step }}")

UNWHERE = shell_play(
    "undo where the step ran", "undo",
    'echo "undo {{ inventory_hostname }} {{ migrate_step }} $(ip netns identify $$)"',
    ">> {{ marker_dir }}/where.log;",
    "rm -f {{ marker_dir }}/{{ inventory_hostname }}-{{ migrate_step }}")

BREAKS_ON_WEST = """\
- name: breaks on the west hosts
  hosts: all
  gather_facts: false
  tasks:
    - name: check the driver
      ansible.builtin.fail:
        msg: "driver 535 not loaded on {{ inventory_hostname }}"
      when: breaks | default(false)
"""

SLOW = long_step("3671")

#: long on the west hosts only: the step ends on east while west's node is cut (a lost
#: host's step ends the way a local Ansible run ends it: when every other host is done)
SLOW_WEST = long_step("{{ 3671 if (breaks | default(false)) else 1 }}")


#: the steps of the tests' phases
HERE = "  - {id: here, playbook: playbooks/where.yml, rollback: rollback/unwhere.yml}\n"
DRIVER = "  - {id: driver, playbook: playbooks/breaks.yml, rollback: none}\n"


def long_on(playbook: str) -> str:
    """Step `long`: playbooks/PLAYBOOK.yml, undone by the where-undo."""
    return f"  - {{id: long, playbook: playbooks/{playbook}.yml, rollback: rollback/unwhere.yml}}\n"


def phase_of(*steps: str) -> str:
    """Phase 1, no triggers, these steps."""
    return "phase: 1\ntriggers: []\nsteps:\n" + "".join(steps)


def project(tmp_path: Path, lab: Lab, phase: str, west_runner: str = RUNNER) -> Proj:
    proj = make_project(tmp_path, migration=MIGRATION.replace("WEST_RUNNER", west_runner))
    local = ("        ansible_connection: local\n"
             f"        ansible_python_interpreter: {sys.executable}\n")
    proj.write("inventory/hosts.yml",
               lab.inventory(proj.markers, {"node-east": "main", "node-west": "pc2"})
               + "  children:\n"
               "    east:\n"
               "      vars:\n"
               f"        migrate_execution_node: east\n{local}"
               "      hosts:\n        gpu-e1:\n        gpu-e2:\n"
               "    west:\n"
               "      vars:\n"
               f"        migrate_execution_node: west\n        breaks: true\n{local}"
               "      hosts:\n        gpu-w1:\n")
    proj.write("playbooks/where.yml", WHERE)
    proj.write("rollback/unwhere.yml", UNWHERE)
    proj.write("playbooks/breaks.yml", BREAKS_ON_WEST)
    proj.write("playbooks/slow.yml", SLOW)
    proj.write("playbooks/slow_west.yml", SLOW_WEST)
    proj.phase(1, "nodes", phase)
    return proj


def where(proj: Proj) -> list[str]:
    log = proj.markers / "where.log"
    return log.read_text().splitlines() if log.exists() else []


def job_processes() -> list[int]:
    """Pids of processes that carry an execution job's token (any node: the namespaces
    share this machine's process table)."""
    return carrying("MIGRATE_EXECUTION_JOB")


def sleepers() -> list[int]:
    return running("sleep 3671")


def wait_started(proj: Proj, proc: subprocess.Popen[str]) -> None:
    """Until the long step has started on every host (a loaded machine starts Ansible
    slowly)."""
    for host in ("gpu-e1", "gpu-e2", "gpu-w1"):
        assert proj.reached(proc, f"{host}-long-started", 240), \
            f"the long step never started on {host} (exit {proc.poll()})"


def job_dirs(lab: Lab) -> set[str]:
    """The workers' private data directories on the nodes."""
    return {p for h in lab.hosts.values() for p in
            h.run("ls -d ${TMPDIR:-/tmp}/migrate-job-* 2>/dev/null").stdout.split()}


ALL = ("--host", "east", "--host", "west")


def test_each_host_runs_on_its_node_and_plan_counts_them(tmp_path: Path, lab: Lab) -> None:
    proj = project(tmp_path, lab, phase_of(HERE))
    plan = proj.migrate("--output", "json", "plan", "1", *ALL)
    assert plan.returncode == 0, plan.stderr
    counts = {k: v["hosts"] for k, v in json.loads(plan.stdout)["execution"].items()}
    assert counts == {"east": 2, "west": 1}
    text = proj.migrate("plan", "1", *ALL).stdout
    assert "east 2 hosts (on node-east)" in text and "west 1 host (on node-west)" in text

    done = proj.migrate("--output", "json", "phase", "1", *ALL, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ran = sorted(where(proj))
    ns = {name: h.ns for name, h in lab.hosts.items()}
    assert ran == sorted([f"gpu-e1 here {ns['main']}", f"gpu-e2 here {ns['main']}",
                          f"gpu-w1 here {ns['pc2']}"]), ran
    # the job's events and log came back as from a local run
    run_id = json.loads(done.stdout)["run_id"]
    logs = sorted((proj.root / ".migrate" / "runs" / run_id / "here" / "artifacts").glob(
        "*/stdout"))
    assert len(logs) == 2, logs  # one Ansible run per node
    assert all("where am I" in log.read_text() for log in logs)
    events = json.loads(proj.migrate("--output", "json", "history", "--run", run_id).stdout)
    ok = {e["host"] for e in events["events"] if e["kind"] == "step_succeeded"}
    assert ok >= {"gpu-e1", "gpu-e2", "gpu-w1"}, events
    assert not job_processes()


def test_a_failing_task_on_one_node_is_named_and_the_rest_rolled_back(
        tmp_path: Path, lab: Lab) -> None:
    proj = project(tmp_path, lab, phase_of(HERE, DRIVER))
    done = proj.migrate("phase", "1", *ALL, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "check the driver" in out and "driver 535 not loaded on gpu-w1" in out, out[-3000:]
    assert "node west" in out, out[-3000:]
    undone = sorted(line for line in where(proj) if line.startswith("undo"))
    ns = {name: h.ns for name, h in lab.hosts.items()}
    assert undone == sorted([f"undo gpu-e1 here {ns['main']}", f"undo gpu-e2 here {ns['main']}",
                             f"undo gpu-w1 here {ns['pc2']}"]), where(proj)
    assert not list(proj.markers.glob("gpu-*-here"))


def test_a_node_cut_mid_step_is_lost_the_others_roll_back(tmp_path: Path, lab: Lab) -> None:
    proj = project(tmp_path, lab, phase_of(long_on("slow_west")))
    before = job_dirs(lab)
    proc = proj.spawn("--output", "json", "phase", "1", *ALL)
    try:
        wait_started(proj, proc)
        time.sleep(0.5)
        lab.cut("pc2")
        cut_at = time.monotonic()
        out, err = proc.communicate(timeout=BOUND + 120)
        took = time.monotonic() - cut_at
        print(f"ended {took:.1f}s after the cut (bound {BOUND:g}s)")
        assert proc.returncode == 3, err[-3000:]
        assert "execution node west" in err, err[-3000:]
        doc = json.loads(out)
        assert any(n.startswith("gpu-w1: step long") for n in doc["needs_human"]), doc
        assert took <= BOUND, f"{took:.1f}s after the cut (bound {BOUND:g}s)"
        ns = lab.hosts["main"].ns
        undone = sorted(line for line in where(proj) if line.startswith("undo"))
        assert f"undo gpu-e1 long {ns}" in undone and f"undo gpu-e2 long {ns}" in undone, undone
        assert (proj.markers / "gpu-w1-long").exists()  # left behind on the lost node
        # still cut off, its sshd hearing nothing: the job stops itself on the node once
        # the controller's heartbeats stop (its watchdog), and leaves no directory
        t0 = time.monotonic()
        while job_processes() and time.monotonic() - t0 < alone_after(SSH) + 15:
            time.sleep(0.2)
        assert not job_processes() and not sleepers(), "the cut node runs the step on"
        assert not job_dirs(lab) - before
    finally:
        lab.restore("pc2")
        if proc.poll() is None:
            proc.kill()
    again = proj.migrate("rollback", "--host", "gpu-w1", "--yes", timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not (proj.markers / "gpu-w1-long").exists()
    status = json.loads(proj.migrate("--output", "json", "status", "--host", "gpu-w1").stdout)
    assert status["hosts"]["gpu-w1"]["phases"]["1"]["state"] == "rolled_back"


def test_a_signal_during_a_remote_step_stops_the_playbook_on_the_node(
        tmp_path: Path, lab: Lab) -> None:
    proj = project(tmp_path, lab, phase_of(long_on("slow")))
    before = job_dirs(lab)
    proc = proj.spawn("phase", "1", *ALL)
    try:
        wait_started(proj, proc)
        assert sleepers() and job_processes()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 130, err[-3000:]
        time.sleep(10)
        assert not sleepers(), subprocess.run(["ps", "-ef"], capture_output=True,
                                              text=True).stdout
        assert not job_processes()
        left = job_dirs(lab) - before
        assert not left, left  # the jobs' directories on the nodes are gone too
        undone = [line for line in where(proj) if line.startswith("undo")]
        assert len(undone) == 3, where(proj)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_missing_runner_refuses_the_phase_naming_the_node(tmp_path: Path, lab: Lab) -> None:
    proj = project(tmp_path, lab, phase_of(HERE), west_runner="/opt/nowhere/bin/ansible-runner")
    done = proj.migrate("phase", "1", *ALL, timeout=120)
    assert done.returncode == 4, done.stderr[-3000:]
    assert "execution node west" in done.stderr and "/opt/nowhere/bin/ansible-runner" in \
        done.stderr, done.stderr
    assert "execution node east" not in done.stderr
    assert where(proj) == []  # nothing ran, not even on the sound node
