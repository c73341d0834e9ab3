"""The Xid event waiter through fakes at the pynvml boundary: in-process (a fake module
whose `nvmlEventSetWait` blocks like NVML's) and through the real remote probe script
(a real `python3` process with a fake `pynvml` on its path, run by a real
CommandRunner), plus the real no-GPU machine for the missing-NVML error."""

from __future__ import annotations

import queue
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator._exceptions import NvmlUnavailableError
from orchestrator.config.inventory import Host
from orchestrator.metrics.sources.nvml_events import XidEvent, XidWaiter, XidWatch
from orchestrator.runners.local import LocalCommandRunner

LOCAL = Host("main", {"ansible_connection": "local"})
REMOTE = Host("pc2", {"ansible_host": "192.0.2.20"})


class FakeNvmlError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


class FakeNvml:
    """pynvml's event calls, blocking in nvmlEventSetWait as NVML does, fed by the test."""

    NVMLError = FakeNvmlError
    NVML_ERROR_TIMEOUT = 10
    nvmlEventTypeXidCriticalError = 8

    def __init__(self, gpus: int = 1, init_error: int | None = None) -> None:
        self.events: queue.Queue[tuple[int, int]] = queue.Queue()
        self.gpus = gpus
        self.init_error = init_error
        self.registered: list[tuple[str, int]] = []
        self.calls: list[str] = []

    def put(self, gpu: int, xid: int) -> None:
        self.events.put((gpu, xid))

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise FakeNvmlError(self.init_error)
        self.calls.append("init")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return self.gpus

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        if i >= self.gpus:
            raise FakeNvmlError(2)
        return f"gpu{i}"

    def nvmlDeviceGetIndex(self, handle: str) -> int:
        return int(handle[3:])

    def nvmlEventSetCreate(self) -> str:
        return "set"

    def nvmlEventSetFree(self, s: str) -> None:
        self.calls.append("free")

    def nvmlDeviceRegisterEvents(self, handle: str, kind: int, s: str) -> None:
        self.registered.append((handle, kind))

    def nvmlEventSetWait(self, s: str, timeout_ms: int) -> Any:
        try:
            gpu, xid = self.events.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            raise FakeNvmlError(self.NVML_ERROR_TIMEOUT) from None
        return SimpleNamespace(device=f"gpu{gpu}", eventType=8, eventData=xid)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[float, XidEvent]] = []
        self.got = threading.Event()

    def __call__(self, event: XidEvent) -> None:
        self.events.append((time.perf_counter(), event))
        self.got.set()

    def wait(self, count: int, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            assert time.monotonic() < deadline, f"only {len(self.events)} of {count} events"
            time.sleep(0.005)


def test_an_xid_event_reaches_the_callback_within_100ms() -> None:
    fake = FakeNvml()
    seen = Recorder()
    with XidWaiter(LOCAL, seen, module=fake) as waiter:
        assert fake.registered == [("gpu0", 8)]
        for i, xid in enumerate((79, 48, 13)):
            sent = time.perf_counter()
            fake.put(0, xid)
            seen.wait(i + 1)
            at, event = seen.events[i]
            assert at - sent < 0.1
            assert (event.host, event.gpu, event.xid, event.count) == ("main", 0, xid, i + 1)
        assert waiter.count(0) == 3 and waiter.count(1) == 0
        assert seen.events[0][1].describe() == "Xid 79 on GPU 0 of main"
    assert fake.calls[-2:] == ["free", "shutdown"]


def test_several_gpus_are_told_apart_and_close_is_prompt() -> None:
    fake = FakeNvml(gpus=3)
    seen = Recorder()
    waiter = XidWaiter(LOCAL, seen, module=fake, gpus=None)  # None: every GPU
    waiter.start()
    assert [h for h, _ in fake.registered] == ["gpu0", "gpu1", "gpu2"]
    fake.put(2, 79)
    fake.put(1, 31)
    seen.wait(2)
    assert [(e.gpu, e.xid) for _, e in seen.events] == [(2, 79), (1, 31)]
    started = time.monotonic()
    waiter.close()
    assert time.monotonic() - started < 1


def test_a_failing_callback_does_not_stop_the_waiter() -> None:
    fake = FakeNvml()
    lines: list[str] = []
    calls: list[XidEvent] = []

    def callback(event: XidEvent) -> None:
        calls.append(event)
        if len(calls) == 1:
            raise RuntimeError("boom")

    with XidWaiter(LOCAL, callback, module=fake, log=lines.append) as waiter:
        fake.put(0, 79)
        fake.put(0, 79)
        deadline = time.monotonic() + 5
        while waiter.count(0) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert len(calls) == 2 and len(lines) == 1 and "boom" in lines[0]


def test_missing_nvml_is_a_clear_error_in_process() -> None:
    with pytest.raises(NvmlUnavailableError, match=r"^main: NVML is not available"):
        XidWaiter(LOCAL, Recorder(), module=FakeNvml(init_error=12)).start()
    # and the real pynvml on this machine, which has no NVIDIA driver
    with pytest.raises(NvmlUnavailableError, match=r"^main: NVML is not available"):
        XidWaiter(LOCAL, Recorder()).start()


def test_a_gpu_that_cannot_report_events_is_a_clear_error() -> None:
    fake = FakeNvml(gpus=1)
    with pytest.raises(NvmlUnavailableError, match="GPU 3 cannot report Xid events"):
        XidWaiter(LOCAL, Recorder(), module=fake, gpus=(3,)).start()
    assert fake.calls[-1] == "shutdown"


# --- the remote probe: a real process, a fake pynvml module ----------------------------
FAKE_PYNVML = '''
"""A file-fed stand-in for pynvml: each file in EVENTS_DIR named <gpu>-<n>.xid holding
an Xid number is one event; nvmlEventSetWait blocks until one appears or time is up."""
import os, time
from types import SimpleNamespace
EVENTS_DIR = {events!r}
NVML_ERROR_TIMEOUT = 10
nvmlEventTypeXidCriticalError = 8
class NVMLError(Exception):
    def __init__(self, value):
        super().__init__("NVML error %d" % value); self.value = value
def nvmlInit():
    if os.path.exists(os.path.join(EVENTS_DIR, "no-driver")):
        raise NVMLError(12)
def nvmlDeviceGetCount(): return 2
def nvmlDeviceGetHandleByIndex(i): return "gpu%d" % i
def nvmlDeviceGetIndex(h): return int(h[3:])
def nvmlEventSetCreate(): return "set"
def nvmlDeviceRegisterEvents(h, kind, s): pass
def nvmlEventSetWait(s, ms):
    deadline = time.monotonic() + ms / 1000.0
    while True:
        for name in sorted(os.listdir(EVENTS_DIR)):
            if name.endswith(".xid"):
                path = os.path.join(EVENTS_DIR, name)
                xid = int(open(path).read()); os.unlink(path)
                return SimpleNamespace(device="gpu" + name.split("-")[0], eventData=xid)
        if time.monotonic() > deadline:
            raise NVMLError(NVML_ERROR_TIMEOUT)
        time.sleep(0.002)
'''


def fake_remote(tmp_path: Path) -> tuple[Path, str]:
    lib = tmp_path / "fakelib"
    events = tmp_path / "events"
    lib.mkdir()
    events.mkdir()
    (lib / "pynvml.py").write_text(textwrap.dedent(FAKE_PYNVML.format(events=str(events))))
    return events, f"PYTHONPATH={lib} {sys.executable}"


def put_event(events: Path, gpu: int, n: int, xid: int) -> float:
    tmp = events / f"{gpu}-{n}.tmp"
    tmp.write_text(str(xid))
    sent = time.perf_counter()
    tmp.rename(events / f"{gpu}-{n}.xid")
    return sent


def test_a_remote_host_is_watched_by_one_long_lived_probe(tmp_path: Path) -> None:
    events, python = fake_remote(tmp_path)
    seen = Recorder()
    waiter = XidWaiter(REMOTE, seen, gpus=(0, 1), commands=LocalCommandRunner(),
                       python=python, wait_ms=50)
    with waiter:
        for i, (gpu, xid) in enumerate([(1, 79), (0, 48), (1, 79)]):
            sent = put_event(events, gpu, i, xid)
            seen.wait(i + 1)
            assert seen.events[i][0] - sent < 0.1
        assert [(e.host, e.gpu, e.xid) for _, e in seen.events] == [
            ("pc2", 1, 79), ("pc2", 0, 48), ("pc2", 1, 79)]
        assert waiter.count(1) == 2 and waiter.count(0) == 1
    started = time.monotonic()
    waiter.close()
    assert time.monotonic() - started < 1


def test_a_remote_host_without_nvml_is_a_clear_error(tmp_path: Path) -> None:
    events, python = fake_remote(tmp_path)
    (events / "no-driver").write_text("")
    waiter = XidWaiter(REMOTE, Recorder(), commands=LocalCommandRunner(), python=python)
    with pytest.raises(NvmlUnavailableError, match=r"^pc2: NVML unavailable: NVML error 12"):
        waiter.start()
    # the real pynvml in a real python3 on this machine without a driver
    real = XidWaiter(REMOTE, Recorder(), commands=LocalCommandRunner(), python=sys.executable)
    with pytest.raises(NvmlUnavailableError, match=r"^pc2: NVML unavailable: "):
        real.start()
    with pytest.raises(NvmlUnavailableError, match="no way to reach"):
        XidWaiter(REMOTE, Recorder()).start()


def test_a_probe_that_dies_is_restarted(tmp_path: Path) -> None:
    import os
    import signal

    events, python = fake_remote(tmp_path)
    lines: list[str] = []
    seen = Recorder()
    pid_file = tmp_path / "probe.pid"
    # the probe's shell records its pid so the test can kill it like a dropped session
    waiter = XidWaiter(REMOTE, seen, commands=LocalCommandRunner(), wait_ms=50,
                       python=f"echo $$ > {pid_file}; exec env {python}", log=lines.append)
    with waiter:
        put_event(events, 0, 0, 79)
        seen.wait(1)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not any("restarting" in line for line in lines):
            assert time.monotonic() < deadline, lines
            time.sleep(0.05)
        # the event waits in the fake driver's queue until the probe restarted after its
        # backoff reads it: no sleep needed to let the backoff pass first
        put_event(events, 0, 1, 48)
        seen.wait(2, timeout=10)
        assert waiter.count(0) == 2


def test_xid_watch_starts_every_host_and_stops_them_all() -> None:
    fakes = FakeNvml()
    seen = Recorder()
    local2 = Host("main2", {"ansible_connection": "local"})
    with XidWatch([LOCAL, local2], seen, module=fakes) as watch:
        fakes.put(0, 79)
        seen.wait(1)
        assert watch.count("main") + watch.count("main2") == 1


def test_an_xid_event_fires_gpu_operation_failure_in_the_monitor_within_100ms(
        tmp_path: Path) -> None:
    """The waiter wired into the trigger monitor: the event folds the `increase: 0` trigger
    at once, not at the next poll (the poll interval here is a minute)."""
    from orchestrator.config.project import load_project
    from orchestrator.core.bus import Fire, RunBus
    from orchestrator.core.clock import SystemClock
    from orchestrator.core.events import Firing
    from orchestrator.monitor.trigger_monitor import TriggerMonitor
    from orchestrator.state.journal import Journal
    from orchestrator.state.recorder import JournalRecorder
    from tests.support.projects import make_project

    proj = make_project(tmp_path, "name: xid\ninventory: inventory/hosts.yml\npoll_interval: 60s\n"
                        "metrics:\n  xid: {source: nvml, field: xid_errors}\n"
                        "triggers:\n  gpu_operation_failure: {metric: xid, increase: 0}\n")
    proj.phase(1, "p", "phase: 1\nsteps:\n  - id: w\n    wait: 1s\n")
    project, inventory = load_project(proj.root)
    journal = Journal(project.state_dir / "state.db")
    fake = FakeNvml()
    monitor = TriggerMonitor(project, inventory, journal, SystemClock(), LocalCommandRunner(),
                             nvml=fake)
    fires: list[tuple[float, Firing]] = []
    got = threading.Event()
    bus = RunBus("run-1")

    def on_fire(f: Firing) -> None:
        fires.append((time.perf_counter(), f))
        got.set()

    def hear() -> None:  # the run's side of the bus: woken by a post, drains it
        while True:
            bus.wait(5)
            for msg in bus.drain():
                if isinstance(msg, Fire):
                    on_fire(msg.firing)
                    return

    listener = threading.Thread(target=hear, daemon=True)
    listener.start()
    monitor.start(bus, project.phases[1], [], False, JournalRecorder(journal))
    try:
        monitor.watch_more(inventory.resolve(["main"]))  # the wave joins: its waiter starts
        deadline = time.monotonic() + 5
        while not fake.registered and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fake.registered == [("gpu0", 8)]
        sent = time.perf_counter()
        fake.put(0, 79)
        assert got.wait(2), "the Xid never fired the trigger"
        assert fires[0][0] - sent < 0.1
        assert fires[0][1].trigger == "gpu_operation_failure" and fires[0][1].host == "main"
    finally:
        monitor.stop()
    assert "free" in fake.calls  # the waiter was closed with the monitor
    fired = [e for e in journal.events() if e.kind == "trigger_fired"]
    assert fired and fired[0].payload["trigger"] == "gpu_operation_failure"
