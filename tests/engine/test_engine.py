"""The engine's logic with fake runners and a fake clock: order, reversal, retries, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator._exceptions import LockHeldError, RefusedError
from orchestrator.config.project import load_project
from orchestrator.core.bus import Fire, RunBus
from orchestrator.core.clock import CancelToken, FakeClock
from orchestrator.core.events import Firing
from orchestrator.core.outcomes import RunOutcome, RunReport
from orchestrator.core.states import PhaseState, StepState
from orchestrator.engine.context import AutoYes, EngineParts, NoTty, NullMonitor
from orchestrator.engine.lifecycle import RunLifecycle
from orchestrator.runners.base import CommandRequest, Result
from orchestrator.state.journal import Journal
from tests.support.fake_runners import Recorder
from tests.support.projects import make_project

THREE_STEPS = """\
phase: 1
name: Three
steps:
  - id: one
    playbook: playbooks/touch.yml
    rollback: rollback/untouch.yml
  - id: two
    command: 'do two'
    rollback_command: 'undo two'
  - id: three
    playbook: playbooks/fail.yml
    rollback: rollback/untouch.yml
"""


class Run:
    """`migrate phase N` through the lifecycle, as the CLI does it, with fake runners."""

    def __init__(self, lifecycle: RunLifecycle, number: int, hosts: list) -> None:  # type: ignore[type-arg]
        self.lifecycle, self.number, self.hosts = lifecycle, number, hosts
        self.cancel = CancelToken()
        self.run_id: str | None = None
        self.parts = lifecycle.parts

    def execute(self) -> RunReport:
        report = self.lifecycle.run_phase(self.lifecycle.project.phases[self.number], self.hosts,
                                          "migrate phase", self.cancel)
        self.run_id = report.run_id
        return report


def build(tmp_path: Path, body: str, hosts: tuple[str, ...] = ("main",), rec: Recorder | None = None,
          prompter: object = None, number: int = 1, extra_phases: dict[int, str] | None = None,
          monitor: object = None) -> tuple[Run, Recorder, Journal]:
    proj = make_project(tmp_path)
    proj.phase(number, "p", body)
    for n, text in (extra_phases or {}).items():
        proj.phase(n, f"p{n}", text)
    project, inventory = load_project(proj.root)
    rec = rec or Recorder()
    journal = Journal(project.state_dir / "state.db")
    parts = EngineParts(journal=journal, playbooks=rec.playbooks, commands=rec.commands,
                        clock=FakeClock(), prompter=prompter or NoTty(),  # type: ignore[arg-type]
                        undo_retry_delay=0, monitor=monitor or NullMonitor())  # type: ignore[arg-type]
    run = Run(RunLifecycle(project, inventory, parts), number, inventory.resolve(list(hosts)))
    return run, rec, journal


def test_failed_step_rolls_back_in_reverse_including_the_failed_one(tmp_path: Path) -> None:
    run, rec, journal = build(tmp_path, THREE_STEPS, rec=Recorder(fail_playbooks={"fail.yml"}))
    report = run.execute()
    assert report.outcome is RunOutcome.ROLLED_BACK
    assert rec.log == [
        "touch.yml main one", "cmd main do two", "fail.yml main three",
        "untouch.yml main three", "cmd main undo two", "untouch.yml main one",
    ]
    assert journal.phase_record("main", 1).state is PhaseState.ROLLED_BACK
    assert "step three failed on main" in (journal.phase_record("main", 1).reason or "")
    states = {s: st for s, _, st in journal.steps_of(run.run_id, "main")}
    assert states == {"one": StepState.ROLLED_BACK, "two": StepState.ROLLED_BACK,
                      "three": StepState.ROLLED_BACK}


def test_success_completes_and_records_every_transition_in_order(tmp_path: Path) -> None:
    run, rec, journal = build(tmp_path, THREE_STEPS)
    report = run.execute()
    assert report.outcome is RunOutcome.COMPLETED
    kinds = [(e.step, e.kind) for e in journal.events(run_id=run.run_id)]
    assert kinds == [
        (None, "run_started"),
        ("one", "step_started"), ("one", "step_succeeded"),
        ("two", "step_started"), ("two", "step_succeeded"),
        ("three", "step_started"), ("three", "step_succeeded"),
        (None, "phase_completed"),
    ]
    stamps = [e.at for e in journal.events(run_id=run.run_id)]
    assert stamps == sorted(stamps)
    assert all(s.endswith("Z") and len(s) == len("2026-11-23T23:59:00.123Z") for s in stamps)
    assert journal.holders() == []  # the lock is released


def test_rollback_failure_names_the_step_and_still_runs_the_other_undos(tmp_path: Path) -> None:
    rec = Recorder(fail_playbooks={"fail.yml"}, fail_commands={"undo two"})
    run, rec, journal = build(tmp_path, THREE_STEPS, rec=rec)
    report = run.execute()
    assert report.outcome is RunOutcome.ROLLBACK_FAILED
    assert report.needs_human and "step two" in report.needs_human[0]
    assert rec.log[-1] == "untouch.yml main one"  # the undo after the failed one still ran
    assert journal.phase_record("main", 1).state is PhaseState.ROLLBACK_FAILED
    states = {s: st for s, _, st in journal.steps_of(run.run_id, "main")}
    assert states["two"] is StepState.ROLLBACK_FAILED
    assert states["one"] is StepState.ROLLED_BACK


def test_requires_refuses_before_anything_runs(tmp_path: Path) -> None:
    body = "phase: 2\nrequires: [1]\nsteps:\n  - id: a\n    command: x\n    rollback: none\n"
    run, rec, journal = build(tmp_path, body, number=2,
                              extra_phases={1: "phase: 1\nsteps:\n  - id: w\n    wait: 1s\n"})
    with pytest.raises(RefusedError, match="requires phase 1 completed, and it is pending"):
        run.execute()
    assert rec.log == []
    assert journal.events() == []


def test_failure_on_one_host_rolls_back_every_host(tmp_path: Path) -> None:
    class HostFail(Recorder):
        def on_command(self, req: CommandRequest, cancel: CancelToken) -> Result:
            super().on_command(req, cancel)
            ok = not (req.host.name == "pc2" and req.command == "do two")
            return Result(req.host.name, ok, "ok" if ok else "exit 1")

    run, rec, journal = build(tmp_path, THREE_STEPS, hosts=("main", "pc2"), rec=HostFail())
    report = run.execute()
    assert report.outcome is RunOutcome.ROLLED_BACK
    assert "fail.yml main three" not in rec.log  # step three never started
    for host in ("main", "pc2"):
        assert f"cmd {host} undo two" in rec.log
        assert f"untouch.yml {host} one" in rec.log
        assert journal.phase_record(host, 1).state is PhaseState.ROLLED_BACK


def test_retries_rerun_a_failed_step(tmp_path: Path) -> None:
    attempts: list[int] = []

    class Flaky(Recorder):
        def on_command(self, req: CommandRequest, cancel: CancelToken) -> Result:
            attempts.append(1)
            return Result(req.host.name, len(attempts) >= 3, "flaky")

    body = "phase: 1\nsteps:\n  - id: a\n    command: x\n    rollback: none\n    retries: 2\n"
    run, _, journal = build(tmp_path, body, rec=Flaky())
    assert run.execute().outcome is RunOutcome.COMPLETED
    assert len(attempts) == 3
    kinds = [e.kind for e in journal.events(run_id=run.run_id)]
    assert kinds.count("step_retry") == 2


def test_pause_without_tty_fails_and_yes_passes(tmp_path: Path) -> None:
    body = "phase: 1\nsteps:\n  - id: gate\n    pause: look at the dashboard\n"
    run, _, journal = build(tmp_path, body)
    report = run.execute()
    assert report.outcome is RunOutcome.ROLLED_BACK
    assert "no terminal to ask and --yes not given" in (report.reason or "")
    run2, _, _ = build(tmp_path / "b", body, prompter=AutoYes())
    assert run2.execute().outcome is RunOutcome.COMPLETED


def test_step_hosts_skip_other_hosts(tmp_path: Path) -> None:
    body = ("phase: 1\nsteps:\n  - id: a\n    command: on-pc2\n    rollback: none\n"
            "    hosts: [pc2]\n")
    run, rec, journal = build(tmp_path, body, hosts=("main", "pc2"))
    assert run.execute().outcome is RunOutcome.COMPLETED
    assert rec.log == ["cmd pc2 on-pc2"]
    assert journal.step_state(run.run_id, "main", "a") is StepState.SKIPPED


def test_serial_runs_the_whole_phase_host_by_host(tmp_path: Path) -> None:
    body = ("phase: 1\nserial: 1\nsteps:\n  - id: a\n    command: a\n    rollback: none\n"
            "  - id: b\n    command: b\n    rollback: none\n")
    run, rec, _ = build(tmp_path, body, hosts=("main", "pc2"))
    assert run.execute().outcome is RunOutcome.COMPLETED
    assert rec.log == ["cmd main a", "cmd main b", "cmd pc2 a", "cmd pc2 b"]


def test_held_host_is_refused_naming_the_holder(tmp_path: Path) -> None:
    run, rec, journal = build(tmp_path, THREE_STEPS)
    journal.acquire(["main"], "other-run", "migrate phase 9 --host main")
    with pytest.raises(LockHeldError, match=r"pid \d+ on .*'migrate phase 9 --host main'"):
        run.execute()
    assert rec.log == []


def test_dead_holder_lock_is_taken_over_and_its_run_marked_interrupted(tmp_path: Path) -> None:
    run, _, journal = build(tmp_path, THREE_STEPS)
    with journal.transaction() as db:
        db.execute("INSERT INTO locks (host, run_id, pid, pid_start, machine, command, since) VALUES ('main','dead-run',999999,1,?,'migrate phase 1','x')",
                   (__import__("socket").gethostname(),))
        db.execute("INSERT INTO phase_states (host, phase, state, run_id, updated_at, reason) VALUES ('main',1,'running','dead-run','x',NULL)")
    assert journal.reap() == ["dead-run"]
    assert journal.phase_record("main", 1).state is PhaseState.INTERRUPTED
    with pytest.raises(RefusedError, match="interrupted"):
        run.execute()


def test_wait_is_cut_short_by_cancel(tmp_path: Path) -> None:
    body = "phase: 1\nsteps:\n  - id: w\n    wait: 1h\n"
    run, _, _ = build(tmp_path, body)
    run.cancel.cancel("trigger x fired")
    report = run.execute()
    assert report.outcome is RunOutcome.ROLLED_BACK
    assert report.reason == "trigger x fired"


class PausingMonitor:
    """A monitor whose `action: pause` trigger has fired before the first step."""

    def start(self, bus: RunBus, phase: object, hosts: object, dry_run: bool,
              recorder: object = None, samples: object = None) -> None:
        bus.post(Fire(Firing("gpu_util_high", "trigger gpu_util_high: 97 > 95", "main",
                             "pause")))

    def watch_more(self, hosts: object) -> None:
        return None

    def forget(self, hosts: object) -> None:
        return None

    def record_only(self) -> None:
        return None

    def stop(self) -> None:
        return None


class Answer:
    def __init__(self, yes: bool) -> None:
        self.yes = yes
        self.asked: list[str] = []

    def confirm(self, message: str) -> bool | None:
        self.asked.append(message)
        return self.yes


@pytest.mark.parametrize("yes", [True, False])
def test_pause_action_asks_the_operator_before_the_next_step(tmp_path: Path, yes: bool) -> None:
    answer = Answer(yes)
    run, rec, journal = build(tmp_path, THREE_STEPS, prompter=answer, monitor=PausingMonitor())
    report = run.execute()
    assert answer.asked and "gpu_util_high" in answer.asked[0]
    if yes:
        assert report.outcome is RunOutcome.COMPLETED
    else:
        assert report.outcome is RunOutcome.ROLLED_BACK
        assert rec.log == []  # asked before the first step: nothing ran, nothing to undo
        assert "operator chose rollback" in (report.reason or "")
