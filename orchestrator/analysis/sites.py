"""The worklist: every site the migration must change, and what replaces it.

The seed's plan for an agent is: move its sockets onto BaseAgent's socket
management (phase 2), its own threads onto the BaseAgent lifecycle, its health
check thread onto the BaseAgent health system and its request thread onto the
BaseAgent request system (phase 3). A *site* is one place in the source where
that work is to be done::

    {"line": 227, "kind": "socket", "what": "zmq.PUB bind tcp://*:5571 (self.pub_socket)",
     "target": "BaseAgent socket management (publisher)"}

``kind`` is ``socket``, ``thread``, ``lifecycle`` or ``health``. ``what`` names the
code there in words that survive an edit (no line number in it), so that two
revisions of a file can be compared site by site (`compare`). ``target`` is the
BaseAgent mechanism that replaces it; the mapping, and what in the seed it comes
from, is written down in ``docs/basagent-mapping.md``.

Sites, per kind:

* ``socket``: every socket creation (ZMQ and raw), with its ZMQ type, the
  name it is kept under and its first bind/connect address when the file says.
* ``thread``: every thread/process site of `threads`, with its target.
* ``lifecycle``: a ZMQ context the agent makes itself; ``signal.signal`` and
  ``atexit.register`` handlers; an agent class whose ``__init__`` does not call
  ``super().__init__``; a legacy agent class (not deriving from BaseAgent).
* ``health``: a BaseAgent class with no ``_get_health_status``; a method of a
  class named like a health check (``_health_check_loop``) other than
  ``_get_health_status`` itself.
"""

from __future__ import annotations

from typing import Any

from orchestrator.analysis.names import Names, is_context_class

KINDS = ("socket", "thread", "lifecycle", "health")

SOCKET_MANAGEMENT = "BaseAgent socket management"
REQUEST_SYSTEM = "BaseAgent request system"
HEALTH_SYSTEM = "BaseAgent health system (_get_health_status)"
LIFECYCLE = "BaseAgent lifecycle"

_SOCKET_TARGETS: dict[str, str] = {
    "REP": f"{REQUEST_SYSTEM} (the agent's request socket)",
    "ROUTER": f"{REQUEST_SYSTEM} (the agent's request socket)",
    "REQ": f"{SOCKET_MANAGEMENT} (client connection to another agent)",
    "DEALER": f"{SOCKET_MANAGEMENT} (client connection to another agent)",
    "PUB": f"{SOCKET_MANAGEMENT} (publisher)",
    "SUB": f"{SOCKET_MANAGEMENT} (subscriber)",
    "PUSH": f"{SOCKET_MANAGEMENT} (pipeline)",
    "PULL": f"{SOCKET_MANAGEMENT} (pipeline)",
    "PAIR": f"{SOCKET_MANAGEMENT} (pair)",
    "raw": f"{SOCKET_MANAGEMENT} (no raw socket: ports and connections through BaseAgent)",
}
_REQUEST_WORDS = ("request", "handle", "serve", "listen", "recv", "receive", "message")


def socket_target(location: dict[str, Any]) -> str:
    name = str(location.get("name") or "").lower()
    first = str(location["type"]).split("|")[0]
    if "health" in name and first in ("REP", "ROUTER", "PUB"):  # serving its own health
        return f"{HEALTH_SYSTEM} (no socket of the agent's own)"
    return _SOCKET_TARGETS.get(first, SOCKET_MANAGEMENT)


def thread_target(location: dict[str, Any]) -> str:
    said = f"{location.get('target') or ''} {location.get('name') or ''}".lower()
    if "health" in said:
        return HEALTH_SYSTEM
    if any(word in said for word in _REQUEST_WORDS):
        return f"{REQUEST_SYSTEM} (no thread of the agent's own)"
    if location["kind"] in ("ThreadPoolExecutor", "ProcessPoolExecutor", "multiprocessing.Pool",
                            "multiprocessing.ThreadPool"):
        return f"{LIFECYCLE} (a pool started and shut down with the agent)"
    return f"{LIFECYCLE} (a background task started and stopped with the agent)"


def socket_what(location: dict[str, Any]) -> str:
    if location["kind"] == "raw":
        head = location["via"] if location["via"] != "socket.socket" else "socket.socket"
    else:
        head = f"zmq.{location['type']}"
    parts = [head]
    endpoint = location.get("endpoint")
    if endpoint:
        parts.append(f"{endpoint['op']} {endpoint['address']}".rstrip())
    if location.get("name"):
        parts.append(f"({location['name']})")
    return " ".join(parts)


def thread_what(location: dict[str, Any]) -> str:
    args = []
    if location.get("target"):
        args.append(f"target={location['target']}")
    if location.get("name"):
        args.append(f"name={location['name']}")
    return f"{location['kind']}({', '.join(args)})"


def worklist(names: Names, sockets: dict[str, Any], threads: dict[str, Any],
             base_agent: dict[str, Any]) -> list[dict[str, Any]]:
    """The file's sites, by line (then kind, in the order of `KINDS`)."""
    sites: list[dict[str, Any]] = []

    def add(line: int, kind: str, what: str, target: str) -> None:
        sites.append({"line": line, "kind": kind, "what": what, "target": target})

    for s in sockets["locations"]:
        add(s["line"], "socket", socket_what(s), socket_target(s))
    for t in threads["locations"]:
        add(t["line"], "thread", thread_what(t), thread_target(t))
    for call, _ in names.calls:
        callee = names.callee(call)
        if callee is None:
            continue
        if is_context_class(callee):
            add(call.lineno, "lifecycle", f"zmq context {callee}()",
                f"{LIFECYCLE} (the agent's ZMQ context, made and closed with the agent)")
        elif callee in ("signal.signal", "atexit.register"):
            add(call.lineno, "lifecycle", f"{callee} handler",
                f"{LIFECYCLE} (start and stop through BaseAgent)")
    for cls in base_agent["classes"]:
        if not cls["super_init"]:
            add(cls["line"], "lifecycle", f"class {cls['name']}: __init__ without "
                "super().__init__", f"{LIFECYCLE} (call super().__init__)")
        if not cls["health_method"]:
            add(cls["line"], "health", f"class {cls['name']}: no _get_health_status",
                HEALTH_SYSTEM)
    for cls in base_agent["legacy_classes"]:
        add(cls["line"], "lifecycle", f"class {cls['name']}: not a BaseAgent ({cls['why']})",
            f"{LIFECYCLE} (derive from BaseAgent, call super().__init__)")
    for func in names.functions:
        name = func.node.name
        if func.cls is not None and "health" in name.lower() and name != "_get_health_status":
            add(func.node.lineno, "health", f"def {func.qualname}", HEALTH_SYSTEM)
    order = {k: i for i, k in enumerate(KINDS)}
    sites.sort(key=lambda s: (s["line"], order[s["kind"]]))
    return sites
