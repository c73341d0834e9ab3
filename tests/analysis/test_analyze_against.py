"""`migrate analyze PATH --against OLD_PATH`: what changed between two revisions, site by site.

Lines move when code is edited, so sites are matched by what they are, not by line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orchestrator.analysis.compare import compare_paths, match_sites
from orchestrator.analysis.render import render_changes
from tests.support.agent_sources import AGENT, write


def edited(source: str) -> str:
    """The agent after a migration step: lines inserted at the top, a method moved to the
    end, the health thread and the REQ socket gone, a raw socket added."""
    lines = source.splitlines()
    start = lines.index("    def port_free(self, port):")
    method = lines[start:start + 3]
    del lines[start:start + 4]
    lines += ["", *method]
    text = "\n".join(lines) + "\n"
    text = text.replace("        th.Thread(target=self._health_check_loop).start()\n", "")
    text = text.replace("        req = self.context.socket(zmq.REQ)\n",
                        "        req = self.get_client(address)\n")
    text = text.replace("    def ask(self, address):\n",
                        "    def ask(self, address):\n"
                        "        s = socket.create_connection(('localhost', 1))\n")
    return '"""Migrated in part."""\n# one\n# two\n' + text


def test_sites_removed_and_added_are_matched_by_what_they_are(tmp_path: Path) -> None:
    old = write(tmp_path, "old/speech_agent.py", AGENT)
    new = write(tmp_path, "new/speech_agent.py", edited(AGENT))
    result = compare_paths(new, old)
    [change] = result["changes"]
    assert change["status"] == "changed"
    assert [(s["kind"], s["what"]) for s in change["removed"]] == [
        ("socket", "zmq.REQ connect address (req)"),
        ("thread", "threading.Thread(target=_health_check_loop)"),
    ]
    assert [(s["kind"], s["what"]) for s in change["added"]] == [
        ("socket", "socket.create_connection (s)")]
    # the moved raw socket (port_free) is neither removed nor added
    assert change["before"]["sockets"] == change["after"]["sockets"] == 5
    assert (change["before"]["threads"], change["after"]["threads"]) == (4, 3)
    assert (change["before"]["raw"], change["after"]["raw"]) == (1, 2)
    assert change["before"]["score"] >= 0 and change["after"]["syntax_errors"] == 0
    removed_lines = [s["line"] for s in change["removed"]]
    old_rows = old.read_text().splitlines()
    assert "socket(zmq.REQ)" in old_rows[removed_lines[0] - 1]  # lines of the old file
    new_rows = new.read_text().splitlines()
    assert "create_connection" in new_rows[change["added"][0]["line"] - 1]
    text = render_changes(result)
    assert "sockets 5 -> 5, threads 4 -> 3, syntax errors 0 -> 0" in text
    assert "  - " in text and "  + " in text


def test_same_sites_pair_by_order_then_nearest_line() -> None:
    def site(line: int, what: str) -> dict[str, object]:
        return {"line": line, "kind": "thread", "what": what, "target": "t"}

    old = [site(10, "a"), site(20, "b"), site(30, "a")]
    new = [site(5, "b"), site(40, "a")]  # b moved up, one a removed
    removed, added, kept = match_sites(old, new)
    assert added == [] and kept == 2
    assert removed == [site(10, "a")]  # the nearer a (30 -> 40) is the one kept


def test_directories_files_added_removed_unchanged_and_broken(tmp_path: Path) -> None:
    write(tmp_path, "old/a_agent.py", AGENT)
    write(tmp_path, "old/gone_agent.py", AGENT)
    write(tmp_path, "old/same.py", "x = 1\n")
    write(tmp_path, "new/a_agent.py", edited(AGENT) + "def broken(:\n")
    write(tmp_path, "new/fresh_agent.py", "import threading\nthreading.Thread().start()\n")
    write(tmp_path, "new/same.py", "x = 1\n")
    write(tmp_path, "new/_trash_x/a_agent.py", AGENT)  # left out on both sides alike
    result = compare_paths(tmp_path / "new", tmp_path / "old")
    by_file = {c["file"]: c for c in result["changes"]}
    assert {f: c["status"] for f, c in by_file.items()} == {
        "a_agent.py": "changed", "fresh_agent.py": "added", "gone_agent.py": "removed",
        "same.py": "unchanged"}
    assert by_file["a_agent.py"]["after"]["syntax_errors"] == 1
    assert by_file["gone_agent.py"]["after"] is None
    assert len(by_file["gone_agent.py"]["removed"]) == len(
        [s for s in by_file["gone_agent.py"]["removed"]]) > 0
    assert by_file["fresh_agent.py"]["before"] is None
    assert [s["kind"] for s in by_file["fresh_agent.py"]["added"]] == ["thread"]
    totals = result["totals"]
    assert (totals["changed"], totals["added"], totals["removed"], totals["unchanged"]) == \
        (1, 1, 1, 1)


def test_cli_against_json_and_text(tmp_path: Path) -> None:
    old = write(tmp_path, "old/speech_agent.py", AGENT)
    new = write(tmp_path, "new/speech_agent.py", edited(AGENT))
    base = [sys.executable, "-m", "orchestrator"]
    res = subprocess.run([*base, "--output", "json", "analyze", str(new), "--against", str(old)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    [change] = json.loads(res.stdout)["changes"]
    assert set(change) >= {"file", "before", "after", "removed", "added"}
    assert len(change["removed"]) == 2 and len(change["added"]) == 1
    text = subprocess.run([*base, "analyze", str(new), "--against", str(old)],
                          capture_output=True, text=True, timeout=120)
    assert text.returncode == 0
    assert text.stdout.splitlines()[0].endswith(
        "(changed): sockets 5 -> 5, threads 4 -> 3, syntax errors 0 -> 0, score "
        f"{change['before']['score']} -> {change['after']['score']}")
    mixed = subprocess.run([*base, "analyze", str(new), "--against", str(tmp_path / "old")],
                           capture_output=True, text=True, timeout=120)
    assert mixed.returncode == 2 and "compare a file with a file" in mixed.stderr
