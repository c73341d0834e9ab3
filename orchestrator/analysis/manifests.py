"""The system's service manifests: which agent runs on which machine, on which ports,
needing which other agents (spec section 6, "The program graph").

A program of many agents is planned from what the system itself declares. Three shapes
are read, because that is what real systems write:

- startup-config map: ``agent_groups: {GROUP: {NAME: {script_path, port,
  health_check_port, dependencies}}}``;
- startup-config list: ``<anything>_services: [{name, script_path, host, port,
  health_check_port, dependencies}]``;
- docker-compose: ``services: {NAME: {command, ports, depends_on, healthcheck}}``.

Each file is one machine (or group of agents). Its name is, in this order, the NAME of
``--services NAME=FILE``, the file's ``machine:`` key, the middle of a file name
``*.NAME.yaml``, or its directory's name. An agent declared on two machines is one
agent with both machines. Ports may be written ``"${PORT_OFFSET}+7200"``.

A file that does not parse, an entry that is not an agent, an agent that lists itself
as a dependency, or a ``machine:`` that is not a name, is a ConfigError with FILE:LINE
(exit 2). A dependency on a name no manifest declares is not an error: it is
collected in ``SystemManifest.unknown`` so the output can name it.

The YAML is loaded with its own small line-keeping loader: the config floor's
``yamlsource`` sits beside this one, not below it.
"""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from orchestrator._exceptions import ConfigError, Problem
from orchestrator.config.yamlsource import YDict, YList, add_line_constructors
from orchestrator.core.components import strongly_connected


class HealthCheck(enum.Enum):
    """How an agent's health is probed: a TCP connect to its health_check_port, or an
    HTTP GET where the manifest says so."""

    TCP = "tcp"
    HTTP = "http"


@dataclass(frozen=True)
class Declared:
    """Where a manifest declares something: the file as given and the line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class ServiceSpec:
    """One agent of the system as its manifests declare it (merged over machines)."""

    name: str
    machines: tuple[str, ...]
    script: str | None  # script_path as written (relative to the system's root), if any
    port: int | None
    health_check_port: int | None
    dependencies: tuple[str, ...]  # as declared, in order, known and unknown names alike
    health: HealthCheck = HealthCheck.TCP
    health_path: str | None = None  # the URL path of an HTTP health check
    host: str | None = None
    declared_at: tuple[Declared, ...] = ()  # one per manifest that declares it


@dataclass(frozen=True)
class UnknownDependency:
    """A dependency on a name that no manifest declares: named in the output, not fatal."""

    agent: str
    name: str
    file: str
    line: int


@dataclass(frozen=True)
class ManifestSource:
    """One ``--services [NAME=]FILE``."""

    path: Path
    machine: str | None = None


@dataclass(frozen=True)
class SystemManifest:
    """Every agent of the system by name, with the declared dependency edges."""

    agents: Mapping[str, ServiceSpec]
    machines: tuple[str, ...]
    unknown: tuple[UnknownDependency, ...] = ()
    _dependents: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False,
                                                       compare=False)

    def __post_init__(self) -> None:
        dependents: dict[str, list[str]] = {name: [] for name in self.agents}
        for spec in self.agents.values():
            for dep in self.dependencies_of(spec.name):
                if spec.name not in dependents[dep]:
                    dependents[dep].append(spec.name)
        object.__setattr__(self, "_dependents", MappingProxyType(
            {name: tuple(found) for name, found in dependents.items()}))

    def dependencies_of(self, name: str) -> tuple[str, ...]:
        """The declared agents NAME needs (unknown names left out), each once."""
        spec = self.agents[name]
        return tuple(dict.fromkeys(d for d in spec.dependencies
                                   if d in self.agents and d != name))

    def dependents_of(self, name: str) -> tuple[str, ...]:
        """The agents that declare they need NAME (its blast radius, one hop)."""
        if name not in self.agents:
            raise KeyError(name)
        return self._dependents[name]

    def edges(self) -> list[tuple[str, str]]:
        """Every declared (needer, needed) pair between known agents, each once."""
        return [(name, dep) for name in self.agents for dep in self.dependencies_of(name)]

    def closest(self, name: str, n: int = 3) -> list[str]:
        """The agent names nearest NAME, for an error that helps ("did you mean")."""
        by_lower = {a.lower(): a for a in self.agents}
        found = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.5)
        return [by_lower[f] for f in found]


# --- the command line's --services NAME=FILE ----------------------------------------

_MACHINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def parse_services_option(text: str) -> ManifestSource:
    """``NAME=FILE`` or ``FILE``. A FILE that itself holds '=' is taken whole when it
    exists or when what precedes '=' is not a machine name."""
    name, sep, rest = text.partition("=")
    if sep and rest and _MACHINE_NAME.match(name) and not Path(text).exists():
        return ManifestSource(Path(rest), name)
    return ManifestSource(Path(text), None)


# --- YAML with lines -------------------------------------------------------------------

def _loader() -> Any:
    """A safe loader whose mappings and sequences know their lines (YDict, YList)."""
    import yaml

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        pass

    add_line_constructors(Loader)
    return Loader


def _load(path: Path, name: str) -> Any:
    import yaml

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(name, 0, f"cannot read the manifest: "
                                            f"{exc.strerror or exc}")]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError([Problem(name, line, "the manifest is not UTF-8")]) from exc
    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 - a safe loader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError([Problem(name, mark.line + 1 if mark else 0,
                                   f"the manifest does not parse: "
                                   f"{exc.problem or exc}")]) from exc
    except (yaml.YAMLError, ValueError, RecursionError, MemoryError) as exc:
        raise ConfigError([Problem(name, 0, f"the manifest does not parse: {exc}")]) from exc


# --- one file ------------------------------------------------------------------------

@dataclass
class _Entry:
    """One agent as one file declares it, before merging over machines."""

    name: str
    machine: str
    script: str | None
    port: int | None
    health_check_port: int | None
    dependencies: list[tuple[str, int]]  # (name, line)
    health: HealthCheck
    health_path: str | None
    host: str | None
    at: Declared


_PORT_EXPR = re.compile(
    r"^\s*(?:\$\{(?P<var>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>-?\d+))?\}\s*\+\s*)?"
    r"(?P<base>\d+)\s*$")


class _FileReader:
    """Reads one manifest file into entries, collecting every problem in it."""

    def __init__(self, name: str, machine: str, variables: Mapping[str, int]) -> None:
        self.name = name
        self.machine = machine
        self.variables = variables
        self.problems: list[Problem] = []
        self.entries: list[_Entry] = []

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.name, line, message))

    def read(self, doc: Any) -> None:
        if not isinstance(doc, YDict):
            self.problem(getattr(doc, "line", 1) or 1,
                         "not a service manifest: expected a mapping with agent_groups:, "
                         "<name>_services: or services:")
            return
        found = False
        for key, value in doc.items():
            line = doc.line_of(key)
            if key == "agent_groups":
                found = True
                self.read_groups(value, line)
            elif key == "services" and isinstance(value, YDict):
                found = True
                self.read_compose(value)
            elif key == "services" or key.endswith("_services"):
                found = True
                self.read_list(key, value, line)
        if not found:
            self.problem(doc.line or 1, "not a service manifest: no agent_groups:, "
                                        "<name>_services: or services: in it")

    # startup-config, map shape
    def read_groups(self, groups: Any, line: int) -> None:
        if not isinstance(groups, YDict):
            self.problem(line, "agent_groups: must map each group to its agents")
            return
        for group, agents in groups.items():
            if agents is None:
                continue
            if not isinstance(agents, YDict):
                self.problem(groups.line_of(group), f"agent group {group!r} is not an "
                             "agent map: expected NAME: {script_path, port, ...}")
                continue
            for name, entry in agents.items():
                self.read_entry(name, entry, agents.line_of(name))

    # startup-config, list shape
    def read_list(self, key: str, items: Any, line: int) -> None:
        if items is None:
            return
        if not isinstance(items, YList):
            self.problem(line, f"{key}: must be a list of agents ({{name, script_path, "
                               "port, ...}})")
            return
        for index, entry in enumerate(items):
            at = items.line_of(index)
            if not isinstance(entry, YDict):
                self.problem(at, f"entry of {key}: is not an agent: expected a mapping "
                                 "with name, script_path, port, dependencies")
                continue
            name = entry.get("name")
            if not isinstance(name, str) or not name.strip():
                self.problem(entry.line_of("name"), f"entry of {key}: is not an agent: "
                                                    "it has no name")
                continue
            self.read_entry(name, entry, at)

    def read_entry(self, name: str, entry: Any, line: int) -> None:
        if not isinstance(entry, YDict) or not (
                {"script_path", "port", "dependencies"} & set(entry)):
            self.problem(line, f"{name}: is not an agent: expected script_path, port, "
                               "health_check_port, dependencies")
            return
        script = entry.get("script_path")
        if script is not None and not isinstance(script, str):
            self.problem(entry.line_of("script_path"), f"{name}: script_path must be a path")
            script = None
        host = entry.get("host")
        health, path = self.health_of(entry)
        self.entries.append(_Entry(
            name=name, machine=self.machine, script=script or None,
            port=self.port(entry, "port", name),
            health_check_port=self.port(entry, "health_check_port", name),
            dependencies=self.names(entry, "dependencies", name),
            health=health, health_path=path,
            host=str(host) if host is not None else None,
            at=Declared(self.name, line)))

    def health_of(self, entry: YDict) -> tuple[HealthCheck, str | None]:
        """TCP unless the entry says HTTP: ``health_check: http``, ``health_check_type:
        http``, ``health_check_path: /health`` or ``health_check_url: http://...``."""
        kind: Any = entry.get("health_check", entry.get("health_check_type"))
        path: Any = entry.get("health_check_path")
        if isinstance(kind, YDict):
            kind, path = kind.get("type"), kind.get("path", path)
        url = entry.get("health_check_url")
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            kind = "http"
            path = path or "/" + url.split("://", 1)[1].partition("/")[2]
        if isinstance(kind, str) and kind.lower() not in ("http", "tcp"):
            self.problem(entry.line_of("health_check"),
                         f"health check {kind!r}: expected tcp or http")
        if path is not None or (isinstance(kind, str) and kind.lower() == "http"):
            return HealthCheck.HTTP, str(path) if path else "/health"
        return HealthCheck.TCP, None

    def port(self, entry: YDict, key: str, name: str) -> int | None:
        value = entry.get(key)
        if value is None:
            return None
        port = self.port_value(value)
        if port is None:
            self.problem(entry.line_of(key), f"{name}: {key} {value!r} is not a port "
                                             "(a number, or \"${PORT_OFFSET}+N\")")
        return port

    def port_value(self, value: Any) -> int | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value if 0 <= value <= 65535 else None
        match = _PORT_EXPR.match(str(value))
        if not match:
            return None
        offset = 0
        if match["var"]:
            if match["var"] in self.variables:
                offset = self.variables[match["var"]]
            elif match["default"] is not None:
                offset = int(match["default"])
        port = offset + int(match["base"])
        return port if 0 <= port <= 65535 else None

    def names(self, entry: YDict, key: str, name: str) -> list[tuple[str, int]]:
        """The agents NAME's KEY lists, each with its line. NAME listing itself is a problem
        at its line: an agent cannot wait for its own migration, so it is a slip for the
        agent meant, and dropping it would leave the program's order short of that edge
        with nothing said (compose refuses it too)."""
        found = self.listed(entry, key, name)
        for dep, line in found:
            if dep == name:
                self.problem(line, f"{name}: {key} lists {name} itself (an agent cannot "
                                   "depend on itself; which agent was meant?)")
        return [(dep, line) for dep, line in found if dep != name]

    def listed(self, entry: YDict, key: str, name: str) -> list[tuple[str, int]]:
        value = entry.get(key)
        if value is None:
            return []
        line = entry.line_of(key)
        if isinstance(value, str):
            return [(value, line)]
        if isinstance(value, YDict):  # compose's long form {NAME: {condition: ...}}
            return [(k, value.line_of(k)) for k in value]
        if not isinstance(value, YList):
            self.problem(line, f"{name}: {key} must be a list of agent names")
            return []
        out = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.problem(value.line_of(index),
                             f"{name}: {key} entry {item!r} is not an agent name")
                continue
            out.append((item, value.line_of(index)))
        return out

    # docker-compose
    def read_compose(self, services: YDict) -> None:
        for name, entry in services.items():
            line = services.line_of(name)
            if entry is None:
                entry = YDict()
                entry.line = line
            if not isinstance(entry, YDict):
                self.problem(line, f"service {name!r} is not an agent: expected a mapping "
                                   "(image, command, ports, depends_on)")
                continue
            ports = self.compose_ports(entry, name)
            health_port, health, path = self.compose_health(entry)
            if health_port is None and len(ports) > 1:
                health_port = ports[1]
            self.entries.append(_Entry(
                name=name, machine=self.machine, script=_script_of(entry.get("command")),
                port=ports[0] if ports else None, health_check_port=health_port,
                dependencies=self.names(entry, "depends_on", name), health=health,
                health_path=path, host=None, at=Declared(self.name, line)))

    def compose_ports(self, entry: YDict, name: str) -> list[int]:
        """The container side of each ``ports:`` item (what the agent binds)."""
        value = entry.get("ports")
        if value is None:
            return []
        if not isinstance(value, YList):
            self.problem(entry.line_of("ports"), f"{name}: ports must be a list")
            return []
        out = []
        for index, item in enumerate(value):
            if isinstance(item, YDict):
                item = item.get("target")
            text = str(item).split("/")[0].rsplit(":", 1)[-1]
            port = self.port_value(text.split("-")[0])
            if port is None:
                self.problem(value.line_of(index), f"{name}: port {item!r} is not a port")
                continue
            out.append(port)
        return out

    def compose_health(self, entry: YDict) -> tuple[int | None, HealthCheck,
                                                          str | None]:
        """From ``healthcheck: {test: ...}``: the port it probes and whether by HTTP."""
        check = entry.get("healthcheck")
        test = check.get("test") if isinstance(check, YDict) else None
        text = " ".join(map(str, test)) if isinstance(test, list) else str(test or "")
        url = re.search(r"https?://[^\s:/]+(?::(\d+))?(/\S*)?", text)
        if url:
            return (int(url[1]) if url[1] else None), HealthCheck.HTTP, url[2] or "/"
        port = re.search(r"(?:localhost|127\.0\.0\.1)[: ](\d+)", text)
        return (int(port[1]) if port else None), HealthCheck.TCP, None


def _script_of(command: Any) -> str | None:
    """The ``.py`` a compose service runs, from its command."""
    words = command if isinstance(command, list) else str(command or "").split()
    for word in map(str, words):
        if word.endswith(".py"):
            return word
    return None


def machine_of(source: ManifestSource, doc: Any) -> str:
    """``NAME=``, else the ``machine:`` key, else ``*.NAME.yaml``, else the directory."""
    if source.machine:
        return source.machine
    machine = doc.get("machine") if isinstance(doc, dict) else None
    if isinstance(machine, str | int) and not isinstance(machine, bool) and str(machine):
        return str(machine)
    parts = source.path.name.split(".")
    if len(parts) >= 3 and parts[-2]:
        return parts[-2]
    return source.path.resolve().parent.name or "local"


# --- the system ---------------------------------------------------------------------

def load_system(sources: Sequence[ManifestSource],
                variables: Mapping[str, int] | None = None) -> SystemManifest:
    """Read every manifest and merge them into one system.

    ``variables`` gives values for ``${NAME}`` in ports (``PORT_OFFSET`` defaults to 0).
    Every problem of every file is raised together, as one ConfigError.
    """
    values = {"PORT_OFFSET": 0, **(variables or {})}
    problems: list[Problem] = []
    entries: list[_Entry] = []
    for source in sources:
        name = str(source.path)
        try:
            doc = _load(source.path, name)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        reader = _FileReader(name, machine_of(source, doc), values)
        if isinstance(doc, YDict) and "machine" in doc:
            machine = doc["machine"]
            if isinstance(machine, bool) or not isinstance(machine, str | int) \
                    or str(machine) == "":
                reader.problem(doc.line_of("machine"), f"machine: {machine!r} is not a "
                               "machine name (a string such as `main`)")
        reader.read(doc)
        seen: dict[str, int] = {}
        for entry in reader.entries:
            if entry.name in seen:
                reader.problem(entry.at.line, f"{entry.name} is declared twice in this "
                                              f"manifest (first at line {seen[entry.name]})")
            seen.setdefault(entry.name, entry.at.line)
        problems.extend(reader.problems)
        entries.extend(reader.entries)
    if problems:
        raise ConfigError(problems)
    return _merge(entries)


def _merge(entries: Iterable[_Entry]) -> SystemManifest:
    """One ServiceSpec per name: machines and dependencies are the union over the
    manifests; script and ports are the first manifest's, filled from later ones."""
    by_name: dict[str, list[_Entry]] = {}
    machines: list[str] = []
    for entry in entries:
        by_name.setdefault(entry.name, []).append(entry)
        if entry.machine not in machines:
            machines.append(entry.machine)
    agents: dict[str, ServiceSpec] = {}
    unknown: list[UnknownDependency] = []
    for name, found in by_name.items():
        deps: dict[str, None] = {}
        for entry in found:
            for dep, line in entry.dependencies:
                deps.setdefault(dep)
                if dep not in by_name:
                    unknown.append(UnknownDependency(name, dep, entry.at.file, line))
        first = found[0]
        agents[name] = ServiceSpec(
            name=name,
            machines=tuple(dict.fromkeys(e.machine for e in found)),
            script=next((e.script for e in found if e.script), None),
            port=next((e.port for e in found if e.port is not None), None),
            health_check_port=next((e.health_check_port for e in found
                                    if e.health_check_port is not None), None),
            dependencies=tuple(deps),
            health=first.health, health_path=first.health_path,
            host=next((e.host for e in found if e.host), None),
            declared_at=tuple(e.at for e in found))
    return SystemManifest(MappingProxyType(agents), tuple(machines), tuple(unknown))


# --- the order of the program -------------------------------------------------------

@dataclass(frozen=True)
class OrderStep:
    """One step of the program: agents whose declared dependencies are all migrated in
    earlier steps. ``units`` groups the agents that need each other (migrated together)."""

    step: int
    agents: tuple[str, ...]
    units: tuple[tuple[str, ...], ...]
    waits_for: tuple[str, ...]  # agents of earlier steps that this step's agents need
    waited_on_by: int  # agents of later steps that directly need one of this step's
    why: str


@dataclass(frozen=True)
class ProgramOrder:
    steps: tuple[OrderStep, ...]

    def step_of(self, name: str) -> int:
        for step in self.steps:
            if name in step.agents:
                return step.step
        raise KeyError(name)

    def unit_of(self, name: str) -> tuple[str, ...]:
        """The agents that need each other with NAME (NAME alone when in no cycle)."""
        for step in self.steps:
            for unit in step.units:
                if name in unit:
                    return unit
        raise KeyError(name)

    def agents(self) -> list[str]:
        return [a for step in self.steps for a in step.agents]


def program_order(names: Sequence[str], needs: Mapping[str, Sequence[str]],
                  migrated: Iterable[str] = ()) -> ProgramOrder:
    """Step 1 every unit needing nothing; each later step every unit whose needs are all
    in earlier steps. A unit is a strongly connected component of the ``needs`` edges
    (agents that need each other), kept together in one step."""
    done = set(migrated)
    units = strongly_connected(names, needs)
    unit_of = {a: u for u in units for a in u}
    step_of_unit: dict[tuple[str, ...], int] = {}
    position = {n: i for i, n in enumerate(names)}

    def outside(unit: tuple[str, ...]) -> set[tuple[str, ...]]:
        return {unit_of[d] for a in unit for d in needs.get(a, ()) if d in unit_of} - {unit}

    # Tarjan emits components dependencies-first, so one pass assigns steps
    for unit in units:
        step_of_unit[unit] = 1 + max((step_of_unit[u] for u in outside(unit)), default=0)
    dependents: dict[str, set[str]] = {a: set() for a in names}
    for a in names:
        for d in needs.get(a, ()):
            if d in dependents and d != a:
                dependents[d].add(a)
    count = max(step_of_unit.values(), default=0)
    steps = []
    for number in range(1, count + 1):
        members = sorted((u for u in units if step_of_unit[u] == number),
                         key=lambda u: position[u[0]])
        agents = tuple(a for u in members for a in u)
        inside = set(agents)
        waits = sorted({d for a in agents for d in needs.get(a, ())
                        if d in unit_of and d not in inside},
                       key=lambda d: (-step_of_unit[unit_of[d]], position[d]))
        later = {x for a in agents for x in dependents[a] if x not in inside}
        why = _why(number, waits, {d: step_of_unit[unit_of[d]] for d in waits}, members,
                   len(later), [a for a in agents if a in done])
        steps.append(OrderStep(number, agents, tuple(members), tuple(waits), len(later),
                               why))
    return ProgramOrder(tuple(steps))


def _why(number: int, waits: list[str], step_of: dict[str, int],
         units: list[tuple[str, ...]], waited_on: int, migrated: list[str]) -> str:
    parts = []
    if not waits:
        parts.append("needs nothing")
    else:
        shown = ", ".join(f"{d} (step {step_of[d]})" for d in waits[:6])
        more = f" and {len(waits) - 6} more" if len(waits) > 6 else ""
        parts.append(f"waits for {shown}{more}")
    for unit in units:
        if len(unit) > 1:
            parts.append(f"{', '.join(unit)} need each other: migrated together")
    if waited_on:
        parts.append(f"{waited_on} agent{'s' if waited_on != 1 else ''} of later steps "
                     f"wait{'s' if waited_on == 1 else ''} for it")
    else:
        parts.append("no later step waits for it")
    if migrated:
        parts.append(f"already migrated: {', '.join(migrated)}")
    return "; ".join(parts)


def order_of(system: SystemManifest, migrated: Iterable[str] = ()) -> ProgramOrder:
    """The program from the manifests' declared edges (dependencies first)."""
    names = list(system.agents)
    return program_order(names, {n: system.dependencies_of(n) for n in names}, migrated)
