"""The one place where what happened becomes the process's exit code (spec section 3)."""

from __future__ import annotations

from orchestrator._exceptions import MigrateError
from orchestrator.core.outcomes import RunOutcome

OK = 0
FIRED_AND_ROLLED_BACK = 1
BAD_CONFIG = 2
NEEDS_HUMAN = 3
REFUSED = 4
INTERRUPTED = 130

_OUTCOMES = {
    RunOutcome.COMPLETED: OK,
    RunOutcome.DRY_RUN_PASSED: OK,
    RunOutcome.DRY_RUN_FAILED: FIRED_AND_ROLLED_BACK,
    RunOutcome.ROLLED_BACK: FIRED_AND_ROLLED_BACK,
    RunOutcome.ROLLBACK_FAILED: NEEDS_HUMAN,
    RunOutcome.INTERRUPTED_ROLLED_BACK: INTERRUPTED,
    RunOutcome.INTERRUPTED: INTERRUPTED,
    RunOutcome.WORKER_DIED: NEEDS_HUMAN,
}
assert set(_OUTCOMES) == set(RunOutcome)


def exit_code_for(what: RunOutcome | BaseException) -> int:
    if isinstance(what, RunOutcome):
        return _OUTCOMES[what]
    if isinstance(what, MigrateError):
        return what.exit_code
    if isinstance(what, KeyboardInterrupt):
        return INTERRUPTED
    raise TypeError(f"no exit code for {what!r}")
