"""The live view driven by events, on a recording Console: grid, fleet counts, triggers,
countdown and outcome on a terminal; plain transition lines without escapes elsewhere."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.core.events import EventKind as K
from orchestrator.core.events import RunEvent
from orchestrator.reporting.live import FLEET, LiveView, plain_line, seconds, wants_live
from orchestrator.state.journal import Journal

ESC = re.compile(r"\x1b\[")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def view(live: bool = True, journal: Callable[[], Journal | None] | None = None
         ) -> tuple[LiveView, Clock, list[str]]:
    clock = Clock()
    lines: list[str] = []
    console = Console(file=io.StringIO(), width=120, force_terminal=live, color_system=None)
    return LiveView(console, live=live, clock=clock, plain=lines.append,
                    journal=journal), clock, lines


def emit(v: LiveView, kind: K, host: str | None = None, step: str | None = None,
         detail: str | None = None, run: str = "r1", phase: int = 3, **payload: object) -> None:
    v(RunEvent(kind, run, host, phase, step, detail, dict(payload)))


VRAM = {"trigger": "vram_degradation", "value": 6500.0, "threshold": 6000.0,
        "baseline": 5000.0}


def test_grid_shows_steps_states_elapsed_triggers_and_outcome() -> None:
    v, clock, _ = view(live=False)  # the model and frame are the same; no Live thread here
    v.expect(3, ["snapshot", "deploy", "soak"], ["main", "pc2"], bake_s=60)
    for h in ("main", "pc2"):
        emit(v, K.RUN_STARTED, h)
    emit(v, K.STEP_STARTED, "main", "snapshot")
    clock.now += 1.5
    emit(v, K.STEP_SUCCEEDED, "main", "snapshot")
    emit(v, K.STEP_SKIPPED, "pc2", "snapshot")
    emit(v, K.STEP_STARTED, "main", "deploy")
    clock.now += 4
    frame = v.text()
    assert "phase 3" in frame
    assert re.search(r"main\s+running\s+✓ 1\.5s\s+▶ 4\.0s\s+·", frame), frame
    assert re.search(r"pc2\s+running\s+–\s+·\s+·", frame), frame

    emit(v, K.TRIGGER_PENDING, "main", detail="trigger vram_degradation: 6500 > 6000", **VRAM)
    clock.now += 3
    emit(v, K.TRIGGER_FIRED, "main", detail="trigger vram_degradation: 6500 > 6000 for 3s",
         **VRAM)
    clock.now += 2
    frame = v.text()
    assert re.search(r"vram_degradation\s+main\s+6500\s+6000\s+5000\s+FIRING\s+5\.0s", frame), \
        frame
    assert "latest: trigger vram_degradation: 6500 > 6000 for 3s on main" in frame

    emit(v, K.STEP_FAILED, "main", "deploy", detail="cancelled")
    for h in ("main", "pc2"):
        emit(v, K.ROLLBACK_STARTED, h, detail="trigger vram_degradation: 6500 > 6000 for 3s")
    emit(v, K.STEP_ROLLBACK_STARTED, "main", "deploy")
    clock.now += 1
    emit(v, K.STEP_ROLLED_BACK, "main", "deploy")
    assert re.search(r"main\s+rolling back\s+✓ 1\.5s\s+↩ undone 1\.0s", v.text())
    for h in ("main", "pc2"):
        emit(v, K.ROLLBACK_COMPLETED, h)
    frame = v.text()
    assert "outcome: phase 3: rolled back on 2 host(s)" in frame
    assert "why: trigger vram_degradation" in frame
    v.finish("phase 3 rolled_back: trigger vram_degradation: 6500 > 6000 for 3s")
    assert "outcome: phase 3 rolled_back: trigger vram" in v.text()


def test_bake_countdown_and_waves() -> None:
    v, clock, _ = view(live=False)
    v.expect(2, ["deploy"], ["a", "b", "c"], bake_s=120)
    emit(v, K.WAVE_STARTED, phase=2, wave=1, waves=2, hosts=["a"])
    emit(v, K.RUN_STARTED, "a", phase=2, wave=1)
    emit(v, K.BAKE_STARTED, "a", phase=2)
    clock.now += 30
    frame = v.text()
    assert "wave 1/2" in frame
    assert "bake: 1m30s left of 2m00s" in frame
    assert re.search(r"b\s+pending\s+\S*\s*·", frame), frame
    emit(v, K.PHASE_COMPLETED, "a", phase=2)
    clock.now += 95
    emit(v, K.WAVE_STARTED, phase=2, wave=2, waves=2, hosts=["b", "c"])
    assert "bake:" not in v.text()
    for h in ("b", "c"):
        emit(v, K.RUN_STARTED, h, phase=2, wave=2)
    clock.now += 10
    for h in ("b", "c"):
        emit(v, K.BAKE_STARTED, h, phase=2)
        clock.now += 0.1
    clock.now += 20
    assert "wave 2/2" in v.text() and "bake: 1m39s left of 2m00s" in v.text()


def test_a_fleet_is_counted_per_wave_and_state() -> None:
    v, clock, _ = view(live=False)
    hosts = [f"h{i:03d}" for i in range(1, 61)]
    v.expect(1, ["deploy", "restart"], hosts)
    emit(v, K.WAVE_STARTED, phase=1, wave=1, waves=3, hosts=hosts[:1])
    emit(v, K.RUN_STARTED, hosts[0], phase=1)
    emit(v, K.PHASE_COMPLETED, hosts[0], phase=1)
    emit(v, K.WAVE_STARTED, phase=1, wave=2, waves=3, hosts=hosts[1:30])
    for h in hosts[1:30]:
        emit(v, K.RUN_STARTED, h, phase=1)
        emit(v, K.STEP_STARTED, h, "deploy", phase=1)
    for h in hosts[1:20]:
        emit(v, K.STEP_SUCCEEDED, h, "deploy", phase=1)
    emit(v, K.TRIGGER_FIRED, hosts[5], detail="trigger vram_degradation: 6500 > 6000",
         phase=1, **VRAM)
    for h in hosts[:30]:
        if h != hosts[5]:
            emit(v, K.TRIGGER_RESET, h, detail="ok", phase=1, **dict(VRAM, value=5000.0))
    frame = v.text()
    assert len(hosts) > FLEET
    assert "h030" not in frame.split("trigger")[0]  # no row per host
    assert re.search(r"1\s+1\s+completed 1", frame), frame
    assert re.search(r"2\s+29\s+running 29\s+deploy ✓19 ▶10", frame), frame
    assert re.search(r"later\s+30\s+pending 30", frame), frame
    assert re.search(r"vram_degradation\s+worst h006\s+6500\s+6000\s+5000\s+FIRING 1 · ok 29",
                     frame), frame
    assert len(frame.splitlines()) < 20


def test_without_a_terminal_plain_lines_for_transitions_only() -> None:
    v, _, lines = view(live=False)
    emit(v, K.RUN_STARTED, "main")
    emit(v, K.STEP_STARTED, "main", "deploy")
    emit(v, K.TRIGGER_PENDING, "main", detail="x", **VRAM)
    emit(v, K.TRIGGER_RESET, "main", detail="x", **dict(VRAM, value=5100.0))
    emit(v, K.WAVE_COMPLETED, detail="wave 1 of 2 completed: main")
    v.say("ok     main: deploy")
    assert lines == [
        "  trigger vram_degradation pending on main: 6500 vs limit 6000 (baseline 5000)",
        "  trigger vram_degradation back to ok on main: 5100 vs limit 6000 (baseline 5000)",
        "wave 1 of 2 completed: main",
        "ok     main: deploy"]
    assert not any(ESC.search(line) for line in lines)
    assert plain_line(RunEvent(K.STEP_SUCCEEDED, "r", "main", 1, "s")) is None  # engine says it


def test_live_region_on_a_terminal_and_say_lines_above_it() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True, color_system="standard")
    v = LiveView(console, live=True, refresh_per_second=20)
    with v:
        emit(v, K.RUN_STARTED, "main")
        assert v.active
        v.say("step deploy on main: command: true")
        emit(v, K.STEP_STARTED, "main", "deploy")
        v.finish("run r1: phase 3 completed")
    assert not v.active
    raw = out.getvalue()
    assert ESC.search(raw)  # a terminal gets the redrawn region
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    assert "step deploy on main" in text and "outcome: run r1: phase 3 completed" in text


def test_trigger_values_are_reread_from_the_journal_between_transitions(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "state.db")
    v, clock, _ = view(live=False, journal=lambda: journal)
    emit(v, K.RUN_STARTED, "main", run="r9", phase=2)
    journal.set_trigger_state("main", 2, "vram_degradation", "r9", "ok", 5400.0, 6000.0,
                              5000.0, None, "ok")
    journal.set_trigger_state("main", 2, "vram_degradation_old", "r8", "firing", 1.0, 0.0,
                              None, None, "stale: another run")
    frame = v.text()
    assert re.search(r"vram_degradation\s+main\s+5400\s+6000\s+5000\s+ok", frame), frame
    assert "vram_degradation_old" not in frame
    journal.close()


def test_wants_live_only_for_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert wants_live(Tty())
    assert not wants_live(Tty(), "json")
    assert not wants_live(io.StringIO())
    monkeypatch.setenv("CI", "true")
    assert not wants_live(Tty())
    assert seconds(0.42) == "0.4s" and seconds(75) == "1m15s" and seconds(7300) == "2h01m"


def test_a_prompt_pauses_the_region_and_events_do_not_draw_over_it() -> None:
    console = Console(file=io.StringIO(), width=100, force_terminal=True)
    lines: list[str] = []
    v = LiveView(console, live=True, plain=lines.append)
    with v:
        emit(v, K.RUN_STARTED, "main")
        assert v.active
        with v.paused():
            emit(v, K.TRIGGER_PENDING, "main", detail="x", **VRAM)  # the monitor's thread
            assert not v.active
            v.say("pause: continue the phase?")
        assert v.active
    assert not v.active and lines == ["pause: continue the phase?"]


def test_timers_stop_when_their_state_ends() -> None:
    """A FIRING trigger's breaching timer stops when its host's rollback begins (the monitor
    no longer watches it), and the header's run timer stops at the outcome."""
    v, clock, _ = view(live=False)
    v.expect(3, ["deploy"], ["main"])
    emit(v, K.RUN_STARTED, "main")
    emit(v, K.TRIGGER_PENDING, "main", detail="trigger vram_degradation: 6500 > 6000", **VRAM)
    clock.now += 3
    emit(v, K.TRIGGER_FIRED, "main", detail="trigger vram_degradation: fired", **VRAM)
    clock.now += 1
    emit(v, K.ROLLBACK_STARTED, "main", detail="trigger vram_degradation: fired")
    clock.now += 30
    frame = v.text()
    assert re.search(r"FIRING\s+4\.0s", frame), frame  # not 34s: the rollback stopped it
    emit(v, K.ROLLBACK_COMPLETED, "main", detail="trigger vram_degradation: fired")
    v.finish("phase 3 rolled_back: trigger vram_degradation: fired")
    header_then = v.text().splitlines()[0]
    clock.now += 600
    frame = v.text()
    assert re.search(r"FIRING\s+4\.0s", frame), frame
    assert frame.splitlines()[0] == header_then  # the run's timer stopped at the outcome
    assert "34.0s" not in frame and "10m" not in frame


def test_pass_fail_values_show_as_pass_and_fail() -> None:
    v, clock, lines = view(live=False)
    emit(v, K.RUN_STARTED, "main")
    health = {"trigger": "health_failure", "metric": "agent_health", "threshold": None,
              "baseline": None}
    emit(v, K.TRIGGER_PENDING, "main", detail="trigger health_failure: failing",
         **dict(health, value=0.0))
    frame = v.text()
    assert re.search(r"health_failure\s+main\s+fail\s", frame), frame
    emit(v, K.TRIGGER_RESET, "main", detail="ok", **dict(health, value=1.0))
    assert re.search(r"health_failure\s+main\s+pass\s", v.text())
    assert lines == ["  trigger health_failure pending on main: fail",
                     "  trigger health_failure back to ok on main: pass"]


def test_the_outcome_line_wraps_instead_of_being_cut() -> None:
    v, clock, _ = view(live=False)
    emit(v, K.RUN_STARTED, "main")
    why = ("step deploy failed on main: command 'systemctl restart agent' exited 5: "
           "Job for agent.service failed because the control process exited with error "
           "code (log: .migrate/runs/r1/deploy/main.log)")
    v.finish(f"phase 3 rolled_back: {why}")
    frame = v.text(width=80)
    assert all(len(line) <= 80 for line in frame.splitlines())
    flat = " ".join(line.strip() for line in frame.split("outcome:", 1)[1].splitlines())
    assert "(log: .migrate/runs/r1/deploy/main.log)" in flat.replace("/ ", "/"), frame
    assert "…" not in frame


def test_status_lines_show_pass_fail_metrics_as_pass_and_fail() -> None:
    from orchestrator.reporting.views import _trigger_line

    row = {"trigger": "health_failure", "status": "firing", "value": 0.0, "threshold": None,
           "baseline": None, "breaching_since": None}
    assert "firing   fail" in _trigger_line(dict(row, kind="pass/fail"))
    assert "ok       pass" in _trigger_line(dict(row, status="ok", value=1.0))  # kind unknown
    assert "1250 vs limit 1200" in _trigger_line(dict(row, kind="number", value=1250.0,
                                                      threshold=1200.0))
