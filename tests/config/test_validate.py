"""Every validation problem is reported as FILE:LINE: message, all at once, with exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator._exceptions import ConfigError
from orchestrator.config.project import load_project
from tests.support.projects import make_project

GOOD_PHASE = """\
phase: 1
name: Good
steps:
  - id: a
    playbook: playbooks/touch.yml
    rollback: rollback/untouch.yml
"""


def problems_of(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_project(root)
    return [str(p) for p in info.value.problems]


def test_good_project_loads(tmp_path: Path) -> None:
    proj = make_project(tmp_path)
    proj.phase(1, "good", GOOD_PHASE)
    project, inventory = load_project(proj.root)
    assert list(project.phases) == [1]
    assert project.phases[1].steps[0].undo is not None
    assert sorted(inventory.hosts) == ["main", "pc2"]
    assert inventory.groups["gpu"] == ["main"]
    assert inventory.hosts["main"].vars["agent_service"] == "agent-main"


@pytest.mark.parametrize(("body", "expected"), [
    ("phase: 1\nname: x\nstpes: []\nsteps:\n  - id: a\n    wait: 1s\n",
     "phases/1-x.yaml:3: unknown key 'stpes' in phase (did you mean 'steps'?)"),
    ("phase: 1\nsteps:\n  - id: a\n    name: nothing to do\n",
     "phases/1-x.yaml:3: step 'a' must have exactly one action"),
    ("phase: 1\nsteps:\n  - id: a\n    wait: 1s\n    pause: both\n",
     "phases/1-x.yaml:5: step 'a' must have exactly one action"),
    ("phase: 1\nsteps:\n  - id: a\n    command: 'true'\n",
     "phases/1-x.yaml:3: step 'a': a command step must say how it is undone"),
    ("phase: 1\nsteps:\n  - id: a\n    playbook: playbooks/nope.yml\n    rollback: none\n",
     "phases/1-x.yaml:4: playbook: playbook playbooks/nope.yml does not exist"),
    ("phase: 1\nsteps:\n  - id: a\n    wait: 1s\n  - id: a\n    wait: 2s\n",
     "phases/1-x.yaml:5: duplicate step id 'a' (first at line 3)"),
    ("phase: 1\nrequires: [7]\nsteps:\n  - id: a\n    wait: 1s\n",
     "phases/1-x.yaml:2: requires phase 7, which does not exist"),
    ("phase: 1\nsteps:\n  - id: a\n    wait: 5 minutes\n",
     "phases/1-x.yaml:4: step 'a': wait: malformed duration '5 minutes'"),
    ("phase: 1\nbake: 10\nsteps:\n  - id: a\n    wait: 1s\n",
     "phases/1-x.yaml:2: bake: malformed duration 10"),
    ("phase: 1\nsteps:\n  - id: a\n    wait: 1s\n    timeout: 1x\n",
     "phases/1-x.yaml:5: timeout: malformed duration '1x'"),
    ("phase: 1\nsteps:\n  - id: a\n    wait: [1s\n",
     "phases/1-x.yaml:5: malformed YAML"),
    ("phase: 2\nsteps:\n  - id: a\n    wait: 1s\n",
     "phases/1-x.yaml:1: phase: 2 does not match the file name's 1"),
    ("phase: 1\nsteps:\n  - id: a\n    wait: 1s\n    rollback: none\n",
     "phases/1-x.yaml:5: step 'a': a wait step changes nothing and takes no rollback"),
    ("phase: 1\nsteps:\n  - id: a\n    command: x\n    rollback: rollback/missing.yml\n",
     "phases/1-x.yaml:5: rollback: playbook rollback/missing.yml does not exist"),
    ("phase: 1\ntriggers: [nope]\nsteps:\n  - id: a\n    wait: 1s\n",
     "phases/1-x.yaml:2: unknown trigger 'nope'"),
    ("phase: 1\nsteps:\n  - id: a\n    wait: 1s\n    retries: -1\n",
     "phases/1-x.yaml:5: step 'a': retries must be a whole number >= 0"),
])
def test_phase_problems(tmp_path: Path, body: str, expected: str) -> None:
    proj = make_project(tmp_path)
    proj.phase(1, "x", body)
    problems = problems_of(proj.root)
    assert any(p.startswith(expected) for p in problems), problems


MIGRATION_BAD = """\
name: bad
inventory: inventory/hosts.yml
poll_interval: 5
metrics:
  vram:
    source: exporter
    url: http://127.0.0.1:1/metrics
    series: DCGM_FI_DEV_FB_USED
  health:
    source: http
    url: http://127.0.0.1:1/health
    expect: {status: ok}
  weird:
    source: smoke-signals
triggers:
  t_unknown: {metric: nope, above: 1}
  t_two: {metric: vram, above: 1, below: 0}
  t_none: {metric: vram}
  t_kind: {metric: health, above: 3}
  t_for: {metric: health, failing: true, for: 5 min}
  t_typo: {metric: vram, above: 1, acton: notify}
"""


def test_migration_problems_all_reported_with_lines(tmp_path: Path) -> None:
    proj = make_project(tmp_path, migration=MIGRATION_BAD)
    proj.phase(1, "good", GOOD_PHASE)
    problems = problems_of(proj.root)
    expected = [
        "migration.yaml:3: poll_interval: malformed duration 5",
        "migration.yaml:14: metric 'weird': source must be one of",
        "migration.yaml:16: trigger 't_unknown': unknown metric 'nope'",
        "migration.yaml:17: trigger 't_two' must hold exactly one condition",
        "migration.yaml:18: trigger 't_none' must hold exactly one condition",
        "migration.yaml:19: trigger 't_kind': above needs a numeric metric; health is pass/fail",
        "migration.yaml:20: for: malformed duration '5 min'",
        "migration.yaml:21: unknown key 'acton' in trigger 't_typo' (did you mean 'action'?)",
    ]
    for want in expected:
        assert any(p.startswith(want) for p in problems), (want, problems)


def test_malformed_yaml_in_migration_and_bad_inventory(tmp_path: Path) -> None:
    proj = make_project(tmp_path, migration="name: x\ninventory: inventory/hosts.yml\nmetrics: {a: [\n")
    proj.phase(1, "good", GOOD_PHASE)
    proj.write("inventory/hosts.yml", "all:\n  hosts:\n    main:\n  hostz: {}\n")
    problems = problems_of(proj.root)
    assert any(p.startswith("migration.yaml:4: malformed YAML") for p in problems), problems
    assert any(p.startswith("inventory/hosts.yml:4: unknown key 'hostz' in group 'all'")
               for p in problems), problems


def test_cli_validate_exit_2_no_traceback_and_every_problem(tmp_path: Path) -> None:
    proj = make_project(tmp_path)
    proj.phase(1, "x", "phase: 1\nrequires: [9]\nsteps:\n  - id: a\n    command: 'true'\n"
               "  - id: a\n    wait: soon\n")
    res = proj.migrate("validate")
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert "phases/1-x.yaml:2: requires phase 9, which does not exist" in lines
    assert any(line.startswith("phases/1-x.yaml:4: step 'a': a command step must say") for line in lines)
    assert any(line.startswith("phases/1-x.yaml:7: step 'a': wait: malformed duration") for line in lines)
    assert any(line.startswith("phases/1-x.yaml:6: duplicate step id 'a'") for line in lines)
    # every line is FILE:LINE: message
    assert all(line.split(":")[1].isdigit() for line in lines), lines


def test_broken_project_runs_nothing(tmp_path: Path) -> None:
    proj = make_project(tmp_path)
    proj.phase(1, "good", GOOD_PHASE)
    proj.phase(2, "bad", "phase: 2\nsteps:\n  - id: a\n    wait: nope\n")
    res = proj.migrate("phase", "1", "--host", "main")
    assert res.returncode == 2
    assert "phases/2-bad.yaml:4" in res.stderr
    assert list(proj.markers.iterdir()) == []
    assert not (proj.root / ".migrate").exists()


def test_unknown_host_is_usage_error(tmp_path: Path) -> None:
    proj = make_project(tmp_path)
    proj.phase(1, "good", GOOD_PHASE)
    res = proj.migrate("plan", "1", "--host", "gpu9")
    assert res.returncode == 2
    assert "unknown host or group 'gpu9'" in res.stderr
    assert "Traceback" not in res.stderr


def test_global_options_work_before_and_after_the_subcommand(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    proj = make_project(tmp_path)
    proj.phase(1, "one", "phase: 1\nsteps:\n  - id: soak\n    wait: 1s\n")
    after = subprocess.run([sys.executable, "-m", "orchestrator", "status", "--project",
                            str(proj.root), "--output", "json"], capture_output=True, text=True)
    assert after.returncode == 0, after.stderr
    before = proj.migrate("--output", "json", "status")
    assert json.loads(after.stdout) == json.loads(before.stdout)
    assert json.loads(after.stdout)["hosts"]["main"]["phases"]["1"]["state"] == "pending"
    # the one after the subcommand wins
    text = proj.migrate("--output", "json", "status", "--output", "text")
    assert text.returncode == 0 and text.stdout.lstrip().startswith("main")
    nested = proj.migrate("baseline", "capture", "--host", "nowhere", "--output", "json")
    assert nested.returncode == 2 and "nowhere" in nested.stderr


def test_every_subcommand_help_is_clean_of_duplicate_options() -> None:
    import subprocess
    import sys

    for args in (["rehearse"], ["baseline", "capture"], ["status"], ["watch"], ["analyze"]):
        res = subprocess.run([sys.executable, "-W", "error", "-m", "orchestrator", *args,
                              "--help"], capture_output=True, text=True)
        assert res.returncode == 0 and "--output" in res.stdout, (args, res.stderr)
        assert res.stdout.count("--inventory") == 1, (args, res.stdout)


def test_a_directory_that_is_no_project_says_so_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "orchestrator", "--project", str(tmp_path),
                          "status"], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"migration.yaml:0: no migration.yaml in {tmp_path} (use --project DIR or "
        "$MIGRATE_PROJECT)"]
