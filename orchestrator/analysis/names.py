"""What a name in the file stands for: imports, aliases and simple file-wide dataflow.

Every detector asks the same question, "is this `zmq.Context`, `threading.Thread`,
`socket.socket`...?", so the answer lives here, computed once per file.

One walk of the tree (`Names.__init__`) collects everything the detectors need:
imports, assignments, calls (with the function that owns each), functions and
classes, and per function its own calls, returns, identifiers and decision
points (a function's *own* nodes are those of its body, not of functions or
classes nested in it; its decorators and defaults belong to the enclosing scope).
One walk instead of one per question is what keeps a 300-file tree within the
time budget (see `bench/analyze.py`).

Resolution
----------
* Imports, whatever their form and wherever they are (``import zmq as z``,
  ``from zmq import Context``, ``from threading import *``).
* Names and dotted attributes (``ctx``, ``self.context``, ``self.pool.ctx``)
  bound anywhere in the file to something known: a ZMQ context (``zmq.Context()``,
  ``zmq.Context.instance()``, ``ctx or zmq.Context()``, ``with zmq.Context() as c``,
  a ``zmq.Context`` annotation, a helper returning one), a ZMQ or raw socket
  (so that ``self.rep.bind(...)`` is known as a socket operation), a plain alias
  (``Thread = threading.Thread``), ``multiprocessing.get_context(...)``.
  Scopes are not told apart, and the first binding in the file (by line) wins;
  a name the file imports keeps meaning the import (``socket = ctx.socket(...)``
  in one function does not make every ``socket.socket()`` a ZMQ socket).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

CONTEXT = "zmq.Context()"  # the symbolic value of a ZMQ context instance
ZMQ_SOCKET = "zmq.Socket()"  # ... of a ZMQ socket
RAW_SOCKET = "socket.socket()"  # ... of a raw socket

RAW_SOCKET_CALLS = frozenset({
    "socket.socket", "socket.create_connection", "socket.create_server",
    "socket.socketpair", "socket.fromfd",
})
# qualified name -> kind reported in the thread locations
THREAD_CALLS: dict[str, str] = {
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
TRACKED_CLASSES = frozenset(
    {"zmq.Context", "zmq.asyncio.Context", "zmq.green.Context", "zmq.Socket",
     "zmq.asyncio.Socket", "socket.socket"}
    | {name for name in THREAD_CALLS if not name.startswith("_thread.")}
)
FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)
CONTEXT_NAME = re.compile(r"^_*(zmq_?)?(context|ctx)$", re.IGNORECASE)
# Node types whose value may resolve to something known; other assignments are skipped.
_RESOLVABLE = (ast.Name, ast.Attribute, ast.Call, ast.BoolOp, ast.IfExp, ast.NamedExpr,
               ast.Await, ast.Tuple, ast.List)
# Decision points by node type (BoolOp and comprehension: computed from the node).
_DECISION_POINTS: dict[type, int] = {
    ast.If: 1, ast.For: 1, ast.AsyncFor: 1, ast.While: 1, ast.IfExp: 1, ast.ExceptHandler: 1,
    ast.match_case: 1, ast.BoolOp: 0, ast.comprehension: 0,
}
# Fields that never hold a node worth visiting (strings, operators, contexts, aliases).
_SKIP_FIELDS = frozenset({"ctx", "op", "ops", "type_ignores", "names", "kwd_attrs", "id",
                          "attr", "arg", "name", "asname", "module", "level", "kind",
                          "is_async", "simple", "conversion", "type_comment", "rest"})
_FIELDS: dict[type, tuple[str, ...]] = {}


def dotted(node: ast.expr) -> str | None:
    """`a.b.c` for a chain of names and attributes, else None."""
    if node.__class__ is ast.Name:
        return node.id  # type: ignore[attr-defined]
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def source_text(node: ast.AST, limit: int = 80) -> str:
    text = ast.unparse(node)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_context_class(qualname: str) -> bool:
    parts = qualname.split(".")
    if parts[0] != "zmq" or "Context" not in parts:
        return False
    return parts[-1] in ("Context", "instance", "shadow", "shadow_pyczmq")


@dataclass(eq=False)
class Function:
    """A function or method, with what its own body holds."""

    qualname: str
    node: ast.FunctionDef | ast.AsyncFunctionDef
    cls: ast.ClassDef | None
    calls: list[ast.Call] = field(default_factory=list)
    returns: list[ast.Return] = field(default_factory=list)
    idents: set[str] = field(default_factory=set)
    decisions: int = 0

    @property
    def params(self) -> list[ast.arg]:
        args = self.node.args
        out = [*args.posonlyargs, *args.args, *args.kwonlyargs]
        if args.vararg:
            out.append(args.vararg)
        if args.kwarg:
            out.append(args.kwarg)
        return out


class Names:
    """Import aliases plus file-wide bindings of names/attributes to symbolic values.

    A symbolic value is a qualified name (``zmq``, ``threading.Thread``) or an
    instance marker (`CONTEXT`, `ZMQ_SOCKET`, `RAW_SOCKET`).
    """

    def __init__(self, tree: ast.Module) -> None:
        self.imports: dict[str, str] = {}
        self.star: list[str] = []
        self.bindings: dict[str, str] = {}
        self.returns: dict[str, str] = {}
        self.functions: list[Function] = []
        self.classes: list[ast.ClassDef] = []
        self.calls: list[tuple[ast.Call, Function | None]] = []
        self.decision_points = 0
        self.string_spans: list[tuple[int, int]] = []
        self._pairs: list[tuple[ast.expr, ast.expr]] = []
        # every assignment with a value, with the function and class body it is in (the
        # endpoint resolution follows ports and addresses through them: see `endpoints`)
        self.assignments: list[tuple[ast.Assign | ast.AnnAssign, Function | None,
                                     ast.ClassDef | None]] = []
        self._annotated: list[tuple[ast.expr, ast.expr]] = []
        self._import_nodes: list[ast.Import | ast.ImportFrom] = []
        self._callees: dict[int, str | None] = {}
        self._dotted_memo: dict[str, str | None] = {}
        self._chains: dict[ast.expr, str | None] = {}  # node -> dotted(node), by identity
        self._bound = False
        self._walk(tree)
        self.functions.sort(key=lambda f: (f.node.lineno, f.node.col_offset))
        self.classes.sort(key=lambda c: (c.lineno, c.col_offset))
        self.calls.sort(key=lambda item: (item[0].lineno, item[0].col_offset))
        self._imports()
        self.imports_zmq = any(q == "zmq" or q.startswith("zmq.") for q in self.imports.values()) \
            or any(m == "zmq" or m.startswith("zmq.") for m in self.star)
        self._bind()
        self._bound = True

    @property
    def pairs(self) -> list[tuple[ast.expr, ast.expr]]:
        """(target, value) of every assignment, walrus and `with ... as` the walk kept."""
        return self._pairs

    # -- the one walk

    def _walk(self, tree: ast.Module) -> None:
        # Hot loop: one pass over every node of the file. Kept flat and untyped
        # (`node: Any`) on purpose; see the module docstring for why one walk.
        decisions = _DECISION_POINTS
        fields_of = _FIELDS
        calls, pairs, spans = self.calls, self._pairs, self.string_spans
        assignments = self.assignments
        # (nodes, owning function, qualname prefix, class whose body this is)
        scopes: list[tuple[list[Any], Function | None, tuple[str, ...],
                           ast.ClassDef | None]] = [(list(tree.body), None, (), None)]
        while scopes:
            stack, owner, prefix, cls = scopes.pop()
            idents = owner.idents if owner is not None else None
            while stack:
                node: Any = stack.pop()
                if node is None:  # a `**spread` key of a dict display
                    continue
                kind = node.__class__
                if kind is ast.Name:
                    if idents is not None:
                        idents.add(node.id)
                    continue  # its only child is ctx
                if kind is ast.Attribute:
                    if idents is not None:
                        idents.add(node.attr)
                    stack.append(node.value)
                    continue
                if kind is ast.Constant:
                    if node.end_lineno > node.lineno:
                        spans.append((node.lineno, node.end_lineno))
                    continue
                # the commonest nodes with nothing to record: their children, directly
                if kind is ast.Expr or kind is ast.Await:
                    stack.append(node.value)
                    continue
                if kind is ast.Subscript:
                    stack.append(node.value)
                    stack.append(node.slice)
                    continue
                if kind is ast.BinOp:
                    stack.append(node.left)
                    stack.append(node.right)
                    continue
                if kind is ast.Compare:
                    stack.append(node.left)
                    stack.extend(node.comparators)
                    continue
                if kind is ast.Call:
                    calls.append((node, owner))
                    if owner is not None:
                        owner.calls.append(node)
                    stack.append(node.func)  # its fields, without the generic loop
                    stack.extend(node.args)
                    for kw in node.keywords:
                        stack.append(kw.value)
                    continue
                elif kind is ast.FunctionDef or kind is ast.AsyncFunctionDef:
                    func = Function(".".join((*prefix, node.name)), node, cls)
                    self.functions.append(func)
                    head: list[Any] = [*node.decorator_list, node.args]
                    if node.returns is not None:
                        head.append(node.returns)
                    scopes.append((head, None, prefix, None))
                    scopes.append((list(node.body), func, (*prefix, node.name), None))
                    continue
                elif kind is ast.ClassDef:
                    self.classes.append(node)
                    scopes.append(([*node.decorator_list, *node.bases, *node.keywords],
                                   None, prefix, None))
                    scopes.append((list(node.body), None, (*prefix, node.name), node))
                    continue
                elif kind is ast.Assign:
                    assignments.append((node, owner, cls))
                    if isinstance(node.value, _RESOLVABLE):
                        for target in node.targets:
                            pairs.extend(_unpack(target, node.value))
                elif kind is ast.AnnAssign:
                    if node.value is not None:
                        assignments.append((node, owner, cls))
                    if node.value is not None and isinstance(node.value, _RESOLVABLE):
                        pairs.append((node.target, node.value))
                    self._annotated.append((node.target, node.annotation))
                elif kind is ast.NamedExpr:
                    pairs.append((node.target, node.value))
                elif kind is ast.withitem:
                    if node.optional_vars is not None:
                        pairs.append((node.optional_vars, node.context_expr))
                elif kind is ast.Return:
                    if owner is not None and node.value is not None:
                        owner.returns.append(node)
                elif kind is ast.Import or kind is ast.ImportFrom:
                    self._import_nodes.append(node)
                    continue
                elif kind is ast.JoinedStr:
                    if node.end_lineno > node.lineno:
                        spans.append((node.lineno, node.end_lineno))
                else:
                    points = decisions.get(kind)
                    if points is None:
                        pass
                    else:
                        if kind is ast.BoolOp:
                            points = len(node.values) - 1
                        elif kind is ast.comprehension:
                            points = 1 + len(node.ifs)
                        self.decision_points += points
                        if owner is not None:
                            owner.decisions += points
                fields = fields_of.get(kind)
                if fields is None:
                    fields = fields_of[kind] = tuple(f for f in kind._fields
                                                     if f not in _SKIP_FIELDS)
                for name in fields:
                    value = getattr(node, name, None)
                    if value.__class__ is list:
                        stack.extend(value)
                    elif isinstance(value, ast.AST):
                        stack.append(value)

    def _imports(self) -> None:
        for node in sorted(self._import_nodes, key=lambda n: (n.lineno, n.col_offset)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.imports[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        self.imports.setdefault(top, top)
            else:
                module = "." * node.level + (node.module or "")
                for alias in node.names:
                    if alias.name == "*":
                        self.star.append(module)
                    else:
                        full = f"{module}.{alias.name}" if module and module[-1] != "." \
                            else module + alias.name
                        self.imports[alias.asname or alias.name] = full

    # -- resolution

    def callee(self, call: ast.Call) -> str | None:
        """`resolve(call.func)`, remembered: every detector asks it of every call."""
        if not self._bound:  # bindings still growing: nothing to remember yet
            return self.resolve(call.func)
        key = id(call)
        if key not in self._callees:
            self._callees[key] = self.resolve(call.func)
        return self._callees[key]

    def resolve(self, node: ast.expr | None) -> str | None:
        if node is None:
            return None
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.Attribute):
            key = self.chain(node)
            if key is None:  # `f().x`, `a[0].x`: resolve what it is taken from
                base = self.resolve(node.value)
                return f"{base}.{node.attr}" if base and not base.endswith("()") else None
            return self._dotted_value(key)
        if isinstance(node, ast.Call):
            return self._call_value(node)
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                found = self.resolve(value)
                if found:
                    return found
            return None
        if isinstance(node, ast.IfExp):
            return self.resolve(node.body) or self.resolve(node.orelse)
        if isinstance(node, ast.NamedExpr | ast.Await):
            return self.resolve(node.value)
        return None

    def chain(self, node: ast.expr) -> str | None:
        """`dotted(node)`, remembered per node (the same callees are asked again and again;
        keyed by the node itself, so that a node that is gone cannot be taken for another)."""
        try:
            return self._chains[node]
        except KeyError:
            found = self._chains[node] = dotted(node)
            return found

    def _dotted_value(self, key: str) -> str | None:
        """`a.b.c`: the longest bound prefix (or the root name), with the rest appended.

        Remembered once the bindings are final: a file asks the same few keys
        (``self.socket.send``, ``logger.info``) thousands of times."""
        if self._bound:
            memo = self._dotted_memo
            if key in memo:
                return memo[key]
            found = memo[key] = self._dotted_lookup(key)
            return found
        return self._dotted_lookup(key)

    def _dotted_lookup(self, key: str) -> str | None:
        bindings = self.bindings
        if key in bindings:
            return bindings[key]
        parts = key.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:cut])
            if prefix in bindings:
                base: str | None = bindings[prefix]
                break
        else:
            cut = 1
            base = self._name(parts[0])
        if base is None or base.endswith("()"):
            return None  # an instance's attributes are not followed
        return ".".join([base, *parts[cut:]])

    def _call_value(self, node: ast.Call) -> str | None:
        func = self.resolve(node.func)
        if func is not None:
            if is_context_class(func):
                return CONTEXT
            if func == "multiprocessing.get_context":
                return "multiprocessing"
            if func in RAW_SOCKET_CALLS and func != "socket.socketpair":
                return RAW_SOCKET
            if func.startswith("zmq.") and func.split(".")[-1] == "Socket":
                return ZMQ_SOCKET
        if isinstance(node.func, ast.Attribute) and node.func.attr == "socket" \
                and self.socket_creation(node) is not None:
            return ZMQ_SOCKET
        key = self.chain(node.func)
        return self.returns.get(key) if key else None

    def socket_creation(self, call: ast.Call) -> tuple[str, str] | None:
        """(kind, via) if `call` creates a socket: kind "zmq" or "raw"; via says how we know.

        via: the raw call's name; "constructor" for ``zmq.Socket(ctx, ...)``; "context"
        for ``.socket()`` on a known context; "socket-type" when the first argument is
        a ZMQ socket type (``zmq.REP``); "name" for ``.socket()`` on a receiver named
        like a context (``context``, ``ctx``, ``zmq_context``) in a file that imports zmq.
        """
        func = self.callee(call)
        if func in RAW_SOCKET_CALLS:
            return "raw", func
        if func is not None and func.startswith("zmq.") and func.split(".")[-1] == "Socket":
            return "zmq", "constructor"
        if not isinstance(call.func, ast.Attribute) or call.func.attr != "socket":
            return None
        receiver = self.resolve(call.func.value)
        if receiver == CONTEXT:
            return "zmq", "context"
        if receiver is not None and not receiver.endswith("()"):
            return None  # a module or class we know, and not a ZMQ context
        socket_type = self.resolve(socket_type_arg(call))
        if socket_type is not None and socket_type.startswith("zmq."):
            return "zmq", "socket-type"
        key = dotted(call.func.value)
        if self.imports_zmq and key and CONTEXT_NAME.match(key.split(".")[-1]):
            return "zmq", "name"
        return None


    def _name(self, name: str) -> str | None:
        if name in self.bindings:
            return self.bindings[name]
        if name in self.imports:
            return self.imports[name]
        for module in self.star:
            candidate = f"{module}.{name}"
            if candidate in THREAD_CALLS or candidate in RAW_SOCKET_CALLS \
                    or candidate in TRACKED_CLASSES or is_context_class(candidate) \
                    or (module == "zmq" and name.isupper()):
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
        return CONTEXT if qualname and is_context_class(qualname) else None

    # -- dataflow

    def _bind(self) -> None:
        keyed = sorted(((key, target, value) for target, value in self._pairs
                        if (key := dotted(target)) is not None),
                       key=lambda p: (p[1].lineno, p[1].col_offset))
        annotated = [(key, a) for t, a in self._annotated if (key := dotted(t)) is not None]
        params = [arg for f in self.functions for arg in f.params if arg.annotation is not None]
        returning = [f for f in self.functions if f.returns]
        for func in returning:
            func.returns.sort(key=lambda r: (r.lineno, r.col_offset))
        bindings = self.bindings
        for _ in range(len(keyed) + len(self.functions) + len(self.classes) + 2):
            before = (len(bindings), len(self.returns))
            unbound = []
            for item in keyed:
                key, _target, value = item
                if key in bindings:
                    continue  # the first binding wins: nothing can change it
                if key in self.imports:
                    continue  # `socket = ctx.socket(...)` in a function shadows the module
                    # there only; the file keeps meaning the module by that name
                found = self.resolve(value)
                if found is not None and found != key:
                    bindings[key] = found
                else:
                    unbound.append(item)
            keyed = unbound
            for key, annotation in annotated:
                found = self._annotation(annotation)
                if found is not None and key not in bindings:
                    bindings[key] = found
            for arg in params:
                found = self._annotation(arg.annotation)
                if found:
                    self.bindings.setdefault(arg.arg, found)
            for cls in self.classes:
                for base in cls.bases:
                    qualname = self.resolve(base)
                    if qualname in TRACKED_CLASSES:
                        self.bindings.setdefault(cls.name, qualname)
            for func in returning:
                self._bind_returns(func)
            if (len(self.bindings), len(self.returns)) == before:
                break

    def _bind_returns(self, func: Function) -> None:
        name = func.node.name
        keys = [f"self.{name}", f"cls.{name}", f"{func.cls.name}.{name}"] if func.cls else [name]
        if all(key in self.returns for key in keys):
            return
        for node in func.returns:
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
    if isinstance(value, ast.Tuple | ast.List):
        return []
    return [(target, value)]


def socket_type_arg(call: ast.Call) -> ast.expr | None:
    """The expression giving a ZMQ socket's type: ``ctx.socket(T)`` or ``zmq.Socket(ctx, T)``."""
    for kw in call.keywords:
        if kw.arg == "socket_type":
            return kw.value
    if isinstance(call.func, ast.Attribute) and call.func.attr == "socket":
        return call.args[0] if call.args else None
    return call.args[1] if len(call.args) > 1 else None
