"""Rehearsal scenarios are project content: `rehearsals/<name>.yaml`, read and checked here.

The tool knows how to run a drill; *which* drills a migration needs (which host gets
which fault, and what must be true afterwards) belongs to the migration project,
next to its phases and inventory. So no host name, port or scenario name lives in
this package: a scenario file says all of it, and `load_scenarios` turns the files
into `Scenario` objects, or raises one `ConfigError` listing every problem as
`FILE:LINE: message` (exit 2), like the rest of the project's files.

A scenario file (`description` and `expect` are required; the names below are an
example's, not the tool's)::

    description: the agent on web1 uses 30% more memory once release 2 deploys
    default: true                  # the scenario `migrate rehearse` runs without --scenario
    inventory: inventory/sandbox.yml
    hosts: [web1, db]              # hosts or groups the phases run on (default: all)
    phases: [1, 2, 3]              # in order; the drill stops at the first that does not complete
    waves: [1, 50%, 100%]          # passed to every phase run (default: the phase file's)
    max_failed: 0
    time_scale: 0.05               # durations only; thresholds never change
    requires_services: [prometheus, alertmanager]
    inject:                        # faults files the stand-ins re-read on every request
      - host: web1
        faults: {memory_leak: {from_revision: r2, pct: 30}}
        when: {event: step_succeeded, phase: 1, step: backup}   # default: before provisioning
    expect:
      exit_code: 1                 # of the last phase run (4 when a phase refused)
      phase_states: {completed: {1: [web1, db]}, rolled_back: {2: [web1]}, pending: {}}
      fired: memory_growth         # or {trigger: NAME, host: HOST}, or a list of those
      events: [{kind: wave_started, payload: {wave: 3}, count: 0}]
      revision: {web1: r1}         # what the running agent's health endpoint reports
      ports: {db: {peer_port: false}}   # inventory variable naming the port -> answers?
      needs_human: deploy-r2       # true/false, or text one of the run's needs-human lines holds
      files_exist: {web1: [backups/original/manifest.json]}   # under the host's sandbox_dir
      files_absent: {web1: [test-instance]}

Host names in `inject` and `expect` may name inventory groups; they are checked
against the inventory when the drill starts (`Scenario.check_against`), with the
line of the scenario file that names them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator._exceptions import ConfigError, Problem
from orchestrator.config.inventory import Inventory
from orchestrator.config.schema import FileChecker, Key, Schema
from orchestrator.config.yamlsource import YamlLoadError, YDict, YList, load_yaml
from orchestrator.core.events import EventKind
from orchestrator.core.states import PhaseState

SCENARIO_DIR = "rehearsals"
DEFAULT_INVENTORY = "inventory/sandbox.yml"
#: durations (`for`, `bake`, `wait`, poll) of a drill are this share of the real ones: short
#: enough for a drill in a minute or two, long enough that a `for:` of minutes still
#: outlasts an agent restart by Ansible on a busy two-core machine (5m -> 15s)
DEFAULT_TIME_SCALE = 1 / 20
DEFAULT_HEALTH_URL = "http://{{ vars.ansible_host }}:{{ vars.health_port }}/health"

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")

# --- the keys of each mapping (config/schema.py checks them; docs/reference.md lists them) --
SCENARIO_KEYS = Schema({
    "description": Key(doc="one line: the fault injected (required)"),
    "default": Key(doc="true: the scenario `migrate rehearse` runs without --scenario"),
    "inventory": Key(doc="the sandbox inventory (default inventory/sandbox.yml)"),
    "hosts": Key(doc="hosts or groups the phases run on (default: all)"),
    "phases": Key(doc="the phases run, in order (default: all)"),
    "waves": Key(doc="passed to every phase run"),
    "max_failed": Key(doc="passed to every phase run"),
    "time_scale": Key(doc="durations are this share of the real ones (default 0.05)"),
    "requires_services": Key(doc="servers the drill needs on this machine"),
    "inject": Key(doc="[{host, faults, when}]: faults the stand-ins read"),
    "expect": Key(doc="what the drill must leave behind (required: exit_code)"),
    "health_url": Key(doc="the stand-in's health URL (a template)"),
})
INJECT_KEYS = Schema({"host": Key(doc="the host (or group) given the fault"),
                      "faults": Key(doc="the stand-in's faults file"),
                      "when": Key(doc="{event, phase, step, payload}: when to inject")})
WHEN_KEYS = Schema({"event": Key(doc="a journal event kind"), "phase": Key(doc="its phase"),
                    "step": Key(doc="its step"), "payload": Key(doc="its payload fields")})
EXPECT_KEYS = Schema({
    "exit_code": Key(doc="of the last phase run (required)"),
    "phase_states": Key(doc="{STATE: {PHASE: [hosts]}}"),
    "fired": Key(doc="a trigger name, {trigger, host}, or a list of those"),
    "events": Key(doc="[{kind, host, phase, step, payload, count}]"),
    "revision": Key(doc="{host: revision}: what the agent's health endpoint reports"),
    "ports": Key(doc="{host: {port variable: answers?}}"),
    "needs_human": Key(doc="true/false, or text a needs-human line holds"),
    "files_exist": Key(doc="{host: [paths under its sandbox_dir]}"),
    "files_absent": Key(doc="{host: [paths under its sandbox_dir]}"),
})
EVENT_KEYS = Schema({"kind": Key(doc="a journal event kind"), "host": Key(doc="its host"),
                     "phase": Key(doc="its phase"), "step": Key(doc="its step"),
                     "payload": Key(doc="its payload fields"),
                     "count": Key(doc="exactly this many (default: at least one)")})
FIRED_KEYS = Schema({"trigger": Key(doc="the trigger"), "host": Key(doc="where it fired")})


@dataclass(frozen=True)
class Service:
    """A server a scenario needs on this machine, and the Debian package that brings it."""

    binaries: tuple[str, ...]
    package: str


#: services a scenario may require; the drill refuses, naming the packages, when missing
SERVICES: dict[str, Service] = {
    "prometheus": Service(("prometheus",), "prometheus"),
    "alertmanager": Service(("prometheus-alertmanager", "alertmanager"),
                            "prometheus-alertmanager"),
}


@dataclass(frozen=True)
class Named:
    """A host or group name from a scenario file, with its line for error messages."""

    name: str
    line: int


@dataclass(frozen=True)
class When:
    """Inject a fault when the run journals a matching event (not before provisioning).

    Timing by journal events rather than by wall time keeps a drill deterministic on a
    slow machine: "after phase 1's backup succeeded on this host" means the same thing
    whatever the load.
    """

    event: str
    phase: int | None = None
    step: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Injection:
    host: Named
    faults: dict[str, Any]  # the stand-in's faults file, as JSON
    when: When | None = None


@dataclass(frozen=True)
class EventExpect:
    """Events of a kind (matching host/phase/step/payload) the drill must have journaled:
    exactly `count`, or at least one when `count` is None."""

    kind: str
    line: int
    host: Named | None = None
    phase: int | None = None
    step: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    count: int | None = None

    def describe(self) -> str:
        what = [self.kind] + [f"{k}={v}" for k, v in (
            ("host", self.host.name if self.host else None), ("phase", self.phase),
            ("step", self.step)) if v is not None]
        what += [f"{k}={v}" for k, v in sorted(self.payload.items())]
        times = "at least once" if self.count is None else f"{self.count} time(s)"
        return f"event {' '.join(what)} {times}"


@dataclass(frozen=True)
class Expect:
    """What the drill must leave behind, checked from the sandbox's real state."""

    exit_code: int
    phase_states: dict[str, dict[int, tuple[Named, ...]]] = field(default_factory=dict)
    events: tuple[EventExpect, ...] = ()
    revision: dict[Named, str] = field(default_factory=dict)
    ports: dict[Named, dict[str, bool]] = field(default_factory=dict)
    needs_human: bool | str | None = None
    files_exist: dict[Named, tuple[str, ...]] = field(default_factory=dict)
    files_absent: dict[Named, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    display: str  # the path as error messages show it: rehearsals/<name>.yaml
    description: str
    expect: Expect
    default: bool = False
    default_line: int = 0
    inventory: str = DEFAULT_INVENTORY
    hosts: tuple[Named, ...] = ()
    phases: tuple[int, ...] = ()  # empty: every phase of the project, in order
    phases_line: int = 0
    waves: tuple[int | str, ...] | None = None
    max_failed: int | str | None = None
    time_scale: float = DEFAULT_TIME_SCALE
    requires_services: tuple[str, ...] = ()
    inject: tuple[Injection, ...] = ()
    health_url: str = DEFAULT_HEALTH_URL

    @property
    def fault(self) -> str:
        """One line for `rehearse --list` and the report: what goes wrong in this drill."""
        return self.description

    def named_hosts(self) -> list[Named]:
        """Every host or group the file names, to check against the inventory."""
        e = self.expect
        out = list(self.hosts) + [i.host for i in self.inject]
        out += [n for by_phase in e.phase_states.values() for names in by_phase.values()
                for n in names]
        out += [ev.host for ev in e.events if ev.host is not None]
        out += list(e.revision) + list(e.ports) + list(e.files_exist) + list(e.files_absent)
        return out

    def check_against(self, inventory: Inventory, phases: set[int]) -> None:
        """Raise ConfigError (FILE:LINE) when the file names hosts or phases that the
        inventory or project the drill runs on do not have."""
        problems = []
        for n in self.named_hosts():
            if n.name not in inventory.hosts and n.name not in inventory.groups:
                problems.append(Problem(self.display, n.line,
                                        f"{n.name!r} is no host or group of {inventory.path}"))
        wanted = set(self.phases) | {p for by_phase in self.expect.phase_states.values()
                                     for p in by_phase}
        for number in sorted(wanted - phases):
            problems.append(Problem(self.display, self.phases_line,
                                    f"phase {number} is not a phase of the project "
                                    f"(phases: {', '.join(map(str, sorted(phases)))})"))
        if problems:
            raise ConfigError(problems)

    def missing_services(self) -> list[str]:
        """Packages to install before this scenario can run (empty when none are missing)."""
        import shutil

        missing = []
        for name in self.requires_services:
            service = SERVICES[name]
            if not any(shutil.which(b) for b in service.binaries):
                missing.append(service.package)
        return missing


def scenario_files(project_root: Path) -> list[Path]:
    return sorted((project_root / SCENARIO_DIR).glob("*.yaml"))


def load_scenarios(project_root: Path) -> dict[str, Scenario]:
    """Every `rehearsals/*.yaml` of the project, by name (the file's stem), sorted by name.

    Raises one ConfigError listing every problem of every file, so that a broken
    scenario is found by `rehearse --list`, not halfway into another drill.
    """
    problems: list[Problem] = []
    out: dict[str, Scenario] = {}
    for path in scenario_files(project_root):
        scenario = _load_file(project_root, path, problems)
        if scenario is not None:
            out[scenario.name] = scenario
    defaults = [s for s in out.values() if s.default]
    for extra in defaults[1:]:
        problems.append(Problem(extra.display, extra.default_line, f"default: true here and in "
                                f"{defaults[0].display}; only one scenario may be the default"))
    if problems:
        raise ConfigError(problems)
    return out


def default_scenario(scenarios: dict[str, Scenario]) -> str | None:
    """The scenario marked `default: true`, else the only one, else None."""
    for name, s in scenarios.items():
        if s.default:
            return name
    return next(iter(scenarios)) if len(scenarios) == 1 else None


# --- reading one file ----------------------------------------------------------------------
class _Reader(FileChecker):
    """Collects problems for one file (config/schema.py's checker, with the scenario's
    wording); each helper returns None after reporting one."""

    def __init__(self, display: str, problems: list[Problem]) -> None:
        super().__init__(display, problems)
        self.display = display

    def string(self, d: YDict, key: str, what: str,
               required: bool = False) -> str | None:
        value = d.get(key)
        if not isinstance(value, str) or not value.strip():
            self.add(d.line_of(key), f"{what}: {key} must be a non-empty string")
            return None
        return value.strip()

    def integer(self, value: Any, line: int, what: str, minimum: int = 0) -> int | None:
        return self.whole(value, line, what, minimum)

    def host_names(self, value: Any, line: int, what: str) -> tuple[Named, ...] | None:
        if isinstance(value, str):
            return (Named(value, line),)
        if not isinstance(value, YList) or not value:
            self.add(line, f"{what} must be a host or group name or a non-empty list of them")
            return None
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                self.add(value.line_of(i), f"{what}: {item!r} is not a host or group name")
                continue
            out.append(Named(item, value.line_of(i)))
        return tuple(out)

    def host_map(self, value: Any, line: int, what: str) -> dict[Named, Any] | None:
        d = self.mapping(value, line, what)
        if d is None:
            return None
        return {Named(str(k), d.line_of(k)): v for k, v in d.items()}


def _load_file(root: Path, path: Path, problems: list[Problem]) -> Scenario | None:
    display = f"{SCENARIO_DIR}/{path.name}"
    r = _Reader(display, problems)
    name = path.stem
    if not _NAME.match(name):
        r.add(0, f"scenario name {name!r} (the file name) must be lower-case letters, "
              "digits, '-', '_' or '.'")
        return None
    try:
        data = load_yaml(path, display)
    except YamlLoadError as exc:
        problems.append(exc.problem)
        return None
    top = r.mapping(data, 1, "scenario")
    if top is None:
        return None
    before = len(problems)
    r.unknown_keys(top, SCENARIO_KEYS.names(), "scenario")
    description = r.string(top, "description", "scenario") if "description" in top else None
    if "description" not in top:
        r.add(top.line, "scenario: description is required (one line: the fault injected)")
    default = top.get("default", False)
    if not isinstance(default, bool):
        r.add(top.line_of("default"), f"default must be true or false, not {default!r}")
    inventory = DEFAULT_INVENTORY
    if "inventory" in top:
        inventory = r.string(top, "inventory", "scenario") or DEFAULT_INVENTORY
        if not (root / inventory).is_file():
            r.add(top.line_of("inventory"), f"inventory {inventory} does not exist")
    hosts: tuple[Named, ...] = ()
    if "hosts" in top:
        hosts = r.host_names(top["hosts"], top.line_of("hosts"), "hosts") or ()
    phases = _phases(r, top)
    waves = _waves(r, top)
    max_failed = (r.share(top["max_failed"], top.line_of("max_failed"), "max_failed", "50%")
                  if "max_failed" in top else None)
    time_scale = DEFAULT_TIME_SCALE
    if "time_scale" in top:
        ts = top["time_scale"]
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not 0 < ts <= 1:
            r.add(top.line_of("time_scale"), f"time_scale must be a number in (0, 1], "
                  f"not {ts!r}")
        else:
            time_scale = float(ts)
    services = _services(r, top)
    inject = _inject(r, top)
    health_url = DEFAULT_HEALTH_URL
    if "health_url" in top:
        health_url = r.string(top, "health_url", "scenario") or DEFAULT_HEALTH_URL
    expect = _expect(r, top)
    if expect is None or len(problems) > before:
        return None
    return Scenario(name=name, path=path, display=display, description=description or "",
                    expect=expect, default=bool(default), default_line=top.line_of("default"),
                    inventory=inventory, hosts=hosts,
                    phases=phases, phases_line=top.line_of("phases"), waves=waves,
                    max_failed=max_failed, time_scale=time_scale, requires_services=services,
                    inject=inject, health_url=health_url)


def _phases(r: _Reader, top: YDict) -> tuple[int, ...]:
    if "phases" not in top:
        return ()
    value, line = top["phases"], top.line_of("phases")
    if not isinstance(value, YList) or not value:
        r.add(line, "phases must be a non-empty list of phase numbers")
        return ()
    out = []
    for i, item in enumerate(value):
        n = r.integer(item, value.line_of(i), "phases: each item", minimum=1)
        if n is not None:
            if n in out:
                r.add(value.line_of(i), f"phases: phase {n} listed twice")
            out.append(n)
    return tuple(out)


def _waves(r: _Reader, top: YDict) -> tuple[int | str, ...] | None:
    if "waves" not in top:
        return None
    value, line = top["waves"], top.line_of("waves")
    if not isinstance(value, YList) or not value:
        r.add(line, "waves must be a non-empty list like [1, 50%, 100%]")
        return None
    out: list[int | str] = []
    for i, item in enumerate(value):
        wave = r.share(item, value.line_of(i), "waves", "50%")
        if wave in (0, "0%"):
            r.add(value.line_of(i), "waves: a wave of 0 hosts is not a wave")
        elif wave is not None:
            out.append(wave)
    return tuple(out) if len(out) == len(value) else None


def _services(r: _Reader, top: YDict) -> tuple[str, ...]:
    if "requires_services" not in top:
        return ()
    value, line = top["requires_services"], top.line_of("requires_services")
    if not isinstance(value, YList):
        r.add(line, "requires_services must be a list, e.g. [prometheus, alertmanager]")
        return ()
    out = []
    for i, item in enumerate(value):
        if item not in SERVICES:
            r.add(value.line_of(i), f"requires_services: unknown service {item!r} "
                  f"(known: {', '.join(sorted(SERVICES))})")
        else:
            out.append(str(item))
    return tuple(out)


def _inject(r: _Reader, top: YDict) -> tuple[Injection, ...]:
    if "inject" not in top:
        return ()
    value, line = top["inject"], top.line_of("inject")
    if not isinstance(value, YList):
        r.add(line, "inject must be a list of {host, faults, when}")
        return ()
    out = []
    for i, raw in enumerate(value):
        d = r.mapping(raw, value.line_of(i), "inject: each item")
        if d is None:
            continue
        r.unknown_keys(d, INJECT_KEYS.names(), "inject")
        host = r.string(d, "host", "inject")
        faults = d.get("faults")
        if not isinstance(faults, dict) or not faults:
            r.add(d.line_of("faults"), "inject: faults must be a non-empty mapping (the "
                  "stand-in's faults file)")
            continue
        when = _when(r, d["when"], d.line_of("when")) if "when" in d else None
        if host is None or ("when" in d and when is None):
            continue
        out.append(Injection(Named(host, d.line_of("host")), _plain(faults), when))
    return tuple(out)


def _event_kind(r: _Reader, d: YDict, key: str, what: str) -> str | None:
    kind = d.get(key)
    known = {k.value for k in EventKind}
    if kind not in known:
        r.add(d.line_of(key), f"{what}: {key} must be a journal event kind such as "
              f"step_succeeded, wave_started, trigger_fired; not {kind!r}")
        return None
    return str(kind)


def _when(r: _Reader, raw: Any, line: int) -> When | None:
    d = r.mapping(raw, line, "inject: when")
    if d is None:
        return None
    r.unknown_keys(d, WHEN_KEYS.names(), "inject: when")
    event = _event_kind(r, d, "event", "inject: when")
    phase = (r.integer(d["phase"], d.line_of("phase"), "when: phase", 1)
             if "phase" in d else None)
    step = r.string(d, "step", "inject: when") if "step" in d else None
    payload = d.get("payload", {})
    if not isinstance(payload, dict):
        r.add(d.line_of("payload"), "inject: when: payload must be a mapping")
        return None
    if event is None:
        return None
    return When(event, phase, step, _plain(payload))


def _expect(r: _Reader, top: YDict) -> Expect | None:
    if "expect" not in top:
        r.add(top.line, "scenario: expect is required (at least exit_code)")
        return None
    d = r.mapping(top["expect"], top.line_of("expect"), "expect")
    if d is None:
        return None
    r.unknown_keys(d, EXPECT_KEYS.names(), "expect")
    if "exit_code" not in d:
        r.add(d.line, "expect: exit_code is required")
        return None
    exit_code = r.integer(d["exit_code"], d.line_of("exit_code"), "expect: exit_code")
    states: dict[str, dict[int, tuple[Named, ...]]] = {}
    if "phase_states" in d:
        states = _phase_states(r, d["phase_states"], d.line_of("phase_states"))
    events = _fired(r, d) + _events(r, d)
    revision: dict[Named, str] = {}
    for host, rev in (_host_map(r, d, "revision") or {}).items():
        if not isinstance(rev, str):
            r.add(host.line, f"expect: revision of {host.name} must be a string")
            continue
        revision[host] = rev
    ports: dict[Named, dict[str, bool]] = {}
    for host, body in (_host_map(r, d, "ports") or {}).items():
        pd = r.mapping(body, host.line, f"expect: ports of {host.name}")
        if pd is None:
            continue
        for var, is_open in pd.items():
            if not isinstance(is_open, bool):
                r.add(pd.line_of(var), f"expect: ports: {var} must be true (answers) or "
                      "false (cut off)")
        ports[host] = {str(k): bool(v) for k, v in pd.items()}
    needs_human = d.get("needs_human")
    if needs_human is not None and not isinstance(needs_human, bool | str):
        r.add(d.line_of("needs_human"), "expect: needs_human must be true/false or the text "
              "(a step id) one of the run's needs-human lines holds")
    files = {key: _files(r, d, key) for key in ("files_exist", "files_absent")}
    if exit_code is None:
        return None
    return Expect(exit_code=exit_code, phase_states=states, events=tuple(events),
                  revision=revision, ports=ports, needs_human=needs_human,
                  files_exist=files["files_exist"], files_absent=files["files_absent"])


def _host_map(r: _Reader, d: YDict, key: str) -> dict[Named, Any] | None:
    if key not in d:
        return None
    return r.host_map(d[key], d.line_of(key), f"expect: {key}")


def _phase_states(r: _Reader, raw: Any, line: int) -> dict[str, dict[int, tuple[Named, ...]]]:
    d = r.mapping(raw, line, "expect: phase_states")
    if d is None:
        return {}
    known = {s.value for s in PhaseState}
    out: dict[str, dict[int, tuple[Named, ...]]] = {}
    for state, body in d.items():
        if state not in known:
            r.add(d.line_of(state), f"expect: phase_states: {state!r} is not a phase state "
                  f"({', '.join(sorted(known))})")
            continue
        by_phase = r.mapping(body, d.line_of(state), f"expect: phase_states: {state}")
        if by_phase is None:
            continue
        out[state] = {}
        for phase, names in by_phase.items():
            try:
                number = int(phase)
            except ValueError:
                r.add(by_phase.line_of(phase), f"expect: phase_states: {state}: {phase!r} is "
                      "not a phase number")
                continue
            got = r.host_names(names, by_phase.line_of(phase), f"expect: phase_states: {state}: "
                          f"{number}")
            if got:
                out[state][number] = got
    return out


def _fired(r: _Reader, d: YDict) -> list[EventExpect]:
    """`fired:` is shorthand for a `trigger_fired` event whose payload names the trigger."""
    if "fired" not in d:
        return []
    raw, line = d["fired"], d.line_of("fired")
    items = list(enumerate(raw)) if isinstance(raw, YList) else [(None, raw)]
    out = []
    for i, item in items:
        iline = raw.line_of(i) if isinstance(raw, YList) and i is not None else line
        if isinstance(item, str) and item:
            out.append(EventExpect(EventKind.TRIGGER_FIRED.value, iline,
                                   payload={"trigger": item}))
            continue
        fd = r.mapping(item, iline, "expect: fired (a trigger name or {trigger, host})")
        if fd is None:
            continue
        r.unknown_keys(fd, FIRED_KEYS.names(), "expect: fired")
        trigger = r.string(fd, "trigger", "expect: fired")
        host = r.string(fd, "host", "expect: fired") if "host" in fd else None
        if trigger:
            out.append(EventExpect(EventKind.TRIGGER_FIRED.value, iline,
                                   host=Named(host, fd.line_of("host")) if host else None,
                                   payload={"trigger": trigger}))
    return out


def _events(r: _Reader, d: YDict) -> list[EventExpect]:
    if "events" not in d:
        return []
    raw, line = d["events"], d.line_of("events")
    if not isinstance(raw, YList):
        r.add(line, "expect: events must be a list of {kind, host, phase, step, payload, "
              "count}")
        return []
    out = []
    for i, item in enumerate(raw):
        ed = r.mapping(item, raw.line_of(i), "expect: events: each item")
        if ed is None:
            continue
        r.unknown_keys(ed, EVENT_KEYS.names(), "expect: events")
        kind = _event_kind(r, ed, "kind", "expect: events")
        host = r.string(ed, "host", "expect: events") if "host" in ed else None
        phase = (r.integer(ed["phase"], ed.line_of("phase"), "expect: events: phase", 1)
                 if "phase" in ed else None)
        step = r.string(ed, "step", "expect: events") if "step" in ed else None
        count = (r.integer(ed["count"], ed.line_of("count"), "expect: events: count")
                 if "count" in ed else None)
        payload = ed.get("payload", {})
        if not isinstance(payload, dict):
            r.add(ed.line_of("payload"), "expect: events: payload must be a mapping")
            continue
        if kind is not None:
            out.append(EventExpect(kind, raw.line_of(i),
                                   Named(host, ed.line_of("host")) if host else None,
                                   phase, step, _plain(payload), count))
    return out


def _files(r: _Reader, d: YDict, key: str) -> dict[Named, tuple[str, ...]]:
    out: dict[Named, tuple[str, ...]] = {}
    for host, paths in (_host_map(r, d, key) or {}).items():
        items = [paths] if isinstance(paths, str) else paths
        if not isinstance(items, list) or not all(isinstance(p, str) and p for p in items):
            r.add(host.line, f"expect: {key}: {host.name} must map to a list of paths")
            continue
        bad = [p for p in items if Path(p).is_absolute() or ".." in Path(p).parts]
        if bad:
            r.add(host.line, f"expect: {key}: {bad[0]!r} must be a path inside the host's "
                  "sandbox directory (relative, no '..')")
            continue
        out[host] = tuple(items)
    return out


def _plain(value: Any) -> Any:
    """YDict/YList -> dict/list, so that values compare and serialise as plain JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
