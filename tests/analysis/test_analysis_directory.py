"""`migrate analyze DIR`: reports, summary by score, totals, skipped files, workers, rendering."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from orchestrator._exceptions import ConfigError
from orchestrator.analysis import analyze_path, directory, render_markdown, render_text

AGENT = '''\
import threading
import zmq
from common.core.base_agent import BaseAgent


class SpeechAgent(BaseAgent):
    def __init__(self):
        super().__init__(name="SpeechAgent")
        self.rep = self.context.socket(zmq.REP)
        threading.Thread(target=self.listen, name="listener").start()

    def _get_health_status(self):
        return {"status": "ok"}
'''
LEGACY = '''\
import socket


class TranslatorAgent:
    def start(self):
        return socket.socket()


class Cache:
    pass
'''
BROKEN = '''\
import zmq


class VisionAgent:
    def __init__(self):
        self.pub = zmq.Context().socket(zmq.PUB))
'''


def write(root: Path, name: str, source: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    write(tmp_path, "agents/speech_agent.py", AGENT)
    write(tmp_path, "agents/legacy/translator_agent.py", LEGACY)
    write(tmp_path, "pc2/vision_agent.py", BROKEN)
    write(tmp_path, "notes.txt", "not python")
    write(tmp_path, ".venv/lib/site.py", "import socket\nsocket.socket()\n")  # not entered
    write(tmp_path, "agents/__pycache__/x.py", "x = 1\n")  # not entered
    (tmp_path / "pc2" / "latin.py").write_bytes(b"x = '\xff'\n")
    (tmp_path / "pc2" / "gone.py").symlink_to(tmp_path / "nowhere.py")
    return tmp_path


def test_reports_summary_totals_and_skipped(tree: Path) -> None:
    result = analyze_path(tree)
    assert set(result) == {"reports", "summary", "totals", "skipped", "excluded", "duplicates",
                           "warnings"}
    assert [Path(r["file"]).relative_to(tree).as_posix() for r in result["reports"]] == [
        "agents/legacy/translator_agent.py", "agents/speech_agent.py", "pc2/vision_agent.py"]
    assert [(Path(s["file"]).name, s["score"], s["level"], s["syntax_errors"], s["base_agent"])
            for s in result["summary"]] == [
        ("vision_agent.py", 18, "MEDIUM", 1, False),  # socket 2 + not BaseAgent 10 + syntax 6
        ("translator_agent.py", 12, "LOW", 0, False),  # socket 2 + not BaseAgent 10
        ("speech_agent.py", 4, "LOW", 0, True),        # socket 2 + thread 2
    ]
    assert result["totals"] == {
        "files": 3, "unparsable": 1, "agent_classes": 3, "base_agent_classes": 1,
        "legacy_agent_classes": 2, "skipped": 2,
        "sockets": {"count": 3, "zmq": 2, "raw": 1, "by_type": {"PUB": 1, "REP": 1, "raw": 1}},
        "threads": {"count": 1}, "risk": {"score": 18}, "syntax_errors": 1,
        "worklist": result["totals"]["worklist"], "excluded": 1, "duplicates": 0,
        "warnings": 0,
        "left_out": {"default: under a __pycache__ directory": 1}}
    assert result["excluded"] == [{"file": str(tree / "agents" / "__pycache__" / "x.py"),
                                   "reason": "default: under a __pycache__ directory"}]
    assert result["skipped"] == [
        {"file": str(tree / "pc2" / "gone.py"),
         "reason": "cannot read: No such file or directory"},
        {"file": str(tree / "pc2" / "latin.py"),
         "reason": "not text: byte 0xff at offset 5 is not utf-8"},
    ]
    broken = result["reports"][2]
    assert broken["syntax_errors"] == [{"line": 6, "message": "unmatched ')'"}]
    assert [(s["line"], s["type"]) for s in broken["sockets"]["locations"]] == [(6, "PUB")]
    assert broken["base_agent"]["legacy_classes"] == [
        {"name": "VisionAgent", "line": 4, "why": "name ends with Agent"}]


def test_summary_ties_are_sorted_by_file(tmp_path: Path) -> None:
    write(tmp_path, "b.py", "x = 1\n")
    write(tmp_path, "a.py", "y = 2\n")
    summary = analyze_path(tmp_path)["summary"]
    assert [(Path(s["file"]).name, s["score"]) for s in summary] == [("a.py", 10), ("b.py", 10)]


def test_a_path_that_cannot_be_analysed_is_a_config_error(tmp_path: Path) -> None:
    write(tmp_path, "readme.txt", "no python here")
    write(tmp_path, ".hidden/x.py", "x = 1\n")
    with pytest.raises(ConfigError) as err:
        analyze_path(tmp_path)
    assert str(err.value) == f"{tmp_path}: no .py file in it"
    with pytest.raises(ConfigError) as err:
        analyze_path(tmp_path / "missing")
    assert str(err.value) == f"{tmp_path / 'missing'}: no such file or directory"


def test_worker_processes_give_the_same_result(tree: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for k in range(12):
        write(tree, f"more/agent_{k:02d}.py", AGENT.replace("SpeechAgent", f"Agent{k}"))
    alone = directory.analyze_directory(tree, workers=1)
    monkeypatch.setattr(directory, "POOL_MIN_FILES", 2)
    monkeypatch.setattr(directory, "POOL_MIN_BYTES", 0)
    used: list[int] = []
    real_pool = directory.ProcessPoolExecutor

    def counting_pool(max_workers: int, **kwargs: Any) -> directory.ProcessPoolExecutor:
        used.append(max_workers)
        return real_pool(max_workers=max_workers, **kwargs)

    monkeypatch.setattr(directory, "ProcessPoolExecutor", counting_pool)
    pooled = directory.analyze_directory(tree, workers=2)
    assert used == [2]
    assert pooled == alone
    assert pooled["totals"]["files"] == 15


def test_text_is_a_table_with_totals(tree: Path) -> None:
    text = render_text(analyze_path(tree), width=120)
    lines = text.splitlines()
    assert lines[0] == f"migration risk, files under {tree}"
    header = lines[1].split()
    assert header == ["file", "lines", "sockets", "threads", "BaseAgent", "syntax", "errors",
                      "score", "level"]
    rows = [line.split() for line in lines[3:6]]
    assert rows == [
        ["pc2/vision_agent.py", "6", "1", "0", "legacy", "1", "18/60", "MEDIUM"],
        ["agents/legacy/translator_agent.py", "10", "1", "0", "legacy", "12/60", "LOW"],
        ["agents/speech_agent.py", "13", "1", "1", "yes", "4/60", "LOW"],
    ]
    assert lines[-5:] == [
        "totals: 3 files, 1 not parsing; 3 agent classes: 1 BaseAgent, 2 legacy; 2 skipped",
        "        3 sockets (2 zmq, 1 raw), 1 thread, 7 worklist sites; highest score 18/60",
        "left out: 1 file: 1 default: under a __pycache__ directory (--all-files keeps what "
        "the defaults leave out)",
        f"skipped: {tree / 'pc2' / 'gone.py'}: cannot read: No such file or directory",
        f"skipped: {tree / 'pc2' / 'latin.py'}: not text: byte 0xff at offset 5 is not utf-8",
    ]


def test_text_table_folds_long_paths_instead_of_cutting_them(tmp_path: Path) -> None:
    deep = "/".join(["a_rather_long_directory_name"] * 4)
    write(tmp_path, f"{deep}/agent_with_a_long_name.py", AGENT)
    write(tmp_path, "x.py", "x = 1\n")
    text = render_text(analyze_path(tmp_path), width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "".join(text.split()).count("agent_with_a_long_name.py") == 1


def test_markdown_is_the_same_table(tree: Path) -> None:
    md = render_markdown(analyze_path(tree))
    lines = md.splitlines()
    assert lines[0] == f"# Migration risk: files under `{tree}`"
    assert lines[2:7] == [
        "| file | lines | sockets | threads | BaseAgent | syntax errors | score | level |",
        "|---|---:|---:|---:|---|---:|---:|---|",
        "| `pc2/vision_agent.py` | 6 | 1 | 0 | legacy | 1 | 18/60 | MEDIUM |",
        "| `agents/legacy/translator_agent.py` | 10 | 1 | 0 | legacy |  | 12/60 | LOW |",
        "| `agents/speech_agent.py` | 13 | 1 | 1 | yes |  | 4/60 | LOW |",
    ]
    assert ("**Totals:** 3 files, 1 not parsing; 3 agent classes: 1 BaseAgent, 2 legacy; "
            "2 skipped.") in lines
    assert f"- `{tree / 'pc2' / 'latin.py'}`: not text: byte 0xff at offset 5 is not utf-8" \
        in lines


def test_a_skipped_single_file_renders_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "blob.py"
    path.write_bytes(b"\x00\x01")
    result = analyze_path(path)
    assert render_text(result) == f"{path}: skipped: not text: holds NUL bytes"
    assert render_markdown(result) == f"# `{path}`\n\nSkipped: not text: holds NUL bytes\n"
