"""The runner interfaces and the results they return, kept apart per host."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestrator.config.inventory import Host
from orchestrator.core.clock import CancelToken

#: Called with (host or "", one line of progress) while a runner works.
OutputSink = Callable[[str, str], None]


def _ignore(host: str, line: str) -> None:
    return None


@dataclass(frozen=True)
class Result:
    """What one host did with one request."""

    host: str
    ok: bool
    detail: str = ""
    exit_code: int | None = None
    stdout: str = ""
    cancelled: bool = False


@dataclass
class GroupResult:
    """Per-host results of one request sent to several hosts; successes and failures apart."""

    results: dict[str, Result] = field(default_factory=dict)

    @property
    def succeeded(self) -> dict[str, Result]:
        return {h: r for h, r in self.results.items() if r.ok}

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
