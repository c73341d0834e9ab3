"""Observation: `watch --for --checkpoint` writes checkpoint reports, and `requires:
[{phase: N, observed: D}]` gates the next phase on a quiet observation window."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.support.projects import Proj
from tests.support.servers import AgentServer

pytestmark = pytest.mark.integration

PHASE_1 = ("phase: 1\nsteps:\n  - id: one\n    playbook: playbooks/touch.yml\n"
           "    rollback: rollback/untouch.yml\n")


def phase_2(observed: str) -> str:
    return (f"phase: 2\nrequires: [{{phase: 1, observed: {observed}}}]\nsteps:\n"
            "  - id: two\n    command: 'true'\n    rollback: none\n")


def project(proj: Proj, observed: str) -> Proj:
    """Phase 1 completed on main; phase 2 requires it observed for `observed`."""
    proj.phase(1, "p1", PHASE_1)
    proj.phase(2, "p2", phase_2(observed))
    res = proj.migrate("phase", "1", "--host", "main")
    assert res.returncode == 0, res.stderr
    return proj


def test_requires_observed_refuses_saying_how_long_is_left(watched_project: Proj) -> None:
    proj = project(watched_project, "1h")
    res = proj.migrate("phase", "2", "--host", "main")
    assert res.returncode == 4, res.stderr
    assert "requires phase 1 observed for 1h" in res.stderr
    assert re.search(r"observed \d+m?s of 1h, (59m\d*s?|1h) left", res.stderr), res.stderr


def test_observed_window_passes_once_quiet_long_enough(watched_project: Proj) -> None:
    proj = project(watched_project, "2s")
    time.sleep(2.2)
    res = proj.migrate("phase", "2", "--host", "main")
    assert res.returncode == 0, res.stderr


def test_a_fire_in_watch_resets_the_observation(watched_project: Proj,
                                                agent: AgentServer) -> None:
    proj = project(watched_project, "1s")
    agent.health["model_load_failures"] = 1
    res = proj.migrate("--output", "json", "watch", "--host", "main", "--once", "--no-rollback")
    assert res.returncode == 0, res.stderr
    time.sleep(1.2)
    res = proj.migrate("phase", "2", "--host", "main")
    assert res.returncode == 4, res.stderr
    assert "a trigger of phase 1 fired" in res.stderr


def test_watch_writes_checkpoint_reports_with_counts(watched_project: Proj,
                                                     agent: AgentServer) -> None:
    proj = project(watched_project, "1s")
    agent.health["status"] = "degraded"  # health fails, but for 1s is needed: it fires
    res = proj.migrate("--output", "json", "watch", "--host", "main", "--for", "2500ms",
                       "--checkpoint", "1s", "--no-rollback", timeout=60)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    reports = [Path(p) for p in doc["checkpoints"]]
    assert len(reports) >= 3  # two checkpoints and the final report
    final = reports[-1].read_text()
    assert "final report" in final
    row = next(line for line in final.splitlines() if line.startswith("| health_failure | main"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert int(cells[3]) == 1  # fired once (it stays firing; no second fire)
    html = reports[-1].with_suffix(".html").read_text()
    assert "data:image/png;base64," in html  # the chart is inlined
    events = json.loads(proj.migrate("--output", "json", "history").stdout)["events"]
    checkpoints = [e for e in events if e["kind"] == "observation_checkpoint"]
    assert [e["payload"]["checkpoint"] for e in checkpoints] == list(range(1, len(reports) + 1))
    assert checkpoints[-1]["payload"]["final"] is True
