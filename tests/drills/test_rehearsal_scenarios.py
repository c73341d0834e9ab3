"""Scenario files (`rehearsals/<name>.yaml`): what the project ships, how a broken file is
reported (FILE:LINE, exit 2), when faults are injected, and how a drill's checks judge
what they see. No sandbox is started here: these run in well under a second each."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator._exceptions import ConfigError
from orchestrator.config.inventory import Host, read_inventory
from orchestrator.core.events import EventKind, RunEvent
from orchestrator.core.outcomes import RunOutcome, RunReport
from orchestrator.core.states import PhaseState
from orchestrator.rehearsal.checks import verify
from orchestrator.rehearsal.rehearse import Rehearsal
from orchestrator.rehearsal.sandbox import FaultInjector, Sandbox
from orchestrator.rehearsal.scenario import default_scenario, load_scenarios
from orchestrator.state.journal import Event, PhaseRecord

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "orchestrator" / "rehearsal"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "mma"
    root.mkdir()
    for part in ("migration.yaml", "phases", "playbooks", "rollback", "inventory", "sandbox",
                 "rehearsals"):
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, root / part)
        else:
            shutil.copy(src, root / part)
    return root


def write(project: Path, name: str, text: str) -> Path:
    path = project / "rehearsals" / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(project: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_scenarios(project)
    return [str(p) for p in info.value.problems]


def migrate(project: Path, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", "--project", str(project),
                           *args], capture_output=True, text=True, env=env, timeout=120,
                          stdin=subprocess.DEVNULL)


# --- what the project ships -------------------------------------------------------------------
def test_the_project_ships_its_scenarios_with_vram_leak_the_default() -> None:
    scenarios = load_scenarios(ROOT)
    assert sorted(scenarios) == ["canary", "canary-regression", "clean", "health-outage",
                                 "model-load-failure", "pc2-partition", "rollback-failure",
                                 "thread-alert", "thread-regression", "vram-leak"]
    assert scenarios["thread-alert"].requires_services == ("prometheus", "alertmanager")
    assert default_scenario(scenarios) == "vram-leak"
    leak = scenarios["vram-leak"]
    assert leak.inject[0].host.name == "main"
    assert leak.inject[0].faults == {"vram_leak": {"from_revision": "phase3", "pct": 30}}
    # YAML 1.1 reads a bare `on` as true: the partition's key must stay the string "on"
    assert scenarios["pc2-partition"].inject[0].faults == {"partition": {"on": "coordinate"}}
    canary = scenarios["canary"]
    assert canary.inventory == "inventory/fleet-sandbox.yml"
    assert canary.waves == (1, "50%", "100%") and canary.max_failed == 0
    assert canary.inject[0].when is not None and canary.inject[0].when.step == "backup"


def test_every_scenario_names_hosts_and_phases_its_inventory_has() -> None:
    from orchestrator.config.project import checked_project

    for scenario in load_scenarios(ROOT).values():
        project, inventory = checked_project(ROOT, ROOT / scenario.inventory)
        scenario.check_against(inventory, set(project.phases))  # raises when not


def test_the_fleet_sandbox_has_six_instances_each_with_its_own_dir_and_ports() -> None:
    inventory = read_inventory(ROOT / "inventory/fleet-sandbox.yml")
    hosts = list(inventory.hosts.values())
    assert len(hosts) >= 6 and all(h.is_local for h in hosts)
    sandbox = Sandbox(ROOT, inventory.path, lambda line: None)
    assert len({sandbox.dir_of(h) for h in hosts}) == len(hosts)
    ports = [h.vars[k] for h in hosts for k in ("health_port", "test_instance_port")]
    assert len(set(ports)) == len(ports)
    sandbox_ports = {h.vars[k] for h in read_inventory(ROOT / "inventory/sandbox.yml")
                     .hosts.values() for k in ("health_port", "test_instance_port")}
    assert not sandbox_ports & set(ports)


def test_the_tool_names_no_host_port_or_scenario_of_this_migration() -> None:
    scenarios = load_scenarios(ROOT)
    words = set(scenarios) | {"pc2", "mma@", "gpu1", "vram_leak", "xid_errors",
                              "vram_degradation", "deploy-phase3"}
    for path in PACKAGE.glob("*.py"):
        text = path.read_text()
        for word in words:
            assert word not in text, f"{path.name} names {word!r}"
        assert not __import__("re").search(r"\b1[0-9]{4}\b", text), f"{path.name}: a port?"
        assert "'main'" not in text and '"main"' not in text


# --- broken files: FILE:LINE, exit 2 ------------------------------------------------------------
def test_malformed_yaml_is_file_and_line(project: Path) -> None:
    write(project, "broken", """\
        description: a broken file
        expect:
          exit_code: 1
          phase_states: {completed: {1: [main]
        """)
    found = problems(project)
    assert len(found) == 1 and found[0].startswith("rehearsals/broken.yaml:5: malformed YAML")


@pytest.mark.parametrize(("body", "line", "message"), [
    ("description: x\nexpect: {exit_code: 1}\nfaults: {}\n", 3, "unknown key 'faults'"),
    ("description: x\nwaves: [1, 150%]\nexpect: {exit_code: 1}\n", 2,
     "150%' is not a count of hosts or a share"),
    ("description: x\nwaves: [0, 100%]\nexpect: {exit_code: 1}\n", 2, "a wave of 0 hosts"),
    ("description: x\nmax_failed: lots\nexpect: {exit_code: 1}\n", 2, "max_failed: 'lots'"),
    ("description: x\nphases: [1, two]\nexpect: {exit_code: 1}\n", 2, "phases: each item"),
    ("description: x\ninject:\n  - host: main\n    faults: {xid_errors: 1}\n"
     "    when: {event: deployed}\nexpect: {exit_code: 1}\n", 5, "journal event kind"),
    ("description: x\ninject:\n  - host: main\n    faults: []\nexpect: {exit_code: 1}\n", 4,
     "faults must be a non-empty mapping"),
    ("description: x\nexpect:\n  exit_code: 1\n  phase_states:\n    done: {1: [main]}\n", 5,
     "'done' is not a phase state"),
    ("description: x\nexpect:\n  exit_code: one\n", 3, "exit_code must be a whole number"),
    ("description: x\nexpect:\n  exit_code: 0\n  ports: {pc2: {zmq_port: maybe}}\n", 4,
     "zmq_port must be true"),
    ("description: x\nexpect:\n  exit_code: 0\n  files_exist: {main: [../../etc/passwd]}\n", 4,
     "inside the host's sandbox directory"),
    ("description: x\nrequires_services: [grafana]\nexpect: {exit_code: 0}\n", 2,
     "unknown service 'grafana'"),
    ("description: x\nexpect: {exit_code: 0}\ndefault: yes please\n", 3,
     "default must be true or false"),
    ("expect: {exit_code: 0}\n", 1, "description is required"),
    ("description: x\n", 1, "expect is required"),
    ("description: x\ninventory: inventory/nowhere.yml\nexpect: {exit_code: 0}\n", 2,
     "inventory inventory/nowhere.yml does not exist"),
])
def test_each_bad_value_is_reported_at_its_line(project: Path, body: str, line: int,
                                                message: str) -> None:
    write(project, "bad", body)
    found = problems(project)
    assert any(p.startswith(f"rehearsals/bad.yaml:{line}: ") and message in p
               for p in found), found


def test_every_problem_of_every_file_is_listed_at_once(project: Path) -> None:
    write(project, "one", "description: x\nwaves: [1, 150%]\nexpect: {exit_code: 1}\n")
    write(project, "two", "description: x\nexpect: {exit_code: 1, fired: [{host: main}]}\n")
    write(project, "three", "description: x\ndefault: true\nexpect: {exit_code: 1}\n")
    found = problems(project)
    assert any(p.startswith("rehearsals/one.yaml:2:") for p in found)
    assert any(p.startswith("rehearsals/two.yaml:2:") and "trigger" in p for p in found)
    assert "rehearsals/vram-leak.yaml:3: default: true here and in rehearsals/three.yaml; " \
        "only one scenario may be the default" in found, found


def test_list_with_a_broken_file_exits_2_naming_file_and_line(project: Path) -> None:
    write(project, "broken", "description: x\nexpect:\n  exit_code: 1\n  fired: 3\n")
    res = migrate(project, "rehearse", "--list")
    assert res.returncode == 2, res.stdout
    assert "rehearsals/broken.yaml:4: expect: fired" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_scenario_naming_hosts_its_inventory_lacks_exits_2_before_anything_runs(
        project: Path) -> None:
    # the canary's hosts are not in the two-host sandbox: --inventory overrides the file's
    res = migrate(project, "rehearse", "--scenario", "canary", "--inventory",
                  str(project / "inventory/sandbox.yml"))
    assert res.returncode == 2, res.stderr
    assert "rehearsals/canary.yaml:" in res.stderr and "'mma@gpu2' is no host" in res.stderr
    assert not (project / ".migrate" / "sandbox").exists()  # nothing was provisioned


def test_a_scenario_naming_a_phase_the_project_lacks_exits_2(project: Path) -> None:
    write(project, "phase-nine", "description: x\nphases: [1, 9]\nexpect: {exit_code: 0}\n")
    res = migrate(project, "rehearse", "--scenario", "phase-nine")
    assert res.returncode == 2, res.stderr
    assert "rehearsals/phase-nine.yaml:2: phase 9 is not a phase of the project" in res.stderr


def test_an_unknown_scenario_names_the_known_ones(project: Path) -> None:
    res = migrate(project, "rehearse", "--scenario", "earthquake")
    assert res.returncode == 2
    assert "no scenario 'earthquake'" in res.stderr and "vram-leak" in res.stderr


def test_without_scenario_the_file_marked_default_is_chosen(project: Path) -> None:
    rehearsal = Rehearsal(project, None, lambda line: None)
    assert rehearsal.scenario(None).name == "vram-leak"
    leak = project / "rehearsals" / "vram-leak.yaml"
    leak.write_text(leak.read_text().replace("default: true\n", ""))
    write(project, "quick", "description: x\ndefault: true\nexpect: {exit_code: 0}\n")
    assert rehearsal.scenario(None).name == "quick"
    (project / "rehearsals" / "quick.yaml").unlink()
    with pytest.raises(ConfigError, match="no default scenario"):
        rehearsal.scenario(None)


def test_missing_services_refuse_with_the_install_command(project: Path) -> None:
    write(project, "needs-alerts", "description: alert drill\n"
          "requires_services: [prometheus, alertmanager]\nexpect: {exit_code: 1}\n")
    bindir = str(Path(sys.executable).parent)  # python only: no prometheus on this PATH
    res = migrate(project, "rehearse", "--scenario", "needs-alerts", env={"PATH": bindir})
    assert res.returncode == 4, res.stderr
    assert "scenario needs-alerts needs prometheus, alertmanager" in res.stderr
    assert "install with: apt-get install prometheus prometheus-alertmanager" in res.stderr
    assert not (project / ".migrate" / "sandbox").exists()


# --- when faults are injected -------------------------------------------------------------------
def _event(kind: EventKind, host: str | None, phase: int | None = 1, step: str | None = None,
           **payload: Any) -> RunEvent:
    return RunEvent(kind, "run-1", host, phase, step, None, payload)


def test_a_timed_fault_is_written_once_on_its_event_and_host_only(tmp_path: Path,
                                                                   project: Path) -> None:
    write(project, "timed", """\
        description: x
        inject:
          - host: main
            faults: {xid_errors: 2}
            when: {event: step_succeeded, phase: 1, step: backup}
          - host: pc2
            faults: {health_outage: {revision: original}}
            when: {event: wave_started, payload: {wave: 2}}
        expect: {exit_code: 1}
        """)
    scenario = load_scenarios(project)["timed"]
    hosts = {n: Host(n, {}) for n in ("main", "pc2")}
    targets = [(inj, [hosts[inj.host.name]]) for inj in scenario.inject]
    injector = FaultInjector(targets, lambda h: tmp_path / h.name / "faults.json",
                             lambda line: None)
    injector(_event(EventKind.STEP_SUCCEEDED, "pc2", step="backup"))  # other host
    injector(_event(EventKind.STEP_SUCCEEDED, "main", phase=2, step="backup"))  # other phase
    injector(_event(EventKind.STEP_STARTED, "main", step="backup"))  # other kind
    injector(_event(EventKind.WAVE_STARTED, None, wave=1))  # other wave
    assert not (tmp_path / "main").exists() and not (tmp_path / "pc2").exists()
    injector(_event(EventKind.STEP_SUCCEEDED, "main", step="backup"))
    assert (tmp_path / "main" / "faults.json").read_text() == '{"xid_errors": 2}'
    (tmp_path / "main" / "faults.json").unlink()
    injector(_event(EventKind.STEP_SUCCEEDED, "main", step="backup"))  # once only
    assert not (tmp_path / "main" / "faults.json").exists()
    injector(_event(EventKind.WAVE_STARTED, None, wave=2))  # a run-wide event matches
    assert "health_outage" in (tmp_path / "pc2" / "faults.json").read_text()
    assert injector.injected == ["main: xid_errors", "pc2: health_outage"]


# --- how checks judge ---------------------------------------------------------------------------
@dataclass
class FakeJournal:
    states: dict[tuple[str, int], PhaseState]
    log: list[Event] = field(default_factory=list)

    def phase_record(self, host: str, phase: int) -> PhaseRecord:
        return PhaseRecord(host, phase, self.states.get((host, phase), PhaseState.PENDING),
                           None, None, None)

    def events(self) -> list[Event]:
        return self.log


def _journaled(kind: str, host: str | None, **payload: Any) -> Event:
    return Event(1, "now", "run-1", host, 1, None, kind, "prose nobody parses", payload)


def test_checks_fail_on_the_wrong_state_event_count_or_file(project: Path) -> None:
    write(project, "judged", """\
        description: x
        inventory: inventory/fleet-sandbox.yml
        expect:
          exit_code: 1
          phase_states: {completed: {1: [mma@main]}, pending: {1: [mma@gpu3]}}
          fired: {trigger: gpu_operation_failure, host: mma@gpu2}
          events: [{kind: wave_started, payload: {wave: 3}, count: 0}]
          needs_human: false
          files_exist: {mma@main: [backups]}
        """)
    scenario = load_scenarios(project)["judged"]
    inventory = read_inventory(project / "inventory/fleet-sandbox.yml")
    sandbox = Sandbox(project, inventory.path, lambda line: None)
    (sandbox.dir_of(inventory.hosts["mma@main"]) / "backups").mkdir(parents=True)
    good = FakeJournal({("mma@main", 1): PhaseState.COMPLETED},
                       [_journaled("trigger_fired", "mma@gpu2",
                                   trigger="gpu_operation_failure"),
                        _journaled("wave_started", None, wave=2)])
    report = RunReport("run-1", 1, [], RunOutcome.ROLLED_BACK)
    checks = verify(scenario, 1, [report], good, inventory, sandbox)  # type: ignore[arg-type]
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert len(checks) == 7

    bad = FakeJournal({("mma@main", 1): PhaseState.ROLLED_BACK,
                       ("mma@gpu3", 1): PhaseState.COMPLETED},
                      [_journaled("trigger_fired", "mma@gpu1", trigger="gpu_operation_failure"),
                       _journaled("trigger_fired", "mma@gpu2", trigger="vram_degradation"),
                       _journaled("wave_started", None, wave=3)])
    shutil.rmtree(sandbox.dir_of(inventory.hosts["mma@main"]))
    human = RunReport("run-1", 1, [], RunOutcome.ROLLED_BACK, needs_human=["x: y"])
    checks = verify(scenario, 3, [human], bad, inventory, sandbox)  # type: ignore[arg-type]
    assert [c.ok for c in checks] == [False] * 7, checks


def test_ports_held_by_another_process_are_named_before_provisioning(tmp_path: Path) -> None:
    import socket

    with socket.socket() as held, socket.socket() as spare:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        spare.bind(("127.0.0.1", 0))  # bound, not listening: free for a stand-in
        taken, free = held.getsockname()[1], spare.getsockname()[1]
        inv = tmp_path / "sandbox.yml"
        inv.write_text(f"all:\n  vars: {{ansible_host: 127.0.0.1}}\n  hosts:\n"
                       f"    web1: {{health_port: {taken}, dcgm_exporter_port: {taken}, "
                       f"test_instance_port: {free}, use_port: yes}}\n")
        hosts = list(read_inventory(inv).hosts.values())
        busy = Sandbox(tmp_path, inv, lambda line: None).busy_ports(hosts)
    assert busy == [f"127.0.0.1:{taken} (dcgm_exporter_port of web1, health_port of web1)"]
