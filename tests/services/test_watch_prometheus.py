"""SPEC section 7 end to end: a real Prometheus scrapes a running `migrate watch
--metrics-port`; every panel query of deploy/grafana/migrate.json returns data before
anything fired, and after a fire and watch's rollback the firing and rollbacks-by-reason
panels return non-zero series labelled with the migration and the host or phase."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.projects import make_project
from tests.support.prom import free_port, nonzero, prometheus, query, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NAME = "scraped"

MIGRATION = f"""\
name: {NAME}
inventory: inventory/hosts.yml
poll_interval: 300ms
metrics:
  vram_used_mib:
    source: command
    command: 'cat {{{{ vars.marker_dir }}}}/vram-{{{{ host }}}}'
    parse: number
triggers:
  vram_high: {{metric: vram_used_mib, above: 1000}}
"""

# the undo takes 4 s, so that Prometheus scrapes the fire and the rollback before watch ends
PHASE = """\
phase: 1
steps:
  - id: one
    command: 'touch {{ vars.marker_dir }}/{{ host }}-one'
    rollback_command: 'sleep 4 && rm -f {{ vars.marker_dir }}/{{ host }}-one'
"""


def panel_queries() -> dict[str, list[str]]:
    board = json.loads((ROOT / "deploy" / "grafana" / "migrate.json").read_text())
    out: dict[str, list[str]] = {}
    for panel in board["panels"]:
        for target in panel.get("targets") or []:
            out.setdefault(panel["title"], []).append(
                target["expr"].replace("$migration", ".*").replace("$trigger", ".*"))
    return out


def test_dashboard_queries_against_a_scraped_watch(tmp_path: Path) -> None:
    proj = make_project(tmp_path, MIGRATION)
    proj.phase(1, "one", PHASE)
    vram = proj.markers / "vram-main"
    vram.write_text("800\n")
    res = proj.migrate("phase", "1", "--host", "main")
    assert res.returncode == 0, res.stderr
    queries = panel_queries()
    port = free_port()
    proc = proj.spawn("--output", "json", "watch", "--host", "main", "--for", "120s",
                      "--metrics-port", str(port))
    try:
        with prometheus(tmp_path, f"127.0.0.1:{port}",
                        f'migrate_trigger_value{{migration="{NAME}",host="main"}} == 800'
                        ) as url:
            assert proc.poll() is None, proc.communicate()
            for title, exprs in queries.items():
                for expr in exprs:
                    assert query(url, expr), f"{title}: {expr} returned no data"
            assert nonzero(query(url, queries["Triggers firing"][0])) == []
            assert nonzero(query(url, queries["Rollbacks by reason"][0])) == []
            active: list[Any] = query(url, queries["Active watcher"][0])
            assert [(r["metric"], float(r["value"][1])) for r in active] == \
                [({"migration": NAME}, 1.0)]
            threshold: list[Any] = query(
                url, queries["Trigger value against threshold: $trigger"][1])
            assert {(r["metric"]["host"], float(r["value"][1])) for r in threshold
                    if r["metric"]["trigger"] == "vram_high"} >= {("main", 1000.0)}

            vram.write_text("1500\n")  # over the threshold: fires, watch rolls phase 1 back
            firing = wait_for(url, queries["Triggers firing"][0], lambda r: bool(nonzero(r)))
            assert nonzero(firing) == [{"migration": NAME, "host": "main",
                                        "trigger": "vram_high"}]
            rollbacks = wait_for(url, queries["Rollbacks by reason"][0],
                                 lambda r: bool(nonzero(r)))
            assert nonzero(rollbacks) == [{"migration": NAME, "phase": "1",
                                           "reason": "vram_high"}]
            # watch exits once the rollback ends (its server with it): the series above
            # were scraped from the running process
            out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    doc = json.loads(out)
    assert doc["rollback"]["phase"] == 1 and doc["rollback"]["outcome"] == "rolled_back"
    assert not (proj.markers / "main-one").exists()
