"""Threads and processes: where they are started, and what runs in them.

Phase 3 of the seed's migration moves an agent's own threads into the BaseAgent
lifecycle one by one, so each site says what it runs (``target``) and what it is
called (``name``), where the source gives them.

Sites: ``threading.Thread``, ``threading.Timer``, ``ThreadPoolExecutor``,
``ProcessPoolExecutor``, ``multiprocessing`` ``Process``/``Pool`` (also through
``get_context()``, ``multiprocessing.pool`` and ``multiprocessing.dummy``),
``_thread.start_new_thread``, and instantiations of classes in the file that
derive from any of these; names resolve through imports, aliases and helpers
(see `names`). Each is a *call site*: a thread started in a loop counts once.

``target``: the ``target=`` argument (or the positional one: ``Thread(group,
target, name)``, ``Timer(interval, function)``, ``start_new_thread(function,
args)``), written as in the source without ``self.``/``cls.``; ``name``: the
``name=`` argument (``thread_name_prefix=`` for an executor), the string itself
when it is a literal. Both are null when the source does not give them.
"""

from __future__ import annotations

import ast
from typing import Any

from orchestrator.analysis.names import THREAD_CALLS, Names, dotted, source_text

# kind -> (position of the target, position of the name) among positional arguments
_POSITIONS: dict[str, tuple[int | None, int | None]] = {
    "threading.Thread": (1, 2),
    "multiprocessing.Process": (1, 2),
    "multiprocessing.dummy.Process": (1, 2),
    "threading.Timer": (1, None),
    "_thread.start_new_thread": (0, None),
}
_TARGET_KEYWORDS = ("target", "function", "func")
_NAME_KEYWORDS = ("name", "thread_name_prefix")


def thread_report(names: Names) -> dict[str, Any]:
    """The ``threads`` section of a file's document."""
    locations = []
    for call, _ in names.calls:
        func = names.callee(call)
        if func not in THREAD_CALLS:
            continue
        kind = THREAD_CALLS[func]
        target_at, name_at = _POSITIONS.get(kind, (None, None))
        target = _argument(call, _TARGET_KEYWORDS, target_at)
        name = _argument(call, _NAME_KEYWORDS, name_at)
        locations.append({
            "line": call.lineno,
            "kind": kind,
            "call": source_text(call.func),
            "target": _target_text(target) if target is not None else None,
            "name": _name_text(name) if name is not None else None,
        })
    return {"count": len(locations), "locations": locations}


def _argument(call: ast.Call, keywords: tuple[str, ...], position: int | None) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg in keywords:
            return kw.value
    if position is not None and position < len(call.args) \
            and not any(isinstance(a, ast.Starred) for a in call.args[: position + 1]):
        return call.args[position]
    return None


def _target_text(node: ast.expr) -> str:
    if isinstance(node, ast.Lambda):
        return "lambda"
    name = dotted(node)
    if name is not None:
        head, _, rest = name.partition(".")
        return rest if head in ("self", "cls") and rest else name
    return source_text(node, limit=60)


def _name_text(node: ast.expr) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return source_text(node, limit=60)
