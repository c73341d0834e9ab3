"""An agent of the seed's shape, broken the way the real ModelManagerAgent is.

tests/fixtures/analysis/model_manager_agent.py.txt is a cut-down ModelManagerAgent:
a BaseAgent subclass with ZMQ REP/PUB/REQ sockets made in helper methods, raw
sockets for port checks, seven `threading.Thread` sites, `_get_health_status`,
and, like the real 4,799-line file, a `try:` whose body is only a comment, so it
does not parse. Every figure is asserted with its lines, so that an operator can
reconcile each one with the source (and with the seed's "socket patterns").
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from orchestrator.analysis import analyze_path, render_markdown, render_text

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "analysis" / "model_manager_agent.py.txt"


@pytest.fixture()
def agent(tmp_path: Path) -> Path:
    path = tmp_path / "model_manager_agent.py"
    shutil.copyfile(FIXTURE, path)
    return path


@pytest.fixture()
def doc(agent: Path) -> dict[str, Any]:
    return analyze_path(agent)


def line_of(path: Path, text: str) -> int:
    """The line holding `text` (exactly one), so that the fixture can be edited safely."""
    rows = [n for n, row in enumerate(path.read_text().splitlines(), start=1) if text in row]
    assert len(rows) == 1, (text, rows)
    return rows[0]


def test_the_fixture_is_broken_like_the_seed(agent: Path) -> None:
    with pytest.raises(SyntaxError) as err:
        ast.parse(agent.read_text())
    assert err.value.msg.startswith("expected an indented block after 'try' statement")


def test_flat_document_with_the_syntax_error(agent: Path, doc: dict[str, Any]) -> None:
    try_line = line_of(agent, "            try:")
    except_line = line_of(agent, "except Exception as exc:")
    assert doc["risk"]["score"] == 22  # flat: r["risk"]["score"]
    assert doc["syntax_errors"] == [{
        "line": except_line,
        "message": f"expected an indented block after 'try' statement on line {try_line}"}]
    assert doc["unparsed_lines"] == []
    assert (doc["total_lines"], doc["code_lines"]) == (157, 120)
    json.dumps(doc)


def test_base_agent(agent: Path, doc: dict[str, Any]) -> None:
    assert doc["base_agent"] == {
        "inherits": True, "super_init": True, "health_method": True,
        "classes": [{"name": "ModelManagerAgent",
                     "line": line_of(agent, "class ModelManagerAgent(BaseAgent):"),
                     "super_init": True, "health_method": True}],
        "legacy_classes": [],
    }


def test_sockets_by_type_with_their_lines(agent: Path, doc: dict[str, Any]) -> None:
    socks = doc["sockets"]
    assert [(s["line"], s["kind"], s["type"], s["via"]) for s in socks["locations"]] == [
        (line_of(agent, "self.context.socket(zmq.REP)"), "zmq", "REP", "socket-type"),
        (line_of(agent, "self.context.socket(zmq.PUB)"), "zmq", "PUB", "socket-type"),
        # made in a helper from its `kind` parameter: both callers pass zmq.REQ
        (line_of(agent, "self.context.socket(kind)"), "zmq", "REQ", "name"),
        (line_of(agent, "probe = socket.socket("), "raw", "raw", "socket.socket"),
        (line_of(agent, "with socket.socket("), "raw", "raw", "socket.socket"),
    ]
    assert (socks["count"], socks["zmq"], socks["raw"]) == (5, 3, 2)
    assert socks["by_type"] == {"REP": 1, "REQ": 1, "PUB": 1, "raw": 2}
    assert socks["operations"] == {"bind": 3, "connect": 2, "send": 3, "recv": 2, "close": 2}
    assert socks["operation_lines"] == {
        "bind": [line_of(agent, 'sock.bind(f"tcp'), line_of(agent, 'pub.bind(f"tcp'),
                 line_of(agent, 's.bind(("", 0))')],
        "connect": [line_of(agent, "client.connect(address)"),
                    line_of(agent, "probe.connect_ex(")],
        "send": [line_of(agent, "self.socket.send_json("),
                 line_of(agent, "self.health_socket.send_string("),
                 line_of(agent, "self.memory_client.send_json(")],
        "recv": [line_of(agent, "request = self.socket.recv_json()"),
                 line_of(agent, "self.memory_client.recv_json()")],
        "close": [line_of(agent, "probe.close()"), line_of(agent, "sock.close()")],
    }
    # what a line-counting tool calls "socket patterns": creations + operations
    assert socks["patterns"] == 5 + 12


def test_seven_threads_with_target_and_name(agent: Path, doc: dict[str, Any]) -> None:
    assert [(t["line"], t["kind"], t["target"], t["name"])
            for t in doc["threads"]["locations"]] == [
        (line_of(agent, "target=self._request_loop"), "threading.Thread", "_request_loop",
         "requests"),
        (line_of(agent, "target=self._health_loop"), "threading.Thread", "_health_loop",
         "health"),
        (line_of(agent, "target=self._memory_loop"), "threading.Thread", "_memory_loop",
         "memory"),
        (line_of(agent, "target=self._idle_unloader"), "threading.Thread", "_idle_unloader",
         "idle-unload"),
        (line_of(agent, "target=self._vram_monitor"), "threading.Thread", "_vram_monitor",
         "vram"),
        (line_of(agent, "target=self._metrics_loop"), "threading.Thread", "_metrics_loop", None),
        (line_of(agent, "target=self.load_model"), "threading.Thread", "load_model", None),
    ]


def test_the_broken_method_is_still_read(agent: Path, doc: dict[str, Any]) -> None:
    """Past the `try:` with no body: its except clause and what follows are analysed."""
    names = {f["name"]: f for f in doc["critical_functions"]}
    assert names["ModelManagerAgent._get_health_status"]["touches"] == ["gpu", "health"]
    assert names["ModelManagerAgent.load_model"]["touches"] == ["model", "gpu"]
    assert "ModelManagerAgent._metrics_loop" not in names
    assert doc["complexity"]["functions"] == 21
    assert [(g["line"], g["call"]) for g in doc["gpu_operations"]["locations"]] == [
        (line_of(agent, '"used": self._get_vram_usage()'), "self._get_vram_usage"),
        (line_of(agent, "if self._get_vram_usage() >"), "self._get_vram_usage"),
        (line_of(agent, "if self._get_vram_usage() >") + 1, "torch.cuda.empty_cache"),
        (line_of(agent, 'model.to("cuda:0")'), "model.to"),
        (line_of(agent, "self.models.pop(name, None)") + 1, "torch.cuda.empty_cache"),
        (line_of(agent, "torch.cuda.memory_allocated(0)"), "torch.cuda.memory_allocated"),
        (line_of(agent, '"vram_mb": self._get_vram_usage()'), "self._get_vram_usage"),
    ]  # not the Thread whose target is _vram_monitor: a GPU word in an argument


def test_risk_factors(doc: dict[str, Any]) -> None:
    assert [(f["name"], f["points"]) for f in doc["risk"]["factors"]] == [
        ("file size", 2), ("code complexity", 0), ("sockets", 4), ("threads", 6),
        ("GPU operations", 4), ("BaseAgent gaps", 0), ("syntax errors", 6)]
    assert doc["risk"]["level"] == "MEDIUM"


def test_rendered(agent: Path, doc: dict[str, Any]) -> None:
    text = render_text(doc)
    assert "syntax      1 error: does not parse" in text
    assert "sockets     5 (3 zmq, 2 raw): REP 1, REQ 1, PUB 1, raw 2" in text
    assert ("socket ops  bind 3, connect 2, send 3, recv 2, close 2: "
            "5 created + 12 operations = 17 patterns") in text
    assert f"line {line_of(agent, 'target=self._health_loop'):>5}  threading.Thread  " \
           "(threading.Thread)  target=_health_loop name=health" in text
    md = render_markdown(doc)
    assert md.startswith(f"# Migration risk: `{agent}`")
    assert "| 35 | zmq | REP | `self.context.socket` | socket-type |" in md
    assert f"| {line_of(agent, 'target=self._vram_monitor')} | threading.Thread | " \
           "`threading.Thread` | `_vram_monitor` | `vram` |" in md
