"""The `analysis:` block of a phase file: `validate` refuses its mistakes with FILE:LINE
(exit 2), `--waves` that leave no control host are refused before anything runs, and a
rehearsal's time scale shortens the window."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.config.project import load_project
from orchestrator.config.scaling import scaled
from tests.support.projects import Proj, make_project

MIGRATION = """\
name: judged
inventory: inventory/hosts.yml
poll_interval: 300ms
metrics:
  vram_used_mib:
    source: command
    command: 'echo 1000'
    parse: number
  healthy:
    source: command
    command: 'true'
triggers:
  unhealthy: {metric: healthy, failing: true}
"""


def project(tmp_path: Path, analysis: str, extra: str = "bake: 10m\n") -> Proj:
    proj = make_project(tmp_path, MIGRATION, hosts=("a", "b", "c", "d"))
    proj.phase(1, "judged", "phase: 1\n" + extra +
               "steps:\n  - id: one\n    playbook: playbooks/touch.yml\n"
               "    rollback: rollback/untouch.yml\n"
               "analysis:\n" + analysis)
    return proj


def refused(proj: Proj) -> list[str]:
    res = proj.migrate("validate")
    assert res.returncode == 2, (res.stdout, res.stderr)
    return [line for line in (res.stdout + res.stderr).splitlines()
            if line.startswith("phases/1-judged.yaml:")]


# line numbers: 1 phase, 2 bake/waves, ..., 7 `analysis:`, 8 `  metrics:`, 9 first metric
@pytest.mark.parametrize(("analysis", "extra", "line", "words"), [
    ("  metrics:\n    healthy: {fail_on: increase}\n  control: before\n", "bake: 10m\n",
     9, "is pass/fail"),
    ("  metrics: [vram_used_mib]\n  control: before\n  window: 20m\n", "bake: 10m\n",
     10, "longer than the phase's bake"),
    ("  metrics: [vram_used_mib]\n  control: not-migrated\n", "bake: 10m\n",
     9, "not-migrated needs waves"),
    ("  metrics: [vram_used_mib]\n  control: before\n  pass: 70\n  marginal: 80\n",
     "bake: 10m\n", 11, "out of order"),
    ("  metrics:\n    vram_used_mib: {spread: {allowed_change_pct: -5}}\n  control: before\n",
     "bake: 10m\n", 9, "allowed_change_pct in spread of analysis metric 'vram_used_mib' "
     "must be in [0, inf]"),
    ("  metrics:\n    vram_used_mib: {spread: 50}\n  control: before\n",
     "bake: 10m\n", 9, "spread in analysis metric 'vram_used_mib' must be a mapping"),
    ("  metrics:\n    vram_used_mib: {dry_run: maybe}\n  control: before\n",
     "bake: 10m\n", 9, "dry_run in analysis metric 'vram_used_mib' must be true or false"),
])
def test_validate_refuses_with_file_and_line(tmp_path: Path, analysis: str, extra: str,
                                             line: int, words: str) -> None:
    problems = refused(project(tmp_path, analysis, extra))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"phases/1-judged.yaml:{line}:"), problems
    assert words in problems[0]


def test_a_good_block_is_on_the_phase_and_scaled_by_a_rehearsal(tmp_path: Path) -> None:
    proj = project(tmp_path, "  metrics:\n    vram_used_mib: {fail_on: increase, "
                   "allowed_change_pct: 10, critical: true}\n  window: 5m\n",
                   "bake: 10m\nwaves: [1, 50%, 100%]\n")
    res = proj.migrate("validate")
    assert res.returncode == 0, res.stderr
    project_, _ = load_project(proj.root)
    spec = project_.phases[1].analysis
    assert spec is not None and spec.control == "not-migrated" and spec.window == 300
    assert spec.metrics[0].critical and spec.metrics[0].allowed_change_pct == 10
    assert scaled(project_, 0.1).phases[1].analysis.window == pytest.approx(30)  # type: ignore[union-attr]


@pytest.mark.integration
def test_cli_waves_leaving_no_control_host_are_refused_before_anything_runs(
        tmp_path: Path) -> None:
    proj = project(tmp_path, "  metrics: [vram_used_mib]\n  window: 1s\n",
                   "bake: 1s\nwaves: [1, 100%]\n")
    res = proj.migrate("--output", "json", "phase", "1", "--host", "all", "--waves", "100%")
    assert res.returncode == 2, res.stderr
    assert "leave no host unmigrated" in res.stderr and "--waves 100%" in res.stderr
    assert proj.order() == []  # nothing ran
    history = json.loads(proj.migrate("--output", "json", "history").stdout)
    assert history["events"] == []
