"""`migrate init`: a new migration project from the template inside the package, its sandbox
rendered from the same templates as the repository root's, and rehearsals of it (through
an observation gate, and found again by `history --run` and `report`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.init import (
    SANDBOX_FILES,
    read_vars,
    render_sandbox,
    stale_sandbox_files,
    template_files,
)
from tests.support.agent_sources import SEED
from tests.support.init_drills import failed, free_port_base, teardown

ROOT = Path(__file__).resolve().parents[2]


def migrate(*args: str, cwd: Path | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True,
                         text=True, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    return res


def init(tmp: Path, name: str, *hosts: str) -> Path:
    project = tmp / name
    args = ["init", str(project), "--name", name,
            "--sandbox-ports", str(free_port_base(max(2, len(hosts))))]
    for h in hosts:
        args += ["--host", h]
    res = migrate(*args)
    assert res.returncode == 0, res.stderr
    return project


def rehearse(project: Path, scenario: str) -> tuple[int, dict[str, object], str]:
    res = migrate("--project", str(project), "--output", "json", "rehearse", "--scenario",
                  scenario)
    assert res.stdout, res.stderr[-3000:]
    return res.returncode, json.loads(res.stdout), res.stderr


# --- fast: what init writes, what it refuses ------------------------------------------------
def test_init_writes_a_project_that_validates_and_says_what_next(tmp_path: Path) -> None:
    project = tmp_path / "tutoring"
    res = migrate("init", str(project), "--name", "tutoring-agent")
    assert res.returncode == 0, res.stderr
    for rel in ("migration.yaml", "inventory/hosts.yml", "inventory/sandbox.yml",
                "playbooks/sandbox/provision.yml", "playbooks/sandbox/teardown.yml",
                "sandbox/tutoring_agent_standin.py", "rehearsals/clean.yaml",
                "rehearsals/vram-leak.yaml", ".gitignore"):
        assert (project / rel).is_file(), rel
        assert rel in res.stdout
    assert len(list((project / "phases").glob("*.yaml"))) == 4
    assert "migrate validate" in res.stdout and "rehearse --scenario clean" in res.stdout
    assert "name: tutoring-agent" in (project / "migration.yaml").read_text()
    hosts = (project / "inventory/hosts.yml").read_text()
    assert "    main:" in hosts and "    pc2:" in hosts
    # every step that changes something has a playbook and a rollback that exist
    import yaml

    for phase in sorted((project / "phases").glob("*.yaml")):
        for step in yaml.safe_load(phase.read_text())["steps"]:
            if "playbook" in step:
                assert (project / step["playbook"]).is_file(), step
                assert step["rollback"] == "none" or (project / step["rollback"]).is_file()
    res = migrate("--project", str(project), "validate")
    assert res.returncode == 0, res.stderr
    res = migrate("--project", str(project), "rehearse", "--list")
    assert res.returncode == 0
    assert [line.split()[0] for line in res.stdout.splitlines()] == ["clean", "vram-leak"]


def test_init_with_three_hosts_validates(tmp_path: Path) -> None:
    project = init(tmp_path, "speech-agent", "a", "b", "c")
    res = migrate("--project", str(project), "--output", "json", "validate")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["hosts"] == ["a", "b", "c"]
    ports = [v for h in read_vars(project).hosts for v in h.ports.values()]
    assert len(set(ports)) == 6  # health and test-instance ports, none shared between hosts


def test_init_into_a_non_empty_directory_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    project = tmp_path / "busy"
    project.mkdir()
    (project / "notes.txt").write_text("mine\n")
    res = migrate("init", str(project), "--name", "tutoring-agent")
    assert res.returncode == 2
    assert "not empty" in res.stderr
    assert [p.name for p in project.iterdir()] == ["notes.txt"]
    # an empty directory is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    assert migrate("init", str(empty), "--name", "tutoring-agent").returncode == 0


@pytest.mark.parametrize("name", ["Tutoring", "tutoring_agent", "-x", "a--b", "9lives", ""])
def test_a_name_that_is_not_a_slug_is_refused(tmp_path: Path, name: str) -> None:
    res = migrate("init", str(tmp_path / "p"), "--name", name)
    assert res.returncode == 2
    assert "slug" in res.stderr
    assert not (tmp_path / "p").exists()


def test_a_bad_or_repeated_host_is_refused(tmp_path: Path) -> None:
    for hosts in (["a b"], ["all"], ["a", "a"]):
        args = [a for h in hosts for a in ("--host", h)]
        res = migrate("init", str(tmp_path / "p"), "--name", "x-agent", *args)
        assert res.returncode == 2, hosts
        assert not (tmp_path / "p").exists()


def test_the_roots_sandbox_files_are_the_packages_rendering() -> None:
    """One source for the sandbox: the root's files are rendered from the package's
    templates with the root's variables (sandbox/template.yaml). When this fails, edit the
    template (orchestrator/templates/project/) or the variables, then
    `python -m orchestrator.init --refresh .`"""
    rendered = render_sandbox(read_vars(ROOT))
    assert sorted(rendered) == sorted(["inventory/sandbox.yml", "playbooks/sandbox/provision.yml",
                                       "playbooks/sandbox/teardown.yml",
                                       "sandbox/mma_standin.py"])
    for rel, text in rendered.items():
        assert (ROOT / rel).read_text() == text, f"{rel} differs from the package's rendering"
    assert stale_sandbox_files(ROOT) == []


def test_an_init_projects_sandbox_is_the_same_rendering(tmp_path: Path) -> None:
    project = init(tmp_path, "tutoring-agent")
    assert stale_sandbox_files(project) == []
    standin = (project / "sandbox/tutoring_agent_standin.py").read_text()
    assert "TutoringAgent" in standin and "ModelManagerAgent" not in standin
    assert "tutoring_agent_thread_health_status" in standin
    # a stale copy is found, and --refresh renders it again
    (project / "inventory/sandbox.yml").write_text("all: {}\n")
    assert stale_sandbox_files(project) == ["inventory/sandbox.yml"]
    res = subprocess.run([sys.executable, "-m", "orchestrator.init", "--refresh", str(project)],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "inventory/sandbox.yml" in res.stdout
    assert stale_sandbox_files(project) == []


def test_the_template_ships_inside_the_package() -> None:
    import orchestrator

    files = template_files()
    assert set(SANDBOX_FILES) <= set(files)
    assert (Path(orchestrator.__file__).parent / "templates" / "project" / "migration.yaml"
            ).is_file()
    for rel, text in files.items():  # square delimiters only: {{ }} belongs to Ansible
        assert "{{ name }}" not in text, rel


def test_rehearse_list_without_scenarios_exits_2_and_says_how_to_add_one(
        tmp_path: Path) -> None:
    project = init(tmp_path, "tutoring-agent")
    for f in (project / "rehearsals").iterdir():
        f.unlink()
    res = migrate("--project", str(project), "rehearse", "--list")
    assert res.returncode == 2
    assert "rehearsals/NAME.yaml" in res.stderr and "description:" in res.stderr
    res = migrate("--project", str(project), "rehearse")
    assert res.returncode == 2
    assert "no rehearsal scenarios" in res.stderr


def test_a_rehearsal_scales_observed_gates_with_the_rest() -> None:
    from dataclasses import replace

    from orchestrator.config.project import checked_project
    from orchestrator.config.scaling import scaled

    project, _ = checked_project(ROOT, None)
    phase = replace(project.phases[2], observed={1: 3600.0})
    project.phases[2] = phase
    fast = scaled(project, 0.01)
    assert fast.phases[2].observed == {1: 36.0}
    assert fast.phases[2].bake == pytest.approx(phase.bake * 0.01)
    assert fast.triggers["health_failure"].threshold == project.triggers["health_failure"
                                                                         ].threshold


# --- slow: real rehearsals of a fresh project ------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("hosts", [(), ("a", "b", "c")], ids=["main-pc2", "three-hosts"])
def test_init_validate_then_the_clean_rehearsal_passes(tmp_path: Path,
                                                       hosts: tuple[str, ...]) -> None:
    project = init(tmp_path, "tutoring-agent", *hosts)
    assert migrate("--project", str(project), "validate").returncode == 0
    try:
        code, doc, err = rehearse(project, "clean")
    finally:
        teardown(project)
    assert code == 0, (failed(doc), err[-3000:])
    assert doc["passed"] is True
    names = list(hosts) or ["main", "pc2"]
    seen = {c["what"] for c in doc["checks"]}  # type: ignore[attr-defined,index]
    assert {f"phase 4 completed on {h}" for h in names} <= seen

    # the rehearsal's id and each of its runs' ids work with history --run and report
    rid = str(doc["rehearsal_id"])
    res = migrate("--project", str(project), "--output", "json", "history", "--run", rid)
    assert res.returncode == 0, res.stderr
    events = json.loads(res.stdout)["events"]
    runs = [r["run_id"] for r in doc["runs"]]  # type: ignore[attr-defined,index]
    assert {e["run_id"] for e in events} >= set(runs)
    res = migrate("--project", str(project), "--output", "json", "history", "--run", runs[1])
    events = json.loads(res.stdout)["events"]
    assert events and {e["run_id"] for e in events} == {runs[1]}
    assert any(e["kind"] == "phase_completed" for e in events)
    res = migrate("--project", str(project), "report", rid)
    assert res.returncode == 0, res.stderr
    assert f"# Rehearsal {rid}" in res.stdout and "PASSED" in res.stdout
    res = migrate("--project", str(project), "report", runs[0])
    assert res.returncode == 0, res.stderr
    assert runs[0] in res.stdout


@pytest.mark.integration
def test_the_vram_leak_drill_of_a_fresh_project_passes(tmp_path: Path) -> None:
    project = init(tmp_path, "tutoring-agent")
    try:
        code, doc, err = rehearse(project, "vram-leak")
    finally:
        teardown(project)
    assert doc["passed"] is True, (failed(doc), err[-3000:])
    assert code == 0


GATE = """\
description: phase 2 waits for phase 1 to be observed for 1h (scaled)
phases: [1, 2]
time_scale: {scale}
{inject}expect:
  exit_code: {exit_code}
  phase_states: {states}
  events:
    - {{kind: watch_started}}
"""


def _gated(tmp: Path, name: str) -> Path:
    project = init(tmp, name)
    phase2 = project / "phases" / "2-integration.yaml"
    text = phase2.read_text().replace("requires: [1]", "requires: [{phase: 1, observed: 1h}]")
    # the scaled `for:` of health_failure would be shorter than an agent's restart
    text = text.replace(", health_failure]", "]")
    phase2.write_text(text)
    assert migrate("--project", str(project), "validate").returncode == 0
    return project


@pytest.mark.integration
def test_a_rehearsal_waits_out_an_observation_gate_with_triggers_watched(
        tmp_path: Path) -> None:
    project = _gated(tmp_path, "gate-agent")
    (project / "rehearsals" / "gate.yaml").write_text(GATE.format(
        scale=0.004, inject="", exit_code=0,
        states="{completed: {1: [all], 2: [all]}}"))
    try:
        code, doc, err = rehearse(project, "gate")
    finally:
        teardown(project)
    assert code == 0, (failed(doc), err[-3000:])
    observations = doc["observations"]
    assert len(observations) == 1, observations  # type: ignore[arg-type]
    obs = observations[0]  # type: ignore[index]
    assert obs["phase"] == 2 and obs["fired"] == []
    assert 5 <= obs["seconds"] <= 14.4 + 1  # 1h x 0.004, less what phase 1's end took
    assert "observed 14s" in err or "observed" in err


@pytest.mark.integration
def test_a_fault_during_the_observation_rolls_back_and_the_gated_phase_never_runs(
        tmp_path: Path) -> None:
    project = _gated(tmp_path, "gate-fault-agent")
    inject = ("inject:\n  - host: main\n    faults: {xid_errors: 1}\n"
              "    when: {event: watch_started}\n")
    (project / "rehearsals" / "gate.yaml").write_text(GATE.format(
        scale=0.004, inject=inject, exit_code=1,
        states="{completed: {1: [pc2]}, rolled_back: {1: [main]}, pending: {2: [all]}}"))
    try:
        code, doc, err = rehearse(project, "gate")
    finally:
        teardown(project)
    assert doc["passed"] is True, (failed(doc), err[-3000:])
    assert code == 0
    assert doc["observations"][0]["fired"]  # type: ignore[index]


def test_init_takes_well_under_a_second(tmp_path: Path) -> None:
    import time

    from orchestrator.init import init_project

    started = time.perf_counter()
    init_project(tmp_path / "p", "timing-agent", ["a", "b", "c"])
    assert time.perf_counter() - started < 1.0
    assert os.access(tmp_path / "p" / "sandbox" / "timing_agent_standin.py", os.X_OK)




def test_init_with_an_agent_records_it_measures_it_and_writes_the_worklist(
        tmp_path: Path) -> None:
    project = tmp_path / "mma2"
    res = migrate("init", str(project), "--name", "mma-two", "--agent", str(SEED))
    assert res.returncode == 0, res.stderr
    assert "ANALYSIS.md" in res.stdout
    import yaml

    doc = yaml.safe_load((project / "migration.yaml").read_text())
    assert doc["agent"] == str(SEED)
    metric = doc["metrics"]["migration_risk"]
    assert metric == {"source": "analyze", "path": str(SEED), "field": "risk.score"}
    analysis = (project / "ANALYSIS.md").read_text()
    rows = [line for line in analysis.splitlines() if line.startswith("| `")]
    assert sum(" socket " in r for r in rows) >= 19 and sum(" thread " in r for r in rows) >= 7
    res = migrate("--project", str(project), "validate")
    assert res.returncode == 0, res.stderr


def test_init_with_a_missing_agent_is_refused(tmp_path: Path) -> None:
    res = migrate("init", str(tmp_path / "p"), "--name", "x-agent", "--agent",
                  str(tmp_path / "nope.py"))
    assert res.returncode == 2 and "no such file" in res.stderr
    assert not (tmp_path / "p").exists()


def test_a_rehearsal_counts_requirements_on_other_migrations_as_met_and_says_so() -> None:
    from dataclasses import fields, replace

    from orchestrator.config.project import checked_project
    from orchestrator.config.scaling import scaled, without_other_migrations
    from orchestrator.core import model

    if not hasattr(model, "Requirement") or "cross" not in {f.name for f in
                                                             fields(model.Phase)}:
        pytest.skip("the project model has no requirements on other migrations yet")
    project, _ = checked_project(ROOT, None)
    req = model.Requirement(migration="model-manager-agent", phase=4, observed=86400.0)
    project.phases[1] = replace(project.phases[1], cross=(req,))
    fast = scaled(project, 0.001)
    assert fast.phases[1].cross[0].observed == pytest.approx(86.4)
    reduced, lines = without_other_migrations(fast)
    assert reduced.phases[1].cross == ()
    assert len(lines) == 1
    assert "model-manager-agent phase 4" in lines[0] and "counted as met" in lines[0]
