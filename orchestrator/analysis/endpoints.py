"""Where a file's sockets bind and connect, and which agents it looks up by name.

The program graph (spec section 6) needs, for each agent, what it actually talks to. The
socket sites are `sockets.endpoint_calls`'s; this module follows each one's address back
through the file to a port, a host and, when the code says it, an agent:

* literals (``"tcp://localhost:5570"``, ``("0.0.0.0", 5570)``), f-strings, ``%`` and
  ``.format`` templates, ``+`` concatenation;
* names and attributes through their assignments: locals (the last one before the call in
  the same function), module constants, class attributes and ``self.x`` set in any method
  of the class (or a parent class in the file);
* ``config.get(KEY, DEFAULT)`` and any ``.get(KEY, DEFAULT)``, ``os.environ.get(NAME,
  DEFAULT)``, ``os.getenv``, ``get_env(NAME, DEFAULT)``: the default;
* parameter defaults (``def __init__(self, port=5570)``) and, for a helper's parameter
  without one, the value its callers in the file pass (when they all agree);
* ``int()``/``str()``, ``a + 1``, ``a or b``, ``a if c else b``;
* look-ups by name: ``get_service_address("X")``, ``discover_service("X")``,
  ``connect_to_agent("X")`` and the like point at agent X (also through the value they
  return: ``info = discover_service("X"); info.get("port")``);
* a host from ``get_service_ip("pc2")``, ``get_machine_ip("pc2")`` names a machine;
* ``self.port`` of an agent class that cannot be followed further is the agent's own port
  (the manifest's ``port``), marked ``own_port``.

Each site becomes a dict ``{"line", "op": bind|connect|lookup, "class", "socket",
"address", "port", "host", "machine", "agent", "own_port", "local", "via"}`` where
``address`` is the code as written and ``via`` how the port or agent was found. What
cannot be followed is a site with ``port`` and ``agent`` None: the graph lists it as
unresolved, never drops it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.analysis.names import Function, Names, dotted, source_text
from orchestrator.analysis.sockets import endpoint_calls

LOOKUP_CALL = re.compile(
    r"^(get|discover|find|lookup|resolve|locate|connect_to|connect|query)_(service|agent)"
    r"(_(address|addr|endpoint|connection|conn|url|info|location|socket|port))?$")
MACHINE_CALL = re.compile(r"^get_(\w+_)?ip$|^get_machine_(address|host)$")
ENV_CALLS = frozenset({"os.environ.get", "os.getenv", "os.environ.setdefault"})
ENV_NAMES = frozenset({"get_env", "getenv", "get_env_var", "env_get"})
_DEPTH = 10



@dataclass(frozen=True)
class _Ctx:
    func: Function | None
    cls: str | None
    line: int  # the use: a local's last assignment before it wins


@dataclass
class _Found:
    port: int | None = None
    host: str | None = None
    machine: str | None = None
    agent: str | None = None
    own_port: str | None = None  # "port" or "health_check_port": the agent's own
    local: bool = False
    via: list[str] = field(default_factory=list)
    several: bool = False

    def merge(self, other: _Found) -> _Found:
        return _Found(self.port if self.port is not None else other.port,
                      self.host if self.host is not None else other.host,
                      self.machine or other.machine, self.agent or other.agent,
                      self.own_port or other.own_port, self.local or other.local,
                      self.via + [v for v in other.via if v not in self.via],
                      self.several or other.several)


def endpoint_report(names: Names, sockets: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``endpoints`` of a file's document: its binds, connects and look-ups."""
    calls = endpoint_calls(names, sockets)
    lookups = [(call, owner) for call, owner in names.calls
               if LOOKUP_CALL.match(_last_name(call.func) or "")]
    if not calls and not lookups and not any(
            f.node.name == "__init__" and f.cls is not None for f in names.functions):
        return []
    resolver = _Resolver(names)
    sites = []
    for op, call, owner, socket_type in calls:
        ctx = resolver.ctx(owner, call.lineno)
        arg = _address_arg(call)
        found = resolver.address(arg, ctx, 0) if arg is not None else _Found()
        sites.append(_site(op, call, ctx, socket_type, arg, found))
    for call, owner in lookups:
        ctx = resolver.ctx(owner, call.lineno)
        found = resolver.lookup(call, ctx, 0)
        sites.append(_site("lookup", call, ctx, None, call, found))
    sites += _base_binds(resolver)
    sites.sort(key=lambda s: (s["line"], s["op"]))
    return sites


def _base_binds(resolver: _Resolver) -> list[dict[str, Any]]:
    """``super().__init__(port=...)`` of an agent class: BaseAgent binds that port for it
    (a bind site of the class, ``own_port`` when it cannot be followed)."""
    out = []
    for func in resolver.by_name.get("__init__", ()):
        cls = resolver.class_of(func)
        if cls is None or cls == "BaseAgent" or not resolver.is_agent_class(cls):
            continue
        for call in func.calls:
            if not (isinstance(call.func, ast.Attribute) and call.func.attr == "__init__"):
                continue
            for kw in call.keywords:
                if kw.arg == "port":
                    ctx = resolver.ctx(func, call.lineno)
                    found = resolver.port(kw.value, ctx, 0)
                    found.own_port = "port"
                    found.via = ["super().__init__(port=...)", *found.via]
                    out.append(_site("bind", call, ctx, None, kw.value, found))
    return out


def _site(op: str, call: ast.Call, ctx: _Ctx, socket_type: str | None,
          written: ast.expr | None, found: _Found) -> dict[str, Any]:
    return {"line": call.lineno, "op": op, "class": ctx.cls,
            "function": ctx.func.qualname if ctx.func else None, "socket": socket_type,
            "address": source_text(written, limit=100) if written is not None else "",
            "port": None if found.several else found.port, "host": found.host,
            "machine": found.machine, "agent": found.agent,
            "own_port": found.own_port if found.port is None and not found.agent else None,
            "local": found.local,
            "via": " <- ".join(found.via)}


def _address_arg(call: ast.Call) -> ast.expr | None:
    if call.args:
        return call.args[0]
    for kw in call.keywords:
        if kw.arg in ("addr", "address", "endpoint"):
            return kw.value
    return None


def _last_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _str(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) \
        else None


class _Resolver:
    """The file's assignments, indexed once, and the rules that follow a value."""

    def __init__(self, names: Names) -> None:
        self.names = names
        self.class_nodes = {c.name: c for c in names.classes}
        self.module: dict[str, list[tuple[ast.expr, int]]] = {}
        self.class_attrs: dict[tuple[str, str], list[tuple[ast.expr, int]]] = {}
        self.self_attrs: dict[tuple[str, str], list[tuple[ast.expr, int, Function]]] = {}
        self.locals: dict[tuple[int, str], list[tuple[ast.expr, int]]] = {}
        self.by_name: dict[str, list[Function]] = {}
        self._calls_by_name: dict[str, list[tuple[ast.Call, Function | None]]] | None = None
        for func in names.functions:
            self.by_name.setdefault(func.node.name, []).append(func)
        for node, owner, cls in names.assignments:
            value = node.value
            if value is None:
                continue
            targets: list[ast.expr] = list(node.targets) if isinstance(node, ast.Assign) \
                else [node.target]
            for target, val in _pairs(targets, value):
                key = dotted(target)
                if key is None:
                    continue
                line = node.lineno
                if owner is None and cls is None:
                    self.module.setdefault(key, []).append((val, line))
                elif owner is None and cls is not None:
                    self.class_attrs.setdefault((cls.name, key), []).append((val, line))
                else:
                    assert owner is not None
                    self.locals.setdefault((id(owner), key), []).append((val, line))
                    klass = self.class_of(owner)
                    if klass and key.startswith(("self.", "cls.")):
                        self.self_attrs.setdefault((klass, "self." + key.split(".", 1)[1]),
                                                   []).append((val, line, owner))

    def calls_to(self, name: str) -> list[tuple[ast.Call, Function | None]]:
        """The calls of the file to a function or method of that name (indexed once)."""
        if self._calls_by_name is None:
            self._calls_by_name = {}
            for call, owner in self.names.calls:
                func = call.func
                last = func.id if isinstance(func, ast.Name) \
                    else func.attr if isinstance(func, ast.Attribute) else None
                if last is not None:
                    self._calls_by_name.setdefault(last, []).append((call, owner))
        return self._calls_by_name.get(name, [])

    def class_of(self, func: Function | None) -> str | None:
        if func is None:
            return None
        if func.cls is not None:
            return func.cls.name
        first = func.qualname.split(".")[0]
        return first if first in self.class_nodes else None

    def ctx(self, owner: Function | None, line: int) -> _Ctx:
        return _Ctx(owner, self.class_of(owner), line)

    def parents(self, cls: str) -> list[str]:
        node = self.class_nodes.get(cls)
        if node is None:
            return []
        return [b for b in ((dotted(base) or "").split(".")[-1] for base in node.bases) if b]

    def is_agent_class(self, cls: str | None, seen: frozenset[str] = frozenset()) -> bool:
        if cls is None or cls in seen:
            return False
        if cls == "BaseAgent" or cls.endswith("Agent"):
            return True
        return any(p == "BaseAgent" or self.is_agent_class(p, seen | {cls})
                   for p in self.parents(cls))

    # -- following a name to what it was given

    def deref(self, node: ast.expr, ctx: _Ctx) -> tuple[ast.expr, _Ctx, str] | None:
        key = dotted(node)
        if key is None:
            return None
        if ctx.func is not None and not key.startswith(("self.", "cls.")):
            assigned = self.locals.get((id(ctx.func), key))
            if assigned:
                before = [a for a in assigned if a[1] <= ctx.line] or assigned
                value, line = before[-1]
                if value is not node:
                    return value, replace(ctx, line=line - 1), key
            param = self._param(ctx.func, key)
            if param is not None:
                return param[0], param[1], key
        if key.startswith(("self.", "cls.")) and ctx.cls:
            key = "self." + key.split(".", 1)[1]
            found = self._attr(ctx.cls, key, frozenset())
            if found is not None:
                return found[0], found[1], key
            return None
        if key in self.module:
            value, line = self.module[key][0]
            return value, _Ctx(None, None, line), key
        if ctx.cls and (ctx.cls, key) in self.class_attrs:
            value, line = self.class_attrs[(ctx.cls, key)][0]
            return value, _Ctx(None, ctx.cls, line), key
        return None

    def _attr(self, cls: str, key: str, seen: frozenset[str]) -> tuple[ast.expr, _Ctx] | None:
        if cls in seen:
            return None
        assigned = self.self_attrs.get((cls, key))
        if assigned:
            inits = [a for a in assigned if a[2].node.name == "__init__"] or assigned
            value, line, owner = inits[0]
            return value, _Ctx(owner, cls, line - 1)
        short = key.split(".", 1)[1]
        if (cls, short) in self.class_attrs:
            value, line = self.class_attrs[(cls, short)][0]
            return value, _Ctx(None, cls, line)
        passed = self._super_kwarg(cls, short)
        if passed is not None:
            return passed
        for parent in self.parents(cls):
            found = self._attr(parent, key, seen | {cls})
            if found is not None:
                return found
        return None

    def _super_kwarg(self, cls: str, name: str) -> tuple[ast.expr, _Ctx] | None:
        """``super().__init__(port=agent_port)`` in the class's ``__init__``: BaseAgent
        keeps it as ``self.port``."""
        for func in self.by_name.get("__init__", ()):
            if self.class_of(func) != cls:
                continue
            for call in func.calls:
                if isinstance(call.func, ast.Attribute) and call.func.attr == "__init__":
                    for kw in call.keywords:
                        if kw.arg == name:
                            return kw.value, _Ctx(func, cls, call.lineno)
        return None

    def _param(self, func: Function, name: str) -> tuple[ast.expr, _Ctx] | None:
        args = func.node.args
        positional = [*args.posonlyargs, *args.args]
        defaults = dict(zip([a.arg for a in positional[len(positional) - len(args.defaults):]],
                            args.defaults, strict=True))
        defaults.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults,
                                                  strict=True) if d is not None})
        if name in defaults:
            return defaults[name], _Ctx(None, self.class_of(func), func.node.lineno)
        names = [a.arg for a in positional]
        if name not in names and name not in [a.arg for a in args.kwonlyargs]:
            return None
        # a helper's parameter: what its callers in the file pass, when they agree
        bound = func.cls is not None and names[:1] in (["self"], ["cls"])
        index = names.index(name) - (1 if bound else 0) if name in names else None
        passed: list[tuple[ast.expr, _Ctx]] = []
        for call, owner in self.calls_to(func.node.name):
            value = next((kw.value for kw in call.keywords if kw.arg == name), None)
            if value is None and index is not None and 0 <= index < len(call.args):
                value = call.args[index]
            if value is not None:
                passed.append((value, self.ctx(owner, call.lineno)))
        if len(passed) == 1 or (passed and len({ast.dump(v) for v, _ in passed}) == 1):
            return passed[0]
        return None

    # -- values

    def port(self, node: ast.expr, ctx: _Ctx, depth: int) -> _Found:
        if depth > _DEPTH:
            return _Found()
        if isinstance(node, ast.Constant):
            literal = node.value
            if isinstance(literal, int) and not isinstance(literal, bool):
                return _Found(port=literal)
            if isinstance(literal, str) and literal.strip().isdigit():
                return _Found(port=int(literal))
            return _Found()
        if isinstance(node, ast.Name | ast.Attribute):
            target = self.deref(node, ctx)
            if target is None:
                return self._own_port(node, ctx)
            value, where, key = target
            found = self.port(value, where, depth + 1)
            if found.port is None and not found.agent:
                own = self._own_port(node, ctx)
                if own.own_port:
                    return own
            return replace(found, via=[key, *found.via])
        if isinstance(node, ast.Call):
            return self._call(node, ctx, depth, self.port)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
            left, right = self.port(node.left, ctx, depth + 1), self.port(node.right, ctx,
                                                                          depth + 1)
            if left.port is not None and right.port is not None:
                total = left.port + right.port if isinstance(node.op, ast.Add) \
                    else left.port - right.port
                return _Found(port=total, via=left.via + right.via)
            return _Found()
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                found = self.port(value, ctx, depth + 1)
                if found.port is not None or found.agent:
                    return found
            return _Found()
        if isinstance(node, ast.IfExp):
            found = self.port(node.body, ctx, depth + 1)
            return found if found.port is not None else self.port(node.orelse, ctx, depth + 1)
        if isinstance(node, ast.Subscript):
            return self._from_lookup(node.value, ctx, depth)
        return _Found()

    def _own_port(self, node: ast.expr, ctx: _Ctx) -> _Found:
        key = dotted(node) or ""
        last = key.split(".")[-1].lower()
        if key.startswith("self.") and "port" in last and self.is_agent_class(ctx.cls):
            return _Found(own_port="health_check_port" if "health" in last else "port",
                          via=[key])
        return _Found()

    def _from_lookup(self, node: ast.expr, ctx: _Ctx, depth: int) -> _Found:
        """``info["port"]``/``info.get("port")`` where ``info`` came from a look-up."""
        if isinstance(node, ast.Call):
            return self.lookup(node, ctx, depth + 1) \
                if LOOKUP_CALL.match(_last_name(node.func) or "") else _Found()
        target = self.deref(node, ctx)
        if target is None:
            return _Found()
        value, where, key = target
        if isinstance(value, ast.Call) and LOOKUP_CALL.match(_last_name(value.func) or ""):
            found = self.lookup(value, where, depth + 1)
            return replace(found, via=[key, *found.via])
        return _Found()

    def _call(self, node: ast.Call, ctx: _Ctx, depth: int, follow: Any) -> _Found:
        name = _last_name(node.func) or ""
        callee = self.names.resolve(node.func) or dotted(node.func) or name
        if name in ("int", "str", "float") and node.args:
            return follow(node.args[0], ctx, depth + 1)
        if LOOKUP_CALL.match(name):
            return self.lookup(node, ctx, depth + 1)
        if callee in ENV_CALLS or name in ENV_NAMES:
            env = _str(node.args[0]) if node.args else None
            default = node.args[1] if len(node.args) > 1 else next(
                (kw.value for kw in node.keywords if kw.arg == "default"), None)
            if default is None:
                return _Found(via=[f"{name}({env!r}) without a default"])
            found = follow(default, ctx, depth + 1)
            return replace(found, via=[f"{callee}({env!r}) default", *found.via])
        if name == "get" and isinstance(node.func, ast.Attribute):
            looked = self._from_lookup(node.func.value, ctx, depth)
            if looked.agent:
                return looked
            if len(node.args) > 1:
                key = _str(node.args[0])
                found = follow(node.args[1], ctx, depth + 1)
                owner = dotted(node.func.value) or "config"
                return replace(found, via=[f"{owner}.get({key!r}) default", *found.via])
            return _Found()
        return _Found()

    def lookup(self, call: ast.Call, ctx: _Ctx, depth: int) -> _Found:
        """A look-up by name: the agent it names, when the name is a string we can follow."""
        name = _last_name(call.func) or ""
        if not call.args:
            return _Found(via=[f"{name}() with no name"])
        arg = call.args[0]
        text = _str(arg)
        if text is None and isinstance(arg, ast.Name | ast.Attribute) and depth <= _DEPTH:
            target = self.deref(arg, ctx)
            if target is not None:
                text = _str(target[0])
        if text is None:
            return _Found(via=[f"{name}({source_text(arg, 40)})"])
        return _Found(agent=text, via=[f"{name}({text!r})"])

    def address(self, node: ast.expr, ctx: _Ctx, depth: int) -> _Found:
        """Port, host or agent of an address as passed to bind/connect."""
        if depth > _DEPTH:
            return _Found()
        if isinstance(node, ast.Tuple) and len(node.elts) == 2:
            return self._host(node.elts[0], ctx, depth + 1).merge(
                self.port(node.elts[1], ctx, depth + 1))
        parts = _template(node)
        if parts is not None:
            return self._parts(parts, ctx, depth)
        if isinstance(node, ast.Name | ast.Attribute):
            target = self.deref(node, ctx)
            if target is None:
                return self._own_port(node, ctx)
            value, where, key = target
            found = self.address(value, where, depth + 1)
            return replace(found, via=[key, *found.via])
        if isinstance(node, ast.Call):
            name = _last_name(node.func) or ""
            if LOOKUP_CALL.match(name) or name in ("int", "str", "get") \
                    or name in ENV_NAMES or (self.names.resolve(node.func) or "") in ENV_CALLS:
                found = self._call(node, ctx, depth, self.address)
                if found.port is not None or found.agent or found.host is not None:
                    return found
                return found
            # a helper that builds the string: get_zmq_connection_string(port, host)
            found = _Found()
            for arg in node.args:
                port = self.port(arg, ctx, depth + 1)
                if port.port is not None or port.agent:
                    found = found.merge(port)
                else:
                    found = found.merge(self._host(arg, ctx, depth + 1))
            return replace(found, via=[f"{name}(...)", *found.via]) \
                if found.port is not None else found
        if isinstance(node, ast.BoolOp | ast.IfExp | ast.Subscript):
            return self.port(node, ctx, depth + 1)
        return _Found()

    def _parts(self, parts: list[str | ast.expr], ctx: _Ctx, depth: int) -> _Found:
        text = "".join(p if isinstance(p, str) else f"\x00{i}\x00" for i, p in enumerate(parts))
        scheme, sep, rest = text.partition("://")
        if not sep:
            rest, scheme = text, ""
        if scheme in ("inproc", "ipc"):
            return _Found(local=True, host=scheme)
        host_text, colon, port_text = rest.rpartition(":")
        if not colon:
            whole = re.fullmatch(r"\x00(\d+)\x00", rest)
            if whole:  # f"tcp://{address}": the address is the whole value
                return self.address(_expr(parts, whole[1]), ctx, depth + 1)
            return _Found(host=rest or None)
        found = _Found()
        port_text = port_text.split("/")[0]
        if port_text.isdigit():
            found.port = int(port_text)
        else:
            one = re.fullmatch(r"\x00(\d+)\x00", port_text)
            if one:
                found = self.port(_expr(parts, one[1]), ctx, depth + 1)
        one = re.fullmatch(r"\x00(\d+)\x00", host_text)
        if one:
            found = found.merge(self._host(_expr(parts, one[1]), ctx, depth + 1))
        elif "\x00" not in host_text:
            found.host = host_text
        return found

    def _host(self, node: ast.expr, ctx: _Ctx, depth: int) -> _Found:
        if depth > _DEPTH:
            return _Found()
        text = _str(node)
        if text is not None:
            return _Found(host=text)
        if isinstance(node, ast.Call):
            name = _last_name(node.func) or ""
            if MACHINE_CALL.match(name):
                machine = _str(node.args[0]) if node.args else None
                return _Found(machine=machine, host=f"{name}({machine!r})" if machine
                              else None)
            if LOOKUP_CALL.match(name):
                return self.lookup(node, ctx, depth + 1)
            if name == "get" and len(node.args) > 1 or name in ENV_NAMES \
                    or (self.names.resolve(node.func) or "") in ENV_CALLS:
                default = node.args[1] if len(node.args) > 1 else None
                return self._host(default, ctx, depth + 1) if default is not None \
                    else _Found()
            return _Found()
        if isinstance(node, ast.Name | ast.Attribute):
            target = self.deref(node, ctx)
            if target is not None:
                return self._host(target[0], target[1], depth + 1)
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                found = self._host(value, ctx, depth + 1)
                if found.host is not None or found.machine:
                    return found
        return _Found()


def _expr(parts: list[str | ast.expr], index: str) -> ast.expr:
    part = parts[int(index)]
    assert not isinstance(part, str)
    return part


def _pairs(targets: list[ast.expr], value: ast.expr) -> list[tuple[ast.expr, ast.expr]]:
    out: list[tuple[ast.expr, ast.expr]] = []
    for target in targets:
        if isinstance(target, ast.Tuple | ast.List):
            if isinstance(value, ast.Tuple | ast.List) and len(value.elts) == len(target.elts):
                out.extend(zip(target.elts, value.elts, strict=True))
        else:
            out.append((target, value))
    return out


_PERCENT = re.compile(r"%[-+ #0]*\d*(?:\.\d+)?[sdirf]")
_BRACES = re.compile(r"\{[^{}]*\}")


def _template(node: ast.expr) -> list[str | ast.expr] | None:
    """An address template as literal text and the expressions between: an f-string, a
    literal, ``"...%s:%d" % (h, p)``, ``"...{}".format(p)`` or ``a + ":" + b``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        out: list[str | ast.expr] = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                out.append(value.value)
            elif isinstance(value, ast.FormattedValue):
                out.append(value.value)
        return out
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) \
            and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
        values = list(node.right.elts) if isinstance(node.right, ast.Tuple) else [node.right]
        pieces = _PERCENT.split(node.left.value)
        if len(pieces) - 1 != len(values):
            return None
        return _interleave(pieces, values)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr == "format" and isinstance(node.func.value, ast.Constant) \
            and isinstance(node.func.value.value, str):
        pieces = _BRACES.split(node.func.value.value)
        fields = _BRACES.findall(node.func.value.value)
        kwargs = {kw.arg: kw.value for kw in node.keywords if kw.arg}
        args: list[ast.expr] = []
        auto = 0
        for fld in fields:
            key = fld[1:-1].split(":")[0].split("!")[0]
            if key.isdigit() and int(key) < len(node.args):
                args.append(node.args[int(key)])
            elif key in kwargs:
                args.append(kwargs[key])
            elif not key and auto < len(node.args):
                args.append(node.args[auto])
                auto += 1
            else:
                return None
        return _interleave(pieces, args)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _template(node.left), _template(node.right)
        if left is None and right is None:
            return None
        joined: list[str | ast.expr] = []
        joined += left if left is not None else [_unwrap_str(node.left)]
        joined += right if right is not None else [_unwrap_str(node.right)]
        return joined
    return None


def _unwrap_str(node: ast.expr) -> ast.expr:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id == "str" and node.args:
        return node.args[0]
    return node


def _interleave(pieces: list[str], args: list[ast.expr]) -> list[str | ast.expr]:
    out: list[str | ast.expr] = []
    for i, piece in enumerate(pieces):
        out.append(piece)
        if i < len(args):
            out.append(args[i])
    return out
