"""A real agent tree: junk left out by default, copies analysed once, bad input counted,
and in a pipe one line per file however long its path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.analysis import analyze_path, render_text

AGENT = """\
import threading
import zmq
from common.core.base_agent import BaseAgent


class {name}(BaseAgent):
    def __init__(self):
        super().__init__(name="{name}")
        self.sock = self.context.socket(zmq.REP)
        threading.Thread(target=self._loop).start()

    def _get_health_status(self):
        return {{"ok": True}}
"""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def agent(name: str) -> str:
    return AGENT.format(name=name)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "agents"
    write(root, "main_pc_code/agents/speech_agent.py", agent("SpeechAgent"))
    write(root, "main_pc_code/agents/vision_agent.py", agent("VisionAgent"))
    write(root, "pc2_code/agents/memory_agent.py", agent("MemoryAgent"))
    # junk the defaults leave out
    write(root, "_trash_2025_07_20/speech_agent.py", agent("OldSpeech"))
    write(root, "main_pc_code/agents/archive/v1/vision_agent.py", agent("OldVision"))
    write(root, "backups/day4/memory_agent.py", agent("OldMemory"))
    write(root, "main_pc_code/agents/speech_agent_backup.py", agent("Backup"))
    write(root, "main_pc_code/agents/vision_agent_old.py", agent("Old"))
    write(root, "main_pc_code/agents/vision_agent_copy.py", agent("Copy"))
    write(root, "main_pc_code/agents/speech_agent.bak.py", agent("Bak"))
    write(root, "main_pc_code/agents/__pycache__/x.py", "x = 1\n")
    # an identical copy under another name
    write(root, "pc2_code/agents/memory_agent_v2.py", agent("MemoryAgent"))
    write(root, "main_pc_code/utils/helpers.py", "def f():\n    return 1\n")
    return root


def rels(root: Path, items: list[dict[str, str]], key: str = "file") -> list[str]:
    return sorted(Path(i[key]).relative_to(root).as_posix() for i in items)


def test_defaults_leave_out_trash_archive_backup_and_copies(tree: Path) -> None:
    result = analyze_path(tree)
    assert rels(tree, result["reports"]) == [
        "main_pc_code/agents/speech_agent.py", "main_pc_code/agents/vision_agent.py",
        "main_pc_code/utils/helpers.py", "pc2_code/agents/memory_agent.py"]
    assert {Path(e["file"]).relative_to(tree).as_posix(): e["reason"]
            for e in result["excluded"]} == {
        "_trash_2025_07_20/speech_agent.py": "default: under a _trash_* directory",
        "main_pc_code/agents/archive/v1/vision_agent.py": "default: under a *archive* directory",
        "backups/day4/memory_agent.py": "default: under a *backup* directory",
        "main_pc_code/agents/speech_agent_backup.py": "default: named *_backup.py",
        "main_pc_code/agents/vision_agent_old.py": "default: named *_old.py",
        "main_pc_code/agents/vision_agent_copy.py": "default: named *_copy.py",
        "main_pc_code/agents/speech_agent.bak.py": "default: named *.bak*",
        "main_pc_code/agents/__pycache__/x.py": "default: under a __pycache__ directory",
    }
    assert [(Path(d["file"]).name, Path(d["duplicate_of"]).name)
            for d in result["duplicates"]] == [("memory_agent_v2.py", "memory_agent.py")]
    totals = result["totals"]
    assert (totals["files"], totals["excluded"], totals["duplicates"]) == (4, 8, 1)
    assert totals["sockets"] == {"count": 3, "zmq": 3, "raw": 0, "by_type": {"REP": 3}}
    assert totals["threads"] == {"count": 3}
    assert totals["risk"]["score"] == max(s["score"] for s in result["summary"])
    assert totals["left_out"]["duplicate content"] == 1
    assert sum(totals["left_out"].values()) == 9
    text = render_text(result, plain=True)
    assert "left out: 9 files: " in text and "--all-files" in text
    assert "duplicate: " in text and "memory_agent_v2.py: same bytes as" in text


def test_all_files_keeps_everything_and_exclude_globs(tree: Path) -> None:
    everything = analyze_path(tree, all_files=True)
    assert everything["totals"]["files"] == 12  # 13 .py files, one a copy
    assert everything["totals"]["excluded"] == 0
    # a copy is still a copy; the live one is kept, not the trash one
    kept = analyze_path(tree, exclude=["pc2_code", "*/utils/*", "no_such_dir"])
    assert rels(tree, kept["reports"]) == ["main_pc_code/agents/speech_agent.py",
                                           "main_pc_code/agents/vision_agent.py"]
    reasons = {e["reason"] for e in kept["excluded"]}
    assert {"--exclude pc2_code", "--exclude */utils/*"} <= reasons
    assert kept["duplicates"] == []  # both copies were excluded


def test_the_original_of_copies_is_the_live_file(tmp_path: Path) -> None:
    write(tmp_path, "_trash_x/a_agent.py", agent("A"))
    write(tmp_path, "z/a_agent.py", agent("A"))
    result = analyze_path(tmp_path, all_files=True)
    assert rels(tmp_path, result["reports"]) == ["z/a_agent.py"]
    assert rels(tmp_path, result["duplicates"]) == ["_trash_x/a_agent.py"]


def test_bad_input_is_counted_never_the_end_of_the_run(tmp_path: Path) -> None:
    root = tmp_path / "t"
    write(root, "good_agent.py", agent("Good"))
    (root / "blob.py").write_bytes(b"\x00\x01\x02binary")
    (root / "loop_a.py").symlink_to(root / "loop_b.py")
    (root / "loop_b.py").symlink_to(root / "loop_a.py")
    (root / "sub").mkdir()
    (root / "sub" / "again").symlink_to(root, target_is_directory=True)  # a directory loop
    odd = os.fsencode(str(root)) + b"/caf\xe9_agent.py"
    with open(odd, "wb") as f:
        f.write(agent("Cafe").encode())
    os.mkfifo(root / "pipe.py")
    unreadable = write(root, "locked.py", "x = 1\n")
    unreadable.chmod(0)
    result = analyze_path(root)
    skipped = {Path(s["file"]).name: s["reason"] for s in result["skipped"]}
    assert skipped["blob.py"] == "not text: holds NUL bytes"
    assert skipped["loop_a.py"] == "cannot read: Too many levels of symbolic links"
    assert skipped["pipe.py"] == "cannot read: not a regular file"
    if os.geteuid() != 0:  # root reads anything
        assert skipped["locked.py"].startswith("cannot read: Permission denied")
    assert result["totals"]["skipped"] == len(result["skipped"]) >= 4
    names = sorted(Path(r["file"]).name for r in result["reports"])
    assert "caf\\xe9_agent.py" in names and "good_agent.py" in names
    assert result["warnings"] == [{"file": str(root) + "/caf\\xe9_agent.py",
                                   "warning": "name is not UTF-8 (shown with \\x escapes)"}]
    assert result["totals"]["warnings"] == 1
    json.dumps(result)  # every name is printable
    text = render_text(result, plain=True)
    assert "warning: " in text and "skipped: " in text
    # through the CLI: exit 0, and printable in a pipe
    res = subprocess.run([sys.executable, "-m", "orchestrator", "analyze", str(root)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "caf\\xe9_agent.py" in res.stdout


def test_exit_2_only_when_there_is_nothing_to_analyse(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orchestrator", "analyze", *args],
                              capture_output=True, text=True, timeout=120)

    write(tmp_path, "notes/readme.txt", "no python")
    assert run(str(tmp_path / "notes")).returncode == 2
    assert run(str(tmp_path / "missing")).returncode == 2
    write(tmp_path, "only_trash/_trash_1/a.py", "x = 1\n")
    res = run(str(tmp_path / "only_trash"))  # all left out: a report that says why
    assert res.returncode == 0, res.stderr
    assert "left out: 1 file: 1 default: under a _trash_* directory" in res.stdout
    assert run(str(tmp_path / "only_trash"), "--exclude", "nothing*").returncode == 0


def test_in_a_pipe_the_table_is_one_line_per_file(tmp_path: Path) -> None:
    deep = "/".join(["a_rather_long_directory_name_for_an_agent_group"] * 5)
    names = [f"group_{k}/{deep}/agent_{k}_with_a_really_quite_long_file_name_indeed.py"
             for k in range(3)]
    for k, name in enumerate(names):
        write(tmp_path, name, agent(f"Agent{k}") + "\n" * k)
    res = subprocess.run([sys.executable, "-m", "orchestrator", "analyze", str(tmp_path)],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, COLUMNS="80"))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    for name in names:
        rows = [line for line in lines if name in line]
        assert len(rows) == 1, (name, lines)
        assert rows[0].startswith(name + "  ")
        assert rows[0].split()[1:] == ["15", "1", "1", "yes", "4/60", "LOW"] or \
            rows[0].split()[-2:] == ["4/60", "LOW"]
    header = [line for line in lines if line.startswith("file ")]
    assert len(header) == 1 and header[0].split()[-2:] == ["score", "level"]
    assert max(len(line) for line in lines) > 200  # nothing wrapped at 80 columns
