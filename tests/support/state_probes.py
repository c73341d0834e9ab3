"""What a project's journal says, read the way an operator or a second process reads it:
`migrate status` for a phase's state, the database itself for the locks still held."""

from __future__ import annotations

import json
import sqlite3

from tests.support.projects import Proj


def status_of(proj: Proj) -> str:
    """The state `migrate status` shows for phase 1 on host main."""
    doc = json.loads(proj.migrate("--output", "json", "status").stdout)
    return str(doc["hosts"]["main"]["phases"]["1"]["state"])


def locks(proj: Proj) -> list[tuple[str, str]]:
    """(host, run id) of every lock in the journal: a run that ended holds none."""
    db = sqlite3.connect(proj.root / ".migrate" / "state.db")
    try:
        return db.execute("SELECT host, run_id FROM locks").fetchall()
    finally:
        db.close()
