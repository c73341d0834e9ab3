"""The core object the CLI builds: one project, its inventory and journal, and the verbs.

Each method does one command's work and returns data (or a RunReport); it never
prints the final answer and never exits. The CLI renders what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator._exceptions import ConfigError, RefusedError
from orchestrator.config.inventory import Host, Inventory
from orchestrator.config.project import checked_project
from orchestrator.core.clock import CancelToken, Clock, SystemClock
from orchestrator.core.model import Phase, Project
from orchestrator.core.outcomes import RunReport
from orchestrator.core.states import ACTIVE, ROLLBACKABLE, PhaseState
from orchestrator.state.journal import Journal, open_journal

if TYPE_CHECKING:  # the engine is imported where a command runs something, not for status
    from orchestrator.engine.phase_run import EngineParts, Monitor, Prompter

Say = Callable[[str], None]


@dataclass
class App:
    root: Path
    inventory_override: Path | None = None
    say: Say = lambda line: None
    clock: Clock = field(default_factory=SystemClock)
    state_dir: Path | None = None  # rehearsals keep their own journal
    time_scale: float = 1.0  # rehearsals shorten durations (never thresholds)
    trigger_view_every: float = 0.0  # > 0: print live trigger values this often
    _loaded: tuple[Project, Inventory] | None = None
    _journal: Journal | None = None

    # --- loading ----------------------------------------------------------------------------
    def load(self) -> tuple[Project, Inventory]:
        """Validate everything; raises ConfigError listing every problem."""
        if self._loaded is None:
            from orchestrator.config.scaling import scaled

            project, inventory = checked_project(self.root, self.inventory_override)
            project = scaled(project, self.time_scale)
            project.state_dir_override = self.state_dir
            self._loaded = (project, inventory)
        return self._loaded

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            project, _ = self.load()
            self._journal = open_journal(project.state_dir)
        return self._journal

    def phase(self, number: int) -> Phase:
        project, _ = self.load()
        if number not in project.phases:
            known = ", ".join(str(n) for n in sorted(project.phases))
            raise ConfigError(f"no phase {number} (phases: {known})")
        return project.phases[number]

    def hosts(self, names: tuple[str, ...] | list[str]) -> list[Host]:
        _, inventory = self.load()
        if not names:
            raise ConfigError("--host is required (an inventory host or group)")
        return inventory.resolve(list(names))

    def parts(self, prompter: Prompter | None = None,
              monitor: Monitor | None = None) -> EngineParts:
        from orchestrator.engine.phase_run import EngineParts, NoTty
        from orchestrator.monitoring.monitor import MetricChecker, TriggerMonitor
        from orchestrator.monitoring.notify import Notifications
        from orchestrator.runners.ansible import AnsiblePlaybookRunner
        from orchestrator.runners.ssh import HostCommandRunner

        project, inventory = self.load()
        commands = HostCommandRunner()
        parts = EngineParts(journal=self.journal, playbooks=AnsiblePlaybookRunner(),
                            commands=commands, clock=self.clock,
                            prompter=prompter or NoTty(), say=self.say)
        if monitor is None:
            live = TriggerMonitor(project, inventory, self.journal, self.clock, commands,
                                  self.say)
            live.view_every = self.trigger_view_every
            monitor = live
        parts.monitor = monitor
        parts.checker = MetricChecker(project, inventory, self.journal, self.clock, commands)
        parts.notifications = Notifications(project.notify, project.name, log=self.say)
        return parts

    # --- verbs ------------------------------------------------------------------------------
    def validate(self) -> dict[str, Any]:
        project, inventory = self.load()
        return {"project": project.name, "phases": sorted(project.phases),
                "hosts": sorted(inventory.hosts), "metrics": sorted(project.metrics),
                "triggers": sorted(project.triggers), "problems": []}

    def plan(self, number: int, host_names: tuple[str, ...]) -> dict[str, Any]:
        from orchestrator.monitoring.monitor import raise_missing_baselines
        from orchestrator.reporting.views import plan_document

        project, _ = self.load()
        phase = self.phase(number)
        hosts = self.hosts(host_names)
        from orchestrator.runners.ssh import HostCommandRunner

        raise_missing_baselines(project, phase, hosts, self.journal, HostCommandRunner())
        doc = plan_document(project, phase, hosts, self._inventory())
        for t in doc["triggers"]:
            baseline = project.triggers[t["name"]].baseline
            t["baselines"] = [
                {"host": h.name, "name": baseline,
                 "value": self.journal.baseline(h.name, baseline).get(t["metric"],
                                                                      "sampled at phase start")}
                for h in hosts] if t["condition"] in ("degrade_pct", "increase") else []
        return doc

    def baseline_capture(self, host_names: tuple[str, ...], name: str,
                         duration: float) -> dict[str, Any]:
        from orchestrator.monitoring.monitor import MetricChecker
        from orchestrator.runners.ssh import HostCommandRunner

        project, inventory = self.load()
        hosts = self.hosts(host_names)
        checker = MetricChecker(project, inventory, self.journal, self.clock,
                                HostCommandRunner())
        out: dict[str, Any] = {"name": name, "duration_s": duration, "hosts": {}}
        for host in hosts:
            self.say(f"sampling {len(checker.numeric_metrics())} metrics on {host.name} "
                     f"for {duration:g}s")
            values = checker.capture(name, host, duration, None)
            if not values:
                raise RefusedError(f"baseline {name} on {host.name}: no metric gave data in "
                                   f"{duration:g}s; nothing stored")
            out["hosts"][host.name] = values
        return out

    def _inventory(self) -> Inventory:
        return self.load()[1]

    def run_phase(self, number: int, host_names: tuple[str, ...], dry_run: bool,
                  prompter: Prompter, cancel: CancelToken, command: str,
                  parts: EngineParts | None = None) -> RunReport:
        from orchestrator.engine.phase_run import PhaseRun
        from orchestrator.monitoring.monitor import raise_missing_baselines

        project, inventory = self.load()
        phase = self.phase(number)
        hosts = self.hosts(host_names)
        parts = parts or self.parts(prompter)
        raise_missing_baselines(project, phase, hosts, self.journal, parts.commands)
        run = PhaseRun(project, inventory, phase, hosts, parts, dry_run=dry_run,
                       command=command, cancel=cancel)
        try:
            return run.execute()
        finally:
            if parts.notifications is not None:
                parts.notifications.close(timeout=5.0)

    def rollback(self, host_names: tuple[str, ...], number: int | None, command: str,
                 parts: EngineParts | None = None) -> RunReport:
        """Roll back phase N (default: the latest phase not pending or rolled back)."""
        from orchestrator.engine.phase_run import new_run_id

        project, inventory = self.load()
        hosts = self.hosts(host_names)
        journal = self.journal
        if number is None:
            number = self._latest_rollbackable(hosts)
        phase = self.phase(number)
        for host in hosts:
            rec = journal.phase_record(host.name, number)
            if rec.state not in ROLLBACKABLE or rec.state in ACTIVE:
                raise RefusedError(f"host {host.name}: phase {number} is {rec.state.value}; "
                                   "there is nothing to roll back")
        run_id = new_run_id()
        parts = parts or self.parts()
        journal.acquire([h.name for h in hosts], run_id, command)
        try:
            journal.create_run(run_id, number, [h.name for h in hosts], command, "rollback",
                               False, {})
            report = self._rollback_each(project, inventory, phase, hosts, parts, run_id)
            journal.end_run(run_id, report.outcome.value)
            return report
        finally:
            journal.release(run_id)
            if parts.notifications is not None:
                parts.notifications.close(timeout=5.0)

    def _rollback_each(self, project: Project, inventory: Inventory, phase: Phase,
                       hosts: list[Host], parts: EngineParts, run_id: str) -> RunReport:
        """Each host's phase is undone from the run that last moved it."""
        from orchestrator.engine.phase_run import Rollback, RunOutcome

        by_run: dict[str, list[Host]] = {}
        for host in hosts:
            rec = self.journal.phase_record(host.name, phase.number)
            by_run.setdefault(rec.run_id or run_id, []).append(host)
        reports = []
        for origin, group in by_run.items():
            self.journal.event(run_id, None, phase.number, None, "rollback_requested",
                               f"undoing run {origin} on {', '.join(h.name for h in group)}")
            reports.append(Rollback(project, inventory, phase, group, parts, origin).execute(
                f"requested by operator (migrate rollback, run {run_id})"))
        worst = max(reports, key=lambda r: r.outcome is RunOutcome.ROLLBACK_FAILED)
        worst.needs_human = [n for r in reports for n in r.needs_human]
        worst.hosts = [h.name for h in hosts]
        return worst

    def _latest_rollbackable(self, hosts: list[Host]) -> int:
        project, _ = self.load()
        candidates = []
        for number in sorted(project.phases, reverse=True):
            states = [self.journal.phase_record(h.name, number).state for h in hosts]
            if any(s not in (PhaseState.PENDING, PhaseState.ROLLED_BACK) for s in states):
                candidates.append(number)
                break
        if not candidates:
            raise RefusedError("no phase to roll back on "
                               f"{', '.join(h.name for h in hosts)}: all pending or rolled back")
        return candidates[0]

    def status(self, host_names: tuple[str, ...]) -> dict[str, Any]:
        from orchestrator.reporting.views import status_document

        project, inventory = self.load()
        hosts = self.hosts(host_names) if host_names else list(inventory.hosts.values())
        return status_document(project, hosts, self.journal)

    def history(self, host: str | None, run_id: str | None) -> dict[str, Any]:
        return {"events": [e.as_json() for e in self.journal.events(host, run_id)]}

    def report(self, run_id: str, fmt: str) -> tuple[Path, str]:
        from orchestrator.reporting.report import find_run, write_report

        project, _ = self.load()
        rehearsals = project.root / ".migrate" / "rehearsals"
        dirs = [project.state_dir]
        if rehearsals.is_dir():
            dirs += sorted(rehearsals.iterdir(), reverse=True)
        journal, state_dir = find_run(dirs, run_id)
        return write_report(journal, run_id, state_dir / "runs" / run_id / "report", fmt)

    def watcher(self, host_names: tuple[str, ...], act: bool, metrics_port: int | None) -> Any:
        from orchestrator.monitoring.watch import Watcher

        project, inventory = self.load()
        hosts = self.hosts(host_names)
        return Watcher(project, inventory, self.parts(), hosts, act=act,
                       metrics_port=metrics_port)

    def resume(self, host_names: tuple[str, ...], accept_changes: bool, prompter: Prompter,
               cancel: CancelToken, command: str) -> RunReport:
        """Continue the interrupted run on the hosts from the step that was in flight.

        Refused (exit 4) when the phase file or a playbook changed since the run began,
        unless `accept_changes`. A run that died while rolling back, or after a step had
        failed, resumes its rollback instead.
        """
        from orchestrator.engine.phase_run import PhaseRun, Rollback, file_checksums

        project, inventory = self.load()
        hosts = self.hosts(host_names)
        journal = self.journal
        found = {}
        for host in hosts:
            recs = [journal.phase_record(host.name, n) for n in sorted(project.phases)]
            interrupted = [r for r in recs if r.state is PhaseState.INTERRUPTED]
            if not interrupted:
                raise RefusedError(f"host {host.name} has no interrupted run to resume")
            found[host.name] = interrupted[-1]
        runs = {(r.run_id, r.phase) for r in found.values()}
        if len(runs) != 1:
            raise RefusedError("the hosts were interrupted in different runs; resume them "
                               "one at a time: " + ", ".join(f"{h}: phase {r.phase} run "
                                                             f"{r.run_id}"
                                                             for h, r in found.items()))
        (run_id, number), = runs
        assert run_id is not None
        phase = self.phase(number)
        info = journal.run_info(run_id) or {}
        then = info.get("checksums", {})
        now = file_checksums(project, phase)
        changed = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k))
        if changed and not accept_changes:
            raise RefusedError(f"phase {number} changed since run {run_id} began: "
                               f"{', '.join(changed)}; review, then resume with "
                               "--accept-changes (or roll back)")
        parts = self.parts(prompter)
        if changed:
            journal.event(run_id, None, number, None, "changes_accepted", ", ".join(changed))
        events = journal.events(run_id=run_id)
        rolling = any(e.kind == "rollback_started" for e in events)
        failed = [e for e in events if e.kind == "step_failed"]
        try:
            if rolling or failed:
                reason = next((e.detail for e in events if e.kind == "rollback_started"), None) \
                    or f"step {failed[0].step} failed on {failed[0].host}: {failed[0].detail}"
                journal.acquire([h.name for h in hosts], run_id, command)
                try:
                    return Rollback(project, inventory, phase, hosts, parts, run_id).execute(
                        f"{reason} (resumed after interruption)")
                finally:
                    journal.release(run_id)
            run = PhaseRun(project, inventory, phase, hosts, parts, command=command,
                           cancel=cancel, run_id=run_id, resume=True)
            return run.execute()
        finally:
            if parts.notifications is not None:
                parts.notifications.close(timeout=5.0)
