"""`migrate rehearse`: a fire drill of the whole migration on the sandbox inventory.

A scenario injects one fault into the stand-in agents (through the faults file
each stand-in re-reads), runs every phase in order on every sandbox host with
durations shortened by a printed time scale, and then checks that the drill did
what it must from the sandbox's *real* state: which revision the running agent
process reports, which files exist, whether the peer port answers. The engine's
own report is used only to say which trigger fired.

Each rehearsal has its own journal under `.migrate/rehearsals/<id>/`, so drills
never touch the state of the real hosts.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator._exceptions import ConfigError
from orchestrator.config.inventory import Host
from orchestrator.core.clock import CancelToken
from orchestrator.core.outcomes import RunOutcome, RunReport
from orchestrator.core.states import PhaseState
from orchestrator.engine.context import AutoYes

DEFAULT_SCENARIO = "vram-leak"
TIME_SCALE = 1 / 30
SANDBOX_INVENTORY = "inventory/sandbox.yml"


@dataclass(frozen=True)
class Expect:
    """What the drill must leave behind."""

    exit_code: int
    completed: dict[int, tuple[str, ...]]  # phase -> hosts where it must be completed
    rolled_back: tuple[int, ...] = ()  # phases that must have rolled back on main
    fired: str | None = None  # trigger that must have fired
    revision: dict[str, str] = field(default_factory=dict)  # host -> running revision
    peer_port_open: bool | None = None  # pc2's agent port, probed from the orchestrator


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: str
    faults: dict[str, dict[str, Any]]  # host -> faults.json contents
    expect: Expect


ALL = ("main", "pc2")
SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("clean", "none", {},
             Expect(0, {1: ALL, 2: ALL, 3: ALL, 4: ALL}, revision={"main": "phase3"},
                    peer_port_open=True)),
    Scenario("vram-leak", "the stand-in on main uses 30% more VRAM once phase 3 deploys",
             {"main": {"vram_leak": {"from_revision": "phase3", "pct": 30}}},
             Expect(1, {1: ALL, 2: ALL}, rolled_back=(3,), fired="vram_degradation",
                    revision={"main": "phase2"})),
    Scenario("health-outage", "/health fails on main while phase 2 runs, longer than `for`",
             {"main": {"health_outage": {"revision": "phase2"}}},
             Expect(1, {1: ALL}, rolled_back=(2,), fired="health_failure",
                    revision={"main": "original"})),
    Scenario("model-load-failure", "the stand-in on main fails a model load in phase 4",
             {"main": {"model_load_failure": True}},
             Expect(1, {1: ALL, 2: ALL, 3: ALL}, rolled_back=(4,), fired="model_load_failure",
                    revision={"main": "phase3"})),
    Scenario("pc2-partition", "pc2's agent port stops answering during phase 4",
             {"pc2": {"partition": {"on": "coordinate"}}},
             Expect(1, {1: ALL, 2: ALL, 3: ALL}, rolled_back=(4,), fired="cross_machine_failure",
                    revision={"main": "phase3"}, peer_port_open=False)),
    Scenario("rollback-failure", "phase 3 leaks VRAM and the restore of its backup fails",
             {"main": {"vram_leak": {"from_revision": "phase3", "pct": 30},
                       "restore_fails": True}},
             Expect(3, {1: ALL, 2: ALL}, fired="vram_degradation")),
]}


@dataclass
class Check:
    what: str
    ok: bool
    seen: str


@dataclass
class Drill:
    scenario: Scenario
    rehearsal_id: str
    time_scale: float
    reports: list[RunReport] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    exit_code: int = 0
    report_path: Path | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario.name, "fault": self.scenario.fault,
                "rehearsal_id": self.rehearsal_id, "time_scale": self.time_scale,
                "passed": self.passed, "exit_code": self.exit_code, "seconds": self.seconds,
                "runs": [{"run_id": r.run_id, "phase": r.phase, "outcome": r.outcome.value,
                          "reason": r.reason, "needs_human": r.needs_human}
                         for r in self.reports],
                "checks": [c.__dict__ for c in self.checks],
                "report": str(self.report_path) if self.report_path else None}


def sandbox_dir(host: Host, inventory_path: Path, project_root: Path) -> Path:
    from orchestrator.config.templating import render

    raw = host.vars.get("sandbox_dir")
    if not raw:
        return project_root / ".migrate" / "sandbox" / host.name
    context = {**host.vars, "inventory_dir": str(inventory_path.parent),
               "inventory_hostname": host.name}
    text = str(raw)
    for _ in range(5):  # inventory variables may refer to each other, as Ansible allows
        if "{{" not in text:
            break
        text = render(text, context)
    if "{{" in text or not Path(text).is_absolute():
        raise ConfigError(f"{inventory_path}: sandbox_dir of {host.name} does not resolve to "
                          f"an absolute path: {text!r}")
    return Path(text).resolve()


def agent_revision(host: Host) -> str:
    """Ask the running stand-in which revision it runs (its /health says, even on 503)."""
    url = f"http://{host.address}:{host.vars.get('health_port')}/health"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - sandbox loopback
            body = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except OSError as exc:
        return f"not running ({exc})"
    try:
        return str(json.loads(body).get("revision", "unknown"))
    except ValueError:
        return "unknown"


def port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


class Rehearsal:
    def __init__(self, root: Path, inventory: Path | None, say: Callable[[str], None],
                 keep: bool = False, time_scale: float = TIME_SCALE) -> None:
        self.root = root
        self.inventory = (inventory or root / SANDBOX_INVENTORY).resolve()
        self.say = say
        self.keep = keep
        self.time_scale = time_scale

    def run(self, name: str) -> Drill:
        from orchestrator.app import App

        if name not in SCENARIOS:
            raise ConfigError(f"no scenario {name!r} (known: {', '.join(SCENARIOS)})")
        scenario = SCENARIOS[name]
        rid = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + f"-{name}"
        state_dir = self.root / ".migrate" / "rehearsals" / rid
        app = App(root=self.root, inventory_override=self.inventory, say=self.say,
                  state_dir=state_dir, time_scale=self.time_scale, trigger_view_every=2.0)
        project, inventory = app.load()
        hosts = list(inventory.hosts.values())
        drill = Drill(scenario, rid, self.time_scale)
        started = time.monotonic()
        self.say(f"rehearsal {rid}: scenario {name} (fault: {scenario.fault})")
        self.say(f"time scale {self.time_scale:.4g}: for/bake/wait/poll run "
                 f"{1 / self.time_scale:g}x faster; thresholds unchanged")
        self._fresh_sandbox(hosts, scenario)
        try:
            self._provision()
            for number in sorted(project.phases):
                report = app.run_phase(number, tuple(h.name for h in hosts), False, AutoYes(),
                                       CancelToken(), f"migrate rehearse --scenario {name} "
                                       f"(phase {number})")
                drill.reports.append(report)
                if report.outcome is not RunOutcome.COMPLETED:
                    break
            from orchestrator.exit_codes import exit_code_for

            drill.exit_code = exit_code_for(drill.reports[-1].outcome) if drill.reports else 2
            drill.checks = self._verify(app, scenario, drill, hosts)
            drill.seconds = time.monotonic() - started
            drill.report_path = self._write_report(app, drill, state_dir)
        finally:
            app.close()
            if not self.keep:
                self._teardown()
        return drill

    # --- sandbox ----------------------------------------------------------------------------
    def _fresh_sandbox(self, hosts: list[Host], scenario: Scenario) -> None:
        self._teardown()
        for host in hosts:
            d = sandbox_dir(host, self.inventory, self.root)
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True, mode=0o700)
            faults = scenario.faults.get(host.name)
            if faults:
                (d / "faults.json").write_text(json.dumps(faults))

    def _ansible(self, playbook: str) -> None:
        path = self.root / playbook
        res = subprocess.run(["ansible-playbook", "-i", str(self.inventory), str(path)],
                             capture_output=True, text=True, cwd=self.root,
                             env=_ansible_env())
        if res.returncode != 0:
            tail = (res.stdout + res.stderr).strip().splitlines()[-15:]
            raise ConfigError(f"{playbook} failed (exit {res.returncode}):\n" + "\n".join(tail))

    def _provision(self) -> None:
        self.say("provisioning the sandbox: the original ModelManagerAgent on every host")
        self._ansible("playbooks/sandbox/provision.yml")

    def _teardown(self) -> None:
        path = self.root / "playbooks/sandbox/teardown.yml"
        if path.exists():
            subprocess.run(["ansible-playbook", "-i", str(self.inventory), str(path)],
                           capture_output=True, text=True, cwd=self.root, env=_ansible_env())

    # --- verification -----------------------------------------------------------------------
    def _verify(self, app: Any, scenario: Scenario, drill: Drill,
                hosts: list[Host]) -> list[Check]:
        expect = scenario.expect
        checks = [Check(f"exit code {expect.exit_code}", drill.exit_code == expect.exit_code,
                        str(drill.exit_code))]
        journal = app.journal
        by_name = {h.name: h for h in hosts}
        for phase, names in sorted(expect.completed.items()):
            for host in names:
                state = journal.phase_record(host, phase).state
                checks.append(Check(f"phase {phase} completed on {host}",
                                    state is PhaseState.COMPLETED, state.value))
        for phase in expect.rolled_back:
            state = journal.phase_record("main", phase).state
            checks.append(Check(f"phase {phase} rolled back on main",
                                state is PhaseState.ROLLED_BACK, state.value))
        if expect.fired:
            fired = [e for e in journal.events() if e.kind == "trigger_fired"
                     and (e.payload or {}).get("trigger") == expect.fired]
            checks.append(Check(f"trigger {expect.fired} fired", bool(fired),
                                f"{len(fired)} fire(s)"))
        for host, revision in expect.revision.items():
            seen = agent_revision(by_name[host])
            checks.append(Check(f"the agent on {host} runs revision {revision}",
                                seen == revision, seen))
        if expect.peer_port_open is not None and "pc2" in by_name:
            pc2 = by_name["pc2"]
            is_open = port_open(pc2.address, int(pc2.vars.get("zmq_port", 0)))
            checks.append(Check("pc2's agent port " + ("answers" if expect.peer_port_open
                                                        else "is cut off"),
                                is_open == expect.peer_port_open,
                                "open" if is_open else "closed"))
        if scenario.name == "rollback-failure":
            last = drill.reports[-1] if drill.reports else None
            named = bool(last and last.needs_human)
            checks.append(Check("the run names the step that needs a human", named,
                                "; ".join(last.needs_human) if last else "no run"))
        backup = sandbox_dir(by_name["main"], self.inventory, self.root) / "backups"
        checks.append(Check("phase 1's backup of main exists", backup.is_dir() and
                            any(backup.iterdir()), str(backup)))
        return checks

    def _write_report(self, app: Any, drill: Drill, state_dir: Path) -> Path:
        from orchestrator.reporting.report import write_report

        lines = [f"# Rehearsal {drill.rehearsal_id}", "",
                 f"- scenario: **{drill.scenario.name}** (fault: {drill.scenario.fault})",
                 f"- time scale: {drill.time_scale:.4g} (durations only; thresholds unchanged)",
                 f"- result: **{'PASSED' if drill.passed else 'FAILED'}** "
                 f"(exit code of the last phase run: {drill.exit_code}) in {drill.seconds:.0f}s",
                 "", "## Checks (from the sandbox's real state)", ""]
        lines += [f"- [{'x' if c.ok else ' '}] {c.what}: {c.seen}" for c in drill.checks]
        lines += ["", "## Runs", ""]
        for r in drill.reports:
            path, _ = write_report(app.journal, r.run_id,
                                   state_dir / "runs" / r.run_id / "report", "md")
            rel = path.relative_to(state_dir)
            lines.append(f"- phase {r.phase}: {r.outcome.value}"
                         + (f" ({r.reason})" if r.reason else "") + f" -- [{r.run_id}]({rel})")
        out = state_dir / "report.md"
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        (state_dir / "rehearsal.json").write_text(json.dumps(drill.as_json(), indent=2))
        return out


def _ansible_env() -> dict[str, str]:
    import os

    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env
