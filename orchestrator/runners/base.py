"""The runner interfaces and the results they return, kept apart per host.

The contract every runner keeps (local shell, fabric over SSH, ansible-runner, fakes):

- `run_*` never raises for what happened on a host; it returns a `Result` per host whose
  `failure` says why it failed (`FailureKind`), so callers decide on retries by kind,
  never by parsing `detail` (which stays human text).
- The cancel token and the request's `timeout` stop the work on the host too, not only
  our wait for it: the local runner kills the command's process group, the SSH runner
  kills the remote process group, the Ansible runner kills the playbook's process tree.
- Every SSH connection sends keepalives and gives up on a silent peer after
  `SshSettings.keepalive` x `keepalive_count` seconds (`ssh:` in migration.yaml).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestrator.config.inventory import Host
from orchestrator.core.clock import CancelToken
from orchestrator.core.model import SshSettings

__all__ = ["CancelToken", "CommandRequest", "CommandRunner", "FailureKind", "GroupResult",
           "OutputSink", "PlaybookRequest", "PlaybookRunner", "Result", "SshSettings",
           "command_failed", "describe_failure", "display_path", "last_line", "quoted",
           "task_failed"]

#: Called with (host or "", one line of progress) while a runner works.
OutputSink = Callable[[str, str], None]


def _ignore(host: str, line: str) -> None:
    return None


class FailureKind(enum.Enum):
    """Why a request failed on a host; what a retry policy looks at."""

    EXIT = "exit"  # the work ran and failed (non-zero exit, failed task): the same again fails
    TIMEOUT = "timeout"  # the request's timeout ran out; the work was stopped
    UNREACHABLE = "unreachable"  # no connection, or the host stopped answering mid-request
    CANCELLED = "cancelled"  # the cancel token fired (trigger, Ctrl-C); the work was stopped

    @property
    def retryable(self) -> bool:
        """May the same request pass next time? (a lost host may come back; a failure won't)"""
        return self in (FailureKind.UNREACHABLE, FailureKind.TIMEOUT)


@dataclass(frozen=True)
class Result:
    """What one host did with one request.

    `failure` is None exactly when `ok`; a failed result built without a kind (older
    callers, fakes) gets CANCELLED when `cancelled` is set, else EXIT. `cancelled` is kept
    for callers that read it, and always agrees with `failure is CANCELLED`.
    """

    host: str
    ok: bool
    detail: str = ""
    exit_code: int | None = None
    stdout: str = ""
    cancelled: bool = False
    failure: FailureKind | None = None
    #: what failed: the Ansible task's name, or the command that was run
    task: str = ""
    #: its error message: Ansible's `msg` (and the last stderr line), or the command's
    #: last line of output
    error: str = ""
    #: the path of the full log of this request (ansible-runner's stdout, the command's log)
    log: str = ""

    def __post_init__(self) -> None:
        failure = self.failure
        if self.ok:
            failure = None
        elif failure is None:
            failure = FailureKind.CANCELLED if self.cancelled else FailureKind.EXIT
        object.__setattr__(self, "failure", failure)
        object.__setattr__(self, "cancelled", failure is FailureKind.CANCELLED)

    @classmethod
    def failed(cls, host: str, failure: FailureKind, detail: str,
               exit_code: int | None = None, stdout: str = "", *, task: str = "",
               error: str = "", log: str | Path = "") -> Result:
        """A failure. `detail` says what failed (`task_failed` words it for a task or a
        command); with `error`/`log` the stored detail is `describe_failure`'s one line,
        which every failure message shows (step failed, UNDO FAILED, a human is needed)."""
        log = str(log) if log else ""
        return cls(host, False, describe_failure(detail, error=error, log=log), exit_code,
                   stdout, failure=failure, task=task, error=error, log=log)

    def describe(self) -> str:
        """The operator's line for this result: what failed, its error, where its log is."""
        return self.detail


def task_failed(task: str, what: str = "failed", *, command: bool = False) -> str:
    """`task "NAME" failed` / `command "CMD" exited 5`: the head of a failure line."""
    if not task:
        return f"{'command' if command else 'task'} {what}"
    return f"{'command' if command else 'task'} {quoted(task)} {what}"


def describe_failure(what: str, *, error: str = "", log: str = "") -> str:
    """One line for a failure, the same in the step-failed line, UNDO FAILED and the
    needs-human list: `WHAT: ERROR (log: PATH)`, e.g. `task "restart agent" failed:
    Could not find the requested service agent (log: .migrate/runs/R/rollback-deploy/
    artifacts/1/stdout)`. The log path is relative to the current directory when below it.
    """
    line = what
    if error and not what.endswith(_one_line(error)):
        line += f": {_one_line(error)}"
    if log:
        line += f" (log: {display_path(log)})"
    return line


def last_line(output: str) -> str:
    """The last non-empty line of a command's output (stderr is folded into it): what a
    failing command said last is nearly always why it failed."""
    for line in reversed(output.splitlines()):
        if line.strip():
            return line.strip()
    return ""


def command_failed(host: str, command: str, code: int | None, output: str,
                   log: str | Path) -> Result:
    """A command that exited non-zero: the command, its exit code, its last line of output
    and its log, in the one failure line (`describe_failure`)."""
    return Result.failed(host, FailureKind.EXIT,
                         task_failed(command, f"exited {code}", command=True), code, output,
                         task=command, error=last_line(output), log=log)


def display_path(path: str | Path) -> str:
    """`path` relative to the current directory when below it, else absolute."""
    try:
        full = Path(path).resolve()
        rel = full.relative_to(Path(os.getcwd()).resolve())
    except (OSError, ValueError):
        return str(path)
    return str(rel)


def quoted(text: str, limit: int = 160) -> str:
    text = _one_line(text, limit)
    return f'"{text}"' if '"' not in text else f"'{text}'"


def _one_line(text: str, limit: int = 300) -> str:
    """Whitespace folded to single spaces; cut with an ellipsis past `limit`."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


@dataclass
class GroupResult:
    """Per-host results of one request sent to several hosts; successes and failures apart."""

    results: dict[str, Result] = field(default_factory=dict)

    @property
    def failed(self) -> dict[str, Result]:
        return {h: r for h, r in self.results.items() if not r.ok}

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results.values())


@dataclass(frozen=True)
class PlaybookRequest:
    playbook: Path
    hosts: tuple[Host, ...]
    inventory: Path
    extravars: dict[str, Any]
    artifacts_dir: Path
    check: bool = False
    timeout: float | None = None
    on_output: OutputSink = _ignore


@dataclass(frozen=True)
class CommandRequest:
    host: Host
    command: str  # already rendered and quoted
    artifacts_dir: Path
    timeout: float | None = None
    on_output: OutputSink = _ignore
    #: at most this many last lines of output kept in `Result.stdout` (None: all); a
    #: long-lived probe that prints a line every few seconds sets it so as not to grow
    keep_lines: int | None = None


class PlaybookRunner(Protocol):
    def run_playbook(self, request: PlaybookRequest, cancel: CancelToken) -> GroupResult: ...


class CommandRunner(Protocol):
    def run_command(self, request: CommandRequest, cancel: CancelToken) -> Result: ...
