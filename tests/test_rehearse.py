"""`migrate rehearse` end to end: the shipped migration project, its real playbooks and
the stand-in agent, one scenario at a time from a fresh sandbox. Every assertion on the
outcome reads the sandbox's real state: the revision the running agent process reports
and the files on disk, not the engine's report."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config.inventory import read_inventory
from orchestrator.rehearsal.rehearse import agent_revision

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the repository's migration project, so the drill's state stays in tmp."""
    root = tmp_path / "mma"
    root.mkdir()
    for part in ("migration.yaml", "phases", "playbooks", "rollback", "inventory", "sandbox"):
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, root / part)
        else:
            shutil.copy(src, root / part)
    return root


def rehearse(project: Path, scenario: str, keep: bool = True) -> tuple[int, dict[str, object]]:
    args = [sys.executable, "-m", "orchestrator", "--project", str(project), "--output", "json",
            "rehearse", "--scenario", scenario] + (["--keep"] if keep else [])
    res = subprocess.run(args, capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    return res.returncode, json.loads(res.stdout)


def teardown(project: Path) -> None:
    subprocess.run(["ansible-playbook", "-i", str(project / "inventory/sandbox.yml"),
                    str(project / "playbooks/sandbox/teardown.yml")], capture_output=True)


def main_host(project: Path):  # type: ignore[no-untyped-def]
    return read_inventory(project / "inventory/sandbox.yml").hosts["main"]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


def test_list_names_the_six_scenarios(project: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "orchestrator", "--project", str(project),
                          "rehearse", "--list"], capture_output=True, text=True)
    assert res.returncode == 0
    names = [line.split()[0] for line in res.stdout.splitlines()]
    assert names == ["clean", "vram-leak", "health-outage", "model-load-failure",
                     "pc2-partition", "rollback-failure"]


def test_vram_leak_rolls_phase_3_back_to_the_phase_2_revision(project: Path) -> None:
    try:
        code, doc = rehearse(project, "vram-leak")
        assert code == 0, doc
        sandbox = project / ".migrate" / "sandbox" / "main"
        assert agent_revision(main_host(project)) == "phase2"  # asked of the running process
        assert (sandbox / "agent" / "REVISION").read_text().strip() == "phase2"
        assert (sandbox / "backups" / "original" / "manifest.json").is_file()
        assert (sandbox / "snapshots" / "pre-phase3" / "config.json").is_file()
        runs = doc["runs"]
        assert [r["outcome"] for r in runs] == ["completed", "completed", "rolled_back"]
        assert str(runs[-1]["reason"]).startswith("trigger vram_degradation: 6500 > 6000")
        # the report and its chart of the trigger that fired
        report = Path(str(doc["report"]))
        assert report.is_file() and "PASSED" in report.read_text()
        chart = next(report.parent.glob(f"runs/{runs[-1]['run_id']}/report/"
                                        "vram_degradation-main.png"))
        width, height = png_size(chart)
        assert width >= 600 and height >= 300
        res = subprocess.run([sys.executable, "-m", "orchestrator", "--project", str(project),
                              "report", str(runs[-1]["run_id"]), "--format", "html"],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        assert "vram_degradation-main.png" in res.stdout and "6500 &gt; 6000" in res.stdout
    finally:
        teardown(project)


def test_clean_completes_all_phases_on_both_hosts(project: Path) -> None:
    try:
        code, doc = rehearse(project, "clean")
        assert code == 0, doc
        assert [r["outcome"] for r in doc["runs"]] == ["completed"] * 4
        assert agent_revision(main_host(project)) == "phase3"
    finally:
        teardown(project)


def test_health_outage_rolls_phase_2_back_to_the_original(project: Path) -> None:
    try:
        code, doc = rehearse(project, "health-outage")
        assert code == 0, doc
        assert agent_revision(main_host(project)) == "original"
        assert "trigger health_failure" in str(doc["runs"][-1]["reason"])
    finally:
        teardown(project)


def test_rollback_failure_ends_exit_3_naming_the_step(project: Path) -> None:
    code, doc = rehearse(project, "rollback-failure", keep=False)
    assert code == 0, doc  # the drill passed: it did fail the way it must
    last = doc["runs"][-1]
    assert last["outcome"] == "rollback_failed" and doc["exit_code"] == 3
    assert any("deploy-phase3" in n for n in last["needs_human"])
    # without --keep the stand-ins were stopped
    assert agent_revision(main_host(project)).startswith("not running")
