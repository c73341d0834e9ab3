"""SPEC section 7's /metrics: names, labels, initial zeros, and the event hook, scraped
over HTTP and read back with prometheus_client's own parser."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from orchestrator.core.events import EventHooks, EventKind, RunEvent
from orchestrator.core.model import Condition, Trigger, TriggerAction
from orchestrator.engine.rollback import Reason, RollbackCause
from orchestrator.metrics.triggers import TriggerState, TriggerStatus
from orchestrator.telemetry.metrics import SERIES, MigrateMetrics, rollback_reason

M = "model-manager-agent"


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"migration": M, **labels}.items()))


def ev(kind: EventKind, host: str | None, phase: int | None, **payload: Any) -> RunEvent:
    return RunEvent(kind, "run-1", host, phase, None, "detail", payload)


def test_declared_series_start_at_zero_with_the_spec_names_and_labels() -> None:
    metrics = MigrateMetrics(M)
    metrics.declare(["main", "pc2"], {1: ["vram_degradation"], 2: ["vram_degradation",
                                                                   "health_failure"]},
                    states={("main", 1): "completed"})
    port = metrics.serve(0)
    try:
        got = scrape(port)
    finally:
        metrics.close()
    assert set(got) == set(SERIES) - {"migrate_analysis_score"}  # no score before a judgement
    assert got["migrate_phase_state"] == {
        key(host="main", phase="1", state="completed"): 1.0,
        key(host="main", phase="2", state="pending"): 1.0,
        key(host="pc2", phase="1", state="pending"): 1.0,
        key(host="pc2", phase="2", state="pending"): 1.0}
    for name in ("migrate_trigger_value", "migrate_trigger_threshold", "migrate_trigger_firing"):
        assert got[name] == {key(host=h, trigger=t): 0.0 for h in ("main", "pc2")
                             for t in ("vram_degradation", "health_failure")}
    rollbacks = got["migrate_rollbacks_total"]
    assert rollbacks[key(phase="2", reason="health_failure")] == 0.0
    assert {dict(k)["reason"] for k in rollbacks} == {
        "vram_degradation", "health_failure", "step_failed", "analysis", "operator"}
    assert got["migrate_watch_active"] == {key(): 0.0}


def test_rollback_reason_from_the_engine_payload() -> None:
    assert rollback_reason(Reason(RollbackCause.TRIGGER, "t", trigger="vram_degradation",
                                  host="main").payload()) == "vram_degradation"
    assert rollback_reason(Reason(RollbackCause.TRIGGER, "t", trigger="analysis").payload()) == "analysis"
    assert rollback_reason(Reason(RollbackCause.WATCH, "t", trigger="health_failure").payload()) == \
        "health_failure"
    assert rollback_reason(Reason(RollbackCause.STEP_FAILURE, "s", host="main").payload()) == \
        "step_failed"
    assert rollback_reason(Reason(RollbackCause.OPERATOR, "o").payload()) == "operator"
    assert rollback_reason(Reason(RollbackCause.RESUME, "r").payload()) == "operator"
    assert rollback_reason({}) == "operator"


def test_a_fire_and_its_rollback_through_the_event_hook() -> None:
    metrics = MigrateMetrics(M)
    metrics.declare(["main", "pc2"], {3: ["vram_degradation"]})
    hooks = EventHooks()
    hooks.subscribe(metrics.on_event)
    port = metrics.serve(0)
    try:
        for host in ("main", "pc2"):
            hooks.emit(ev(EventKind.RUN_STARTED, host, 3))
        hooks.emit(ev(EventKind.TRIGGER_PENDING, "main", 3, trigger="vram_degradation",
                      value=1250.0, threshold=1200.0))
        got = scrape(port)
        assert got["migrate_trigger_value"][key(host="main", trigger="vram_degradation")] == 1250
        assert got["migrate_trigger_firing"][key(host="main", trigger="vram_degradation")] == 0
        hooks.emit(ev(EventKind.TRIGGER_FIRED, "main", 3, trigger="vram_degradation",
                      value=1301.0, threshold=1200.0, baseline=1000.0))
        payload = Reason(RollbackCause.TRIGGER, "trigger vram_degradation: 1301 > 1200",
                         trigger="vram_degradation", host="main").payload()
        for host in ("main", "pc2"):
            hooks.emit(ev(EventKind.ROLLBACK_STARTED, host, 3, **payload))
        hooks.emit(ev(EventKind.ROLLBACK_COMPLETED, "main", 3, **payload))
        hooks.emit(ev(EventKind.ROLLBACK_FAILED, "pc2", 3, **payload))
        metrics.set_analysis_score(3, None, 50)
        hooks.emit(ev(EventKind.WATCH_ROLE, None, None, role="active"))
        got = scrape(port)
    finally:
        metrics.close()
    assert got["migrate_trigger_value"][key(host="main", trigger="vram_degradation")] == 1301
    assert got["migrate_trigger_threshold"][key(host="main", trigger="vram_degradation")] == 1200
    assert got["migrate_trigger_firing"][key(host="main", trigger="vram_degradation")] == 1
    assert got["migrate_trigger_firing"][key(host="pc2", trigger="vram_degradation")] == 0
    assert got["migrate_rollbacks_total"][key(phase="3", reason="vram_degradation")] == 2
    assert got["migrate_rollbacks_total"][key(phase="3", reason="step_failed")] == 0
    assert got["migrate_phase_state"] == {
        key(host="main", phase="3", state="rolled_back"): 1.0,
        key(host="pc2", phase="3", state="rollback_failed"): 1.0}
    assert got["migrate_analysis_score"][key(phase="3", wave="all")] == 50
    assert got["migrate_watch_active"] == {key(): 1.0}


def test_analysis_completed_event_sets_the_score_by_wave() -> None:
    class Kind:  # until the engine adds EventKind.ANALYSIS_COMPLETED, an object with .value
        value = "analysis_completed"

    metrics = MigrateMetrics(M)
    metrics.on_event(RunEvent(Kind, "r", None, 2, None, "", {"wave": 2, "score": 87.5}))  # type: ignore[arg-type]
    fams = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    (sample,) = fams["migrate_analysis_score"].samples
    assert sample.labels == {"migration": M, "phase": "2", "wave": "2"} and sample.value == 87.5


def test_a_new_run_clears_firing_and_resolved_triggers_stop_firing() -> None:
    metrics = MigrateMetrics(M)
    metrics.declare(["main"], {2: ["health_failure"]})
    metrics.on_event(ev(EventKind.TRIGGER_FIRED, "main", 2, trigger="health_failure", value=0.0))
    assert b'migrate_trigger_firing{host="main",migration="model-manager-agent",trigger="health_failure"} 1.0' in metrics.render()
    metrics.on_event(ev(EventKind.RUN_STARTED, "main", 2))
    assert b'trigger="health_failure"} 1.0' not in metrics.render()
    metrics.on_event(ev(EventKind.TRIGGER_FIRED, "main", 2, trigger="health_failure"))
    metrics.on_event(ev(EventKind.TRIGGER_RESOLVED, "main", 2, trigger="health_failure",
                        value=1.0))
    assert b'migrate_trigger_firing{host="main",migration="model-manager-agent",trigger="health_failure"} 0.0' in metrics.render()


def test_observe_takes_the_monitor_snapshot_with_baseline_applied() -> None:
    trig = Trigger("vram_degradation", "vram_used_mib", Condition.DEGRADE_PCT, 20, "up", 0,
                   TriggerAction.ROLLBACK, "phase-start", 1)
    metrics = MigrateMetrics(M)
    metrics.observe({("main", "vram_degradation"): (
        TriggerState(TriggerStatus.FIRING, last_value=1301.0), 1000.0)},
        {"vram_degradation": trig})
    fams = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    values = {f: fams[f].samples[0].value for f in
              ("migrate_trigger_value", "migrate_trigger_threshold", "migrate_trigger_firing")}
    assert values == {"migrate_trigger_value": 1301.0, "migrate_trigger_threshold": 1200.0,
                      "migrate_trigger_firing": 1.0}
    metrics.set_trigger("main", "vram_degradation", value=900.0, firing=False)
    assert b'migrate_trigger_threshold{host="main",migration="model-manager-agent",trigger="vram_degradation"} 1200.0' in metrics.render()


def test_private_registry_and_close_frees_the_port() -> None:
    from prometheus_client import REGISTRY

    a, b = MigrateMetrics("a"), MigrateMetrics("b")
    assert a.registry is not REGISTRY and a.registry is not b.registry
    port = a.serve(0)
    assert a.port == port and a.serve(0) == port
    a.close()
    a.close()
    again = MigrateMetrics("a")
    assert again.serve(port) == port  # the port was released
    again.close()
