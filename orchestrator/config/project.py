"""Load a migration project and check all of it before anything runs.

Every problem is collected (not just the first) as FILE:LINE: message, with line
numbers taken from the YAML nodes. `load_project` either returns a complete,
consistent `Project` or raises one `ConfigError` listing everything wrong.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator._exceptions import ConfigError, Problem
from orchestrator.config.inventory import Inventory, load_inventory
from orchestrator.config.schema import (
    FileChecker,
    Key,
    Schema,
    SourceSchema,
    closest,
    source_schemas,
    text,
)
from orchestrator.config.yamlsource import YamlLoadError, YDict, YList, load_yaml
from orchestrator.core.durations import parse_duration
from orchestrator.core.events import NOTIFIABLE
from orchestrator.core.model import (
    EXECUTION_NODE_VAR,
    AnalysisSpec,
    Condition,
    ExecutionNode,
    Metric,
    MetricKind,
    Notifier,
    Phase,
    Project,
    Requirement,
    Step,
    StepAction,
    Trigger,
    TriggerAction,
    Undo,
    UndoKind,
)

MIGRATION_FILE = "migration.yaml"
PHASE_FILE = re.compile(r"^(\d+)-([A-Za-z0-9][A-Za-z0-9_.-]*)\.ya?ml$")
_CONDITIONS = {c.value for c in Condition}
_ACTIONS = {a.value for a in StepAction}
NOTIFY_EVENTS = {kind.value for kind in NOTIFIABLE}
_STEP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# --- the keys of each mapping (config/schema.py checks them; docs/reference.md lists them) --
MIGRATION_KEYS = Schema({
    "name": Key(doc="the migration's name; the journal records everything under it"),
    "description": Key(doc="free text"),
    "agent": Key(text, doc="the agent's source (a file or directory, relative to the project), "
                 "read by `migrate analyze` without a PATH"),
    "inventory": Key(doc="the Ansible inventory (default inventory/hosts.yml)"),
    "poll_interval": Key(doc="how often triggers are evaluated (default 5s)"),
    "prometheus": Key(doc="{url: ...}: the Prometheus that `prometheus` metrics query"),
    "metrics": Key(doc="NAME: {source: ..., ...}: what can be measured"),
    "triggers": Key(doc="NAME: {metric: ..., CONDITION: ...}: what rolls a phase back"),
    "notify": Key(doc="[{url, events}]: webhooks told of runs, fires and rollbacks"),
    "ssh": Key(doc="{keepalive, keepalive_count, connect_timeout}"),
    "defaults": Key(doc="{step_timeout, undo_retries, undo_retry_delay}"),
    "forks": Key(doc="Ansible's fan-out in one step (default 50)"),
    "alertmanager": Key(doc="{listen, token_env, url}: where `alert:` triggers come from"),
    "state": Key(doc="{url, timeout}: the journal (default .migrate/state.db)"),
    "execution": Key(doc="{nodes: {NAME: {host, runner}}}: execution nodes that run playbook "
                         "steps for the hosts whose `migrate_execution_node` names them"),
})
EXECUTION_KEYS = Schema({
    "nodes": Key(required=True, doc="NAME: {host, runner}: the execution nodes"),
})
NODE_KEYS = Schema({
    "host": Key(text, required=True, doc="the node: an inventory host, reached over SSH"),
    "runner": Key(text, doc="ansible-runner's path on the node (default: `ansible-runner` "
                            "on its PATH); its directory goes first on the node's PATH, so "
                            "the Ansible installed beside it runs the playbook"),
})
PROMETHEUS_KEYS = Schema({"url": Key(doc="Prometheus' base URL")})
METRIC_KEYS = Schema({
    "source": Key(doc="which source reads it (see the sources below)"),
    "nodata": Key(doc="skip (default) or breach: what a failed read means for triggers"),
    "nodata_alert": Key(doc="no data for this long is reported (default 2m)"),
    "timeout": Key(doc="one read's time limit"),
    "description": Key(doc="free text"),
})
TRIGGER_KEYS = Schema({
    "metric": Key(doc="the metric watched"),
    "above": Key(doc="fires when the value is above this number"),
    "below": Key(doc="fires when the value is below this number"),
    "degrade_pct": Key(doc="fires when the value moves this % from its baseline"),
    "increase": Key(doc="fires when the value rises more than this above its baseline"),
    "failing": Key(doc="true: fires when a pass/fail metric fails"),
    "direction": Key(doc="up (default) or down: the way degrade_pct counts"),
    "for": Key(doc="how long the condition must hold (default 0s)"),
    "action": Key(doc="rollback (default), notify or pause"),
    "baseline": Key(doc="phase-start (default) or a name given to `baseline capture`"),
    "description": Key(doc="free text"),
})
ALERT_TRIGGER_KEYS = Schema({
    "alert": Key(doc="the Prometheus alert rule's name"),
    "match": Key(doc="{label: value}: labels the alert must carry"),
    "host_label": Key(doc="the label naming the host (default instance)"),
    "action": Key(doc="rollback (default), notify or pause"),
    "description": Key(doc="free text"),
})
NOTIFY_KEYS = Schema({"url": Key(doc="the webhook"),
                      "events": Key(doc="the events sent (default: every one, phase_refused "
                                         "and run_interrupted included)")})
SSH_KEYS = Schema({
    "keepalive": Key(doc="seconds between SSH keepalives"),
    "keepalive_count": Key(doc="keepalives missed before a host counts as lost"),
    "connect_timeout": Key(doc="an SSH connection's time limit"),
})
DEFAULTS_KEYS = Schema({
    "step_timeout": Key(doc="a step's time limit when it gives none (default 30m)"),
    "undo_retries": Key(doc="attempts after a failed undo"),
    "undo_retry_delay": Key(doc="the pause between undo attempts"),
    "undo_deadline": Key(doc="counted from the start of the rollback: no attempt on a lost "
                             "host starts past it (default 30s)"),
})
ALERTMANAGER_KEYS = Schema({
    "listen": Key(doc="HOST:PORT of the push receiver"),
    "token_env": Key(doc="the environment variable holding its Bearer token"),
    "url": Key(doc="Alertmanager's URL, polled"),
})
PHASE_KEYS = Schema({
    "phase": Key(doc="the phase's number, as in the file name"),
    "name": Key(doc="one line"),
    "description": Key(doc="free text"),
    "requires": Key(doc="[N, {phase: N, observed: 24h}]: phases completed on the host first"),
    "triggers": Key(doc="the triggers watched (default: all)"),
    "bake": Key(doc="how long triggers are watched after the last step"),
    "preconditions": Key(doc="pass/fail metrics that must pass before the first step"),
    "steps": Key(doc="the steps, in order"),
    "serial": Key(doc="1: the whole phase on one host at a time"),
    "waves": Key(doc="[1, 10%, 100%]: cumulative shares of the run's hosts"),
    "max_failed": Key(doc="the failure budget: a count or a share of the hosts"),
    "on_fire": Key(doc="wave (default) or run: what an exhausted budget rolls back"),
    "analysis": Key(doc="canary analysis: metrics judged against a control at each bake's end"),
})
REQUIRES_KEYS = Schema({"phase": Key(doc="the phase required"),
                        "observed": Key(doc="completed and quiet at least this long"),
                        "migration": Key(doc="another migration of the same journal "
                                             "(its `name`)"),
                        "host": Key(doc="with migration: the host it must be completed on "
                                        "(default: the host this phase runs on)")})
STEP_KEYS = Schema({
    "id": Key(doc="unique in the phase: letters, digits, '-', '_', '.'"),
    "name": Key(doc="one line"),
    "description": Key(doc="free text"),
    "playbook": Key(doc="an Ansible playbook to run (an action)"),
    "command": Key(doc="a shell command to run (an action)"),
    "check": Key(doc="a pass/fail metric that must pass (an action)"),
    "wait": Key(doc="a duration, triggers watched meanwhile (an action)"),
    "pause": Key(doc="a manual gate with this message; --yes passes it (an action)"),
    "baseline": Key(doc="capture a named baseline of every numeric metric (an action)"),
    "rollback": Key(doc="the undo playbook, or none"),
    "rollback_command": Key(doc="the undo command"),
    "timeout": Key(doc="the step's time limit"),
    "retries": Key(doc="attempts after a failure (default 0)"),
    "hosts": Key(doc="inventory hosts or groups this step runs on (default: the run's)"),
    "duration": Key(doc="baseline steps: how long to sample (default 10s)"),
})


class _Checker(FileChecker):
    """The problems of one project file (config/schema.py's checker)."""


def _did_you_mean(name: Any, known: set[str]) -> str:
    hint = closest(name, known) if isinstance(name, str) else None
    return f" (did you mean {hint!r}?)" if hint else ""


def _rel(root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def resolve_project_dir(option: str | None) -> Path:
    """--project DIR, else $MIGRATE_PROJECT, else the current directory."""
    raw = option or os.environ.get("MIGRATE_PROJECT") or "."
    return Path(raw).resolve()


def load_project(root: Path, inventory_override: Path | None = None) -> tuple[Project, Inventory]:
    """Load and check everything; raise ConfigError listing every problem found."""
    problems: list[Problem] = []
    project, defined = _load_migration(root, problems)
    if not (root / MIGRATION_FILE).exists():
        raise ConfigError(problems)  # not a project: its other files would only add noise
    inv_path = inventory_override.resolve() if inventory_override else project.inventory_path
    project.inventory_path = inv_path
    inventory, inv_problems = load_inventory(inv_path, _rel(root, inv_path))
    problems.extend(inv_problems)
    # names are checked against an inventory that loaded; a broken one is its own problem
    names = _InventoryNames(inventory, _rel(root, inv_path)) if not inv_problems else None
    if names is not None:
        _check_metric_hosts(project, names, problems)
        _check_execution_nodes(project, defined.nodes, names, problems)
    _load_phases(project, defined, problems, names)
    if problems:
        raise ConfigError(problems)
    return project, inventory


@dataclass(frozen=True)
class _InventoryNames:
    """The inventory that host names in the project files are checked against."""

    inventory: Inventory
    display: str  # as problems name it: inventory/hosts.yml

    def unknown(self, name: Any, what: str, groups: bool = True) -> str | None:
        """None when `name` is a host (or, with `groups`, a group) of the inventory; else
        the problem, with the closest known name."""
        known = set(self.inventory.hosts) | (set(self.inventory.groups) if groups else set())
        if isinstance(name, str) and name in known:
            return None
        if not groups and isinstance(name, str) and name in self.inventory.groups:
            return f"{what}: {name!r} is a group of {self.display}; name one host"
        kind = "host or group" if groups else "host"
        return f"{what}: {name!r} is no {kind} of {self.display}" + _did_you_mean(name, known)


def _check_metric_hosts(project: Project, names: _InventoryNames,
                        problems: list[Problem]) -> None:
    """A source's keys that name one host (`from: main`) must name an inventory host: a
    probe from a host that is not there would fail only mid-run, after phases changed
    hosts."""
    schemas = source_schemas()
    for metric in project.metrics.values():
        config = metric.config
        for key in schemas[metric.source].hosts:
            if key in config:
                # a group passes here (it is in the inventory; the fleet sandbox names one
                # that phase 1's drill never probes from); a name that is nowhere does not
                why = names.unknown(config[key], f"metric {metric.name!r}: {key}")
                if why is not None:
                    line = config.line_of(key) if isinstance(config, YDict) else metric.line
                    problems.append(Problem(MIGRATION_FILE, line, why))


@dataclass
class _Defined:
    """Every metric and trigger name migration.yaml defines, loaded or not: a definition
    with a problem is reported once, where it is, and still counts as defined for the
    phase files that name it (no knock-on "unknown trigger" for each of them)."""

    metrics: set[str] = field(default_factory=set)
    triggers: set[str] = field(default_factory=set)
    #: migration.yaml's `triggers:` was given but defines none (empty, or not a mapping):
    #: its line, and the names the phase files use, reported there once
    no_triggers_line: int | None = None
    orphan_triggers: list[str] = field(default_factory=list)
    #: the execution nodes `execution.nodes` names, loaded or not; None when `execution:`
    #: is there but its `nodes` could not be read (the hosts that name one are not checked)
    nodes: set[str] | None = field(default_factory=set)


def _load_migration(root: Path, problems: list[Problem]) -> tuple[Project, _Defined]:
    path = root / MIGRATION_FILE
    c = _Checker(MIGRATION_FILE, problems)
    defined = _Defined()
    project = Project(root=root, name=root.name, inventory_path=root / "inventory/hosts.yml",
                      poll_interval=5.0, prometheus_url=None, metrics={}, triggers={}, notify=())
    if not path.exists():
        c.add(0, f"no {MIGRATION_FILE} in {root} (use --project DIR or $MIGRATE_PROJECT)")
        return project, defined
    try:
        data = load_yaml(path, MIGRATION_FILE)
    except YamlLoadError as exc:
        problems.append(exc.problem)
        return project, defined
    top = c.mapping(data, 1, MIGRATION_FILE)
    if top is None:
        return project, defined
    c.keys(top, MIGRATION_KEYS, MIGRATION_FILE)
    project.name = c.string(top, "name", MIGRATION_FILE, required=True) or project.name
    inv = c.string(top, "inventory", MIGRATION_FILE)
    if inv:
        project.inventory_path = (root / inv).resolve()
    agent = c.string(top, "agent", MIGRATION_FILE)
    if agent:  # every relative path of a project file is the project's (SPEC section 2)
        project.agent = (root / Path(agent).expanduser()).resolve()
    poll = c.duration(top, "poll_interval", 5.0)
    if poll is not None and poll <= 0:
        c.add(top.line_of("poll_interval"), "poll_interval must be more than 0s")
    project.poll_interval = poll if poll and poll > 0 else 5.0
    forks = top.get("forks", 50)
    if isinstance(forks, bool) or not isinstance(forks, int) or forks < 1:
        c.add(top.line_of("forks"), f"forks must be a whole number of at least 1, not {forks!r}")
    else:
        project.forks = forks
    from orchestrator.state.open import parse_state_settings

    project.state, state_problems = parse_state_settings(top.get("state"), os.environ)
    for message in state_problems:
        c.add(top.line_of("state") if "state" in top else 1, message)
    if "prometheus" in top:
        prom = c.mapping(top["prometheus"], top.line_of("prometheus"), "prometheus")
        if prom is not None:
            c.keys(prom, PROMETHEUS_KEYS, "prometheus")
            project.prometheus_url = c.string(prom, "url", "prometheus")
    env_url = os.environ.get("MIGRATE_PROMETHEUS_URL")
    if env_url:
        project.prometheus_url = env_url

    metrics = top.get("metrics") or YDict()
    if "metrics" in top and c.mapping(metrics, top.line_of("metrics"), "metrics") is not None:
        defined.metrics.update(metrics)
        for name, body in metrics.items():
            m = _load_metric(c, name, body, metrics.line_of(name))
            if m is not None:
                project.metrics[name] = m
    triggers = top.get("triggers") or YDict()
    if "triggers" in top and (not isinstance(top.get("triggers"), dict)
                              or not top.get("triggers")):
        defined.no_triggers_line = top.line_of("triggers")
    if "triggers" in top and c.mapping(triggers, top.line_of("triggers"), "triggers") is not None:
        defined.triggers.update(triggers)
        for name, body in triggers.items():
            t = _load_trigger(c, name, body, triggers.line_of(name), project.metrics,
                              defined.metrics)
            if t is not None:
                project.triggers[name] = t
    project.notify = tuple(_load_notify(c, top))
    _load_ssh_and_defaults(c, top, project)
    _load_alertmanager(c, top, project)
    _load_execution(c, top, project, defined)
    return project, defined


def _load_metric(c: _Checker, name: str, body: Any, line: int) -> Metric | None:
    """Common keys here; the source's own keys against the schema it registered
    (config/schema.py's source registry)."""
    what = f"metric {name!r}"
    d = c.mapping(body, line, what)
    if d is None:
        return None
    schemas = source_schemas()
    source = d.get("source")
    spec: SourceSchema | None = schemas.get(source) if isinstance(source, str) else None
    if spec is None:
        typo = [k for k in d if "source" not in d and closest(k, {"source"})]
        for k in typo:  # `sorce: tcp`: that one key, not every key of the source as well
            c.add(d.line_of(k), f"unknown key {k!r} in {what} (did you mean 'source'?)")
        if not typo:
            c.add(d.line_of("source"), f"{what}: source must be one of "
                  f"{', '.join(sorted(schemas))}, not {source!r}")
        return None
    unknown = c.unknown_keys(d, METRIC_KEYS.names() | set(spec.keys), what)
    meant = {hint for hint in unknown.values() if hint}
    spec.validate(d, lambda at, message: c.add(at, f"{what}: {message}"), meant)
    timeout = c.duration(d, "timeout", None)
    nodata_alert = c.duration(d, "nodata_alert", 120.0) or 120.0
    nodata = d.get("nodata", "skip")
    if nodata not in ("skip", "breach"):
        c.add(d.line_of("nodata"), f"{what}: nodata must be skip or breach, not {nodata!r}")
    config = YDict({k: v for k, v in d.items() if k not in METRIC_KEYS.keys})
    config.line, config.key_lines = d.line, {k: d.line_of(k) for k in config}
    return Metric(name=name, source=spec.name, kind=spec.kind(d), config=config,
                  nodata=nodata if nodata in ("skip", "breach") else "skip",
                  nodata_alert=nodata_alert, timeout=timeout, line=d.line)


def _load_trigger(c: _Checker, name: str, body: Any, line: int, metrics: dict[str, Metric],
                  known_metric_names: set[str]) -> Trigger | None:
    what = f"trigger {name!r}"
    d = c.mapping(body, line, what)
    if d is None:
        return None
    if "alert" in d:  # `alert: NAME` has its own keys and no metric
        return _load_alert_trigger(c, name, d)
    unknown = c.unknown_keys(d, TRIGGER_KEYS.names() | _CONDITIONS, what)
    meant = {hint for hint in unknown.values() if hint}
    metric_name = d.get("metric")
    ok = not unknown
    if not isinstance(metric_name, str):
        if "metric" not in meant:
            c.add(d.line, f"{what} needs 'metric'")
        ok = False
    elif metric_name not in known_metric_names:
        c.add(d.line_of("metric"), f"{what}: unknown metric {metric_name!r}")
        ok = False
    conds = [k for k in d if k in _CONDITIONS]
    if not conds and unknown:  # `degrade_pc: 20`: the typo is the one problem
        return None
    if len(conds) != 1:
        c.add(d.line_of(conds[1]) if len(conds) > 1 else d.line,
              f"{what} must hold exactly one condition of "
              f"{', '.join(sorted(_CONDITIONS))}; it has {len(conds)}"
              + (f" ({', '.join(conds)})" if conds else ""))
        return None
    cond = Condition(conds[0])
    threshold = 0.0
    if cond is Condition.FAILING:
        if d[cond.value] is not True:
            c.add(d.line_of(cond.value), f"{what}: failing must be true")
            ok = False
    else:
        value = c.number(d, cond.value, what)
        if value is None:
            ok = False
        else:
            threshold = value
            if cond is Condition.DEGRADE_PCT and value <= 0:
                c.add(d.line_of(cond.value), f"{what}: degrade_pct must be more than 0")
    direction = d.get("direction", "up")
    if direction not in ("up", "down"):
        c.add(d.line_of("direction"), f"{what}: direction must be up or down")
        ok = False
    elif "direction" in d and cond is not Condition.DEGRADE_PCT:
        c.add(d.line_of("direction"), f"{what}: direction only applies to degrade_pct")
    for_seconds = c.duration(d, "for", 0.0)
    action_raw = d.get("action", "rollback")
    try:
        action = TriggerAction(action_raw)
    except ValueError:
        c.add(d.line_of("action"), f"{what}: action must be rollback, notify or pause")
        action = TriggerAction.ROLLBACK
        ok = False
    baseline = d.get("baseline", "phase-start")
    if not isinstance(baseline, str) or not baseline:
        c.add(d.line_of("baseline"), f"{what}: baseline must be phase-start or a baseline name")
        ok = False
    if ok and isinstance(metric_name, str) and metric_name in metrics:
        kind = metrics[metric_name].kind
        if cond is Condition.FAILING and kind is not MetricKind.PASSFAIL:
            c.add(d.line_of(cond.value), f"{what}: failing needs a pass/fail metric; "
                  f"{metric_name} is numeric")
            ok = False
        if cond is not Condition.FAILING and kind is MetricKind.PASSFAIL:
            c.add(d.line_of(cond.value), f"{what}: {cond.value} needs a numeric metric; "
                  f"{metric_name} is pass/fail")
            ok = False
    if not ok or not isinstance(metric_name, str):
        return None
    return Trigger(name=name, metric=metric_name, condition=cond, threshold=threshold,
                   direction=str(direction), for_seconds=for_seconds or 0.0, action=action,
                   baseline=str(baseline), line=d.line)


_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _load_alert_trigger(c: _Checker, name: str, d: YDict) -> Trigger | None:
    """`{alert: NAME, match: {label: value}, host_label: LABEL, action: ...}`: no metric,
    no `for:` (the rule's own `for` already held), no baseline."""
    from orchestrator.core.model import AlertSpec

    what = f"trigger {name!r}"
    ok = True
    conds = [k for k in d if k in _CONDITIONS]
    if len(conds) != 1:
        c.add(d.line_of(conds[1]), f"{what} must hold exactly one condition of "
              f"{', '.join(sorted(_CONDITIONS))}; it has {len(conds)} ({', '.join(conds)})")
        ok = False
    for key in d:
        if key == "metric":
            c.add(d.line_of(key), f"{what}: an alert trigger takes no metric "
                  "(the alert rule says what is measured)")
            ok = False
        elif key == "for":
            c.add(d.line_of(key), f"{what}: for: is the alert rule's business; "
                  "set `for` in the Prometheus rule")
            ok = False
        elif key in ("baseline", "direction"):
            c.add(d.line_of(key), f"{what}: {key} does not apply to an alert trigger")
            ok = False
        elif key not in ALERT_TRIGGER_KEYS.keys and key not in _CONDITIONS:
            c.unknown_key(d, key, ALERT_TRIGGER_KEYS.names(), what)
            ok = False
    alert = c.string(d, "alert", what)
    if alert is None:
        ok = False
    match: list[tuple[str, str]] = []
    if "match" in d:
        m = c.mapping(d["match"], d.line_of("match"), f"match in {what}")
        if m is None:
            ok = False
        else:
            for label, value in m.items():
                if not isinstance(label, str) or not _LABEL_NAME.match(label):
                    c.add(m.line_of(label), f"{what}: match: {label!r} is not a label name")
                    ok = False
                elif isinstance(value, bool) or not isinstance(value, str | int | float):
                    c.add(m.line_of(label), f"{what}: match: {label} must be a string "
                          f"(quote it), not {value!r}")
                    ok = False
                else:
                    match.append((label, str(value)))
    host_label = d.get("host_label", "instance")
    if not isinstance(host_label, str) or not _LABEL_NAME.match(host_label):
        c.add(d.line_of("host_label"), f"{what}: host_label must be a label name "
              f"(like instance or Hostname), not {host_label!r}")
        ok = False
    try:
        action = TriggerAction(d.get("action", "rollback"))
    except ValueError:
        c.add(d.line_of("action"), f"{what}: action must be rollback, notify or pause")
        ok = False
    if not ok or alert is None:
        return None
    return Trigger(name=name, metric="", condition=Condition.ALERT, threshold=0.0,
                   direction="up", for_seconds=0.0, action=action, baseline="phase-start",
                   line=d.line, alert=AlertSpec(alert, tuple(sorted(match)), host_label))


def _load_alertmanager(c: _Checker, top: YDict, project: Project) -> None:
    """`alertmanager: {listen, token_env, url}`; and every alert trigger needs a source."""
    from orchestrator.core.hostport import is_loopback_host, split_host_port
    from orchestrator.core.model import AlertmanagerConfig

    if "alertmanager" in top:
        d = c.mapping(top["alertmanager"], top.line_of("alertmanager"), "alertmanager")
        if d is not None:
            c.keys(d, ALERTMANAGER_KEYS, "alertmanager")
            listen = c.string(d, "listen", "alertmanager")
            token_env = c.string(d, "token_env", "alertmanager")
            url = c.string(d, "url", "alertmanager")
            if listen:
                try:
                    host, port = split_host_port(listen)
                    if port == 0:
                        raise ValueError(f"{listen!r} must name a port")
                    if not is_loopback_host(host) and not token_env:
                        c.add(d.line_of("listen"), f"alertmanager: listen {listen} is not a "
                              "loopback address: set token_env (a Bearer token is required)")
                except ValueError as exc:
                    c.add(d.line_of("listen"), f"alertmanager: listen: {exc}")
            if token_env and not _ENV_NAME.match(token_env):
                c.add(d.line_of("token_env"), f"alertmanager: token_env {token_env!r} is not "
                      "an environment variable name")
            if url and not url.startswith(("http://", "https://")):
                c.add(d.line_of("url"), f"alertmanager: url {url!r} must start with "
                      "http:// or https://")
            if not listen and not url and "listen" not in d and "url" not in d:
                c.add(d.line, "alertmanager needs listen (push receiver), url (poll) or both")
            project.alertmanager = AlertmanagerConfig(listen, token_env, url, d.line)
    if project.alertmanager is None and not project.prometheus_url:
        for t in project.triggers.values():
            if t.alert is not None:
                c.add(t.line, f"trigger {t.name!r}: an alert trigger needs alertmanager "
                      "(listen or url) or prometheus.url to read alerts from")


def _load_execution(c: _Checker, top: YDict, project: Project, defined: _Defined) -> None:
    """`execution: {nodes: {NAME: {host, runner}}}`; the hosts are checked against the
    inventory once it is loaded (`_check_execution_nodes`)."""
    if "execution" not in top:
        return
    defined.nodes = None
    d = c.mapping(top["execution"], top.line_of("execution"), "execution")
    if d is None or not c.keys(d, EXECUTION_KEYS, "execution") or "nodes" not in d:
        return
    nodes = c.mapping(d["nodes"], d.line_of("nodes"), "execution.nodes")
    if nodes is None:
        return
    defined.nodes = {str(name) for name in nodes}
    if not nodes:
        c.add(d.line_of("nodes"), "execution.nodes names no node (remove `execution:` to run "
                                  "every playbook here)")
    for name, body in nodes.items():
        what = f"execution node {name!r}"
        if not isinstance(name, str) or not _STEP_ID.match(name):
            c.add(nodes.line_of(name), f"{what}: a node's name is letters, digits, '-', '_', '.'")
            continue
        node = c.mapping(body, nodes.line_of(name), what)
        if node is None or not c.keys(node, NODE_KEYS, what):
            continue
        project.execution_nodes[name] = ExecutionNode(
            name=name, host=str(node["host"]).strip(),
            runner=str(node.get("runner") or "ansible-runner").strip(),
            line=node.line_of("host"))


def _check_execution_nodes(project: Project, defined: set[str] | None,
                           names: _InventoryNames, problems: list[Problem]) -> None:
    """Every node is an inventory host, and every `migrate_execution_node` in the
    inventory names a node: a step sent to a node that is not there would fail only
    mid-run, after other hosts changed."""
    nodes = project.execution_nodes
    for node in nodes.values():
        why = names.unknown(node.host, f"execution node {node.name!r}: host", groups=False)
        if why is not None:
            problems.append(Problem(MIGRATION_FILE, node.line, why))
    if defined is None:
        return  # `execution:` itself is broken: reported there, once
    inventory = names.inventory
    for host in inventory.hosts.values():
        if EXECUTION_NODE_VAR not in host.vars:
            continue
        value = host.vars[EXECUTION_NODE_VAR]
        line = inventory.var_lines.get(host.name, {}).get(EXECUTION_NODE_VAR, 0)
        if value in (None, "") or (isinstance(value, str) and value in defined):
            continue  # empty: this host runs here although its group has a node
        known = ", ".join(sorted(defined)) or f"none: {MIGRATION_FILE} has no execution.nodes"
        problems.append(Problem(names.display, line,
                                f"host {host.name!r}: {EXECUTION_NODE_VAR} {value!r} is no "
                                f"execution node (nodes: {known})"
                                + _did_you_mean(value, defined)))


def _load_notify(c: _Checker, top: YDict) -> list[Notifier]:
    out: list[Notifier] = []
    if "notify" not in top or top["notify"] is None:
        return out
    items = top["notify"]
    if not isinstance(items, YList):
        c.add(top.line_of("notify"), "notify must be a list of {url, events}")
        return out
    for i, item in enumerate(items):
        d = c.mapping(item, items.line_of(i), "notify entry")
        if d is None:
            continue
        c.keys(d, NOTIFY_KEYS, "notify entry")
        url = c.string(d, "url", "notify entry", required=True)
        events = d.get("events", [kind.value for kind in NOTIFIABLE])  # none named: all
        if not isinstance(events, list):
            c.add(d.line_of("events"), "notify events must be a list")
            continue
        for ev in events:
            if ev not in NOTIFY_EVENTS:
                c.add(d.line_of("events"), f"unknown notify event {ev!r} "
                      f"(known: {', '.join(sorted(NOTIFY_EVENTS))})")
        if url:
            out.append(Notifier(url=url, events=tuple(str(e) for e in events)))
    return out


def _load_ssh_and_defaults(c: _Checker, top: YDict, project: Project) -> None:
    """`ssh: {keepalive, keepalive_count, connect_timeout}` and
    `defaults: {step_timeout, undo_retries, undo_retry_delay}`; absent keys keep defaults."""
    from dataclasses import replace

    def whole(d: YDict, key: str, what: str, default: int, least: int) -> int:
        value = d.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            c.add(d.line_of(key), f"{key} in {what} must be a whole number >= {least}, "
                  f"not {value!r}")
            return default
        return value

    def seconds(d: YDict, key: str, what: str, default: float, least: float) -> float:
        value = c.duration(d, key, default)
        if value is None or value < least:
            c.add(d.line_of(key), f"{key} in {what} must be at least {least:g}s")
            return default
        return value

    ssh = project.ssh
    if "ssh" in top and c.mapping(top["ssh"], top.line_of("ssh"), "ssh") is not None:
        d = top["ssh"]
        c.keys(d, SSH_KEYS, "ssh")
        project.ssh = replace(
            ssh, keepalive=seconds(d, "keepalive", "ssh", ssh.keepalive, 1.0),
            keepalive_count=whole(d, "keepalive_count", "ssh", ssh.keepalive_count, 1),
            connect_timeout=seconds(d, "connect_timeout", "ssh", ssh.connect_timeout, 1.0))
    dflt = project.defaults
    if "defaults" in top and c.mapping(top["defaults"], top.line_of("defaults"),
                                       "defaults") is not None:
        d = top["defaults"]
        c.keys(d, DEFAULTS_KEYS, "defaults")
        project.defaults = replace(
            dflt, step_timeout=seconds(d, "step_timeout", "defaults",
                                       dflt.step_timeout or 1800.0, 1.0),
            undo_retries=whole(d, "undo_retries", "defaults", dflt.undo_retries, 0),
            undo_retry_delay=seconds(d, "undo_retry_delay", "defaults",
                                     dflt.undo_retry_delay, 0.0),
            undo_deadline=seconds(d, "undo_deadline", "defaults", dflt.undo_deadline, 1.0))


def _load_phases(project: Project, defined: _Defined, problems: list[Problem],
                 names: _InventoryNames | None = None) -> None:
    phase_dir = project.root / "phases"
    files = sorted(phase_dir.glob("*.y*ml")) if phase_dir.is_dir() else []
    if not files:
        problems.append(Problem("phases/", 0, "no phase files (phases/<N>-<slug>.yaml)"))
        return
    requires_refs: list[tuple[_Checker, int, int]] = []
    for path in files:
        rel = _rel(project.root, path)
        c = _Checker(rel, problems)
        m = PHASE_FILE.match(path.name)
        if not m:
            c.add(0, "phase files are named <N>-<slug>.yaml")
            continue
        number = int(m.group(1))
        if number in project.phases:
            c.add(0, f"phase {number} is defined twice "
                  f"(also {_rel(project.root, project.phases[number].path)})")
            continue
        phase = _load_phase(project, defined, c, path, number, requires_refs, names)
        if phase is not None:
            project.phases[number] = phase
    for c, line, required in requires_refs:
        if required not in project.phases:
            c.add(line, f"requires phase {required}, which does not exist")
    orphans = sorted(set(defined.orphan_triggers))
    if orphans and defined.no_triggers_line is not None and not _reported_at(
            problems, "migration.yaml", defined.no_triggers_line):
        problems.append(Problem("migration.yaml", defined.no_triggers_line,
                                f"triggers: none are defined, yet the phase files name "
                                f"{len(orphans)}: {', '.join(orphans)}"))


def _reported_at(problems: list[Problem], file: str, line: int) -> bool:
    return any(p.file == file and p.line == line for p in problems)


def _load_phase(project: Project, defined: _Defined, c: _Checker, path: Path, number: int,
                requires_refs: list[tuple[_Checker, int, int]],
                names: _InventoryNames | None = None) -> Phase | None:
    try:
        data = load_yaml(path, c.file)
    except YamlLoadError as exc:
        c.problems.append(exc.problem)
        return None
    d = c.mapping(data, 1, "phase file")
    if d is None:
        return None
    c.keys(d, PHASE_KEYS, "phase")
    declared = d.get("phase")
    if declared != number:
        c.add(d.line_of("phase"), f"phase: {declared!r} does not match the file name's {number}")
    requires: list[int] = []
    observed: dict[int, float] = {}
    cross: list[Requirement] = []
    for item, line in c.names(d, "requires", "phase"):
        if isinstance(item, YDict):  # {phase: 2, observed: 24h}
            if not c.keys(item, REQUIRES_KEYS, "requires") and "phase" not in item:
                continue  # `{phas: 2}`: the misspelt key is the one problem
            seconds = c.duration(item, "observed", None)
            item_phase = item.get("phase")
            other = item.get("migration")
            if other is not None:  # another migration's phase: not checked against ours
                if not isinstance(other, str) or not other:
                    c.add(item.line_of("migration"), "requires: migration must be a name")
                elif isinstance(item_phase, bool) or not isinstance(item_phase, int):
                    c.add(line, f"requires: {item_phase!r} is not a phase number")
                else:
                    host = item.get("host")
                    cross.append(Requirement(other, item_phase,
                                             str(host) if host is not None else None,
                                             seconds, line))
                continue
            if "host" in item:
                c.add(item.line_of("host"), "requires: host goes with migration (a phase of "
                      "this migration is required on the same host)")
            if seconds is not None and not isinstance(item_phase, bool) \
                    and isinstance(item_phase, int):
                observed[item_phase] = seconds
            item = item_phase
        if isinstance(item, bool) or not isinstance(item, int):
            c.add(line, f"requires: {item!r} is not a phase number")
        elif item == number:
            c.add(line, "a phase cannot require itself")
        else:
            requires.append(item)
            requires_refs.append((c, line, item))
    triggers: list[str] = []
    if "triggers" in d:
        for item, line in c.names(d, "triggers", "phase"):
            if item in project.triggers:
                triggers.append(item)
            elif defined.no_triggers_line is not None:  # one problem, in migration.yaml
                defined.orphan_triggers.append(str(item))
            elif item not in defined.triggers:  # a broken one is reported where it is
                c.add(line, f"unknown trigger {item!r}"
                      + _did_you_mean(item, defined.triggers))
    else:
        triggers = list(project.triggers)
    preconditions: list[str] = []
    for item, line in c.names(d, "preconditions", "phase"):
        metric = project.metrics.get(item) if isinstance(item, str) else None
        if metric is None:
            if item not in defined.metrics:
                c.add(line, f"precondition: unknown metric {item!r}"
                      + _did_you_mean(item, defined.metrics))
        elif metric.kind is not MetricKind.PASSFAIL:
            c.add(line, f"precondition {item!r} must be a pass/fail metric")
        else:
            preconditions.append(item)
    bake = c.duration(d, "bake", 0.0) or 0.0
    serial = d.get("serial", 0)
    if serial not in (0, 1):
        c.add(d.line_of("serial"), "serial must be 1 (one host at a time) or 0")
        serial = 0
    waves = tuple(_share(c, item, line, "waves") for item, line in c.names(d, "waves", "phase"))
    if any(w is None for w in waves):
        waves = ()
    max_failed = _share(c, d.get("max_failed", 0), d.line_of("max_failed"), "max_failed")
    on_fire = d.get("on_fire", "wave")
    if on_fire not in ("wave", "run"):
        c.add(d.line_of("on_fire"), f"on_fire must be wave or run, not {on_fire!r}")
        on_fire = "wave"
    steps: list[Step] = []
    raw_steps = d.get("steps")
    if not isinstance(raw_steps, YList) or not raw_steps:
        c.add(d.line_of("steps"), "a phase needs a non-empty list of steps")
        raw_steps = YList()
        raw_steps.line, raw_steps.item_lines = d.line, []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_steps):
        step = _load_step(project, defined, c, raw, raw_steps.line_of(i), names)
        if step is None:
            continue
        if step.id in seen:
            c.add(step.line, f"duplicate step id {step.id!r} (first at line {seen[step.id]})")
            continue
        seen[step.id] = step.line
        steps.append(step)
    name = c.string(d, "name", "phase") or path.stem
    analysis = _analysis(project, defined, c, d, bake, bool(waves), names)
    return Phase(analysis=analysis, number=number, name=name, path=path,
                 requires=tuple(requires),
                 triggers=tuple(triggers), bake=bake, preconditions=tuple(preconditions),
                 steps=tuple(steps), serial=int(serial),
                 waves=tuple(w for w in waves if w is not None),
                 max_failed=max_failed if max_failed is not None else 0, on_fire=on_fire,
                 observed=observed, cross=tuple(cross))


def _analysis(project: Project, defined: _Defined, c: _Checker, d: YDict, bake: float,
              has_waves: bool, names: _InventoryNames | None) -> AnalysisSpec | None:
    """The phase's `analysis:` block (SPEC section 2, "Canary analysis"), or None."""
    if "analysis" not in d:
        return None
    from orchestrator.config.analysis import parse_analysis

    kinds: dict[str, Any] = {name: m.kind for name, m in project.metrics.items()}
    for name in defined.metrics:  # a broken metric is reported where it is defined
        kinds.setdefault(name, "number")
    hosts = None if names is None else \
        set(names.inventory.hosts) | set(names.inventory.groups)
    spec, problems = parse_analysis(d["analysis"], file=c.file, line=d.line_of("analysis"),
                                    metric_kinds=kinds, bake=bake, has_waves=has_waves,
                                    host_names=hosts)
    c.problems.extend(problems)
    return spec


def _share(c: _Checker, value: Any, line: int, key: str) -> int | str | None:
    return c.share(value, line, key)


def _check_playbook(project: Project, c: _Checker, d: YDict, key: str, rel: str) -> None:
    target = (project.root / rel).resolve()
    if not target.is_file():
        c.add(d.line_of(key), f"{key}: playbook {rel} does not exist")


def _load_step(project: Project, defined: _Defined, c: _Checker, raw: Any,
               line: int, names: _InventoryNames | None = None) -> Step | None:
    d = c.mapping(raw, line, "step")
    if d is None:
        return None
    sid = d.get("id")
    what = f"step {sid!r}" if isinstance(sid, str) else "step"
    unknown = c.unknown_keys(d, STEP_KEYS.names(), what)
    if not isinstance(sid, str) or not _STEP_ID.match(sid):
        c.add(d.line_of("id") if "id" in d else d.line,
              f"{what} needs an id of letters, digits, '-', '_' or '.'")
        return None
    actions = [k for k in d if k in _ACTIONS]
    if not actions and unknown:  # `playbok: x.yml`: the typo is the one problem
        return None
    if len(actions) != 1:
        c.add(d.line_of(actions[1]) if len(actions) > 1 else d.line,
              f"{what} must have exactly one action of {', '.join(sorted(_ACTIONS))}; "
              f"it has {len(actions)}" + (f" ({', '.join(actions)})" if actions else ""))
        return None
    action = StepAction(actions[0])
    target = d[action.value]
    wait_seconds = 0.0
    capture_seconds = 0.0
    if action is StepAction.WAIT:
        try:
            wait_seconds = parse_duration(target)
        except ValueError as exc:
            c.add(d.line_of("wait"), f"{what}: wait: {exc}")
    elif not isinstance(target, str) or not target.strip():
        c.add(d.line_of(action.value), f"{what}: {action.value} must be a non-empty string")
        return None
    if action is StepAction.PLAYBOOK:
        _check_playbook(project, c, d, "playbook", target)
    if action is StepAction.CHECK:
        metric = project.metrics.get(target)
        if metric is None:
            if target not in defined.metrics:
                c.add(d.line_of("check"), f"{what}: check names unknown metric {target!r}"
                      + _did_you_mean(target, defined.metrics))
        elif metric.kind is not MetricKind.PASSFAIL:
            c.add(d.line_of("check"), f"{what}: check needs a pass/fail metric, "
                  f"{target!r} is numeric")
    if action is StepAction.BASELINE:
        capture_seconds = c.duration(d, "duration", 10.0) or 10.0
    elif "duration" in d:
        c.add(d.line_of("duration"), f"{what}: duration only applies to baseline steps")

    undo: Undo | None = None
    has_rb = "rollback" in d
    has_rbc = "rollback_command" in d
    if action in (StepAction.PLAYBOOK, StepAction.COMMAND):
        if has_rb and has_rbc:
            c.add(d.line_of("rollback_command"),
                  f"{what}: give either rollback or rollback_command, not both")
        elif has_rbc:
            cmd = c.string(d, "rollback_command", what)
            undo = Undo(UndoKind.COMMAND, cmd) if cmd else None
        elif has_rb:
            rb = d["rollback"]
            if rb == "none":
                undo = Undo(UndoKind.NONE)
            elif isinstance(rb, str) and rb.strip():
                _check_playbook(project, c, d, "rollback", rb)
                undo = Undo(UndoKind.PLAYBOOK, rb)
            else:
                c.add(d.line_of("rollback"), f"{what}: rollback must be a playbook path or none")
        else:
            c.add(d.line, f"{what}: a {action.value} step must say how it is undone "
                  "(rollback: PLAYBOOK, rollback_command: CMD, or rollback: none)")
    elif has_rb or has_rbc:
        c.add(d.line_of("rollback" if has_rb else "rollback_command"),
              f"{what}: a {action.value} step changes nothing and takes no rollback")
    timeout = c.duration(d, "timeout", None)
    retries = d.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        c.add(d.line_of("retries"), f"{what}: retries must be a whole number >= 0")
        retries = 0
    hosts: tuple[str, ...] | None = None
    if "hosts" in d:
        items = c.names(d, "hosts", what)
        hosts = tuple(str(h) for h, _ in items)
        if not hosts:
            c.add(d.line_of("hosts"), f"{what}: hosts must name at least one host or group")
        for host, hline in items:
            why = names.unknown(host, f"{what}: hosts") if names is not None else None
            if why is not None:
                c.add(hline, why)
    name = d.get("name") if isinstance(d.get("name"), str) else sid
    return Step(id=sid, name=str(name), action=action,
                target=str(target), undo=undo, timeout=timeout, retries=retries, hosts=hosts,
                line=d.line, wait_seconds=wait_seconds, capture_seconds=capture_seconds)


def checked_project(root: Path, inventory_override: Path | None = None,
                    extra: Callable[[Project, Inventory], list[Problem]] | None = None,
                    ) -> tuple[Project, Inventory]:
    """load_project plus the caller's own checks of project and inventory together (the
    hosts that metrics and steps name are load_project's)."""
    project, inventory = load_project(root, inventory_override)
    problems = extra(project, inventory) if extra is not None else []
    if problems:
        raise ConfigError(problems)
    return project, inventory


def baseline_steps(project: Project, phase: Phase) -> dict[str, list[tuple[Phase, Step]]]:
    """The named baselines that the phases `phase` requires (directly or through other
    phases) capture in a `baseline:` step, by name: a trigger of `phase` that compares
    against one of them has its baseline by the time `phase` may run."""
    out: dict[str, list[tuple[Phase, Step]]] = {}
    seen: set[int] = set()
    todo = list(phase.requires)
    while todo:
        number = todo.pop()
        required = project.phases.get(number)
        if number in seen or required is None:
            continue
        seen.add(number)
        todo.extend(required.requires)
        for step in required.steps:
            if step.action is StepAction.BASELINE:
                out.setdefault(step.target, []).append((required, step))
    return out
