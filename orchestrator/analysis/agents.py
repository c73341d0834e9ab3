"""Agent classes: which derive from BaseAgent and how well, and which are legacy.

The operators' hand-built table ("57 agents, 7 legacy") is the directory totals;
this module decides, per class, what goes into it.

BaseAgent classes
    A class derives from ``BaseAgent`` under any import path or alias
    (``common.core.base_agent.BaseAgent``, ``ba.BaseAgent``, ``BaseAgent as BA``),
    or through another class in the file that does. A class named ``BaseAgent``
    itself is the base, not an agent.

    ``super_init``: every such class's ``__init__`` calls ``super().__init__`` (or
    ``Base.__init__(self, ...)`` on one of its bases); a class without its own
    ``__init__`` inherits its parent's, which counts. ``health_method``: every
    such class defines ``_get_health_status`` (itself or through a parent in the
    file); with no BaseAgent class, whether any function of that name is defined.

Legacy agent classes (the rule, so that it can be argued with)
    A class that does not derive from BaseAgent but looks like an agent: its name
    ends with ``Agent`` (``ModelManagerAgent``; not ``BaseAgent``, not a name that
    merely contains "Agent" such as ``AgentConfig``), or it defines one of the
    methods agents have (``_get_health_status``, ``handle_request``,
    ``process_request``), or it derives from a legacy agent class in the same file.
    ``why`` says which rule matched.
"""

from __future__ import annotations

import ast
from typing import Any

from orchestrator.analysis.names import Function, Names, dotted

BASE = "BaseAgent"
AGENT_METHODS = ("_get_health_status", "handle_request", "process_request")


def _own_methods(cls: ast.ClassDef) -> dict[str, ast.stmt]:
    return {stmt.name: stmt for stmt in cls.body
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef)}


def agent_report(names: Names) -> dict[str, Any]:
    """The ``base_agent`` section: compliance of BaseAgent classes, and legacy classes."""
    agents: dict[str, ast.ClassDef] = {}
    parents: dict[str, str | None] = {}  # agent class -> local agent parent, if any
    classes = [c for c in names.classes if c.name != BASE]
    changed = True
    while changed:
        changed = False
        for cls in classes:
            if cls.name in agents:
                continue
            for base in cls.bases:
                if isinstance(base, ast.Name) and base.id in agents:
                    agents[cls.name], parents[cls.name], changed = cls, base.id, True
                    break
                qualname = names.resolve(base) or dotted(base) or ""
                if qualname.split(".")[-1] == BASE:
                    agents[cls.name], parents[cls.name], changed = cls, None, True
                    break
    by_node = {id(f.node): f for f in names.functions}

    def calls_super_init(cls: ast.ClassDef, init: Function | None) -> bool:
        if init is None:
            return False
        base_names = {(dotted(b) or "").split(".")[-1] for b in cls.bases}
        for call in init.calls:
            if not (isinstance(call.func, ast.Attribute) and call.func.attr == "__init__"):
                continue
            target = call.func.value
            if isinstance(target, ast.Call) and isinstance(target.func, ast.Name) \
                    and target.func.id == "super":
                return True
            if (dotted(target) or "").split(".")[-1] in base_names:
                return True
        return False

    def status(name: str, seen: frozenset[str] = frozenset()) -> tuple[bool, bool]:
        cls, parent = agents[name], parents[name]
        inherited = (True, False) if parent is None or parent in seen \
            else status(parent, seen | {name})
        methods = _own_methods(cls)
        init = methods.get("__init__")
        super_init = calls_super_init(cls, by_node.get(id(init))) if init is not None \
            else inherited[0]
        health = "_get_health_status" in methods or inherited[1]
        return super_init, health

    compliant = []
    for name, cls in sorted(agents.items(), key=lambda item: item[1].lineno):
        super_init, health = status(name)
        compliant.append({"name": name, "line": cls.lineno, "super_init": super_init,
                          "health_method": health})
    if compliant:
        health_method = all(c["health_method"] for c in compliant)
    else:
        health_method = any(f.node.name == "_get_health_status" for f in names.functions)
    return {
        "inherits": bool(compliant),
        "super_init": bool(compliant) and all(c["super_init"] for c in compliant),
        "health_method": health_method,
        "classes": compliant,
        "legacy_classes": _legacy(classes, agents),
    }


def _legacy(classes: list[ast.ClassDef], agents: dict[str, ast.ClassDef]) -> list[Any]:
    found: dict[str, dict[str, Any]] = {}
    for cls in classes:
        if cls.name in agents:
            continue
        methods = [m for m in AGENT_METHODS if m in _own_methods(cls)]
        if cls.name.endswith("Agent"):
            why = "name ends with Agent"
        elif methods:
            why = f"defines {methods[0]}"
        else:
            continue
        found[cls.name] = {"name": cls.name, "line": cls.lineno, "why": why}
    changed = True
    while changed:  # classes deriving from a legacy agent of the file
        changed = False
        for cls in classes:
            if cls.name in agents or cls.name in found:
                continue
            for base in cls.bases:
                if isinstance(base, ast.Name) and base.id in found:
                    found[cls.name] = {"name": cls.name, "line": cls.lineno,
                                       "why": f"derives from {base.id}"}
                    changed = True
                    break
    return sorted(found.values(), key=lambda c: c["line"])
