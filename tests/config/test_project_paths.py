"""Every relative path in a project file is the project's (SPEC section 2): playbooks,
rollbacks, `agent:`, an `analyze` metric's `path` without `from:` and `state.url`'s file
are taken from the project directory, wherever `migrate` is started from.

Each test starts `migrate --project DIR` from another directory, one that holds nothing
of the project, so a path read from the current directory fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.projects import Proj, make_project

ROOT = Path(__file__).resolve().parents[2]

MIGRATION = """\
name: paths
inventory: inventory/hosts.yml
poll_interval: 300ms
agent: src/agent.py
state: {url: 'sqlite:///../shared/journal.db'}
metrics:
  agent_threads:
    source: analyze
    path: src/agent.py
    field: threads.count
  agent_tree_clean:
    source: analyze
    path: src
    max: {threads.count: 0}
triggers:
  threads_back: {metric: agent_threads, above: 0}
"""

PHASE = """\
phase: 1
name: Paths
preconditions: [agent_tree_clean]
steps:
  - id: touch
    playbook: playbooks/touch.yml
    rollback: rollback/untouch.yml
  - id: soak
    wait: 1s
"""

AGENT = """\
import zmq


class ModelManagerAgent:
    def __init__(self):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.REP)
"""


def project(tmp_path: Path) -> tuple[Proj, Path]:
    proj = make_project(tmp_path, MIGRATION, hosts=("main",))
    proj.phase(1, "paths", PHASE)
    proj.write("src/agent.py", AGENT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "shared").mkdir()  # the shared journal's directory, beside the project
    return proj, elsewhere


def migrate_from(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("MIGRATE_PROJECT", None)
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)


def test_a_phase_started_from_another_directory_reads_the_projects_files(
        tmp_path: Path) -> None:
    proj, elsewhere = project(tmp_path)
    rel = os.path.relpath(proj.root, elsewhere)  # a relative --project too: ../proj
    res = migrate_from(elsewhere, "--project", rel, "phase", "1", "--host", "main")
    assert res.returncode == 0, res.stderr
    assert "cannot read" not in res.stderr
    assert (proj.markers / "main-touch").is_file()  # the project's playbook ran
    # the journal is the project's state.url file, not one beside the current directory
    assert (tmp_path / "shared" / "journal.db").is_file()
    assert not (elsewhere / ".migrate").exists() and not (tmp_path / "journal.db").exists()
    status = migrate_from(elsewhere, "--project", rel, "--output", "json", "status")
    phases = json.loads(status.stdout)["hosts"]["main"]["phases"]
    assert phases["1"]["state"] == "completed", status.stderr

    # the project's rollback playbook, from yet another directory
    res = migrate_from(tmp_path, "--project", str(proj.root), "rollback", "--host", "main",
                       "--yes")
    assert res.returncode == 0, res.stderr
    assert not (proj.markers / "main-touch").exists()


def test_an_analyze_metric_reads_the_projects_file_and_its_value_counts(
        tmp_path: Path) -> None:
    """The trigger's metric is the project's src/agent.py: a thread added there fires it,
    which it could not if the path were read from the current directory (no data)."""
    proj, elsewhere = project(tmp_path)
    proj.write("src/agent.py", AGENT + "\nimport threading\nthreading.Thread(target=print)\n")
    proj.phase(1, "paths", PHASE.replace("preconditions: [agent_tree_clean]\n", ""))
    res = migrate_from(elsewhere, "--project", str(proj.root), "phase", "1", "--host", "main")
    assert res.returncode == 1, res.stderr
    assert "trigger threads_back: 1 > 0" in res.stderr


def test_analyze_without_a_path_reads_the_projects_agent(tmp_path: Path) -> None:
    proj, elsewhere = project(tmp_path)
    res = migrate_from(elsewhere, "--project", str(proj.root), "--output", "json", "analyze")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["sockets"]["count"] == 1 and doc["file"] == str(proj.root / "src" / "agent.py"), doc["file"]
    (proj.root / "migration.yaml").write_text(MIGRATION.replace("agent: src/agent.py\n", ""))
    res = migrate_from(elsewhere, "--project", str(proj.root), "analyze")
    assert res.returncode == 2 and "has no `agent:`" in res.stderr, res.stderr
