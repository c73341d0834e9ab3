"""Playbook steps on an execution node, with ansible-runner's remote job protocol.

The protocol is the one Ansible's automation controller uses on its execution nodes
(through receptor): `transmit` packs the job (the project's playbooks, the inventory,
extravars, settings) into one stream here, `ansible-runner worker` on the node unpacks
and runs it and streams back job events, its status and its artifacts, and `process`
replays that stream here. All three are ansible-runner's own streaming API
(`ansible_runner.interface.run(streamer=...)`); migrate only carries the bytes, over
one SSH connection per node (the pool of runners/ssh.py, whose `Keepalive` closes a
connection whose peer leaves `ssh.keepalive_count` keepalives unanswered).

On the node nothing of ours is installed: what it runs is POSIX shell
(runners/node_commands.py). The worker runs with `MIGRATE_EXECUTION_JOB=TOKEN` in its
environment and the runner's directory first on PATH, so the Ansible installed beside the
node's ansible-runner runs the playbook, and every process of the job inherits a token
unique to this run of the step. Stopping a step (trigger, Ctrl-C, timeout) runs a second
command on the same connection that SIGKILLs every process whose environment holds the
token, until none is left, and removes the job's directory; then the channel is closed.

A node that stops answering closes the connection (the keepalive bound), the worker's
stream ends early, and every host of the part fails UNREACHABLE, the node named: the
engine treats them as lost hosts (undo retries until `undo_deadline`). On the node, the
job's watchdog stops hearing this side's heartbeats and kills the job, so that a cut
node does not run the step on after its hosts were counted lost.

What the node receives: the project's top-level directories that hold a playbook of a
step or an undo, Ansible's own (roles, collections, library, ..., ansible.cfg), and the
inventory file with its group_vars/host_vars. The playbook runs from the copy of the
project's root (the local runner runs it from the playbook's directory); paths in
inventory variables are the node's.
"""

from __future__ import annotations

import secrets
import shlex
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from orchestrator._exceptions import RefusedError
from orchestrator.config.inventory import Host
from orchestrator.core.clock import CancelToken
from orchestrator.core.model import ExecutionNode
from orchestrator.runners.ansible import PlayEvents, _new_ident, ssh_environment
from orchestrator.runners.base import (
    FailureKind,
    GroupResult,
    PlaybookRequest,
    Result,
    SshSettings,
    last_line,
    quoted,
)
from orchestrator.runners.node_commands import (
    DONE,
    HEARTBEAT,
    MIN_RUNNER_VERSION,
    check_command,
    kill_command,
    parse_version,
    worker_command,
)
from orchestrator.runners.ssh import (
    ConnectionPool,
    _connect_failure,
    _transport,
    connect_cancellable,
)

#: Ansible's own top-level names that a playbook may rely on beside it
ANSIBLE_DIRS = ("roles", "collections", "library", "module_utils", "filter_plugins",
                "lookup_plugins", "callback_plugins", "action_plugins", "files",
                "templates", "group_vars", "host_vars", "ansible.cfg", "requirements.yml")
_IGNORED = shutil.ignore_patterns(".git", ".migrate", "__pycache__", "*.pyc", ".venv")


class NodePlaybookRunner:
    """Runs a playbook request's hosts on one execution node (all of them: the routing
    runner gives it only the hosts whose `migrate_execution_node` names this node)."""

    def __init__(self, node: ExecutionNode, host: Host, pool: ConnectionPool, *,
                 root: Path, shipped: Iterable[str] = (), forks: int = 10,
                 ssh: SshSettings | None = None) -> None:
        self.node = node
        self.host = host  # the node's own inventory host
        self.pool = pool
        self.root = root
        self.shipped = tuple(sorted(set(shipped) | set(ANSIBLE_DIRS)))
        self.forks = forks
        self.ssh = ssh or SshSettings()

    @property
    def label(self) -> str:
        return f"execution node {self.node.name} ({self.host.address})"

    # --- the job ------------------------------------------------------------------------
    def run_playbook(self, request: PlaybookRequest, cancel: CancelToken) -> GroupResult:
        names = [h.name for h in request.hosts]
        private = request.artifacts_dir
        private.mkdir(parents=True, exist_ok=True, mode=0o700)
        ident = _new_ident(private / "artifacts")
        artifact_dir = private / "artifacts" / ident
        log = artifact_dir / "stdout"
        if cancel.cancelled:
            return self._all(names, FailureKind.CANCELLED, f"cancelled: {cancel.reason}")
        try:
            conn = connect_cancellable(self.pool, self.host, cancel, "node-connect")
        except Exception as exc:  # paramiko/socket errors: refused, no route, timeout, auth
            return self._all(names, _connect_failure(exc),
                             f"ssh to {self.label} failed: {type(exc).__name__}: {exc}")
        if conn is None:
            return self._all(names, FailureKind.CANCELLED,
                             f"cancelled while connecting to {self.label}: {cancel.reason}")
        token = secrets.token_hex(12)
        with tempfile.TemporaryDirectory(prefix="migrate-transmit-") as tmp:
            job = self._transmit(request, Path(tmp), ident)
            with open(log, "a", encoding="utf-8") as out:
                events = PlayEvents(request.on_output, log=out,
                                    where=f" [node {self.node.name}]")
                return self._exchange(conn, job, token, request, cancel, events, private,
                                      ident, names, str(log))

    def _transmit(self, request: PlaybookRequest, tmp: Path, ident: str) -> Path:
        """The job's stream, as `ansible-runner transmit` writes it, in a file."""
        import ansible_runner  # heavy: imported only when a playbook step runs

        stage = tmp / "private"
        (stage / "project").mkdir(parents=True)
        playbook = self._ship_project(stage / "project", request.playbook)
        (stage / "inventory").mkdir()
        inventory = stage / "inventory" / request.inventory.name
        shutil.copy2(request.inventory, inventory)
        for extra in ("group_vars", "host_vars"):
            if (request.inventory.parent / extra).is_dir():
                shutil.copytree(request.inventory.parent / extra, stage / "inventory" / extra,
                                ignore=_IGNORED)
        env = {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0",
               "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
               **ssh_environment(self.ssh, {})}
        job = tmp / "job"
        with open(job, "wb") as out:
            ansible_runner.interface.run(
                streamer="transmit", _output=out, private_data_dir=str(stage), ident=ident,
                playbook=str(playbook), inventory=str(inventory),
                limit=",".join(h.name for h in request.hosts), extravars=request.extravars,
                cmdline=f"--forks {self.forks}" + (" --check --diff" if request.check else ""),
                envvars=env, settings={"suppress_ansible_output": True}, quiet=True,
                cancel_callback=lambda: False)
        return job

    def _ship_project(self, project: Path, playbook: Path) -> Path:
        """Copy what the node needs of the project into `project`; the playbook's path
        there."""
        root = self.root.resolve()
        playbook = playbook.resolve()
        try:
            rel = playbook.relative_to(root)
        except ValueError:  # a playbook outside the project: its directory goes alone
            shutil.copytree(playbook.parent, project / "_playbook", ignore=_IGNORED,
                            dirs_exist_ok=True)
            return project / "_playbook" / playbook.name
        for name in {*self.shipped, rel.parts[0]}:
            source = root / name
            if source.is_dir():
                shutil.copytree(source, project / name, ignore=_IGNORED, symlinks=True)
            elif source.is_file():
                shutil.copy2(source, project / name)
        return project / rel

    def _exchange(self, conn: Any, job: Path, token: str, request: PlaybookRequest,
                  cancel: CancelToken, events: PlayEvents, private: Path, ident: str,
                  names: list[str], log: str) -> GroupResult:
        """Send the job to the worker, replay its stream here, stop it when told to."""
        import ansible_runner

        transport = _transport(conn)
        try:
            chan = transport.open_session(timeout=self.ssh.connect_timeout)
            chan.exec_command(worker_command(self.node, token, job.stat().st_size, self.ssh))
        except Exception as exc:  # the connection died since it was pooled
            return self._lost_or(conn, names, f"could not start the worker: "
                                 f"{type(exc).__name__}: {exc}", FailureKind.UNREACHABLE)
        stderr: deque[str] = deque(maxlen=20)
        drain = threading.Thread(target=_drain_stderr, args=(chan, stderr), daemon=True,
                                 name=f"node-{self.node.name}-stderr")
        drain.start()
        status: dict[str, Any] = {}
        beats = _Heartbeats(chan, self.ssh.keepalive, f"node-{self.node.name}-heartbeat")

        def on_status(data: dict[str, Any], runner_config: Any = None) -> None:
            status.update(data)

        def process() -> None:
            try:
                with open(job, "rb") as source:
                    while chunk := source.read(65536):
                        chan.sendall(chunk)
                beats.sent.set()
            except OSError:
                pass  # the worker is gone (a missing runner, a lost node): read why below
            try:
                ansible_runner.interface.run(
                    streamer="process", _input=chan.makefile("rb"), private_data_dir=str(private),
                    ident=ident, event_handler=events.handle, status_handler=on_status,
                    cancel_callback=lambda: False, quiet=True, settings={})
            except Exception as exc:  # a stream cut inside an artifact: as cut anywhere
                status.setdefault("status", "error")
                status.setdefault("job_explanation", f"{type(exc).__name__}: {exc}")

        worker = threading.Thread(target=process, daemon=True,
                                  name=f"node-{self.node.name}-process")
        worker.start()
        beats.start()
        try:
            deadline = time.monotonic() + request.timeout if request.timeout else None
            stopped = ""
            while worker.is_alive():
                worker.join(0.1)
                if not worker.is_alive():
                    break
                if cancel.cancelled:
                    stopped = "canceled"
                elif deadline is not None and time.monotonic() > deadline:
                    stopped = "timeout"
                if stopped:
                    break
            if stopped:
                beats.stop()  # before the kill: no heartbeat after it
                cleaned = self._stop(transport, token)
                chan.close()
                worker.join(10)
                results = events.results(names, stopped, None, cancel.reason, request.timeout, log)
                where = f"stopped on {self.label}" if cleaned else \
                    f"could not stop it on {self.label}: connection lost"
                return GroupResult({n: _noted(r, f" ({where})") for n, r in results.items()})
            drain.join(2)
            final = str(status.get("status") or "")
            if final in ("successful", "failed"):  # the worker ended the job (a recap or not)
                beats.stop(done=True)  # it finishes on its own: no kill when the channel closes
                chan.close()
                results = events.results(names, final, _rc(private, ident), "", request.timeout,
                                         log)
                return GroupResult({n: _named(r, self.node.name) for n, r in results.items()})
            # the stream ended early: the node went silent, or the worker could not run; what
            # is left of the job there is killed by its watchdog when the channel closes
            code = chan.exit_status if chan.exit_status_ready() else None
            chan.close()
            why = str(status.get("job_explanation") or "") if final == "error" else ""
            said = last_line("\n".join(stderr))
            if code == 127 or (code is not None and not events.stats and "not found" in said):
                why = f"ansible-runner {self.node.runner!r} is not there: {said or 'exit 127'}"
            elif said and said not in why:
                why = f"{why}: {said}" if why else said
            during = _during(events, names)
            return self._lost_or(conn, names, f"the worker ended{during} without a result "
                                 f"(exit {code}): {why or 'no output'}", FailureKind.EXIT, during)
        finally:
            beats.stop()  # every way out (again after a stop: harmless)

    def _lost_or(self, conn: Any, names: list[str], why: str, kind: FailureKind,
                 during: str = "") -> GroupResult:
        """Every host UNREACHABLE, the node named, when its connection went silent or
        died; else `why` with `kind`."""
        transport = _transport(conn)
        dead = transport is None or not transport.is_active()
        silent = self.pool.lost(self.host, conn) if dead else False
        if silent:
            return self._all(names, FailureKind.UNREACHABLE,
                             f"{self.label} lost{during}: no answer to "
                             f"{self.ssh.keepalive_count} keepalives in "
                             f"{self.ssh.lost_after:g}s")
        if dead:
            return self._all(names, FailureKind.UNREACHABLE,
                             f"lost the connection to {self.label}{during}")
        return self._all(names, kind, f"{self.label}: {why}")

    def _stop(self, transport: Any, token: str) -> bool:
        """Kill the job on the node; True once nothing of it runs there."""
        if transport is None or not transport.is_active():
            return False
        try:
            killer = transport.open_session(timeout=self.ssh.connect_timeout)
            killer.exec_command("exec /bin/sh -c " + shlex.quote(kill_command(token)))
            deadline = time.monotonic() + 15
            while not killer.exit_status_ready() and time.monotonic() < deadline:
                time.sleep(0.05)
            ok = killer.exit_status_ready() and killer.exit_status == 0
            killer.close()
            return ok
        except Exception:  # the connection died meanwhile: nothing more can be done
            return False

    @staticmethod
    def _all(names: list[str], kind: FailureKind, why: str) -> GroupResult:
        return GroupResult({n: Result.failed(n, kind, why) for n in names})

    # --- preflight ----------------------------------------------------------------------
    def problem(self) -> str | None:
        """Why this node cannot run jobs (runner missing, too old, no Ansible beside it,
        unreachable), or None."""
        try:
            conn = self.pool.get(self.host)
            chan = _transport(conn).open_session(timeout=self.ssh.connect_timeout)
        except Exception as exc:
            return f"{self.label} cannot be reached: {type(exc).__name__}: {exc}"
        try:
            chan.exec_command("exec /bin/sh -c " + shlex.quote(check_command(self.node)))
            chan.settimeout(self.ssh.connect_timeout + self.ssh.lost_after + 30)
            output = b""
            while chunk := chan.recv(65536):
                output += chunk
            code = chan.recv_exit_status()
        except Exception as exc:
            return f"{self.label} did not answer the runner check: {type(exc).__name__}: {exc}"
        finally:
            chan.close()
        text = output.decode(errors="replace").strip()
        if code == 10 or not text.startswith("runner "):
            return (f"{self.label}: ansible-runner {self.node.runner!r} is missing or does not "
                    f"run: {last_line(text) or f'exit {code}'}")
        version = parse_version(text)
        if version is None or version[:2] < MIN_RUNNER_VERSION:
            need = ".".join(map(str, MIN_RUNNER_VERSION))
            return (f"{self.label}: ansible-runner {quoted(text.removeprefix('runner '))} "
                    f"cannot speak the remote job protocol (needs {need} or later)")
        if code == 11:
            where = f"beside {self.node.runner} nor " if self.node.runner_dir else ""
            return f"{self.label}: no ansible-playbook {where}on the node's PATH"
        if code == 13:
            return (f"{self.label}: no `timeout` or `head` (coreutils) on the node's PATH: "
                    "a job's watchdog needs them")
        if code != 0:
            return f"{self.label}: the runner check exited {code}: {last_line(text)}"
        return None


def refuse_unready(runners: Iterable[NodePlaybookRunner]) -> None:
    """Check every node at once; RefusedError (exit 4) naming each node that cannot run
    jobs, before anything has run."""
    todo = list(runners)
    found: dict[str, str | None] = {}
    threads = [threading.Thread(target=lambda r=r: found.__setitem__(r.node.name, r.problem()),
                                daemon=True, name=f"node-check-{r.node.name}") for r in todo]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    problems = [p for p in (found.get(r.node.name, f"{r.label}: the runner check did not end")
                            for r in todo) if p]
    if problems:
        raise RefusedError("execution nodes not ready, nothing was run:\n  "
                           + "\n  ".join(problems))


class _Heartbeats:
    """The controller's side of a job's watchdog on the node (node_commands.py): a
    HEARTBEAT every `interval` seconds once the job's stream is sent (`sent`), and DONE
    when its results are in. On a thread of its own: a send can block in a stalled
    transport (a rekey, a full TCP buffer on a cut link), and the exchange must go on
    checking for cancel and timeout meanwhile."""

    def __init__(self, chan: Any, interval: float, name: str) -> None:
        self.chan = chan
        self.interval = max(0.1, interval)
        self.sent = threading.Event()
        self._over = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=name)

    def start(self) -> None:
        self._thread.start()

    def stop(self, done: bool = False) -> None:
        """No more heartbeats; with `done`, the job's end is said (the link just carried
        its whole stream, so this send does not wait)."""
        self._over.set()
        if done:
            _send(self.chan, DONE)

    def _beat(self) -> None:
        while not self._over.wait(self.interval):
            if self.sent.is_set():
                _send(self.chan, HEARTBEAT)


def _send(chan: Any, byte: bytes) -> None:
    try:
        chan.send(byte)
    except Exception:  # noqa: S110 - the connection died: the node stops the job itself
        pass


def _drain_stderr(chan: Any, keep: deque[str]) -> None:
    """Read the worker's stderr (so that it never blocks the channel), keeping its last
    lines for the failure message."""
    buf = b""
    try:
        while chunk := chan.recv_stderr(65536):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            keep.extend(line.decode(errors="replace") for line in lines if line.strip())
    except Exception:  # noqa: S110 - the channel closed: what was read is kept
        pass
    if buf.strip():
        keep.append(buf.decode(errors="replace"))


def _rc(private: Path, ident: str) -> int | None:
    try:
        return int((private / "artifacts" / ident / "rc").read_text().strip())
    except (OSError, ValueError):
        return None


def _during(events: PlayEvents, names: list[str]) -> str:
    tasks = {events.running.get(n, "") for n in names} - {""}
    return f" during task {quoted(sorted(tasks)[0])}" if len(tasks) == 1 else ""


def _named(result: Result, node: str) -> Result:
    return result if result.ok else replace(result, detail=f"node {node}: {result.detail}")


def _noted(result: Result, note: str) -> Result:
    return replace(result, detail=result.detail + note)

