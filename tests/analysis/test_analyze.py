"""`migrate analyze` on one file: counts, lines, ZMQ types, thread targets, scores.

The tolerant parser is in test_analysis_parsing.py, the seed-shaped agent in
test_analysis_seed.py, directories and rendering in test_analysis_directory.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from orchestrator._exceptions import ConfigError
from orchestrator.analysis import analyze_file, analyze_path, render_text, risk_score, scoring
from orchestrator.analysis.source import PathProblem


def write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def sockets(doc: dict[str, Any]) -> list[tuple[int, str, str, str]]:
    return [(s["line"], s["kind"], s["type"], s["via"]) for s in doc["sockets"]["locations"]]


def threads(doc: dict[str, Any]) -> list[tuple[int, str, str | None, str | None]]:
    return [(t["line"], t["kind"], t["target"], t["name"]) for t in doc["threads"]["locations"]]


def factors(doc: dict[str, Any]) -> dict[str, int]:
    return {f["name"]: f["points"] for f in doc["risk"]["factors"]}


TRICKY_AGENT = '''\
"""An agent with every tricky form at once."""
import zmq as z
import socket as s
from socket import socket as sock
from threading import Thread as T, Timer
import concurrent.futures as cf
import multiprocessing as mp
from common.core.base_agent import BaseAgent as BA
import torch

# a comment line


class Worker(T):
    pass


class Agent(BA):
    def __init__(self, port: int = 5555) -> None:
        super().__init__(name="Agent", port=port)
        self.ctx = z.Context.instance()
        self.rep = self.ctx.socket(z.REP)
        self.subs = [self.ctx.socket(z.SUB) for _ in range(3)]
        self.pool = cf.ThreadPoolExecutor(max_workers=2)

    def _make(self):
        return z.Context()

    def helper(self):
        return self._make().socket(z.PUB)

    def load_model(self, name):
        m = torch.load(name)
        m.to("cuda:0")
        torch.cuda.empty_cache()
        return m

    def _get_health_status(self):
        return {"ok": True}

    def start(self):
        T(target=self.run).start()
        Timer(5, self.run).start()
        Worker().start()
        mp.get_context("spawn").Process(target=self.run).start()
        raw = s.socket(s.AF_INET, s.SOCK_STREAM)
        other = sock()
        return raw, other
'''


def test_tricky_agent_exact_counts_and_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "agent.py", TRICKY_AGENT)
    doc = analyze_file(path)
    assert doc["file"] == str(path)
    assert doc["size_bytes"] == len(TRICKY_AGENT.encode())
    assert doc["total_lines"] == 48
    assert doc["code_lines"] == 37  # 48 - 10 blank - 1 comment
    assert doc["syntax_errors"] == []
    assert "unparsed_lines" not in doc
    assert doc["base_agent"] == {
        "inherits": True, "super_init": True, "health_method": True,
        "classes": [{"name": "Agent", "line": 18, "super_init": True, "health_method": True}],
        "legacy_classes": [],
    }
    assert doc["sockets"]["count"] == 5
    assert (doc["sockets"]["zmq"], doc["sockets"]["raw"]) == (3, 2)
    assert sockets(doc) == [
        (22, "zmq", "REP", "context"),    # self.ctx = z.Context.instance(); self.ctx.socket
        (23, "zmq", "SUB", "context"),    # inside a list comprehension: one site
        (30, "zmq", "PUB", "context"),    # a helper method that returns a context
        (46, "raw", "raw", "socket.socket"),  # import socket as s
        (47, "raw", "raw", "socket.socket"),  # from socket import socket as sock
    ]
    assert doc["sockets"]["by_type"] == {"REP": 1, "SUB": 1, "PUB": 1, "raw": 2}
    assert [s["call"] for s in doc["sockets"]["locations"]] == [
        "self.ctx.socket", "self.ctx.socket", "self._make().socket", "s.socket", "sock"]
    assert doc["threads"]["count"] == 5
    assert threads(doc) == [
        (24, "ThreadPoolExecutor", None, None),
        (42, "threading.Thread", "run", None),        # from threading import Thread as T
        (43, "threading.Timer", "run", None),         # Timer(5, self.run): positional
        (44, "threading.Thread", None, None),         # a subclass of T defined in the file
        (45, "multiprocessing.Process", "run", None),  # mp.get_context("spawn").Process
    ]
    assert [(g["line"], g["call"]) for g in doc["gpu_operations"]["locations"]] == [
        (34, "m.to"), (35, "torch.cuda.empty_cache")]
    assert doc["critical_functions"] == [
        {"name": "Agent.load_model", "line": 32, "touches": ["model", "gpu"]},
        {"name": "Agent._get_health_status", "line": 38, "touches": ["health"]},
    ]
    assert doc["complexity"] == {
        "decision_points": 1, "functions": 6,
        "max_function": {"name": "Agent.__init__", "line": 19, "complexity": 2},
    }
    assert factors(doc) == {"file size": 0, "code complexity": 0, "sockets": 4, "threads": 4,
                            "GPU operations": 2, "BaseAgent gaps": 0}
    assert (doc["risk"]["score"], doc["risk"]["max"], doc["risk"]["level"]) == (10, 60, "LOW")
    json.dumps(doc)  # the --output json document is plain JSON


def test_zmq_context_dataflow_forms(tmp_path: Path) -> None:
    doc = analyze_file(write(tmp_path, "z.py", '''\
        import zmq
        import zmq.asyncio
        from zmq import Context, REQ


        class A:
            def use_before_assignment(self):
                return self.context.socket(self.kind)

            def __init__(self, context=None):
                self.context = context or zmq.Context()
                self.kind = REQ


        ctx = Context()
        push = ctx.socket(zmq.PUSH)
        pub = zmq.Context.instance().socket(zmq.PUB)
        actx = zmq.asyncio.Context()
        alias = actx
        dealer = alias.socket(zmq.DEALER)
        with zmq.Context() as c:
            c.socket(zmq.PAIR)


        def typed(zc: zmq.Context, kind):
            return zc.socket(kind)


        raw = zmq.Socket(ctx, zmq.REP)
        subs = {name: ctx.socket(zmq.SUB) for name in ("a", "b")}
        not_zmq = object().socket()
        '''))
    assert sockets(doc) == [
        (8, "zmq", "REQ", "context"),         # self.context and self.kind assigned later
        (16, "zmq", "PUSH", "context"),       # from zmq import Context; ctx = Context()
        (17, "zmq", "PUB", "context"),        # zmq.Context.instance().socket(...)
        (20, "zmq", "DEALER", "context"),     # alias = actx, an asyncio context
        (22, "zmq", "PAIR", "context"),       # with zmq.Context() as c
        (26, "zmq", "unknown", "context"),    # annotated parameter; nobody calls typed()
        (29, "zmq", "REP", "constructor"),    # zmq.Socket(ctx, type)
        (30, "zmq", "SUB", "context"),        # dict comprehension: one site
    ]
    assert doc["sockets"]["raw"] == 0
    assert sum(doc["sockets"]["by_type"].values()) == doc["sockets"]["count"] == 8


def test_zmq_sockets_on_a_context_from_elsewhere(tmp_path: Path) -> None:
    """BaseAgent gives `self.context` from another file: socket type or name tells."""
    doc = analyze_file(write(tmp_path, "inherited.py", '''\
        import zmq as z
        from zmq import SUB
        from common.core.base_agent import BaseAgent


        class Agent(BaseAgent):
            def connect(self, kind):
                self.a = self.context.socket(z.REQ)
                self.b = self.other.socket(socket_type=SUB)
                self.c = self.context.socket(kind)
                self.d = self.pool.socket(kind)
        '''))
    assert sockets(doc) == [
        (8, "zmq", "REQ", "socket-type"),
        (9, "zmq", "SUB", "socket-type"),
        (10, "zmq", "unknown", "name"),
    ]


def test_socket_type_from_the_callers_of_a_helper(tmp_path: Path) -> None:
    doc = analyze_file(write(tmp_path, "helpers.py", '''\
        import zmq


        class Agent:
            def _make(self, address, kind=zmq.DEALER):
                sock = self.context.socket(kind)
                sock.connect(address)
                return sock

            def _bound(self, port, kind):
                sock = self.context.socket(kind)
                sock.bind(f"tcp://*:{port}")
                return sock

            def start(self):
                self.req = self._make("tcp://a:1", zmq.REQ)
                self.sub = self._make("tcp://b:2", kind=zmq.SUB)
                self.rep = self._bound(5555, zmq.REP)
                self.router = self._bound(5556, zmq.ROUTER)


        def _plain(kind):
            return zmq.Context().socket(kind)


        dealer = _plain(kind=zmq.PULL)
        '''))
    assert sockets(doc) == [
        (6, "zmq", "REQ|SUB", "name"),      # two callers, two types: one site
        (11, "zmq", "REP|ROUTER", "name"),
        (23, "zmq", "PULL", "context"),
    ]
    assert doc["sockets"]["by_type"] == {"PULL": 1, "REP|ROUTER": 1, "REQ|SUB": 1}


def test_context_name_alone_needs_a_zmq_import(tmp_path: Path) -> None:
    doc = analyze_file(write(tmp_path, "nozmq.py", '''\
        class Thing:
            def go(self):
                return self.context.socket()
        '''))
    assert doc["sockets"]["count"] == 0
    assert doc["sockets"]["by_type"] == {}


def test_raw_socket_forms_and_shadowing(tmp_path: Path) -> None:
    doc = analyze_file(write(tmp_path, "raw.py", '''\
        import socket
        import zmq


        def serve(ctx):
            socket = zmq.Context().socket(zmq.REP)
            return socket


        def client():
            a = socket.create_connection(("localhost", 80))
            import socket as sk
            b = sk.socket()
            c = [socket.socket() for _ in range(2)]
            return a, b, c


        socket.gethostname()
        '''))
    assert sockets(doc) == [
        (6, "zmq", "REP", "context"),
        (11, "raw", "raw", "socket.create_connection"),
        (13, "raw", "raw", "socket.socket"),   # an import inside a function
        (14, "raw", "raw", "socket.socket"),
    ]
    assert (doc["sockets"]["zmq"], doc["sockets"]["raw"]) == (1, 3)


def test_socket_operations_with_their_lines(tmp_path: Path) -> None:
    doc = analyze_file(write(tmp_path, "ops.py", '''\
        import socket
        import zmq


        class Agent:
            def __init__(self):
                self.rep = zmq.Context().socket(zmq.REP)
                self.rep.bind("tcp://*:5555")
                self.rep.bind_to_random_port("tcp://*")

            def serve(self):
                msg = self.rep.recv_json()
                self.rep.send_json(msg)
                self.socket.send_string("via BaseAgent")   # named like a socket
                self.sockets["x"].recv_multipart()         # ... in a dict of them
                self.file.close()                          # not a socket
                self.signal.connect(print)                 # not a socket

            def port_free(self, port):
                with socket.socket() as probe:
                    return probe.connect_ex(("localhost", port)) != 0

            def stop(self):
                self.rep.close()
                socket.close(3)                            # the module, not a socket
        '''))
    ops = doc["sockets"]
    assert ops["operations"] == {"bind": 2, "connect": 1, "send": 2, "recv": 2, "close": 1}
    assert ops["operation_lines"] == {"bind": [8, 9], "connect": [21], "send": [13, 14],
                                      "recv": [12, 15], "close": [24]}
    assert ops["count"] == 2
    assert ops["patterns"] == 2 + 8


def test_thread_forms(tmp_path: Path) -> None:
    doc = analyze_file(write(tmp_path, "threads.py", '''\
        import threading
        import _thread
        from threading import *
        from concurrent.futures import ThreadPoolExecutor as TPE
        from concurrent import futures
        from multiprocessing import Pool, Process
        import multiprocessing.pool

        make = threading.Thread


        class Loop(Thread):
            def run(self):
                pass


        class Subloop(Loop):
            pass


        def start(self):
            workers = [Thread(target=print) for _ in range(4)]
            t = Timer(1.0, print)
            with TPE(max_workers=4, thread_name_prefix="pool") as ex:
                ex.submit(print)
            futures.ProcessPoolExecutor()
            Pool(2)
            Process(None, self._work, "worker-1")
            multiprocessing.pool.ThreadPool(3)
            make(target=lambda: None, name=f"w-{t}")
            Subloop()
            _thread.start_new_thread(self.listen, ())
            threading.Event()
            threading.Lock()
            return workers, t
        '''))
    assert threads(doc) == [
        (22, "threading.Thread", "print", None),        # from threading import *, in a comprehension
        (23, "threading.Timer", "print", None),
        (24, "ThreadPoolExecutor", None, "pool"),
        (26, "ProcessPoolExecutor", None, None),
        (27, "multiprocessing.Pool", None, None),
        (28, "multiprocessing.Process", "_work", "worker-1"),  # positional target and name
        (29, "multiprocessing.ThreadPool", None, None),
        (30, "threading.Thread", "lambda", "f'w-{t}'"),  # make = threading.Thread
        (31, "threading.Thread", None, None),            # subclass of a subclass of Thread
        (32, "_thread.start_new_thread", "listen", None),
    ]
    assert doc["threads"]["count"] == 10


def test_line_counts_blanks_comments_docstrings(tmp_path: Path) -> None:
    path = tmp_path / "lines.py"
    path.write_bytes(
        b'"""Doc.\r\n'
        b"\r\n"
        b'Still the docstring."""\r\n'
        b"# comment\r\n"
        b"\r\n"
        b"x = 1  # trailing comment\r\n"
        b"    \r\n"
        b"y = (\r\n"
        b"    # inside parentheses\r\n"
        b"    2\r\n"
        b")\r\n"
        b"z = 3"
    )
    doc = analyze_file(path)
    assert doc["total_lines"] == 12
    # code: 1, 3 (docstring, its blank line excluded), 6, 8, 10, 11, 12
    assert doc["code_lines"] == 7


def test_a_hash_inside_a_docstring_is_code(tmp_path: Path) -> None:
    doc = analyze_file(write(tmp_path, "doc.py", '''\
        def f():
            """Usage:

            # not a comment: part of the docstring
            """
            x = ("a"
                 # a comment between two strings
                 "b")
            return x
        '''))
    assert doc["total_lines"] == 9
    assert doc["code_lines"] == 7  # all but blank line 3 and comment line 7; line 4 is code


def test_base_agent_gaps(tmp_path: Path) -> None:
    no_super = analyze_file(write(tmp_path, "a.py", '''\
        from base_agent import BaseAgent


        class A(BaseAgent):
            def __init__(self):
                self.x = 1
        '''))
    assert no_super["base_agent"] == {
        "inherits": True, "super_init": False, "health_method": False,
        "classes": [{"name": "A", "line": 4, "super_init": False, "health_method": False}],
        "legacy_classes": [],
    }
    assert factors(no_super)["BaseAgent gaps"] == 10
    reason = no_super["risk"]["factors"][5]["reason"]
    assert "super().__init__" in reason and "_get_health_status" in reason

    chain = analyze_file(write(tmp_path, "b.py", '''\
        import common.core.base_agent as ba


        class Child(Middle):
            pass


        class Middle(ba.BaseAgent):
            def __init__(self, **kw):
                ba.BaseAgent.__init__(self, **kw)

            def _get_health_status(self):
                return {}


        class Other(Middle):
            def __init__(self):
                super(Other, self).__init__()
        '''))
    assert chain["base_agent"]["inherits"] is True
    assert chain["base_agent"]["super_init"] is True
    assert chain["base_agent"]["health_method"] is True
    assert [c["name"] for c in chain["base_agent"]["classes"]] == ["Child", "Middle", "Other"]
    assert factors(chain)["BaseAgent gaps"] == 0

    plain = analyze_file(write(tmp_path, "c.py", '''\
        class Agent:
            def __init__(self):
                pass

            def _get_health_status(self):
                return {}
        '''))
    assert plain["base_agent"] == {
        "inherits": False, "super_init": False, "health_method": True, "classes": [],
        "legacy_classes": [{"name": "Agent", "line": 1, "why": "name ends with Agent"}],
    }
    assert factors(plain)["BaseAgent gaps"] == 10
    assert plain["risk"]["factors"][5]["reason"] == "no class derives from BaseAgent"


def test_legacy_agent_classes(tmp_path: Path) -> None:
    doc = analyze_file(write(tmp_path, "legacy.py", '''\
        from common.core.base_agent import BaseAgent


        class BaseAgent:                 # a local base: neither
            pass


        class TranslatorAgent:           # name
            pass


        class Listener:                  # an agent's method
            def handle_request(self, request):
                return request


        class FastListener(Listener):    # derives from a legacy agent
            pass


        class AgentConfig:               # "Agent" in the name is not enough
            pass


        class Helper:
            def run(self):
                pass


        class NewAgent(BaseAgent):       # a BaseAgent class, not legacy
            pass
        '''))
    assert doc["base_agent"]["legacy_classes"] == [
        {"name": "TranslatorAgent", "line": 8, "why": "name ends with Agent"},
        {"name": "Listener", "line": 12, "why": "defines handle_request"},
        {"name": "FastListener", "line": 17, "why": "derives from Listener"},
    ]
    assert [c["name"] for c in doc["base_agent"]["classes"]] == ["NewAgent"]


def test_critical_functions_by_name_and_body(tmp_path: Path) -> None:
    doc = analyze_file(write(tmp_path, "crit.py", '''\
        import torch
        import subprocess


        def unload_all():
            pass


        def swap(m):
            m.cuda()


        def report():
            return self_check.health_report()


        def budget(agent):
            agent.vram_budget_mb -= 1


        def smi():
            return subprocess.run(["nvidia-smi", "-q"])


        def outer():
            def warm_model_load():
                return torch.load("x")
            return warm_model_load


        def fine():
            return 1 + 1
        '''))
    assert [(c["name"], c["line"], c["touches"]) for c in doc["critical_functions"]] == [
        ("unload_all", 5, ["model"]),
        ("swap", 9, ["gpu"]),
        ("report", 13, ["health"]),
        ("budget", 17, ["gpu"]),
        ("smi", 21, ["gpu"]),
        ("outer.warm_model_load", 26, ["model"]),
    ]
    assert [g["line"] for g in doc["gpu_operations"]["locations"]] == [10, 22]


def test_mma_profile_scores_critical() -> None:
    risk = risk_score(size_bytes=227 * 1024, code_lines=3557, max_function_complexity=45,
                      sockets=53, threads=29, gpu_operations=40, inherits=True,
                      super_init=True, health_method=True)
    assert [f["points"] for f in risk["factors"]] == [10, 10, 10, 10, 10, 0]
    assert (risk["score"], risk["max"], risk["level"]) == (50, 60, "CRITICAL")


@pytest.mark.parametrize(("score", "level"), [
    (0, "LOW"), (15, "LOW"), (16, "MEDIUM"), (30, "MEDIUM"), (31, "HIGH"), (45, "HIGH"),
    (46, "CRITICAL"), (60, "CRITICAL"),
])
def test_level_boundaries(score: int, level: str) -> None:
    assert scoring.level(score) == level


BASE: dict[str, Any] = dict(size_bytes=0, code_lines=0, max_function_complexity=0, sockets=0,
                            threads=0, gpu_operations=0, inherits=True, super_init=True,
                            health_method=True)


def test_thresholds_take_the_highest_step_reached() -> None:
    assert risk_score(**BASE)["score"] == 0
    pts = {k: risk_score(**{**BASE, k: v})["score"]
           for k, v in [("size_bytes", 199 * 1024), ("code_lines", 2999),
                        ("max_function_complexity", 60), ("sockets", 4), ("threads", 3),
                        ("gpu_operations", 9)]}
    assert pts == {"size_bytes": 8, "code_lines": 8, "max_function_complexity": 10,
                   "sockets": 2, "threads": 4, "gpu_operations": 4}
    assert risk_score(**{**BASE, "super_init": False})["score"] == 6
    assert risk_score(**{**BASE, "health_method": False})["score"] == 4
    assert risk_score(**{**BASE, "super_init": False, "health_method": False})["score"] == 10
    assert risk_score(**{**BASE, "inherits": False})["score"] == 10


def test_a_file_that_does_not_parse_has_a_factor_of_its_own() -> None:
    assert [f["name"] for f in risk_score(**BASE)["factors"]] == [
        "file size", "code complexity", "sockets", "threads", "GPU operations", "BaseAgent gaps"]
    by_errors = {n: risk_score(**{**BASE, "syntax_errors": n})["factors"][-1]["points"]
                 for n in (1, 2, 4, 5, 30)}
    assert by_errors == {1: 6, 2: 8, 4: 8, 5: 10, 30: 10}
    one = risk_score(**{**BASE, "syntax_errors": 1, "unparsed_lines": 3,
                        "first_syntax_error": "at line 7: unmatched ')'"})
    assert one["factors"][-1] == {
        "name": "syntax errors", "points": 6, "max": 10,
        "reason": "does not parse: 1 syntax error, first at line 7: unmatched ')'; "
                  "3 code lines could not be read"}
    assert (one["score"], one["level"]) == (6, "LOW")
    worst = risk_score(**{**BASE, "size_bytes": 300 * 1024, "code_lines": 4000, "sockets": 60,
                          "threads": 30, "gpu_operations": 40, "inherits": False,
                          "syntax_errors": 3})
    assert (worst["score"], worst["max"], worst["capped_from"]) == (60, 60, 68)


def test_scoring_table_is_documented() -> None:
    assert scoring.__doc__ is not None
    assert scoring.scoring_table() in scoring.__doc__


def mma_like_source(base_agent: bool = True) -> tuple[str, int, int]:
    """A ModelManagerAgent-shaped file: 227 KB, 4795 lines, 3557 code lines,
    53 sockets, 29 threads, 40 GPU calls. Returns (source, total lines, code lines)."""
    code = [
        "import threading",
        "import zmq",
        "import torch",
        "from common.core.base_agent import BaseAgent",
        "",
        "",
        "class ModelManagerAgent(BaseAgent):" if base_agent else "class ModelManagerAgent:",
        "    def __init__(self, **kw):",
        "        super().__init__(**kw)",
        "        self.context = zmq.Context()",
        "",
        "    def _get_health_status(self):",
        "        return {'status': 'ok'}",
    ]
    for i in range(53):
        code += ["", f"    def socket_{i}(self):", "        return self.context.socket(zmq.REQ)"]
    for i in range(29):
        code += ["", f"    def thread_{i}(self):",
                 "        return threading.Thread(target=self.run, daemon=True)"]
    for i in range(40):
        code += ["", f"    def gpu_{i}(self):", "        return torch.cuda.memory_allocated(0)"]
    lines = list(code)
    n_code = sum(1 for line in lines if line.strip())
    i = 0
    while n_code < 3556:
        lines += [f"    def pad_{i}(self, x):", "        return x + 1"]
        n_code += 2
        i += 1
    if n_code < 3557:
        lines.append("    padding = 0")
        n_code += 1
    assert n_code == 3557
    comments = 0
    while len(lines) < 4795:
        lines.append("# " if comments % 2 == 0 else "")
        comments += 1
    text = "\n".join(lines) + "\n"
    deficit = 227 * 1024 - len(text.encode())
    assert deficit > 0
    # spread the missing bytes over the comment lines, at the end of the file
    comment_rows = [k for k in range(len(lines)) if lines[k] == "# "]
    per, extra = divmod(deficit, len(comment_rows))
    for n, k in enumerate(comment_rows):
        lines[k] = "# " + "x" * (per + (1 if n < extra else 0))
    text = "\n".join(lines) + "\n"
    return text, len(lines), n_code




def test_synthetic_model_manager_agent_lands_critical(tmp_path: Path) -> None:
    source, total, code = mma_like_source()
    path = tmp_path / "model_manager_agent.py"
    path.write_text(source)
    doc = analyze_file(path)
    assert doc["size_bytes"] == 227 * 1024
    assert (doc["total_lines"], doc["code_lines"]) == (total, code) == (4795, 3557)
    assert doc["base_agent"]["inherits"] and doc["base_agent"]["super_init"]
    assert doc["base_agent"]["health_method"]
    assert doc["sockets"]["count"] == doc["sockets"]["zmq"] == 53
    assert doc["sockets"]["by_type"] == {"REQ": 53}
    assert doc["sockets"]["locations"][0]["line"] == 16
    assert doc["threads"]["count"] == 29
    assert {t["target"] for t in doc["threads"]["locations"]} == {"run"}
    assert doc["gpu_operations"]["count"] == 40
    assert len(doc["critical_functions"]) == 41  # 40 GPU methods + the health method
    assert factors(doc) == {"file size": 10, "code complexity": 10, "sockets": 10,
                            "threads": 10, "GPU operations": 10, "BaseAgent gaps": 0}
    assert (doc["risk"]["score"], doc["risk"]["level"]) == (50, "CRITICAL")

    path.write_text(mma_like_source(base_agent=False)[0])
    worse = analyze_file(path)
    assert (worse["risk"]["score"], worse["risk"]["level"]) == (60, "CRITICAL")


def test_tiny_clean_agent_is_low(tmp_path: Path) -> None:
    doc = analyze_file(write(tmp_path, "tiny.py", '''\
        import zmq
        from common.core.base_agent import BaseAgent


        class TinyAgent(BaseAgent):
            def __init__(self):
                super().__init__(name="TinyAgent", port=5600)
                self.socket = self.context.socket(zmq.REP)

            def _get_health_status(self):
                return {"status": "ok"}
        '''))
    assert sockets(doc) == [(8, "zmq", "REP", "socket-type")]
    assert doc["threads"]["count"] == 0
    assert factors(doc) == {"file size": 0, "code complexity": 0, "sockets": 2, "threads": 0,
                            "GPU operations": 0, "BaseAgent gaps": 0}
    assert (doc["risk"]["score"], doc["risk"]["level"]) == (2, "LOW")


def test_unreadable_missing_and_not_text(tmp_path: Path) -> None:
    missing = tmp_path / "missing.py"
    with pytest.raises(ConfigError) as err:
        analyze_file(missing)
    assert err.value.problems[0].file == str(missing)
    assert "cannot read" in err.value.problems[0].message
    with pytest.raises(ConfigError) as err:
        analyze_path(missing)
    assert err.value.problems == [PathProblem(str(missing), 0, "no such file or directory")]
    assert str(err.value) == f"{missing}: no such file or directory"  # one line, no ":0:"
    assert err.value.exit_code == 2

    latin = tmp_path / "latin.py"
    latin.write_bytes(b"x = '\xff'\n")
    assert analyze_path(latin) == {
        "file": str(latin), "skipped": "not text: byte 0xff at offset 5 is not utf-8"}
    binary = tmp_path / "blob.py"
    binary.write_bytes(b"x = 1\n\x00\x01\x02")
    assert analyze_path(binary) == {"file": str(binary), "skipped": "not text: holds NUL bytes"}
    declared = tmp_path / "declared.py"
    declared.write_bytes(b"# -*- coding: latin-1 -*-\nx = '\xff'\n")
    assert analyze_path(declared)["syntax_errors"] == []  # it says what it is: it is text


def test_never_imports_or_runs_the_file(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = write(tmp_path, "evil.py", f'''\
        from pathlib import Path
        Path({str(marker)!r}).write_text("ran")
        raise SystemExit(3)
        ''')
    doc = analyze_file(path)
    assert doc["total_lines"] == 3
    assert not marker.exists()


def test_single_file_document_is_flat(tmp_path: Path) -> None:
    path = write(tmp_path, "agent.py", TRICKY_AGENT)
    doc = analyze_path(path)
    assert "reports" not in doc and "summary" not in doc
    assert doc["risk"]["score"] == 10
    assert list(doc)[:5] == ["file", "size_bytes", "total_lines", "code_lines", "syntax_errors"]


def test_render_text_of_one_file(tmp_path: Path) -> None:
    path = write(tmp_path, "agent.py", TRICKY_AGENT)
    text = render_text(analyze_path(path))
    assert text.splitlines()[0] == str(path)
    assert f"size        {len(TRICKY_AGENT.encode()):,} bytes, 48 lines (37 code)" in text
    assert "BaseAgent   inherits yes, super().__init__ yes, _get_health_status yes" in text
    assert "sockets     5 (3 zmq, 2 raw): REP 1, PUB 1, SUB 1, raw 2" in text
    assert "line    23  zmq  SUB     self.ctx.socket  [context]" in text
    assert "line    47  raw  raw     sock  [socket.socket]" in text
    assert ("socket ops  bind 0, connect 0, send 0, recv 0, close 0: "
            "5 created + 0 operations = 5 patterns") in text
    assert "line    42  threading.Thread  (T)  target=run" in text
    assert "line    32  Agent.load_model  (model, gpu)" in text
    assert "risk        10/60 LOW" in text
    assert "BaseAgent gaps    0/10  BaseAgent compliant" in text
    assert "syntax" not in text.split("BaseAgent")[0]  # parses: no syntax line


def migrate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_one_file_json_is_the_flat_document(tmp_path: Path) -> None:
    good = tmp_path / "agent.py"
    good.write_text("import socket\ns = socket.socket()\n")
    ok = migrate("--output", "json", "analyze", str(good))
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["sockets"]["raw"] == 1
    assert doc["risk"]["score"] == 2 + 10


def test_cli_a_broken_file_is_analysed_and_exits_0(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import socket\n\ndef broken(:\n    return socket.socket()\n")
    res = migrate("--output", "json", "analyze", str(bad))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["syntax_errors"] == [{"line": 3, "message": "invalid syntax"}]
    assert [s["line"] for s in doc["sockets"]["locations"]] == [4]
    assert "Traceback" not in res.stderr


def test_cli_bad_paths_exit_2_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    res = migrate("analyze", str(missing))
    assert res.returncode == 2
    assert res.stderr.strip() == f"{missing}: no such file or directory"
    (tmp_path / "empty").mkdir()
    res = migrate("analyze", str(tmp_path / "empty"))
    assert res.returncode == 2
    assert res.stderr.strip() == f"{tmp_path / 'empty'}: no .py file in it"


def test_cli_directory_with_a_broken_file_exits_0_with_a_summary(tmp_path: Path) -> None:
    write(tmp_path, "good.py", "x = 1\n")
    write(tmp_path, "bad.py", "def f(:\n    pass\n")
    (tmp_path / "latin.py").write_bytes(b"x = '\xff'\n")
    res = migrate("--output", "json", "analyze", str(tmp_path))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [s["file"] for s in doc["summary"]] == [str(tmp_path / "bad.py"),
                                                   str(tmp_path / "good.py")]
    assert doc["totals"]["unparsable"] == 1
    assert doc["skipped"] == [{"file": str(tmp_path / "latin.py"),
                               "reason": "not text: byte 0xff at offset 5 is not utf-8"}]
    text = migrate("analyze", str(tmp_path))
    assert text.returncode == 0, text.stderr
    assert "bad.py" in text.stdout and "totals: 2 files, 1 not parsing" in text.stdout
    md = migrate("analyze", str(tmp_path), "--format", "md")
    assert md.returncode == 0, md.stderr
    assert md.stdout.startswith("# Migration risk: files under")
    assert "| `bad.py` |" in md.stdout
