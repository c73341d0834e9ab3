"""Defects found by reading the code (issue 10), each with a test that failed before its fix:
the remote NVML Xid counter, the shared probe-log directory, the notifier's second worker,
and webhook secrets in log lines. (Two first reads on one SSH connection: in
test_runners_contract.py.)"""

from __future__ import annotations

import os
import signal
import stat
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import orchestrator.metrics.sources.tcp as tcp
from orchestrator.config.inventory import Host
from orchestrator.core.model import Metric, MetricKind, Notifier
from orchestrator.metrics.sources.base import ReadContext
from orchestrator.metrics.sources.nvml import NvmlSource
from orchestrator.notify.sender import Notifications, redact
from orchestrator.runners.local import LocalCommandRunner

# --- remote xid_errors --------------------------------------------------------------------
#: pynvml as NVML behaves: an event set only queues events that happen after it registered
FAKE_PYNVML = textwrap.dedent("""\
    import os, time
    NVML_ERROR_TIMEOUT = 10
    nvmlEventTypeXidCriticalError = 8
    class NVMLError(Exception):
        def __init__(self, value):
            self.value = value
    def _total():
        try:
            with open(os.environ["FAKE_XID_EVENTS"]) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0
    class _Set:
        seen = 0
    def nvmlInit(): pass
    def nvmlDeviceGetHandleByIndex(i): return i
    def nvmlEventSetCreate(): return _Set()
    def nvmlDeviceRegisterEvents(h, kind, s): s.seen = _total()
    def nvmlEventSetWait(s, ms):
        deadline = time.time() + ms / 1000.0
        while True:
            if _total() > s.seen:
                s.seen += 1
                return object()
            if time.time() >= deadline:
                raise NVMLError(NVML_ERROR_TIMEOUT)
            time.sleep(0.02)
    """)


def _xid_read(source: NvmlSource, host: Host) -> float | None:
    metric = Metric("xid", "nvml", MetricKind.NUMBER, {"field": "xid_errors"}, "skip", 120,
                    None, 1)
    ctx = ReadContext(host=host, hostvars={host.name: host.vars}, phase=1, run_id="r",
                      elapsed=0, timeout=5, commands=LocalCommandRunner())
    return source.read(metric, ctx).value


def test_remote_xid_errors_counts_events_between_polls(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: the remote probe registered a new event set at every poll and drained it with
    a zero timeout, so it never saw an Xid and `increase:` could never fire. The probe runs
    here through the local shell (as it would through SSH) with a fake pynvml."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "pynvml.py").write_text(FAKE_PYNVML)
    events = tmp_path / "xid-events"
    events.write_text("0")
    remote_tmp = tmp_path / "remote-tmp"
    remote_tmp.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(fake))
    monkeypatch.setenv("FAKE_XID_EVENTS", str(events))
    monkeypatch.setenv("TMPDIR", str(remote_tmp))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    host = Host("gpu1", {"ansible_host": "10.0.0.9"})  # not local: the remote probe path
    source = NvmlSource()
    state = remote_tmp / f"migrate-{os.getuid()}"
    try:
        assert _xid_read(source, host) == 0  # the first read starts watching
        deadline = time.monotonic() + 10
        while not (state / "xid-0.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # registered
        events.write_text("2")  # two Xid errors between polls
        deadline = time.monotonic() + 10
        value = _xid_read(source, host)
        while value != 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            value = _xid_read(source, host)
        assert value == 2
        events.write_text("3")
        deadline = time.monotonic() + 10
        value = _xid_read(source, host)
        while value != 3 and time.monotonic() < deadline:
            time.sleep(0.2)
            value = _xid_read(source, host)
        assert value == 3  # a counter: increase: can fire on it
        assert stat.S_IMODE(state.stat().st_mode) == 0o700  # its state is private too
    finally:
        pid_file = state / "xid-0.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


# --- probe logs ---------------------------------------------------------------------------
@pytest.fixture
def fresh_probe_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(tcp, "_probe_dir", None)
    return tmp_path


def test_probe_logs_go_to_a_private_directory_of_this_user(fresh_probe_dir: Path) -> None:
    """Defect: probe logs went to a fixed shared /tmp/migrate-probes, which another user can
    own or fill with symlinks."""
    shared = fresh_probe_dir / "migrate-probes"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    victim = fresh_probe_dir / "victim"
    victim.write_text("mine\n")
    (shared / "main.log").symlink_to(victim)  # planted by someone else
    d = tcp.probe_dir()
    assert d != shared
    st = os.lstat(d)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert str(os.getuid()) in d.name
    assert tcp.probe_dir() == d  # one per process


def test_a_planted_per_user_name_is_not_trusted(fresh_probe_dir: Path) -> None:
    target = fresh_probe_dir / "elsewhere"
    target.mkdir(mode=0o700)
    planted = fresh_probe_dir / f"migrate-probes-{os.getuid()}"
    planted.symlink_to(target)
    d = tcp.probe_dir()
    assert d != planted and not d.is_symlink()
    assert stat.S_IMODE(os.lstat(d).st_mode) == 0o700


def test_a_world_writable_per_user_dir_is_not_trusted(fresh_probe_dir: Path) -> None:
    loose = fresh_probe_dir / f"migrate-probes-{os.getuid()}"
    loose.mkdir()
    os.chmod(loose, 0o777)
    assert tcp.probe_dir() != loose


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a directory someone else owns")
def test_a_per_user_dir_owned_by_someone_else_is_not_trusted(fresh_probe_dir: Path) -> None:
    theirs = fresh_probe_dir / f"migrate-probes-{os.getuid()}"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    assert tcp.probe_dir() != theirs


# --- notifier -----------------------------------------------------------------------------
def test_racing_first_sends_start_one_worker_and_close_stops_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: the engine and the monitor sending at once could start two worker threads;
    close() stopped only one."""
    real_thread = threading.Thread
    started: list[threading.Thread] = []

    class SlowStart(real_thread):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            time.sleep(0.05)  # widen the window between "is there a worker?" and "start one"
            super().__init__(*args, **kwargs)

        def start(self) -> None:
            started.append(self)
            super().start()

    got: list[str] = []
    n = Notifications((Notifier("http://hook.example/x", ("trigger_fired",)),), "p",
                      post=lambda url, payload: got.append(payload["text"]))
    monkeypatch.setattr(threading, "Thread", SlowStart)
    senders = [real_thread(target=n.send, args=("trigger_fired", f"m{i}")) for i in range(4)]
    for s in senders:
        s.start()
    for s in senders:
        s.join(5)
    monkeypatch.setattr(threading, "Thread", real_thread)
    assert len(started) == 1
    n.close(timeout=5)
    assert not any(t.is_alive() for t in started)
    assert sorted(got) == [f"[migrate p] m{i}" for i in range(4)]
    n.send("trigger_fired", "after close")  # a later send still leaves
    n.close(timeout=5)
    assert got[-1] == "[migrate p] after close"


def test_a_failed_webhook_is_logged_without_its_secret() -> None:
    url = "https://hooks.example.org/services/T000/B000/S3CR3TT0K3N?token=abc123"
    lines: list[str] = []

    def refuse(u: str, payload: dict[str, Any]) -> None:
        raise OSError(f"cannot POST to {u}")

    n = Notifications((Notifier(url, ("rollback_started",)),), "p", post=refuse, attempts=2,
                      max_wait=0.01, log=lines.append)
    n.send("rollback_started", "rolling back")
    n.close(timeout=5)
    assert lines and "hooks.example.org" in lines[0]
    assert "S3CR3TT0K3N" not in lines[0] and "abc123" not in lines[0]
    assert redact(url) == "https://hooks.example.org/…"
    assert redact("not a url") == "<webhook>"
