"""A thread that dies ends its run as a failure that names it, never a traceback, however
the thread was started (docs/architecture.md, core/supervision.py).

`spawn`ed workers carry their run's context and report to its bus (the dead trigger
monitor: tests/engine/test_every_run_ends.py). The threads below do not: ours that
run on a fan-out pool's thread (a local command's output pump, an SSH keepalive, a
node's stream), a library's, and a worker `spawn`ed from a pool thread. Their deaths
reach the running run through the hook the app's Supervisor installs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config.inventory import Host
from orchestrator.core.clock import CancelToken
from orchestrator.core.outcomes import RunOutcome
from orchestrator.core.states import PhaseState
from orchestrator.core.supervision import Supervisor, spawn
from orchestrator.engine.lifecycle import RunLifecycle
from orchestrator.runners.base import CommandRequest, Result
from orchestrator.runners.local import LocalCommandRunner
from tests.support.fake_runners import Recorder
from tests.support.lifecycles import lifecycle, run


@pytest.fixture
def hook() -> Iterator[None]:
    """threading.excepthook as it was before the test (a Supervisor replaces it)."""
    saved = threading.excepthook
    yield
    threading.excepthook = saved


def die() -> None:
    raise RuntimeError("NVML Shared Library Not Found")


def dying_on(start: str, host: str = "h00") -> Recorder:
    """Fake runners whose `do one` on `host` starts a thread that dies as `start` says,
    waits for it, and succeeds."""
    def answer(req: CommandRequest, cancel: CancelToken) -> Result:
        if req.command == "do one" and req.host.name == host:
            if start == "thread":
                worker = threading.Thread(target=die, name=f"output-{host}", daemon=True)
                worker.start()
            else:
                worker = spawn(f"probe-{host}", die)
            worker.join()
        return Result(req.host.name, True, "ok")

    return Recorder(answer=answer)


def supervised(lc: RunLifecycle) -> RunLifecycle:
    lc.parts.supervisor.install()  # as App.engine does
    return lc


@pytest.mark.parametrize("start", ["thread", "spawn"])
def test_a_thread_outside_any_run_context_that_dies_stops_the_run_naming_it(
        tmp_path: Path, hook: None, start: str, capfd: pytest.CaptureFixture[str]) -> None:
    lc, _, journal, _ = lifecycle(tmp_path, hosts=("h00", "h01"), rec=dying_on(start))
    report = run(supervised(lc), names=("h00", "h01"))
    name = "output-h00" if start == "thread" else "probe-h00"
    assert report.outcome is RunOutcome.ROLLED_BACK, report
    assert name in (report.reason or "") and "NVML" in (report.reason or ""), report.reason
    assert journal.phase_record("h00", 1).state is PhaseState.ROLLED_BACK
    assert journal.holders() == []
    assert "Traceback" not in capfd.readouterr().err


class Channel:
    """A run as the Supervisor sees it: what it was told."""

    def __init__(self) -> None:
        self.deaths: list[tuple[str, str]] = []

    def worker_died(self, name: str, exc: BaseException) -> None:
        self.deaths.append((name, str(exc)))

    def journal_lost(self, reason: str) -> None:
        raise AssertionError(reason)


def test_a_local_commands_output_pump_that_dies_is_named_for_its_host(
        tmp_path: Path, hook: None, capfd: pytest.CaptureFixture[str]) -> None:
    def broken_view(host: str, line: str) -> None:
        raise OSError(28, "No space left on device")

    supervisor, channel = Supervisor(), Channel()
    supervisor.install()
    with supervisor.running(channel):
        # the run's token is what cancels the command once the run hears of the death;
        # here nobody cancels it, so the command ends on its own
        LocalCommandRunner().run_command(
            CommandRequest(Host("main", {"ansible_connection": "local"}), "echo one",
                           tmp_path, timeout=30, on_output=broken_view), CancelToken())
    assert channel.deaths == [("output-main", "[Errno 28] No space left on device")]
    assert "Traceback" not in capfd.readouterr().err
