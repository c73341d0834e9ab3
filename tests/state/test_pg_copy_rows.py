"""PostgreSQL: a poll cycle's samples and trigger states, never read back in their
transaction, are loaded by COPY after the pipelined body and before COMMIT (`Bulk`,
`_PgConn.copy_rows`; the states' upsert through a staging table): every row in order,
NULL, NaN, infinities and any text kept, the last row of a key winning, both tables in
one transaction (both or neither)."""

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


def test_whole_numbers_load_into_the_real_columns(journal: Journal) -> None:
    """COPY's binary format dumps each value as its column's type: a Python int (a
    threshold or reading that some future source hands over unconverted) lands in a
    double precision column as that number, not as an error."""
    samples = [("c4", f"h{i}", 1, "t", "m", i, i * 3, True, "ok", 1200, 7)
               for i in range(COPY_FROM)]
    states = [(f"c4h{i}", 1, "t", "c4", "ok", i * 3, 1200, 7, None, "ok")
              for i in range(COPY_FROM)]
    journal.record_cycle(samples, states)
    rows = journal.samples("c4")
    assert [(r["t"], r["value"], r["breaching"], r["baseline"]) for r in rows] == \
        [(float(i), float(i * 3), 1, 7.0) for i in range(COPY_FROM)]
    (state,) = journal.trigger_states(f"c4h{COPY_FROM - 1}", 1)
    assert (state["value"], state["threshold"], state["baseline"]) == \
        (float((COPY_FROM - 1) * 3), 1200.0, 7.0)


@pytest.mark.parametrize("state", ["", None])
def test_an_empty_string_and_a_null_in_a_text_column_stay_apart(journal: Journal,
                                                                state: str | None) -> None:
    """CSV tells '' from NULL only by quotes, and Python 3.11's csv quotes None too."""
    run = f"c3-{state!r}"
    samples = [(run, f"h{i}", 1, "t", "m", 0.0, None, False, state if i == 5 else "ok",
                None, None) for i in range(COPY_FROM)]
    journal.record_cycle(samples, [])
    rows = journal.samples(run)
    assert [r["state"] for r in rows[4:7]] == ["ok", state, "ok"]
    assert {r["value"] for r in rows} == {None}


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


def test_many_trigger_states_are_upserted_through_staging_the_last_row_of_a_key_winning(
        journal: Journal) -> None:
    n = COPY_FROM * 2
    states = [(f"u{i % (n // 2):05d}", 4, "vram", "u1", "ok", float(i), 1200.0, None, None,
               f"first {i}") for i in range(n)]  # each key twice: the second one counts
    journal.record_cycle([], states)
    assert [(r["value"], r["text"]) for r in journal.trigger_states("u00007", 4)] == [
        (float(n // 2 + 7), f"first {n // 2 + 7}")]
    # the next cycle replaces them all; what the staging table held is gone at commit
    journal.record_cycle([], [(f"u{i:05d}", 4, "vram", "u2", "firing", -1.0, None, None,
                               "2026-01-01T00:00:00.000Z", "again") for i in range(COPY_FROM)])
    got = journal.all_trigger_states()
    mine = {h: rows for (h, phase), rows in got.items() if phase == 4}
    assert len(mine) == n // 2
    assert {(r["status"], r["run_id"]) for h, rows in mine.items() for r in rows
            if int(h[1:]) < COPY_FROM} == {("firing", "u2")}
    assert mine["u00007"][0]["breaching_since"] == "2026-01-01T00:00:00.000Z"
