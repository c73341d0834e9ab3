"""Functions: how tangled they are, and which ones a migration must handle with care.

Complexity
    The cyclomatic complexity of each function: 1 + its decision points (if,
    for, while, except, conditional expression, each extra ``and``/``or``
    operand, comprehension clause and its ifs, match case), not counting
    functions nested in it. ``decision_points`` is the same count over the whole
    file.

Critical functions
    A function whose name, or whose own body (calls, names and attributes, not
    nested functions), mentions model loading/unloading (``load_model``,
    ``unload``, ``from_pretrained``, ``torch.load``, ``safetensors``; a name with
    both "load" and "model"), VRAM/GPU (``cuda``, ``gpu``, ``vram``, ``nvml``, or
    any GPU operation, see `gpu`) or health (``health``). ``touches`` says which.
"""

from __future__ import annotations

import re
from typing import Any

from orchestrator.analysis.gpu import GPU_WORDS
from orchestrator.analysis.names import Function, Names

MODEL_WORDS = ("load_model", "unload", "from_pretrained")
HEALTH_WORDS = ("health",)
_MODEL = re.compile("|".join(MODEL_WORDS))
_GPU = re.compile("|".join(GPU_WORDS))


def _touches(names: Names, func: Function, gpu_calls: set[int]) -> list[str]:
    text = " ".join([func.node.name, *func.idents]).lower()
    name = func.node.name.lower()
    model = ("load" in name and "model" in name) or _MODEL.search(text) is not None
    gpu = _GPU.search(text) is not None or any(id(call) in gpu_calls for call in func.calls)
    health = "health" in text
    if not model:
        for call in func.calls:
            callee = names.callee(call) or ""
            if callee == "torch.load" or callee.startswith("safetensors."):
                model = True
                break
    return [label for label, hit in (("model", model), ("gpu", gpu), ("health", health)) if hit]


def function_report(names: Names, gpu_calls: set[int]) -> tuple[dict[str, Any], list[Any]]:
    """The ``complexity`` section and the ``critical_functions`` list."""
    worst: dict[str, Any] | None = None
    critical = []
    for func in names.functions:
        cc = 1 + func.decisions
        if worst is None or cc > worst["complexity"]:
            worst = {"name": func.qualname, "line": func.node.lineno, "complexity": cc}
        touches = _touches(names, func, gpu_calls)
        if touches:
            critical.append({"name": func.qualname, "line": func.node.lineno,
                             "touches": touches})
    complexity = {"decision_points": names.decision_points,
                  "functions": len(names.functions), "max_function": worst}
    return complexity, critical
