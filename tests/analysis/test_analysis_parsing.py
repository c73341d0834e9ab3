"""The tolerant parser: every broken form bulk edits leave, what it says, what it still reads.

Issue 14 counted, in 217 broken agent files: unmatched `)`/`]`/`}` (~110), invalid
syntax (46), unexpected indent (37), a block with no body after if/try/finally
(14), a `(` never closed (6). Each form below is a small agent broken that way;
each test asserts the error CPython itself reports (line and wording) and the
sockets, operations and threads on the lines around the break, line by line.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path
from typing import Any

import pytest

from orchestrator.analysis import analyze_file
from orchestrator.analysis.parsing import SyntaxIssue, parse_source

HEAD = """\
import threading
import zmq


class Agent:
    def __init__(self):
        self.context = zmq.Context()
"""
TAIL = """\
        threading.Thread(target=self.serve, name="server").start()

    def serve(self):
        while True:
            self.rep.send(self.rep.recv())
"""

# form -> (lines 8.. of __init__, the error, sockets, operations, thread line)
FORMS: dict[str, tuple[str, tuple[int, str], list[tuple[int, str]], dict[str, list[int]], int]] = {
    "unmatched )": (
        "        self.rep = self.context.socket(zmq.REP))\n"
        "        self.rep.bind('tcp://*:5555')\n",
        (8, "unmatched ')'"), [(8, "REP")], {"bind": [9], "send": [14], "recv": [14]}, 10),
    "unmatched ]": (
        "        self.rep = self.context.socket(zmq.REP)\n"
        "        self.ports = [5555, 5556]]\n",
        (9, "unmatched ']'"), [(8, "REP")], {"send": [14], "recv": [14]}, 10),
    "unmatched }": (
        "        self.rep = self.context.socket(zmq.REP)\n"
        "        self.options = {'linger': 0}}\n",
        (9, "unmatched '}'"), [(8, "REP")], {"send": [14], "recv": [14]}, 10),
    "invalid syntax: an import injected into a call": (
        "        self.rep = self.context.socket(\n"
        "            from common.config import REP_TYPE\n"
        "            zmq.REP)\n",
        (9, "invalid syntax"), [(8, "REP")], {"send": [15], "recv": [15]}, 11),
    "invalid syntax: a stray word after a call": (
        "        self.rep = self.context.socket(zmq.REP)\n"
        "        self.rep.bind('tcp://*:5555') from\n",
        (9, "invalid syntax"), [(8, "REP")], {"bind": [9], "send": [14], "recv": [14]}, 10),
    "unexpected indent": (
        "        self.rep = self.context.socket(zmq.REP)\n"
        "            self.rep.bind('tcp://*:5555')\n",
        (9, "unexpected indent"), [(8, "REP")], {"bind": [9], "send": [14], "recv": [14]}, 10),
    "no body after if": (
        "        if self.context is None:\n"
        "        # logging disabled\n"
        "        self.rep = self.context.socket(zmq.REP)\n",
        (10, "expected an indented block after 'if' statement on line 8"),
        [(10, "REP")], {"send": [15], "recv": [15]}, 11),
    "no body after try: only a comment": (
        "        try:\n"
        "            # nothing yet\n"
        "        except Exception:\n"
        "            pass\n"
        "        self.rep = self.context.socket(zmq.REP)\n",
        (10, "expected an indented block after 'try' statement on line 8"),
        [(12, "REP")], {"send": [17], "recv": [17]}, 13),
    "no body after finally": (
        "        try:\n"
        "            self.rep = self.context.socket(zmq.REP)\n"
        "        finally:\n"
        "        # cleanup disabled\n"
        "        self.rep.bind('tcp://*:5555')\n",
        (12, "expected an indented block after 'finally' statement on line 10"),
        [(9, "REP")], {"bind": [12], "send": [17], "recv": [17]}, 13),
    "( never closed": (
        "        self.rep = self.context.socket(zmq.REP\n"
        "        self.rep.bind('tcp://*:5555')\n",
        (8, "'(' was never closed"), [(8, "REP")], {"bind": [9], "send": [14], "recv": [14]},
        10),
}


def cpython_error(source: str) -> tuple[int, str]:
    try:
        ast.parse(source)
    except SyntaxError as exc:
        return exc.lineno or 0, exc.msg
    raise AssertionError("the sample parses: it does not test anything")


def operation_lines(doc: dict[str, Any]) -> dict[str, list[int]]:
    return {op: lines for op, lines in doc["sockets"]["operation_lines"].items() if lines}


@pytest.mark.parametrize("form", list(FORMS))
def test_each_broken_form(tmp_path: Path, form: str) -> None:
    middle, error, socks, ops, thread_line = FORMS[form]
    source = HEAD + middle + TAIL
    assert cpython_error(source) == error  # the sample is broken the way it says
    path = tmp_path / "agent.py"
    path.write_text(source)
    doc = analyze_file(path)
    assert doc["syntax_errors"] == [{"line": error[0], "message": error[1]}]
    assert [(s["line"], s["type"]) for s in doc["sockets"]["locations"]] == socks
    assert operation_lines(doc) == ops
    assert [(t["line"], t["target"], t["name"]) for t in doc["threads"]["locations"]] == [
        (thread_line, "serve", "server")]
    assert doc["critical_functions"] == []
    assert doc["complexity"]["functions"] == 2  # __init__ and serve, still in their class
    assert doc["risk"]["factors"][-1]["name"] == "syntax errors"
    assert doc["risk"]["factors"][-1]["points"] == 6


def test_every_error_is_listed_not_only_the_first(tmp_path: Path) -> None:
    source = textwrap.dedent("""\
        import socket
        import threading
        import zmq
        from common.core.base_agent import BaseAgent


        class MixedAgent(BaseAgent):
            def __init__(self):
                super().__init__(name="MixedAgent"))
                self.rep = self.context.socket(zmq.REP)

            def check_port(self, port):
                probe = socket.socket()
                    probe.settimeout(1)
                return probe.connect_ex(("localhost", port)) == 0

            def start(self):
                try:
                    # the health thread moved to BaseAgent
                finally:
                    threading.Thread(target=self.loop, name="loop").start()

            def loop(self):
                while True:
                    self.rep.send(self.rep.recv()
                    self.publish()

            def publish(self):
                self.pub = self.context.socket(zmq.PUB)
                self.pub.bind("tcp://*:5556"]

            def _get_health_status(self):
                return {"status": "ok"}
        """)
    path = tmp_path / "mixed.py"
    path.write_text(source)
    doc = analyze_file(path)
    assert doc["syntax_errors"] == [
        {"line": 9, "message": "unmatched ')'"},
        {"line": 14, "message": "unexpected indent"},
        {"line": 20, "message": "expected an indented block after 'try' statement on line 18"},
        {"line": 25, "message": "'(' was never closed"},
        {"line": 30, "message": "closing parenthesis ']' does not match opening parenthesis '('"},
    ]
    assert (doc["syntax_errors"][0]["line"], doc["syntax_errors"][0]["message"]) \
        == cpython_error(source)
    assert [(s["line"], s["kind"], s["type"]) for s in doc["sockets"]["locations"]] == [
        (10, "zmq", "REP"), (13, "raw", "raw"), (29, "zmq", "PUB")]
    assert operation_lines(doc) == {"bind": [30], "connect": [15], "send": [25],
                                    "recv": [25]}
    assert [(t["line"], t["target"], t["name"]) for t in doc["threads"]["locations"]] == [
        (21, "loop", "loop")]
    ba = doc["base_agent"]
    assert ba["classes"] == [{"name": "MixedAgent", "line": 7, "super_init": True,
                              "health_method": True}]
    assert doc["unparsed_lines"] == []
    syntax = doc["risk"]["factors"][-1]
    assert (syntax["name"], syntax["points"]) == ("syntax errors", 10)
    assert syntax["reason"] == ("does not parse: 5 syntax errors, first at line 9: "
                                "unmatched ')'; every code line was still read")


def test_past_an_error_no_line_rewrite_can_fix_units_are_read_one_by_one(
        tmp_path: Path) -> None:
    """`def broken(:` defeats step 2 (any rewrite leaves its body misindented), so
    the rest of the file goes through step 3: each statement on its own."""
    source = textwrap.dedent("""\
        import threading
        import zmq


        def broken(:
            pass


        class Agent:
            def __init__(self):
                self.context = zmq.Context()
                self.pub = self.context.socket(zmq.PUB))
                    self.pub.bind("tcp://*:5556")
                threading.Thread(None, self.serve, "server").start()

            def serve(self):
                if self.debug:
                # tracing disabled
                self.rep = self.context.socket(zmq.REP
                self.rep.bind("tcp://*:5555")

            def stop(self):
                try:
                    self.rep.close() from
                except OSError:
                    pass
        """)
    assert cpython_error(source) == (5, "invalid syntax")
    path = tmp_path / "units.py"
    path.write_text(source)
    doc = analyze_file(path)
    assert doc["syntax_errors"] == [
        {"line": 5, "message": "invalid syntax"},
        {"line": 12, "message": "unmatched ')'"},
        {"line": 13, "message": "unexpected indent"},        # a block under a statement
        {"line": 19, "message": "'(' was never closed"},     # closed at its line's end
        {"line": 19, "message": "expected an indented block after 'if' statement on line 17"},
        {"line": 24, "message": "invalid syntax"},           # read up to `from`
    ]
    assert [(s["line"], s["type"]) for s in doc["sockets"]["locations"]] == [
        (12, "PUB"), (19, "REP")]
    assert operation_lines(doc) == {"bind": [13, 20], "close": [24]}
    assert [(t["line"], t["target"], t["name"]) for t in doc["threads"]["locations"]] == [
        (14, "serve", "server")]  # Thread(group, target, name): positional
    assert doc["complexity"]["functions"] == 4
    assert doc["unparsed_lines"] == []  # `try:` and `except OSError:` were read too


def test_in_step_3_a_repair_does_not_report_what_it_caused() -> None:
    broken_first = "def broken(:\n    pass\n\n\n"  # sends the file to step 3
    source = broken_first + textwrap.dedent("""\
        def serve(ctx):
            rep = ctx.socket(
                zmq.REP
            with rep)):
            # nothing
            rep.bind("tcp://*:5555")
        """)
    parsed = parse_source(source)
    assert parsed.errors == [
        SyntaxIssue(1, "invalid syntax"),
        # closing the `(` at the end of line 6 leaves `zmq.REP` misindented: not reported
        SyntaxIssue(6, "'(' was never closed"),
        SyntaxIssue(8, "unmatched ')'"),
        # the header was broken too: its empty block is still reported
        SyntaxIssue(10, "expected an indented block after 'with' statement on line 8"),
    ]
    calls = sorted((n.lineno, ast.unparse(n.func)) for n in ast.walk(parsed.tree)
                   if isinstance(n, ast.Call))
    assert calls == [(6, "ctx.socket"), (10, "rep.bind")]


def test_a_stray_indented_block_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "stray.py"
    path.write_text(textwrap.dedent("""\
        import zmq
        ctx = zmq.Context()
            rep = ctx.socket(zmq.REP)
            rep.bind("tcp://*:1")
            rep.close()
        pub = ctx.socket(zmq.PUB)
        """))
    doc = analyze_file(path)
    assert doc["syntax_errors"] == [{"line": 3, "message": "unexpected indent"}]
    assert [s["line"] for s in doc["sockets"]["locations"]] == [3, 6]
    assert operation_lines(doc) == {"bind": [4], "close": [5]}


def test_a_broken_header_keeps_its_name_and_bases(tmp_path: Path) -> None:
    path = tmp_path / "headers.py"
    path.write_text(textwrap.dedent("""\
        import threading
        from common.core.base_agent import BaseAgent


        def broken(:
            threading.Thread(target=run).start()


        class Agent(BaseAgent:
            def __init__(self):
                super().__init__()

            def _get_health_status(self):
                return {}
        """))
    doc = analyze_file(path)
    assert [e["line"] for e in doc["syntax_errors"]] == [5, 9]
    assert [(t["line"], t["target"]) for t in doc["threads"]["locations"]] == [(6, "run")]
    assert doc["base_agent"]["classes"] == [
        {"name": "Agent", "line": 9, "super_init": True, "health_method": True}]
    assert doc["complexity"]["functions"] == 3  # broken, and the two methods
    assert doc["unparsed_lines"] == [[5, 5]]  # the def's arguments are lost, not its body


def test_unterminated_strings(tmp_path: Path) -> None:
    one_line = parse_source("import zmq\nx = 'abc\nsock = zmq.Context().socket(zmq.REQ)\n")
    assert one_line.errors == [SyntaxIssue(2, "unterminated string literal (detected at line 2)")]
    assert [n.lineno for n in ast.walk(one_line.tree) if isinstance(n, ast.Call)] == [3, 3]
    triple = parse_source('x = 1\ny = """abc\nz = f()\n')
    # CPython reads the rest of the file as the string: so does the report
    assert triple.errors == [SyntaxIssue(
        2, "unterminated triple-quoted string literal (detected at line 3)")]
    assert [type(s).__name__ for s in triple.tree.body] == ["Assign", "Assign"]
    assert triple.unparsed == [(3, 3)]


def test_mismatched_brackets_take_the_right_closer() -> None:
    parsed = parse_source("a = f(x}\nb = g[y)\nc = h(z]\n")
    assert parsed.errors == [
        SyntaxIssue(1, "closing parenthesis '}' does not match opening parenthesis '('"),
        SyntaxIssue(2, "closing parenthesis ')' does not match opening parenthesis '['"),
        SyntaxIssue(3, "closing parenthesis ']' does not match opening parenthesis '('"),
    ]
    assert [type(s.value).__name__ for s in parsed.tree.body if isinstance(s, ast.Assign)
            ] == ["Call", "Subscript", "Call"]


def test_indentation_forms_at_the_edges() -> None:
    first = parse_source("    x = 1\ny = f()\n")
    assert first.errors == [SyntaxIssue(1, "unexpected indent")]
    assert len(first.tree.body) == 2
    dedent = parse_source("if x:\n        a()\n    b()\nc()\n")
    assert dedent.errors == [SyntaxIssue(3, "unindent does not match any outer indentation level")]
    assert sorted(n.lineno for n in ast.walk(dedent.tree) if isinstance(n, ast.Call)) == [2, 3, 4]
    for source in ("x = 1\ndef f():\n", "x = 1\ndef f():", "x = 1\ndef f():\n    # later\n\n"):
        line, message = cpython_error(source)
        assert parse_source(source).errors == [SyntaxIssue(line, message)], source
        assert message == "expected an indented block after function definition on line 2"


def test_crlf_tabs_and_decorators() -> None:
    crlf = parse_source("def f():\r\n    x = 1)\r\n    y()\r\n")
    assert crlf.errors == [SyntaxIssue(2, "unmatched ')'")]
    assert sorted(n.lineno for n in ast.walk(crlf.tree) if isinstance(n, ast.Call)) == [3]
    tabs = parse_source("class A:\n\tdef f(self):\n\t\tx = 1)\n\t\ty()\n")
    assert tabs.errors == [SyntaxIssue(3, "unmatched ')'")]
    decorated = parse_source(
        "@dec(1)\n@dec2\ndef f(:\n    g()\n\nasync def h():\n    async with x as y:\n"
        "    await z()\n")
    assert decorated.errors == [
        SyntaxIssue(3, "invalid syntax"),
        SyntaxIssue(8, "expected an indented block after 'with' statement on line 7")]
    names = [n.name for n in ast.walk(decorated.tree)
             if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    assert sorted(names) == ["f", "h"]
    assert sorted(n.lineno for n in ast.walk(decorated.tree) if isinstance(n, ast.Call)) == [4, 8]


def test_a_valid_file_is_parsed_once_and_untouched() -> None:
    source = "import zmq\n\n\ndef f():\n    return zmq.Context()\n"
    parsed = parse_source(source)
    assert parsed.parses and parsed.errors == [] and parsed.unparsed == []
    assert ast.dump(parsed.tree) == ast.dump(ast.parse(source))


def test_nul_bytes_are_not_python() -> None:
    with pytest.raises(ValueError, match="NUL"):
        parse_source("x = 1\x00\n")
