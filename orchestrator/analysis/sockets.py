"""Sockets: where they are created, of which ZMQ type, and what is done with them.

Phase 2 of the seed's migration moves an agent's sockets onto BaseAgent, and
planning it needs each socket's ZMQ type (REP/REQ/PUB/SUB...). Reconciling our
figures with a line-counting tool (the seed's "53 socket patterns") needs the
operations as well as the creations, so both are reported, each with its lines:

    patterns = count (creation sites) + sum(operations)

A tool that counts ``.bind(``/``.connect(``/``.recv(`` lines counts the same
things, except that it also counts matches in comments and strings, counts a line
twice when two patterns are on it, and misses calls split over lines.

Creation sites (``count``; ``zmq`` + ``raw``)
    ``kind: zmq``: ``.socket(...)`` on a ZMQ context, ``zmq.Socket(ctx, ...)``, or
    ``.socket(...)`` whose type argument is a ZMQ socket type, or (in a file that
    imports zmq) on a receiver named like a context; see `Names.socket_creation`.
    ``kind: raw``: ``socket.socket``, ``create_connection``, ``create_server``,
    ``socketpair``, ``fromfd``. A site in a loop or comprehension counts once.

Types (``by_type``, and ``type`` on each location)
    The type argument resolved through imports and assignments (``zmq.REP`` ->
    ``REP``). When it is a parameter of the function creating the socket (a
    helper such as ``_make_socket(self, kind, port)``), the values its callers in
    the file pass for that parameter, else its default; several values are
    joined with ``|``. ``raw`` for raw sockets, ``unknown`` when nothing says.
    The values of ``by_type`` add up to ``count``.

Operations (``operations``: counts; ``operation_lines``: the lines of each)
    A call to ``bind``/``bind_to_random_port`` (bind), ``connect``/``connect_ex``
    (connect), ``send*`` (send), ``recv*`` (recv) or ``close`` whose receiver is a
    socket: bound in the file to a socket creation (``self.rep = ctx.socket(...)``;
    ``with socket.socket() as s``), or named like one (its last name contains
    ``sock``: ``self.socket``, ``pub_sock``, ``self.sockets[name]``), and not
    something else we know (a module, a context).
"""

from __future__ import annotations

import ast
from typing import Any

from orchestrator.analysis.names import (
    RAW_SOCKET,
    ZMQ_SOCKET,
    Function,
    Names,
    dotted,
    socket_type_arg,
    source_text,
)

ZMQ_TYPES = ("REP", "REQ", "PUB", "SUB", "DEALER", "ROUTER", "PUSH", "PULL", "PAIR")
OPERATIONS = ("bind", "connect", "send", "recv", "close")
_OPERATION_OF: dict[str, str] = {
    "bind": "bind", "bind_to_random_port": "bind",
    "connect": "connect", "connect_ex": "connect",
    "close": "close",
}


def _operation(attr: str) -> str | None:
    if attr in _OPERATION_OF:
        return _OPERATION_OF[attr]
    if attr.startswith("send"):
        return "send"
    if attr.startswith("recv"):
        return "recv"
    return None


def socket_report(names: Names) -> dict[str, Any]:
    """The ``sockets`` section of a file's document."""
    locations: list[dict[str, Any]] = []
    by_type: dict[str, int] = {}
    operations = {op: 0 for op in OPERATIONS}
    operation_lines: dict[str, list[int]] = {op: [] for op in OPERATIONS}
    created_calls: list[tuple[ast.Call, Function | None, dict[str, Any]]] = []
    # (receiver key, owner, op, call) of every bind/connect, to tell each socket's endpoint
    endpoints: list[tuple[str, Function | None, str, ast.Call]] = []
    for call, owner in names.calls:
        created = names.socket_creation(call)
        if created is not None:
            kind, via = created
            socket_type = "raw" if kind == "raw" else _zmq_type(names, call, owner)
            by_type[socket_type] = by_type.get(socket_type, 0) + 1
            location = {"line": call.lineno, "kind": kind, "type": socket_type,
                        "call": source_text(call.func), "via": via}
            locations.append(location)
            created_calls.append((call, owner, location))
            continue
        func = call.func
        if isinstance(func, ast.Attribute):
            op = _operation(func.attr)
            if op is None:
                continue
            if _is_socket(names, func.value):
                operations[op] += 1
                operation_lines[op].append(call.lineno)
            if op in ("bind", "connect"):
                # also on a local that shadows a module (`socket = ctx.socket(...)`):
                # linked to a creation only when that creation is assigned to the name
                key = _receiver_key(func.value)
                if key is not None:
                    endpoints.append((key, owner, op, call))
    _endpoints(names, created_calls, endpoints)
    zmq_count = sum(1 for s in locations if s["kind"] == "zmq")
    order = {name: i for i, name in enumerate((*ZMQ_TYPES, "raw"))}
    return {
        "count": len(locations),
        "zmq": zmq_count,
        "raw": len(locations) - zmq_count,
        "by_type": dict(sorted(by_type.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))),
        "operations": operations,
        "operation_lines": operation_lines,
        "patterns": len(locations) + sum(operations.values()),
        "locations": locations,
    }


def _receiver_key(receiver: ast.expr) -> str | None:
    if isinstance(receiver, ast.Subscript):
        receiver = receiver.value
    return dotted(receiver)


def _endpoints(names: Names, created: list[tuple[ast.Call, Function | None, dict[str, Any]]],
               endpoints: list[tuple[str, Function | None, str, ast.Call]]) -> None:
    """Give each created socket the name it is kept under and its first bind/connect.

    ``name``: what the creation is assigned to (``self.socket``, ``sock``), when it is;
    ``endpoint``: ``{"op", "address", "line"}`` of the first bind or connect on that
    name, in the creating function first (a local ``sock``), else anywhere in the file
    (an attribute such as ``self.pub_socket``).
    """
    if not created:
        return
    wanted = {id(call) for call, _, _ in created}
    targets: dict[int, str] = {}
    for target, value in names.pairs:
        if id(value) in wanted:
            key = _receiver_key(target)
            if key is not None:
                targets.setdefault(id(value), key)
    for call, owner, location in created:
        key = targets.get(id(call))
        if key is None:
            continue
        location["name"] = key
        local = key.split(".")[0] not in ("self", "cls")
        same = [e for e in endpoints if e[0] == key and e[1] is owner]
        if not same and not local:
            same = [e for e in endpoints if e[0] == key]
        if same:
            after = [e for e in same if e[3].lineno >= call.lineno] or same
            _, _, op, op_call = after[0]
            address = op_call.args[0] if op_call.args else None
            if address is None:
                for kw in op_call.keywords:
                    if kw.arg in ("addr", "address"):
                        address = kw.value
            text = "" if address is None else address.value \
                if isinstance(address, ast.Constant) and isinstance(address.value, str) \
                else source_text(address, limit=60)
            location["endpoint"] = {"op": op, "address": text, "line": op_call.lineno}


def _is_socket(names: Names, receiver: ast.expr) -> bool:
    known = names.resolve(receiver)
    if known is not None:
        return known in (ZMQ_SOCKET, RAW_SOCKET)
    if isinstance(receiver, ast.Subscript):
        receiver = receiver.value
    key = dotted(receiver)
    return key is not None and "sock" in key.split(".")[-1].lower()


def _type_name(qualname: str | None) -> str | None:
    if qualname is None or not qualname.startswith("zmq."):
        return None
    name = qualname.split(".")[-1]
    return name if name.isupper() else None


def _zmq_type(names: Names, call: ast.Call, owner: Function | None) -> str:
    arg = socket_type_arg(call)
    found = _type_name(names.resolve(arg))
    if found:
        return found
    if isinstance(arg, ast.Name) and owner is not None:
        types = sorted(_types_from_callers(names, owner, arg.id))
        if types:
            return "|".join(types)
    return "unknown"


def _types_from_callers(names: Names, helper: Function, param: str) -> set[str]:
    """The ZMQ types passed for `param` of `helper` at its call sites in the file."""
    args = helper.node.args
    positional = [a.arg for a in (*args.posonlyargs, *args.args)]
    if param not in positional and param not in [a.arg for a in args.kwonlyargs]:
        return set()
    bound = helper.cls is not None and positional[:1] in (["self"], ["cls"])
    index = positional.index(param) - (1 if bound else 0) if param in positional else None
    name = helper.node.name
    found: set[str] = set()
    for call, _ in names.calls:
        func = call.func
        if not ((isinstance(func, ast.Name) and func.id == name)
                or (isinstance(func, ast.Attribute) and func.attr == name)):
            continue
        value: ast.expr | None = None
        for kw in call.keywords:
            if kw.arg == param:
                value = kw.value
        if value is None and index is not None and 0 <= index < len(call.args):
            value = call.args[index]
        type_name = _type_name(names.resolve(value))
        if type_name:
            found.add(type_name)
    if not found:
        defaults = _defaults(args)
        type_name = _type_name(names.resolve(defaults.get(param)))
        if type_name:
            found.add(type_name)
    return found


def _defaults(args: ast.arguments) -> dict[str, ast.expr]:
    positional = [*args.posonlyargs, *args.args]
    out = {a.arg: d for a, d in zip(positional[len(positional) - len(args.defaults):],
                                     args.defaults, strict=True)}
    out.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                if d is not None})
    return out


def endpoint_calls(names: Names, report: dict[str, Any]
                   ) -> list[tuple[str, ast.Call, Function | None, str | None]]:
    """Every ``bind``/``connect`` on a socket, for the program graph's endpoints: (op, call,
    owning function, ZMQ type of the socket when a creation site is assigned to the name).

    The receiver is a socket as `socket_report` decides it, or a name a creation site is
    assigned to (a local ``socket`` that shadows the module), or any receiver that is not
    a module we know (``sqlite3.connect``) when the address looks like an endpoint (a
    ``tcp://`` string, a ``(host, port)`` tuple).
    """
    types: dict[str, str] = {}
    for location in report.get("locations", ()):
        if "name" in location:
            types.setdefault(location["name"], location["type"])
    out: list[tuple[str, ast.Call, Function | None, str | None]] = []
    for call, owner in names.calls:
        func = call.func
        if not isinstance(func, ast.Attribute) or func.attr not in _OPERATION_OF:
            continue
        op = _OPERATION_OF[func.attr]
        if op not in ("bind", "connect"):
            continue
        key = _receiver_key(func.value)
        if not (_is_socket(names, func.value) or key in types):
            known = names.resolve(func.value)
            if known is not None and not known.endswith("()") \
                    and known.split(".")[0] not in ("zmq", "socket"):
                continue  # sqlite3.connect, psycopg.connect: a module we know
            if not _looks_like_endpoint(call):
                continue
        out.append((op, call, owner, types.get(key) if key else None))
    return out


def _looks_like_endpoint(call: ast.Call) -> bool:
    if not call.args:
        return False
    arg = call.args[0]
    if isinstance(arg, ast.Tuple):
        return len(arg.elts) == 2
    text = ast.unparse(arg) if not isinstance(arg, ast.Name) else arg.id
    return "://" in text or "addr" in text.lower() or "endpoint" in text.lower()
