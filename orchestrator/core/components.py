"""Strongly connected components of a directed graph (Tarjan's algorithm).

Both the agents' program order (analysis/manifests.py: agents that need each other move
in one step) and the import-floor check (.ci/floors.py: import circles) group a graph's
nodes this way; one implementation serves both. Iterative, so that a long chain of edges
does not hit Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def strongly_connected(names: Sequence[str],
                       edges: Mapping[str, Sequence[str]]) -> list[tuple[str, ...]]:
    """The components of the graph on ``names`` whose edges go from a node to each of
    ``edges[node]`` (targets not in ``names`` are ignored), every node in exactly one.

    Components come out in Tarjan's order: a component after every component it has an
    edge into (dependencies first). Nodes are visited in the order of ``names`` and
    their targets in the order given, and each component lists its nodes in the order
    of ``names``, so the result is deterministic."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[tuple[str, ...]] = []
    position = {n: i for i, n in enumerate(names)}
    counter = 0
    for root in names:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = [t for t in edges.get(node, ()) if t in position]
            if child < len(targets):
                work.append((node, child + 1))
                target = targets[child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(tuple(sorted(component, key=position.__getitem__)))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out
