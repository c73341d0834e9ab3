"""The import graph of orchestrator/ against the floors: every import that goes up a
floor, and every circle, TYPE_CHECKING and function-level imports included (any
`import` statement anywhere in a module counts, as it would at run time).

Floors (README "Layout"): core < (analysis, state, config, runners, metrics, canary)
< (monitor, engine) < (services, reporting, rehearsal, notify, telemetry)
< (app, init, init_services) < cli. A module of a package no floor names is reported.
Prints what it finds; exit 1 when it finds anything.

Run: python .ci/floors.py [PACKAGE_DIR]   (default: orchestrator)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

# this checkout's package, not whichever one happens to be installed
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from orchestrator.core.components import strongly_connected  # noqa: E402

FLOORS = {
    "__init__": 0, "_exceptions": 0, "exit_codes": 0, "core": 0,
    "analysis": 1, "state": 1, "config": 1, "runners": 1, "metrics": 1, "canary": 1,
    "monitor": 2, "engine": 2,
    "services": 3, "reporting": 3, "rehearsal": 3, "notify": 3, "telemetry": 3,
    "app": 4, "init": 4, "init_services": 4,
    "cli": 5, "__main__": 6,
}


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, leaving out the project templates (Jinja, not Python)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        if "templates" in path.relative_to(root).parts:
            continue
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(path: Path, known: dict[str, Path], package: str) -> set[str]:
    """The modules of ours that a module imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == package:
            for alias in node.names:  # `from pkg import module` imports that module
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == package)
    return {m for m in found if m in known}


def floor(module: str) -> int | None:
    parts = module.split(".")
    return FLOORS.get(parts[1] if len(parts) > 1 else "__init__")


def above(target: str, module: str) -> bool:
    """Is `target` on a higher floor than `module` (both placed)?"""
    high, low = floor(target), floor(module)
    return high is not None and low is not None and high > low


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, each sorted."""
    components = strongly_connected(sorted(edges), {m: sorted(t) for m, t in edges.items()})
    return [list(c) for c in components if len(c) > 1]


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "orchestrator").resolve()
    known = modules(root)
    edges = {m: imports(p, known, root.name) - {m} for m, p in known.items()}
    upward = sorted((m, t) for m, targets in edges.items() for t in targets if above(t, m))
    for m, t in upward:
        print(f"UP     {m} (floor {floor(m)}) imports {t} (floor {floor(t)})")
    loops = circles(edges)
    for component in loops:
        print("CIRCLE " + " <-> ".join(component))
    unplaced = sorted(m for m in known if floor(m) is None)
    for m in unplaced:
        print(f"FLOOR? {m}: its package is on no floor")
    print(f"{len(known)} modules, {sum(map(len, edges.values()))} imports: "
          f"{len(upward)} upward, {len(loops)} circles")
    return 1 if upward or loops or unplaced else 0


if __name__ == "__main__":
    sys.exit(main())
