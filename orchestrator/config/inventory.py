"""The Ansible YAML inventory, read once so that Ansible, fabric and probes agree on hosts.

Connection settings (address, port, user, key, SSH options) live only in the
inventory; everything that reaches a host reads them from a `Host` built here.
Variable precedence follows Ansible's for the YAML format: `all` vars, then
parent groups, then child groups, then the host's own vars.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator._exceptions import ConfigError, Problem
from orchestrator.config.yamlsource import YamlLoadError, YDict, load_yaml

_GROUP_KEYS = {"hosts", "children", "vars"}


@dataclass(frozen=True)
class Host:
    name: str
    vars: dict[str, Any]

    @property
    def is_local(self) -> bool:
        return self.vars.get("ansible_connection") == "local"

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host", self.name))


@dataclass
class Inventory:
    path: Path
    hosts: dict[str, Host] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    #: host -> variable -> the line of the definition that wins (for FILE:LINE problems
    #: about a variable's value, e.g. a `migrate_execution_node` that names no node)
    var_lines: dict[str, dict[str, int]] = field(default_factory=dict)

    def resolve(self, names: list[str] | tuple[str, ...]) -> list[Host]:
        """Host or group names -> hosts, in first-mentioned order, without repeats."""
        out: list[str] = []
        for name in names:
            if name in self.hosts:
                members = [name]
            elif name == "all" and "all" not in self.groups:
                members = list(self.hosts)  # Ansible's implicit group: every host, in order
            elif name in self.groups:
                members = self.groups[name]
            else:
                known = ", ".join(sorted(self.hosts)) or "none"
                raise ConfigError(
                    [Problem(str(self.path), 0, f"unknown host or group {name!r} (hosts: {known})")]
                )
            out.extend(m for m in members if m not in out)
        return [self.hosts[n] for n in out]

    def hostvars(self) -> dict[str, dict[str, Any]]:
        """Every host's variables as templates see them: a variable that refers to
        another (`agent_dir: "{{ sandbox_dir }}/agent"`) is resolved the way Ansible
        would, with `inventory_dir` and `inventory_hostname`; one that names what only
        Ansible knows (`{{ ansible_playbook_python }}`) stays as written."""
        return {name: _resolved(h, self.path) for name, h in self.hosts.items()}


def _resolved(host: Host, path: Path | None) -> dict[str, Any]:
    values = dict(host.vars)
    pending = [k for k, v in values.items() if isinstance(v, str) and "{{" in v]
    if not pending:
        return values
    from orchestrator.config.templating import render

    magic = {"inventory_hostname": host.name,
             "inventory_dir": str(path.parent) if path is not None else ""}
    for _ in range(5):  # chains of variables, as deep as an inventory plausibly nests them
        changed = False
        for key in pending:
            text = values[key]
            if not isinstance(text, str) or "{{" not in text:
                continue
            try:
                new = render(text, {**magic, **values})
            except ConfigError:
                continue  # a name only Ansible supplies: leave it to Ansible
            if new != text:
                values[key], changed = new, True
        if not changed:
            break
    return values


#: one level of variables for a host: (precedence, variables, the line of each)
_Layer = tuple[int, dict[str, Any], dict[str, int]]


def _lines(values: Any) -> dict[str, int]:
    return {k: values.line_of(k) for k in values} if isinstance(values, YDict) else {}


def load_inventory(path: Path, display: str | None = None) -> tuple[Inventory, list[Problem]]:
    """Parse the inventory; return it with every problem found (empty list when sound)."""
    name = display or str(path)
    problems: list[Problem] = []
    inv = Inventory(path=path)
    try:
        data = load_yaml(path, name)
    except YamlLoadError as exc:
        return inv, [exc.problem]
    if not isinstance(data, YDict):
        return inv, [Problem(name, 1, "inventory must be a mapping of groups (e.g. all:)")]

    host_layers: dict[str, list[_Layer]] = {}

    def walk(group: str, body: Any, depth: int, inherited: list[_Layer],
             line: int) -> list[str]:
        if body is None:
            body = YDict()
            body.line, body.key_lines, body.duplicate_keys = line, {}, []
        if not isinstance(body, YDict):
            problems.append(Problem(name, line, f"group {group!r} must be a mapping"))
            return []
        for key in body:
            if key not in _GROUP_KEYS:
                problems.append(Problem(name, body.line_of(key),
                                        f"unknown key {key!r} in group {group!r} "
                                        f"(expected hosts, children, vars)"))
        gvars = body.get("vars") or {}
        if not isinstance(gvars, dict):
            problems.append(Problem(name, body.line_of("vars"), "vars must be a mapping"))
            gvars = {}
        layers = inherited + [(depth, dict(gvars), _lines(gvars))]
        members: list[str] = []
        hosts = body.get("hosts") or {}
        if not isinstance(hosts, dict):
            problems.append(Problem(name, body.line_of("hosts"), "hosts must be a mapping"))
            hosts = {}
        for host, hvars in hosts.items():
            if hvars is not None and not isinstance(hvars, dict):
                problems.append(Problem(name, hosts.line_of(host) if isinstance(hosts, YDict)
                                        else body.line, f"host {host!r} vars must be a mapping"))
                hvars = {}
            host_layers.setdefault(host, []).extend(layers)
            host_layers[host].append((10_000, dict(hvars or {}), _lines(hvars)))
            members.append(host)
        children = body.get("children") or {}
        if not isinstance(children, dict):
            problems.append(Problem(name, body.line_of("children"), "children must be a mapping"))
            children = {}
        seen = set(members)  # sets beside the lists: 10,000 hosts in `all` were 10^8 scans
        for child, child_body in children.items():
            cline = children.line_of(child) if isinstance(children, YDict) else body.line
            for m in walk(child, child_body, depth + 1, layers, cline):
                if m not in seen:
                    seen.add(m)
                    members.append(m)
        existing = inv.groups.setdefault(group, [])
        known = set(existing)
        existing.extend(m for m in dict.fromkeys(members) if m not in known)
        return members

    for group, body in data.items():
        walk(group, body, 0, [], data.line_of(group))

    for host, layers in host_layers.items():
        merged: dict[str, Any] = {}
        lines: dict[str, int] = {}
        for _, layer, layer_lines in sorted(layers, key=lambda item: item[0]):
            merged.update(layer)
            lines.update(layer_lines)
        inv.hosts[host] = Host(name=host, vars=merged)
        inv.var_lines[host] = lines
    inv.groups.setdefault("all", list(inv.hosts))
    if not inv.hosts and not problems:
        problems.append(Problem(name, data.line, "inventory defines no hosts"))
    return inv, problems


def read_inventory(path: Path) -> Inventory:
    inv, problems = load_inventory(path)
    if problems:
        raise ConfigError(problems)
    return inv
