"""PostgreSQL: a poll cycle's samples, only added and never read back in their
transaction, are loaded by COPY after the pipelined body and before COMMIT
(`Appended`, `_PgConn.copy_rows`): every row in order, NULL, NaN, infinities and any text
kept, in the same transaction as the cycle's trigger states (both or neither)."""

from __future__ import annotations

import math

import pytest

from orchestrator.state.journal import Journal
from orchestrator.state.postgres import COPY_FROM

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def journal(pg_journal: Journal) -> Journal:
    """The module's PostgreSQL journal (tests/state/conftest.py)."""
    return pg_journal


def test_a_cycle_of_many_samples_reads_back_as_written(journal: Journal) -> None:
    n = COPY_FROM + 7
    odd = {3: math.nan, 4: math.inf, 5: -math.inf}
    samples = [("c1", f"h{i:05d}\t'\"\\é", 2, "vram", "m", i / 4,
                None if i % 9 == 0 else odd.get(i, i / 3 * 1e-5), i % 7 == 0,
                "pending" if i % 7 == 0 else "ok", 1200.0, None if i % 2 else 10.0)
               for i in range(n)]
    states = [(f"h{i:05d}", 2, "vram", "c1", "ok", float(i), 1200.0, None, None, "t")
              for i in range(n)]
    journal.record_cycle(samples, states)
    rows = journal.samples("c1")
    got = [(r["host"], r["t"], r["value"], r["breaching"], r["state"], r["baseline"])
           for r in rows]
    want = [(h, t, v, int(b), st, bl) for _, h, _, _, _, t, v, b, st, _, bl in samples]
    assert len(got) == n
    assert math.isnan(got[3][2]) and got[4][2] == math.inf and got[5][2] == -math.inf
    assert [g for i, g in enumerate(got) if i != 3] == [w for i, w in enumerate(want) if i != 3]
    assert journal.trigger_states(f"h{n - 1:05d}", 2)[0]["value"] == float(n - 1)


def test_a_copy_that_fails_leaves_neither_the_samples_nor_the_states(
        journal: Journal) -> None:
    class Unstorable:  # no adapter: COPY fails on the last row, after the body ran
        pass

    samples = [("c2", f"h{i}", 1, "t", "m", 0.0, 1.0, False, "ok", None, None)
               for i in range(COPY_FROM)]
    samples.append(("c2", "hx", 1, "t", "m", 0.0, Unstorable(), False, "ok", None, None))  # type: ignore[arg-type]
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error type
        journal.record_cycle(samples, [("c2host", 1, "t", "c2", "ok", 1.0, None, None, None,
                                        "ok")])
    assert journal.samples("c2") == []
    assert journal.trigger_states("c2host", 1) == []
    # and the journal still writes afterwards
    journal.record_cycle(samples[:COPY_FROM], [])
    assert len(journal.samples("c2")) == COPY_FROM


def test_trigger_states_leave_room_for_in_place_updates(journal: Journal) -> None:
    """Schema version 5: a cycle's upsert of every trigger state can update in place."""
    (options,) = journal.store.read("SELECT reloptions FROM pg_class "
                                    "WHERE relname = 'trigger_states'")
    assert options[0] == ["fillfactor=50"]
