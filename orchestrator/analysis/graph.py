"""The program graph: which agent needs which, and in what order to migrate them (spec
section 6, "The program graph").

Two sources, compared:

* the manifests (`manifests`): the agents, their machines and ports, and the
  dependencies they *declare*;
* the code (the directory analysis, with each file's `endpoints`): what each agent
  *does* bind, connect to and look up by name.

A connect whose port another agent binds (by its manifest ``port`` or
``health_check_port``, or a bind resolved in its code), or a look-up by name, is an edge
*seen* in the code, with FILE:LINE and how. What BaseAgent itself connects to counts for
every agent whose file inherits it, marked inherited. Seen edges no manifest declares, and
declared edges nothing in the code shows, are the drift; endpoints that cannot be followed
are listed as ``unresolved``, never dropped.

Without manifests the agents are the code's agent classes (BaseAgent classes and legacy
ones), their ports those they bind, and the order comes from the seen edges (there is
nothing else to go by); with manifests the order comes from the declared edges only.

Near copies of one agent's file (`variants`) are one agent: listed as its ``variants``,
counted once in the summary and the order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.analysis.directory import analyze_path, display_name
from orchestrator.analysis.manifests import (
    ManifestSource,
    ProgramOrder,
    SystemManifest,
    load_system,
    order_of,
    program_order,
)
from orchestrator.analysis.report import analyze_file
from orchestrator.analysis.source import path_error
from orchestrator.analysis.variants import line_counts, near_copy_groups, representative

BASE_CLASS = "BaseAgent"


@dataclass
class _Node:
    name: str
    machines: tuple[str, ...]
    script: str | None
    port: int | None = None
    health_check_port: int | None = None
    health: str = "tcp"
    doc: dict[str, Any] | None = None  # the analysis of its file
    file: str | None = None  # its file, relative to the root
    classes: tuple[str, ...] = ()  # without manifests: the class it is
    variants: list[str] = field(default_factory=list)


@dataclass
class _Edge:
    source: str
    target: str
    declared: bool = False
    seen: list[dict[str, Any]] = field(default_factory=list)
    cross_machine: bool = False


def program_graph(path: Path, sources: Sequence[ManifestSource] = (),
                  exclude: Sequence[str] = (), all_files: bool = False,
                  variables: Mapping[str, int] | None = None,
                  workers: int | None = None) -> dict[str, Any]:
    """The graph document of the system under PATH, with its manifests when given."""
    system = load_system(sources, variables) if sources else None
    path = Path(path)
    if not path.exists():
        raise path_error(path, "no such file or directory")
    root = path if path.is_dir() else path.parent
    docs = _analyses(path, root, exclude, all_files, workers, system)
    groups = _variant_groups(root, docs, system)
    nodes = _nodes_from_manifests(system, docs, root) if system \
        else _nodes_from_code(docs, groups)
    for node in nodes.values():
        if node.file is not None:
            node.variants = [f for f in groups.get(node.file, []) if f != node.file]
    base_sites = _base_agent_sites(docs, groups)
    edges, unresolved, unknown = _edges(nodes, system, base_sites)
    migrated = [n.name for n in nodes.values() if _migrated(n)]
    if system is not None:
        order = order_of(system, migrated)
    else:
        names = list(nodes)
        needs: dict[str, list[str]] = {n: [] for n in names}
        for edge in edges.values():
            needs[edge.source].append(edge.target)
        order = program_order(names, needs, migrated)
    return _document(nodes, edges, unresolved, unknown, order, system, groups)


# --- the code ------------------------------------------------------------------------

def _analyses(path: Path, root: Path, exclude: Sequence[str], all_files: bool,
              workers: int | None, system: SystemManifest | None) -> dict[str, dict[str, Any]]:
    """Documents by path relative to the root: the tree's, plus any file a manifest names
    that an exclusion left out or a duplicate stands for."""
    if path.is_file():
        return {path.name: analyze_file(path)}
    result = analyze_path(path, exclude, all_files, workers)
    docs: dict[str, dict[str, Any]] = {}
    for doc in result["reports"]:
        docs[_rel(doc["file"], root)] = doc
    for dup in result.get("duplicates", ()):
        original = docs.get(_rel(dup["duplicate_of"], root))
        if original is not None:
            docs.setdefault(_rel(dup["file"], root), {**original, "file": dup["file"],
                                                      "duplicate_of": dup["duplicate_of"]})
    if system is not None:
        for spec in system.agents.values():
            if spec.script and spec.script not in docs and (root / spec.script).is_file():
                try:
                    doc = analyze_file(root / spec.script)
                except Exception:  # noqa: BLE001 - unreadable: the node is marked missing
                    continue
                if "skipped" not in doc:
                    doc["file"] = display_name(root / spec.script)
                    docs[spec.script] = doc
    return docs


def _rel(file: str, root: Path) -> str:
    try:
        return Path(file).relative_to(root).as_posix()
    except ValueError:
        return file


def _variant_groups(root: Path, docs: Mapping[str, dict[str, Any]],
                    system: SystemManifest | None) -> dict[str, list[str]]:
    """Each file of a group of near copies -> the group, its representative first."""
    counts = {}
    for rel, doc in docs.items():
        if "duplicate_of" in doc:
            continue
        try:
            counts[rel] = line_counts((root / rel).read_text(errors="replace"))
        except OSError:
            continue
    named = {s.script for s in system.agents.values() if s.script} if system else set()
    out: dict[str, list[str]] = {}
    for group in near_copy_groups(counts):
        heads = [f for f in group if f in named] or [representative(group, named)]
        # two files the manifests name are two agents, however alike: each other file
        # goes with the one whose name it shares most of
        members: dict[str, list[str]] = {head: [head] for head in heads}
        for file in sorted(f for f in group if f not in members):
            members[max(heads, key=lambda h: (_common_prefix(h, file), h))].append(file)
        for ordered in members.values():
            for file in ordered:
                out[file] = ordered
    return out


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _script_doc(script: str, docs: Mapping[str, dict[str, Any]]) -> tuple[str | None,
                                                                       dict[str, Any] | None]:
    """The file a manifest's script_path names: itself, else the one file whose path ends
    with it (the manifests may be written from a directory above or below PATH)."""
    script = script.lstrip("./") if script.startswith("./") else script
    if script in docs:
        return script, docs[script]
    parts = script.split("/")
    for keep in range(len(parts) - 1, 0, -1):
        tail = "/".join(parts[-keep:])
        found = [rel for rel in docs if rel == tail or rel.endswith("/" + tail)]
        if len(found) == 1:
            return found[0], docs[found[0]]
        if found:
            break
    return None, None


def _nodes_from_manifests(system: SystemManifest, docs: Mapping[str, dict[str, Any]],
                          root: Path) -> dict[str, _Node]:
    nodes = {}
    for spec in system.agents.values():
        file, doc = _script_doc(spec.script, docs) if spec.script else (None, None)
        nodes[spec.name] = _Node(spec.name, spec.machines, spec.script, spec.port,
                                 spec.health_check_port, spec.health.value, doc, file)
    return nodes


def _nodes_from_code(docs: Mapping[str, dict[str, Any]],
                     groups: Mapping[str, list[str]]) -> dict[str, _Node]:
    """Without manifests: one node per agent class (variants and copies left out)."""
    nodes: dict[str, _Node] = {}
    for rel in sorted(docs):
        doc = docs[rel]
        if "duplicate_of" in doc or (rel in groups and groups[rel][0] != rel):
            continue
        agent = doc.get("base_agent", {})
        classes = [c["name"] for c in (*agent.get("classes", ()),
                                       *agent.get("legacy_classes", ()))]
        for name in classes:
            if name in nodes or name == BASE_CLASS:
                continue
            ports = [s["port"] for s in doc.get("endpoints", ())
                     if s["op"] == "bind" and s["class"] == name and s["port"]]
            nodes[name] = _Node(name, (), rel, ports[0] if ports else None, None, "tcp",
                                doc, rel, (name,))
    return nodes


def _base_agent_sites(docs: Mapping[str, dict[str, Any]],
                      groups: Mapping[str, list[str]]) -> tuple[str, list[dict[str, Any]]]:
    """The sites of the ``BaseAgent`` class itself, from its file (the first by path that
    is not a variant of another)."""
    for rel in sorted(docs):
        doc = docs[rel]
        if "duplicate_of" in doc or (rel in groups and groups[rel][0] != rel):
            continue
        sites = [s for s in doc.get("endpoints", ()) if s["class"] == BASE_CLASS]
        if sites:
            return rel, sites
    return "", []


def migrated_document(doc: Mapping[str, Any] | None) -> bool:
    """A file is migrated when it creates no socket and starts no thread of its own (the
    checks of phases 2 and 3); no file is not. `migrate init --services` uses it too."""
    return doc is not None and doc["sockets"]["count"] == 0 and doc["threads"]["count"] == 0


def _migrated(node: _Node) -> bool:
    return migrated_document(node.doc)


# --- edges ------------------------------------------------------------------------------

def _edges(nodes: Mapping[str, _Node], system: SystemManifest | None,
           base: tuple[str, list[dict[str, Any]]]
           ) -> tuple[dict[tuple[str, str], _Edge], list[dict[str, Any]], list[dict[str, Any]]]:
    edges: dict[tuple[str, str], _Edge] = {}
    unresolved: list[dict[str, Any]] = []
    unknown: list[dict[str, Any]] = []
    if system is not None:
        for source, target in system.edges():
            edges[(source, target)] = _Edge(source, target, declared=True)
        unknown += [{"name": u.name, "from": u.agent, "file": u.file, "line": u.line,
                     "how": "declared in a manifest"} for u in system.unknown]
    owners = _port_owners(nodes)
    base_file, base_sites = base
    class_names = {c: n.name for n in nodes.values() for c in n.classes}
    for node in nodes.values():
        if node.doc is None:
            continue
        sites = [(s, node.file, False) for s in node.doc.get("endpoints", ())
                 if not node.classes or s["class"] in node.classes or s["class"] is None]
        if node.doc["base_agent"]["inherits"] and base_sites:
            sites += [(s, base_file, True) for s in base_sites]
        for site, file, inherited in sites:
            _site_edge(node, site, file or "", inherited, nodes, owners, class_names,
                       edges, unresolved, unknown)
    for edge in edges.values():
        a, b = nodes[edge.source].machines, nodes[edge.target].machines
        hinted = {s["machine"] for s in edge.seen if s.get("machine")}
        edge.cross_machine = bool(a and b and not set(a) & set(b)) \
            or bool(a and hinted and not hinted & set(a))
    unresolved.sort(key=lambda u: (u["file"], u["line"]))
    return edges, unresolved, unknown


def _port_owners(nodes: Mapping[str, _Node]) -> dict[int, list[str]]:
    """Port -> the agents that bind it: manifest ports first, then binds in their code."""
    owners: dict[int, list[str]] = {}
    for node in nodes.values():
        for port in (node.port, node.health_check_port):
            if port is not None and node.name not in owners.get(port, []):
                owners.setdefault(port, []).append(node.name)
    for node in nodes.values():
        if node.doc is None:
            continue
        for site in node.doc.get("endpoints", ()):
            port = site["port"]
            if site["op"] == "bind" and port and node.name not in owners.get(port, []) \
                    and (not node.classes or site["class"] in node.classes):
                owners.setdefault(port, []).append(node.name)
    return owners


def _site_edge(node: _Node, site: dict[str, Any], file: str, inherited: bool,
               nodes: Mapping[str, _Node], owners: Mapping[int, list[str]],
               class_names: Mapping[str, str], edges: dict[tuple[str, str], _Edge],
               unresolved: list[dict[str, Any]], unknown: list[dict[str, Any]]) -> None:
    op = site["op"]
    where = {"file": file, "line": site["line"]}
    written = _written(site)
    if site["local"]:
        return
    if op == "bind":
        if site["port"] is None and not (site["own_port"] and _own(node, site["own_port"])):
            unresolved.append({**where, "endpoint": written, "agent": node.name,
                               "why": "the port it binds cannot be followed"})
        return
    target: str | None = None
    how = f"{op} {written}"
    if site["agent"]:
        name = site["agent"]
        target = name if name in nodes \
            else class_names.get(name) or class_names.get(name + "Agent")
        if target is None:
            unknown.append({"name": name, "from": node.name, **where,
                            "how": f"{'inherited: ' if inherited else ''}{site['via'] or op}"})
            return
        how = f"{op} {written}" if op == "lookup" else f"{op} {written} (via {site['via']})"
    elif site["port"] is not None:
        candidates = [a for a in owners.get(site["port"], []) if a != node.name]
        if not candidates:
            if node.name in owners.get(site["port"], []):
                return  # its own port
            unresolved.append({**where, "endpoint": written, "agent": node.name,
                               "why": f"port {site['port']}: no agent binds it"})
            return
        if site["machine"]:
            on = [a for a in candidates if site["machine"] in nodes[a].machines]
            candidates = on or candidates
        if len(candidates) > 1:
            near = [a for a in candidates if set(nodes[a].machines) & set(node.machines)]
            candidates = near or candidates
        if len(candidates) > 1:
            unresolved.append({**where, "endpoint": written, "agent": node.name,
                               "why": f"port {site['port']}: bound by "
                                      f"{', '.join(candidates)}"})
            return
        target = candidates[0]
        how = f"{op} {written} (port {site['port']}" + \
            (f" on {site['machine']}" if site["machine"] else "") + f", bound by {target})"
    else:
        if site["own_port"]:
            return  # connects to its own port
        unresolved.append({**where, "endpoint": written, "agent": node.name,
                           "why": "cannot be followed" + (f" ({site['via']})"
                                                          if site["via"] else "")})
        return
    if target == node.name:
        return
    if inherited:
        how = f"inherited from {BASE_CLASS}: {how}"
    edge = edges.setdefault((node.name, target), _Edge(node.name, target))
    if any(s["file"] == file and s["line"] == site["line"] for s in edge.seen):
        return  # a connect and the look-up it connects to, on one line: one sighting
    entry: dict[str, Any] = {**where, "how": how}
    if inherited:
        entry["inherited"] = True
    if site["machine"]:
        entry["machine"] = site["machine"]
    edge.seen.append(entry)


def _own(node: _Node, which: str) -> bool:
    """Whether the agent's own port (manifest, else the one its code binds) is known."""
    return (node.health_check_port if which == "health_check_port" else node.port) \
        is not None


def _written(site: dict[str, Any]) -> str:
    kind = f"{site['socket']} " if site.get("socket") else ""
    return f"{kind}{site['address']}"


# --- the document ---------------------------------------------------------------------

def _document(nodes: Mapping[str, _Node], edges: Mapping[tuple[str, str], _Edge],
              unresolved: list[dict[str, Any]], unknown: list[dict[str, Any]],
              order: ProgramOrder, system: SystemManifest | None,
              groups: Mapping[str, list[str]]) -> dict[str, Any]:
    step_of = {a: s.step for s in order.steps for a in s.agents}
    node_docs: list[dict[str, Any]] = []
    for node in nodes.values():
        doc = node.doc
        risk = {"score": doc["risk"]["score"], "level": doc["risk"]["level"]} if doc else None
        node_docs.append({
            "name": node.name, "machines": list(node.machines), "script": node.script,
            "file": node.file, "script_missing": doc is None,
            "port": node.port, "health_check_port": node.health_check_port,
            "health": node.health, "risk": risk,
            "sockets": doc["sockets"]["count"] if doc else None,
            "threads": doc["threads"]["count"] if doc else None,
            "syntax_errors": len(doc["syntax_errors"]) if doc else None,
            "migrated": _migrated(node), "variants": node.variants,
            "step": step_of.get(node.name)})
    edge_docs: list[dict[str, Any]] = [{"from": e.source, "to": e.target, "declared": e.declared,
                  "seen": e.seen, "cross_machine": e.cross_machine}
                 for e in sorted(edges.values(), key=lambda e: (e.source, e.target))]
    undeclared = [e for e in edge_docs if e["seen"] and not e["declared"]] \
        if system is not None else []
    unseen = [{"from": e["from"], "to": e["to"], "code": nodes[e["from"]].doc is not None}
              for e in edge_docs if e["declared"] and not e["seen"]]
    migrated = {n["name"] for n in node_docs if n["migrated"]}
    summary = sorted(({"agent": n["name"], "file": n["file"], "score": n["risk"]["score"],
                       "level": n["risk"]["level"], "variants": len(n["variants"])}
                      for n in node_docs if n["risk"]),
                     key=lambda s: (-s["score"], s["agent"]))
    return {
        "source": "manifests" if system is not None else "code",
        "machines": list(system.machines) if system is not None
        else sorted({m for n in nodes.values() for m in n.machines}),
        "nodes": node_docs,
        "edges": edge_docs,
        "drift": {"undeclared": undeclared, "unseen": unseen},
        "unresolved": unresolved,
        "unknown": unknown,
        "order": [{"step": s.step, "agents": list(s.agents),
                   "units": [list(u) for u in s.units if len(u) > 1],
                   "migrated": [a for a in s.agents if a in migrated],
                   "waits_for": list(s.waits_for), "why": s.why} for s in order.steps],
        "summary": summary,
        "totals": {"nodes": len(node_docs), "edges": len(edge_docs),
                   "declared": sum(1 for e in edge_docs if e["declared"]),
                   "seen": sum(1 for e in edge_docs if e["seen"]),
                   "undeclared": len(undeclared), "unseen": len(unseen),
                   "unresolved": len(unresolved), "unknown": len(unknown),
                   "script_missing": sum(1 for n in node_docs if n["script_missing"]),
                   "migrated": len(migrated), "steps": len(order.steps),
                   "variant_groups": len({tuple(g) for g in groups.values() if len(g) > 1})},
    }
