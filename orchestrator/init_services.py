"""`migrate init DIR --agent NAME --services FILE...`: the migration of one agent of a
program, planned from the system's service manifests.

The manifests (read by `orchestrator.analysis.manifests`, never a second parser here) say
which machines run the agent, which agents need it (its dependents: what a bad migration
breaks) and which it needs (its dependencies: what must be migrated first). This module
turns that into the template's variables, so that the project `init` writes

- runs its phases on the agent's machines (inventory group `agent`) and probes each
  dependent from that dependent's own machine (group `dependents`);
- has one trigger per direct dependent, `<snake name>_health`, on its health check;
- requires, in phase 1, phase 4 of the migration of each dependency that is not yet
  migrated (its script still creates sockets or threads of its own), observed 24h;
  agents that need each other (one unit of the program's order) are not required of
  one another, since each would wait for the other: they are migrated together;
- rehearses with a stand-in for each dependent beside the agent's, and a
  `dependent-outage` drill.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator._exceptions import ConfigError

if TYPE_CHECKING:
    from orchestrator.analysis.manifests import ServiceSpec, SystemManifest
    from orchestrator.init import InitResult, TemplateVars

#: the template's own metric and trigger names, which a dependent's must not take
TEMPLATE_NAMES = ("vram_used_mib", "gpu_xid_errors", "agent_health", "model_load_failures",
                  "migration_risk", "gpu_operation_failure", "model_load_failure",
                  "vram_degradation", "health_failure", "vram_vs_pre_migration")
#: the real inventory's ports that the manifests do not give
DCGM_EXPORTER_PORT = 9400
TEST_INSTANCE_PORT = 7320


def kebab(name: str) -> str:
    """`StreamingTTSAgent` -> `streaming-tts-agent`: a migration's name from an agent's."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name)
    slug = re.sub(r"[^a-z0-9]+", "-", words.lower()).strip("-")
    if slug and not slug[0].isalpha():
        slug = "agent-" + slug
    return slug or "agent"


def snake(name: str) -> str:
    """`EmpathyAgent` -> `empathy_agent`: a trigger's or variable's name from an agent's."""
    return kebab(name).replace("-", "_")


@dataclass(frozen=True)
class Dependency:
    """An agent this one needs, and what phase 1 requires of its migration."""

    name: str
    machines: tuple[str, ...]
    migration: str
    script: Path | None
    migrated: bool
    why: str  # how `migrated` was found: the file's sockets and threads, or its absence
    same_unit: bool
    hosts: tuple[str | None, ...]  # the `host:` of each requirement (None: same host)

    @property
    def required(self) -> bool:
        return not self.migrated and not self.same_unit


@dataclass(frozen=True)
class Dependent:
    """An agent that needs this one: watched, from its own machine, while phases run."""

    name: str
    machine: str
    trigger: str  # snake name + `_health`
    health: str  # tcp or http
    path: str | None
    port: int | None  # its health_check_port in the manifests


@dataclass
class AgentPlan:
    """What the manifests say of the agent whose migration `init` starts."""

    spec: ServiceSpec
    script: Path
    dependents: list[Dependent]
    dependencies: list[Dependency]
    unit: tuple[str, ...]
    step: int
    steps: int
    manifest_ports: set[int] = field(default_factory=set)

    @property
    def machines(self) -> list[str]:
        return list(self.spec.machines)

    @property
    def probe_machines(self) -> list[str]:
        return list(dict.fromkeys(d.machine for d in self.dependents))


def load_manifests(services: list[str] | tuple[str, ...]) -> SystemManifest:
    from orchestrator.analysis.manifests import load_system, parse_services_option

    return load_system([parse_services_option(text) for text in services])


def find_agent(system: SystemManifest, name: str) -> ServiceSpec:
    if name in system.agents:
        return system.agents[name]
    close = system.closest(name, 5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise ConfigError(f"--agent {name}: no agent of that name in the manifests "
                      f"({len(system.agents)} agents){hint}; nothing written")


def plan_agent(system: SystemManifest, name: str, source: Path) -> AgentPlan:
    """The agent's machines, dependents and dependencies; ConfigError (exit 2) when the
    manifests do not name it or its script is not under `source`."""
    from orchestrator.analysis import analyze_path
    from orchestrator.analysis.graph import migrated_document
    from orchestrator.analysis.manifests import order_of

    spec = find_agent(system, name)
    if spec.script is None:
        raise ConfigError(f"--agent {name}: the manifests give it no script_path "
                          f"({spec.declared_at[0]}); nothing written")
    script = (source / spec.script).resolve()
    if not script.is_file():
        raise ConfigError(f"--agent {name}: its script {spec.script} is not under "
                          f"{source} (give the system's checkout with --source); "
                          f"nothing written")
    order = order_of(system)
    unit = order.unit_of(name)
    dependents: list[Dependent] = []
    taken = set(TEMPLATE_NAMES)
    for other in system.dependents_of(name):
        d = system.agents[other]
        trigger = snake(other) + "_health"
        if trigger in taken:  # `Agent` would be the template's agent_health; two spellings
            trigger = f"dependent_{snake(other)}_{len(dependents) + 1}_health"
        taken.add(trigger)
        dependents.append(Dependent(other, d.machines[0], trigger, d.health.value,
                                    d.health_path, d.health_check_port))
    dependencies = []
    for other in system.dependencies_of(name):
        d = system.agents[other]
        path = (source / d.script).resolve() if d.script else None
        if path is None or not path.is_file():
            migrated, why = False, ("no script_path in the manifests" if path is None
                                    else f"{d.script} not under --source")
        else:
            doc = analyze_path(path)
            migrated = migrated_document(doc)
            why = (f"{_count(doc['sockets']['count'], 'socket')}, "
                   f"{_count(doc['threads']['count'], 'thread')} of its own")
        dependencies.append(Dependency(
            other, d.machines, kebab(other), path, migrated, why, other in unit,
            _requirement_hosts(d.machines, spec.machines)))
    ports = {p for a in system.agents.values() for p in (a.port, a.health_check_port)
             if p is not None}
    return AgentPlan(spec, script, dependents, dependencies, unit, order.step_of(name),
                     len(order.steps), ports)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _requirement_hosts(dep: tuple[str, ...], agent: tuple[str, ...]) -> tuple[str | None, ...]:
    """One requirement per machine of the dependency; `host:` left out (same host) where
    the dependency runs on exactly the agent's machines, or on its only machine."""
    if set(dep) == set(agent):
        return (None,)
    return tuple(None if agent == (m,) else m for m in dep)


# --- the template's variables ----------------------------------------------------------------
def services_vars(plan: AgentPlan, name: str, port_base: int | None) -> TemplateVars:
    """The template's variables: the classic ones for the agent's machines, then the
    probe machines, the dependents' stand-ins with sandbox ports, the requirements and
    the real inventory's ports from the manifests."""
    from orchestrator.init import (
        PORT_BLOCK,
        PORT_BLOCKS,
        PORT_LOW,
        DependentStandin,
        SandboxHost,
        default_vars,
    )

    machines = plan.machines + [m for m in plan.probe_machines if m not in plan.machines]
    if port_base is None:
        port_base = PORT_LOW + zlib.crc32(name.encode()) % PORT_BLOCKS * PORT_BLOCK
    variables = default_vars(name, plan.machines, str(plan.script), port_base)
    variables.agent_display = plan.spec.name
    for i, host in enumerate(variables.hosts):  # the agent's own port, that dependents need
        host.ports["zmq_port"] = port_base + 10 * i + 3
    variables.hosts += [SandboxHost(m, {}) for m in machines if m not in plan.machines]
    by_name = {h.name: h for h in variables.hosts}
    next_port = port_base + 10 * len(machines) + 1
    for dep in plan.dependents:
        var = dep.trigger
        by_name[dep.machine].ports[f"{var}_port"] = next_port
        next_port += 1
        variables.dependents.append(DependentStandin(dep.name, var, dep.machine, dep.health,
                                                     dep.path))
    variables.agent_hosts = list(plan.machines)
    variables.extra["requires"] = [
        {"migration": d.migration, "host": host, "agent": d.name}
        for d in plan.dependencies if d.required for host in d.hosts]
    variables.extra["real_ports"] = real_ports(plan, machines)
    return variables


def real_ports(plan: AgentPlan, machines: list[str]) -> dict[str, list[tuple[str, Any, str]]]:
    """The real inventory's port variables by machine, from the manifests."""
    spec = plan.spec
    spare = TEST_INSTANCE_PORT
    while spare in plan.manifest_ports:
        spare += 1
    out: dict[str, list[tuple[str, Any, str]]] = {m: [] for m in machines}
    for m in plan.machines:
        out[m] += [
            ("health_port", spec.health_check_port or 8000,
             f"{spec.name}'s health_check_port (manifests)" if spec.health_check_port
             else "the agent's health endpoint: the manifests give none"),
            ("zmq_port", spec.port or 7000,
             f"{spec.name}'s port (manifests): what its dependents connect to"
             if spec.port else "the agent's port: the manifests give none"),
            ("dcgm_exporter_port", DCGM_EXPORTER_PORT, "dcgm-exporter (/metrics)"),
            ("test_instance_port", spare, "spare port (no manifest uses it) for phase 1's "
                                          "test instance")]
    for dep in plan.dependents:
        out[dep.machine].append(
            (f"{dep.trigger}_port", dep.port, f"{dep.name}'s health_check_port ({dep.health})")
            if dep.port is not None else
            (f"{dep.trigger}_port", "null", f"{dep.name}: the manifests give no "
                                            "health_check_port; put its port here"))
    return out


# --- ANALYSIS.md's part on the program ----------------------------------------------------------
def program_markdown(plan: AgentPlan, services: list[str] | tuple[str, ...],
                     source: Path) -> list[str]:
    """The agent's place in the program, for ANALYSIS.md (Markdown lines)."""
    spec = plan.spec
    where = ", ".join(str(d) for d in spec.declared_at)
    lines = ["## In the program", "",
             f"{spec.name} runs on {', '.join(spec.machines)} (port {spec.port}, health check "
             f"{spec.health_check_port}; declared at {where}). It is in step {plan.step} of "
             f"{plan.steps} of the program's order (`migrate analyze {source} --graph "
             f"{' '.join('--services ' + s for s in services)}`).", ""]
    if len(plan.unit) > 1:
        lines += [f"**Migrate together:** {', '.join(plan.unit)} need each other (one unit "
                  "of the order): none of them requires the others' migration, since each "
                  "would wait for the other. Plan their phases together.", ""]
    lines += ["### Dependents: the agents that need it (watched while its phases run)", ""]
    if plan.dependents:
        lines += ["| agent | machine | trigger | health check, probed from its machine |",
                  "| --- | --- | --- | --- |"]
        for d in plan.dependents:
            check = f"{d.health} :{d.port}" + (d.path or "")
            lines.append(f"| {d.name} | {d.machine} | `{d.trigger}` | {check} |")
    else:
        lines.append("None: no agent of the manifests declares that it needs it.")
    lines += ["", "### Dependencies: the agents it needs", ""]
    if plan.dependencies:
        lines += ["| agent | machines | migrated | phase 1 requires |",
                  "| --- | --- | --- | --- |"]
        for dep in plan.dependencies:
            if dep.same_unit:
                req = "nothing: same unit, migrated together"
            elif dep.migrated:
                req = "nothing: already migrated"
            else:
                req = "; ".join(f"`{dep.migration}` phase 4 observed 24h"
                                + (f" on {h}" if h else "") for h in dep.hosts)
            lines.append(f"| {dep.name} | {', '.join(dep.machines)} | "
                         f"{'yes' if dep.migrated else 'no'} ({dep.why}) | {req} |")
    else:
        lines.append("None: it needs no agent of the manifests.")
    return lines + [""]


def init_agent_project(directory: Path, agent: str, services: list[str] | tuple[str, ...],
                       source: Path | None = None, name: str | None = None,
                       port_base: int | None = None) -> InitResult:
    """Check everything, then write: a bad manifest, an unknown agent, a missing script
    or a non-empty DIR is a ConfigError (exit 2) before any file is written."""
    from orchestrator.init import analysis_markdown, check_arguments, write_project

    system = load_manifests(services)
    spec = find_agent(system, agent)
    slug = name or kebab(spec.name)
    check_arguments(directory, slug, list(spec.machines))
    root = (source or Path.cwd()).resolve()
    plan = plan_agent(system, spec.name, root)
    variables = services_vars(plan, slug, port_base)
    analysis = analysis_markdown(plan.script, slug, program_markdown(plan, services, root))
    result = write_project(directory, variables, analysis)
    first = plan.machines[0]
    result.next_commands = [
        f"cd {directory}", "migrate validate", "migrate rehearse --scenario clean",
        "migrate rehearse --scenario dependent-outage" if plan.dependents
        else "migrate rehearse --scenario vram-leak",
        f"$EDITOR inventory/hosts.yml   # the real addresses of "
        f"{', '.join(h.name for h in variables.hosts)}",
        f"migrate plan 1 --host {first}"]
    required = [d for d in plan.dependencies if d.required]
    result.notes += [f"watches {len(plan.dependents)} dependent"
                     f"{'s' if len(plan.dependents) != 1 else ''}"
                     + (f": {', '.join(d.name for d in plan.dependents)}"
                        if plan.dependents else ""),
                     f"phase 1 requires {len(required)} migration"
                     f"{'s' if len(required) != 1 else ''} first"
                     + (f": {', '.join(d.migration for d in required)}" if required else "")]
    if len(plan.unit) > 1:
        result.notes.append(f"migrate together: {', '.join(plan.unit)} (they need each "
                            "other; see ANALYSIS.md)")
    return result
