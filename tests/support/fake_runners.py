"""Fake runners that record what ran: the engine's tests assert on the order of steps and
undos without starting a process."""

from __future__ import annotations

import threading
from collections.abc import Callable

from orchestrator.core.clock import CancelToken
from orchestrator.runners.base import CommandRequest, PlaybookRequest, Result
from orchestrator.runners.fake import FakeCommandRunner, FakePlaybookRunner

CommandAnswer = Callable[[CommandRequest, CancelToken], Result]


class Recorder:
    """Fake runners that log what ran, in order, and fail what the test says: the commands
    in `fail_commands`, or whatever `answer` says of each command (given, it answers
    every command instead, and nothing is logged unless it logs)."""

    def __init__(self, fail_playbooks: set[str] = frozenset(),  # type: ignore[assignment]
                 fail_commands: set[str] = frozenset(),  # type: ignore[assignment]
                 answer: CommandAnswer | None = None) -> None:
        self.log: list[str] = []
        self.lock = threading.Lock()
        self.fail_playbooks = fail_playbooks
        self.fail_commands = fail_commands
        self.playbooks = FakePlaybookRunner(self.on_playbook)
        self.commands = FakeCommandRunner(answer or self.on_command)

    def on_playbook(self, req: PlaybookRequest, cancel: CancelToken) -> bool:
        with self.lock:
            for h in req.hosts:
                self.log.append(f"{req.playbook.name} {h.name} {req.extravars['migrate_step']}")
        return req.playbook.name not in self.fail_playbooks

    def on_command(self, req: CommandRequest, cancel: CancelToken) -> Result:
        with self.lock:
            self.log.append(f"cmd {req.host.name} {req.command}")
        ok = req.command not in self.fail_commands
        return Result(req.host.name, ok, "ok" if ok else "exit 1", 0 if ok else 1)
