"""The durable record of every run, the same on SQLite and on PostgreSQL.

Every transition is written before the action it announces starts and again when
it ends, so a crash at any moment leaves a journal that says what was in flight.

`Journal` holds every rule once (the transition graph, lock refusals, reaping);
where the rows live is its `Store`: `SqliteStore` (`.migrate/state.db`, the
default: one operator, one machine) or `PgStore` (a team's PostgreSQL database,
`state.url`). See base.py for what a store supplies, schema.py for the tables and
their versions, open.py for choosing a store from the project's settings.

Tables: `runs` (one per `migrate phase`/`rollback`/`resume` invocation, with the
checksums of the definitions it ran) and `run_hosts`, `phase_states` (the current
state of each phase on each host), `steps` (each step execution on each host),
`events` (the append-only timeline that `migrate history` prints), `locks` (which
run holds which host), `leaders` (the active `watch`), `baselines` and `samples`
(metrics, for triggers and reports), `trigger_states`.

Every read and write goes through `Availability` (`state.timeout`): transient
failures are retried that long; after that the journal is unavailable, writes raise
`JournalUnavailableError` (exit 3) at once, and `on_unavailable` has been called so
that the engine can cancel the step in flight.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.state.journal_core import JournalCore
from orchestrator.state.lock_rows import LockRows
from orchestrator.state.metric_rows import MetricRows
from orchestrator.state.records import (
    Event,
    Interrupted,
    LeaderRecord,
    LockHolder,
    PhaseRecord,
    StepRow,
    utc_stamp,
)
from orchestrator.state.run_rows import RunRows

__all__ = ["Event", "Interrupted", "Journal", "JournalCore", "LeaderRecord", "LockHolder",
           "PhaseRecord", "StepRow", "open_journal", "utc_stamp"]


class Journal(RunRows, LockRows, MetricRows):
    """The journal: every rule, over one store, shared by every thread of a process.

    `Journal(path)` is the embedded SQLite journal (as it always was); pass a `Store`
    for another backend. `timeout` is `state.timeout`; `clock` and `sleep` are
    parameters for the tests of that rule. One job a module: `journal_core` (store,
    transactions, events), `run_rows`, `lock_rows`, `metric_rows`.
    """


def open_journal(state_dir: Path) -> Journal:
    """The embedded journal of a project (see open.open_state for `state.url`)."""
    journal = Journal(state_dir / "state.db")
    journal.reap()
    names = journal.migrations()
    if len(names) == 1:  # a project's own journal (a drill's, say): read as its migration
        journal.use_migration(names[0])
    return journal

