"""deploy/grafana/migrate.json: the committed dashboard is the generator's output, the SDK
reads it back, and every panel's query returns data from a real Prometheus scraping the
telemetry server, before anything fired and after a fire and its rollback."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from orchestrator.core.events import EventHooks, EventKind, RunEvent
from orchestrator.engine.rollback import Reason, RollbackCause
from orchestrator.telemetry.metrics import MigrateMetrics
from tests.support.prom import nonzero, prometheus, query, wait_for

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
M = "model-manager-agent"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migrate_grafana_generate",
                                                  GRAFANA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def panel_queries(board: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for panel in board["panels"]:
        for target in panel.get("targets") or []:
            out.setdefault(panel["title"], []).append(target["expr"])
    return out


def concrete(expr: str) -> str:
    """The query as Grafana sends it with every migration and trigger selected."""
    return expr.replace("$migration", ".*").replace("$trigger", ".*")


def test_committed_json_is_what_the_generator_writes() -> None:
    gen = generator()
    committed = (GRAFANA / "migrate.json").read_text()
    assert committed == gen.render(), "run python3 deploy/grafana/generate.py and commit"
    assert gen.main(["--check"]) == 0


def test_the_sdk_reads_the_dashboard_back_unchanged() -> None:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    doc = json.loads((GRAFANA / "migrate.json").read_text())
    model = Dashboard.from_json(doc)
    assert json.loads(JSONEncoder(sort_keys=True).encode(model)) == doc
    assert doc["uid"] and doc["title"]
    titles = {p["title"] for p in doc["panels"] if p["type"] != "row"}
    assert titles == {"Phase states by host", "Trigger value against threshold: $trigger",
                      "Triggers firing", "Rollbacks by reason", "Canary score by wave",
                      "Active watcher"}
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert panel_queries(doc) == {t: [q for _, q, _ in qs]
                                  for t, qs in generator().QUERIES.items()}
    series = {"migrate_phase_state", "migrate_trigger_value", "migrate_trigger_threshold",
              "migrate_trigger_firing", "migrate_rollbacks_total", "migrate_analysis_score",
              "migrate_watch_active"}
    used = " ".join(q for qs in panel_queries(doc).values() for q in qs)
    assert all(name in used for name in series)


@pytest.mark.integration
def test_every_panel_query_returns_data_before_and_after_a_fire(tmp_path: Path) -> None:
    doc = json.loads((GRAFANA / "migrate.json").read_text())
    queries = panel_queries(doc)
    metrics = MigrateMetrics(M)
    metrics.declare(["main", "pc2"], {3: ["vram_degradation", "health_failure"]},
                    states={("main", 3): "completed", ("pc2", 3): "completed"})
    hooks = EventHooks()
    hooks.subscribe(metrics.on_event)
    hooks.emit(RunEvent(EventKind.WATCH_ROLE, "w-1", None, None, None, "active",
                        {"role": "active"}))
    port = metrics.serve(0)
    try:
        with prometheus(tmp_path, f"127.0.0.1:{port}", "migrate_watch_active") as url:
            for title, exprs in queries.items():
                for expr in exprs:
                    assert query(url, concrete(expr)), f"{title}: {expr} returned no data"
            assert nonzero(query(url, concrete(queries["Triggers firing"][0]))) == []
            assert nonzero(query(url, concrete(queries["Rollbacks by reason"][0]))) == []

            # a fire on main and its rollback, as the engine journals them
            hooks.emit(RunEvent(EventKind.TRIGGER_PENDING, "w-1", "main", 3, None, "pending",
                                {"trigger": "vram_degradation", "value": 1250.0,
                                 "threshold": 1200.0, "baseline": 1000.0}))
            hooks.emit(RunEvent(EventKind.TRIGGER_FIRED, "w-1", "main", 3, None,
                                "trigger vram_degradation: 1301 > 1200 (baseline 1000, +20%)",
                                {"trigger": "vram_degradation", "metric": "vram_used_mib",
                                 "value": 1301.0, "threshold": 1200.0, "baseline": 1000.0,
                                 "action": "rollback"}))
            reason = Reason(RollbackCause.WATCH, "trigger vram_degradation: 1301 > 1200 (migrate "
                            "watch)", trigger="vram_degradation", host="main")
            for kind in (EventKind.ROLLBACK_STARTED, EventKind.ROLLBACK_COMPLETED):
                hooks.emit(RunEvent(kind, "w-1", "main", 3, None, reason.text,
                                    {"reason": reason.text, **reason.payload()}))
            hooks.emit(RunEvent(EventKind.WATCH_ROLE, "w-1", None, None, None, "standby",
                                {"role": "standby"}))

            firing = wait_for(url, concrete(queries["Triggers firing"][0]),
                              lambda r: bool(nonzero(r)))
            assert nonzero(firing) == [{"migration": M, "host": "main",
                                        "trigger": "vram_degradation"}]
            rollbacks = wait_for(url, concrete(queries["Rollbacks by reason"][0]),
                                 lambda r: bool(nonzero(r)))
            assert nonzero(rollbacks) == [{"migration": M, "phase": "3",
                                           "reason": "vram_degradation"}]
            states = wait_for(url, concrete(queries["Phase states by host"][0]),
                              lambda r: any(x["metric"].get("state") == "rolled_back"
                                            for x in r))
            assert {(r["metric"]["host"], r["metric"]["state"]) for r in states} == \
                {("main", "rolled_back"), ("pc2", "completed")}
            value, threshold = (wait_for(url, concrete(q), lambda r: any(
                x["metric"].get("host") == "main" and float(x["value"][1]) > 0 for x in r))
                for q in queries["Trigger value against threshold: $trigger"])
            assert {float(x["value"][1]) for x in value if x["metric"]["host"] == "main"
                    and x["metric"]["trigger"] == "vram_degradation"} == {1301.0}
            assert {float(x["value"][1]) for x in threshold if x["metric"]["host"] == "main"
                    and x["metric"]["trigger"] == "vram_degradation"} == {1200.0}

            # a canary judgement: the score panel shows labelled series, not the fallback
            metrics.set_analysis_score(3, 1, 62.5)
            score = wait_for(url, concrete(queries["Canary score by wave"][0]),
                             lambda r: any(x["metric"] for x in r))
            assert [(x["metric"], float(x["value"][1])) for x in score] == \
                [({"migration": M, "phase": "3", "wave": "1"}, 62.5)]
            for title, exprs in queries.items():
                for expr in exprs:
                    assert query(url, concrete(expr)), f"{title}: {expr} returned no data"
    finally:
        metrics.close()
