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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestrator.config.inventory import Host
from orchestrator.core.clock import CancelToken
from orchestrator.core.model import SshSettings

__all__ = ["CancelToken", "CommandRequest", "CommandRunner", "FailureKind", "GroupResult",
           "OutputSink", "PlaybookRequest", "PlaybookRunner", "Result", "SshSettings"]

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
               exit_code: int | None = None, stdout: str = "") -> Result:
        return cls(host, False, detail, exit_code, stdout, failure=failure)


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


class PlaybookRunner(Protocol):
    def run_playbook(self, request: PlaybookRequest, cancel: CancelToken) -> GroupResult: ...


class CommandRunner(Protocol):
    def run_command(self, request: CommandRequest, cancel: CancelToken) -> Result: ...
