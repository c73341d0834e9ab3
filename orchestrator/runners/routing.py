"""Which machine runs a host's playbook: here, or the execution node its inventory names.

`RoutedPlaybookRunner` is the engine's one `PlaybookRunner`. It splits a request's
hosts by their `migrate_execution_node` (hosts without it run here), runs the parts at
the same time (each node with the step's forks) and merges their per-host results, so
the engine never knows where a step ran: a failed task, a lost node or a cancelled step
come back as the same `Result`s a local run gives. A part that cannot even start
(`RunnerError`) fails its own hosts with that message instead of hiding the other
parts' results, which the engine needs to roll back what did change.

`playbook_runner(project, inventory)` builds it from migration.yaml's
`execution.nodes`; the nodes share one SSH connection pool (one connection per node,
with the `ssh:` keepalives), closed by `close()`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace

from orchestrator._exceptions import RunnerError
from orchestrator.config.inventory import Host, Inventory
from orchestrator.core.clock import CancelToken
from orchestrator.core.model import EXECUTION_NODE_VAR, Project, StepAction, UndoKind
from orchestrator.runners.base import (
    FailureKind,
    GroupResult,
    PlaybookRequest,
    PlaybookRunner,
    Result,
)
from orchestrator.runners.nodes import NodePlaybookRunner, refuse_unready
from orchestrator.runners.ssh import ConnectionPool

#: the part of a request that runs on this machine
HERE = ""


def node_of(host: Host) -> str:
    """The execution node a host's playbooks run on (HERE when none)."""
    value = host.vars.get(EXECUTION_NODE_VAR)
    return str(value) if value else HERE


def split_by_node(hosts: tuple[Host, ...] | list[Host]) -> dict[str, list[Host]]:
    """Hosts by node, in request order within each part."""
    parts: dict[str, list[Host]] = {}
    for host in hosts:
        parts.setdefault(node_of(host), []).append(host)
    return parts


class RoutedPlaybookRunner:
    def __init__(self, here: PlaybookRunner,
                 nodes: Mapping[str, NodePlaybookRunner] | None = None,
                 pool: ConnectionPool | None = None) -> None:
        self.here = here
        self.nodes = dict(nodes or {})
        self.pool = pool

    def runner_for(self, node: str) -> PlaybookRunner:
        if node == HERE:
            return self.here
        if node not in self.nodes:  # validate refuses this; a stale inventory override not
            raise RunnerError(f"no execution node {node!r} in migration.yaml "
                              f"(nodes: {', '.join(sorted(self.nodes)) or 'none'})")
        return self.nodes[node]

    def run_playbook(self, request: PlaybookRequest, cancel: CancelToken) -> GroupResult:
        parts = split_by_node(request.hosts)
        if len(parts) == 1:
            (node, _), = parts.items()
            return self.runner_for(node).run_playbook(request, cancel)
        merged: dict[str, Result] = {}
        lock = threading.Lock()

        def run(node: str, hosts: list[Host]) -> None:
            try:
                group = self.runner_for(node).run_playbook(
                    replace(request, hosts=tuple(hosts)), cancel)
                results = {h.name: group.results.get(h.name)
                           or Result.failed(h.name, FailureKind.EXIT, "no result") for h in hosts}
            except RunnerError as exc:
                results = {h.name: Result.failed(h.name, FailureKind.EXIT, str(exc))
                           for h in hosts}
            except Exception as exc:  # a part's fault must not lose the other parts' results
                where = f"execution node {node}" if node else "this machine"
                results = {h.name: Result.failed(h.name, FailureKind.EXIT,
                                                 f"the playbook run on {where} broke: "
                                                 f"{type(exc).__name__}: {exc}")
                           for h in hosts}
            with lock:
                merged.update(results)

        threads = [threading.Thread(target=run, args=(node, hosts), daemon=True,
                                    name=f"playbook-{node or 'here'}")
                   for node, hosts in parts.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return GroupResult({h.name: merged[h.name] for h in request.hosts})

    def refuse_unready(self, hosts: list[Host]) -> None:
        """Exit 4 before anything runs when a node these hosts use cannot run jobs."""
        used = sorted({node_of(h) for h in hosts} - {HERE})
        refuse_unready(self.nodes[n] for n in used if n in self.nodes)

    def counts(self, hosts: list[Host]) -> dict[str, int]:
        """How many of `hosts` each node runs (HERE: this machine)."""
        return {node: len(part) for node, part in split_by_node(hosts).items()}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def shipped_dirs(project: Project) -> set[str]:
    """The project's top-level entries that hold a playbook of a step or an undo: what a
    node receives with each job (beside Ansible's own directories)."""
    root = project.root.resolve()
    out: set[str] = set()
    for phase in project.phases.values():
        for step in phase.steps:
            paths = [step.target] if step.action is StepAction.PLAYBOOK else []
            if step.undo is not None and step.undo.kind is UndoKind.PLAYBOOK:
                paths.append(step.undo.target)
            for path in paths:
                try:
                    out.add((root / path).resolve().relative_to(root).parts[0])
                except (ValueError, IndexError):
                    continue
    return out


def playbook_runner(project: Project, inventory: Inventory,
                    here: PlaybookRunner) -> RoutedPlaybookRunner:
    """The engine's playbook runner: `here` for hosts without a node, a node runner per
    `execution.nodes` entry."""
    if not project.execution_nodes:
        return RoutedPlaybookRunner(here)
    pool = ConnectionPool(project.ssh)
    shipped = shipped_dirs(project)
    nodes = {name: NodePlaybookRunner(node, inventory.hosts[node.host], pool,
                                      root=project.root, shipped=shipped,
                                      forks=project.forks, ssh=project.ssh)
             for name, node in project.execution_nodes.items()
             if node.host in inventory.hosts}
    return RoutedPlaybookRunner(here, nodes, pool)
