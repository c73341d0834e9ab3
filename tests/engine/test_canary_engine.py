"""Canary analysis in the engine (SPEC section 2), with fake runners, a fake clock and a
fake monitor that serves the samples: pass goes on, fail rolls the canary wave back as a
trigger named `analysis` (on_fire and the budget apply), marginal pauses for the
operator, dry_run judges and journals without acting, and `before` samples the hosts
for `window` before the first step."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config.project import load_project
from orchestrator.core.bus import Cycle, RunBus, SampleRequest
from orchestrator.core.clock import CancelToken, FakeClock
from orchestrator.core.events import EventKind, RunEvent
from orchestrator.core.outcomes import RunOutcome
from orchestrator.engine.context import EngineParts, NoTty
from orchestrator.engine.lifecycle import RunLifecycle
from orchestrator.reporting.report import write_report
from orchestrator.reporting.views import status_document, status_table
from orchestrator.state.journal import Journal
from orchestrator.telemetry.metrics import MigrateMetrics
from tests.support.fake_runners import Recorder
from tests.support.projects import make_project

HOSTS = tuple(f"h{i:02d}" for i in range(10))

MIGRATION = """\
name: canaried
inventory: inventory/hosts.yml
poll_interval: 5s
metrics:
  vram_used_mib: {source: command, command: 'echo 1000', parse: number}
  latency_ms: {source: command, command: 'echo 50', parse: number}
triggers:
  vram_high: {metric: vram_used_mib, above: 100000}
"""

STEPS = """\
steps:
  - id: one
    command: 'do one'
    rollback_command: 'undo one'
"""

BASE = {"vram_used_mib": 1000.0, "latency_ms": 50.0}


class TickingClock(FakeClock):
    """A FakeClock that tells a listener each time it moves (the fake monitor's poll)."""

    def __init__(self) -> None:
        super().__init__()
        self.listeners: list[Any] = []

    def advance(self, seconds: float) -> None:
        before = self.now
        super().advance(seconds)
        for listener in self.listeners:
            listener(before, self.now)


class SamplingMonitor:
    """Polls the analysis samples the engine asks for: one reading per host and metric
    every second of the fake clock, published on the run's bus as a `Cycle`, noise +-2%,
    and `shift` (metric -> factor) on the `regressed` hosts from their first step on
    (`on_event`, subscribed to the run's hooks)."""

    def __init__(self, clock: TickingClock, regressed: set[str],
                 shift: dict[str, float]) -> None:
        self.clock, self.regressed, self.shift = clock, regressed, shift
        self.joined: dict[str, float] = {}
        self.sampled: list[str] = []
        self.watched: list[str] = []
        self.bus: RunBus | None = None
        self.request: SampleRequest | None = None
        clock.listeners.append(self.poll)

    def start(self, bus: RunBus, phase: object, hosts: list[Any], dry_run: bool,
              recorder: object = None, samples: SampleRequest | None = None) -> None:
        self.bus, self.request = bus, samples
        if samples is not None:
            self.sampled = list(samples.hosts)

    def poll(self, before: float, now: float) -> None:
        """Every second at its half (x.5) in (before, now]: one cycle of readings (off the
        whole seconds the engine's windows start and end at, so a 5 min window holds 300)."""
        if self.bus is None or self.request is None:
            return
        names = list(dict.fromkeys([*self.watched, *self.request.hosts]))
        t = float(int(before)) + 0.5
        t += 1 if t <= before else 0
        while t <= now:
            readings = []
            for name in names:
                for metric in self.request.metrics:
                    value = BASE[metric] * (1 + random.Random(f"{name}{metric}{t}").uniform(
                        -0.02, 0.02))
                    if name in self.regressed and name in self.joined \
                            and t >= self.joined[name]:
                        value *= self.shift.get(metric, 1.0)
                    readings.append((name, metric, value))
            self.bus.publish(Cycle(self.bus.run_id, 1, t, (), tuple(readings)))
            t += 1

    def on_event(self, event: RunEvent) -> None:
        if event.kind is EventKind.STEP_STARTED and event.host is not None:
            self.joined.setdefault(event.host, self.clock.monotonic())

    def watch_more(self, hosts: list[Any]) -> None:
        self.watched = [*self.watched, *(h.name for h in hosts)]

    def forget(self, hosts: list[str]) -> None:
        return None

    def record_only(self) -> None:
        return None

    def stop(self) -> None:
        self.bus = None


class Answer:
    def __init__(self, answer: bool | None) -> None:
        self.answer, self.asked = answer, 0

    def confirm(self, message: str) -> bool | None:
        self.asked += 1
        return self.answer


def setup(tmp_path: Path, phase: str, regressed: set[str] = frozenset(),  # type: ignore[assignment]
          shift: dict[str, float] | None = None, prompter: Any = None,
          hosts: tuple[str, ...] = HOSTS) -> tuple[RunLifecycle, Journal, list[RunEvent],
                                                    SamplingMonitor, MigrateMetrics]:
    proj = make_project(tmp_path, MIGRATION, hosts=hosts)
    proj.phase(1, "judged", phase + STEPS)
    project, inventory = load_project(proj.root)
    rec = Recorder()
    journal = Journal(project.state_dir / "state.db")
    clock = TickingClock()
    monitor = SamplingMonitor(clock, set(regressed), shift or {"vram_used_mib": 1.12,
                                                               "latency_ms": 1.15})
    parts = EngineParts(journal=journal, playbooks=rec.playbooks, commands=rec.commands,
                        clock=clock, prompter=prompter or NoTty(), undo_retry_delay=10,
                        monitor=monitor)
    seen: list[RunEvent] = []
    parts.hooks.subscribe(seen.append)
    parts.hooks.subscribe(monitor.on_event)
    metrics = MigrateMetrics("canaried")
    parts.hooks.subscribe(metrics.on_event)
    return RunLifecycle(project, inventory, parts), journal, seen, monitor, metrics


def run(lc: RunLifecycle, names: tuple[str, ...] = HOSTS) -> Any:
    hosts = lc.inventory.resolve(list(names))
    return lc.run_phase(lc.project.phases[1], hosts, "migrate phase 1", CancelToken())


def states(journal: Journal, names: tuple[str, ...] = HOSTS) -> dict[str, str]:
    return {h: journal.phase_record(h, 1).state.value for h in names}


def analyses(seen: list[RunEvent]) -> list[dict[str, Any]]:
    out = []
    for e in seen:
        if e.kind is EventKind.ANALYSIS_COMPLETED:
            detail = json.loads(e.detail or "")  # the payload leaves out wave: null
            payload = {k: v for k, v in e.payload.items()
                       if k not in ("distributions", "canary_hosts", "failing")}
            assert {k: v for k, v in detail.items() if v is not None} == payload
            assert set(e.payload["distributions"]) == {m["name"] for m in detail["metrics"]}
            out.append(detail)
    return out


WAVES = """\
phase: 1
name: Judged
bake: 10m
waves: [2, 50%, 100%]
analysis:
  metrics:
    vram_used_mib: {fail_on: increase, allowed_change_pct: 5, critical: true}
    latency_ms: {fail_on: increase}
  window: 5m
"""
# waves: h00-h01 | h02-h04 | h05-h09; the last leaves no unmigrated host: not judged


def test_pass_goes_on_and_every_judged_wave_is_journaled(tmp_path: Path) -> None:
    lc, journal, seen, monitor, metrics = setup(tmp_path, WAVES)
    report = run(lc)
    assert report.outcome is RunOutcome.COMPLETED, report.reason
    assert set(states(journal).values()) == {"completed"}
    got = analyses(seen)
    assert [(a["wave"], a["result"], a["score"]) for a in got] == [(1, "pass", 100.0),
                                                                   (2, "pass", 100.0)]
    first = got[0]["metrics"]
    assert {m["name"] for m in first} == {"vram_used_mib", "latency_ms"}
    # 5 min at one sample a second: 2 canary hosts, 8 unmigrated control hosts
    assert {(m["canary_samples"], m["control_samples"]) for m in first} == {(600, 2400)}
    assert set(monitor.sampled) == set(HOSTS)  # the control is read too
    assert b'migrate_analysis_score{migration="canaried",phase="1",wave="2"} 100.0' \
        in metrics.render()
    doc = status_document(lc.project, lc.inventory.resolve(list(HOSTS)), journal)
    assert doc["hosts"]["h00"]["phases"]["1"]["analysis"] == {"wave": 2, "score": 100.0,
                                                              "result": "pass"}
    assert "canary score 100: pass (wave 2)" in status_table(doc)


def test_fail_rolls_back_the_canary_wave_only(tmp_path: Path) -> None:
    lc, journal, seen, _, metrics = setup(tmp_path, WAVES, regressed={"h02", "h03", "h04"})
    report = run(lc)
    assert report.outcome is RunOutcome.ROLLED_BACK
    assert "analysis" in (report.reason or "")
    got = analyses(seen)
    assert [(a["wave"], a["result"]) for a in got] == [(1, "pass"), (2, "fail")]
    assert {m["name"]: m["class"] for m in got[1]["metrics"]} == {"vram_used_mib": "high",
                                                                  "latency_ms": "high"}
    assert got[1]["score"] == 0  # vram is critical
    s = states(journal)
    assert [s[h] for h in ("h00", "h01")] == ["completed"] * 2
    assert [s[h] for h in ("h02", "h03", "h04")] == ["rolled_back"] * 3
    assert {s[h] for h in HOSTS[5:]} == {"pending"}  # the last wave never started
    started = [e for e in seen if e.kind is EventKind.ROLLBACK_STARTED]
    assert {e.host for e in started} == {"h02", "h03", "h04"}
    assert {e.payload.get("trigger") for e in started} == {"analysis"}
    assert b'migrate_rollbacks_total{migration="canaried",phase="1",reason="analysis"} 3.0' \
        in metrics.render()
    # the run report: the table and the canary and control box plots of each wave judged
    charts = tmp_path / "rep" / "report"
    _, text = write_report(journal, report.run_id, charts, "md")
    assert "Canary analysis, wave 2: score 0 (fail)" in text
    assert "Canary analysis, wave 1: score 100 (pass)" in text
    row = next(line for line in text.splitlines()
               if line.startswith("| vram_used_mib | high"))
    assert "| 1.12" in row  # the effect
    assert (charts / "analysis-wave-2.png").read_bytes().startswith(b"\x89PNG")
    _, page = write_report(journal, report.run_id, charts, "html")
    assert "Canary analysis, wave 2" in page


def test_an_exhausted_budget_counts_every_host_the_judgement_failed(tmp_path: Path) -> None:
    """The judgement fails a wave's hosts together: the budget line counts all three, not
    the first one (issue 30: "1 of 6 hosts failed" when both hosts of wave 2 failed)."""
    lc, journal, seen, _, _ = setup(tmp_path, WAVES + "max_failed: 1\n",
                                    regressed={"h02", "h03", "h04"})
    assert run(lc).outcome is RunOutcome.ROLLED_BACK
    (budget,) = [e for e in seen if e.kind is EventKind.BUDGET_EXHAUSTED]
    assert sorted(budget.payload["failed"]) == ["h02", "h03", "h04"]
    assert (budget.detail or "").startswith("failure budget exhausted: 3 of 10 hosts failed, "
                                            "1 allowed"), budget.detail
    s = states(journal)
    assert [s[h] for h in ("h02", "h03", "h04")] == ["rolled_back"] * 3


def test_fail_with_on_fire_run_rolls_back_every_wave(tmp_path: Path) -> None:
    lc, journal, _, _, _ = setup(tmp_path, WAVES + "on_fire: run\n",
                                 regressed={"h02", "h03", "h04"})
    assert run(lc).outcome is RunOutcome.ROLLED_BACK
    s = states(journal)
    assert {s[h] for h in HOSTS[:5]} == {"rolled_back"}
    assert {s[h] for h in HOSTS[5:]} == {"pending"}


def test_fail_within_the_budget_rolls_back_those_hosts_and_goes_on(tmp_path: Path) -> None:
    lc, journal, seen, _, _ = setup(tmp_path, WAVES + "max_failed: 3\n",
                                    regressed={"h02", "h03", "h04"})
    report = run(lc)
    assert report.outcome is RunOutcome.ROLLED_BACK  # something was rolled back: exit 1
    s = states(journal)
    assert [s[h] for h in ("h02", "h03", "h04")] == ["rolled_back"] * 3
    assert {s[h] for h in ("h00", "h01", *HOSTS[5:])} == {"completed"}
    assert not [e for e in seen if e.kind is EventKind.BUDGET_EXHAUSTED]


MARGINAL = WAVES.replace("window: 5m\n", "window: 5m\n  pass: 100\n  marginal: 50\n")


@pytest.mark.parametrize(("answer", "outcome"), [(True, RunOutcome.COMPLETED),
                                                 (False, RunOutcome.ROLLED_BACK),
                                                 (None, RunOutcome.ROLLED_BACK)])
def test_marginal_pauses_for_the_operator(tmp_path: Path, answer: bool | None,
                                          outcome: RunOutcome) -> None:
    prompter = Answer(answer)
    lc, journal, seen, _, _ = setup(tmp_path, MARGINAL, regressed={"h00", "h01"},
                                    shift={"latency_ms": 1.15}, prompter=prompter)
    report = run(lc)
    assert report.outcome is outcome, report.reason
    got = analyses(seen)
    assert (got[0]["wave"], got[0]["result"], got[0]["score"]) == (1, "marginal", 50.0)
    assert prompter.asked == 1  # wave 2 (not regressed) passes
    answers = [e for e in seen if e.kind is EventKind.OPERATOR_ANSWER]
    assert {e.host for e in answers} >= {"h00", "h01"}
    s = states(journal)
    if answer:
        assert set(s.values()) == {"completed"}
    else:
        assert [s["h00"], s["h01"]] == ["rolled_back"] * 2
        assert {s[h] for h in HOSTS[2:]} == {"pending"}


def test_dry_run_judges_and_journals_but_never_acts(tmp_path: Path) -> None:
    lc, journal, seen, _, _ = setup(tmp_path, WAVES.replace("window: 5m\n",
                                                            "window: 5m\n  dry_run: true\n"),
                                    regressed={"h00", "h01"})
    report = run(lc)
    assert report.outcome is RunOutcome.COMPLETED
    assert set(states(journal).values()) == {"completed"}
    assert [a["result"] for a in analyses(seen)] == ["fail", "pass"]
    assert not [e for e in seen if e.kind is EventKind.ROLLBACK_STARTED]


BEFORE = """\
phase: 1
name: Judged
bake: 10m
analysis:
  metrics:
    vram_used_mib: {fail_on: increase, allowed_change_pct: 5}
  window: 5m
"""


def test_before_samples_the_hosts_first_and_fails_the_run(tmp_path: Path) -> None:
    lc, journal, seen, monitor, _ = setup(tmp_path, BEFORE, regressed={"h00", "h01"},
                                          hosts=("h00", "h01"))
    begin = lc.parts.clock.monotonic()
    report = run(lc, ("h00", "h01"))
    assert report.outcome is RunOutcome.ROLLED_BACK
    first = next(e for e in seen if e.kind is EventKind.STEP_STARTED)
    assert monitor.joined["h00"] - begin >= 300  # sampled a window before the first step
    assert lc.parts.clock.monotonic() - begin >= 300 + 600  # the window before, the bake
    got = analyses(seen)
    assert [(a["wave"], a["result"]) for a in got] == [(None, "fail")]
    assert got[0]["metrics"][0]["class"] == "high"
    assert got[0]["metrics"][0]["control_samples"] >= 590  # 2 hosts x 300 s before
    assert set(states(journal, ("h00", "h01")).values()) == {"rolled_back"}
    assert first.host in ("h00", "h01")


def test_before_without_regression_completes(tmp_path: Path) -> None:
    lc, journal, seen, _, _ = setup(tmp_path, BEFORE, hosts=("h00", "h01"))
    assert run(lc, ("h00", "h01")).outcome is RunOutcome.COMPLETED
    assert [a["result"] for a in analyses(seen)] == ["pass"]


SPREAD_DRY = WAVES.replace(
    "    latency_ms: {fail_on: increase}\n",
    "    latency_ms: {fail_on: increase, dry_run: true}\n").replace(
    "critical: true}", "critical: true, spread: {allowed_change_pct: 50}}")


def test_analysis_completed_carries_dry_run_and_spread(tmp_path: Path) -> None:
    """A dry-run metric that fails is journaled failed and acts on nothing; a metric with
    `spread:` carries its ratio, p-value and result; the report's table shows both."""
    assert SPREAD_DRY.count("dry_run: true") == 1 and "spread: {" in SPREAD_DRY
    lc, journal, seen, _, _ = setup(tmp_path, SPREAD_DRY, regressed={"h02", "h03", "h04"},
                                    shift={"latency_ms": 1.15})
    report = run(lc)
    assert report.outcome is RunOutcome.COMPLETED, report.reason
    assert set(states(journal).values()) == {"completed"}
    got = analyses(seen)
    assert [(a["wave"], a["result"], a["score"]) for a in got] == [(1, "pass", 100.0),
                                                                   (2, "pass", 100.0)]
    wave2 = {m["name"]: m for m in got[1]["metrics"]}
    latency, vram = wave2["latency_ms"], wave2["vram_used_mib"]
    assert (latency["class"], latency["dry_run"]) == ("high", True) and "spread" not in latency
    assert vram["dry_run"] is False and vram["class"] == "pass"
    assert set(vram["spread"]) == {"ratio", "p_value", "result"}
    assert vram["spread"]["result"] == "pass" and 0.8 < vram["spread"]["ratio"] < 1.25
    wave2_event = [e for e in seen if e.kind is EventKind.ANALYSIS_COMPLETED][1]
    assert wave2_event.payload["failing"] == []  # what notifications name: counted ones only
    _, text = write_report(journal, report.run_id, tmp_path / "rep" / "report", "md")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()
            if line.startswith(("| latency_ms", "| vram_used_mib"))}
    assert "| high, dry run |" in rows["latency_ms"]
    assert "IQR x" in rows["vram_used_mib"] and ": pass" in rows["vram_used_mib"]
