"""One runner contract: every runner says why a host failed with a `FailureKind`, honours
the cancel token and the timeout, and (over SSH) gives up on a silent peer.

Real processes where that is cheap (the local shell, ansible-playbook on a refused port,
the remote wrapper run by /bin/sh); fakes at the paramiko boundary for the connection
pool and the keepalive watchdog. The SSH runner against real sshd hosts, including a
cut link, is in test_lost_host.py.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config.inventory import Host
from orchestrator.core.clock import CancelToken
from orchestrator.runners.ansible import (
    ANSIBLE_DEFAULT_SSH_ARGS,
    AnsiblePlaybookRunner,
    _host_result,
    ssh_environment,
)
from orchestrator.runners.base import (
    CommandRequest,
    FailureKind,
    GroupResult,
    PlaybookRequest,
    Result,
    SshSettings,
)
from orchestrator.runners.fake import FakeCommandRunner, FakePlaybookRunner
from orchestrator.runners.local import LocalCommandRunner
from orchestrator.runners.ssh import (
    ConnectionPool,
    Keepalive,
    SshCommandRunner,
    _connect_failure,
    connection_kwargs,
    remote_command,
)
from tests.support.projects import running

LOCAL = Host("here", {"ansible_connection": "local"})


# --- Result and FailureKind ---------------------------------------------------------------
def test_failure_is_none_exactly_when_ok_and_cancelled_agrees() -> None:
    assert Result("h", True, "ok").failure is None
    assert Result("h", False, "exit 1").failure is FailureKind.EXIT  # older callers
    legacy = Result("h", False, "cut short", cancelled=True)
    assert legacy.failure is FailureKind.CANCELLED and legacy.cancelled
    lost = Result.failed("h", FailureKind.UNREACHABLE, "host unreachable")
    assert not lost.ok and not lost.cancelled and lost.failure.retryable
    assert Result.failed("h", FailureKind.CANCELLED, "x").cancelled
    assert FailureKind.TIMEOUT.retryable
    assert not FailureKind.EXIT.retryable and not FailureKind.CANCELLED.retryable
    assert not hasattr(GroupResult(), "succeeded")  # dead code, gone


def test_fakes_fill_the_failure_kind() -> None:
    req = CommandRequest(host=LOCAL, command="x", artifacts_dir=Path("/nonexistent"))
    assert FakeCommandRunner(lambda r, c: False).run_command(req, CancelToken()).failure \
        is FailureKind.EXIT
    preq = PlaybookRequest(playbook=Path("p.yml"), hosts=(LOCAL,), inventory=Path("i"),
                           extravars={}, artifacts_dir=Path("/nonexistent"))
    group = FakePlaybookRunner(lambda r, c: False).run_playbook(preq, CancelToken())
    assert group.results["here"].failure is FailureKind.EXIT


# --- local shell -------------------------------------------------------------------------
def _local(tmp_path: Path, command: str, timeout: float | None = None,
           cancel: CancelToken | None = None) -> Result:
    req = CommandRequest(host=LOCAL, command=command, artifacts_dir=tmp_path / "art",
                         timeout=timeout)
    return LocalCommandRunner().run_command(req, cancel or CancelToken())


def test_local_runner_failure_kinds(tmp_path: Path) -> None:
    assert _local(tmp_path, "true").failure is None
    failed = _local(tmp_path, "echo nope; exit 3")
    assert (failed.failure, failed.exit_code) == (FailureKind.EXIT, 3)
    assert "exited 3: nope" in failed.detail and Path(failed.log).is_file()
    t0 = time.monotonic()
    timed = _local(tmp_path, "sleep 30", timeout=0.5)
    assert timed.failure is FailureKind.TIMEOUT and time.monotonic() - t0 < 5
    cancel = CancelToken()
    threading.Timer(0.3, cancel.cancel, ["trigger x"]).start()
    stopped = _local(tmp_path, "sleep 30", cancel=cancel)
    assert stopped.failure is FailureKind.CANCELLED and stopped.cancelled
    assert stopped.detail.startswith("cancelled: trigger x")


# --- Ansible -----------------------------------------------------------------------------
def test_ansible_recap_maps_to_failure_kinds() -> None:
    def one(name: str, status: str = "failed", **stats: Any) -> Result:
        return _host_result(name, status, 2, stats.get("dark", {}), stats.get("failures", {}),
                            stats.get("processed", {name: 1}), "ssh: connect timed out",
                            "trigger t", 30)

    assert one("a", dark={"a": 1}).failure is FailureKind.UNREACHABLE
    assert "connect timed out" in one("a", dark={"a": 1}).detail
    assert one("a", failures={"a": 2}).failure is FailureKind.EXIT
    assert one("a", failures={"a": 2}).detail == "task failed: 2 task(s) failed"
    assert one("a", status="timeout").failure is FailureKind.TIMEOUT
    assert one("a", status="canceled").failure is FailureKind.CANCELLED
    assert one("a", status="successful").ok


def test_ansible_ssh_environment_keeps_controlpersist_and_adds_keepalives() -> None:
    env = ssh_environment(SshSettings(keepalive=5, keepalive_count=3, connect_timeout=10), {})
    args = env["ANSIBLE_SSH_ARGS"]
    assert args.startswith(ANSIBLE_DEFAULT_SSH_ARGS)  # ControlMaster/ControlPersist stay
    assert "-o ServerAliveInterval=5" in args and "-o ServerAliveCountMax=3" in args
    assert env["ANSIBLE_TIMEOUT"] == "10"
    assert env["ANSIBLE_SSH_CONTROL_PATH_DIR"].endswith("migrate-5x3")
    # the operator's own settings are kept: their ssh args first (OpenSSH takes the first)
    mine = ssh_environment(SshSettings(keepalive=0.5), {"ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
                                                       "ANSIBLE_TIMEOUT": "42",
                                                       "ANSIBLE_SSH_CONTROL_PATH": "/x/%%h"})
    assert mine["ANSIBLE_SSH_ARGS"].startswith("-o ControlMaster=no -o ServerAliveInterval=1")
    assert mine["ANSIBLE_TIMEOUT"] == "42" and "ANSIBLE_SSH_CONTROL_PATH_DIR" not in mine


SSH_PLAY = """\
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.ping:
"""


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("ansible-playbook") is None, reason="needs ansible-core")
def test_real_ansible_ssh_command_line_has_keepalives_and_inventory_args(tmp_path: Path) -> None:
    """What ansible-core's ssh plugin really runs: our keepalives after ControlPersist, the
    inventory's own common args still there (precedence checked on the real thing)."""
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  hosts:\n    refused:\n      ansible_host: 127.0.0.1\n"
                   "      ansible_port: 1\n      ansible_ssh_common_args: '-o LogLevel=ERROR "
                   "-o UserKnownHostsFile=/dev/null'\n")
    (tmp_path / "play.yml").write_text(SSH_PLAY)
    env = dict(os.environ, **ssh_environment(SshSettings(keepalive=2, keepalive_count=4,
                                                         connect_timeout=3)))
    res = subprocess.run(["ansible-playbook", "-vvv", "-i", str(inv), str(tmp_path / "play.yml")],
                         capture_output=True, text=True, env=env, timeout=120)
    exec_lines = [line for line in res.stdout.splitlines() if "SSH: EXEC" in line]
    assert exec_lines, res.stdout[-2000:]
    line = exec_lines[0]
    for option in ("ControlPersist=60s", "ServerAliveInterval=2", "ServerAliveCountMax=4",
                   "ConnectTimeout=3", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR"):
        assert option in line, (option, line)
    assert line.index("ServerAliveInterval=2") < line.index("UserKnownHostsFile=/dev/null")


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("ansible-playbook") is None, reason="needs ansible-core")
def test_ansible_runner_says_unreachable_and_exit(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  hosts:\n"
                   "    refused:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n"
                   "      ansible_ssh_common_args: '-o UserKnownHostsFile=/dev/null'\n"
                   "    here:\n      ansible_connection: local\n"
                   f"      ansible_python_interpreter: {sys.executable}\n")
    play = tmp_path / "play.yml"
    play.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                    "    - ansible.builtin.command: 'false'\n")
    hosts = (Host("refused", {"ansible_host": "127.0.0.1"}),
             Host("here", {"ansible_connection": "local"}))
    out: list[str] = []
    req = PlaybookRequest(playbook=play, hosts=hosts, inventory=inv, extravars={},
                          artifacts_dir=tmp_path / "art", timeout=120,
                          on_output=lambda h, line: out.append(f"{h}: {line}"))
    t0 = time.monotonic()
    group = AnsiblePlaybookRunner(ssh=SshSettings(connect_timeout=3)).run_playbook(
        req, CancelToken())
    assert time.monotonic() - t0 < 60
    assert group.results["refused"].failure is FailureKind.UNREACHABLE, out
    assert group.results["refused"].detail.startswith("host unreachable")
    assert group.results["here"].failure is FailureKind.EXIT


def _long_play(tmp_path: Path, sleep: str) -> tuple[PlaybookRequest, Path]:
    """A one-task play that sleeps `sleep` seconds: each test its own length, so that a test
    looking for its own leftover `sleep` never finds another test's, running on another
    worker at the same time."""
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  hosts:\n    here:\n      ansible_connection: local\n"
                   f"      ansible_python_interpreter: {sys.executable}\n")
    began = tmp_path / "began"
    play = tmp_path / "play.yml"
    play.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                    f"    - ansible.builtin.shell: 'touch {began}; sleep {sleep}'\n"
                    "      name: the long one\n")
    # the runner finds this run's processes by the extravars file on their command line
    req = PlaybookRequest(playbook=play, hosts=(LOCAL,), inventory=inv,
                          extravars={"migrate_step": "long"},
                          artifacts_dir=tmp_path / "art", timeout=None,
                          on_output=lambda h, line: None)
    return req, began


def test_a_cancel_stops_the_playbook_without_waiting_for_ansible_runner_to_poll(
        tmp_path: Path) -> None:
    """ansible-runner asks cancel_callback only when its read loop wakes (here every 60 s);
    the runner kills the play itself the moment the token fires, and says CANCELLED."""
    req, began = _long_play(tmp_path, "120.5")
    cancel = CancelToken()
    box: list[GroupResult] = []
    worker = threading.Thread(target=lambda: box.append(
        AnsiblePlaybookRunner(poll=60).run_playbook(req, cancel)))
    worker.start()
    deadline = time.monotonic() + 90
    while not began.exists() and worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert began.exists(), "the task never started"
    time.sleep(1.5)  # the read loop is now asleep in its 60 s wait
    t0 = time.monotonic()
    cancel.cancel("a trigger fired")
    worker.join(45)
    assert not worker.is_alive() and time.monotonic() - t0 < 30
    result = box[0].results["here"]
    assert result.failure is FailureKind.CANCELLED, result
    assert "a trigger fired" in result.detail and "the long one" in result.detail
    assert running("sleep 120.5") == []


def test_a_step_timeout_stops_the_playbook_without_waiting_for_ansible_runner_to_poll(
        tmp_path: Path) -> None:
    req, began = _long_play(tmp_path, "121.5")
    req = dataclasses.replace(req, timeout=8.0)
    t0 = time.monotonic()
    group = AnsiblePlaybookRunner(poll=60).run_playbook(req, CancelToken())
    assert time.monotonic() - t0 < 40
    assert group.results["here"].failure is FailureKind.TIMEOUT, group.results["here"]
    assert running("sleep 121.5") == []


# --- SSH: the remote wrapper, run by a real /bin/sh ----------------------------------------
def test_remote_wrapper_reports_its_group_and_passes_the_command_untouched() -> None:
    hostile = "printf '%s\\n' \"$(echo a)\" '`b`' '; c'; exit 4"
    res = subprocess.run(["/bin/sh", "-c", remote_command(hostile)], capture_output=True,
                         text=True, start_new_session=True)
    assert res.returncode == 4
    assert res.stdout == "a\n`b`\n; c\n"
    marker, pgid = res.stderr.split()
    assert marker == "@migrate-pgid" and pgid.isdigit()


def test_remote_wrapper_pid_is_the_process_group_sshd_made() -> None:
    """sshd starts a session's shell with setsid(); the wrapper's $$ is then the group of
    everything the command starts, which is what a cancel signals."""
    res = subprocess.run(["/bin/sh", "-c", remote_command("ps -o pgid= -p $$; sleep 0")],
                         capture_output=True, text=True, start_new_session=True)
    assert res.stdout.strip() == res.stderr.split()[1]


def test_connect_settings_come_from_ssh_settings_and_inventory() -> None:
    host = Host("pc2", {"ansible_host": "10.0.0.2", "ansible_port": 2222,
                        "ansible_user": "deploy",
                        "ansible_ssh_common_args": "-o UserKnownHostsFile=/k"})
    kw = connection_kwargs(host, SshSettings(connect_timeout=4))
    assert (kw["host"], kw["port"], kw["user"], kw["connect_timeout"]) == \
        ("10.0.0.2", 2222, "deploy", 4)
    assert kw["connect_kwargs"]["banner_timeout"] == 4
    assert kw["connect_kwargs"]["auth_timeout"] == 4
    assert kw["connect_kwargs"]["_known_hosts"] == "/k"


def test_connect_errors_split_into_unreachable_and_exit() -> None:
    import socket

    import paramiko

    assert _connect_failure(TimeoutError("timed out")) is FailureKind.UNREACHABLE
    assert _connect_failure(ConnectionRefusedError()) is FailureKind.UNREACHABLE
    assert _connect_failure(socket.gaierror("no such host")) is FailureKind.UNREACHABLE
    assert _connect_failure(paramiko.AuthenticationException("no")) is FailureKind.EXIT
    assert _connect_failure(paramiko.SSHException(
        "Server '10.0.0.2' not found in known_hosts")) is FailureKind.EXIT


# --- SSH: pool and keepalive, at the paramiko boundary ------------------------------------
class FakeChannel:
    """A session that prints the wrapper's marker and `ok`, then exits 0."""

    def __init__(self) -> None:
        self.out = [b"ok\n"]
        self.err = [b"@migrate-pgid 4242\n"]
        self.closed = False
        self.eof_received = True
        self.exit_status = 0
        self.command = ""

    def exec_command(self, command: str) -> None:
        self.command = command

    def recv_ready(self) -> bool:
        return bool(self.out)

    def recv(self, n: int) -> bytes:
        return self.out.pop(0)

    def recv_stderr_ready(self) -> bool:
        return bool(self.err)

    def recv_stderr(self, n: int) -> bytes:
        return self.err.pop(0)

    def exit_status_ready(self) -> bool:
        return True

    def recv_exit_status(self) -> int:
        return self.exit_status

    def close(self) -> None:
        self.closed = True


class FakeTransport:
    def __init__(self, answers: bool = True) -> None:
        self.active = True
        self.answers = answers
        self.channels: list[FakeChannel] = []
        self.requests = 0

    def is_active(self) -> bool:
        return self.active

    def open_session(self, timeout: float | None = None) -> FakeChannel:
        chan = FakeChannel()
        self.channels.append(chan)
        return chan

    def global_request(self, kind: str, wait: bool = True) -> None:
        self.requests += 1
        while not self.answers and self.active:
            time.sleep(0.01)

    def close(self) -> None:
        self.active = False


class FakeConnection:
    opened = 0
    lock = threading.Lock()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.transport: FakeTransport | None = None
        self.client = self

    # fabric.Connection's surface that runners touch
    def load_system_host_keys(self) -> None: ...

    def load_host_keys(self, path: str) -> None: ...

    def set_missing_host_key_policy(self, policy: Any) -> None: ...

    def get_transport(self) -> FakeTransport | None:
        return self.transport

    @property
    def is_connected(self) -> bool:
        return self.transport is not None and self.transport.active

    def open(self) -> None:
        if self.is_connected:
            return
        time.sleep(0.2)  # a real handshake takes a while: the window two first reads race in
        with FakeConnection.lock:
            FakeConnection.opened += 1
        self.transport = FakeTransport()

    def run(self, command: str, **kwargs: Any) -> Any:  # fabric's lazily-opening run()
        self.open()
        from types import SimpleNamespace
        kwargs["out_stream"].write("ok\n")
        return SimpleNamespace(exited=0, stdout="ok\n")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def test_two_first_reads_on_one_host_connect_once(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: monitor threads shared one fabric Connection without a lock, so two first
    reads both connected. The pool now opens it under the host's lock."""
    import fabric

    FakeConnection.opened = 0
    monkeypatch.setattr(fabric, "Connection", FakeConnection)
    runner = SshCommandRunner(SshSettings(keepalive=60))
    host = Host("pc2", {"ansible_host": "10.0.0.2"})
    results: list[Result] = []

    def read() -> None:
        req = CommandRequest(host=host, command="echo ok", artifacts_dir=tmp_path / "probes")
        results.append(runner.run_command(req, CancelToken()))

    threads = [threading.Thread(target=read) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    runner.close()
    assert FakeConnection.opened == 1
    assert [r.ok for r in results] == [True] * 6
    assert all(r.stdout == "ok\n" for r in results)  # the wrapper's marker is not output


def test_a_dead_connection_is_replaced_on_the_next_request(tmp_path: Path) -> None:
    made: list[FakeConnection] = []

    def connect(host: Host, ssh: SshSettings) -> FakeConnection:
        conn = FakeConnection()
        conn.transport = FakeTransport()
        made.append(conn)
        return conn

    pool = ConnectionPool(SshSettings(keepalive=60), connect)
    host = Host("pc2", {})
    first = pool.get(host)
    assert pool.get(host) is first
    first.transport.active = False  # type: ignore[union-attr]
    second = pool.get(host)
    assert second is not first and len(made) == 2
    pool.close()


def test_keepalive_closes_a_transport_whose_peer_is_silent() -> None:
    silent = FakeTransport(answers=False)
    t0 = time.monotonic()
    watchdog = Keepalive(silent, SshSettings(keepalive=0.1, keepalive_count=3), "pc2")
    while silent.active and time.monotonic() - t0 < 5:
        time.sleep(0.01)
    took = time.monotonic() - t0
    assert not silent.active and watchdog.lost
    assert 0.3 <= took < 1.0  # interval x (count + 1) at most
    talking = FakeTransport(answers=True)
    alive = Keepalive(talking, SshSettings(keepalive=0.05, keepalive_count=2), "main")
    time.sleep(0.5)
    alive.stop()
    assert talking.active and not alive.lost and talking.requests >= 3


def test_ssh_runner_reports_the_keepalive_loss(tmp_path: Path) -> None:
    """A command whose connection the keepalive closed is UNREACHABLE and says why."""
    class Hanging(FakeChannel):
        def __init__(self, transport: FakeTransport) -> None:
            super().__init__()
            self.transport = transport
            self.out, self.exit_status = [], -1

        def exit_status_ready(self) -> bool:
            return not self.transport.active

        def fileno(self) -> int:
            return self._r

    class SilentTransport(FakeTransport):
        def open_session(self, timeout: float | None = None) -> FakeChannel:
            chan = Hanging(self)
            chan._r, w = os.pipe()  # never readable: select() just times out
            self.fds = (chan._r, w)
            return chan

    conn = FakeConnection()
    conn.transport = SilentTransport(answers=False)
    runner = SshCommandRunner(SshSettings(keepalive=0.1, keepalive_count=2),
                              connect=lambda h, s: conn)
    t0 = time.monotonic()
    res = runner.run_command(CommandRequest(host=Host("pc2", {"ansible_host": "10.9.9.9"}),
                                            command="sleep 60", artifacts_dir=tmp_path),
                             CancelToken())
    assert res.failure is FailureKind.UNREACHABLE, res
    assert "no answer to 2 keepalives" in res.detail and time.monotonic() - t0 < 2
    for fd in conn.transport.fds:  # type: ignore[attr-defined]
        os.close(fd)


def test_quoting_of_the_kill_uses_only_the_reported_number() -> None:
    from orchestrator.runners.ssh import _KILL, _PGID

    assert _PGID.match("4242") and not _PGID.match("1; rm -rf /") and not _PGID.match("")
    script = _KILL.format(pid="4242")
    assert shlex.split(f"sh -c {shlex.quote(script)}")[2] == script
