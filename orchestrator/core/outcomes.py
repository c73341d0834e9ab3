"""How a run ended, as data: the engine returns these and `exit_codes` maps them.

Kept apart from the engine so that the CLI can name outcomes without importing it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class RunOutcome(enum.Enum):
    """How a run ended; `exit_codes.exit_code_for` turns it into the process's exit code."""

    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    INTERRUPTED_ROLLED_BACK = "interrupted_rolled_back"
    #: the operator stopped an undo (or stopped at once): the phase is left `interrupted`
    #: for `migrate rollback` or `migrate resume` to finish
    INTERRUPTED = "interrupted"
    #: a background worker (trigger monitor, alert receiver, Xid waiter, lock heartbeat)
    #: died while `watch` was watching: the watch ends and undoes nothing
    WORKER_DIED = "worker_died"
    DRY_RUN_PASSED = "dry_run_passed"
    DRY_RUN_FAILED = "dry_run_failed"


@dataclass
class RunReport:
    run_id: str
    phase: int
    hosts: list[str]
    outcome: RunOutcome
    reason: str | None = None
    needs_human: list[str] = field(default_factory=list)  # "host: step (why)"
