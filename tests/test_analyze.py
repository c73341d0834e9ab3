"""`migrate analyze`: static analysis of agent files with known counts, lines and scores."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from orchestrator import analyze
from orchestrator._exceptions import ConfigError, Problem
from orchestrator.analyze import analyze_file, analyze_path, render_text, risk_score


def write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def sockets(doc: dict[str, Any]) -> list[tuple[int, str, str]]:
    return [(s["line"], s["kind"], s["via"]) for s in doc["sockets"]["locations"]]


def threads(doc: dict[str, Any]) -> list[tuple[int, str]]:
    return [(t["line"], t["kind"]) for t in doc["threads"]["locations"]]


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
    assert doc["base_agent"] == {
        "inherits": True, "super_init": True, "health_method": True,
        "classes": [{"name": "Agent", "line": 18, "super_init": True, "health_method": True}],
    }
    assert doc["sockets"]["count"] == 5
    assert doc["sockets"]["zmq"] == 3
    assert doc["sockets"]["raw"] == 2
    assert sockets(doc) == [
        (22, "zmq", "context"),      # self.ctx = z.Context.instance(); self.ctx.socket
        (23, "zmq", "context"),      # inside a list comprehension: one site
        (30, "zmq", "context"),      # a helper method that returns a context
        (46, "raw", "socket.socket"),  # import socket as s
        (47, "raw", "socket.socket"),  # from socket import socket as sock
    ]
    assert [s["call"] for s in doc["sockets"]["locations"]] == [
        "self.ctx.socket", "self.ctx.socket", "self._make().socket", "s.socket", "sock"]
    assert doc["threads"]["count"] == 5
    assert threads(doc) == [
        (24, "ThreadPoolExecutor"),
        (42, "threading.Thread"),       # from threading import Thread as T
        (43, "threading.Timer"),
        (44, "threading.Thread"),       # a subclass of T defined in the file
        (45, "multiprocessing.Process"),  # mp.get_context("spawn").Process
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
    assert doc["risk"]["score"] == 10
    assert doc["risk"]["max"] == 60
    assert doc["risk"]["level"] == "LOW"
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
        (8, "zmq", "context"),       # self.context assigned later in the file
        (16, "zmq", "context"),      # from zmq import Context; ctx = Context()
        (17, "zmq", "context"),      # zmq.Context.instance().socket(...)
        (20, "zmq", "context"),      # alias = actx, an asyncio context
        (22, "zmq", "context"),      # with zmq.Context() as c
        (26, "zmq", "context"),      # parameter annotated zmq.Context
        (29, "zmq", "constructor"),  # zmq.Socket(ctx, ...)
        (30, "zmq", "context"),      # dict comprehension: one site
    ]
    assert doc["sockets"]["raw"] == 0


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
        (8, "zmq", "socket-type"),
        (9, "zmq", "socket-type"),
        (10, "zmq", "name"),
    ]


def test_context_name_alone_needs_a_zmq_import(tmp_path: Path) -> None:
    doc = analyze_file(write(tmp_path, "nozmq.py", '''\
        class Thing:
            def go(self):
                return self.context.socket()
        '''))
    assert doc["sockets"]["count"] == 0


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
        (6, "zmq", "context"),
        (11, "raw", "socket.create_connection"),
        (13, "raw", "socket.socket"),   # an import inside a function
        (14, "raw", "socket.socket"),
    ]
    assert (doc["sockets"]["zmq"], doc["sockets"]["raw"]) == (1, 3)


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


        def start():
            workers = [Thread(target=print) for _ in range(4)]
            t = Timer(1.0, print)
            with TPE(max_workers=4) as ex:
                ex.submit(print)
            futures.ProcessPoolExecutor()
            Pool(2)
            Process(target=print)
            multiprocessing.pool.ThreadPool(3)
            make(target=print)
            Subloop()
            _thread.start_new_thread(print, ())
            threading.Event()
            threading.Lock()
            return workers, t
        '''))
    assert threads(doc) == [
        (22, "threading.Thread"),       # from threading import *, in a comprehension
        (23, "threading.Timer"),
        (24, "ThreadPoolExecutor"),
        (26, "ProcessPoolExecutor"),
        (27, "multiprocessing.Pool"),
        (28, "multiprocessing.Process"),
        (29, "multiprocessing.ThreadPool"),
        (30, "threading.Thread"),       # make = threading.Thread
        (31, "threading.Thread"),       # subclass of a subclass of Thread
        (32, "_thread.start_new_thread"),
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
    assert plain["base_agent"] == {"inherits": False, "super_init": False,
                                   "health_method": True, "classes": []}
    assert factors(plain)["BaseAgent gaps"] == 10
    assert plain["risk"]["factors"][5]["reason"] == "no class derives from BaseAgent"


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
    assert analyze._level(score) == level


def test_thresholds_take_the_highest_step_reached() -> None:
    base: dict[str, Any] = dict(size_bytes=0, code_lines=0, max_function_complexity=0,
                                sockets=0, threads=0, gpu_operations=0, inherits=True,
                                super_init=True, health_method=True)
    assert risk_score(**base)["score"] == 0
    pts = {k: risk_score(**{**base, k: v})["score"]
           for k, v in [("size_bytes", 199 * 1024), ("code_lines", 2999),
                        ("max_function_complexity", 60), ("sockets", 4), ("threads", 3),
                        ("gpu_operations", 9)]}
    assert pts == {"size_bytes": 8, "code_lines": 8, "max_function_complexity": 10,
                   "sockets": 2, "threads": 4, "gpu_operations": 4}
    assert risk_score(**{**base, "super_init": False})["score"] == 6
    assert risk_score(**{**base, "health_method": False})["score"] == 4
    assert risk_score(**{**base, "super_init": False, "health_method": False})["score"] == 10
    assert risk_score(**{**base, "inherits": False})["score"] == 10


def test_scoring_table_is_documented() -> None:
    assert analyze.__doc__ is not None
    assert analyze.scoring_table() in analyze.__doc__


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
    assert doc["sockets"]["locations"][0]["line"] == 16
    assert doc["threads"]["count"] == 29
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
    assert sockets(doc) == [(8, "zmq", "socket-type")]
    assert doc["threads"]["count"] == 0
    assert factors(doc) == {"file size": 0, "code complexity": 0, "sockets": 2, "threads": 0,
                            "GPU operations": 0, "BaseAgent gaps": 0}
    assert (doc["risk"]["score"], doc["risk"]["level"]) == (2, "LOW")


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.py", "x = 1\n\ndef broken(:\n    pass\n")
    with pytest.raises(ConfigError) as err:
        analyze_file(path)
    assert len(err.value.problems) == 1
    problem = err.value.problems[0]
    assert (problem.file, problem.line) == (str(path), 3)
    assert str(err.value).startswith(f"{path}:3: not valid Python")
    assert err.value.exit_code == 2


def test_unreadable_and_undecodable_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.py"
    with pytest.raises(ConfigError) as err:
        analyze_file(missing)
    assert err.value.problems[0].file == str(missing)
    assert "cannot read" in err.value.problems[0].message
    with pytest.raises(ConfigError) as err:
        analyze_path(missing)
    assert err.value.problems == [Problem(str(missing), 0, "no such file or directory")]

    latin = tmp_path / "latin.py"
    latin.write_bytes(b"x = '\xff'\n")
    with pytest.raises(ConfigError) as err:
        analyze_file(latin)
    assert "cannot decode" in err.value.problems[0].message


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


def test_directory_reports_and_summary(tmp_path: Path) -> None:
    write(tmp_path, "b_clean.py", "x = 1\n")
    write(tmp_path, "sub/a_risky.py", '''\
        import threading
        import socket


        def go():
            threading.Thread(target=go).start()
            return socket.socket()
        ''')
    write(tmp_path, "notes.txt", "not python")
    result = analyze_path(tmp_path)
    assert [Path(r["file"]).relative_to(tmp_path).as_posix() for r in result["reports"]] == [
        "b_clean.py", "sub/a_risky.py"]
    assert [(Path(s["file"]).name, s["score"], s["level"]) for s in result["summary"]] == [
        ("a_risky.py", 14, "LOW"),  # socket 2 + thread 2 + not a BaseAgent 10
        ("b_clean.py", 10, "LOW"),
    ]
    single = analyze_path(tmp_path / "b_clean.py")
    assert len(single["reports"]) == 1
    assert single["summary"] == [{"file": str(tmp_path / "b_clean.py"), "score": 10,
                                  "level": "LOW"}]
    assert analyze_path(tmp_path / "sub" / "..")["summary"][0]["score"] == 14


def test_directory_with_invalid_files_lists_every_problem(tmp_path: Path) -> None:
    write(tmp_path, "ok.py", "x = 1\n")
    write(tmp_path, "bad1.py", "def f(:\n")
    write(tmp_path, "deep/bad2.py", "x = 1\ny = )\n")
    with pytest.raises(ConfigError) as err:
        analyze_path(tmp_path)
    assert [(Path(p.file).name, p.line) for p in err.value.problems] == [
        ("bad1.py", 1), ("bad2.py", 2)]


def test_empty_directory(tmp_path: Path) -> None:
    result = analyze_path(tmp_path)
    assert result == {"reports": [], "summary": []}
    assert render_text(result) == "no Python files found"


def test_render_text(tmp_path: Path) -> None:
    path = write(tmp_path, "agent.py", TRICKY_AGENT)
    text = render_text(analyze_path(path))
    assert text.splitlines()[0] == str(path)
    assert f"size        {len(TRICKY_AGENT.encode()):,} bytes, 48 lines (37 code)" in text
    assert "BaseAgent   inherits yes, super().__init__ yes, _get_health_status yes" in text
    assert "sockets     5 (3 zmq, 2 raw)" in text
    assert "line    23  zmq  self.ctx.socket  [context]" in text
    assert "line    47  raw  sock  [socket.socket]" in text
    assert "line    42  threading.Thread  (T)" in text
    assert "line    32  Agent.load_model  (model, gpu)" in text
    assert "risk        10/60 LOW" in text
    assert "BaseAgent gaps    0/10  BaseAgent compliant" in text

    write(tmp_path, "other.py", "import zmq\n")
    both = render_text(analyze_path(tmp_path))
    assert both.index("summary (highest risk first)") > both.index("other.py")
    assert both.splitlines()[-2:] == [
        f"  10/60 LOW       {tmp_path / 'agent.py'}",
        f"  10/60 LOW       {tmp_path / 'other.py'}",
    ]
    assert render_text(analyze_file(path)).splitlines()[0] == str(path)


def test_cli_analyze_json_and_syntax_error_exit_2(tmp_path: Path) -> None:
    good = tmp_path / "agent.py"
    good.write_text("import socket\ns = socket.socket()\n")
    bad = tmp_path / "bad.py"
    bad.write_text("def broken(:\n    pass\n")
    ok = subprocess.run([sys.executable, "-m", "orchestrator", "--output", "json", "analyze", str(good)],
                 capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["reports"][0]["sockets"]["raw"] == 1
    res = subprocess.run([sys.executable, "-m", "orchestrator", "analyze", str(bad)],
                  capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.startswith(f"{bad}:1:") and "Traceback" not in res.stderr
