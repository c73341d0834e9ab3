"""`migrate rehearse` end to end: the shipped migration project, its real playbooks, its
scenario files (rehearsals/*.yaml) and the stand-in agent, one scenario at a time from
a sandbox reset to what provisioning installed. Every assertion on the outcome reads the sandbox's real state: the
revision the running agent process reports, the files on disk and the drill's own
journal, not the engine's report."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config.inventory import Host, read_inventory
from orchestrator.rehearsal.rehearse import agent_revision
from orchestrator.state.journal import open_journal

pytestmark = pytest.mark.integration

@pytest.fixture
def project(drill_project: Path) -> Path:
    """The drills share their worker's copy of the project: each drill resets the sandbox
    from the provisioned copy the first one kept (tests/drills/conftest.py)."""
    return drill_project


def rehearse(project: Path, scenario: str, keep: bool = True) -> tuple[int, dict[str, object]]:
    args = [sys.executable, "-m", "orchestrator", "--project", str(project), "--output", "json",
            "rehearse", "--scenario", scenario] + (["--keep"] if keep else [])
    res = subprocess.run(args, capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert res.stdout, res.stderr[-3000:]
    return res.returncode, json.loads(res.stdout)


def rehearse_in_a_pipe(project: Path) -> tuple[int, dict[str, object], list[str]]:
    """The default rehearsal as an operator runs it in a pipe (text, no terminal): its exit
    code, its document (the drill's rehearsal.json) and every non-blank line it printed,
    stdout and stderr together."""
    args = [sys.executable, "-m", "orchestrator", "--project", str(project), "rehearse",
            "--keep"]
    res = subprocess.run(args, capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("report: "), res.stdout[-3000:]
    report = Path(last.removeprefix("report: "))
    doc = json.loads((report.parent / "rehearsal.json").read_text())
    doc["report"] = str(report)
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    return res.returncode, doc, lines


def teardown(project: Path, inventory: str = "inventory/sandbox.yml") -> None:
    subprocess.run(["ansible-playbook", "-i", str(project / inventory),
                    str(project / "playbooks/sandbox/teardown.yml")], capture_output=True)


def host(project: Path, name: str, inventory: str = "inventory/sandbox.yml") -> Host:
    return read_inventory(project / inventory).hosts[name]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


def failed_checks(doc: dict[str, object]) -> list[object]:
    return [c for c in doc["checks"] if not c["ok"]]  # type: ignore[attr-defined,index]


def test_list_reads_the_scenario_files(own_project: Path) -> None:
    project = own_project  # it changes the project's scenario files
    def listed() -> tuple[int, list[str], str]:
        res = subprocess.run([sys.executable, "-m", "orchestrator", "--project", str(project),
                              "rehearse", "--list"], capture_output=True, text=True)
        return res.returncode, res.stdout.splitlines(), res.stderr

    code, lines, err = listed()
    assert code == 0, err
    assert [line.split()[0] for line in lines] == [
        "canary-regression", "canary", "clean", "health-outage", "model-load-failure",
        "pc2-partition", "rollback-failure", "thread-alert", "thread-regression", "vram-leak"]
    assert [line.split()[0] for line in lines if line.endswith("(default)")] == ["vram-leak"]
    # the list is the directory: a new file appears, a removed one goes
    (project / "rehearsals" / "clean.yaml").unlink()
    (project / "rehearsals" / "xid-burst.yaml").write_text(
        "description: three Xid errors on main\n"
        "inject: [{host: main, faults: {xid_errors: 3}}]\n"
        "expect: {exit_code: 1}\n")
    code, lines, err = listed()
    assert code == 0, err
    names = [line.split()[0] for line in lines]
    assert "clean" not in names and "xid-burst" in names
    assert "three Xid errors on main" in lines[names.index("xid-burst")]


def test_vram_leak_rolls_phase_3_back_to_the_phase_2_revision(project: Path) -> None:
    """The default drill (vram-leak), run in a pipe: it fits a screen of 60 non-blank lines
    (stdout and stderr together) with what the operator needs on it."""
    try:
        code, doc, lines = rehearse_in_a_pipe(project)
        assert doc["scenario"] == "vram-leak"
        assert code == 0, failed_checks(doc)
        assert len(lines) <= 60, "\n".join(lines)
        text = "\n".join(lines)
        for needed in ("rehearsal ", "scenario vram-leak PASSED", "phase 1 completed on main, pc2",
                       "phase 2 completed on main, pc2", "trigger vram_degradation: ",
                       "phase 3 rolled back on main", "[ok] the agent on main runs revision "
                       "phase2", "report: "):
            assert needed in text, (needed, text)
        sandbox = project / ".migrate" / "sandbox" / "main"
        assert agent_revision(host(project, "main")) == "phase2"  # asked of the running process
        assert (sandbox / "agent" / "REVISION").read_text().strip() == "phase2"
        assert (sandbox / "backups" / "original" / "manifest.json").is_file()
        assert (sandbox / "snapshots" / "pre-phase3" / "config.json").is_file()
        runs = doc["runs"]
        assert [r["outcome"] for r in runs] == ["completed", "completed", "rolled_back"]
        # the stand-in's VRAM has noise: 30% over the phase-start median, over its 20% limit
        assert re.match(r"trigger vram_degradation: \d+ > [\d.]+ \(baseline \d+, \+20%\)",
                        str(runs[-1]["reason"])), runs[-1]["reason"]
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
        page = Path(res.stdout.strip().splitlines()[-1])  # the path, never the page
        assert page.is_file() and page.suffix == ".html", res.stdout[:300]
        html = page.read_text()
        assert "vram_degradation-main.png" in html and "data:image/png" in html
        assert re.search(r"vram_degradation: \d+ &gt; [\d.]+", html)
    finally:
        teardown(project)


def test_clean_completes_all_phases_on_both_hosts(project: Path) -> None:
    try:
        code, doc = rehearse(project, "clean")
        assert code == 0, failed_checks(doc)
        assert [r["outcome"] for r in doc["runs"]] == ["completed"] * 4
        assert agent_revision(host(project, "main")) == "phase3"
    finally:
        teardown(project)


def test_health_outage_rolls_phase_2_back_to_the_original(project: Path) -> None:
    try:
        code, doc = rehearse(project, "health-outage")
        assert code == 0, failed_checks(doc)
        assert agent_revision(host(project, "main")) == "original"
        assert "trigger health_failure" in str(doc["runs"][-1]["reason"])
    finally:
        teardown(project)


def test_model_load_failure_rolls_phase_4_back(project: Path) -> None:
    try:
        code, doc = rehearse(project, "model-load-failure")
        assert code == 0, failed_checks(doc)
        assert [r["outcome"] for r in doc["runs"]] == ["completed"] * 3 + ["rolled_back"]
        assert agent_revision(host(project, "main")) == "phase3"
    finally:
        teardown(project)


def test_pc2_partition_rolls_phase_4_back(project: Path) -> None:
    try:
        code, doc = rehearse(project, "pc2-partition")
        assert code == 0, failed_checks(doc)
        assert "trigger cross_machine_failure" in str(doc["runs"][-1]["reason"])
        assert doc["exit_code"] == 1
    finally:
        teardown(project)


def test_rollback_failure_ends_exit_3_naming_the_step(project: Path) -> None:
    code, doc = rehearse(project, "rollback-failure", keep=False)
    assert code == 0, failed_checks(doc)  # the drill passed: it did fail the way it must
    last = doc["runs"][-1]
    assert last["outcome"] == "rollback_failed" and doc["exit_code"] == 3
    assert any("deploy-phase3" in n for n in last["needs_human"])
    # without --keep the stand-ins were stopped
    assert agent_revision(host(project, "main")).startswith("not running")


def test_canary_rolls_back_the_second_wave_and_never_starts_the_last(project: Path) -> None:
    fleet = "inventory/fleet-sandbox.yml"
    try:
        code, doc = rehearse(project, "canary")
        assert code == 0, failed_checks(doc)
        assert doc["exit_code"] == 1
        assert [r["outcome"] for r in doc["runs"]] == ["rolled_back"]
        # the drill's own journal: waves 1 and 2 started, 3 never did
        state_dir = Path(str(doc["report"])).parent
        journal = open_journal(state_dir)
        try:
            events = journal.events()
            started = [e.payload["wave"] for e in events if e.kind == "wave_started"
                       and e.payload]
            assert started == [1, 2]
            fired = [(e.host, (e.payload or {}).get("trigger")) for e in events
                     if e.kind == "trigger_fired"]
            assert fired == [("mma@gpu2", "gpu_operation_failure")]
            states = {h: journal.phase_record(h, 1).state.value
                      for h in ("mma@main", "mma@gpu1", "mma@gpu2", "mma@gpu3", "mma@gpu5")}
        finally:
            journal.close()
        assert states == {"mma@main": "completed", "mma@gpu1": "rolled_back",
                          "mma@gpu2": "rolled_back", "mma@gpu3": "pending",
                          "mma@gpu5": "pending"}
        # the sandbox: the canary keeps its backup; the second wave's was undone; the
        # last wave's hosts were never touched, and every agent still serves
        sandbox = project / ".migrate" / "sandbox"
        assert (sandbox / "mma@main" / "backups" / "original" / "manifest.json").is_file()
        assert not (sandbox / "mma@gpu2" / "backups" / "original").exists()
        assert not (sandbox / "mma@gpu4" / "backups").exists()
        for name in ("mma@main", "mma@gpu2", "mma@gpu5"):
            assert agent_revision(host(project, name, fleet)) == "original"
    finally:
        teardown(project, fleet)


def test_thread_regression_is_rolled_back_by_the_phase_3_source_check(project: Path) -> None:
    """Issue 23: phase 2 and phase 3 end with a check of the agent source their deploy
    installed on the host (no socket, then no thread outside BaseAgent); a phase-3
    revision that brings a raw threading.Thread back fails its check and rolls back."""
    try:
        code, doc = rehearse(project, "thread-regression")
        assert code == 0, failed_checks(doc)
        runs = doc["runs"]
        assert [r["outcome"] for r in runs] == ["completed", "completed", "rolled_back"]
        assert "threads-migrated" in str(runs[-1]["reason"])
        assert "threads.count" in str(runs[-1]["reason"])
        assert agent_revision(host(project, "main")) == "phase2"
    finally:
        teardown(project)


def test_canary_regression_fails_the_second_wave_by_analysis_alone(project: Path) -> None:
    """Phase 3's revision is 12% heavier and 15% slower on the second wave's stand-ins,
    under every threshold: the analysis (both metrics read from the stand-ins' /metrics)
    fails the wave on its own, class high for both, with min_samples on each side."""
    import yaml

    fleet = "inventory/fleet-sandbox.yml"
    spec = yaml.safe_load((project / "phases/3-threading-migration.yaml").read_text())
    min_samples = int(spec["analysis"].get("min_samples", 10))
    try:
        code, doc = rehearse(project, "canary-regression")
        assert code == 0, failed_checks(doc)
        assert doc["exit_code"] == 1
        assert [r["outcome"] for r in doc["runs"]] == ["completed", "completed", "rolled_back"]
        res = subprocess.run([sys.executable, "-m", "orchestrator", "--project", str(project),
                              "--output", "json", "history", "--run", str(doc["rehearsal_id"])],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        events = json.loads(res.stdout)["events"]
        assert not [e for e in events if e["kind"] == "trigger_fired"
                    and (e.get("payload") or {}).get("trigger") != "analysis"]
        judged = {e["payload"]["wave"]: e["payload"] for e in events
                  if e["kind"] == "analysis_completed" and e.get("phase") == 3}
        assert sorted(judged) == [1, 2] and judged[1]["result"] == "pass"
        wave2 = judged[2]
        assert wave2["result"] == "fail"
        metrics = {m["name"]: m for m in wave2["metrics"]}
        assert sorted(metrics) == ["request_latency_ms", "vram_used_mib"]
        for name, m in metrics.items():
            assert m["class"] == "high", (name, m)
            assert m["canary_samples"] >= min_samples and m["control_samples"] >= min_samples
        assert 1.08 < metrics["vram_used_mib"]["effect"] < 1.16
        assert 1.10 < metrics["request_latency_ms"]["effect"] < 1.20
        assert not [e for e in events if e["kind"] == "wave_started" and e.get("phase") == 3
                    and (e.get("payload") or {}).get("wave") == 3]
        assert agent_revision(host(project, "mma@gpu2", fleet)) == "phase2"
        assert agent_revision(host(project, "mma@main", fleet)) == "phase3"
    finally:
        teardown(project, fleet)


def test_thread_alert_rolls_phase_3_back_through_real_prometheus_and_alertmanager(
        project: Path) -> None:
    from tests.support.alertmanager import require_binaries

    require_binaries()  # under CI=true a missing package fails, never skips
    try:
        code, doc = rehearse(project, "thread-alert")
        assert code == 0, failed_checks(doc)
        assert [r["outcome"] for r in doc["runs"]] == ["completed"] * 2 + ["rolled_back"]
        assert "thread_health_alert" in str(doc["runs"][-1]["reason"])
        assert agent_revision(host(project, "main")) == "phase2"
    finally:
        teardown(project)
