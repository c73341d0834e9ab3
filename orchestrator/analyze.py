"""Static architecture analysis of an agent file, behind `migrate analyze FILE.py`.

The file is parsed with `ast` and tokenized with `tokenize`; it is never imported
or run. The report (see `analyze_file`) gives the file's size, BaseAgent
compliance, ZMQ and raw socket creation sites, thread/process creation sites,
GPU operations, code complexity, the functions a migration must handle with care
(model load/unload, VRAM/GPU, health), and a risk score out of 60.

What is counted
---------------
Every count is a count of *call sites in the source*, not of objects at run time:
a socket created in a comprehension or a loop counts once.

* Names are resolved through the file's imports, whatever their form and
  wherever they are (``import zmq as z``, ``from zmq import Context``,
  ``import socket as s``, ``from socket import socket as sock``,
  ``from threading import Thread as T``, ``import concurrent.futures as cf``,
  ``from multiprocessing import Pool``, ``from threading import *``).
* Simple dataflow, by assigned name or attribute, across the whole file: a name
  or dotted attribute (``ctx``, ``self.context``, ``self.pool.ctx``) that is
  assigned a ZMQ context *anywhere* in the file (``z.Context()``,
  ``zmq.Context.instance()``, ``zmq.asyncio.Context()``, ``ctx or zmq.Context()``,
  ``with zmq.Context() as ctx``, ``ctx: zmq.Context`` annotations, a helper
  function or method that returns a context, a local subclass of
  ``zmq.Context``) is a context everywhere in the file. Scopes are not told
  apart, and the first value bound to a name wins. Plain aliases
  (``Thread = threading.Thread``) and ``multiprocessing.get_context(...)`` are
  followed the same way.
* ZMQ sockets (``kind: zmq``): ``.socket(...)`` called on such a context
  (``via: context``); ``zmq.Socket(ctx, ...)`` (``via: constructor``); and,
  because agents usually get ``self.context`` from BaseAgent in another file,
  ``.socket(...)`` on anything whose first argument is a ZMQ socket type such as
  ``zmq.REP`` (``via: socket-type``), or, when the file imports zmq, on a
  receiver named like a context (``context``, ``ctx``, ``zmq_context``...;
  ``via: name``).
* Raw sockets (``kind: raw``): ``socket.socket``, ``socket.create_connection``,
  ``socket.create_server``, ``socket.socketpair``, ``socket.fromfd``.
* Threads: ``threading.Thread``, ``threading.Timer``, ``ThreadPoolExecutor``,
  ``ProcessPoolExecutor``, ``multiprocessing`` ``Process``/``Pool`` (also through
  ``get_context()`` and ``multiprocessing.pool``/``multiprocessing.dummy``),
  ``_thread.start_new_thread``, and instantiations of classes in the file that
  derive from any of these.
* GPU operations: calls into ``torch.cuda``, NVML (``pynvml``, ``nvidia_smi``),
  ``GPUtil``, ``cupy``, ``numba.cuda``; ``.cuda()``; ``.to(...)`` or
  ``torch.device(...)`` with a "cuda" string; a command starting with
  ``nvidia-smi``; and any call whose callee mentions ``cuda``, ``gpu``, ``vram``
  or ``nvml`` (``self._get_vram_usage()``).
* Critical functions: a function or method whose name, or whose body (calls,
  names and attributes, not counting nested functions), mentions model
  loading/unloading (``load_model``, ``unload``, ``from_pretrained``,
  ``torch.load``; a name with both "load" and "model"), VRAM/GPU (``cuda``,
  ``gpu``, ``vram``, ``nvml``, or any GPU operation) or health (``health``).
* BaseAgent: a class derives from ``BaseAgent`` (under any import path or
  alias, or through another class in the file that does). ``super_init``: every
  such class's ``__init__`` calls ``super().__init__`` (or
  ``BaseAgent.__init__(self, ...)``); a class without its own ``__init__``
  inherits its parent's, which counts. ``health_method``: every such class
  defines ``_get_health_status`` (itself or through a parent in the file); with
  no BaseAgent class, whether any function of that name is defined.
* ``code_lines``: lines holding a token other than a comment, i.e. without
  blank and comment-only lines (docstrings count as code).
* Code complexity: the cyclomatic complexity of each function (1 + if, for,
  while, except, conditional expression, ``and``/``or``, comprehension clause,
  match case), not counting nested functions.

Risk score
----------
Six factors, 0-10 points each, 60 at most. Each measure takes the points of the
highest threshold it reaches. The table, as `scoring_table()` prints it:

factor           measure, threshold for points:      2     4     6     8    10
file size        size in KB (1024 bytes)             5    20    50   100   200
code complexity  code lines                        150   500  1000  2000  3000
                 or largest function complexity     10    15    25    40    60
sockets          ZMQ + raw socket sites              1     5    10    20    40
threads          thread/process sites                1     3     6    12    20
GPU operations   GPU operation sites                 1     5    10    20    30
BaseAgent gaps   no BaseAgent class: 10; otherwise missing super().__init__: 6,
                 missing _get_health_status: 4
level            LOW <= 15 < MEDIUM <= 30 < HIGH <= 45 < CRITICAL

Code complexity takes the higher of its two rows. Worked example, a
ModelManagerAgent-like file (227 KB, 3557 code lines, 53 sockets, 29 threads,
heavy GPU use, BaseAgent compliant): 10 + 10 + 10 + 10 + 10 + 0 = 50/60,
CRITICAL. A BaseAgent-compliant file cannot score more than 50: the last 10
points are reserved for agents that are not BaseAgents yet.
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator._exceptions import ConfigError, Problem

RISK_MAX = 60
FACTOR_MAX = 10

# (threshold, points), highest first: the measure gets the points of the first
# threshold it reaches, else 0. Keep in step with the table in the docstring
# (a test checks that `scoring_table()` is in it).
SIZE_KB_STEPS: tuple[tuple[int, int], ...] = ((200, 10), (100, 8), (50, 6), (20, 4), (5, 2))
CODE_LINE_STEPS: tuple[tuple[int, int], ...] = (
    (3000, 10), (2000, 8), (1000, 6), (500, 4), (150, 2),
)
FUNCTION_COMPLEXITY_STEPS: tuple[tuple[int, int], ...] = (
    (60, 10), (40, 8), (25, 6), (15, 4), (10, 2),
)
SOCKET_STEPS: tuple[tuple[int, int], ...] = ((40, 10), (20, 8), (10, 6), (5, 4), (1, 2))
THREAD_STEPS: tuple[tuple[int, int], ...] = ((20, 10), (12, 8), (6, 6), (3, 4), (1, 2))
GPU_STEPS: tuple[tuple[int, int], ...] = ((30, 10), (20, 8), (10, 6), (5, 4), (1, 2))
GAP_NOT_BASE_AGENT = 10
GAP_NO_SUPER_INIT = 6
GAP_NO_HEALTH = 4
# (highest score, level), in order; above the last is CRITICAL.
LEVELS: tuple[tuple[int, str], ...] = ((15, "LOW"), (30, "MEDIUM"), (45, "HIGH"))
CRITICAL = "CRITICAL"

_CONTEXT = "zmq.Context()"  # the symbolic value of a ZMQ context instance
_RAW_SOCKET_CALLS = frozenset({
    "socket.socket", "socket.create_connection", "socket.create_server",
    "socket.socketpair", "socket.fromfd",
})
# qualified name -> kind reported in the thread locations
_THREAD_CALLS: dict[str, str] = {
    "threading.Thread": "threading.Thread",
    "threading.Timer": "threading.Timer",
    "concurrent.futures.ThreadPoolExecutor": "ThreadPoolExecutor",
    "concurrent.futures.thread.ThreadPoolExecutor": "ThreadPoolExecutor",
    "concurrent.futures.ProcessPoolExecutor": "ProcessPoolExecutor",
    "concurrent.futures.process.ProcessPoolExecutor": "ProcessPoolExecutor",
    "multiprocessing.Process": "multiprocessing.Process",
    "multiprocessing.context.Process": "multiprocessing.Process",
    "multiprocessing.Pool": "multiprocessing.Pool",
    "multiprocessing.pool.Pool": "multiprocessing.Pool",
    "multiprocessing.pool.ThreadPool": "multiprocessing.ThreadPool",
    "multiprocessing.dummy.Pool": "multiprocessing.ThreadPool",
    "multiprocessing.dummy.Process": "multiprocessing.dummy.Process",
    "_thread.start_new_thread": "_thread.start_new_thread",
    "_thread.start_new": "_thread.start_new_thread",
}
# Base classes a class in the file may derive from and still be recognised.
_TRACKED_CLASSES = frozenset(
    {"zmq.Context", "zmq.asyncio.Context", "zmq.green.Context", "zmq.Socket",
     "zmq.asyncio.Socket", "socket.socket"}
    | {name for name in _THREAD_CALLS if not name.startswith("_thread.")}
)
_GPU_MODULES = ("torch.cuda", "pynvml", "py3nvml", "nvidia_smi", "GPUtil", "cupy", "numba.cuda")
_GPU_WORDS = ("cuda", "gpu", "vram", "nvml")
_MODEL_WORDS = ("load_model", "unload", "from_pretrained")
_HEALTH_WORDS = ("health",)
_CONTEXT_NAME = re.compile(r"^_*(zmq_?)?(context|ctx)$", re.IGNORECASE)
_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def scoring_table() -> str:
    """The scoring thresholds as a text table (the same table as in this module's docstring)."""

    def row(label: str, measure: str, steps: tuple[tuple[int, int], ...]) -> str:
        cells = "".join(f"{threshold:>6}" for threshold, _ in reversed(steps))
        return f"{label:<17}{measure:<31}{cells}".rstrip()

    levels = " < ".join(f"{name} <= {top}" for top, name in LEVELS)
    return "\n".join([
        f"{'factor':<17}{'measure, threshold for points:':<31}"
        + "".join(f"{p:>6}" for p in (2, 4, 6, 8, 10)),
        row("file size", "size in KB (1024 bytes)", SIZE_KB_STEPS),
        row("code complexity", "code lines", CODE_LINE_STEPS),
        row("", "or largest function complexity", FUNCTION_COMPLEXITY_STEPS),
        row("sockets", "ZMQ + raw socket sites", SOCKET_STEPS),
        row("threads", "thread/process sites", THREAD_STEPS),
        row("GPU operations", "GPU operation sites", GPU_STEPS),
        f"{'BaseAgent gaps':<17}no BaseAgent class: {GAP_NOT_BASE_AGENT}; otherwise missing "
        f"super().__init__: {GAP_NO_SUPER_INIT},",
        f"{'':<17}missing _get_health_status: {GAP_NO_HEALTH}",
        f"{'level':<17}{levels} < {CRITICAL}",
    ])


# --------------------------------------------------------------------------- reading


def _problem(path: Path, line: int, message: str) -> ConfigError:
    return ConfigError([Problem(str(path), line, message)])


def _read_source(path: Path) -> tuple[bytes, str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _problem(path, 0, f"cannot read: {exc.strerror or exc}") from exc
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        text = data.decode(encoding)
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        raise _problem(path, 0, f"cannot decode as Python source: {exc}") from exc
    return data, text


def _parse(path: Path, text: str) -> ast.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes is not our business
            return ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        raise _problem(path, exc.lineno or 0, f"not valid Python: {exc.msg}") from exc
    except (ValueError, RecursionError, MemoryError) as exc:
        raise _problem(path, 0, f"not valid Python: {exc}") from exc


def _line_counts(text: str) -> tuple[int, int]:
    """(total lines, code lines): code lines hold a token that is not a comment."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
            tokenize.DEDENT, tokenize.ENDMARKER, tokenize.ENCODING}
    rows: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type not in skip:
                rows.update(range(tok.start[0], tok.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):  # pragma: no cover - ast.parse accepted it
        rows = {i + 1 for i, line in enumerate(lines)
                if line.strip() and not line.lstrip().startswith("#")}
    code = sum(1 for row in rows if 0 < row <= len(lines) and lines[row - 1].strip())
    return len(lines), code


# --------------------------------------------------------------------------- names


def _dotted(node: ast.expr) -> str | None:
    """`a.b.c` for a chain of names and attributes, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _text(node: ast.AST, limit: int = 80) -> str:
    text = ast.unparse(node)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _own_nodes(func: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function's body, not descending into nested functions or classes."""
    stack: list[ast.AST] = list(ast.iter_child_nodes(func))
    if isinstance(func, _FUNCS):  # decorators and defaults run in the enclosing scope
        stack = list(func.body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _SCOPES):
            stack.extend(ast.iter_child_nodes(node))


def _is_context_class(qualname: str) -> bool:
    parts = qualname.split(".")
    if parts[0] != "zmq" or "Context" not in parts:
        return False
    return parts[-1] in ("Context", "instance", "shadow", "shadow_pyczmq")


@dataclass
class _Function:
    qualname: str
    node: ast.FunctionDef | ast.AsyncFunctionDef
    cls: ast.ClassDef | None


class _Names:
    """Import aliases plus file-wide bindings of names/attributes to symbolic values.

    A symbolic value is a qualified name (``zmq``, ``threading.Thread``) or an
    instance marker (``zmq.Context()``).
    """

    def __init__(self, tree: ast.Module) -> None:
        self.imports: dict[str, str] = {}
        self.star: list[str] = []
        self.bindings: dict[str, str] = {}
        self.returns: dict[str, str] = {}
        self.functions: list[_Function] = []
        self.classes: list[ast.ClassDef] = []
        self._collect(tree, [], None)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.imports[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        self.imports.setdefault(top, top)
            elif isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                for alias in node.names:
                    if alias.name == "*":
                        self.star.append(module)
                    else:
                        full = f"{module}.{alias.name}" if module and module[-1] != "." \
                            else module + alias.name
                        self.imports[alias.asname or alias.name] = full
        self.imports_zmq = any(q == "zmq" or q.startswith("zmq.") for q in self.imports.values()) \
            or any(m == "zmq" or m.startswith("zmq.") for m in self.star)
        self._bind(tree)

    def _collect(self, node: ast.AST, prefix: list[str], cls: ast.ClassDef | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                self.classes.append(child)
                self._collect(child, [*prefix, child.name], child)
            elif isinstance(child, _FUNCS):
                self.functions.append(_Function(".".join([*prefix, child.name]), child, cls))
                self._collect(child, [*prefix, child.name], None)
            else:
                self._collect(child, prefix, cls)

    # -- resolution

    def resolve(self, node: ast.expr | None) -> str | None:
        if node is None:
            return None
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.Attribute):
            key = _dotted(node)
            if key is not None and key in self.bindings:
                return self.bindings[key]
            base = self.resolve(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Call):
            func = self.resolve(node.func)
            if func is not None:
                if _is_context_class(func):
                    return _CONTEXT
                if func == "multiprocessing.get_context":
                    return "multiprocessing"
            key = _dotted(node.func)
            return self.returns.get(key) if key else None
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                found = self.resolve(value)
                if found:
                    return found
            return None
        if isinstance(node, ast.IfExp):
            return self.resolve(node.body) or self.resolve(node.orelse)
        if isinstance(node, ast.NamedExpr):
            return self.resolve(node.value)
        if isinstance(node, ast.Await):
            return self.resolve(node.value)
        return None

    def _name(self, name: str) -> str | None:
        if name in self.bindings:
            return self.bindings[name]
        if name in self.imports:
            return self.imports[name]
        for module in self.star:
            candidate = f"{module}.{name}"
            if candidate in _THREAD_CALLS or candidate in _RAW_SOCKET_CALLS \
                    or candidate in _TRACKED_CLASSES or _is_context_class(candidate):
                return candidate
        return None

    def _annotation(self, node: ast.expr | None) -> str | None:
        """The instance an annotation promises, for ZMQ contexts only."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                node = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                return None
        qualname = self.resolve(node) if node is not None else None
        return _CONTEXT if qualname and _is_context_class(qualname) else None

    # -- dataflow

    def _bind(self, tree: ast.Module) -> None:
        pairs: list[tuple[ast.expr, ast.expr]] = []
        annotated: list[tuple[ast.expr, ast.expr]] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    pairs.extend(_unpack(target, node.value))
            elif isinstance(node, ast.AnnAssign):
                if node.value is not None:
                    pairs.append((node.target, node.value))
                annotated.append((node.target, node.annotation))
            elif isinstance(node, ast.NamedExpr):
                pairs.append((node.target, node.value))
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                pairs.append((node.optional_vars, node.context_expr))
        params = [arg for f in self.functions for arg in _all_args(f.node.args)
                  if arg.annotation is not None]
        for _ in range(len(pairs) + len(self.functions) + len(self.classes) + 2):
            before = (len(self.bindings), len(self.returns))
            for target, value in pairs:
                self._bind_one(target, self.resolve(value))
            for target, annotation in annotated:
                self._bind_one(target, self._annotation(annotation))
            for arg in params:
                found = self._annotation(arg.annotation)
                if found:
                    self.bindings.setdefault(arg.arg, found)
            for cls in self.classes:
                for base in cls.bases:
                    qualname = self.resolve(base)
                    if qualname in _TRACKED_CLASSES:
                        self.bindings.setdefault(cls.name, qualname)
            for func in self.functions:
                self._bind_returns(func)
            if (len(self.bindings), len(self.returns)) == before:
                break

    def _bind_one(self, target: ast.expr, value: str | None) -> None:
        key = _dotted(target)
        if key is not None and value is not None and key != value:
            self.bindings.setdefault(key, value)

    def _bind_returns(self, func: _Function) -> None:
        name = func.node.name
        keys = [f"self.{name}", f"cls.{name}", f"{func.cls.name}.{name}"] if func.cls else [name]
        if all(key in self.returns for key in keys):
            return
        for node in _own_nodes(func.node):
            if isinstance(node, ast.Return):
                found = self.resolve(node.value)
                if found:
                    for key in keys:
                        self.returns.setdefault(key, found)
                    return


def _unpack(target: ast.expr, value: ast.expr) -> list[tuple[ast.expr, ast.expr]]:
    if isinstance(target, ast.Tuple | ast.List):
        if isinstance(value, ast.Tuple | ast.List) and len(value.elts) == len(target.elts):
            out: list[tuple[ast.expr, ast.expr]] = []
            for t, v in zip(target.elts, value.elts, strict=True):
                out.extend(_unpack(t, v))
            return out
        return []
    return [(target, value)]


def _all_args(args: ast.arguments) -> list[ast.arg]:
    out = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    if args.vararg:
        out.append(args.vararg)
    if args.kwarg:
        out.append(args.kwarg)
    return out


# --------------------------------------------------------------------------- detectors


def _strings(nodes: list[ast.expr]) -> Iterator[str]:
    for arg in nodes:
        for sub in ast.walk(arg):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                yield sub.value


def _socket(kind: str, call: ast.Call, via: str) -> dict[str, Any]:
    return {"line": call.lineno, "kind": kind, "call": _text(call.func), "via": via}


def _socket_site(names: _Names, call: ast.Call) -> dict[str, Any] | None:
    func = names.resolve(call.func)
    if func in _RAW_SOCKET_CALLS:
        return _socket("raw", call, func)
    if func is not None and func.startswith("zmq.") and func.split(".")[-1] == "Socket":
        return _socket("zmq", call, "constructor")
    if not isinstance(call.func, ast.Attribute) or call.func.attr != "socket":
        return None
    receiver = names.resolve(call.func.value)
    if receiver == _CONTEXT:
        return _socket("zmq", call, "context")
    if receiver is not None and not receiver.endswith("()"):
        return None  # a module or class we know, and not a ZMQ context
    type_arg: ast.expr | None = call.args[0] if call.args else None
    for kw in call.keywords:
        if kw.arg == "socket_type":
            type_arg = kw.value
    socket_type = names.resolve(type_arg)
    if socket_type is not None and socket_type.startswith("zmq."):
        return _socket("zmq", call, "socket-type")
    key = _dotted(call.func.value)
    if names.imports_zmq and key and _CONTEXT_NAME.match(key.split(".")[-1]):
        return _socket("zmq", call, "name")
    return None


def _thread_site(names: _Names, call: ast.Call) -> dict[str, Any] | None:
    func = names.resolve(call.func)
    if func in _THREAD_CALLS:
        return {"line": call.lineno, "kind": _THREAD_CALLS[func], "call": _text(call.func)}
    return None


def _is_gpu_call(names: _Names, call: ast.Call) -> bool:
    func = names.resolve(call.func) or ""
    if any(func == m or func.startswith(m + ".") for m in _GPU_MODULES):
        return True
    callee = _text(call.func, limit=10_000).lower()
    if any(word in callee for word in _GPU_WORDS):
        return True
    args = [*call.args, *(kw.value for kw in call.keywords)]
    if isinstance(call.func, ast.Attribute) and call.func.attr == "cuda":
        return True
    if (func == "torch.device" or (isinstance(call.func, ast.Attribute)
                                   and call.func.attr == "to")) \
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


def _complexity(nodes: Iterator[ast.AST]) -> int:
    """Decision points among `nodes`."""
    points = 0
    for node in nodes:
        if isinstance(node, ast.If | ast.For | ast.AsyncFor | ast.While | ast.IfExp
                      | ast.ExceptHandler | ast.match_case):
            points += 1
        elif isinstance(node, ast.BoolOp):
            points += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            points += 1 + len(node.ifs)
    return points


def _touches(names: _Names, func: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    name = func.name.lower()
    model = "unload" in name or ("load" in name and "model" in name) \
        or any(w in name for w in _MODEL_WORDS)
    gpu = any(w in name for w in _GPU_WORDS)
    health = any(w in name for w in _HEALTH_WORDS)
    for node in _own_nodes(func):
        ident = ""
        if isinstance(node, ast.Name):
            ident = node.id.lower()
        elif isinstance(node, ast.Attribute):
            ident = node.attr.lower()
        elif isinstance(node, ast.Call):
            gpu = gpu or _is_gpu_call(names, node)
            model = model or names.resolve(node.func) == "torch.load" \
                or (names.resolve(node.func) or "").startswith("safetensors.")
        if ident:
            model = model or any(w in ident for w in _MODEL_WORDS)
            gpu = gpu or any(w in ident for w in _GPU_WORDS)
            health = health or any(w in ident for w in _HEALTH_WORDS)
    return [label for label, hit in (("model", model), ("gpu", gpu), ("health", health)) if hit]


def _base_agent(names: _Names) -> dict[str, Any]:
    agents: dict[str, ast.ClassDef] = {}
    parents: dict[str, str | None] = {}  # agent class -> local agent parent, if any
    changed = True
    while changed:
        changed = False
        for cls in names.classes:
            if cls.name in agents:
                continue
            for base in cls.bases:
                if isinstance(base, ast.Name) and base.id in agents:
                    agents[cls.name], parents[cls.name], changed = cls, base.id, True
                    break
                qualname = names.resolve(base) or _dotted(base) or ""
                if qualname.split(".")[-1] == "BaseAgent":
                    agents[cls.name], parents[cls.name], changed = cls, None, True
                    break

    def own(cls: ast.ClassDef, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        for stmt in cls.body:
            if isinstance(stmt, _FUNCS) and stmt.name == name:
                return stmt
        return None

    def calls_super_init(cls: ast.ClassDef, init: ast.AST) -> bool:
        base_names = {(_dotted(b) or "").split(".")[-1] for b in cls.bases}
        for node in _own_nodes(init):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "__init__"):
                continue
            target = node.func.value
            if isinstance(target, ast.Call) and isinstance(target.func, ast.Name) \
                    and target.func.id == "super":
                return True
            if (_dotted(target) or "").split(".")[-1] in base_names:
                return True
        return False

    def status(name: str, seen: frozenset[str] = frozenset()) -> tuple[bool, bool]:
        cls, parent = agents[name], parents[name]
        inherited = (True, False) if parent is None or parent in seen \
            else status(parent, seen | {name})
        init = own(cls, "__init__")
        super_init = calls_super_init(cls, init) if init is not None else inherited[0]
        health = own(cls, "_get_health_status") is not None or inherited[1]
        return super_init, health

    classes = []
    for name, cls in sorted(agents.items(), key=lambda item: item[1].lineno):
        super_init, health = status(name)
        classes.append({"name": name, "line": cls.lineno, "super_init": super_init,
                        "health_method": health})
    if classes:
        health_method = all(c["health_method"] for c in classes)
    else:
        health_method = any(f.node.name == "_get_health_status" for f in names.functions)
    return {
        "inherits": bool(classes),
        "super_init": bool(classes) and all(c["super_init"] for c in classes),
        "health_method": health_method,
        "classes": classes,
    }


# --------------------------------------------------------------------------- scoring


def _points(value: int, steps: tuple[tuple[int, int], ...]) -> int:
    for threshold, points in steps:
        if value >= threshold:
            return points
    return 0


def _level(score: int) -> str:
    for top, name in LEVELS:
        if score <= top:
            return name
    return CRITICAL


def risk_score(*, size_bytes: int, code_lines: int, max_function_complexity: int,
               sockets: int, threads: int, gpu_operations: int, inherits: bool,
               super_init: bool, health_method: bool) -> dict[str, Any]:
    """The risk section of a report, from the measures alone (see the module's table)."""
    size_kb = size_bytes // 1024
    size_points = _points(size_kb, SIZE_KB_STEPS)
    line_points = _points(code_lines, CODE_LINE_STEPS)
    func_points = _points(max_function_complexity, FUNCTION_COMPLEXITY_STEPS)
    if func_points > line_points:
        complexity_reason = (f"largest function complexity {max_function_complexity} "
                             f"(code lines {code_lines} alone: {line_points})")
    else:
        complexity_reason = (f"{code_lines} code lines (largest function complexity "
                             f"{max_function_complexity})")
    if not inherits:
        gap_points, gap_reason = GAP_NOT_BASE_AGENT, "no class derives from BaseAgent"
    else:
        missing = []
        gap_points = 0
        if not super_init:
            gap_points += GAP_NO_SUPER_INIT
            missing.append(f"__init__ does not call super().__init__ (+{GAP_NO_SUPER_INIT})")
        if not health_method:
            gap_points += GAP_NO_HEALTH
            missing.append(f"no _get_health_status (+{GAP_NO_HEALTH})")
        gap_reason = "; ".join(missing) or "BaseAgent compliant"
    factors = [
        _factor("file size", size_points, f"{size_kb} KB"),
        _factor("code complexity", max(line_points, func_points), complexity_reason),
        _factor("sockets", _points(sockets, SOCKET_STEPS), f"{sockets} socket sites"),
        _factor("threads", _points(threads, THREAD_STEPS), f"{threads} thread/process sites"),
        _factor("GPU operations", _points(gpu_operations, GPU_STEPS),
                f"{gpu_operations} GPU operation sites"),
        _factor("BaseAgent gaps", gap_points, gap_reason),
    ]
    score = sum(f["points"] for f in factors)
    return {"score": score, "max": RISK_MAX, "level": _level(score), "factors": factors}


def _factor(name: str, points: int, reason: str) -> dict[str, Any]:
    return {"name": name, "points": points, "max": FACTOR_MAX, "reason": reason}


# --------------------------------------------------------------------------- public


def analyze_file(path: Path) -> dict[str, Any]:
    """The analysis document of one Python file; ConfigError if unreadable or not Python."""
    path = Path(path)
    data, text = _read_source(path)
    tree = _parse(path, text)
    total_lines, code_lines = _line_counts(text)
    names = _Names(tree)

    sockets: list[dict[str, Any]] = []
    threads: list[dict[str, Any]] = []
    gpu: list[dict[str, Any]] = []
    calls = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)),
                   key=lambda n: (n.lineno, n.col_offset))
    for call in calls:
        socket_site = _socket_site(names, call)
        if socket_site is not None:
            sockets.append(socket_site)
        thread_site = _thread_site(names, call)
        if thread_site is not None:
            threads.append(thread_site)
        if _is_gpu_call(names, call):
            gpu.append({"line": call.lineno, "call": _text(call.func)})

    functions = sorted(names.functions, key=lambda f: f.node.lineno)
    worst: dict[str, Any] | None = None
    critical = []
    for func in functions:
        cc = 1 + _complexity(_own_nodes(func.node))
        if worst is None or cc > worst["complexity"]:
            worst = {"name": func.qualname, "line": func.node.lineno, "complexity": cc}
        touches = _touches(names, func.node)
        if touches:
            critical.append({"name": func.qualname, "line": func.node.lineno,
                             "touches": touches})

    base_agent = _base_agent(names)
    zmq_count = sum(1 for s in sockets if s["kind"] == "zmq")
    risk = risk_score(
        size_bytes=len(data), code_lines=code_lines,
        max_function_complexity=worst["complexity"] if worst else 0,
        sockets=len(sockets), threads=len(threads), gpu_operations=len(gpu),
        inherits=base_agent["inherits"], super_init=base_agent["super_init"],
        health_method=base_agent["health_method"],
    )
    return {
        "file": str(path),
        "size_bytes": len(data),
        "total_lines": total_lines,
        "code_lines": code_lines,
        "base_agent": base_agent,
        "sockets": {"count": len(sockets), "zmq": zmq_count, "raw": len(sockets) - zmq_count,
                    "locations": sockets},
        "threads": {"count": len(threads), "locations": threads},
        "gpu_operations": {"count": len(gpu), "locations": gpu},
        "complexity": {"decision_points": _complexity(ast.walk(tree)),
                       "functions": len(functions), "max_function": worst},
        "critical_functions": critical,
        "risk": risk,
    }


def _python_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        found.extend(Path(dirpath) / name for name in filenames if name.endswith(".py"))
    return sorted(found)


def analyze_path(path: Path) -> dict[str, Any]:
    """A file: its report; a directory: one report per `.py` under it (sorted by path).

    Either way ``{"reports": [...], "summary": [{file, score, level}, ...]}`` with the
    summary sorted by risk, highest first. Every unreadable or invalid file of a
    directory is collected into one ConfigError.
    """
    path = Path(path)
    if path.is_dir():
        reports, problems = [], []
        for file in _python_files(path):
            try:
                reports.append(analyze_file(file))
            except ConfigError as exc:
                problems.extend(exc.problems)
        if problems:
            raise ConfigError(problems)
    elif path.exists():
        reports = [analyze_file(path)]
    else:
        raise _problem(path, 0, "no such file or directory")
    summary = sorted(
        ({"file": r["file"], "score": r["risk"]["score"], "level": r["risk"]["level"]}
         for r in reports),
        key=lambda s: (-s["score"], s["file"]),
    )
    return {"reports": reports, "summary": summary}


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def _render_report(doc: dict[str, Any]) -> list[str]:
    out = [doc["file"], "=" * len(doc["file"])]
    out.append(f"size        {doc['size_bytes']:,} bytes, {doc['total_lines']:,} lines "
               f"({doc['code_lines']:,} code)")
    ba = doc["base_agent"]
    out.append(f"BaseAgent   inherits {_yes(ba['inherits'])}, super().__init__ "
               f"{_yes(ba['super_init'])}, _get_health_status {_yes(ba['health_method'])}")
    for cls in ba["classes"]:
        out.append(f"              line {cls['line']:>5}  class {cls['name']}")
    socks = doc["sockets"]
    out.append(f"sockets     {socks['count']} ({socks['zmq']} zmq, {socks['raw']} raw)")
    for s in socks["locations"]:
        out.append(f"              line {s['line']:>5}  {s['kind']:<4} {s['call']}  "
                   f"[{s['via']}]")
    threads = doc["threads"]
    out.append(f"threads     {threads['count']}")
    for t in threads["locations"]:
        out.append(f"              line {t['line']:>5}  {t['kind']}  ({t['call']})")
    out.append(f"GPU ops     {doc['gpu_operations']['count']}")
    cx = doc["complexity"]
    worst = cx["max_function"]
    worst_text = f", most complex {worst['name']} (line {worst['line']}): " \
        f"{worst['complexity']}" if worst else ""
    out.append(f"complexity  {cx['decision_points']} decision points in "
               f"{cx['functions']} functions{worst_text}")
    out.append(f"critical    {len(doc['critical_functions'])} functions")
    for f in doc["critical_functions"]:
        out.append(f"              line {f['line']:>5}  {f['name']}  "
                   f"({', '.join(f['touches'])})")
    risk = doc["risk"]
    out.append(f"risk        {risk['score']}/{risk['max']} {risk['level']}")
    for factor in risk["factors"]:
        out.append(f"              {factor['name']:<16} {factor['points']:>2}/{factor['max']}"
                   f"  {factor['reason']}")
    return out


def render_text(result: dict[str, Any]) -> str:
    """A readable report of `analyze_path`'s result (or of a single `analyze_file` document)."""
    reports = result["reports"] if "reports" in result else [result]
    if not reports:
        return "no Python files found"
    lines: list[str] = []
    for doc in reports:
        lines.extend(_render_report(doc))
        lines.append("")
    summary = result.get("summary") or []
    if len(summary) > 1:
        lines.append("summary (highest risk first)")
        for entry in summary:
            lines.append(f"  {entry['score']:>2}/{RISK_MAX} {entry['level']:<8}  {entry['file']}")
    else:
        lines.append("scoring: each factor 0-10; LOW <= 15 < MEDIUM <= 30 < HIGH <= 45 < CRITICAL")
    return "\n".join(lines).rstrip() + "\n"
