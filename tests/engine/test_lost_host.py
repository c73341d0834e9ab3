"""A host that dies mid-run is found in seconds, even through a connection that was open.

Network namespaces with their own sshd (tests/netns.py). In each case an earlier step has
just talked to pc2 (so Ansible's ControlPersist master, or the pooled fabric connection,
is open) when pc2's link is cut: during a playbook step, during a command step, and
during a rollback. With `ssh: {keepalive: 1s, keepalive_count: 2}` the run must end
(exit 3, `rollback_failed` naming the host and the step) within keepalive x count + 15 s.
Then the link comes back and `migrate rollback --host pc2` finishes the job.

Without keepalives, ssh waits on a dead peer until TCP gives up (about 15 minutes).

`undo_retries: 0` here: each undo attempt on the lost host is one more Ansible start and
connect timeout, seconds each on a loaded machine, and the bound is about finding the
host lost; undo retries of an unreachable host are tested in test_two_hosts.py and
test_reliability_engine.py. bench/lost_host.py measures the defaults.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.lost_host import case_project, cases, lab_project
from tests.support.netns import Lab
from tests.support.projects import Proj

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("netns")]

KEEPALIVE, COUNT = 1.0, 2
BOUND = KEEPALIVE * COUNT + 15
SLEEP = "60"  # the long steps' seconds: far longer than the bound

MIGRATION = """\
name: lost-host
inventory: inventory/hosts.yml
poll_interval: 1s
ssh: {keepalive: 1s, keepalive_count: 2, connect_timeout: 2s}
defaults: {step_timeout: 5m, undo_retries: 0}
"""


def cut_when(proj: Proj, lab: Lab, proc: subprocess.Popen[str], marker: str,
             host: str = "pc2") -> float:
    """Wait for `marker` (the host is busy with the step), then cut its link."""
    # a loaded CI machine starts Ansible slowly
    assert proj.reached(proc, marker, 180), f"{marker} never appeared (exit {proc.poll()})"
    time.sleep(0.5)
    lab.cut(host)
    return time.monotonic()


def wait_marker(proj: Proj, proc: subprocess.Popen[str], marker: str) -> None:
    assert proj.reached(proc, marker, 60), f"{marker} never appeared (exit {proc.poll()})"


def finish(proc: subprocess.Popen[str], cut_at: float) -> tuple[int, dict, str, float]:
    try:
        out, err = proc.communicate(timeout=BOUND + 120)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - cut_at
    return proc.returncode, json.loads(out) if out.strip().startswith("{") else {}, err, took


def assert_lost_and_recovered(proj: Proj, lab: Lab, code: int, doc: dict, err: str,
                              took: float, step: str, leftover: str) -> None:
    print(f"ended {took:.1f}s after the cut (bound {BOUND:g}s)")
    assert code == 3, err[-3000:]
    assert doc.get("outcome") == "rollback_failed", doc
    assert any(n.startswith(f"pc2: step {step}") for n in doc.get("needs_human", [])), doc
    assert took <= BOUND, f"the run took {took:.1f}s after the cut (bound {BOUND:g}s)"
    assert (proj.markers / leftover).exists()  # really left behind on the lost host
    lab.restore("pc2")
    (proj.markers / "slow").unlink(missing_ok=True)
    again = proj.migrate("rollback", "--host", "pc2", "--yes", timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not (proj.markers / leftover).exists()
    status = json.loads(proj.migrate("--output", "json", "status", "--host", "pc2").stdout)
    assert status["hosts"]["pc2"]["phases"]["1"]["state"] == "rolled_back"


@pytest.mark.parametrize("case", ["playbook", "command", "rollback"])
def test_link_cut_during(tmp_path: Path, lab: Lab, case: str) -> None:
    """pc2's link is cut during a playbook step, a command step, or the rollback."""
    proj = case_project(tmp_path, lab, MIGRATION, case, SLEEP)
    shape = cases(SLEEP)[case]
    proc = proj.spawn("--output", "json", "phase", "1", "--host", "pc2")
    try:
        cut_at = cut_when(proj, lab, proc, shape.cut_at)
        code, doc, err, took = finish(proc, cut_at)
        if case == "command":
            assert "lost connection" in err or "unreachable" in err.lower(), err[-2000:]
        assert_lost_and_recovered(proj, lab, code, doc, err, took, shape.step, shape.leftover)
    finally:
        lab.restore("pc2")


def test_the_other_host_is_rolled_back_while_one_is_lost(tmp_path: Path, lab: Lab) -> None:
    """Both hosts in the run, pc2 lost mid-step: main is undone over its own live
    connection, pc2 is named as needing a human."""
    proj = lab_project(tmp_path, lab, MIGRATION, """\
        phase: 1
        triggers: []
        steps:
          - id: long
            command: 'touch {{ vars.marker_dir }}/{{ host }}-long; if [ {{ host }} = pc2 ]; then sleep 60; fi'
            rollback_command: 'rm -f {{ vars.marker_dir }}/{{ host }}-long'
        """, SLEEP)
    proc = proj.spawn("--output", "json", "phase", "1", "--host", "main", "--host", "pc2")
    try:
        wait_marker(proj, proc, "main-long")
        cut_at = cut_when(proj, lab, proc, "pc2-long")
        code, doc, err, took = finish(proc, cut_at)
        assert code == 3, err[-3000:]
        assert took <= BOUND
        assert not (proj.markers / "main-long").exists()  # main was undone
        assert (proj.markers / "pc2-long").exists()
        assert [n for n in doc["needs_human"] if n.startswith("pc2: step long")], doc
        assert not [n for n in doc["needs_human"] if n.startswith("main")], doc
    finally:
        lab.restore("pc2")


def _remote_sleeps(seconds: int) -> list[str]:
    """Pids of `sleep SECONDS` anywhere on this machine (the lab's hosts share its pids)."""
    from tests.support.projects import running

    return [str(pid) for pid in running(f"sleep {seconds}")]


@pytest.mark.parametrize("how", ["timeout", "ctrl-c"])
def test_a_stopped_command_stops_on_the_host(tmp_path: Path, lab: Lab, how: str) -> None:
    """The fabric runner's cancel and timeout reach the remote process group, as the local
    and Ansible runners' do: nothing keeps running on pc2 behind a rolled-back step."""
    seconds = 4321 if how == "timeout" else 4322
    proj = lab_project(tmp_path, lab, MIGRATION, f"""\
        phase: 1
        triggers: []
        steps:
          - id: long
            command: 'touch {{{{ vars.marker_dir }}}}/{{{{ host }}}}-long; sh -c "sleep {seconds}" & sleep {seconds}'
            rollback_command: 'rm -f {{{{ vars.marker_dir }}}}/{{{{ host }}}}-long'
            {"timeout: 2s" if how == "timeout" else ""}
        """, SLEEP)
    proc = proj.spawn("--output", "json", "phase", "1", "--host", "pc2")
    try:
        wait_marker(proj, proc, "pc2-long")
        time.sleep(0.5)
        assert _remote_sleeps(seconds)
        if how == "ctrl-c":
            proc.send_signal(2)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (1, 130), err[-2000:]
    assert not (proj.markers / "pc2-long").exists()  # undone
    time.sleep(0.5)
    assert _remote_sleeps(seconds) == []  # both sleeps of the step's group are gone
