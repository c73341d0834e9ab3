"""Canary analysis through the real CLI, monitor and command source: the monitor samples
the judged metric on the canary and on the unmigrated control hosts, the second wave's
regression fails its analysis and rolls that wave back, the canary wave stays completed,
the last wave never starts; `status` shows the score, `--metrics-port` serves it."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.projects import make_project
from tests.support.prom import free_port

pytestmark = pytest.mark.integration

MIGRATION = """\
name: canaried
inventory: inventory/hosts.yml
poll_interval: 250ms
metrics:
  vram_used_mib:
    source: command
    command: 'cat {{ vars.marker_dir }}/vram-{{ host }}'
    parse: number
triggers:
  vram_high: {metric: vram_used_mib, above: 100000}
"""

PHASE = """\
phase: 1
name: Judged
bake: 3s
waves: [1, 2, 100%]
analysis:
  metrics:
    vram_used_mib: {fail_on: increase, allowed_change_pct: 5}
  window: 3s
  min_samples: 5
steps:
  - id: deploy
    command: 'cp {{ vars.marker_dir }}/next-{{ host }} {{ vars.marker_dir }}/vram-{{ host }}'
    rollback_command: 'echo 1000 > {{ vars.marker_dir }}/vram-{{ host }}'
"""

HOSTS = ("a", "b", "c", "d")


def test_the_regressed_wave_fails_its_analysis_and_rolls_back(tmp_path: Path) -> None:
    proj = make_project(tmp_path, MIGRATION, hosts=HOSTS)
    proj.phase(1, "judged", PHASE)
    for h in HOSTS:
        (proj.markers / f"vram-{h}").write_text("1000\n")
        (proj.markers / f"next-{h}").write_text("1120\n" if h == "b" else "1000\n")
    port = free_port()
    proc = proj.spawn("--output", "json", "phase", "1", "--host", "a", "--host", "b",
                      "--host", "c", "--host", "d", "--metrics-port", str(port))
    scraped = ""
    try:
        deadline = time.monotonic() + 90
        while proc.poll() is None:
            assert time.monotonic() < deadline
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                            timeout=1) as r:
                    body = r.read().decode()
                if "migrate_analysis_score{" in body:
                    scraped = body
            except OSError:
                pass
            time.sleep(0.2)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    assert "canary analysis of wave 1: score 100 (pass" in err
    assert "canary analysis of wave 2: score 0 (fail" in err
    status = json.loads(proj.migrate("--output", "json", "status").stdout)["hosts"]
    assert {h: status[h]["phases"]["1"]["state"] for h in HOSTS} == {
        "a": "completed", "b": "rolled_back", "c": "pending", "d": "pending"}
    assert status["a"]["phases"]["1"]["analysis"] == {"wave": 2, "score": 0.0,
                                                      "result": "fail"}
    history = json.loads(proj.migrate("--output", "json", "history").stdout)["events"]
    judged = [e["payload"] for e in history if e["kind"] == "analysis_completed"]
    assert [(p["wave"], p["result"]) for p in judged] == [(1, "pass"), (2, "fail")]
    vram = judged[1]["metrics"][0]
    assert vram["class"] == "high" and vram["canary_samples"] >= 5 \
        and vram["control_samples"] >= 5
    assert vram["effect"] == pytest.approx(1.12)
    assert 'migrate_analysis_score{migration="canaried",phase="1",wave="1"} 100.0' in scraped
