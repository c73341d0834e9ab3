"""`status --all`'s document: counts per phase and state, and how long a phase has been
observed, found from the newest completion stamp without parsing 40,000 of them.

Stamps of one shape order as text; a journal may hold stamps of two shapes (ours,
`...HH:MM:SS.mmmZ`, and an older writer's `+00:00`), and the newest of all is the one
that counts whichever shape it has.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.config.project import load_project
from orchestrator.core.states import PhaseState as P
from orchestrator.reporting.views import program_document, program_text
from orchestrator.state.base import Conn
from orchestrator.state.journal import Journal
from orchestrator.state.open import StateSettings, open_state
from tests.support.projects import make_project

Opener = Callable[[Path], Journal]


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest) -> Opener:
    """Opens the project's journal: embedded, or on a fresh PostgreSQL database."""
    url = request.getfixturevalue("pg_server").create_database() \
        if request.param == "postgresql" else None
    return lambda root: open_state(root / ".migrate", StateSettings(url=url))

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


def test_observed_is_since_the_newest_completion_whatever_its_stamp_shape(
        tmp_path: Path, opener: Opener) -> None:
    proj = make_project(tmp_path, "name: prog\ninventory: inventory/hosts.yml\n",
                        hosts=("a", "b", "c", "d", "e"))
    proj.phase(1, "p1", "phase: 1\nsteps:\n  - id: w\n    wait: 1ms\n")
    proj.phase(2, "p2", "phase: 2\nrequires: [1]\nsteps:\n  - id: w\n    wait: 1ms\n")
    project, _ = load_project(proj.root)
    j = opener(proj.root)
    j.use_migration("prog")
    j.create_run("r1", 1, ["a", "b", "c", "d", "e"], "migrate phase 1", "phase", False, {})
    for h in ("a", "b", "c", "d", "e"):
        j.move_phase("r1", h, 1, P.RUNNING, "run_started")
        if h != "e":
            j.move_phase("r1", h, 1, P.COMPLETED, "phase_completed")
    stamps = {"a": "2026-12-07T11:00:00.000Z",   # 1 h ago, ours
              "b": "2026-12-07T12:30:00+01:00",  # 30 min ago: the greatest text of all
              "c": "2026-12-07T11:40:00.500Z",   # 19m59.5s ago, ours
              "d": "2026-12-07T11:50:00+00:00"}  # 10 min ago, another shape: the newest

    def stamp(db: Conn) -> None:
        for h, at in stamps.items():
            db.execute("UPDATE phase_states SET updated_at = ? WHERE host = ? AND phase = 1",
                       (at, h))

    j.store.write(stamp)
    doc = program_document(project, j, now=NOW)
    counts_only = program_document(project, j, now=NOW, hosts=False)
    j.close()

    prog = doc["migrations"]["prog"]
    assert prog["host_count"] == 5
    # the text's document: the same phases and count, no host's rows
    assert counts_only["migrations"]["prog"] == {"host_count": 5, "phases": prog["phases"]}
    assert program_text(counts_only) == program_text(doc)
    assert prog["phases"]["1"]["states"] == {"completed": 4, "running": 1}
    assert prog["phases"]["1"]["observed_s"] == 600.0
    assert prog["phases"]["1"]["waited_by"] == ["prog phase 2"]
    assert list(prog["hosts"]) == ["a", "b", "c", "d", "e"]
    assert prog["hosts"]["d"]["phases"]["1"] == {
        "state": "completed", "run_id": "r1", "updated_at": "2026-12-07T11:50:00+00:00"}
    assert "2" not in prog["phases"]  # never started anywhere
    assert "phase 1: 4 completed, 1 running; observed 10m" in program_text(doc)


def test_observed_among_stamps_of_our_shape_is_the_newest(tmp_path: Path,
                                                          opener: Opener) -> None:
    proj = make_project(tmp_path, "name: prog\ninventory: inventory/hosts.yml\n",
                        hosts=tuple(f"h{i}" for i in range(12)))
    proj.phase(1, "p1", "phase: 1\nsteps:\n  - id: w\n    wait: 1ms\n")
    project, _ = load_project(proj.root)
    j = opener(proj.root)
    j.use_migration("prog")
    hosts = [f"h{i}" for i in range(12)]
    j.create_run("r1", 1, hosts, "migrate phase 1", "phase", False, {})
    with j.batch():
        for h in hosts:
            j.move_phase("r1", h, 1, P.RUNNING, "run_started")
            j.move_phase("r1", h, 1, P.COMPLETED, "phase_completed")

    def stamp(db: Conn) -> None:  # h9 finished last; h10 and h11 sort after it by name
        for i, h in enumerate(hosts):
            minute = 30 if h == "h9" else i
            db.execute("UPDATE phase_states SET updated_at = ? WHERE host = ?",
                       (f"2026-12-07T11:{minute:02d}:00.000Z", h))

    j.store.write(stamp)
    doc = program_document(project, j, now=NOW)
    j.close()
    assert doc["migrations"]["prog"]["phases"]["1"]["observed_s"] == 1800.0
