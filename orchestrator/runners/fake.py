"""Fakes of the runners for tests of the engine: give them a function, they call it.

They record every request, so a test asserts on what the engine asked for
instead of patching library internals. A handler answers True/False (False is an
`EXIT` failure) or a full `Result`/`GroupResult`, e.g. `Result.failed(host,
FailureKind.UNREACHABLE, "host unreachable")` to play a lost host.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.core.clock import CancelToken
from orchestrator.runners.base import (
    CommandRequest,
    FailureKind,
    GroupResult,
    PlaybookRequest,
    Result,
)


class FakePlaybookRunner:
    def __init__(self, handler: Callable[[PlaybookRequest, CancelToken], GroupResult | bool]
                 | None = None) -> None:
        self.handler = handler
        self.requests: list[PlaybookRequest] = []

    def run_playbook(self, request: PlaybookRequest, cancel: CancelToken) -> GroupResult:
        self.requests.append(request)
        out = self.handler(request, cancel) if self.handler else True
        if isinstance(out, bool):
            return GroupResult({h.name: Result(h.name, out, "" if out else "fake failure",
                                               failure=None if out else FailureKind.EXIT)
                                for h in request.hosts})
        return out


class FakeCommandRunner:
    def __init__(self, handler: Callable[[CommandRequest, CancelToken], Result | bool]
                 | None = None) -> None:
        self.handler = handler
        self.requests: list[CommandRequest] = []

    def run_command(self, request: CommandRequest, cancel: CancelToken) -> Result:
        self.requests.append(request)
        out = self.handler(request, cancel) if self.handler else True
        if isinstance(out, bool):
            return Result(request.host.name, out, "" if out else "fake failure",
                          exit_code=0 if out else 1, failure=None if out else FailureKind.EXIT)
        return out
