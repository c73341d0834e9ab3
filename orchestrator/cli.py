"""The command line: parse, build the App, call it, render, and map exceptions to exit codes.

click lives here and nowhere else. Every exit code is decided by
`exit_codes.exit_code_for`, in `main`.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from orchestrator._exceptions import ConfigError, MigrateError
from orchestrator.core.clock import CancelToken
from orchestrator.core.outcomes import RunOutcome, RunReport
from orchestrator.core.signals import SignalRelay
from orchestrator.exit_codes import (
    BAD_CONFIG,
    FIRED_AND_ROLLED_BACK,
    INTERRUPTED,
    NEEDS_HUMAN,
    OK,
    exit_code_for,
)


@dataclass
class Options:
    project: str | None
    inventory: str | None
    output: str
    verbose: int
    view: Any = None  # the LiveView of a command that runs something (reporting.live)
    opened: Any = None  # the App this command opened (last): its project names the triggers

    def open_app(self, **kwargs: Any) -> Any:
        """An `App` for this command (keyword arguments as App's), remembered so the live
        view can read the triggers' kinds from its project (`trigger_kinds`)."""
        from orchestrator.app import App

        self.opened = App(**kwargs)
        return self.opened

    def app(self, metrics_at: Any = None) -> Any:
        from orchestrator.config.project import resolve_project_dir

        root = resolve_project_dir(self.project)
        inv = Path(self.inventory) if self.inventory else None
        # the click context owns the app: its journal, SSH pool, notifier and servers are
        # closed when the command ends, however it ends
        return click.get_current_context().with_resource(
            self.open_app(root=root, inventory_override=inv, say=self.log,
                          verbose=self.verbose > 0,
                          hooks=[self.view] if self.view is not None else [],
                          cycle_hooks=[self.view.on_cycle] if self.view is not None else [],
                          metrics_at=metrics_at))

    def trigger_kinds(self) -> dict[str, str]:
        """How each trigger's value reads in the live view (an alert's 1 is `firing`),
        from the project of the app this command opened; none before it opened one."""
        from orchestrator.reporting import trigger_kinds

        return trigger_kinds(self.opened.load()[0]) if self.opened is not None else {}

    def log(self, line: str) -> None:
        if self.view is not None and self.view.active:
            self.view.say(line)  # above the live region, which keeps its place
        else:
            click.echo(line, err=True)

    def live_view(self, title: str) -> Any:
        """Subscribe the operator's view for this command: rich Live on a terminal, plain
        transition lines otherwise (pipes, CI, --output json). Build it before `app()`."""
        from orchestrator.reporting.live import LiveView, wants_live

        self.view = LiveView(live=wants_live(sys.stderr, self.output), title=title,
                             plain=lambda line: click.echo(line, err=True),
                             kinds=self.trigger_kinds)
        return self.view

    def emit(self, doc: Any, text: str) -> None:
        if self.output == "json":
            from orchestrator.reporting.json_text import json_text

            click.echo(json_text(doc))
        else:
            click.echo(text)


def metrics_options(when: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--metrics-port, --metrics-listen and --web-config (SPEC section 7) of a command."""
    def add(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed((
                click.option("--metrics-port", type=int, default=None, metavar="P",
                             help=f"Serve Prometheus /metrics on this port {when} "
                                  "(on 127.0.0.1 unless --metrics-listen says otherwise)."),
                click.option("--metrics-listen", default=None, metavar="ADDR:PORT",
                             help="Where /metrics listens, e.g. 0.0.0.0:9464 for a "
                                  "Prometheus on another machine."),
                click.option("--web-config", type=click.Path(path_type=Path), default=None,
                             metavar="FILE",
                             help="The exporters' web configuration file: TLS "
                                  "(tls_server_config) and basic_auth_users."))):
            command = option(command)
        return command
    return add


def metrics_at(listen: str | None, port: int | None, web_config: Path | None) -> Any:
    """Where /metrics is served (telemetry.web_config.MetricsListen), or None; the web
    configuration file is read and checked now, before anything runs (exit 2)."""
    if listen is None and port is None and web_config is None:
        return None
    from orchestrator.telemetry.web_config import metrics_listen

    return metrics_listen(listen, port, web_config)


class TtyPrompter:
    def __init__(self, view: Any = None) -> None:
        self.view = view

    def confirm(self, message: str) -> bool | None:
        if not sys.stdin.isatty():
            return None
        if self.view is None:
            return click.confirm(message, default=False, err=True)
        with self.view.paused():  # a prompt under a redrawn region would be overwritten
            return bool(click.confirm(message, default=False, err=True))


class _Yes:
    def confirm(self, message: str) -> bool | None:
        click.echo(f"{message} yes (--yes)", err=True)
        return True


class SignalGuard:
    """Ctrl-C/SIGTERM while a run acts (SPEC section 3, "Every run ends" in section 4).

    - Once, during the forward steps: cancel the step in flight and roll the phase back
      (exit 130).
    - Once during an undo (`migrate rollback`, a phase's own rollback), or twice: stop the
      undo in flight; the phase is left `interrupted` and the run ends recording it
      (exit 130); `migrate rollback` run again finishes what is left.
    - A third time, or when the run has not ended 15 s after the second: exit at once;
      the next command reaps the run (`interrupted`), as after a SIGKILL.

    `undo_only`: the command only undoes (`migrate rollback`), so the first signal stops
    the undo.

    The signals are acted on by a thread of their own (`SignalRelay`), never inside the
    handler, which may run while the main thread holds a lock that cancelling takes.
    """

    def __init__(self, cancel: CancelToken, log: Any, undo_only: bool = False) -> None:
        self.cancel, self.log, self.count = cancel, log, 0
        self.undo_only = undo_only
        self.ended = False  # the run ended: from now on signals are ignored
        # ignored after the run: a signal that arrives while the outcome is printed, or
        # while the interpreter shuts down, must not kill the process with a signal's
        # status instead of the exit code
        self.relay = SignalRelay(self.handle, ignore_after=True)

    def __enter__(self) -> SignalGuard:
        self.relay.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        """The run has ended and recorded how."""
        self.ended = True
        self.relay.__exit__(*exc)

    def handle(self, signum: int) -> None:
        if self.ended:
            return
        self.count += 1
        name = signal.Signals(signum).name
        why = f"interrupted by the operator ({name})"
        if self.count == 1 and not (self.undo_only or self.cancel.undoing):
            self.log(f"{name}: cancelling the step in flight and rolling the phase back "
                     "(press again to stop the rollback and leave the phase interrupted)")
            self.cancel.cancel(why, by_operator=True)
            return
        if self.count <= 2:
            self.log(f"{name}: stopping the undo in flight; the phase is left interrupted "
                     "for `migrate rollback` (or `migrate resume`) to finish")
            self.cancel.cancel(why, by_operator=True)
            self.cancel.undo().cancel(why, by_operator=True)
            from orchestrator.runners.descendants import kill_descendants

            kill_descendants()
            _exit_later(15.0)
            return
        _exit_now()


def _exit_later(seconds: float) -> None:
    """The last resort after the second signal: if the run has not ended by then, go."""
    import threading

    timer = threading.Timer(seconds, _exit_now)
    timer.daemon = True
    timer.start()


def _exit_now() -> None:
    from orchestrator.runners.descendants import kill_descendants

    kill_descendants()
    if sys.__stderr__ is not None:
        if sys.__stderr__.isatty():
            sys.__stderr__.write("\x1b[?25h\n")  # the live view hid the cursor
        sys.__stderr__.write("migrate: stopped at once; the run reads `interrupted` next "
                             "time, for `migrate resume` or `migrate rollback`\n")
        sys.__stderr__.flush()
    os._exit(INTERRUPTED)


def _render_report(opts: Options, report: RunReport) -> int:
    doc = {"run_id": report.run_id, "phase": report.phase, "hosts": report.hosts,
           "outcome": report.outcome.value, "reason": report.reason,
           "needs_human": report.needs_human}
    text = f"run {report.run_id}: phase {report.phase} {report.outcome.value}"
    if report.reason:
        text += f" ({report.reason})"
    if report.needs_human:
        text += "\nA HUMAN IS NEEDED for:\n" + "\n".join(f"  {n}" for n in report.needs_human)
    opts.emit(doc, text)
    return exit_code_for(report.outcome)


def _outcome_line(report: RunReport) -> str:
    """The live view's last line: the outcome and why, in one line (the run id is above)."""
    line = f"phase {report.phase} {report.outcome.value}"
    if report.reason:
        line += f": {report.reason}"
    if report.needs_human:
        line += f"; A HUMAN IS NEEDED for {len(report.needs_human)} step(s)"
    return line


def _override(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """A global option given after the subcommand wins over the one given before it."""
    opts = ctx.find_object(Options)
    if opts is None or param.name is None or value in (None, 0):
        return
    if param.name == "verbose":
        opts.verbose += value
    else:
        setattr(opts, param.name, value)


def _global_options() -> list[click.Option]:
    """`--project`, `--inventory`, `--output` and `-v` as every subcommand also takes them.

    The spec writes `migrate status --output json`, users write `migrate --output json
    status`; both must work, so each subcommand carries the options too and lets them
    override the group's (they are not passed to the command function). A subcommand's
    own option of the same name (`rehearse --inventory`) keeps its own meaning.
    """
    return [
        click.Option(["--project"], metavar="DIR", expose_value=False, callback=_override,
                     help="Migration project (default $MIGRATE_PROJECT or .)"),
        click.Option(["--inventory"], metavar="FILE", expose_value=False, callback=_override,
                     help="Inventory overriding migration.yaml's."),
        click.Option(["--output"], type=click.Choice(["text", "json"]), expose_value=False,
                     callback=_override, help="text (default) or json."),
        click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_override),
    ]


def _complete_hosts(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """`--host` completions: the project inventory's hosts and groups (nothing on any
    problem: a completion must never print an error into the operator's prompt)."""
    try:
        import yaml

        from orchestrator.config.inventory import load_inventory
        from orchestrator.config.project import resolve_project_dir

        top = ctx.find_root().params
        root = resolve_project_dir(top.get("project"))
        inventory = top.get("inventory") or (yaml.safe_load(
            (root / "migration.yaml").read_text()) or {}).get("inventory")
        if not inventory:
            return []
        inv, _ = load_inventory(root / str(inventory))
        names = [*inv.hosts, *inv.groups, "all"]
    except Exception:
        return []
    return [n for n in dict.fromkeys(names) if n.startswith(incomplete)]


class _Group(click.Group):
    """A group whose subcommands (nested groups' included) take the global options too."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not isinstance(cmd, click.Group):
            own = {o for p in cmd.params for o in p.opts}
            cmd.params.extend(g for g in _global_options() if not own & set(g.opts))
            for param in cmd.params:  # shell completion of --host from the inventory
                if "--host" in param.opts and param._custom_shell_complete is None:
                    param._custom_shell_complete = _complete_hosts
        super().add_command(cmd, name)

    def group(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", _Group)
        return super().group(*args, **kwargs)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--project", metavar="DIR", help="Migration project (default $MIGRATE_PROJECT or .)")
@click.option("--inventory", metavar="FILE", help="Inventory overriding migration.yaml's.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("-v", "--verbose", count=True)
@click.version_option(package_name="migrate", prog_name="migrate",
                      message="%(prog)s %(version)s", help="Print the version and exit.")
@click.pass_context
def cli(ctx: click.Context, project: str | None, inventory: str | None, output: str,
        verbose: int) -> None:
    """Carry a risky change through staged phases on GPU hosts; roll back on a trigger.

    \b
    Shell completion (bash, zsh):
      eval "$(_MIGRATE_COMPLETE=bash_source migrate)"   # in ~/.bashrc
      eval "$(_MIGRATE_COMPLETE=zsh_source migrate)"    # in ~/.zshrc
    """
    ctx.obj = Options(project, inventory, output, verbose)


@cli.command()
@click.pass_obj
def validate(opts: Options) -> int:
    """Check every file of the project; print FILE:LINE: message for each problem."""
    doc = opts.app().validate()
    opts.emit(doc, f"ok: {doc['project']}: phases {', '.join(map(str, doc['phases']))}; "
                   f"hosts {', '.join(doc['hosts'])}; {len(doc['triggers'])} triggers")
    return OK


@cli.command()
@click.argument("number", type=int)
@click.option("--host", "hosts", multiple=True, required=True, help="Host or group (repeatable).")
@click.pass_obj
def plan(opts: Options, number: int, hosts: tuple[str, ...]) -> int:
    """Print the steps, rollbacks, triggers and baselines of phase N; change nothing."""
    from orchestrator.reporting.views import plan_text

    doc = opts.app().plan(number, hosts)
    opts.emit(doc, plan_text(doc))
    return OK


@cli.command()
@click.argument("number", type=int)
@click.option("--host", "hosts", multiple=True, required=True, help="Host or group (repeatable).")
@click.option("--dry-run", is_flag=True, help="Ansible check mode; record only a rehearsal entry.")
@click.option("--yes", is_flag=True, help="Pass manual gates (pause steps).")
@click.option("--waves", default=None, metavar="LIST",
              help="Cumulative shares of the hosts per wave, e.g. 1,10%,50%,100%.")
@click.option("--max-failed", default=None, metavar="N|P%",
              help="Failure budget: hosts that may fail (each rolled back alone).")
@metrics_options("while the phase runs")
@click.pass_obj
def phase(opts: Options, number: int, hosts: tuple[str, ...], dry_run: bool, yes: bool,
          waves: str | None, max_failed: str | None, metrics_port: int | None,
          metrics_listen: str | None, web_config: Path | None) -> int:
    """Run phase N on the hosts; roll back on a trigger or a failed step."""
    from orchestrator.engine.waves import parse_spec

    wave_specs = tuple(parse_spec(w) for w in waves.split(",") if w.strip()) if waves else None
    budget = parse_spec(max_failed) if max_failed is not None else None
    at = metrics_at(metrics_listen, metrics_port, web_config)
    view = opts.live_view("migrate phase")
    app = opts.app(at)
    try:  # every step and host in the grid from the start; errors come from run_phase
        view.expect(number, [s.id for s in app.phase(number).steps],
                    [h.name for h in app.hosts(hosts)], app.phase(number).bake)
    except MigrateError:
        pass
    cancel = CancelToken()
    command = " ".join(["migrate", *sys.argv[1:]]) if sys.argv else "migrate phase"
    with view, SignalGuard(cancel, opts.log):
        report = app.run_phase(number, hosts, dry_run, _Yes() if yes else TtyPrompter(view),
                               cancel, command, wave_specs, budget)
        view.finish(_outcome_line(report))
    return _render_report(opts, report)


@cli.command()
@click.option("--host", "hosts", multiple=True, required=True)
@click.option("--accept-changes", is_flag=True,
              help="Resume even though the phase file or a playbook changed.")
@click.option("--yes", is_flag=True, help="Pass manual gates (pause steps).")
@click.pass_obj
def resume(opts: Options, hosts: tuple[str, ...], accept_changes: bool, yes: bool) -> int:
    """Continue an interrupted run from the step that was in flight."""
    view = opts.live_view("migrate resume")
    app = opts.app()
    cancel = CancelToken()
    command = " ".join(["migrate", *sys.argv[1:]])
    with view, SignalGuard(cancel, opts.log):
        report = app.resume(hosts, accept_changes, _Yes() if yes else TtyPrompter(view), cancel,
                            command)
        view.finish(_outcome_line(report))
    return _render_report(opts, report)


@cli.command()
@click.option("--host", "hosts", multiple=True, required=True)
@click.option("--phase", "number", type=int, default=None)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def rollback(opts: Options, hosts: tuple[str, ...], number: int | None, yes: bool) -> int:
    """Roll back phase N (default: the latest phase not pending or rolled back)."""
    view = opts.live_view("migrate rollback")
    app = opts.app()
    if not yes and sys.stdin.isatty():
        what = f"phase {number}" if number else "the latest phase"
        if not click.confirm(f"Roll back {what} on {', '.join(hosts)}?", err=True):
            return OK
    command = " ".join(["migrate", *sys.argv[1:]])
    cancel = CancelToken()
    with view, SignalGuard(cancel, opts.log, undo_only=True):
        report = app.rollback(hosts, number, command, cancel)
        view.finish(_outcome_line(report))
    code = _render_report(opts, report)
    return OK if report.outcome is RunOutcome.ROLLED_BACK else code


@cli.group()
def baseline() -> None:
    """Named baselines that triggers compare against."""


@baseline.command("capture")
@click.option("--host", "hosts", multiple=True, required=True)
@click.option("--name", default="manual", show_default=True)
@click.option("--duration", default="30s", show_default=True)
@click.pass_obj
def baseline_capture(opts: Options, hosts: tuple[str, ...], name: str, duration: str) -> int:
    """Sample every numeric metric over DURATION and store the median as NAME."""
    from orchestrator.core.durations import parse_duration

    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise ConfigError(f"--duration: {exc}") from exc
    doc = opts.app().baseline_capture(hosts, name, seconds)
    lines = [f"baseline {name!r} stored:"]
    for host, values in doc["hosts"].items():
        lines += [f"  {host} {metric} = {value:g}" for metric, value in values.items()]
    opts.emit(doc, "\n".join(lines))
    return OK


@cli.group()
def state() -> None:
    """Where the journal lives: embedded (.migrate/state.db) or the team's PostgreSQL."""


@state.command("copy")
@click.option("--to", "to_url", required=True, metavar="URL",
              help="postgresql:// URL of an empty database.")
@click.pass_obj
def state_copy(opts: Options, to_url: str) -> int:
    """Copy the embedded journal into an empty PostgreSQL database (a team starts alone)."""
    from orchestrator.state.copy import copy_state

    app = opts.app()
    project, _ = app.load()
    timeout = project.state.timeout if project.state is not None else 30.0
    doc = copy_state(project.state_dir, to_url, timeout)
    rows = ", ".join(f"{table} {n}" for table, n in doc["rows"].items())
    opts.emit(doc, f"copied {doc['from']} to {doc['to']}: {rows}; now set state.url "
                   f"(or $MIGRATE_STATE_URL) to {doc['to']} in every checkout")
    return OK


@cli.command()
@click.option("--host", "hosts", multiple=True)
@click.option("--all", "all_", is_flag=True,
              help="Every migration in the journal: the program at a glance.")
@click.pass_obj
def status(opts: Options, hosts: tuple[str, ...], all_: bool) -> int:
    """State of every phase on every host, and why a phase was rolled back."""
    from orchestrator.reporting.views import program_text, status_text

    if all_:
        doc = opts.app().program(hosts=opts.output == "json")
        opts.emit(doc, program_text(doc))
        return OK
    doc = opts.app().status(hosts)
    opts.emit(doc, status_text(doc, full=bool(hosts) or opts.verbose > 0))
    return OK


@cli.command()
@click.option("--host", default=None)
@click.option("--run", "run_id", default=None)
@click.option("--all", "all_", is_flag=True, help="Every migration's events, not only this one's.")
@click.pass_obj
def history(opts: Options, host: str | None, run_id: str | None, all_: bool) -> int:
    """The journal: every transition with its time, oldest first."""
    from orchestrator.reporting.views import history_text

    doc = opts.app().history(host, run_id, all_)
    opts.emit(doc, history_text(doc))
    return OK


@cli.command()
@click.option("--host", "hosts", multiple=True, required=True)
@click.option("--for", "for_", default=None, metavar="DURATION", help="Stop after this long.")
@click.option("--once", is_flag=True, help="Evaluate one cycle and exit (cron, tests).")
@click.option("--no-rollback", is_flag=True, help="Only notify and record.")
@metrics_options("while watching")
@click.option("--checkpoint", default=None, metavar="DURATION",
              help="Write an observation report this often and at the end (md and html).")
@click.pass_obj
def watch(opts: Options, hosts: tuple[str, ...], for_: str | None, once: bool,
          no_rollback: bool, metrics_port: int | None, metrics_listen: str | None,
          web_config: Path | None, checkpoint: str | None) -> int:
    """On-call: watch completed phases; on a fire, roll back the latest one and exit 1."""
    from orchestrator.core.durations import parse_duration
    from orchestrator.services.watch import watch_exit_outcome

    try:
        duration = parse_duration(for_) if for_ else None
        every = parse_duration(checkpoint) if checkpoint else None
    except ValueError as exc:
        raise ConfigError(f"--for/--checkpoint: {exc}") from exc
    at = metrics_at(metrics_listen, metrics_port, web_config)
    view = opts.live_view("migrate watch")
    app = opts.app(at)
    watcher = app.watcher(hosts, act=not no_rollback)

    def stop(signum: int) -> None:
        name = signal.Signals(signum).name
        opts.log(f"{name}: watch stopping (a rollback in flight stops and leaves its phase "
                 "interrupted)")
        watcher.interrupt(f"interrupted by the operator ({name})")

    with SignalRelay(stop), view:  # acted on by a thread of its own (core/signals.py)
        result = watcher.run(duration, once, every)
        view.finish(_watch_text(result))
    doc = {"watched": result.watched, "cycles": result.cycles,
           "checkpoints": result.checkpoints, "died": result.died,
           "fired": [f.__dict__ for f in result.fired],
           "rollback": None if result.rollback is None else {
               "run_id": result.rollback.run_id, "phase": result.rollback.phase,
               "outcome": result.rollback.outcome.value, "reason": result.rollback.reason,
               "needs_human": result.rollback.needs_human}}
    opts.emit(doc, _watch_text(result))
    return exit_code_for(watch_exit_outcome(result))


def _watch_text(result: Any) -> str:
    text = f"watched {len(result.watched)} phase(s) for {result.cycles} cycle(s)"
    if result.died:
        text += f"; STOPPED: {result.died} (nothing was rolled back; restart the watch)"
    if result.rollback is not None:
        text += (f"; rolled back phase {result.rollback.phase}: "
                 f"{result.rollback.outcome.value} ({result.rollback.reason})")
    return text


@cli.command()
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md",
              show_default=True)
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report here (default .migrate/runs/RUN_ID/report.FORMAT).")
@click.pass_obj
def report(opts: Options, run_id: str, fmt: str, out: Path | None) -> int:
    """Run report: timeline, and a chart per trigger with its threshold and baseline, the
    fired trigger's first. html goes to a file whose path is printed; md and json are
    printed too."""
    path, text = opts.app().report(run_id, fmt, out)
    if fmt == "html":  # a page for a browser, never dumped on a terminal
        click.echo(str(path))
        return OK
    click.echo(text)
    opts.log(f"report written to {path}")
    return OK


@cli.command()
@click.option("--scenario", default=None,
              help="Scenario of rehearsals/ to run (default: the one marked default).")
@click.option("--list", "list_", is_flag=True, help="List the scenarios (rehearsals/*.yaml).")
@click.option("--inventory", "inventory", default=None, metavar="FILE",
              help="Sandbox inventory (default: the scenario's, else inventory/sandbox.yml).")
@click.option("--keep", is_flag=True, help="Leave the sandbox agents running afterwards.")
@metrics_options("while the drill runs")
@click.pass_obj
def rehearse(opts: Options, scenario: str | None, list_: bool, inventory: str | None,
             keep: bool, metrics_port: int | None, metrics_listen: str | None,
             web_config: Path | None) -> int:
    """Fire drill: the whole migration on the sandbox with an injected fault."""
    from orchestrator.config.project import resolve_project_dir
    from orchestrator.rehearsal.checks import summary_lines
    from orchestrator.rehearsal.rehearse import (
        Rehearsal,
        default_scenario,
        load_scenarios,
        no_scenarios,
    )

    root = resolve_project_dir(opts.project)
    if list_:
        scenarios = load_scenarios(root)  # the project's rehearsals/*.yaml
        if not scenarios:
            raise MigrateError(no_scenarios(root))
        default = default_scenario(scenarios)
        doc = {n: s.fault for n, s in scenarios.items()}
        opts.emit(doc, "\n".join(f"{n:<20} {f}" + ("  (default)" if n == default else "")
                                 for n, f in doc.items()))
        return OK
    inv = inventory or opts.inventory
    at = metrics_at(metrics_listen, metrics_port, web_config)
    view = opts.live_view("migrate rehearse")
    with view:
        drill = Rehearsal(root, Path(inv) if inv else None, opts.log, keep=keep,
                          view=view, metrics_at=at, open_app=opts.open_app).run(scenario)
        view.finish(f"rehearsal {drill.scenario.name} {'PASSED' if drill.passed else 'FAILED'}"
                    f" in {drill.seconds:.0f}s")
    lines = [f"rehearsal {drill.rehearsal_id}: scenario {drill.scenario.name} "
             f"{'PASSED' if drill.passed else 'FAILED'} in {drill.seconds:.0f}s"]
    lines += summary_lines(drill.checks)
    lines.append(f"report: {drill.report_path}")
    opts.emit(drill.as_json(), "\n".join(lines))
    return OK if drill.passed else FIRED_AND_ROLLED_BACK


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--name", default=None,
              help="The migration's name, a slug (tutoring-agent); with --services, "
                   "default: the agent's name in kebab case.")
@click.option("--host", "hosts", multiple=True,
              help="A host of the migration (repeatable; default main and pc2).")
@click.option("--agent", default=None, metavar="PATH|NAME",
              help="The agent's source (recorded, analysed into ANALYSIS.md); with "
                   "--services, the name of an agent of the manifests.")
@click.option("--services", multiple=True, metavar="[NAME=]FILE",
              help="A service manifest of the system (repeatable; NAME: its machine).")
@click.option("--source", type=click.Path(path_type=Path, file_okay=False), default=None,
              metavar="DIR", help="Where the manifests' script_path are read (default: .).")
@click.option("--sandbox-ports", "port_base", type=click.IntRange(1024, 65000), default=None,
              metavar="BASE", help="First port of the sandbox (default: chosen from NAME).")
@click.pass_obj
def init(opts: Options, directory: Path, name: str | None, hosts: tuple[str, ...],
         agent: str | None, services: tuple[str, ...], source: Path | None,
         port_base: int | None) -> int:
    """Start a new migration project in DIRECTORY from the template shipped with migrate;
    with --agent NAME --services FILE..., the migration of one agent of the program, its
    dependents watched."""
    from orchestrator.init import init_project

    if services:
        from orchestrator.init_services import init_agent_project

        if agent is None:
            raise ConfigError("--services needs --agent NAME: the agent of the manifests "
                              "whose migration starts")
        if hosts:
            raise ConfigError("--host with --services: the hosts are the agent's machines "
                              "and its dependents', from the manifests")
        result = init_agent_project(directory, agent, services, source, name, port_base)
    else:
        if name is None:
            raise ConfigError("--name is required (without --services): the migration's "
                              "name, a slug such as tutoring-agent")
        if source is not None:
            raise ConfigError("--source goes with --services: it is where the manifests' "
                              "script_path are read")
        result = init_project(directory, name, hosts, agent, port_base)
    doc = {"name": result.name, "directory": str(result.directory),
           "written": result.written, "next": result.next_commands, "notes": result.notes}
    text = [f"migration {result.name} written to {result.directory}:"]
    text += [f"  {rel}" for rel in result.written]
    text += [f"note: {n}" for n in result.notes]
    text += ["", "next:"] + [f"  {c}" for c in result.next_commands]
    opts.emit(doc, "\n".join(text))
    return OK


@cli.command()
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "md", "dot", "mermaid"]),
              default="text", show_default=True,
              help="Text (a table for a directory) or Markdown; with --graph also dot "
                   "(Graphviz) or mermaid.")
@click.option("--exclude", "excludes", metavar="GLOB", multiple=True,
              help="Leave out paths matching GLOB (relative to PATH); repeatable.")
@click.option("--all-files", is_flag=True,
              help="Keep trash, archive, backup and *_old/*_copy files (left out by default).")
@click.option("--worklist", is_flag=True,
              help="One line per site to change: FILE:LINE  KIND  WHAT  -> TARGET.")
@click.option("--against", "against", metavar="OLD_PATH", type=click.Path(path_type=Path),
              help="Compare with an older revision: counts, score, sites removed and added.")
@click.option("--graph", is_flag=True,
              help="The program graph: which agent needs which, drift, and the order.")
@click.option("--services", "services", metavar="[NAME=]FILE", multiple=True,
              help="With --graph: a service manifest (one machine); repeatable.")
@click.pass_obj
def analyze(opts: Options, path: Path | None, fmt: str, excludes: tuple[str, ...],
            all_files: bool, worklist: bool, against: Path | None, graph: bool,
            services: tuple[str, ...]) -> int:
    """Migration-risk analysis of an agent's source (a .py file or a directory; default:
    the project's `agent:`)."""
    from orchestrator.analysis import analyze_path, render_markdown, render_text
    from orchestrator.analysis.compare import compare_paths
    from orchestrator.analysis.render import worklist_of

    if services and not graph:
        raise ConfigError("--services goes with --graph")
    if path is None:
        path = _project_agent(opts)
    if fmt in ("dot", "mermaid") and not graph:
        raise ConfigError(f"--format {fmt} goes with --graph")
    if graph:
        if worklist or against is not None:
            raise ConfigError("--graph goes with neither --worklist nor --against")
        from orchestrator.analysis.graph import program_graph
        from orchestrator.analysis.graph_render import render_graph
        from orchestrator.analysis.manifests import parse_services_option

        doc = program_graph(path, [parse_services_option(s) for s in services],
                            excludes, all_files)
        opts.emit(doc, render_graph(doc, fmt))
        return OK
    if against is not None:
        result = compare_paths(path, against, excludes, all_files)
    else:
        result = analyze_path(path, excludes, all_files)
        if worklist:
            result = worklist_of(result)
    plain = not sys.stdout.isatty()  # a pipe: one line per file, never wrapped
    opts.emit(result, render_markdown(result) if fmt == "md"
              else render_text(result, plain=plain))
    return OK


def _project_agent(opts: Options) -> Path:
    """The project's `agent:` (taken from the project directory), for `analyze` without
    a PATH."""
    from orchestrator.config.project import MIGRATION_FILE, load_project, resolve_project_dir

    root = resolve_project_dir(opts.project)
    if not (root / MIGRATION_FILE).is_file():
        raise ConfigError(f"analyze needs a PATH (no {MIGRATION_FILE} in {root} to read "
                          "`agent:` from)")
    project, _ = load_project(root)
    if project.agent is None:
        raise ConfigError(f"analyze needs a PATH: {root / MIGRATION_FILE} has no `agent:`")
    return project.agent


def main(argv: list[str] | None = None) -> None:
    """Entry point: the only place that turns outcomes and exceptions into an exit code."""
    from orchestrator.core.supervision import install_excepthook

    install_excepthook()  # a thread that dies is one line, never a traceback
    try:
        code = cli.main(args=argv, standalone_mode=False, prog_name="migrate")
    except click.exceptions.Exit as exc:  # --help, --version
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = BAD_CONFIG
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        code = INTERRUPTED
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        code = exit_code_for(exc)
    except MigrateError as exc:
        click.echo(f"migrate: {exc}", err=True)
        code = exit_code_for(exc)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = INTERRUPTED
    except Exception as exc:  # a bug: one line for the operator, the trace on request
        if os.environ.get("MIGRATE_DEBUG"):
            raise
        click.echo(f"migrate: unexpected error ({type(exc).__name__}: {exc}); any run it "
                   "had started was ended `interrupted` (see `migrate status`); "
                   "MIGRATE_DEBUG=1 shows the traceback", err=True)
        code = NEEDS_HUMAN
    sys.exit(code if isinstance(code, int) else OK)
