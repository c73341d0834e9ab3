"""What a notification says (SPEC section 2, notify): one to three lines a person reads on
a phone (the migration, the phase, the hosts, what happened and why), never raw JSON, the
structure beside it in `detail`; refusals (exit 4) and interrupted runs are sent too; a
`notify:` entry without `events:` gets every event.

Each test runs real `migrate` processes against a real HTTP sink, except the canary
judgement's text, which is composed from the real judge's result on samples with a known
answer (a canary run is a drill's job) and sent through the real sender to the sink.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.canary.verdict import analyse
from orchestrator.config.project import load_project
from orchestrator.core.events import NOTIFIABLE, EventKind, RunEvent
from orchestrator.core.model import AnalysisMetric, AnalysisSpec
from orchestrator.notify.hook import _COMPOSE, NotificationHook
from orchestrator.notify.sender import Notifications
from tests.support.projects import Proj, make_project
from tests.support.servers import WebhookSink, serving


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with serving(WebhookSink()) as s:
        yield s


def notified(tmp_path: Path, sink: WebhookSink, extra: str = "",
             hosts: tuple[str, ...] = ("main",)) -> Proj:
    """A project whose one notify entry names no events: it must get every event."""
    return make_project(tmp_path, "name: texts\ninventory: inventory/hosts.yml\n"
                        f"poll_interval: 300ms\nnotify:\n  - url: {sink.url}\n{extra}",
                        hosts=hosts)


def by_event(sink: WebhookSink, event: str) -> list[dict[str, Any]]:
    return [p for p in sink.received if p["event"] == event]


def readable(payload: dict[str, Any]) -> list[str]:
    """The text's lines, checked for what a phone shows: 1-3 short lines, no JSON."""
    lines = payload["text"].split("\n")
    assert 1 <= len(lines) <= 3, payload["text"]
    assert all(0 < len(line) <= 160 for line in lines), payload["text"]
    assert "{" not in payload["text"] and '":' not in payload["text"], payload["text"]
    assert isinstance(payload["detail"], dict), payload
    assert lines[0].startswith("[migrate texts] ") or lines[0].startswith("[migrate p] "), lines
    return lines


def test_every_notifiable_event_has_a_text_and_no_events_means_all(tmp_path: Path,
                                                                    sink: WebhookSink) -> None:
    proj = notified(tmp_path, sink)
    proj.phase(1, "x", "phase: 1\nname: X\nsteps:\n  - {id: w, wait: 1s}\n")
    project, _ = load_project(proj.root)
    assert set(project.notify[0].events) == {k.value for k in NOTIFIABLE}
    assert set(_COMPOSE) == set(NOTIFIABLE)
    assert "phase_refused" in project.notify[0].events
    assert "analysis_completed" in project.notify[0].events


def test_a_failed_step_names_its_task_and_error_and_a_refusal_is_sent(
        tmp_path: Path, sink: WebhookSink) -> None:
    proj = notified(tmp_path, sink)
    proj.phase(1, "deploy", """
        phase: 1
        name: Deploy the agent
        steps:
          - id: touch
            playbook: playbooks/touch.yml
            rollback: rollback/untouch.yml
          - id: boom
            playbook: playbooks/fail.yml
            rollback: rollback/untouch.yml
        """)
    proj.phase(2, "next", """
        phase: 2
        name: Next
        requires: [1]
        steps:
          - id: x
            command: 'true'
            rollback: none
        """)
    refused = proj.migrate("phase", "2", "--host", "main")
    assert refused.returncode == 4, refused.stderr
    res = proj.migrate("phase", "1", "--host", "main")
    assert res.returncode == 1, res.stderr
    wait_for(sink, "rollback_completed")

    (refusal,) = by_event(sink, "phase_refused")
    lines = readable(refusal)
    assert lines[0] == "[migrate texts] phase 2 (Next) on main: refused, nothing was run"
    assert lines[1] == "host main: phase 2 requires phase 1 completed, and it is pending"
    assert refusal["detail"]["hosts"] == ["main"]

    (started,) = by_event(sink, "run_started")
    assert readable(started)[0] == "[migrate texts] phase 1 (Deploy the agent) on main: started"
    (rolling,) = by_event(sink, "rollback_started")
    lines = readable(rolling)
    assert lines == ["[migrate texts] phase 1 (Deploy the agent) on main: rolling back",
                     'step boom: task "half-apply, then fail" failed: non-zero return code '
                     "(rc 1)"]
    assert "log:" in rolling["detail"]["summary"]  # the log's path stays in the detail
    (done,) = by_event(sink, "rollback_completed")
    assert readable(done)[0] == "[migrate texts] phase 1 (Deploy the agent) on main: rolled back"
    assert readable(done)[1] == lines[1]


def test_a_failed_undo_asks_for_a_human_naming_the_undo(tmp_path: Path,
                                                        sink: WebhookSink) -> None:
    proj = notified(tmp_path, sink)
    proj.phase(1, "deploy", """
        phase: 1
        name: Deploy
        steps:
          - id: boom
            playbook: playbooks/fail.yml
            rollback: rollback/fails.yml
        """)
    res = proj.migrate("phase", "1", "--host", "main")
    assert res.returncode == 3, res.stderr
    wait_for(sink, "rollback_failed")
    (failed,) = by_event(sink, "rollback_failed")
    assert readable(failed) == [
        "[migrate texts] ROLLBACK FAILED: phase 1 (Deploy) on main, a human is needed",
        'undo failed: step boom: task "fail" failed: cannot undo boom',
        "then: migrate rollback --host main --phase 1"]


def test_a_fired_trigger_says_its_value_against_its_limit(tmp_path: Path,
                                                          sink: WebhookSink) -> None:
    proj = notified(tmp_path, sink, extra=(
        "metrics:\n  level:\n    source: command\n"
        "    command: 'cat {{ vars.marker_dir }}/level'\n    parse: number\n"
        "triggers:\n  level_high: {metric: level, above: 100}\n"))
    (proj.markers / "level").write_text("500\n")
    proj.phase(1, "soak", """
        phase: 1
        name: Soak
        steps:
          - id: soak
            wait: 20s
        """)
    res = proj.migrate("phase", "1", "--host", "main")
    assert res.returncode == 1, res.stderr
    wait_for(sink, "rollback_completed")
    (fired,) = by_event(sink, "trigger_fired")
    assert readable(fired) == ["[migrate texts] phase 1 (Soak) on main: trigger level_high "
                               "fired, rollback", "trigger level_high: 500 > 100"]
    assert fired["detail"]["value"] == 500 and fired["detail"]["threshold"] == 100
    (done,) = by_event(sink, "rollback_completed")
    assert readable(done)[1] == "trigger level_high: 500 > 100"


def test_a_held_host_and_an_interrupted_run_are_sent(tmp_path: Path,
                                                          sink: WebhookSink) -> None:
    proj = notified(tmp_path, sink)
    child = slow_phase_started(proj, "sleep 30", "sleep 30")
    held = proj.migrate("phase", "1", "--host", "main")  # the running phase holds main
    assert held.returncode == 4, held.stderr
    wait_for(sink, "phase_refused")
    (refusal,) = by_event(sink, "phase_refused")
    lines = readable(refusal)
    assert lines[0] == "[migrate texts] phase 1 (Slow) on main: refused, nothing was run"
    assert lines[1].startswith("host main is held by another run of migration texts: pid "), \
        lines
    for _ in range(2):  # twice: stop at once, leave the run interrupted
        child.send_signal(signal.SIGTERM)
        time.sleep(0.5)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    wait_for(sink, "run_interrupted")
    (interrupted,) = by_event(sink, "run_interrupted")
    lines = readable(interrupted)
    assert lines[0] == ("[migrate texts] phase 1 (Slow) on main: run interrupted, left for a "
                        "person to finish")
    assert "SIGTERM" in lines[1]
    assert lines[2] == ("finish: migrate rollback --host main --phase 1 "
                        "(or migrate resume --host main)")


def test_waves_and_an_exhausted_budget_name_the_hosts(tmp_path: Path,
                                                      sink: WebhookSink) -> None:
    proj = notified(tmp_path, sink, hosts=("main", "pc2", "h3"))
    proj.phase(1, "fleet", """
        phase: 1
        name: Fleet
        waves: [1, 100%]
        steps:
          - id: check
            command: '[ "{{ host }}" != pc2 ]'
            rollback_command: 'true'
        """)
    res = proj.migrate("phase", "1", "--host", "main", "--host", "pc2", "--host", "h3")
    assert res.returncode == 1, res.stderr
    wait_for(sink, "rollback_completed", count=2)
    starts = [readable(p)[0] for p in by_event(sink, "wave_started")]
    assert starts == ["[migrate texts] phase 1 (Fleet) on main: wave 1 of 2 started",
                      "[migrate texts] phase 1 (Fleet) on pc2, h3: wave 2 of 2 started"]
    (budget,) = by_event(sink, "budget_exhausted")
    assert readable(budget) == ["[migrate texts] phase 1 (Fleet): failure budget exhausted, "
                                "the run stops", "1 host(s) failed (pc2), 0 allowed"]
    rolled = [p for p in by_event(sink, "rollback_started") if p["host"] == "pc2"]
    assert readable(rolled[0])[1] == "step check: command '[ \"pc2\" != pc2 ]' exited 1"


def test_a_canary_judgement_says_its_score_and_failing_metrics() -> None:
    """The judge's real result on a canary whose latency is 40% higher (known answer: it
    fails), composed by the hook and posted by the real sender to a real sink."""
    rng = random.Random(7)
    control = {"latency_ms": [50 * rng.uniform(0.98, 1.02) for _ in range(600)],
               "vram_used_mib": [1000 * rng.uniform(0.98, 1.02) for _ in range(600)]}
    canary = {"latency_ms": [70 * rng.uniform(0.98, 1.02) for _ in range(200)],
              "vram_used_mib": [1000 * rng.uniform(0.98, 1.02) for _ in range(200)]}
    spec = AnalysisSpec(metrics=(AnalysisMetric("latency_ms", fail_on="increase"),
                                 AnalysisMetric("vram_used_mib", allowed_change_pct=5)))
    result = analyse(spec, canary, control, wave=2)
    assert result.result == "fail"
    with serving(WebhookSink()) as sink:
        notifications = Notifications((_notifier(sink.url),), "p")
        hook = NotificationHook(notifications, {3: "Cutover"})
        detail = result.detail()
        hook(RunEvent(EventKind.ANALYSIS_COMPLETED, "r1", None, 3, None, "{}",
                      {**detail, "canary_hosts": ["h02", "h03", "h04", "h05"],
                       "distributions": {"latency_ms": {}},
                       "failing": [m.name for m in result.metrics if m.failed or m.nodata]}))
        notifications.close(10)
        (sent,) = sink.received
    lines = readable(sent)
    assert lines[0] == ("[migrate p] phase 3 (Cutover) wave 2 on h02, h03, h04 and 1 more: "
                        "canary analysis FAIL, score 50")
    assert lines[1].startswith("failing: latency_ms high (x1.4")
    assert "vram_used_mib" not in lines[1]
    assert sent["detail"]["score"] == 50.0 and "distributions" not in sent["detail"]


def _notifier(url: str) -> Any:
    from orchestrator.core.model import Notifier

    return Notifier(url, tuple(k.value for k in NOTIFIABLE))


def slow_phase_started(proj: Proj, command: str, rollback_command: str
                       ) -> subprocess.Popen[str]:
    """`migrate phase 1` (Slow) on main, spawned and waited for until its one step, which
    marks `started` and then runs `command`, has begun."""
    proj.phase(1, "slow", f"""
        phase: 1
        name: Slow
        steps:
          - id: slow
            command: 'touch {{{{ vars.marker_dir }}}}/started && {command}'
            rollback_command: '{rollback_command}'
        """)
    child = proj.spawn("phase", "1", "--host", "main", "--yes")
    assert proj.reached(child, "started", 60), child.communicate()
    return child


def wait_for(sink: WebhookSink, event: str, count: int = 1, seconds: float = 15) -> None:
    """The sender posts off the critical path, before the process exits: give the sink's
    thread a moment to record what arrived."""
    deadline = time.monotonic() + seconds
    while len(by_event(sink, event)) < count:
        assert time.monotonic() < deadline, [p["event"] for p in sink.received]
        time.sleep(0.05)


def test_refused_resume_and_rollback_are_sent(tmp_path: Path, sink: WebhookSink) -> None:
    """Every refusal (exit 4) is heard, not only a phase's `requires`: `migrate resume`
    with nothing interrupted, `migrate rollback` of a phase that never ran, and of the
    latest phase when none ran."""
    proj = notified(tmp_path, sink)
    proj.phase(1, "deploy", "phase: 1\nname: Deploy\nsteps:\n"
                            "  - {id: x, command: 'true', rollback: none}\n")
    resumed = proj.migrate("resume", "--host", "main")
    assert resumed.returncode == 4, resumed.stderr
    undone = proj.migrate("rollback", "--host", "main", "--phase", "1", "--yes")
    assert undone.returncode == 4, undone.stderr
    latest = proj.migrate("rollback", "--host", "main", "--yes")
    assert latest.returncode == 4, latest.stderr
    wait_for(sink, "phase_refused", count=3)
    resume, rollback, rollback_latest = by_event(sink, "phase_refused")
    assert readable(resume) == ["[migrate texts] migrate on main: resume refused, nothing was run",
                                "host main has no interrupted run to resume"]
    assert resume["detail"]["command"] == "resume" and resume["detail"]["hosts"] == ["main"]
    assert readable(rollback) == [
        "[migrate texts] phase 1 (Deploy) on main: rollback refused, nothing was undone",
        "host main: phase 1 is pending; there is nothing to roll back"]
    assert rollback["phase"] == 1 and rollback["detail"]["command"] == "rollback"
    assert readable(rollback_latest) == [
        "[migrate texts] migrate on main: rollback refused, nothing was undone",
        "no phase to roll back on main: all pending or rolled back"]
    assert not by_event(sink, "run_started")  # nothing ran


def test_a_run_whose_journal_is_lost_says_so(tmp_path: Path, sink: WebhookSink) -> None:
    """The journal is held by another writer past `state.timeout` while a step runs: the
    run stops (exit 3) unrecorded, and `journal_unavailable` is what a person hears (the
    journal cannot hold that event)."""
    import sqlite3

    proj = notified(tmp_path, sink, extra="state:\n  timeout: 1s\n")
    child = slow_phase_started(
        proj, "while [ ! -e {{ vars.marker_dir }}/locked ]; do sleep 0.05; done", "true")
    holder = sqlite3.connect(proj.root / ".migrate" / "state.db", timeout=30,
                             isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # no one else writes until we let go
        (proj.markers / "locked").touch()
        _, err = child.communicate(timeout=90)
    finally:
        holder.close()
    assert child.returncode == 3, err
    wait_for(sink, "journal_unavailable")
    (lost,) = by_event(sink, "journal_unavailable")
    lines = readable(lost)
    assert lines[0] == ("[migrate texts] phase 1 (Slow) on main: journal unreachable, the run "
                        "stopped unrecorded")
    assert "locked" in lines[1], lines
    assert lines[2] == "once it is back: migrate resume --host main (or migrate rollback)"
    assert lost["detail"]["hosts"] == ["main"] and lost["detail"]["journal"].endswith("state.db")
