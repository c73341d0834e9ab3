"""Load a migration project and check all of it before anything runs.

Every problem is collected (not just the first) as FILE:LINE: message, with line
numbers taken from the YAML nodes. `load_project` either returns a complete,
consistent `Project` or raises one `ConfigError` listing everything wrong.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator._exceptions import ConfigError, Problem
from orchestrator.config.inventory import Inventory, load_inventory
from orchestrator.config.yamlsource import YamlLoadError, YDict, YList, load_yaml
from orchestrator.core.durations import parse_duration
from orchestrator.core.model import (
    Condition,
    Metric,
    MetricKind,
    Notifier,
    Phase,
    Project,
    Step,
    StepAction,
    Trigger,
    TriggerAction,
    Undo,
    UndoKind,
)

# The one place where config reads a higher layer: each source declares its own keys and
# kind next to its reader (monitoring/sources), and validation loops over that registry.
from orchestrator.monitoring.sources import SOURCES

MIGRATION_FILE = "migration.yaml"
PHASE_FILE = re.compile(r"^(\d+)-([A-Za-z0-9][A-Za-z0-9_.-]*)\.ya?ml$")

_TOP_KEYS = {"name", "inventory", "poll_interval", "prometheus", "metrics", "triggers",
             "notify", "description", "ssh", "defaults", "forks", "alertmanager", "state"}
_COMMON_METRIC_KEYS = {"source", "nodata", "nodata_alert", "timeout", "description"}
_TRIGGER_KEYS = {"metric", "direction", "for", "action", "baseline", "description"}
_CONDITIONS = {c.value for c in Condition}
_PHASE_KEYS = {"phase", "name", "requires", "triggers", "bake", "preconditions", "steps",
               "serial", "description", "waves", "max_failed", "on_fire"}
_SHARE = re.compile(r"^\d+(\.\d+)?%$")
_STEP_KEYS = {"id", "name", "rollback", "rollback_command", "timeout", "retries", "hosts",
              "description", "duration"}
_ACTIONS = {a.value for a in StepAction}
NOTIFY_EVENTS = {"trigger_fired", "rollback_started", "rollback_completed", "rollback_failed",
                 "phase_completed", "metric_nodata", "run_started", "run_interrupted"}
_STEP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Checker:
    """Collects problems for one file, with helpers that read typed values off YDicts."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems

    def add(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))

    def mapping(self, value: Any, line: int, what: str) -> YDict | None:
        if isinstance(value, YDict):
            for key, kline in value.duplicate_keys:
                self.add(kline, f"duplicate key {key!r} in {what}")
            return value
        self.add(line, f"{what} must be a mapping")
        return None

    def unknown_keys(self, d: YDict, allowed: set[str], what: str) -> None:
        for key in d:
            if key not in allowed:
                hint = _closest(key, allowed)
                self.add(d.line_of(key), f"unknown key {key!r} in {what}"
                         + (f" (did you mean {hint!r}?)" if hint else ""))

    def duration(self, d: YDict, key: str, default: float | None) -> float | None:
        if key not in d:
            return default
        try:
            return parse_duration(d[key])
        except ValueError as exc:
            self.add(d.line_of(key), f"{key}: {exc}")
            return default

    def string(self, d: YDict, key: str, what: str, required: bool = False) -> str | None:
        if key not in d:
            if required:
                self.add(d.line, f"{what} needs {key!r}")
            return None
        value = d[key]
        if not isinstance(value, str) or not value.strip():
            self.add(d.line_of(key), f"{key} in {what} must be a non-empty string")
            return None
        return value

    def number(self, d: YDict, key: str, what: str) -> float | None:
        value = d.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(d.line_of(key), f"{key} in {what} must be a number, not {value!r}")
            return None
        return float(value)

    def names(self, d: YDict, key: str, what: str) -> list[tuple[Any, int]]:
        value = d.get(key)
        if value is None:
            return []
        if not isinstance(value, YList):
            self.add(d.line_of(key), f"{key} in {what} must be a list")
            return []
        return [(item, value.line_of(i)) for i, item in enumerate(value)]


def _closest(word: str, options: set[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.75)
    return match[0] if match else None


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
    project = _load_migration(root, problems)
    if not (root / MIGRATION_FILE).exists():
        raise ConfigError(problems)  # not a project: its other files would only add noise
    inv_path = inventory_override.resolve() if inventory_override else project.inventory_path
    project.inventory_path = inv_path
    inventory, inv_problems = load_inventory(inv_path, _rel(root, inv_path))
    problems.extend(inv_problems)
    _load_phases(project, problems)
    if problems:
        raise ConfigError(problems)
    return project, inventory


def _load_migration(root: Path, problems: list[Problem]) -> Project:
    path = root / MIGRATION_FILE
    c = _Checker(MIGRATION_FILE, problems)
    project = Project(root=root, name=root.name, inventory_path=root / "inventory/hosts.yml",
                      poll_interval=5.0, prometheus_url=None, metrics={}, triggers={}, notify=())
    if not path.exists():
        c.add(0, f"no {MIGRATION_FILE} in {root} (use --project DIR or $MIGRATE_PROJECT)")
        return project
    try:
        data = load_yaml(path, MIGRATION_FILE)
    except YamlLoadError as exc:
        problems.append(exc.problem)
        return project
    top = c.mapping(data, 1, MIGRATION_FILE)
    if top is None:
        return project
    c.unknown_keys(top, _TOP_KEYS, MIGRATION_FILE)
    project.name = c.string(top, "name", MIGRATION_FILE, required=True) or project.name
    inv = c.string(top, "inventory", MIGRATION_FILE)
    if inv:
        project.inventory_path = (root / inv).resolve()
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
            c.unknown_keys(prom, {"url"}, "prometheus")
            project.prometheus_url = c.string(prom, "url", "prometheus")
    env_url = os.environ.get("MIGRATE_PROMETHEUS_URL")
    if env_url:
        project.prometheus_url = env_url

    metrics = top.get("metrics") or YDict()
    if "metrics" in top and c.mapping(metrics, top.line_of("metrics"), "metrics") is not None:
        for name, body in metrics.items():
            m = _load_metric(c, name, body, metrics.line_of(name))
            if m is not None:
                project.metrics[name] = m
    triggers = top.get("triggers") or YDict()
    if "triggers" in top and c.mapping(triggers, top.line_of("triggers"), "triggers") is not None:
        for name, body in triggers.items():
            known = set(metrics) if isinstance(metrics, dict) else set()
            t = _load_trigger(c, name, body, triggers.line_of(name), project.metrics, known)
            if t is not None:
                project.triggers[name] = t
    project.notify = tuple(_load_notify(c, top))
    _load_ssh_and_defaults(c, top, project)
    _load_alertmanager(c, top, project)
    return project


def _load_metric(c: _Checker, name: str, body: Any, line: int) -> Metric | None:
    """Common keys here; the source's own keys against its declared schema (SOURCES)."""
    what = f"metric {name!r}"
    d = c.mapping(body, line, what)
    if d is None:
        return None
    source = d.get("source")
    spec = SOURCES.get(source) if isinstance(source, str) else None
    if spec is None:
        c.add(d.line_of("source"), f"{what}: source must be one of "
              f"{', '.join(sorted(SOURCES))}, not {source!r}")
        return None
    c.unknown_keys(d, _COMMON_METRIC_KEYS | set(spec.keys), what)
    spec.validate(d, lambda at, message: c.add(at, f"{what}: {message}"))
    timeout = c.duration(d, "timeout", None)
    nodata_alert = c.duration(d, "nodata_alert", 120.0) or 120.0
    nodata = d.get("nodata", "skip")
    if nodata not in ("skip", "breach"):
        c.add(d.line_of("nodata"), f"{what}: nodata must be skip or breach, not {nodata!r}")
    config = {k: v for k, v in d.items() if k not in _COMMON_METRIC_KEYS}
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
    c.unknown_keys(d, _TRIGGER_KEYS | _CONDITIONS, what)
    metric_name = d.get("metric")
    ok = True
    if not isinstance(metric_name, str):
        c.add(d.line, f"{what} needs 'metric'")
        ok = False
    elif metric_name not in known_metric_names:
        c.add(d.line_of("metric"), f"{what}: unknown metric {metric_name!r}")
        ok = False
    conds = [k for k in d if k in _CONDITIONS]
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


_ALERT_TRIGGER_KEYS = {"alert", "match", "host_label", "action", "description"}
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
        elif key not in _ALERT_TRIGGER_KEYS and key not in _CONDITIONS:
            hint = _closest(key, _ALERT_TRIGGER_KEYS)
            c.add(d.line_of(key), f"unknown key {key!r} in {what}"
                  + (f" (did you mean {hint!r}?)" if hint else ""))
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
    from orchestrator.core.model import AlertmanagerConfig, is_loopback_host, split_listen

    if "alertmanager" in top:
        d = c.mapping(top["alertmanager"], top.line_of("alertmanager"), "alertmanager")
        if d is not None:
            c.unknown_keys(d, {"listen", "token_env", "url"}, "alertmanager")
            listen = c.string(d, "listen", "alertmanager")
            token_env = c.string(d, "token_env", "alertmanager")
            url = c.string(d, "url", "alertmanager")
            if listen:
                try:
                    host, port = split_listen(listen)
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
        c.unknown_keys(d, {"url", "events"}, "notify entry")
        url = c.string(d, "url", "notify entry", required=True)
        events = d.get("events", sorted(NOTIFY_EVENTS))
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
        c.unknown_keys(d, {"keepalive", "keepalive_count", "connect_timeout"}, "ssh")
        project.ssh = replace(
            ssh, keepalive=seconds(d, "keepalive", "ssh", ssh.keepalive, 1.0),
            keepalive_count=whole(d, "keepalive_count", "ssh", ssh.keepalive_count, 1),
            connect_timeout=seconds(d, "connect_timeout", "ssh", ssh.connect_timeout, 1.0))
    dflt = project.defaults
    if "defaults" in top and c.mapping(top["defaults"], top.line_of("defaults"),
                                       "defaults") is not None:
        d = top["defaults"]
        c.unknown_keys(d, {"step_timeout", "undo_retries", "undo_retry_delay"}, "defaults")
        project.defaults = replace(
            dflt, step_timeout=seconds(d, "step_timeout", "defaults",
                                       dflt.step_timeout or 1800.0, 1.0),
            undo_retries=whole(d, "undo_retries", "defaults", dflt.undo_retries, 0),
            undo_retry_delay=seconds(d, "undo_retry_delay", "defaults",
                                     dflt.undo_retry_delay, 0.0))


def _load_phases(project: Project, problems: list[Problem]) -> None:
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
        phase = _load_phase(project, c, path, number, requires_refs)
        if phase is not None:
            project.phases[number] = phase
    for c, line, required in requires_refs:
        if required not in project.phases:
            c.add(line, f"requires phase {required}, which does not exist")


def _load_phase(project: Project, c: _Checker, path: Path, number: int,
                requires_refs: list[tuple[_Checker, int, int]]) -> Phase | None:
    try:
        data = load_yaml(path, c.file)
    except YamlLoadError as exc:
        c.problems.append(exc.problem)
        return None
    d = c.mapping(data, 1, "phase file")
    if d is None:
        return None
    c.unknown_keys(d, _PHASE_KEYS, "phase")
    declared = d.get("phase")
    if declared != number:
        c.add(d.line_of("phase"), f"phase: {declared!r} does not match the file name's {number}")
    requires: list[int] = []
    observed: dict[int, float] = {}
    for item, line in c.names(d, "requires", "phase"):
        if isinstance(item, YDict):  # {phase: 2, observed: 24h}
            c.unknown_keys(item, {"phase", "observed"}, "requires")
            seconds = c.duration(item, "observed", None)
            item_phase = item.get("phase")
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
            if item not in project.triggers:
                c.add(line, f"unknown trigger {item!r}")
            else:
                triggers.append(item)
    else:
        triggers = list(project.triggers)
    preconditions: list[str] = []
    for item, line in c.names(d, "preconditions", "phase"):
        metric = project.metrics.get(item) if isinstance(item, str) else None
        if metric is None:
            c.add(line, f"precondition: unknown metric {item!r}")
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
        step = _load_step(project, c, raw, raw_steps.line_of(i))
        if step is None:
            continue
        if step.id in seen:
            c.add(step.line, f"duplicate step id {step.id!r} (first at line {seen[step.id]})")
            continue
        seen[step.id] = step.line
        steps.append(step)
    name = c.string(d, "name", "phase") or path.stem
    return Phase(number=number, name=name, path=path, requires=tuple(requires),
                 triggers=tuple(triggers), bake=bake, preconditions=tuple(preconditions),
                 steps=tuple(steps), serial=int(serial),
                 waves=tuple(w for w in waves if w is not None),
                 max_failed=max_failed if max_failed is not None else 0, on_fire=on_fire,
                 observed=observed)


def _share(c: _Checker, value: Any, line: int, key: str) -> int | str | None:
    """A count of hosts (`3`) or a share of them (`10%`), as `waves:` and `max_failed:` take."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _SHARE.match(value.strip()) \
            and float(value.strip()[:-1]) <= 100:
        return value.strip()
    c.add(line, f"{key}: {value!r} is not a count of hosts or a share like 10%")
    return None


def _check_playbook(project: Project, c: _Checker, d: YDict, key: str, rel: str) -> None:
    target = (project.root / rel).resolve()
    if not target.is_file():
        c.add(d.line_of(key), f"{key}: playbook {rel} does not exist")


def _load_step(project: Project, c: _Checker, raw: Any, line: int) -> Step | None:
    d = c.mapping(raw, line, "step")
    if d is None:
        return None
    sid = d.get("id")
    what = f"step {sid!r}" if isinstance(sid, str) else "step"
    c.unknown_keys(d, _STEP_KEYS | _ACTIONS, what)
    if not isinstance(sid, str) or not _STEP_ID.match(sid):
        c.add(d.line_of("id") if "id" in d else d.line,
              f"{what} needs an id of letters, digits, '-', '_' or '.'")
        return None
    actions = [k for k in d if k in _ACTIONS]
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
            c.add(d.line_of("check"), f"{what}: check names unknown metric {target!r}")
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
    name = d.get("name") if isinstance(d.get("name"), str) else sid
    return Step(id=sid, name=str(name), action=action,
                target=str(target), undo=undo, timeout=timeout, retries=retries, hosts=hosts,
                line=d.line, wait_seconds=wait_seconds, capture_seconds=capture_seconds)


def validate_step_hosts(project: Project, inventory: Inventory) -> list[Problem]:
    """Steps' `hosts:` must name inventory hosts or groups."""
    problems: list[Problem] = []
    for phase in project.phases.values():
        rel = _rel(project.root, phase.path)
        for step in phase.steps:
            for name in step.hosts or ():
                if name not in inventory.hosts and name not in inventory.groups:
                    problems.append(Problem(rel, step.line, f"step {step.id!r}: hosts names "
                                            f"{name!r}, not in the inventory"))
    return problems


def checked_project(root: Path, inventory_override: Path | None = None,
                    extra: Callable[[Project, Inventory], list[Problem]] | None = None,
                    ) -> tuple[Project, Inventory]:
    """load_project plus the checks that need project and inventory together."""
    project, inventory = load_project(root, inventory_override)
    problems = validate_step_hosts(project, inventory)
    if extra is not None:
        problems += extra(project, inventory)
    if problems:
        raise ConfigError(problems)
    return project, inventory
