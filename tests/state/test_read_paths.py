"""The journal's read paths at fleet scale: the rows `status` reads, and how the team
journal plans the batched reads of current states.

`phase_rows` / `every_phase_row` hand the read views the stored rows (state as text)
instead of a PhaseRecord per row; they must say what `phase_records` says. On
PostgreSQL a batch of moves reads the current states of 500 hosts at a time; once
psycopg prepared that statement the server kept a generic plan made on a nearly empty
table, which compares each row with all 500 hosts (1.4 s a query at 30,000 step rows).
The journal's connection plans every statement for its parameters instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core.states import PhaseState, StepState
from orchestrator.state.journal import Journal
from orchestrator.state.open import StateSettings, open_state


@pytest.fixture
def journal(journal: Journal) -> Journal:
    """A journal on either store (tests/state/conftest.py), on migration `first`."""
    journal.use_migration("first")
    return journal


def fill(journal: Journal, migration: str, hosts: list[str]) -> None:
    journal.use_migration(migration)
    journal.create_run(f"{migration}-1", 1, hosts, "test", "phase", False, {})
    journal.create_run(f"{migration}-2", 2, hosts[:2], "test", "phase", False, {})
    with journal.batch():
        for h in hosts:
            journal.move_phase(f"{migration}-1", h, 1, PhaseState.RUNNING, "run_started")
            journal.move_phase(f"{migration}-1", h, 1, PhaseState.COMPLETED, "phase_completed")
        journal.move_phase(f"{migration}-2", hosts[0], 2, PhaseState.RUNNING, "run_started")
        journal.move_phase(f"{migration}-2", hosts[0], 2, PhaseState.ROLLING_BACK,
                           "trigger_fired", reason="trigger vram: 1301 > 1200")
        journal.move_phase(f"{migration}-2", hosts[1], 2, PhaseState.RUNNING, "run_started")


def test_phase_rows_say_what_phase_records_say(journal: Journal) -> None:
    fill(journal, "first", ["a", "b", "c"])
    fill(journal, "second", ["a", "d"])
    journal.use_migration("first")
    records = journal.phase_records()
    rows = journal.phase_rows()
    assert set(rows) == set(records) == {("a", 1), ("b", 1), ("c", 1), ("a", 2), ("b", 2)}
    for key, (state, run_id, updated_at, reason) in rows.items():
        rec = records[key]
        assert (state, run_id, updated_at, reason) == (
            rec.state.value, rec.run_id, rec.updated_at, rec.reason)
    assert rows[("a", 2)][0] == "rolling_back" and rows[("a", 2)][3] == \
        "trigger vram: 1301 > 1200"

    every = journal.every_phase_row()
    assert set(every) == {"first", "second"}
    assert every["first"] == rows
    assert set(every["second"]) == {("a", 1), ("d", 1), ("a", 2), ("d", 2)}
    assert every["second"][("d", 2)][:2] == ("running", "second-2")


def test_the_team_journal_plans_batched_reads_for_their_hosts(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = request.getfixturevalue("pg_server").create_database()
    journal = open_state(tmp_path / ".migrate", StateSettings(url=url))
    try:
        journal.use_migration("m")
        assert journal.store.read("SHOW plan_cache_mode") == [  # type: ignore[attr-defined]
            ("force_custom_plan",)]
        hosts = [f"h{i:03d}" for i in range(500)]
        sql = (f"SELECT host, step, state FROM steps WHERE run_id = ? AND host IN "
               f"({','.join('?' * len(hosts))})")
        # the run has no step rows yet, as when its first step starts: psycopg prepares
        # the statement on its 6th run, and the server would keep a generic plan from
        # the 6th run of the prepared statement on
        for _ in range(12):
            assert journal.store.read(sql, ("r", *hosts)) == []  # type: ignore[attr-defined]
        plans = journal.store.read(  # type: ignore[attr-defined]
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE 'SELECT host, step, state FROM steps%'")
        assert plans, "the statement was not prepared: nothing was checked"
        assert sum(g for g, _ in plans) == 0, plans
        assert sum(c for _, c in plans) > 0, plans
        # and the batched moves, which read that way, still move every host
        journal.create_run("r", 1, hosts, "test", "phase", False, {})
        with journal.batch():
            for h in hosts:
                journal.move_step("r", h, 1, "s", 0, StepState.RUNNING, "step_started")
        with journal.batch():
            for h in hosts:
                journal.move_step("r", h, 1, "s", 0, StepState.SUCCEEDED, "step_succeeded")
        assert {journal.step_state("r", h, "s") for h in hosts} == {StepState.SUCCEEDED}
    finally:
        journal.close()


def test_rollback_targets_follow_each_hosts_chain_in_a_few_queries(journal: Journal) -> None:
    hosts = [f"h{i:03d}" for i in range(600)]  # past one 500-host query
    journal.create_run("r1", 1, hosts, "migrate phase 1", "phase", False, {})
    with journal.batch():
        for h in hosts:
            journal.move_phase("r1", h, 1, PhaseState.RUNNING, "run_started")
    # a rollback run that undoes r1's steps on the first 300 hosts only
    journal.create_run("rb", 1, hosts, "migrate rollback", "rollback", False, {},
                       origin_runs={"r1": hosts[:300]})
    # a rollback of that rollback on 10 hosts, and two runs naming each other
    journal.create_run("rb2", 1, hosts[:10], "migrate rollback", "rollback", False, {},
                       origin_runs={"rb": hosts[:10]})
    journal.create_run("c1", 1, ["loop"], "x", "rollback", False, {}, origin_runs={"c2": ["loop"]})
    journal.create_run("c2", 1, ["loop"], "x", "rollback", False, {}, origin_runs={"c1": ["loop"]})
    queries = count_queries(journal)

    assert journal.rollback_targets(hosts, "rb") == {"r1": hosts[:300], "rb": hosts[300:]}
    assert journal.rollback_targets(hosts[:20], "rb2") == {"r1": hosts[:10], "rb2": hosts[10:20]}
    assert queries[0] <= 2 + 1 + 3, queries  # 2 chunks, then 1 chunk a link (rb2 -> rb -> r1)
    # from the run holding each host's phase: r1 everywhere; a host with none: the given run
    assert journal.rollback_targets(["h001", "zz", "h599"], "x", phase=1) == {
        "r1": ["h001", "h599"], "x": ["zz"]}
    assert journal.rollback_targets(["loop"], "c1") == {"c2": ["loop"]}  # c2 -> c1: seen


def count_queries(journal: Journal) -> list[int]:
    """Count the journal's reads from now on."""
    calls = [0]
    read = journal.store.read

    def counted(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        return read(*args, **kwargs)  # type: ignore[arg-type]

    journal.store.read = counted  # type: ignore[method-assign,assignment]
    return calls
