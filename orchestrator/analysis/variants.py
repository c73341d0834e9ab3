"""Near copies of one agent: files with 90% or more of the same lines.

A real tree keeps an agent's earlier and experimental revisions beside it
(``model_manager_agent_day4_optimized.py``, ``_migrated.py``, ``_test.py``). Ranked as
files they take the first rows of every table; planned as agents they are one. Two files
are near copies when the lines they share (stripped, blank lines left out, counted with
their repeats) are at least ``THRESHOLD`` of the longer file's lines; groups are the
connected sets of near copies.

Comparing every pair of a 650-file tree is too slow, so only pairs that share a *rare*
line (one that at most ``RARE`` files hold: not an import or a ``try:``) and have about
the same number of lines are compared; near copies always share their rare lines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

THRESHOLD = 0.9
RARE = 16


def line_counts(text: str) -> Counter[int]:
    """The file's lines as hashes, stripped, blank ones left out, with their repeats."""
    return Counter(hash(s) for line in text.splitlines() if (s := line.strip()))


def near_copy_groups(files: Mapping[str, Counter[int]],
                     threshold: float = THRESHOLD) -> list[list[str]]:
    """Groups of two or more near copies (each group in the order of ``files``)."""
    names = list(files)
    sizes = {n: sum(c.values()) for n, c in files.items()}
    holders: dict[int, list[int]] = {}
    for index, name in enumerate(names):
        for line in files[name]:
            holders.setdefault(line, []).append(index)
    shared: Counter[tuple[int, int]] = Counter()
    for holding in holders.values():
        if 1 < len(holding) <= RARE:
            for i, a in enumerate(holding):
                for b in holding[i + 1:]:
                    shared[(a, b)] += 1
    parent = list(range(len(names)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for (a, b), _count in shared.items():
        first, second = names[a], names[b]
        small, large = sorted((sizes[first], sizes[second]))
        if large == 0 or small < threshold * large or root(a) == root(b):
            continue
        common = sum((files[first] & files[second]).values())
        if common >= threshold * large:
            parent[root(b)] = root(a)
    groups: dict[int, list[str]] = {}
    for index, name in enumerate(names):
        groups.setdefault(root(index), []).append(name)
    return [g for g in groups.values() if len(g) > 1]


def representative(group: Sequence[str], named: set[str]) -> str:
    """The file a manifest names, else the one with the shortest name (then path)."""
    for file in group:
        if file in named:
            return file
    return min(group, key=lambda f: (len(f.rsplit("/", 1)[-1]), f))
