"""Playbooks through ansible-runner and the real `ansible-playbook`.

One Ansible run per step for all of the run's hosts (`limit`), so Ansible's forks
give the parallelism. Task progress is streamed to the operator from runner
events; per-host outcome comes from the play recap (`failures`, `dark`).
Cancellation and the step's timeout: a thread of the runner's own (`_Stopper`) waits on
the cancel token and the deadline and kills the playbook's whole process tree the
moment either comes, because ansible-runner's own kill (the playbook's process group)
misses ansible-core's task workers, which run in sessions of their own, and because
ansible-runner asks its `cancel_callback` only when its read loop wakes (every
`RUNNER_POLL` s without output): the callback then only reports the stop.

What migrate's own process spends on a play (bench/fleet.py, 3 steps x 200 hosts: about
1 CPU-s beside some 200 of Ansible's) is mostly ansible-runner's: its pexpect read loop
and, per event, the partial JSON file the awx_display callback writes in ansible-playbook
and ansible-runner reads back and deletes. Its `omit_event_data`/`only_failed_event_data`
would empty the event data this needs (the host of each event, `res`, the recap), and
the partial files cannot be turned off; the job_events files it would write again are
not (`PlayEvents.handle` returns False).

Lost hosts: Ansible's ssh connection gets `ServerAliveInterval`/`ServerAliveCountMax`
and `ConnectTimeout` from the project's `ssh:` settings, so a host that goes silent is
`unreachable` after keepalive x count seconds even through a ControlPersist master that
was opened by an earlier step. They go into `ANSIBLE_SSH_ARGS` after Ansible's own
default (`-C -o ControlMaster=auto -o ControlPersist=60s`, or the operator's
$ANSIBLE_SSH_ARGS), which the ssh plugin places first on the command line; the
inventory's `ansible_ssh_common_args`/`ansible_ssh_extra_args` are untouched and come
after (OpenSSH takes the first value of an option). `ConnectTimeout` is Ansible's own
`timeout` ($ANSIBLE_TIMEOUT). Control sockets live in a directory of their own per
keepalive setting, so a master opened without keepalives (an operator's ad-hoc run)
is never reused. A host that sets `ansible_ssh_args` itself replaces all of this (Ansible
gives inventory variables precedence over the environment); the runner says so.

Per-host outcome is a `FailureKind`: `dark` (unreachable) -> UNREACHABLE, `failures`
-> EXIT, the step's timeout -> TIMEOUT, the cancel token -> CANCELLED.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from orchestrator._exceptions import RunnerError
from orchestrator.core.clock import CancelToken
from orchestrator.runners.base import (
    FailureKind,
    GroupResult,
    OutputSink,
    PlaybookRequest,
    Result,
    SshSettings,
    quoted,
    task_failed,
)
from orchestrator.runners.descendants import cmdline, descendants, kill_trees
from orchestrator.runners.executables import find_executable, own_bin_dir, path_with_own_bin

#: seconds between two wakes of ansible-runner's read loop when the play prints nothing
RUNNER_POLL = 1.0
#: ansible-core's default `ssh_args`, kept so that ControlPersist stays on
ANSIBLE_DEFAULT_SSH_ARGS = "-C -o ControlMaster=auto -o ControlPersist=60s"


def keepalive_options(ssh: SshSettings) -> list[str]:
    """OpenSSH options for the project's `ssh:` settings (whole seconds, at least 1)."""
    return ["-o", f"ServerAliveInterval={max(1, math.ceil(ssh.keepalive))}",
            "-o", f"ServerAliveCountMax={max(1, ssh.keepalive_count)}"]


def ssh_environment(ssh: SshSettings, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The ANSIBLE_* variables that give every Ansible ssh connection keepalives."""
    environ = dict(os.environ) if environ is None else environ
    base = environ.get("ANSIBLE_SSH_ARGS") or ANSIBLE_DEFAULT_SSH_ARGS
    env = {"ANSIBLE_SSH_ARGS": " ".join([base, *keepalive_options(ssh)]),
           "ANSIBLE_TIMEOUT": environ.get("ANSIBLE_TIMEOUT")
           or str(max(1, math.ceil(ssh.connect_timeout)))}
    if not environ.get("ANSIBLE_SSH_CONTROL_PATH_DIR") and \
            not environ.get("ANSIBLE_SSH_CONTROL_PATH"):
        alive = f"{max(1, math.ceil(ssh.keepalive))}x{max(1, ssh.keepalive_count)}"
        env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = f"~/.ansible/cp/migrate-{alive}"
    return env


class AnsiblePlaybookRunner:
    def __init__(self, forks: int = 10, ssh: SshSettings | None = None,
                 poll: float = RUNNER_POLL) -> None:
        self.forks = forks
        self.ssh = ssh or SshSettings()
        self.poll = poll  # ansible-runner's pexpect_timeout: see _Stopper

    def run_playbook(self, request: PlaybookRequest, cancel: CancelToken) -> GroupResult:
        if find_executable("ansible-playbook") is None:
            raise RunnerError(f"ansible-playbook is neither beside migrate ({own_bin_dir()}) "
                              "nor on PATH: install ansible-core")
        import ansible_runner  # heavy: imported only when a playbook step runs

        names = [h.name for h in request.hosts]
        private = request.artifacts_dir
        private.mkdir(parents=True, exist_ok=True, mode=0o700)
        ident = _new_ident(private / "artifacts")
        log = private / "artifacts" / ident / "stdout"  # the run's full Ansible output
        cmdline = f"--forks {self.forks}" + (" --check --diff" if request.check else "")
        # the job events, read as a node's are (runners/nodes.py); no event is written back
        # as a job_events file: at 200 hosts that was 400 JSON files a task written, then
        # all of them read back and parsed again by `runner.stats` after the play
        events = PlayEvents(request.on_output)

        env = {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0",
               "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
        if "ANSIBLE_HOST_KEY_CHECKING" in os.environ:
            env["ANSIBLE_HOST_KEY_CHECKING"] = os.environ["ANSIBLE_HOST_KEY_CHECKING"]
        env.update(ssh_environment(self.ssh))
        env["PATH"] = path_with_own_bin()  # Ansible from migrate's own environment first
        for h in request.hosts:
            own = str(h.vars.get("ansible_ssh_args", ""))
            if not h.is_local and own and "ServerAliveInterval" not in own:
                request.on_output(h.name, "note: the inventory's ansible_ssh_args replace "
                                  "migrate's ssh keepalives for this host; add -o "
                                  "ServerAliveInterval/ServerAliveCountMax to them")
        stop = _Stopper(cancel, request.timeout, marker=f"@{private / 'env' / 'extravars'} ")
        try:
            with stop:
                runner = ansible_runner.run(
                    private_data_dir=str(private),
                    ident=ident,
                    playbook=str(request.playbook),
                    inventory=str(request.inventory),
                    limit=",".join(names),
                    extravars=request.extravars,
                    cmdline=cmdline,
                    envvars=env,
                    event_handler=events.handle,
                    cancel_callback=stop.should_stop,
                    quiet=True,
                    # how often ansible-runner's read loop wakes without output to ask
                    # cancel_callback: a stop does not wait for it (_Stopper kills the run
                    # itself, and the loop sees the output end at once)
                    settings={"pexpect_timeout": self.poll, "suppress_ansible_output": True},
                    project_dir=str(request.playbook.parent),
                )
        except Exception as exc:  # ansible-runner raises plain exceptions on bad setup
            raise RunnerError(f"ansible-runner could not start {request.playbook}: {exc}") from exc

        # stopped by _Stopper: ansible-runner may have seen the play end before its
        # cancel_callback said so, and then calls it failed
        status = "timeout" if stop.timed_out else "canceled" if stop.stopped else runner.status
        log_path = str(log if log.exists() else log.parent)
        out = events.results(names, status, runner.rc, cancel.reason, request.timeout, log_path)
        return GroupResult(out)


def _new_ident(artifacts: Path) -> str:
    """The next free ansible-runner ident under `artifacts`: 1, 2, ... (one per Ansible run of
    the step: retries and undos keep their own logs), claimed by creating its directory."""
    artifacts.mkdir(parents=True, exist_ok=True, mode=0o700)
    n = len([p for p in artifacts.iterdir() if p.name.isdigit()]) + 1
    while True:
        try:
            (artifacts / str(n)).mkdir(mode=0o700)
            return str(n)
        except FileExistsError:
            n += 1


def task_error(res: dict[str, Any]) -> str:
    """A failed task's error in one line: Ansible's `msg`, its return code and the last line
    of stderr when `msg` alone says little ("non-zero return code"); the first failed item
    of a loop."""
    items = res.get("results")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and (item.get("failed") or item.get("unreachable")):
                inner = task_error(item)
                if inner:
                    return inner
    msg = " ".join(str(res.get("msg") or "").split())
    stderr = [line.strip() for line in str(res.get("stderr") or "").splitlines() if line.strip()]
    parts = [msg] if msg else []
    if res.get("rc") not in (None, 0) and "rc " not in msg:
        parts.append(f"(rc {res['rc']})")
    if stderr and stderr[-1] not in msg:
        parts.append(("-- " if parts else "") + stderr[-1])
    if not parts and res.get("stdout"):
        last = [line for line in str(res["stdout"]).splitlines() if line.strip()]
        parts.append(last[-1].strip() if last else "")
    return " ".join(p for p in parts if p)


def _host_result(name: str, status: str, rc: int | None, dark: dict[str, Any],
                 failures: dict[str, Any], processed: dict[str, Any], unreachable_msg: str,
                 cancel_reason: str, timeout: float | None, *, task: str = "",
                 error: str = "", log: str = "") -> Result:
    """One host's outcome from ansible-runner's status and the play recap's stats; a failure
    names the task (the failed one, or the one in flight), its error and the run's log."""
    during = f" during task {quoted(task)}" if task else ""
    if status == "canceled":
        return Result.failed(name, FailureKind.CANCELLED, f"cancelled{during}: {cancel_reason}",
                             rc, task=task, log=log)
    if status == "timeout":
        return Result.failed(name, FailureKind.TIMEOUT,
                             f"timed out after {timeout or 0:g}s{during}", rc, task=task, log=log)
    if name in dark:
        return Result.failed(name, FailureKind.UNREACHABLE, f"host unreachable{during}", rc,
                             task=task, error=error or unreachable_msg, log=log)
    if name in failures:
        return Result.failed(name, FailureKind.EXIT, task_failed(task), rc, task=task,
                             error=error or f"{failures[name]} task(s) failed", log=log)
    if status != "successful" and name not in processed:
        return Result.failed(name, FailureKind.EXIT, f"ansible-playbook {status} (rc {rc})",
                             rc, log=log)
    if name not in processed and processed:
        return Result.failed(name, FailureKind.EXIT, "host was not part of the play", rc)
    return Result(name, True, "ok", rc, log=log)


class _Stopper:
    """Stops one playbook run when the run's cancel token fires or the step's time is up.

    A thread of its own waits on the token and the deadline and, the moment either
    comes, SIGKILLs every process of this playbook run: the processes below us whose
    command line names this run's extravars file (`ansible-playbook -e
    @PRIVATE/env/extravars`, unique per step and host), with everything below them.
    ansible-runner's read loop then sees the end of the output at once and asks
    `should_stop` (its `cancel_callback`), which says the run was stopped. So a stop
    never waits on ansible-runner's polling, and the loop need wake only every
    `RUNNER_POLL` seconds: at 200 hosts, waking ten times a second cost migrate more
    CPU than handling every event of the play (bench/fleet.py).

    Used as a context manager around `ansible_runner.run`: after it, nothing is killed.
    """

    #: how often the watcher looks whether the run is over (a cancel wakes it at once)
    WATCH_SLICE = 0.5

    def __init__(self, cancel: CancelToken, timeout: float | None, marker: str) -> None:
        self.cancel = cancel
        self.deadline = time.monotonic() + timeout if timeout else None
        self.marker = marker
        self.timed_out = False
        self.stopped = False
        self._finished = False
        self._lock = threading.Lock()
        self._watcher = threading.Thread(target=self._watch, name="playbook-stopper",
                                         daemon=True)

    def __enter__(self) -> _Stopper:
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._finished = True

    def _due(self) -> bool | None:
        """True: cancelled; False: the step's time is up; None: neither."""
        if self.cancel.cancelled:
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return False
        return None

    def _watch(self) -> None:
        while True:
            with self._lock:
                if self._finished or self.stopped:
                    return
            wait = self.WATCH_SLICE
            if self.deadline is not None:
                wait = min(wait, max(0.0, self.deadline - time.monotonic()))
            self.cancel.wait(wait)
            due = self._due()
            if due is not None:
                self._stop(timed_out=not due)
                return

    def _stop(self, timed_out: bool) -> None:
        with self._lock:
            if self._finished or self.stopped:
                return
            self.stopped, self.timed_out = True, timed_out
        mine = descendants(os.getpid())
        kill_trees([pid for pid in mine if self.marker in cmdline(pid)])

    def should_stop(self) -> bool:
        if not self.stopped:
            due = self._due()  # the watcher sees it too; whichever comes first stops
            if due is not None:
                self._stop(timed_out=not due)
        return self.stopped


@dataclass
class PlayEvents:
    """An `event_handler` for ansible-runner, and what it learnt: task lines to the
    operator, the task each host is on, the first failed task with its error, unreachable
    hosts, the play recap. The same whether ansible-runner ran the playbook here or
    replays an execution node's job stream (`streamer='process'`, runners/nodes.py), so a
    failure reads the same from a node as from here (`results`)."""

    on_output: OutputSink
    #: appended with each event's `stdout` (the run's log, as ansible-runner writes it)
    log: IO[str] | None = None
    #: added to each TASK line shown to the operator (e.g. " [node east]")
    where: str = ""
    unreachable: dict[str, str] = field(default_factory=dict)  # host -> why
    failed_task: dict[str, tuple[str, str]] = field(default_factory=dict)  # first failure
    running: dict[str, str] = field(default_factory=dict)  # host -> the task it is on
    stats: dict[str, Any] = field(default_factory=dict)  # the play recap, when it came

    def handle(self, event: dict[str, Any]) -> bool:
        data = event.get("event_data") or {}
        kind = event.get("event", "")
        host = str(data.get("host") or "")
        task = str(data.get("task") or data.get("task_action") or "")
        if self.log is not None and event.get("stdout"):
            self.log.write(str(event["stdout"]) + "\n")
            self.log.flush()
        if kind == "playbook_on_task_start":
            self.on_output("", f"TASK {data.get('task', '')}{self.where}")
        elif kind == "runner_on_start" and host:
            self.running[host] = task
        elif kind == "playbook_on_stats":
            self.stats = {k: data.get(k) or {} for k in ("failures", "dark", "processed")}
        elif kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable",
                      "runner_on_skipped"):
            status = kind.removeprefix("runner_on_")
            res = data.get("res") or {}
            if kind == "runner_on_ok" and res.get("changed"):
                status = "changed"
            error = task_error(res)
            if status == "unreachable" and host:
                self.unreachable[host] = error[:200]
            if status in ("failed", "unreachable") and host and \
                    not data.get("ignore_errors") and host not in self.failed_task:
                self.failed_task[host] = (task, error)
            line = f"{status}: {data.get('task', '')}"
            if status in ("failed", "unreachable") and error:
                line += f" -- {error[:300]}"
            self.on_output(host, line)
        return False  # nothing written back as a job_events file

    def results(self, names: list[str], status: str, rc: int | None, cancel_reason: str,
                timeout: float | None, log: str) -> dict[str, Result]:
        """One result per host from the run's status ('successful', 'failed', 'canceled',
        'timeout') and the recap, as the local runner words them."""
        out: dict[str, Result] = {}
        for name in names:
            task, error = self.failed_task.get(name, (self.running.get(name, ""), ""))
            out[name] = _host_result(name, status, rc, self.stats.get("dark") or {},
                                     self.stats.get("failures") or {},
                                     self.stats.get("processed") or {},
                                     self.unreachable.get(name, ""), cancel_reason, timeout,
                                     task=task, error=error, log=log)
        return out
