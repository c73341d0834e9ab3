"""The run lifecycle with fake runners, a fake monitor and a fake clock: waves, the failure
budget, and the rollback, resume and watch paths that all begin a rollback in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core.bus import Fire, RunBus, Subscribers
from orchestrator.core.clock import CancelToken, FakeClock
from orchestrator.core.events import EventKind, Firing, RunEvent
from orchestrator.core.outcomes import RunOutcome
from orchestrator.core.states import PhaseState, PhaseTransition, StepState, StepTransition
from orchestrator.engine.checksums import file_checksums
from orchestrator.engine.lifecycle import RunLifecycle
from orchestrator.engine.phase_run import FleetPlan
from orchestrator.engine.rollback import Reason, RollbackCause
from orchestrator.engine.waves import FailureBudget, plan_waves
from orchestrator.runners.base import CommandRequest, Result
from orchestrator.state.journal import Journal
from orchestrator.state.recorder import JournalRecorder
from tests.support.fake_runners import Recorder
from tests.support.lifecycles import (
    HOSTS,
    Answer,
    answering,
    failed,
    lifecycle,
    run,
    unreachable,
)
from tests.support.projects import make_project


class FiringMonitor:
    """Fires `trigger` on `culprit` as soon as that host's wave starts being watched."""

    def __init__(self, culprit: str | None = None, trigger: str = "vram") -> None:
        self.culprit, self.trigger = culprit, trigger
        self.watched: list[list[str]] = []
        self.forgotten: list[str] = []
        self.bus: RunBus | None = None

    def start(self, bus: RunBus, phase: object, hosts: list, dry_run: bool,  # type: ignore[type-arg]
              recorder: object = None, samples: object = None) -> None:
        self.bus = bus

    def watch_more(self, hosts: list) -> None:  # type: ignore[type-arg]
        names = [h.name for h in hosts]
        self.watched.append(names)
        if self.culprit in names:
            assert self.bus is not None
            self.bus.post(Fire(Firing(self.trigger, f"trigger {self.trigger}: 130 > 120",
                                      self.culprit)))

    def forget(self, hosts: list[str]) -> None:
        self.forgotten += hosts

    def record_only(self) -> None:
        return None

    def stop(self) -> None:
        return None


def timed(at: list[float], clock: FakeClock, answer: Answer) -> Answer:
    """`answer`, noting in `at` the fake clock's time of each call."""
    def noted(req: CommandRequest) -> Result:
        at.append(clock.monotonic())
        return answer(req)
    return noted


def states(journal: Journal, names: tuple[str, ...] = HOSTS) -> dict[str, str]:
    return {h: journal.phase_record(h, 1).state.value for h in names}


def test_plan_waves_are_cumulative_shares_in_inventory_order(tmp_path: Path) -> None:
    lc, *_ = lifecycle(tmp_path)
    hosts = lc.inventory.resolve(list(HOSTS))
    waves = plan_waves((1, "50%", "100%"), hosts)
    assert [[h.name for h in w] for w in waves] == [["h00"], list(HOSTS[1:5]), list(HOSTS[5:])]
    assert [len(w) for w in plan_waves((1, "10%", "30%"), hosts)] == [1, 2, 7]  # last is rest
    assert FailureBudget.of("20%", 10).allowed == 2 and FailureBudget.of(3, 10).allowed == 3


def test_waves_run_in_order_and_record_their_hosts(tmp_path: Path) -> None:
    lc, rec, journal, seen = lifecycle(tmp_path)
    report = run(lc, FleetPlan((1, "50%", "100%")))
    assert report.outcome is RunOutcome.COMPLETED
    assert set(states(journal).values()) == {"completed"}
    started = [e for e in seen if e.kind is EventKind.WAVE_STARTED]
    assert [(e.payload["wave"], e.payload["hosts"]) for e in started] == [
        (1, ["h00"]), (2, list(HOSTS[1:5])), (3, list(HOSTS[5:]))]
    assert len([e for e in seen if e.kind is EventKind.WAVE_COMPLETED]) == 3
    # wave 2 started only after the canary completed: its commands come after h00's
    assert rec.log.index("cmd h00 do two") < rec.log.index("cmd h01 do one")


def test_a_fire_in_wave_two_rolls_back_that_wave_keeps_the_canary_and_never_starts_wave_three(
        tmp_path: Path) -> None:
    monitor = FiringMonitor(culprit="h03")
    lc, rec, journal, seen = lifecycle(tmp_path, monitor=monitor)
    report = run(lc, FleetPlan((1, "50%", "100%")))
    assert report.outcome is RunOutcome.ROLLED_BACK
    got = states(journal)
    assert got["h00"] == "completed"
    assert all(got[h] == "rolled_back" for h in HOSTS[1:5])
    assert all(got[h] == "pending" for h in HOSTS[5:])
    assert not any(f"cmd {h}" in line for h in HOSTS[5:] for line in rec.log)
    exhausted = [e for e in seen if e.kind is EventKind.BUDGET_EXHAUSTED]
    assert len(exhausted) == 1 and exhausted[0].payload["failed"] == ["h03"]
    started = [e for e in seen if e.kind is EventKind.ROLLBACK_STARTED]
    assert {e.host for e in started} == set(HOSTS[1:5])
    assert {e.payload["origin"] for e in started} == {"trigger"}
    assert started[0].payload["trigger"] == "vram" and started[0].payload["culprit"] == "h03"


def test_on_fire_run_rolls_back_every_host_of_the_run(tmp_path: Path) -> None:
    lc, _, journal, _ = lifecycle(tmp_path, monitor=FiringMonitor(culprit="h03"))
    report = run(lc, FleetPlan((1, "50%", "100%"), 0, "run"))
    assert report.outcome is RunOutcome.ROLLED_BACK
    got = states(journal)
    assert all(got[h] == "rolled_back" for h in HOSTS[:5])
    assert all(got[h] == "pending" for h in HOSTS[5:])


def test_a_failure_within_budget_rolls_back_that_host_alone_and_the_run_goes_on(
        tmp_path: Path) -> None:
    rec = answering({("h02", "do two"): failed}, log=True)
    lc, _, journal, seen = lifecycle(tmp_path, rec=rec)
    report = run(lc, FleetPlan((1, "50%", "100%"), 1))
    assert report.outcome is RunOutcome.ROLLED_BACK  # exit 1: something was rolled back
    got = states(journal)
    assert got["h02"] == "rolled_back"
    assert all(got[h] == "completed" for h in HOSTS if h != "h02")
    assert rec.log.index("cmd h02 undo two") < rec.log.index("cmd h05 do one")
    assert not [e for e in seen if e.kind is EventKind.BUDGET_EXHAUSTED]


def test_second_failure_past_the_budget_stops_the_run(tmp_path: Path) -> None:
    rec = answering({("h01", "do one"): failed, ("h06", "do one"): failed}, log=True)
    lc, _, journal, seen = lifecycle(tmp_path, rec=rec)
    report = run(lc, FleetPlan((1, "50%", "100%"), 1))
    assert report.outcome is RunOutcome.ROLLED_BACK
    got = states(journal)
    assert got["h00"] == "completed" and got["h01"] == "rolled_back"
    assert all(got[h] == "completed" for h in HOSTS[2:5])  # wave 2 finished within budget
    assert all(got[h] == "rolled_back" for h in HOSTS[5:])  # wave 3 hit the second failure
    assert len([e for e in seen if e.kind is EventKind.BUDGET_EXHAUSTED]) == 1


def test_undo_of_a_lost_host_retries_on_the_clock_then_fails_naming_host_and_step(
        tmp_path: Path) -> None:
    undo_attempts: list[str] = []

    def undo_one(req: CommandRequest) -> Result:
        undo_attempts.append(req.host.name)
        return unreachable(req)

    rec = answering({"do two": failed, "undo one": undo_one})
    lc, _, journal, _ = lifecycle(tmp_path, hosts=("main",), rec=rec)
    clock = lc.parts.clock
    before = clock.monotonic()
    report = run(lc, names=("main",))
    assert report.outcome is RunOutcome.ROLLBACK_FAILED
    # the first try, then retries after 10 s and 15 s; the next (22.5 s later) could not
    # start before the 30 s deadline, so none is made: the verdict comes at 25 s
    assert undo_attempts == ["main"] * 3
    assert 25 <= clock.monotonic() - before < 26
    assert report.needs_human == ["main: step one (command: undo one: host unreachable)"]


def test_undo_retries_stop_at_the_deadline_whatever_their_count(tmp_path: Path) -> None:
    clock = FakeClock()
    attempts: list[float] = []
    rec = answering({"do two": failed, "undo one": timed(attempts, clock, unreachable)})
    # many retries: the deadline is what stops them
    lc, _, _, _ = lifecycle(tmp_path, hosts=("main",), rec=rec, clock=clock,
                            undo_attempts=50, undo_retry_delay=2.0)
    report = run(lc, names=("main",))
    assert report.outcome is RunOutcome.ROLLBACK_FAILED
    assert 3 < len(attempts) < 50
    assert attempts[-1] - attempts[0] <= lc.parts.undo_deadline  # none starts past it


def test_the_undo_deadline_counts_from_the_start_of_the_rollback(tmp_path: Path) -> None:
    """SPEC section 2, "Connections": a slow undo of step two (20 s on the fake clock)
    spends the deadline too, so the lost host's undo of step one is retried only until
    30 s after the rollback began, not 30 s after its own first failure."""
    clock = FakeClock()
    attempts: list[float] = []
    rollback_began: list[float] = []

    def slow_undo_two(req: CommandRequest) -> Result:
        clock.advance(20.0)
        return Result(req.host.name, True, "ok")

    rec = answering({"do two": failed,
                     "undo two": timed(rollback_began, clock, slow_undo_two),
                     "undo one": timed(attempts, clock, unreachable)})
    # many retries: the deadline is what stops them
    lc, _, _, _ = lifecycle(tmp_path, hosts=("main",), rec=rec, clock=clock,
                            undo_attempts=50, undo_retry_delay=2.0)
    report = run(lc, names=("main",))
    assert report.outcome is RunOutcome.ROLLBACK_FAILED
    assert attempts[0] - rollback_began[0] == 20.0 and len(attempts) >= 2
    assert attempts[-1] - rollback_began[0] <= lc.parts.undo_deadline  # none starts past it
    assert attempts[-1] - attempts[0] < 10.0  # the slow undo spent 20 s of the 30


def test_past_the_deadline_a_lost_host_s_next_undo_is_not_started(tmp_path: Path) -> None:
    clock = FakeClock()
    tried: list[str] = []

    def lost_undo(req: CommandRequest) -> Result:
        tried.append(req.command)
        clock.advance(40.0)  # each attempt outlasts the deadline on its own
        return unreachable(req)

    rec = answering({"do two": failed, "undo one": lost_undo, "undo two": lost_undo})
    lc, _, journal, _ = lifecycle(tmp_path, hosts=("main",), rec=rec, clock=clock)
    report = run(lc, names=("main",))
    assert report.outcome is RunOutcome.ROLLBACK_FAILED
    assert tried == ["undo two"]  # one attempt, then nothing more on the lost host
    assert any("not attempted" in n and "step one" in n for n in report.needs_human)


def test_a_failing_undo_is_not_retried(tmp_path: Path) -> None:
    rec = Recorder(fail_commands={"do two", "undo one"})
    lc, _, _, _ = lifecycle(tmp_path, hosts=("main",), rec=rec)
    report = run(lc, names=("main",))
    assert report.outcome is RunOutcome.ROLLBACK_FAILED
    assert rec.log.count("cmd main undo one") == 1


def test_operator_rollback_path_records_its_own_run_and_ends_it(tmp_path: Path) -> None:
    lc, rec, journal, seen = lifecycle(tmp_path, hosts=("main",))
    first = run(lc, names=("main",))
    assert first.outcome is RunOutcome.COMPLETED
    report = lc.rollback(lc.project.phases[1], lc.inventory.resolve(["main"]), "migrate rollback")
    assert report.outcome is RunOutcome.ROLLED_BACK
    assert rec.log[-2:] == ["cmd main undo two", "cmd main undo one"]
    info = journal.run_info(report.run_id)
    assert info is not None and info["kind"] == "rollback" and info["outcome"] == "rolled_back"
    started = [e for e in seen if e.kind is EventKind.ROLLBACK_STARTED]
    assert started[-1].payload["origin"] == "operator"
    assert journal.holders() == []


def dead_run(lc: RunLifecycle, journal: Journal) -> tuple[JournalRecorder, str]:
    """A run of phase 1 on main whose step `one` succeeded (the test adds what came next)."""
    recorder = JournalRecorder(journal)
    run_id = "dead-run"
    journal.create_run(run_id, 1, ["main"], "migrate phase 1", "phase", False,
                       file_checksums(lc.project, lc.project.phases[1]))
    recorder.move_phase(PhaseTransition.START, run_id, "main", 1)
    recorder.move_step(StepTransition.START, run_id, "main", 1, "one", 0)
    recorder.move_step(StepTransition.SUCCEED, run_id, "main", 1, "one", 0)
    return recorder, run_id


def died(journal: Journal, run_id: str) -> None:
    """Its process died: the lock names a pid that is gone; the next look reaps it."""
    with journal.transaction() as db:
        db.execute("INSERT INTO locks (host, run_id, pid, pid_start, machine, command, since) VALUES ('main', ?, 999999, 1, ?, 'migrate phase 1', 'x')",
                   (run_id, __import__("socket").gethostname()))
    journal.reap()


def test_resume_of_a_run_that_died_rolling_back_finishes_and_ends_it(tmp_path: Path) -> None:
    lc, rec, journal, seen = lifecycle(tmp_path, hosts=("main",))
    recorder, run_id = dead_run(lc, journal)
    recorder.move_phase(PhaseTransition.ROLL_BACK, run_id, "main", 1, "trigger vram: 130 > 120")
    told = Subscribers()
    heard: list[RunEvent] = []
    told.subscribe(heard.append)
    reaper = Journal(journal.path, on_interrupted=told.run_interrupted)  # type: ignore[arg-type]
    died(reaper, run_id)
    reaper.close()
    assert [e.kind for e in heard] == [EventKind.RUN_INTERRUPTED]  # the hook heard the reaper
    report = lc.resume(lc.inventory.resolve(["main"]), False, CancelToken(), "migrate resume")
    assert report.outcome is RunOutcome.ROLLED_BACK
    assert rec.log == ["cmd main undo one"]
    assert journal.phase_record("main", 1).state is PhaseState.ROLLED_BACK
    info = journal.run_info(run_id)
    assert info is not None and info["outcome"] == "rolled_back"  # the run is ended
    resumed = [e for e in seen if e.kind is EventKind.ROLLBACK_STARTED]
    assert resumed[-1].payload["origin"] == "resume"


def test_resume_continues_forward_from_the_step_in_flight(tmp_path: Path) -> None:
    lc, rec, journal, _ = lifecycle(tmp_path, hosts=("main",))
    recorder, run_id = dead_run(lc, journal)
    recorder.move_step(StepTransition.START, run_id, "main", 1, "two", 1)
    died(journal, run_id)
    report = lc.resume(lc.inventory.resolve(["main"]), False, CancelToken(), "migrate resume")
    assert report.outcome is RunOutcome.COMPLETED
    assert rec.log == ["cmd main do two"]
    assert journal.step_state(run_id, "main", "two") is StepState.SUCCEEDED
    assert journal.phase_record("main", 1).state is PhaseState.COMPLETED


def test_watch_path_rolls_back_the_latest_completed_phase_with_origin_watch(
        tmp_path: Path) -> None:
    lc, rec, journal, seen = lifecycle(tmp_path, hosts=("main",))
    assert run(lc, names=("main",)).outcome is RunOutcome.COMPLETED
    host = lc.inventory.resolve(["main"])[0]
    report = lc.watch_rollback(host, Reason(RollbackCause.WATCH, "trigger vram: 130 > 120 (watch)",
                                            trigger="vram", host="main"), "watch-run")
    assert report.outcome is RunOutcome.ROLLED_BACK
    assert journal.phase_record("main", 1).state is PhaseState.ROLLED_BACK
    started = [e for e in seen if e.kind is EventKind.ROLLBACK_STARTED][-1]
    assert started.payload == {"origin": "watch", "trigger": "vram", "culprit": "main"}
    assert journal.holders() == []


@pytest.mark.parametrize("body", [
    "phase: 1\nwaves: [1, lots]\nsteps:\n  - id: w\n    wait: 1s\n",
    "phase: 1\nmax_failed: -1\nsteps:\n  - id: w\n    wait: 1s\n",
    "phase: 1\non_fire: everything\nsteps:\n  - id: w\n    wait: 1s\n",
    "phase: 1\nrequires: [{phase: 2, observed: soon}]\nsteps:\n  - id: w\n    wait: 1s\n",
])
def test_bad_fleet_keys_are_file_line_errors(tmp_path: Path, body: str) -> None:
    proj = make_project(tmp_path)
    proj.phase(1, "p", body)
    res = proj.migrate("validate")
    assert res.returncode == 2, res.stderr
    assert "phases/1-p.yaml:" in res.stderr and "Traceback" not in res.stderr
