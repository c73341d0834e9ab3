"""`migrate status` at fleet size: a summary past 20 hosts, the full table on request.

The journal is written through `Journal` itself (the states a real run leaves), for 40
hosts: phase 1 completed everywhere; phase 2 completed on some, running with trigger
values on others, rolled back, rollback_failed and interrupted on a few.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orchestrator.core.states import PhaseState as P
from orchestrator.state.journal import Journal
from tests.support.projects import Proj, make_project

HOSTS = tuple(f"h{i:03d}" for i in range(1, 41))


def fleet(tmp_path: Path) -> Proj:
    proj = make_project(tmp_path, "name: fleet\ninventory: inventory/hosts.yml\n"
                        "poll_interval: 1s\nmetrics:\n  vram: {source: scripted, values: "
                        "[{at: 0s, value: 5000}]}\ntriggers:\n  vram_degradation: "
                        "{metric: vram, above: 6000}\n", hosts=HOSTS)
    for n in (1, 2):
        proj.phase(n, f"p{n}", f"phase: {n}\ntriggers: [vram_degradation]\nsteps:\n"
                               "  - id: w\n    wait: 1ms\n")
    j = Journal(proj.root / ".migrate" / "state.db")
    j.create_run("r1", 1, list(HOSTS), "migrate phase 1", "phase", False, {})
    j.create_run("r2", 2, list(HOSTS), "migrate phase 2", "phase", False, {})
    for k, h in enumerate(HOSTS):
        j.move_phase("r1", h, 1, P.RUNNING, "run_started")
        j.move_phase("r1", h, 1, P.COMPLETED, "phase_completed")
        if k >= 30:
            continue
        j.move_phase("r2", h, 2, P.RUNNING, "run_started")
        if k < 10:
            j.move_phase("r2", h, 2, P.COMPLETED, "phase_completed")
        elif k < 13:
            j.move_phase("r2", h, 2, P.ROLLING_BACK, "rollback_started",
                         reason=f"trigger vram_degradation: 6500 > 6000 on {h}")
            j.move_phase("r2", h, 2, P.ROLLED_BACK, "rollback_completed")
        elif k == 13:
            j.move_phase("r2", h, 2, P.ROLLING_BACK, "rollback_started", reason="step deploy "
                         "failed on h014")
            j.move_phase("r2", h, 2, P.ROLLBACK_FAILED, "rollback_failed",
                         reason="undo of deploy failed on h014: exit 2")
        elif k == 14:
            j.move_phase("r2", h, 2, P.INTERRUPTED, "run_interrupted",
                         reason="the process of run r2 died")
        else:
            status = {20: "firing", 21: "pending"}.get(k, "ok")
            j.set_trigger_state(h, 2, "vram_degradation", "r2", status,
                                6500.0 if status != "ok" else 5100.0, 6000.0, 5000.0,
                                "2026-01-01T00:00:00.000Z" if status != "ok" else None, "")
    j.close()
    return proj


def status(proj: Proj, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", "--project", str(proj.root),
                           *args], capture_output=True, text=True, timeout=60)


def test_summary_past_20_hosts(tmp_path: Path) -> None:
    proj = fleet(tmp_path)
    res = status(proj, "status")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) < 30, res.stdout
    assert lines[0] == "41 hosts (summary; --host or -v for the full table)"
    assert "  phase 1: completed 40, pending 1" in lines
    assert ("  phase 2: completed 10, running 15, rolled_back 3, rollback_failed 1, "
            "interrupted 1, pending 11") in lines
    # running phases with their live trigger values, the worst host named
    assert "  phase 2 on 15 hosts (running 15), run r2" in lines
    trig = next(line for line in lines if line.startswith("    vram_degradation: "))
    assert trig.startswith("    vram_degradation: firing 1, pending 1, ok 13; worst h021 "
                           "(firing): 6500 vs limit 6000 (baseline 5000), breaching for ")
    # the hosts that need attention, worst first, with their reasons
    at = lines.index("needs attention (5):")
    assert lines[at + 1:at + 6] == [
        "  h014 phase 2 rollback_failed: undo of deploy failed on h014: exit 2",
        "  h015 phase 2 interrupted: the process of run r2 died",
        "  h011 phase 2 rolled_back: trigger vram_degradation: 6500 > 6000 on h011",
        "  h012 phase 2 rolled_back: trigger vram_degradation: 6500 > 6000 on h012",
        "  h013 phase 2 rolled_back: trigger vram_degradation: 6500 > 6000 on h013"]


def test_host_and_verbose_give_the_full_table_and_json_is_unchanged(tmp_path: Path) -> None:
    proj = fleet(tmp_path)
    full = status(proj, "status", "-v").stdout
    assert full.count("\n  phase 1: completed") == 40
    assert "h014:\n  phase 1: completed" in full
    one = status(proj, "status", "--host", "h014").stdout
    assert one.splitlines()[0] == "h014:" and "why: undo of deploy failed on h014" in one
    doc = json.loads(status(proj, "--output", "json", "status").stdout)
    assert set(doc) == {"hosts"} and len(doc["hosts"]) == 41
    assert doc["hosts"]["h014"]["phases"]["2"] == {
        "state": "rollback_failed", "run_id": "r2",
        "updated_at": doc["hosts"]["h014"]["phases"]["2"]["updated_at"],
        "reason": "undo of deploy failed on h014: exit 2"}
    assert doc["hosts"]["main"]["phases"]["1"]["state"] == "pending"


def test_status_imports_no_rich_and_no_engine(tmp_path: Path) -> None:
    proj = fleet(tmp_path)
    code = (f"import sys; sys.argv=['migrate','--project',{str(proj.root)!r},'status']\n"
            "import orchestrator.cli as c\n"
            "try:\n c.main()\nexcept SystemExit: pass\n"
            "bad=[m for m in sys.modules if m.split('.')[0] in ('rich','matplotlib',"
            "'ansible_runner')]\nprint(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
