"""Fleets for real: tens of local-connection hosts, real ansible-playbook, real triggers.

A canary wave, then shares of the run's hosts; a trigger that fires on one host of the
second wave rolls that wave back, leaves the canary completed and never starts the last
wave; a failure within the budget rolls back its host alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.projects import make_project

pytestmark = pytest.mark.integration

HOSTS = tuple(f"gpu{i:02d}" for i in range(40))

MIGRATION = """\
name: fleet
inventory: inventory/hosts.yml
poll_interval: 300ms
forks: 50
metrics:
  healthy:
    source: command
    command: 'test ! -e {{ vars.marker_dir }}/bad-{{ host }}'
triggers:
  unhealthy: {metric: healthy, failing: true}
"""

PHASE = """\
phase: 1
name: Fleet
bake: 1500ms
steps:
  - id: one
    playbook: playbooks/touch.yml
    rollback: rollback/untouch.yml
  - id: two
    command: 'test ! -e {{ vars.marker_dir }}/fail-{{ host }}'
    rollback_command: 'true'
"""


def fleet(tmp_path: Path):  # type: ignore[no-untyped-def]
    """40 local hosts and nothing else (make_project's `gpu` group would add `main`)."""
    proj = make_project(tmp_path, MIGRATION, hosts=HOSTS)
    proj.write("inventory/hosts.yml",
               "all:\n  vars:\n    ansible_connection: local\n"
               "    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"\n"
               f"    marker_dir: {proj.markers}\n  hosts:\n"
               + "".join(f"    {h}:\n" for h in HOSTS))
    proj.phase(1, "fleet", PHASE)
    return proj


def states(proj, names) -> dict[str, str]:  # type: ignore[no-untyped-def]
    doc = json.loads(proj.migrate("--output", "json", "status", "--host", "all").stdout)
    return {h: doc["hosts"][h]["phases"]["1"]["state"] for h in names}


def test_a_fire_in_the_second_wave_rolls_back_that_wave_only(tmp_path: Path) -> None:
    proj = fleet(tmp_path)
    (proj.markers / "bad-gpu05").write_text("")  # gpu05 is in wave 2 (hosts 2-10)
    res = proj.migrate("--output", "json", "phase", "1", "--host", "all",
                       "--waves", "1,25%,100%", timeout=300)
    assert res.returncode == 1, res.stderr
    got = states(proj, HOSTS)
    assert got["gpu00"] == "completed"
    assert {got[h] for h in HOSTS[1:10]} == {"rolled_back"}
    assert {got[h] for h in HOSTS[10:]} == {"pending"}
    # the last wave never started: no marker, no line in the order log
    order = proj.order()
    assert not any(line.split()[1] in HOSTS[10:] for line in order)
    assert not any((proj.markers / f"{h}-one").exists() for h in HOSTS[1:])
    assert (proj.markers / "gpu00-one").exists()
    events = json.loads(proj.migrate("--output", "json", "history").stdout)["events"]
    kinds = [e["kind"] for e in events]
    assert kinds.count("wave_started") == 2 and kinds.count("wave_completed") == 1
    assert kinds.count("budget_exhausted") == 1
    wave2 = [e for e in events if e["kind"] == "wave_started"][1]
    assert wave2["payload"]["hosts"] == list(HOSTS[1:10])


def test_a_failure_within_the_budget_rolls_back_one_host_and_the_run_goes_on(
        tmp_path: Path) -> None:
    proj = fleet(tmp_path)
    # the trigger is not what this test is about: a probe that outlasts its 240 ms read
    # on a busy CI machine reads as no data, which for a pass/fail metric is failing, and
    # must not fire on a healthy host here (a bad host would still fire after 1 s)
    proj.write("migration.yaml", MIGRATION.replace("failing: true}", "failing: true, for: 1s}"))
    (proj.markers / "fail-gpu12").write_text("")
    res = proj.migrate("--output", "json", "phase", "1", "--host", "all",
                       "--waves", "1,50%,100%", "--max-failed", "1", timeout=300)
    assert res.returncode == 1, res.stderr  # something was rolled back
    got = states(proj, HOSTS)
    assert got["gpu12"] == "rolled_back"
    assert {h: s for h, s in got.items() if h != "gpu12" and s != "completed"} == {}, res.stdout
    assert not (proj.markers / "gpu12-one").exists()  # its undo ran
    assert (proj.markers / "gpu39-one").exists()


def test_host_all_and_groups_resolve(tmp_path: Path) -> None:
    proj = make_project(tmp_path, hosts=("main", "pc2"))
    proj.phase(1, "p", "phase: 1\nsteps:\n  - id: w\n    wait: 0s\n")
    res = proj.migrate("--output", "json", "phase", "1", "--host", "all")
    assert res.returncode == 0, res.stderr
    assert set(json.loads(res.stdout)["hosts"]) == {"main", "pc2"}
    res = proj.migrate("--output", "json", "plan", "1", "--host", "gpu")
    assert res.returncode == 0, res.stderr
