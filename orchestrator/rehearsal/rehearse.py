"""`migrate rehearse`: a fire drill of the migration on a sandbox inventory.

A scenario (`rehearsals/<name>.yaml` in the project, read by `scenario.py`) injects
faults into the stand-in agents through the faults file each stand-in re-reads,
runs the project's phases in order on the sandbox's hosts (optionally in waves with
a failure budget) with durations shortened by a printed time scale, and then checks
what the drill must have left behind from the sandbox's *real* state (`checks.py`):
which revision the running agent process reports, which files exist, whether a
port answers, and the journal's recorded states and structured event payloads.

Each rehearsal has its own journal under `.migrate/rehearsals/<id>/`, so drills
never touch the state of the real hosts. Everything specific to one migration
(hosts, ports, faults, scenario names) is in the project's files, none of it here.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator._exceptions import ConfigError, MigrateError, RefusedError
from orchestrator.config.inventory import Host
from orchestrator.config.scaling import without_other_migrations
from orchestrator.core.clock import CancelToken
from orchestrator.core.model import AlertmanagerConfig, Project
from orchestrator.core.outcomes import RunOutcome, RunReport
from orchestrator.engine.context import AutoYes
from orchestrator.rehearsal.checks import Check, verify
from orchestrator.rehearsal.sandbox import (
    FaultInjector,
    Sandbox,
    agent_revision,
    port_open,
    sandbox_dir,
)
from orchestrator.rehearsal.scenario import (
    SCENARIO_DIR,
    Scenario,
    default_scenario,
    load_scenarios,
)

__all__ = ["Check", "Drill", "Rehearsal", "agent_revision", "default_scenario",
           "load_scenarios", "no_scenarios", "port_open", "sandbox_dir"]

INSTALL = "apt-get install"
BUSY = 2.0  # load average per core above which a drill warns that timing may suffer


def _load() -> float:
    """The 1-minute load average: a drill on an overloaded machine says so in its report."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        return 0.0


@dataclass
class Drill:
    scenario: Scenario
    rehearsal_id: str
    time_scale: float
    inventory: Path
    reports: list[RunReport] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    exit_code: int = 0
    refused: str | None = None  # a phase refused to start (exit 4): why
    injected: list[str] = field(default_factory=list)
    report_path: Path | None = None
    seconds: float = 0.0
    load: list[float] = field(default_factory=list)  # 1-minute load average, start and end
    assumed: list[str] = field(default_factory=list)  # requirements on other migrations
    observations: list[dict[str, Any]] = field(default_factory=list)  # gates waited out

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario.name, "fault": self.scenario.fault,
                "rehearsal_id": self.rehearsal_id, "time_scale": self.time_scale,
                "inventory": str(self.inventory), "passed": self.passed,
                "exit_code": self.exit_code, "refused": self.refused,
                "seconds": round(self.seconds, 1), "injected": self.injected,
                "load": self.load, "cores": os.cpu_count(),
                "runs": [{"run_id": r.run_id, "phase": r.phase, "outcome": r.outcome.value,
                          "reason": r.reason, "needs_human": r.needs_human}
                         for r in self.reports],
                "checks": [c.__dict__ for c in self.checks],
                "assumed_met": self.assumed, "observations": self.observations,
                "report": str(self.report_path) if self.report_path else None}


def no_scenarios(root: Path) -> str:
    """What to say in a project without scenarios: where they go and how to start one."""
    return (f"no rehearsal scenarios: {root / SCENARIO_DIR} holds no *.yaml. Add one, e.g. "
            f"{SCENARIO_DIR}/NAME.yaml with\n"
            "  description: none (all phases must complete)\n"
            "  expect: {exit_code: 0, phase_states: {completed: {1: [all]}}}\n"
            "and a sandbox (inventory/sandbox.yml, playbooks/sandbox/provision.yml and "
            "teardown.yml, a stand-in agent); `migrate init DIR --name NAME` writes all of "
            "these into a new project to copy from")




@dataclass(frozen=True)
class _DrillReceiver:
    """The drill's own alert receiver: a free loopback port and a fresh token, given to the
    receiver in its configuration (never through the process's environment)."""

    port: int
    token: str

    @classmethod
    def pick(cls) -> _DrillReceiver:
        import secrets
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        return cls(port, secrets.token_urlsafe(24))

    @property
    def config(self) -> AlertmanagerConfig:
        return AlertmanagerConfig(f"127.0.0.1:{self.port}", None, None, token=self.token)


class Rehearsal:
    """Runs one scenario of a project. `inventory` (the CLI's --inventory) overrides the
    scenario's own; `time_scale` overrides the scenario's (tests). `open_app` is the
    composition root's `App` (keyword arguments as App's), handed in by the caller
    because the app is a floor above the rehearsal; without it, `run` cannot run."""

    def __init__(self, root: Path, inventory: Path | None, say: Callable[[str], None],
                 keep: bool = False, time_scale: float | None = None,
                 view: Any = None, metrics_at: Any = None,
                 open_app: Callable[..., Any] | None = None) -> None:
        self.open_app = open_app
        self.root = root
        self.inventory_override = inventory.resolve() if inventory else None
        self.say = say
        self.keep = keep
        self.time_scale = time_scale
        self.view = view  # reporting.live.LiveView: the operator's screen
        #: --metrics-listen/-port (telemetry.web_config.MetricsListen): /metrics meanwhile
        self.metrics_at = metrics_at

    def scenario(self, name: str | None) -> Scenario:
        scenarios = load_scenarios(self.root)
        if not scenarios:
            raise MigrateError(no_scenarios(self.root))
        name = name or default_scenario(scenarios)
        if name is None:
            raise ConfigError(f"no default scenario (none of {SCENARIO_DIR}/*.yaml says "
                              f"`default: true`); use --scenario ({', '.join(scenarios)})")
        if name not in scenarios:
            raise ConfigError(f"no scenario {name!r} (known: {', '.join(scenarios)})")
        return scenarios[name]

    def run(self, name: str | None = None) -> Drill:
        from orchestrator.exit_codes import exit_code_for

        if self.open_app is None:
            raise TypeError("Rehearsal.run needs open_app, the App to run the drill in")

        scenario = self.scenario(name)
        missing = scenario.missing_services()
        if missing:
            raise RefusedError(f"scenario {scenario.name} needs "
                               f"{', '.join(scenario.requires_services)}, not installed here "
                               f"(missing: {', '.join(missing)}); install with: "
                               f"{INSTALL} {' '.join(missing)}")
        inventory_path = self.inventory_override or (self.root / scenario.inventory).resolve()
        scale = self.time_scale if self.time_scale is not None else scenario.time_scale
        rid = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + f"-{scenario.name}"
        state_dir = self.root / ".migrate" / "rehearsals" / rid
        drill = Drill(scenario, rid, scale, inventory_path, load=[_load()])
        started = time.monotonic()
        cores = os.cpu_count() or 1
        if drill.load[0] > BUSY * cores:
            self.say(f"this machine is busy (load {drill.load[0]:.1f} on {cores} cores): "
                     "slow steps may outlast the time-scaled `for:` windows, so a failed "
                     "check may be the machine's rather than the migration's")
        receiver = _DrillReceiver.pick()

        def reshape(project: Project) -> Project:
            """The drill's project: requirements on other migrations taken out (each
            said in `drill.assumed`), and `alert:` triggers served by its own receiver."""
            reduced, drill.assumed = without_other_migrations(project)
            if any(t.alert is not None for t in reduced.triggers.values()):
                reduced = replace(reduced, alertmanager=receiver.config)
            return reduced

        with self.open_app(root=self.root, inventory_override=inventory_path, say=self.say,
                           state_dir=state_dir, time_scale=scale,
                           trigger_view_every=0.0 if self.view is not None else 2.0,
                           metrics_at=self.metrics_at, reshape=reshape) as app:
            project, inventory = app.load()
            assumed = drill.assumed
            alert_lab = self._alert_lab(project, inventory, scenario, state_dir, scale,
                                        receiver)
            if alert_lab is not None:
                app.close_later(alert_lab.close)
            sandbox = Sandbox(self.root, inventory_path, self.say, project.forks)
            scenario.check_against(inventory, set(project.phases))
            hosts = (inventory.resolve([n.name for n in scenario.hosts]) if scenario.hosts
                     else list(inventory.hosts.values()))
            targets = [(inj, inventory.resolve([inj.host.name])) for inj in scenario.inject]
            upfront: dict[str, dict[str, Any]] = {}
            for inj, inj_hosts in targets:
                if inj.when is None:
                    for h in inj_hosts:
                        upfront.setdefault(h.name, {}).update(inj.faults)
            injector = FaultInjector(targets, sandbox.faults_of, self.say)
            app.subscribe(injector)
            if self.view is not None:
                app.subscribe(self.view)
                app.subscribers.subscribe_cycles(self.view.on_cycle)
                for number, phase in project.phases.items():
                    self.view.expect(number, [s.id for s in phase.steps],
                                     [h.name for h in hosts], phase.bake)
            self.say(f"rehearsal {rid}: scenario {scenario.name} ({scenario.fault})")
            self.say(f"time scale {scale:.4g}: for/bake/wait/observed/poll run "
                     f"{1 / scale:g}x faster; thresholds unchanged")
            for line in assumed:
                self.say(line)
            every = list(inventory.hosts.values())
            restored = sandbox.fresh(every, upfront)
            drill.injected = [f"{h}: {', '.join(sorted(f))} (from the start)"
                              for h, f in upfront.items()]
            busy = sandbox.busy_ports(every)
            if busy:
                raise RefusedError(f"the sandbox's ports are held by other processes: "
                                   f"{', '.join(busy)}; stop them (another sandbox's "
                                   f"`ansible-playbook -i INVENTORY playbooks/sandbox/"
                                   f"teardown.yml`), or give {inventory_path.name} free ports")
            try:
                if restored:
                    sandbox.start()
                else:
                    sandbox.provision(every)
                self._run_phases(app, scenario, hosts, drill)
                drill.exit_code = (exit_code_for(drill.reports[-1].outcome)
                                   if drill.reports and drill.refused is None
                                   else drill.exit_code)
                drill.injected += injector.injected
                drill.checks = verify(scenario, drill.exit_code, drill.reports, app.journal,
                                      inventory, sandbox)
                drill.seconds = time.monotonic() - started
                drill.load.append(_load())
                drill.report_path = self._write_report(app, drill, state_dir)
            finally:
                if not self.keep:
                    sandbox.teardown()
        return drill

    def _alert_lab(self, project: Any, inventory: Any, scenario: Scenario,
                   state_dir: Path, scale: float, receiver: _DrillReceiver) -> Any:
        """A drill never talks to the operators' Alertmanager: its `alert:` triggers get a
        push receiver of the drill's own (`_DrillReceiver`, given to the project as it
        loads). A scenario that `requires_services: [prometheus, alertmanager]` also gets
        a real Prometheus with the project's rules and a real Alertmanager pushing to it."""
        if project.alertmanager != receiver.config:
            return None
        if "alertmanager" not in scenario.requires_services:
            return None
        from orchestrator.rehearsal.alert_lab import LabUnavailable, start_sandbox_lab

        port = receiver.port
        token = receiver.token
        workdir = state_dir / "alert-lab"
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            lab = start_sandbox_lab(self.root, list(inventory.hosts.values()), workdir,
                                    receiver_url=f"http://127.0.0.1:{port}/alerts",
                                    token=token, time_scale=scale)
        except LabUnavailable as exc:
            raise RefusedError(f"scenario {scenario.name}: {exc}") from exc
        self.say(f"alert lab: Prometheus {lab.prometheus_url}, Alertmanager "
                 f"{lab.alertmanager_url} pushing to 127.0.0.1:{port}")
        return lab

    def _run_phases(self, app: Any, scenario: Scenario, hosts: list[Host],
                    drill: Drill) -> None:
        project, _ = app.load()
        names = tuple(h.name for h in hosts)
        for number in scenario.phases or tuple(sorted(project.phases)):
            if not self._observe(app, project.phases[number], hosts, drill):
                return
            try:
                report = app.run_phase(number, names, False, AutoYes(), CancelToken(),
                                       f"migrate rehearse --scenario {scenario.name} "
                                       f"(phase {number})", waves=scenario.waves,
                                       max_failed=scenario.max_failed)
            except RefusedError as exc:  # a drill may expect a refusal (exit 4)
                drill.refused = f"phase {number}: {exc}"
                drill.exit_code = exc.exit_code
                self.say(f"phase {number} refused: {exc}")
                return
            drill.reports.append(report)
            if report.outcome is not RunOutcome.COMPLETED:
                return

    def _observe(self, app: Any, phase: Any, hosts: list[Host], drill: Drill) -> bool:
        """Wait out the phase's own observation gates (`requires: {phase: N, observed: D}`,
        D already scaled) as the real run would: with the triggers of the completed phases
        watched (`migrate watch`). False when a trigger fired and the watch rolled back."""
        from orchestrator.core.durations import format_duration
        from orchestrator.engine.refusals import observation_left

        left = 0.0
        gates = []
        for required, needed in sorted(phase.observed.items()):
            for host in hosts:
                wait, why = observation_left(app.journal, host.name, required, needed)
                if why is None:
                    left = max(left, wait)
            gates.append(f"phase {required} observed {format_duration(needed)}")
        if left <= 0:
            return True
        self.say(f"phase {phase.number} requires {', '.join(gates)} (scaled): watching the "
                 f"completed phases' triggers for {format_duration(left)}")
        watcher = app.watcher(tuple(h.name for h in hosts), True)
        result = watcher.run(left + app.load()[0].poll_interval, False)
        drill.observations.append({"phase": phase.number, "gates": gates,
                                   "seconds": round(left, 1), "watch_run_id": watcher.run_id,
                                   "fired": [f"{f.trigger} on {f.host}" for f in result.fired]})
        if result.rollback is not None:
            drill.reports.append(result.rollback)
            self.say(f"a trigger fired during the observation before phase {phase.number}: "
                     f"{result.rollback.outcome.value}")
            return False
        return True

    def _write_report(self, app: Any, drill: Drill, state_dir: Path) -> Path:
        from orchestrator.reporting.report import write_report

        s = drill.scenario
        lines = [f"# Rehearsal {drill.rehearsal_id}", "",
                 f"- scenario: **{s.name}** ({s.display}): {s.fault}",
                 f"- inventory: {drill.inventory}",
                 f"- time scale: {drill.time_scale:.4g} (durations only; thresholds unchanged)",
                 f"- result: **{'PASSED' if drill.passed else 'FAILED'}** "
                 f"(exit code of the last phase run: {drill.exit_code}) in {drill.seconds:.0f}s",
                 f"- machine load (1 min, start/end): "
                 f"{' / '.join(f'{v:.1f}' for v in drill.load)} on {os.cpu_count()} cores"]
        if s.waves is not None or s.max_failed is not None:
            lines.append(f"- fleet: waves {list(s.waves or [])}, max_failed {s.max_failed}")
        lines += [f"- fault injected on {line}" for line in drill.injected]
        if drill.refused:
            lines.append(f"- refused: {drill.refused}")
        lines += [f"- {line}" for line in drill.assumed]
        lines += [f"- before phase {o['phase']}: {', '.join(o['gates'])}, waited "
                  f"{o['seconds']:g}s with triggers watched (run {o['watch_run_id']})"
                  + (f"; fired: {', '.join(o['fired'])}" if o["fired"] else "")
                  for o in drill.observations]
        lines += ["", "## Checks (from the sandbox's real state)", ""]
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


