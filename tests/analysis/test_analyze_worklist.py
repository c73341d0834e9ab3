"""`migrate analyze --worklist`: every site the migration must change, one line each.

The agents here are written for the test, with every kind of site the seed
describes (ZMQ REP/REQ/PUB/SUB sockets made in loops and in helpers, raw sockets,
`threading.Thread` in its several spellings, a syntax error half-way through); the
seed's own file is read from ../shared/seed (never copied into the repository).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from orchestrator.analysis import analyze_path
from orchestrator.analysis.render import render_text, worklist_of
from tests.support.agent_sources import AGENT, SEED, write

# Half-way through, a bulk edit broke it; sites after the break are still found.
BROKEN = textwrap.dedent('''\
    import threading
    import zmq


    class VisionAgent:
        def __init__(self):
            self.context = zmq.Context()
            self.pub = self.context.socket(zmq.PUB)
            self.pub.bind("tcp://*:5590"))

        def start(self):
            threading.Thread(target=self._loop).start()
    ''')


def line_of(path: Path, text: str) -> int:
    rows = [n for n, row in enumerate(path.read_text().splitlines(), 1) if text in row]
    assert len(rows) == 1, (text, rows)
    return rows[0]


def sites(doc: dict[str, Any], kind: str) -> list[tuple[int, str, str]]:
    return [(s["line"], s["what"], s["target"]) for s in doc["worklist"] if s["kind"] == kind]


def test_every_socket_site_with_its_type_and_endpoint(tmp_path: Path) -> None:
    agent = write(tmp_path, "speech_agent.py", AGENT)
    doc = analyze_path(agent)
    socks = sites(doc, "socket")
    assert [(line, what) for line, what, _ in socks] == [
        (line_of(agent, "self.rep = self.context"), "zmq.REP bind tcp://*:5570 (self.rep)"),
        # in a loop: one site; its endpoint is the f-string as written
        (line_of(agent, "sub = self.context.socket(zmq.SUB)"),
         "zmq.SUB connect f'tcp://localhost:{port}' (sub)"),
        # in a helper: the type its caller passes
        (line_of(agent, "sock = self.context.socket(kind)"),
         "zmq.PUB bind f'tcp://*:{port}' (sock)"),
        (line_of(agent, "req = self.context.socket(zmq.REQ)"), "zmq.REQ connect address (req)"),
        (line_of(agent, "probe = socket.socket("),
         "socket.socket connect ('localhost', port) (probe)"),
    ]
    targets = {what.split()[0]: target for _, what, target in socks}
    assert targets["zmq.REP"].startswith("BaseAgent request system")
    assert targets["zmq.REQ"].startswith("BaseAgent socket management")
    assert "raw" in targets["socket.socket"]


def test_every_thread_spelling_is_a_thread_site(tmp_path: Path) -> None:
    agent = write(tmp_path, "speech_agent.py", AGENT)
    threads = sites(analyze_path(agent), "thread")
    assert [(line, what) for line, what, _ in threads] == [
        (line_of(agent, "threading.Thread(target=self._memory_loop"),
         "threading.Thread(target=_memory_loop, name=memory)"),
        (line_of(agent, "th.Thread("), "threading.Thread(target=_health_check_loop)"),
        (line_of(agent, "    Thread(target=self._handle"),
         "threading.Thread(target=_handle_requests_loop, name=requests)"),
        (line_of(agent, "T(target=self._stats_loop)"), "threading.Thread(target=_stats_loop)"),
    ]
    targets = [target for _, _, target in threads]
    assert targets[0].startswith("BaseAgent lifecycle")
    assert targets[1] == "BaseAgent health system (_get_health_status)"
    assert targets[2].startswith("BaseAgent request system")
    assert targets[3].startswith("BaseAgent lifecycle")


def test_lifecycle_and_health_sites(tmp_path: Path) -> None:
    agent = write(tmp_path, "speech_agent.py", AGENT)
    doc = analyze_path(agent)
    assert [(line, what) for line, what, _ in sites(doc, "lifecycle")] == [
        (line_of(agent, "self.context = zmq.Context()"), "zmq context zmq.Context()")]
    assert [(line, what) for line, what, _ in sites(doc, "health")] == [
        (line_of(agent, "def _health_check_loop"), "def SpeechAgent._health_check_loop")]
    # a class that is not a BaseAgent, and one with no _get_health_status
    legacy = write(tmp_path, "vision_agent.py", BROKEN)
    legacy_doc = analyze_path(legacy)
    assert legacy_doc["syntax_errors"]
    assert sites(legacy_doc, "lifecycle")[0][:2] == (
        line_of(legacy, "class VisionAgent"),
        "class VisionAgent: not a BaseAgent (name ends with Agent)")


def test_a_file_broken_half_way_still_lists_the_sites_after_the_break(tmp_path: Path) -> None:
    agent = write(tmp_path, "vision_agent.py", BROKEN)
    doc = analyze_path(agent)
    assert doc["syntax_errors"] == [{"line": line_of(agent, '5590"))'),
                                     "message": "unmatched ')'"}]
    kinds = [(s["line"], s["kind"]) for s in doc["worklist"]]
    assert (line_of(agent, "self.pub = self.context"), "socket") in kinds
    assert (line_of(agent, "threading.Thread(target=self._loop)"), "thread") in kinds


def test_worklist_text_is_one_line_per_site(tmp_path: Path) -> None:
    write(tmp_path, "a/speech_agent.py", AGENT)
    write(tmp_path, "b/vision_agent.py", BROKEN)
    result = worklist_of(analyze_path(tmp_path))
    text = render_text(result).splitlines()
    assert len(text) == len(result["worklist"]) + 1
    assert text[0].startswith("a/speech_agent.py:")
    for line, site in zip(text, result["worklist"], strict=False):
        rel = Path(site["file"]).relative_to(tmp_path).as_posix()
        assert line == f"{rel}:{site['line']}  {site['kind']:<9}  {site['what']}  " \
                       f"-> {site['target']}"
    assert text[-1].startswith(f"{len(result['worklist'])} sites: ")


@pytest.fixture(scope="module")
def seed_doc() -> dict[str, Any]:
    assert SEED.is_file(), f"the seed's agent is test data at {SEED}"
    return analyze_path(SEED)


def test_seed_counts(seed_doc: dict[str, Any]) -> None:
    """The seed: 19 socket creations (17 ZMQ context.socket, 2 raw socket.socket), 7 threads."""
    socks = seed_doc["sockets"]
    assert (socks["count"], socks["zmq"], socks["raw"]) == (19, 17, 2)
    assert seed_doc["threads"]["count"] == 7
    assert all(t["kind"] == "threading.Thread" for t in seed_doc["threads"]["locations"])
    assert seed_doc["syntax_errors"]  # it does not parse as a whole, like the real one


def test_seed_worklist_has_every_socket_creation_and_thread(seed_doc: dict[str, Any]) -> None:
    kinds = Counter(s["kind"] for s in seed_doc["worklist"])
    assert kinds["socket"] >= 19 and kinds["thread"] >= 7
    socket_lines = {s["line"] for s in seed_doc["worklist"] if s["kind"] == "socket"}
    assert socket_lines == {s["line"] for s in seed_doc["sockets"]["locations"]}
    threads = [s for s in seed_doc["worklist"] if s["kind"] == "thread"]
    assert {s["line"] for s in threads} == \
        {t["line"] for t in seed_doc["threads"]["locations"]}
    assert "threading.Thread(target=_memory_management_loop, name=memory_management)" in \
        [s["what"] for s in threads]
    raw = [s for s in seed_doc["worklist"] if s["what"].startswith("socket.socket")]
    assert len(raw) == 2
    zmq_types = Counter(s["what"].split()[0] for s in seed_doc["worklist"]
                        if s["kind"] == "socket")
    assert sum(n for t, n in zmq_types.items() if t.startswith("zmq.")) == 17


def test_seed_worklist_through_the_cli_json_and_a_pipe() -> None:
    cmd = [sys.executable, "-m", "orchestrator", "--output", "json", "analyze", str(SEED),
           "--worklist"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert set(doc["worklist"][0]) == {"file", "line", "kind", "what", "target"}
    assert Counter(s["kind"] for s in doc["worklist"])["socket"] == 19
    text = subprocess.run(cmd[:3] + cmd[5:], capture_output=True, text=True, timeout=120)
    lines = text.stdout.splitlines()
    assert sum(1 for line in lines if "  thread     threading.Thread(" in line) == 7
    assert all(line.startswith(f"{SEED}:") for line in lines[:-1])


def test_text_report_of_a_file_lists_every_factor(seed_doc: dict[str, Any]) -> None:
    text = render_text(seed_doc).splitlines()
    risk = seed_doc["risk"]
    at = text.index(f"risk        {risk['score']}/{risk['max']} {risk['level']}")
    factors = text[at + 1:at + 1 + len(risk["factors"])]
    assert len(risk["factors"]) == 7  # six, and syntax errors: the seed does not parse
    for line, factor in zip(factors, risk["factors"], strict=True):
        assert line.strip().startswith(factor["name"])
        assert f"{factor['points']:>2}/{factor['max']}  {factor['reason']}" in line
    assert sum(f["points"] for f in risk["factors"]) >= risk["score"]
