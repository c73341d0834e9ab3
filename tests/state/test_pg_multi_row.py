"""PostgreSQL: an INSERT of many rows goes as multi-row statements with the effect of row
by row (the poll cycle's 60,000 rows at 10,000 hosts): chunks past the parameter limit,
the last row of a conflict key winning, and statements that cannot be merged left alone."""

from __future__ import annotations

import pytest

from orchestrator.state.journal import Journal
from orchestrator.state.postgres import _multi_row

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def journal(pg_journal: Journal) -> Journal:
    """The module's PostgreSQL journal (tests/state/conftest.py)."""
    return pg_journal


def test_many_rows_and_a_repeated_key_read_as_if_written_one_by_one(journal: Journal) -> None:
    samples = [("r1", f"h{i:05d}", 1, "vram", "m", 1.0, float(i), False, "ok", None, None)
               for i in range(5003)]  # six statements of at most 1,000 rows (x12 params)
    states = [(f"h{i % 7}", 1, "vram", "r1", "ok", float(i), None, None, None, f"t{i}")
              for i in range(30)]  # each host's key seven times over: the last one counts
    journal.record_cycle(samples, states)
    rows = journal.samples("r1")
    assert [(r["host"], r["value"]) for r in rows] == [(s[1], s[6]) for s in samples]
    for h in range(7):
        last = max(i for i in range(30) if i % 7 == h)
        got = journal.trigger_states(f"h{h}", 1)
        assert [(s["value"], s["text"]) for s in got] == [(float(last), f"t{last}")]


def test_only_inserts_with_the_same_effect_are_merged() -> None:
    assert _multi_row("INSERT INTO t (a, b) VALUES (?, ?)") == ("INSERT INTO t (a, b)", 2, "", ())
    assert _multi_row("INSERT INTO t (a, b) VALUES (?, ?) ON CONFLICT (a) DO UPDATE SET "
                      "b = excluded.b")[3] == (0,)  # type: ignore[index]
    assert _multi_row("INSERT INTO t (a, b) VALUES (?, ?) ON CONFLICT (a) DO UPDATE SET "
                      "b = t.b + 1") is None  # depends on the row before: one by one
    assert _multi_row("UPDATE t SET a = ? WHERE b = ?") is None
    assert _multi_row("INSERT INTO t (a, b) VALUES (?, 1)") is None
