"""What reports, status and the live view call things (issue 30):

- a run rolled back by the canary judgement opens with that judgement (its table and box
  plots), before any chart of a trigger that did not fire;
- an `alert:` trigger reads `firing`/`not firing` (firing is stored as 1), never
  `pass`/`fail`, in the report's charts and table, in status and in the live view.

The journal is written through its own API with what a run journals (the canary payload
comes from the real judge on samples with a known answer), then read by the real report,
status and live view code."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from orchestrator.canary.verdict import analyse
from orchestrator.config.project import load_project
from orchestrator.core.events import EventKind, RunEvent
from orchestrator.core.model import AnalysisMetric, AnalysisSpec
from orchestrator.core.states import PhaseState
from orchestrator.reporting import ALERT, show_value
from orchestrator.reporting.live import LiveView, plain_line
from orchestrator.reporting.report import write_report
from orchestrator.reporting.views import status_document, status_table
from orchestrator.state.journal import Journal
from tests.support.projects import make_project

MIGRATION = """\
name: labels
inventory: inventory/hosts.yml
poll_interval: 1s
prometheus: {url: 'http://127.0.0.1:9'}
metrics:
  vram_used_mib: {source: command, command: 'echo 1000', parse: number}
triggers:
  vram_degradation: {metric: vram_used_mib, above: 2000}
  thread_alert: {alert: ThreadHealth}
"""

PHASE = """\
phase: 1
name: Judged
steps:
  - id: one
    command: 'true'
    rollback_command: 'true'
"""

RUN = "20261207T030000Z-abcdef"


def _box(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    q = lambda f: s[int(f * (len(s) - 1))]  # noqa: E731
    return {"whislo": s[0], "q1": q(0.25), "med": q(0.5), "q3": q(0.75), "whishi": s[-1],
            "mean": sum(s) / len(s), "n": float(len(s))}


def journal_of_a_run_the_judge_rolled_back(root: Path) -> Journal:
    rng = random.Random(3)
    control = [50 * rng.uniform(0.98, 1.02) for _ in range(400)]
    canary = [65 * rng.uniform(0.98, 1.02) for _ in range(200)]
    result = analyse(AnalysisSpec(metrics=(AnalysisMetric("latency_ms", fail_on="increase"),)),
                     {"latency_ms": canary}, {"latency_ms": control}, wave=2)
    assert result.result == "fail"  # the known answer: 30% slower
    journal = Journal(root / ".migrate" / "state.db")
    journal.use_migration("labels")
    journal.create_run(RUN, 1, ["main", "pc2"], "migrate phase 1", "phase", False, {})
    for i in range(6):  # neither trigger fired: the alert stays 0 (not firing)
        for host in ("main", "pc2"):
            journal.add_sample(RUN, host, 1, "vram_degradation", "vram_used_mib", float(i),
                               1000.0 + i, False, "ok", 2000.0)
            journal.add_sample(RUN, host, 1, "thread_alert", "alert:ThreadHealth", float(i),
                               0.0, False, "ok")
    detail = result.detail()
    journal.event(RUN, None, 1, None, "analysis_completed", "{}",
                  {**detail, "canary_hosts": ["pc2"],
                   "distributions": {"latency_ms": {"canary": _box(canary),
                                                    "control": _box(control)}}})
    why = "analysis: canary analysis of wave 2: score 0 (fail)"
    journal.event(RUN, "pc2", 1, None, "rollback_started", why,
                  {"origin": "trigger", "trigger": "analysis", "culprit": "pc2"})
    journal.event(RUN, "pc2", 1, None, "rollback_completed", why,
                  {"origin": "trigger", "trigger": "analysis", "culprit": "pc2"})
    journal.end_run(RUN, "rolled_back")
    return journal


def test_a_run_the_judge_rolled_back_opens_with_the_judgement(tmp_path: Path) -> None:
    journal = journal_of_a_run_the_judge_rolled_back(tmp_path)
    try:
        charts = tmp_path / "report"
        _, md = write_report(journal, RUN, charts, "md")
        _, html = write_report(journal, RUN, charts, "html")
    finally:
        journal.close()
    judgement = md.index("## Canary analysis, wave 2: score 0 (fail)")
    box_plots = md.index("analysis-wave-2.png)")
    first_trigger_chart = md.index("### vram_degradation on")
    assert judgement < box_plots < md.index("## Charts") < first_trigger_chart
    assert md.index("## Triggers") > first_trigger_chart  # the table of triggers after
    assert html.index('data-chart="analysis-wave-2.png"') < html.index(
        'data-chart="thread_alert-main.png"')
    assert html.index("Canary analysis, wave 2: score 0 (fail)") < html.index("<h2>Charts")
    # the alert trigger that did not fire reads `not firing`, never `fail`
    assert "did not fire; last not firing" in md
    row = next(line for line in md.splitlines() if line.startswith("| thread_alert | main"))
    assert "| firing |" in row and "| not firing |" in row and "fail" not in row, row


def test_a_run_a_trigger_rolled_back_keeps_its_charts_first(tmp_path: Path) -> None:
    """Only the judge's own rollback moves the judgement up: a passing judgement stays
    after the charts."""
    journal = journal_of_a_run_the_judge_rolled_back(tmp_path)
    try:
        journal.event(RUN, "main", 1, None, "rollback_started", "trigger vram_degradation",
                      {"origin": "trigger", "trigger": "vram_degradation"})
        with journal.transaction() as db:  # the judge's rollback did not come first
            db.execute("DELETE FROM events WHERE kind = 'rollback_started' AND "
                       "json_extract(payload, '$.trigger') = 'analysis'")
        _, md = write_report(journal, RUN, tmp_path / "report", "md")
    finally:
        journal.close()
    assert md.index("## Charts") < md.index("## Canary analysis, wave 2")


def test_status_and_the_live_view_say_firing_and_not_firing(tmp_path: Path) -> None:
    proj = make_project(tmp_path, MIGRATION, hosts=("main",))
    proj.phase(1, "judged", PHASE)
    project, inventory = load_project(proj.root)
    journal = Journal(project.state_dir / "state.db")
    journal.use_migration("labels")
    try:
        journal.create_run(RUN, 1, ["main"], "migrate phase 1", "phase", False, {})
        journal.move_phase(RUN, "main", 1, PhaseState.RUNNING, "run_started",
                           "migrate phase 1")
        journal.set_trigger_state("main", 1, "thread_alert", RUN, "ok", 0.0, None, None, None,
                                  "alert ThreadHealth is not firing")
        journal.set_trigger_state("main", 1, "vram_degradation", RUN, "ok", 1000.0, 2000.0,
                                  None, None, "1000")
        doc = status_document(project, list(inventory.hosts.values()), journal)
        text = status_table(doc)
        line = next(x for x in text.splitlines() if "thread_alert" in x)
        assert "not firing" in line and "fail" not in line and "pass" not in line, line

        view = LiveView(live=False, plain=lambda line: None, journal=lambda: journal,
                        kinds=lambda: {"thread_alert": ALERT})
        view(RunEvent(EventKind.RUN_STARTED, RUN, "main", 1, None, "migrate phase 1"))
        frame = view.text()
        row = next(x for x in frame.splitlines() if "thread_alert" in x)
        assert "not firing" in row and "fail" not in row, frame
        journal.set_trigger_state("main", 1, "thread_alert", RUN, "firing", 1.0, None, None,
                                  None, "alert ThreadHealth is firing")
        row = next(x for x in view.text().splitlines() if "thread_alert" in x)
        assert " firing" in row and "not firing" not in row and "pass" not in row, row
    finally:
        journal.close()
    pending = RunEvent(EventKind.TRIGGER_PENDING, RUN, "main", 1, None, "alert pending",
                       {"trigger": "thread_alert", "value": 1.0})
    assert "firing" in (plain_line(pending, ALERT) or "")
    assert show_value(1, ALERT) == "firing" and show_value(0, ALERT) == "not firing"


def test_a_command_s_live_view_reads_alert_triggers_from_the_app_it_opened(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI builds the view before the app (the app subscribes it); the view reads the
    triggers' kinds from the project of the app the command opened, when first needed."""
    from orchestrator.cli import Options

    proj = make_project(tmp_path, MIGRATION, hosts=("main",))
    proj.phase(1, "judged", PHASE)
    opts = Options(str(proj.root), None, "text", 0)
    view = opts.live_view("migrate phase")
    with opts.open_app(root=proj.root, hooks=[view]) as app:
        app.subscribers.emit(RunEvent(EventKind.TRIGGER_PENDING, RUN, "main", 1, None,
                                      "alert ThreadHealth pending",
                                      {"trigger": "thread_alert", "value": 1.0}))
    err = capsys.readouterr().err
    assert "firing" in err and "pass" not in err, err
    assert view.kind("thread_alert") == ALERT and view.kind("vram_degradation") == "number"
