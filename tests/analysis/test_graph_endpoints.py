"""Endpoints of a file's socket sites, followed through the file; near copies of a file."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from orchestrator.analysis.endpoints import endpoint_report
from orchestrator.analysis.names import Names
from orchestrator.analysis.parsing import parse_source
from orchestrator.analysis.sockets import socket_report
from orchestrator.analysis.variants import line_counts, near_copy_groups, representative

HEAD = """\
import os
import socket
import sqlite3

import zmq

from common.base_agent import BaseAgent
from common.config_manager import get_service_ip
from common.env_helpers import get_env
from common.discovery import discover_service, get_service_address

MODEL_PORT = int(os.environ.get("MODEL_PORT", "5570"))
HOST = "gpu-box"
"""


def sites(body: str) -> list[dict[str, Any]]:
    names = Names(parse_source(HEAD + textwrap.dedent(body)).tree)
    return endpoint_report(names, socket_report(names))


def one(body: str, op: str = "connect") -> dict[str, Any]:
    found = [s for s in sites(body) if s["op"] == op]
    assert len(found) == 1, found
    return found[0]


def picked(site: dict[str, Any]) -> tuple[Any, ...]:
    return site["port"], site["host"], site["machine"], site["agent"], site["own_port"]


@pytest.mark.parametrize("body,expected", [
    # a literal
    ("s = zmq.Context().socket(zmq.REQ)\ns.connect('tcp://localhost:5571')\n",
     (5571, "localhost", None, None, None)),
    # a module constant (an environment default) in an f-string
    ("s = zmq.Context().socket(zmq.REQ)\ns.connect(f'tcp://{HOST}:{MODEL_PORT}')\n",
     (5570, "gpu-box", None, None, None)),
    # arithmetic on a constant
    ("s = zmq.Context().socket(zmq.REQ)\ns.connect(f'tcp://{HOST}:{MODEL_PORT + 1}')\n",
     (5571, "gpu-box", None, None, None)),
    # % and .format templates, and concatenation
    ("s = zmq.Context().socket(zmq.REQ)\ns.connect('tcp://%s:%d' % (HOST, 7001))\n",
     (7001, "gpu-box", None, None, None)),
    ("s = zmq.Context().socket(zmq.REQ)\ns.connect('tcp://{}:{}'.format(HOST, 7002))\n",
     (7002, "gpu-box", None, None, None)),
    ("s = zmq.Context().socket(zmq.REQ)\ns.connect('tcp://' + HOST + ':' + str(7003))\n",
     (7003, "gpu-box", None, None, None)),
    # get_env and os.getenv defaults
    ("s = zmq.Context().socket(zmq.REQ)\n"
     "s.connect(f\"tcp://localhost:{get_env('X_PORT', 7004)}\")\n",
     (7004, "localhost", None, None, None)),
    ("s = zmq.Context().socket(zmq.REQ)\nport = os.getenv('Y', '7005')\n"
     "s.connect(f'tcp://localhost:{port}')\n", (7005, "localhost", None, None, None)),
    # a raw socket's (host, port)
    ("s = socket.socket()\ns.connect(('localhost', 7006))\n",
     (7006, "localhost", None, None, None)),
    # a machine named by a look-up of its address
    ("s = zmq.Context().socket(zmq.SUB)\ns.connect(f\"tcp://{get_service_ip('pc2')}:7007\")\n",
     (7007, "get_service_ip('pc2')", "pc2", None, None)),
    # look-ups by name, directly and through what they return
    ("s = zmq.Context().socket(zmq.REQ)\ns.connect(get_service_address('Twin'))\n",
     (None, None, None, "Twin", None)),
    ("info = discover_service('Vram')\ns = zmq.Context().socket(zmq.REQ)\n"
     "s.connect(f\"tcp://{info.get('host')}:{info.get('port')}\")\n",
     (None, None, None, "Vram", None)),
])
def test_module_level_endpoints(body: str, expected: tuple[Any, ...]) -> None:
    assert picked(one(body)) == expected


AGENT = """
class Agent(BaseAgent):
    DEFAULT_PUB = 7100

    def __init__(self, config, port=7200):
        super().__init__(name="Agent", port=port)
        self.context = zmq.Context()
        self.pub_port = config.get("pub_port", self.DEFAULT_PUB)
        self.peer_port = port + 50

    def start(self):
        self.pub = self.context.socket(zmq.PUB)
        self.pub.bind(f"tcp://*:{self.pub_port}")
        self.rep = self.context.socket(zmq.REP)
        self.rep.bind(f"tcp://*:{self.port}")
        self.req = self.context.socket(zmq.REQ)
        self.req.connect(f"tcp://localhost:{self.peer_port}")
        self.events = self.context.socket(zmq.PUB)
        self.events.bind("inproc://events")
        self.db = sqlite3.connect("x.db")

    def _make(self, kind, port):
        sock = self.context.socket(kind)
        sock.connect(f"tcp://localhost:{port}")
        return sock

    def wire(self, addr):
        self._make(zmq.REQ, 7300)
        self.other = self.context.socket(zmq.SUB)
        self.other.connect(addr)
"""


def test_an_agent_class_ports_through_config_defaults_constructor_defaults_and_callers() -> None:
    found = {(s["op"], s["line"] - HEAD.count("\n")): s for s in sites(AGENT)}
    rows = sorted((op, line, s["port"], s["own_port"], s["local"], s["class"], s["socket"])
                  for (op, line), s in found.items())
    assert rows == [
        ("bind", 6, 7200, None, False, "Agent", None),  # super().__init__(port=port)
        ("bind", 13, 7100, None, False, "Agent", "PUB"),  # config.get default: a class attr
        ("bind", 15, 7200, None, False, "Agent", "REP"),  # self.port, kept by BaseAgent
        ("bind", 19, None, None, True, "Agent", "PUB"),  # inproc
        ("connect", 17, 7250, None, False, "Agent", "REQ"),  # port + 50, port=7200
        ("connect", 24, 7300, None, False, "Agent", "REQ"),  # what the one caller passes
        ("connect", 30, None, None, False, "Agent", "SUB"),  # cannot be followed
    ]
    assert found[("bind", 13)]["via"] == \
        "self.pub_port <- config.get('pub_port') default <- self.DEFAULT_PUB"
    assert found[("connect", 30)]["address"] == "addr"


def test_a_port_that_goes_no_further_is_the_agents_own() -> None:
    body = """
    class Agent(BaseAgent):
        def __init__(self, config):
            super().__init__(name="Agent", port=config["port"])
            self.rep = self.context.socket(zmq.REP)
            self.rep.bind(f"tcp://*:{self.port}")
            self.health = self.context.socket(zmq.REP)
            self.health.bind(f"tcp://*:{self.health_check_port}")
    """
    binds = [(s["port"], s["own_port"]) for s in sites(body) if s["op"] == "bind"]
    assert binds == [(None, "port"), (None, "port"), (None, "health_check_port")]


def test_callers_that_disagree_leave_the_port_unresolved() -> None:
    body = """
    class Agent(BaseAgent):
        def _make(self, port):
            sock = self.context.socket(zmq.REQ)
            sock.connect(f"tcp://localhost:{port}")

        def wire(self):
            self._make(7301)
            self._make(7302)
    """
    assert one(body)["port"] is None


def test_a_file_without_sockets_or_agents_has_no_endpoints() -> None:
    assert sites("def f():\n    return sqlite3.connect('x.db')\n") == []


def test_near_copies_group_and_the_manifests_file_leads() -> None:
    base = "\n".join(f"line_{i} = {i} * factor  # unique to this agent" for i in range(40))
    near = base.replace("line_3 =", "line_3b =")  # 39 of 40 lines the same
    far = "\n".join(base.split("\n")[:30]) + "\n" + "\n".join(f"other_{i} = 0" for i in range(10))
    files = {"agents/mm.py": line_counts(base), "agents/mm_test.py": line_counts(near),
             "agents/mm_day4_optimized.py": line_counts(base.replace("line_5 =", "l5 =")),
             "agents/other.py": line_counts(far)}
    [group] = near_copy_groups(files)
    assert group == ["agents/mm.py", "agents/mm_test.py", "agents/mm_day4_optimized.py"]
    assert representative(group, set()) == "agents/mm.py"
    assert representative(group, {"agents/mm_test.py"}) == "agents/mm_test.py"
    assert near_copy_groups(files, threshold=0.99) == []
