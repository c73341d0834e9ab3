"""Fixtures of the reporting floor: the sandbox-like project whose phase a trigger rolls
back while a step runs (the live view's screens and the reports are read from it), and
one real fired run of it that the report tests share: they only read it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.projects import Proj, make_project

MIGRATION = """\
name: live-view
inventory: inventory/hosts.yml
poll_interval: 500ms
metrics:
  vram_used_mib:
    source: scripted
    values: [{at: 0s, value: 5000}, {at: 6s, value: 6500}]
  agent_health:
    source: scripted
    values: [{at: 0s, value: pass}]
triggers:
  vram_degradation: {metric: vram_used_mib, above: 6000, for: 2s}
  health_failure: {metric: agent_health, failing: true, for: 5s}
"""

PHASE = """\
phase: 1
name: Live view
triggers: [vram_degradation, health_failure]
bake: 10s
steps:
  - id: backup
    playbook: playbooks/touch.yml
    rollback: rollback/untouch.yml
  - id: deploy
    command: 'sleep 6 && touch {{ vars.marker_dir }}/{{ host }}-deploy'
    rollback_command: 'rm -f {{ vars.marker_dir }}/{{ host }}-deploy'
  - id: soak
    wait: 30s
"""


@pytest.fixture
def live_project(tmp_path: Path) -> Proj:
    """Two local hosts; the VRAM metric breaches its limit 6 s into the phase."""
    proj = make_project(tmp_path, MIGRATION)
    proj.phase(1, "live", PHASE)
    return proj


@pytest.fixture(scope="session")
def fired_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Proj, str]:
    """A real phase on two hosts that a trigger rolls back (vram on both hosts), run once
    per worker: the report tests read its journal and write reports beside it, each to
    its own file. Tests that use it share an xdist group, so one worker runs it once."""
    proj = make_project(tmp_path_factory.mktemp("fired"), MIGRATION)
    proj.phase(1, "live", PHASE)
    run = proj.migrate("--output", "json", "phase", "1", "--host", "all", timeout=180)
    assert run.returncode == 1, run.stderr
    return proj, json.loads(run.stdout)["run_id"]
