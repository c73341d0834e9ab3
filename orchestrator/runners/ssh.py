"""Commands on a remote host over SSH, with settings from the inventory and `ssh:`.

Host keys are checked against known_hosts (fabric would accept unknown keys;
we refuse them) unless the inventory sets `migrate_ssh_insecure: true` for a lab.

Connections: fabric opens them (inventory user, port, key; connect, banner and auth
timeouts from `ssh.connect_timeout`), and `ConnectionPool` keeps one per host for the
life of the runner. The pool opens a host's connection under that host's own lock, so
monitor threads whose first reads race connect once, not twice; a connection found
dead is replaced on the next request.

Lost hosts: paramiko's own keepalive (`Transport.set_keepalive`) sends packets but never
waits for an answer, so it cannot notice a silent peer. Each pooled connection has a
`Keepalive` thread instead: every `ssh.keepalive` seconds it sends a
`keepalive@openssh.com` global request with want-reply (as OpenSSH's ServerAliveInterval
does) and, when no answer has come after keepalive x keepalive_count seconds, closes the
transport. Every command on it then ends at once as UNREACHABLE, instead of waiting for
TCP to give up (about 15 minutes).

Commands, cancel and timeout: a command runs on a session channel of its own (no pty,
so stdout and stderr stay apart and bytes are not rewritten) as
`exec /bin/sh -c WRAPPER`. sshd starts every session in a new session and process
group, so the wrapper's pid is the process group of everything the command starts; the
wrapper reports it on stderr (a marker line that is not shown) and then execs the
command itself. When the cancel token fires or the request's timeout runs out, the
runner opens a second channel on the same connection and sends the group SIGTERM, then
SIGKILL after 3 s (as the local runner does), then closes the first channel. Closing the
channel alone would not be enough: without a pty nothing tells the remote process.
"""

from __future__ import annotations

import codecs
import re
import select
import shlex
import threading
import time
from collections import deque
from collections.abc import Callable, MutableSequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from orchestrator._exceptions import RunnerError
from orchestrator.config.inventory import Host
from orchestrator.core.clock import CancelToken
from orchestrator.runners.base import CommandRequest, FailureKind, Result, SshSettings

#: first stderr line of every command: the remote process group to signal on cancel
_MARKER = "@migrate-pgid "
_WRAPPER = f'echo "{_MARKER}$$" >&2; exec /bin/sh -c "$1"'
#: stop the remote group: TERM, up to 3 s to go, then KILL (pid, or the group if it is one)
_KILL = ("p={pid}; kill -TERM -$p 2>/dev/null || kill -TERM $p 2>/dev/null; i=0; "
         "while [ $i -lt 30 ] && {{ kill -0 -$p || kill -0 $p; }} 2>/dev/null; "
         "do sleep 0.1; i=$((i+1)); done; "
         "kill -KILL -$p 2>/dev/null; kill -KILL $p 2>/dev/null; true")
_PGID = re.compile(r"^\d+$")


def remote_command(command: str) -> str:
    """What the session execs: the wrapper under /bin/sh, the command as its $1."""
    return " ".join(["exec", "/bin/sh", "-c", shlex.quote(_WRAPPER), "migrate",
                     shlex.quote(command)])


def connection_kwargs(host: Host, ssh: SshSettings | None = None) -> dict[str, Any]:
    """fabric.Connection arguments from ansible_* variables and the `ssh:` settings."""
    ssh = ssh or SshSettings()
    v = host.vars
    kwargs: dict[str, Any] = {"host": host.address, "connect_timeout": ssh.connect_timeout}
    if "ansible_port" in v:
        kwargs["port"] = int(v["ansible_port"])
    if "ansible_user" in v:
        kwargs["user"] = str(v["ansible_user"])
    connect: dict[str, Any] = {"allow_agent": False, "banner_timeout": ssh.connect_timeout,
                               "auth_timeout": ssh.connect_timeout}
    if "ansible_ssh_private_key_file" in v:
        connect["key_filename"] = [str(v["ansible_ssh_private_key_file"])]
    known = _option(v.get("ansible_ssh_common_args", ""), "UserKnownHostsFile")
    if known:
        connect["_known_hosts"] = known
    kwargs["connect_kwargs"] = connect
    return kwargs


def _option(args: str, name: str) -> str | None:
    words = shlex.split(str(args))
    for i, word in enumerate(words):
        if word == "-o" and i + 1 < len(words) and words[i + 1].startswith(f"{name}="):
            return words[i + 1].split("=", 1)[1]
        if word.startswith(f"-o{name}="):
            return word.split("=", 1)[1]
    return None


def fabric_connect(host: Host, ssh: SshSettings) -> Any:
    """An open fabric Connection to `host` (raises what paramiko raises when it can't)."""
    import paramiko
    from fabric import Config, Connection

    kwargs = connection_kwargs(host, ssh)
    known = kwargs["connect_kwargs"].pop("_known_hosts", None)
    conn = Connection(config=Config(overrides={"run": {"hide": True, "warn": True}}), **kwargs)
    client = conn.client
    client.load_system_host_keys()
    if known:
        try:
            client.load_host_keys(known)
        except OSError as exc:
            raise RunnerError(f"{host.name}: cannot read known_hosts {known}") from exc
    insecure = bool(host.vars.get("migrate_ssh_insecure"))
    client.set_missing_host_key_policy(
        paramiko.AutoAddPolicy() if insecure else paramiko.RejectPolicy())
    conn.open()
    return conn


def _transport(conn: Any) -> Any:
    return getattr(conn, "transport", None) or conn.client.get_transport()


def _alive(conn: Any) -> bool:
    transport = _transport(conn)
    return transport is not None and bool(transport.is_active())


class Keepalive:
    """Closes a transport whose peer leaves `keepalive_count` keepalives unanswered."""

    def __init__(self, transport: Any, ssh: SshSettings, name: str) -> None:
        self.transport = transport
        self.interval = max(0.1, ssh.keepalive)
        self.limit = self.interval * max(1, ssh.keepalive_count)
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ssh-keepalive-{name}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.transport.is_active():
                return
            answered = threading.Event()
            threading.Thread(target=self._ask, args=(answered,), daemon=True,
                             name=f"{self._thread.name}-ask").start()
            if not answered.wait(self.limit) and not self._stop.is_set():
                self.lost = True
                self.transport.close()  # every channel on it ends now
                return

    def _ask(self, answered: threading.Event) -> None:
        try:
            self.transport.global_request("keepalive@openssh.com", wait=True)
        except Exception:  # noqa: S110 - a dead transport answers nothing: handled by _run
            pass
        finally:
            answered.set()

    def stop(self) -> None:
        self._stop.set()


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    conn: Any = None
    keepalive: Keepalive | None = None


class ConnectionPool:
    """One open connection per host, shared by every thread; opened under the host's lock."""

    def __init__(self, ssh: SshSettings,
                 connect: Callable[[Host, SshSettings], Any] = fabric_connect) -> None:
        self.ssh = ssh
        self.connect = connect
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self.opened = 0  # connections opened over the pool's life (tests read it)

    def _slot(self, name: str) -> _Slot:
        with self._lock:
            return self._slots.setdefault(name, _Slot())

    def get(self, host: Host) -> Any:
        slot = self._slot(host.name)
        with slot.lock:
            if slot.conn is not None and _alive(slot.conn):
                return slot.conn
            self._close_slot(slot)
            conn = self.connect(host, self.ssh)
            self.opened += 1
            transport = _transport(conn)
            slot.conn = conn
            if transport is not None:
                slot.keepalive = Keepalive(transport, self.ssh, host.name)
            return conn

    def lost(self, host: Host, conn: Any) -> bool:
        """Forget `conn` if it is still the host's (it died); True when its keepalive
        found the peer silent."""
        slot = self._slot(host.name)
        with slot.lock:
            silent = slot.keepalive.lost if slot.keepalive is not None else False
            if slot.conn is conn:
                self._close_slot(slot)
            return silent

    @staticmethod
    def _close_slot(slot: _Slot) -> None:
        if slot.keepalive is not None:
            slot.keepalive.stop()
            slot.keepalive = None
        if slot.conn is not None:
            try:
                slot.conn.close()
            except Exception:  # noqa: S110 - closing a dead connection may fail; it is gone
                pass
            slot.conn = None

    def close(self) -> None:
        with self._lock:
            slots = list(self._slots.values())
            self._slots.clear()
        for slot in slots:
            with slot.lock:
                self._close_slot(slot)


def connect_cancellable(pool: ConnectionPool, host: Host, cancel: CancelToken,
                        thread_prefix: str) -> Any:
    """The pooled connection to `host`, or None when `cancel` fires first. paramiko's
    connect cannot be interrupted, so it runs on a thread of its own (named
    `thread_prefix-HOST`) that is left to end at `connect_timeout`: a deadline or a Ctrl-C
    does not wait for a host that does not answer. The connect's own error is raised here."""
    box: list[tuple[bool, Any]] = []

    def connect() -> None:
        try:
            box.append((True, pool.get(host)))
        except BaseException as exc:  # handed to the caller below
            box.append((False, exc))

    thread = threading.Thread(target=connect, name=f"{thread_prefix}-{host.name}", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.05)
        if thread.is_alive() and cancel.cancelled:
            return None
    ok, value = box[0]
    if not ok:
        raise value
    return value


def _connect_failure(exc: BaseException) -> FailureKind:
    """Refused credentials or host key fail the same way next time; the rest may pass."""
    import paramiko

    if isinstance(exc, paramiko.AuthenticationException | paramiko.BadHostKeyException):
        return FailureKind.EXIT
    if isinstance(exc, paramiko.SSHException) and "known_hosts" in str(exc):
        return FailureKind.EXIT
    return FailureKind.UNREACHABLE


class _Lines:
    """Decodes one byte stream and hands whole lines to the operator and the log."""

    def __init__(self, host: str, request: CommandRequest, log: TextIO,
                 keep: MutableSequence[str],
                 on_marker: Callable[[str], None] | None = None) -> None:
        self.host, self.request, self.log, self.keep = host, request, log, keep
        self.on_marker = on_marker
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.buf = ""
        self.seen = 0

    def feed(self, data: bytes, final: bool = False) -> None:
        self.buf += self.decoder.decode(data, final)
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            self._line(line + "\n")
        if final and self.buf:
            line, self.buf = self.buf, ""
            self._line(line)

    def _line(self, line: str) -> None:
        if self.on_marker is not None:
            # the marker comes before the command's own output, maybe after a login
            # shell's warnings; looked for in the first lines only
            self.seen += 1
            if line.startswith(_MARKER) and _PGID.match(line[len(_MARKER):].strip()):
                self.on_marker(line[len(_MARKER):].strip())
                self.on_marker = None
                return
            if self.seen > 20:
                self.on_marker = None
        self.keep.append(line)
        self.log.write(line)
        self.request.on_output(self.host, line.rstrip("\n"))


class SshCommandRunner:
    def __init__(self, ssh: SshSettings | None = None,
                 connect: Callable[[Host, SshSettings], Any] = fabric_connect) -> None:
        self.ssh = ssh or SshSettings()
        self.pool = ConnectionPool(self.ssh, connect)

    def run_command(self, request: CommandRequest, cancel: CancelToken) -> Result:
        host = request.host.name
        request.artifacts_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log_path = request.artifacts_dir / f"{host}.log"
        try:
            conn = self._connection(request.host, cancel)
        except RunnerError:
            raise
        except Exception as exc:  # paramiko/socket errors: refused, no route, timeout, auth
            return Result.failed(host, _connect_failure(exc), f"ssh to {request.host.address} "
                                 f"failed: {type(exc).__name__}: {exc}")
        if conn is None:
            return Result.failed(host, FailureKind.CANCELLED,
                                 f"cancelled while connecting to {request.host.address}: "
                                 f"{cancel.reason}")
        with open(log_path, "a", encoding="utf-8") as log:
            result = self._exec(conn, request, cancel, log)
        if result.failure is FailureKind.UNREACHABLE:
            silent = self.pool.lost(request.host, conn)
            if silent:
                result = Result.failed(host, FailureKind.UNREACHABLE,
                                       f"lost connection to {request.host.address}: no answer "
                                       f"to {self.ssh.keepalive_count} keepalives in "
                                       f"{self.ssh.lost_after:g}s", result.exit_code,
                                       result.stdout)
        return result

    def _connection(self, host: Host, cancel: CancelToken) -> Any:
        """The host's pooled connection, connecting if need be; None when `cancel` fires
        first (see `connect_cancellable`)."""
        if cancel.cancelled:
            return None
        return connect_cancellable(self.pool, host, cancel, "ssh-connect")

    def _exec(self, conn: Any, request: CommandRequest, cancel: CancelToken,
              log: TextIO) -> Result:
        host, address = request.host.name, request.host.address
        transport = _transport(conn)
        try:
            chan = transport.open_session(timeout=self.ssh.connect_timeout)
        except Exception as exc:  # the connection died since it was pooled
            return Result.failed(host, FailureKind.UNREACHABLE,
                                 f"lost connection to {address}: {type(exc).__name__}: {exc}")
        pgid: list[str] = []
        kept: deque[str] = deque(maxlen=request.keep_lines)
        out = _Lines(host, request, log, kept)
        err = _Lines(host, request, log, kept, on_marker=pgid.append)
        deadline = time.monotonic() + request.timeout if request.timeout else None
        kind: FailureKind | None = None
        why = ""
        try:
            chan.exec_command(remote_command(request.command))
            exited_at: float | None = None
            while True:
                self._pump(chan, out, err)
                if chan.exit_status_ready():
                    # output may trail the exit status until EOF; a background child that
                    # keeps stdout open gets 2 s, as nothing more is waited for
                    exited_at = exited_at or time.monotonic()
                    if chan.closed or chan.eof_received or \
                            time.monotonic() - exited_at > 2.0:
                        self._pump(chan, out, err)
                        break
                if cancel.cancelled:
                    kind, why = FailureKind.CANCELLED, f"cancelled: {cancel.reason}"
                elif deadline is not None and time.monotonic() > deadline:
                    kind, why = FailureKind.TIMEOUT, f"timed out after {request.timeout:g}s"
                if kind is not None:
                    break
                select.select([chan], [], [], 0.1)
            if kind is not None:
                stopped = self._stop_remote(transport, chan, pgid[0] if pgid else None)
                self._pump(chan, out, err)
                if not stopped:
                    why += " (could not stop it on the host: connection lost)"
        except Exception as exc:  # the transport died under us
            if kind is None:
                kind = FailureKind.UNREACHABLE
                why = f"lost connection to {address}: {type(exc).__name__}: {exc}"
        finally:
            out.feed(b"", final=True)
            err.feed(b"", final=True)
            chan.close()
        stdout = "".join(kept)
        if kind is not None:
            return Result.failed(host, kind, why, None, stdout)
        if not transport.is_active() and chan.exit_status == -1:
            return Result.failed(host, FailureKind.UNREACHABLE,
                                 f"lost connection to {address} while the command ran",
                                 None, stdout)
        code = chan.recv_exit_status()
        ok = code == 0
        tail = stdout.strip()[-300:]
        detail = f"exit {code}" + (f": {tail}" if tail and not ok else "")
        return Result(host, ok, detail, code, stdout, failure=None if ok else FailureKind.EXIT)

    @staticmethod
    def _pump(chan: Any, out: _Lines, err: _Lines) -> None:
        while chan.recv_ready():
            out.feed(chan.recv(65536))
        while chan.recv_stderr_ready():
            err.feed(chan.recv_stderr(65536))

    def _stop_remote(self, transport: Any, chan: Any, pgid: str | None) -> bool:
        """Signal the command's process group on the host; True once it has ended there."""
        if pgid is None or not _PGID.match(pgid) or not transport.is_active():
            return False
        try:
            killer = transport.open_session(timeout=self.ssh.connect_timeout)
            killer.exec_command("exec /bin/sh -c " + shlex.quote(_KILL.format(pid=pgid)))
            deadline = time.monotonic() + 10
            while not killer.exit_status_ready() and time.monotonic() < deadline:
                time.sleep(0.05)
            killer.close()
        except Exception:  # the connection died meanwhile: nothing more can be done
            return False
        deadline = time.monotonic() + 5
        while not chan.exit_status_ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        return bool(chan.exit_status_ready())

    def close(self) -> None:
        self.pool.close()


class HostCommandRunner:
    """Local shell for `ansible_connection: local` hosts, SSH for the rest."""

    def __init__(self, ssh: SshSettings | None = None) -> None:
        from orchestrator.runners.local import LocalCommandRunner

        self.local = LocalCommandRunner()
        self.ssh = SshCommandRunner(ssh)

    def run_command(self, request: CommandRequest, cancel: CancelToken) -> Result:
        runner = self.local if request.host.is_local else self.ssh
        return runner.run_command(request, cancel)

    def close(self) -> None:
        self.ssh.close()
