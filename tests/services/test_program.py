"""A program of migrations on one journal (SPEC section 2, "A program of migrations"):
two migration projects sharing one journal, on a shared SQLite file and on a real
PostgreSQL; phases never mix between migrations, a phase of one migration requires a
phase of the other (unknown migration, not completed, not observed long enough,
rolled back, met), a host is held by one run across migrations, and `status --all`
shows the program."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.projects import Proj, make_project

pytestmark = pytest.mark.integration

FIRST = "model-manager-agent"
SECOND = "tutoring-agent"

MIGRATION = """\
name: {name}
inventory: inventory/hosts.yml
poll_interval: 300ms
state: {{url: '{url}'}}
"""

PHASE = """\
phase: 1
name: one
steps:
  - id: one
    command: 'touch {{{{ vars.marker_dir }}}}/{name}-one'
    rollback_command: 'rm -f {{{{ vars.marker_dir }}}}/{name}-one'
  - id: soak
    wait: {wait}
"""

GATED = """\
phase: 1
name: gated on the first migration
requires:
  - {{migration: model-manager-agent, phase: 1, observed: {observed}}}
steps:
  - id: one
    command: 'touch {{{{ vars.marker_dir }}}}/second-one'
    rollback_command: 'rm -f {{{{ vars.marker_dir }}}}/second-one'
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        (tmp_path / "shared-state").mkdir()
        yield "sqlite:///../../shared-state/migrate.db"  # relative to each project
        return
    yield request.getfixturevalue("pg_server").create_database()


def projects(tmp_path: Path, url: str, observed: str = "8s",
             wait: str = "0s") -> tuple[Proj, Proj]:
    first = make_project(tmp_path / "first", MIGRATION.format(name=FIRST, url=url),
                         hosts=("main", "pc2"))
    first.phase(1, "one", PHASE.format(name="first", wait=wait))
    second = make_project(tmp_path / "second", MIGRATION.format(name=SECOND, url=url),
                          hosts=("main", "pc2"))
    second.phase(1, "gated", GATED.format(observed=observed))
    return first, second


def state(proj: Proj, host: str = "main", phase: str = "1") -> str:
    doc = json.loads(proj.migrate("--output", "json", "status").stdout)
    return str(doc["hosts"][host]["phases"][phase]["state"])


def test_two_migrations_share_a_journal_without_mixing_and_gate_on_each_other(
        tmp_path: Path, journal_url: str) -> None:
    first, second = projects(tmp_path, journal_url)

    # a migration the journal has never seen: an unmet requirement that names it
    res = second.migrate("phase", "1", "--host", "main")
    assert res.returncode == 4, res.stderr
    assert f"no record of migration {FIRST}" in res.stderr
    assert "journal at" in res.stderr

    assert first.migrate("phase", "1", "--host", "main").returncode == 0
    completed_at = time.monotonic()
    # completed, but not observed long enough: how long is left
    res = second.migrate("phase", "1", "--host", "main")
    assert res.returncode == 4, res.stderr
    assert f"migration {FIRST} phase 1 on main observed for 8s" in res.stderr
    assert "left" in res.stderr
    assert state(first) == "completed"
    assert state(second) == "pending"  # phase 1 of the first is not phase 1 of the second
    plan = second.migrate("plan", "1", "--host", "main")
    assert plan.returncode == 0, plan.stderr
    assert "NOT MET" in plan.stdout and "observed" in plan.stdout

    # on a host where the first migration never ran: not completed
    res = second.migrate("phase", "1", "--host", "pc2")
    assert res.returncode == 4 and "is pending" in res.stderr, res.stderr

    time.sleep(max(0.0, completed_at + 8.5 - time.monotonic()))
    res = second.migrate("phase", "1", "--host", "main")
    assert res.returncode == 0, res.stderr
    assert state(second) == "completed"

    # each project's history is its own; --all shows both
    own = json.loads(second.migrate("--output", "json", "history").stdout)["events"]
    assert {e["migration"] for e in own} == {SECOND}
    every = json.loads(second.migrate("--output", "json", "history", "--all").stdout)["events"]
    assert {e["migration"] for e in every} == {FIRST, SECOND}

    # the program at a glance
    program = json.loads(second.migrate("--output", "json", "status", "--all").stdout)
    assert set(program["migrations"]) == {FIRST, SECOND}
    first_phase = program["migrations"][FIRST]["phases"]["1"]
    assert first_phase["states"] == {"completed": 1}
    assert first_phase["observed_s"] >= 8
    assert any(SECOND in w for w in first_phase["waited_by"])
    assert program["migrations"][SECOND]["hosts"]["main"]["phases"]["1"]["state"] == "completed"
    text = second.migrate("status", "--all").stdout
    assert FIRST in text and SECOND in text and "waits for it" in text

    # the first migration rolled back: the requirement is unmet again, saying so
    assert first.migrate("rollback", "--host", "main", "--yes").returncode == 0
    assert second.migrate("rollback", "--host", "main", "--yes").returncode == 0
    res = second.migrate("phase", "1", "--host", "main")
    assert res.returncode == 4 and "rolled_back" in res.stderr, res.stderr


def test_a_host_is_held_by_one_run_across_migrations(tmp_path: Path, journal_url: str) -> None:
    first, second = projects(tmp_path, journal_url, observed="0s", wait="20s")
    second.phase(1, "gated", PHASE.format(name="second", wait="0s"))  # no requirement
    child = first.spawn("phase", "1", "--host", "main")
    try:
        deadline = time.monotonic() + 60
        while not (first.markers / "first-one").exists():
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.1)
        res = second.migrate("phase", "1", "--host", "main")
        assert res.returncode == 4, res.stderr
        assert f"held by another run of migration {FIRST}" in res.stderr
    finally:
        child.terminate()
        child.communicate(timeout=60)
    assert state(first) in ("rolled_back", "interrupted")
    assert second.migrate("phase", "1", "--host", "main").returncode == 0


def test_a_shared_sqlite_journal_whose_directory_is_missing_is_refused(tmp_path: Path) -> None:
    proj = make_project(tmp_path, MIGRATION.format(name=FIRST,
                                                   url="sqlite:///../nowhere/migrate.db"))
    proj.phase(1, "one", PHASE.format(name="first", wait="0s"))
    res = proj.migrate("status")
    assert res.returncode == 2, res.stderr
    assert "does not exist" in res.stderr and "Traceback" not in res.stderr


def test_an_existing_journal_is_adopted_by_the_first_migration_that_opens_it(
        tmp_path: Path) -> None:
    """A journal written before migrations had names: its rows become the opener's."""
    from orchestrator.state.journal import Journal

    proj = make_project(tmp_path, hosts=("main",))
    proj.phase(1, "one", PHASE.format(name="first", wait="0s"))
    assert proj.migrate("phase", "1", "--host", "main").returncode == 0
    db = proj.root / ".migrate" / "state.db"
    j = Journal(db)
    with j.transaction() as conn:  # as an older migrate left it
        for table in ("runs", "events", "phase_states"):
            conn.execute(f"UPDATE {table} SET migration = ''")
    j.close()
    assert state(proj) == "completed"
    j = Journal(db)
    assert j.migrations() == ["test-migration"]
    j.close()
