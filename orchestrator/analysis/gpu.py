"""GPU operations: the calls that touch the GPU, which a migration must not break.

A call is a GPU operation when it calls into ``torch.cuda``, NVML (``pynvml``,
``py3nvml``, ``nvidia_smi``), ``GPUtil``, ``cupy`` or ``numba.cuda``; is ``.cuda()``;
is ``.to(...)`` or ``torch.device(...)`` with a "cuda" string; runs a command
starting with ``nvidia-smi``; or names ``cuda``, ``gpu``, ``vram`` or ``nvml``
in the names of its callee (``self._get_vram_usage()``, ``self.gpus[0].reset()``).
Each call site counts once.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import Any

from orchestrator.analysis.names import Names, source_text

GPU_MODULES = ("torch.cuda", "pynvml", "py3nvml", "nvidia_smi", "GPUtil", "cupy", "numba.cuda")
GPU_WORDS = ("cuda", "gpu", "vram", "nvml")
_GPU = re.compile("|".join(GPU_WORDS), re.IGNORECASE)


def _callee_words(node: ast.expr) -> Iterator[str]:
    """The names along a callee: `self.gpus[0].reset` gives reset, gpus, self.

    Only the chain itself: the arguments of a call inside it are not the callee
    (``threading.Thread(target=self._vram_monitor).start`` is not a GPU operation).
    """
    while True:
        if isinstance(node, ast.Attribute):
            yield node.attr
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            if isinstance(node, ast.Name):
                yield node.id
            return


def _strings(nodes: list[ast.expr]) -> Iterator[str]:
    for arg in nodes:
        for sub in ast.walk(arg):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                yield sub.value


_WORDS_MEMO: dict[str, bool] = {}


def _gpu_words(text: str) -> bool:
    found = _WORDS_MEMO.get(text)
    if found is None:
        found = _WORDS_MEMO[text] = _GPU.search(text) is not None
        if len(_WORDS_MEMO) > 100_000:
            _WORDS_MEMO.clear()
    return found


def is_gpu_call(names: Names, call: ast.Call) -> bool:
    func = names.callee(call) or ""
    if func.startswith(GPU_MODULES) and any(
            func == m or func.startswith(m + ".") for m in GPU_MODULES):
        return True
    callee = call.func
    if isinstance(callee, ast.Attribute) and callee.attr == "cuda":
        return True
    chain = names.chain(callee)
    text = chain if chain is not None else " ".join(_callee_words(callee))
    if _gpu_words(text):
        return True
    if not call.args and not call.keywords:
        return False
    args = [*call.args, *(kw.value for kw in call.keywords)]
    if (func == "torch.device" or (isinstance(callee, ast.Attribute) and callee.attr == "to")) \
            and any("cuda" in s.lower() for s in _strings(args)):
        return True
    for arg in args:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str) \
                and arg.value.startswith("nvidia-smi"):
            return True
        if isinstance(arg, ast.List | ast.Tuple) and arg.elts \
                and isinstance(arg.elts[0], ast.Constant) and arg.elts[0].value == "nvidia-smi":
            return True
    return False


def gpu_report(names: Names) -> tuple[dict[str, Any], set[int]]:
    """The ``gpu_operations`` section, and the ids of the GPU calls (for critical functions)."""
    locations = []
    ids: set[int] = set()
    for call, _ in names.calls:
        if is_gpu_call(names, call):
            ids.add(id(call))
            locations.append({"line": call.lineno, "call": source_text(call.func)})
    return {"count": len(locations), "locations": locations}, ids
