"""`migrate state copy --to URL`: move an embedded journal into an empty team database.

For a team that started alone: the history (runs, phase and step states, events,
baselines, samples, trigger states) is copied as it is, event numbers included, in
one transaction on the target, so a failed copy leaves the target as empty as it was.
What is not copied: `locks` and `leaders`, which describe live processes, not
history; so the copy is refused while a run holds a host in the source (after dead
runs were reaped: their phases arrive `interrupted`, ready for resume or rollback).

The target must be empty (no journal rows; a fresh database gets the schema on
connect), so that a copy can never merge two histories or run twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator._exceptions import ConfigError, RefusedError
from orchestrator.state import schema
from orchestrator.state.base import Conn
from orchestrator.state.journal import Journal

_ORDER = {"runs": "id", "run_hosts": "run_id, host", "phase_states": "host, phase",
          "steps": "run_id, host, step", "events": "seq", "baselines": "host, name, metric",
          "trigger_states": "host, phase, trigger"}


def copy_journal(source: Journal, target: Journal) -> dict[str, int]:
    """Copy `source`'s history into `target`; returns rows copied per table."""
    source.reap()
    live = source.holders()
    if live:
        h = live[0]
        raise RefusedError(f"run {h.run_id} holds host {h.host} in {source.location} (pid "
                           f"{h.process.pid} on {h.process.machine}, {h.command!r}, since "
                           f"{h.since}): let it finish, then copy")

    def read_all(db: Conn) -> dict[str, list[Any]]:
        # inside a write transaction: a consistent picture, no writer in between
        out = {}
        for table, cols in schema.COPIED:
            order = _ORDER.get(table, source.store.dialect.samples_order)
            out[table] = db.execute(f"SELECT {', '.join(cols)} FROM {table} "
                                    f"ORDER BY {order}").fetchall()
        return out

    data = source.store.write(read_all)

    def write_all(db: Conn) -> dict[str, int]:
        present = {t: n for t, n in schema.rows_in(db).items() if n}
        if present:
            raise RefusedError(f"{target.location} is not empty ("
                               + ", ".join(f"{n} {t}" for t, n in sorted(present.items()))
                               + "): state copy only fills an empty journal")
        for table, cols in schema.COPIED:
            rows = data[table]
            if rows:
                marks = ", ".join("?" for _ in cols)
                db.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})",
                               [tuple(r) for r in rows])
        target.store.after_copy(db)
        return {table: len(data[table]) for table, _ in schema.COPIED}

    return target._write(write_all)


def copy_state(state_dir: Path, to_url: str, timeout: float = 30.0) -> dict[str, Any]:
    """The command: the project's `.migrate/state.db` into the database at `to_url`.

    Returns {"from": path, "to": redacted URL, "rows": {table: count}} for the CLI to
    print. ConfigError (exit 2) for a bad URL or a missing source, RefusedError (exit
    4) when the target is not empty or a run holds a host.
    """
    from orchestrator.state.postgres import PgStore, is_postgres_url, redact

    if not is_postgres_url(to_url):
        raise ConfigError(f"state copy --to: {redact(to_url) if '@' in to_url else to_url!r} "
                          "is not a postgresql:// URL")
    db = state_dir / "state.db"
    if not db.exists():
        raise ConfigError(f"no embedded journal at {db}: nothing to copy")
    source = Journal(db, timeout=timeout)
    try:
        target = Journal(PgStore(to_url), timeout=timeout)
        try:
            rows = copy_journal(source, target)
        finally:
            target.close()
    finally:
        source.close()
    return {"from": str(db), "to": redact(to_url), "rows": rows}
