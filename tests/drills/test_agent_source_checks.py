"""The agent source each phase deploys, and the project's `analyze` metrics on it.

The sandbox's deploy (playbooks/tasks/agent_config.yml) installs, next to the stand-in, the
agent's own source at the deployed revision (`mma_standin.py source`), and a rollback's
restore puts the previous revision's source back. The project's metrics `agent_sockets`
(`max: {sockets.count: 0}`) and `agent_threads` (`max: {threads.count: 0}`) read that file:
the pre-migration revision fails both, phase 2's passes the sockets check only, phase 3's
both; the `thread_regression` fault brings a raw threading.Thread back. No sandbox is
started: each test runs in about a second.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config.inventory import Host
from orchestrator.config.project import load_project
from orchestrator.metrics.sources.base import ReadContext, Reading, read_metric
from orchestrator.runners.local import LocalCommandRunner

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ROOT / "sandbox" / "mma_standin.py"
SOURCE = "src/model_manager_agent.py"


def standin(*args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, str(STANDIN), *args], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return res


def deploy_source(agent_dir: Path, revision: str, faults: dict | None = None) -> Path:
    """What the deploy's `Agent source of revision ...` task runs on the host."""
    args = ["source", "--revision", revision, "--dir", str(agent_dir / "src")]
    if faults is not None:
        faults_file = agent_dir.parent / "faults.json"
        faults_file.parent.mkdir(parents=True, exist_ok=True)
        faults_file.write_text(json.dumps(faults))
        args += ["--faults-file", str(faults_file)]
    standin(*args)
    return agent_dir / SOURCE


def check(name: str, agent_dir: Path) -> Reading:
    """The project's metric `name`, read for host main (whose agent_dir is `agent_dir`)
    as a `check:` step reads it: `from: main`, through the command runner."""
    project, _ = load_project(ROOT)
    metric = project.metrics[name]
    main = Host("main", {"ansible_connection": "local", "agent_dir": str(agent_dir)})
    ctx = ReadContext(host=main, hostvars={"main": dict(main.vars)}, phase=2, run_id="r",
                      elapsed=0.0, timeout=10.0, commands=LocalCommandRunner(),
                      hosts={"main": main})
    return read_metric(metric, ctx)


def test_the_project_checks_sockets_and_threads_of_the_deployed_source_on_main() -> None:
    project, _ = load_project(ROOT)
    for name, field in (("agent_sockets", "sockets.count"), ("agent_threads", "threads.count")):
        metric = project.metrics[name]
        assert metric.source == "analyze"
        assert metric.config["path"] == "{{ vars.agent_dir }}/" + SOURCE
        assert metric.config["from"] == "main"
        assert metric.config["max"] == {field: 0}


def test_the_pre_migration_revision_fails_both_checks(tmp_path: Path) -> None:
    agent = tmp_path / "main" / "agent"
    deploy_source(agent, "original")
    sockets, threads = check("agent_sockets", agent), check("agent_threads", agent)
    assert sockets == Reading(0.0, "sockets.count is 6, at most 0 allowed")
    assert threads == Reading(0.0, "threads.count is 7, at most 0 allowed")


@pytest.mark.parametrize(("revision", "sockets", "threads"), [
    ("phase2", Reading(1.0), Reading(0.0, "threads.count is 6, at most 0 allowed")),
    ("phase3", Reading(1.0), Reading(1.0)),
])
def test_the_migrated_revisions_pass_the_check_of_their_phase(
        tmp_path: Path, revision: str, sockets: Reading, threads: Reading) -> None:
    agent = tmp_path / "main" / "agent"
    deploy_source(agent, revision)
    assert check("agent_sockets", agent) == sockets
    assert check("agent_threads", agent) == threads


def test_thread_regression_brings_a_raw_thread_back_from_its_revision_on(
        tmp_path: Path) -> None:
    fault = {"thread_regression": {"from_revision": "phase3"}}
    agent = tmp_path / "main" / "agent"
    path = deploy_source(agent, "phase3", fault)
    assert "threading.Thread(" in path.read_text()
    assert check("agent_threads", agent) == Reading(0.0, "threads.count is 1, at most 0 allowed")
    assert check("agent_sockets", agent) == Reading(1.0)  # phase 2's work stays done
    deploy_source(agent, "phase2", fault)  # before its revision: phase 2's source as ever
    assert check("agent_threads", agent) == Reading(0.0, "threads.count is 6, at most 0 allowed")


def test_a_missing_source_is_no_data_and_the_check_fails(tmp_path: Path) -> None:
    reading = check("agent_sockets", tmp_path / "nothing-deployed")
    assert reading.value is None and "No such file or directory" in str(reading.error)


def test_the_rollback_restore_puts_the_previous_revision_s_source_back(tmp_path: Path) -> None:
    agent = tmp_path / "main" / "agent"
    snapshot = tmp_path / "main" / "snapshots" / "pre-phase3"
    deploy_source(snapshot, "phase2")
    (snapshot / "config.json").write_text(json.dumps({"revision": "phase2"}))
    deploy_source(agent, "phase3", {"thread_regression": {"from_revision": "phase3"}})
    assert check("agent_threads", agent).value == 0.0
    standin("restore", "--from", str(snapshot), "--to", str(agent))
    assert "revision phase2" in (agent / SOURCE).read_text()
    assert check("agent_sockets", agent) == Reading(1.0)


def test_the_deploy_installs_the_source_of_the_revision_it_deploys() -> None:
    for tasks in (ROOT / "playbooks" / "tasks" / "agent_config.yml",
                  ROOT / "orchestrator" / "templates" / "project" / "playbooks" / "tasks"
                  / "agent_config.yml"):
        text = tasks.read_text()
        assert " source\n    --revision {{ target_revision }} --dir {{ instance_dir }}/src" \
            in text, tasks
