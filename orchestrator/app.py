"""The core object the CLI builds: one project, its inventory and journal, and the verbs.

Each method does one command's work and returns data (or a RunReport); it never
prints the final answer and never exits. The CLI renders what it returns.

`App` is a context manager and owns every long-lived resource a command opens: the
journal, the SSH connection pool, the notifier's worker and watch's /metrics
server. `with App(...) as app:` closes them all, in reverse order, whatever
happened; nothing is closed by hand elsewhere. Everything that changes hosts goes
through one `RunLifecycle` (`engine.lifecycle`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from orchestrator._exceptions import ConfigError, RefusedError
from orchestrator.config.inventory import Host, Inventory
from orchestrator.config.project import checked_project
from orchestrator.core.clock import CancelToken, Clock, SystemClock
from orchestrator.core.events import Hook
from orchestrator.core.model import Phase, Project
from orchestrator.core.outcomes import RunReport
from orchestrator.core.states import PhaseState
from orchestrator.state.journal import Journal

if TYPE_CHECKING:  # the engine is imported where a command runs something, not for status
    from orchestrator.core.bus import Cycle, Subscribers
    from orchestrator.core.supervision import Supervisor
    from orchestrator.engine.context import EngineParts, Prompter
    from orchestrator.engine.lifecycle import RunLifecycle
    from orchestrator.telemetry.metrics import MigrateMetrics
    from orchestrator.telemetry.web_config import MetricsListen

Say = Callable[[str], None]


class _OnFirstUse:
    """A command runner that builds the real one when first asked to run a command."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._runner: Any = None

    def run_command(self, request: Any, cancel: CancelToken) -> Any:
        if self._runner is None:
            self._runner = self._build()
        return self._runner.run_command(request, cancel)


@dataclass
class App:
    root: Path
    inventory_override: Path | None = None
    say: Say = lambda line: None
    clock: Clock = field(default_factory=SystemClock)
    state_dir: Path | None = None  # rehearsals keep their own journal
    time_scale: float = 1.0  # rehearsals shorten durations (never thresholds)
    trigger_view_every: float = 0.0  # > 0: print live trigger values this often
    verbose: bool = False  # stream Ansible's task lines to the operator
    hooks: list[Hook] = field(default_factory=list)  # extra event listeners (live view)
    cycle_hooks: list[Callable[[Cycle], None]] = field(default_factory=list)  # cycle listeners
    #: --metrics-listen/--metrics-port/--web-config: serve SPEC section 7's /metrics there
    metrics_at: MetricsListen | None = None
    #: a drill's changes to the project, made once as it loads (every run then sees them)
    reshape: Callable[[Project], Project] | None = None
    _metrics: MigrateMetrics | None = None
    _loaded: tuple[Project, Inventory] | None = None
    _journal: Journal | None = None
    _parts: EngineParts | None = None
    _resources: ExitStack = field(default_factory=ExitStack)

    @cached_property
    def subscribers(self) -> Subscribers:
        """Who hears every run of this app (each run's bus delivers to them): the hooks
        and cycle hooks it was built with, then what `serve_metrics`, `parts` and
        `subscribe` add. Built on first use (a `status` never needs it)."""
        from orchestrator.core.bus import Subscribers

        subscribers = Subscribers(log=self.say)
        for hook in self.hooks:
            subscribers.subscribe(hook)
        for listener in self.cycle_hooks:
            subscribers.subscribe_cycles(listener)
        if self.trigger_view_every > 0:
            from orchestrator.monitor.text import TriggerLines

            subscribers.subscribe_cycles(TriggerLines(self.say, self.trigger_view_every))
        return subscribers

    @cached_property
    def supervisor(self) -> Supervisor:
        """The registry of this app's running runs: deaths of threads no run spawned and
        the journal's loss reach the innermost one."""
        from orchestrator.core.supervision import Supervisor

        return Supervisor()

    def subscribe(self, hook: Hook) -> None:
        """Have every later event of this app's runs reach `hook` too (a drill's injector)."""
        self.subscribers.subscribe(hook)

    # --- lifetime ---------------------------------------------------------------------------
    def __enter__(self) -> App:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close_later(self, close: Callable[[], object]) -> None:
        """Have the app close something a caller opened for its lifetime (a drill's lab)."""
        self._resources.callback(close)

    def close(self) -> None:
        """Close everything this app opened, newest first."""
        self._resources.close()
        self._parts = None
        self._metrics = None
        self._journal = None

    # --- loading ----------------------------------------------------------------------------
    def load(self) -> tuple[Project, Inventory]:
        """Validate everything; raises ConfigError listing every problem."""
        if self._loaded is None:
            import orchestrator.metrics.sources  # noqa: F401 - registers every source's keys
            from orchestrator.config.scaling import scaled

            project, inventory = checked_project(self.root, self.inventory_override)
            project = replace(scaled(project, self.time_scale),
                              state_dir_override=self.state_dir)
            if self.reshape is not None:
                project = self.reshape(project)
            self._loaded = (project, inventory)
        return self._loaded

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            from orchestrator.state.open import StateSettings, open_state

            project, _ = self.load()
            settings = project.state or StateSettings()
            if project.state_dir_override is not None:  # a rehearsal keeps its own, embedded
                settings = StateSettings(timeout=settings.timeout)
            journal = open_state(project.state_dir, settings,
                                 on_unavailable=self._journal_lost,
                                 on_interrupted=self._run_interrupted)
            self._resources.callback(journal.close)
            journal.use_migration(project.name)
            self._journal = journal
        return self._journal

    def _journal_lost(self, reason: str) -> None:
        self.supervisor.journal_lost(reason)

    def _run_interrupted(self, row: tuple[str, str, int, str]) -> None:
        """A run the journal found dead (or a run's end left in flight): its subscribers
        hear it. Commands that run something build their parts (the notifier) before
        they open the journal, so a run reaped as it opens is notified; `status` and
        the other reading commands notify nothing, as ever."""
        self.subscribers.run_interrupted(row)

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

    def parts(self) -> EngineParts:
        """The engine's collaborators, built once per app and closed with it."""
        if self._parts is not None:
            return self._parts
        from orchestrator.core.http import HttpClient
        from orchestrator.engine.context import EngineParts, NoTty
        from orchestrator.monitor.checker import MetricChecker
        from orchestrator.monitor.trigger_monitor import TriggerMonitor
        from orchestrator.notify.hook import NotificationHook
        from orchestrator.notify.sender import Notifications
        from orchestrator.runners.ansible import AnsiblePlaybookRunner
        from orchestrator.runners.routing import playbook_runner
        from orchestrator.runners.ssh import HostCommandRunner

        project, inventory = self.load()
        notifications = Notifications(project.notify, project.name, log=self.say)
        self._resources.callback(notifications.close, 5.0)
        # subscribed before the journal opens: runs it reaps as it opens are notified
        self.subscribers.subscribe(NotificationHook(
            notifications, {n: p.name for n, p in project.phases.items()}))
        self.serve_metrics()
        commands = HostCommandRunner(project.ssh)
        self._resources.callback(commands.close)  # the SSH connection pool
        http = HttpClient()  # the http/exporter reads' keep-alive connections
        self._resources.callback(http.close)
        # while the app is open, an unspawned thread's death reaches the running run
        self._resources.enter_context(self.supervisor.installed())
        # hosts with a `migrate_execution_node` run their playbooks on that node
        playbooks = playbook_runner(project, inventory,
                                    AnsiblePlaybookRunner(forks=project.forks, ssh=project.ssh))
        self._resources.callback(playbooks.close)  # the nodes' SSH connections
        defaults = project.defaults
        self._parts = EngineParts(
            journal=self.journal, playbooks=playbooks, commands=commands, clock=self.clock,
            prompter=NoTty(), say=self.say,
            monitor=TriggerMonitor(project, inventory, self.journal, self.clock, commands,
                                   self.say, http),
            checker=MetricChecker(project, inventory, self.journal, self.clock, commands, http),
            hooks=self.subscribers, supervisor=self.supervisor, verbose=self.verbose,
            forks=project.forks, http=http, step_timeout=defaults.step_timeout,
            undo_attempts=defaults.undo_retries + 1,
            undo_retry_delay=defaults.undo_retry_delay, undo_deadline=defaults.undo_deadline)
        return self._parts

    def serve_metrics(self) -> MigrateMetrics | None:
        """With `--metrics-port`/`--metrics-listen`: start serving SPEC section 7's series
        (once; TLS and basic auth with `--web-config`), every host and phase declared at
        its journaled state, fed by the run's event hooks; the server closes with the app.
        None without a port."""
        at = self.metrics_at
        if at is None or self._metrics is not None:
            return self._metrics
        from orchestrator.telemetry.metrics import MigrateMetrics

        project, inventory = self.load()
        metrics = MigrateMetrics(project.name)
        hosts = list(inventory.hosts)
        metrics.declare(hosts, {n: list(p.triggers) for n, p in project.phases.items()},
                        {(h, n): self.journal.phase_record(h, n).state.value
                         for h in hosts for n in project.phases})
        port = metrics.serve(at.port, at.addr, at.web)
        self._resources.callback(metrics.close)
        self._metrics = metrics
        self.subscribers.subscribe(metrics.on_event)
        self.subscribers.subscribe_cycles(metrics.on_cycle)
        auth = " (basic auth)" if at.web is not None and at.web.needs_auth else ""
        self.say(f"serving /metrics on {at.url(port)}{auth}")
        return metrics

    def _probe_runner(self) -> Any:
        """A command runner for a command that reads metrics without running a phase (plan,
        baseline capture); its SSH connections close with the app. Built on first use:
        `plan` reaches a host only for an NVML metric, and need not import SSH otherwise."""
        return _OnFirstUse(self._ssh_runner)

    def _ssh_runner(self) -> Any:
        from orchestrator.runners.ssh import HostCommandRunner

        runner = HostCommandRunner(self.load()[0].ssh)
        self._resources.callback(runner.close)
        return runner

    def lifecycle(self, prompter: Prompter | None = None) -> RunLifecycle:
        """The lifecycle of this command's runs, asking `prompter` (else nobody)."""
        from orchestrator.engine.lifecycle import RunLifecycle

        project, inventory = self.load()
        parts = self.parts()
        return RunLifecycle(project, inventory,
                            parts if prompter is None else replace(parts, prompter=prompter))

    # --- verbs ------------------------------------------------------------------------------
    def validate(self) -> dict[str, Any]:
        project, inventory = self.load()
        return {"project": project.name, "phases": sorted(project.phases),
                "hosts": sorted(inventory.hosts), "metrics": sorted(project.metrics),
                "triggers": sorted(project.triggers), "problems": []}

    def plan(self, number: int, host_names: tuple[str, ...]) -> dict[str, Any]:
        from orchestrator.monitor.baselines import raise_missing_baselines
        from orchestrator.reporting.views import plan_document

        project, _ = self.load()
        phase = self.phase(number)
        hosts = self.hosts(host_names)

        scheduled = self._scheduled_baselines(project, phase, hosts)
        raise_missing_baselines(project, phase, hosts, self.journal, self._probe_runner(),
                                scheduled)
        doc = plan_document(project, phase, hosts, self._inventory())
        for t in doc["triggers"]:
            baseline = project.triggers[t["name"]].baseline
            t["baselines"] = [
                {"host": h.name, "name": baseline,
                 "value": self.journal.baseline(h.name, baseline).get(
                     t["metric"], scheduled.get((h.name, baseline), "sampled at phase start"))}
                for h in hosts] if t["condition"] in ("degrade_pct", "increase") else []
        from orchestrator.engine.refusals import requirement_states

        doc["requirements"] = requirement_states(phase, hosts, self.journal)
        return doc

    def _scheduled_baselines(self, project: Project, phase: Phase,
                             hosts: list[Host]) -> dict[tuple[str, str], str]:
        """(host, baseline name) -> how it will be captured, for the named baselines that a
        phase this one requires captures at its baseline step and has not yet completed on
        the host: `plan 4` before phase 1 ran is not a missing baseline."""
        from orchestrator.config.project import baseline_steps

        out: dict[tuple[str, str], str] = {}
        _, inventory = self.load()
        for name, captures in baseline_steps(project, phase).items():
            for required, step in captures:
                names = set(h.name for h in inventory.resolve(list(step.hosts))) \
                    if step.hosts else None
                for host in hosts:
                    if (host.name, name) in out or (names is not None and host.name not in names):
                        continue
                    state = self.journal.phase_record(host.name, required.number).state
                    if state is not PhaseState.COMPLETED:
                        out[host.name, name] = (
                            f"will be captured by phase {required.number}'s step {step.id!r} "
                            f"(phase {required.number} is {state.value} here)")
        return out

    def baseline_capture(self, host_names: tuple[str, ...], name: str,
                         duration: float) -> dict[str, Any]:
        from orchestrator.monitor.checker import MetricChecker

        project, inventory = self.load()
        hosts = self.hosts(host_names)
        checker = MetricChecker(project, inventory, self.journal, self.clock,
                                self._probe_runner())
        from orchestrator.engine.fanout import fan_out

        self.say(f"sampling {len(checker.numeric_metrics())} metrics on {len(hosts)} host(s) "
                 f"for {duration:g}s, all at once")
        captured = fan_out(hosts, lambda host: checker.capture(name, host, duration, None),
                           project.forks)
        empty = [h for h, values in captured.items() if not values]
        if empty:
            raise RefusedError(f"baseline {name}: no metric gave data in {duration:g}s on "
                               f"{', '.join(empty)}; nothing stored for them")
        return {"name": name, "duration_s": duration, "hosts": captured}

    def _inventory(self) -> Inventory:
        return self.load()[1]

    def run_phase(self, number: int, host_names: tuple[str, ...], dry_run: bool,
                  prompter: Prompter, cancel: CancelToken, command: str,
                  waves: tuple[int | str, ...] | None = None,
                  max_failed: int | str | None = None) -> RunReport:
        from orchestrator.engine.phase_run import FleetPlan
        from orchestrator.monitor.baselines import raise_missing_baselines
        from orchestrator.monitor.preflight import raise_unusable_alert_sources

        project, _ = self.load()
        phase = self.phase(number)
        hosts = self.hosts(host_names)
        if waves and phase.analysis is not None:  # refused before anything runs (exit 2)
            self._refuse_control_less_waves(phase, waves, hosts)
        lifecycle = self.lifecycle(prompter)
        raise_missing_baselines(project, phase, hosts, self.journal, lifecycle.parts.commands)
        raise_unusable_alert_sources(project, phase)
        from orchestrator.runners.routing import RoutedPlaybookRunner

        if isinstance(lifecycle.parts.playbooks, RoutedPlaybookRunner):  # exit 4 naming a node
            with lifecycle.refusals("phase", phase.number, hosts):
                lifecycle.parts.playbooks.refuse_unready(hosts)
        plan = FleetPlan(waves if waves else phase.waves,
                         max_failed if max_failed is not None else phase.max_failed,
                         phase.on_fire)
        return lifecycle.run_phase(phase, hosts, command, cancel, dry_run, plan)

    @staticmethod
    def _refuse_control_less_waves(phase: Phase, waves: tuple[int | str, ...],
                                   hosts: list[Host]) -> None:
        """`--waves` that leave no host unmigrated for `control: not-migrated`."""
        from itertools import accumulate

        from orchestrator.core.model import control_problem
        from orchestrator.engine.waves import plan_waves

        assert phase.analysis is not None
        sizes = list(accumulate(len(w) for w in plan_waves(waves, hosts)))
        problem = control_problem(phase.analysis, sizes, len(hosts))
        if problem is not None:
            rel = phase.path.name
            raise ConfigError(f"--waves {','.join(str(w) for w in waves)}: {problem} "
                              f"(phase {phase.number}, {rel}: analysis control "
                              f"{phase.analysis.control})")

    def rollback(self, host_names: tuple[str, ...], number: int | None,
                 command: str, cancel: CancelToken | None = None) -> RunReport:
        """Roll back phase N (default: the latest phase not pending or rolled back)."""
        hosts = self.hosts(host_names)
        lifecycle = self.lifecycle()  # its subscribers hear the runs the journal reaps
        if number is None:
            with lifecycle.refusals("rollback", None, hosts):
                number = self._latest_rollbackable(hosts)
        return lifecycle.rollback(self.phase(number), hosts, command, cancel)

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

    def program(self, hosts: bool = True) -> dict[str, Any]:
        """`status --all`: every migration of the journal, phase by phase (and host by
        host, unless `hosts` is false: the text view shows counts only)."""
        from orchestrator.reporting.views import program_document

        project, _ = self.load()
        return program_document(project, self.journal, hosts=hosts)

    def history(self, host: str | None, run_id: str | None,
                every_migration: bool = False) -> dict[str, Any]:
        events = self.journal.events(host, run_id, every_migration)
        if run_id is not None and not events and self.journal.run_info(run_id) is None:
            found = self._rehearsal_events(host, run_id)  # a drill keeps its own journal
            if found is not None:
                return found
        return {"events": [e.as_json() for e in events]}

    def _rehearsal_dirs(self) -> list[Path]:
        """Each rehearsal's own state dir (`.migrate/rehearsals/<rehearsal_id>/`), newest
        first."""
        rehearsals = self.load()[0].root / ".migrate" / "rehearsals"
        return sorted((d for d in rehearsals.iterdir() if d.is_dir()), reverse=True) \
            if rehearsals.is_dir() else []

    def _rehearsal_events(self, host: str | None, run_id: str) -> dict[str, Any] | None:
        """The events of a rehearsal (its id: every run of the drill) or of one of its runs,
        from the drill's own journal; None when no rehearsal knows the id."""
        from orchestrator.reporting.report import find_run

        for state_dir in self._rehearsal_dirs():
            if state_dir.name == run_id and (state_dir / "state.db").exists():
                journal = Journal(state_dir / "state.db")
                try:
                    return {"rehearsal_id": run_id,
                            "events": [e.as_json() for e in _all_events(journal, host)]}
                finally:
                    journal.close()
        try:
            journal, state_dir = find_run(self._rehearsal_dirs(), run_id)
        except ConfigError:
            return None
        try:
            return {"rehearsal_id": state_dir.name,
                    "events": [e.as_json() for e in journal.events(host, run_id)]}
        finally:
            journal.close()

    def report(self, run_id: str, fmt: str, out: Path | None = None) -> tuple[Path, str]:
        """Write the run's report to `out` (default `runs/RUN_ID/report.FMT`, charts in
        `runs/RUN_ID/report/`); its path and text."""
        from orchestrator.reporting.report import find_run, write_report

        project, _ = self.load()
        if project.state is not None and project.state.url and \
                self.journal.run_info(run_id) is not None:  # the team's database first
            return write_report(self.journal, run_id,
                                project.state_dir / "runs" / run_id / "report", fmt, out)
        drill = project.root / ".migrate" / "rehearsals" / run_id
        if "/" not in run_id and run_id not in (".", "..") and \
                (drill / "rehearsal.json").is_file():  # a rehearsal's id: the drill's report
            return _rehearsal_report(drill, fmt)
        journal, state_dir = find_run([project.state_dir, *self._rehearsal_dirs()], run_id)
        try:
            return write_report(journal, run_id, state_dir / "runs" / run_id / "report", fmt, out)
        finally:
            journal.close()

    def watcher(self, host_names: tuple[str, ...], act: bool) -> Any:
        from orchestrator.services.watch import Watcher

        hosts = self.hosts(host_names)
        lifecycle = self.lifecycle()  # builds the parts: serves /metrics with a port
        return Watcher(lifecycle, hosts, act=act, metrics=self._metrics)

    def resume(self, host_names: tuple[str, ...], accept_changes: bool, prompter: Prompter,
               cancel: CancelToken, command: str) -> RunReport:
        """Continue the interrupted run on the hosts (or finish its rollback)."""
        hosts = self.hosts(host_names)
        return self.lifecycle(prompter).resume(hosts, accept_changes, cancel, command)


def _all_events(journal: Journal, host: str | None) -> list[Any]:
    """Every event of a journal (a drill's holds one migration: the project's)."""
    try:
        return journal.events(host, every_migration=True)  # type: ignore[call-arg,unused-ignore]
    except TypeError:  # a journal that keeps one migration
        return journal.events(host)


def _rehearsal_report(drill: Path, fmt: str) -> tuple[Path, str]:
    """`migrate report REHEARSAL_ID`: the report the drill wrote (md), its document (json),
    or the md as a page (html); each phase run inside has its own report too."""
    import html
    import json

    md = drill / "report.md"
    if fmt == "json":
        doc = json.loads((drill / "rehearsal.json").read_text(encoding="utf-8"))
        return drill / "rehearsal.json", json.dumps(doc, indent=2)
    text = md.read_text(encoding="utf-8") if md.is_file() else ""
    if fmt == "md":
        return md, text
    page = drill / "report.html"
    body = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>Rehearsal "
            f"{html.escape(drill.name)}</title></head><body><pre>{html.escape(text)}</pre>"
            "</body></html>\n")
    page.write_text(body, encoding="utf-8")
    return page, body
