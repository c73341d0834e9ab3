"""PostgreSQL: a big INSERT (a 10,000-host poll cycle's samples and trigger states) goes
as one JSON parameter that the server unpacks (`_PgConn.json_rows`), with the effect of
writing the rows one by one: every row in order, NULLs kept, the last row of a conflict
key winning; rows JSON cannot carry (NaN) go the old way and are kept as they are."""

from __future__ import annotations

import math

import pytest

from orchestrator.state.journal import Journal
from orchestrator.state.postgres import JSON_FROM

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def journal(pg_journal: Journal) -> Journal:
    """The module's PostgreSQL journal (tests/state/conftest.py)."""
    return pg_journal


def test_a_big_cycle_reads_back_as_written_row_by_row(journal: Journal) -> None:
    n = JSON_FROM * 3
    samples = [("j1", f"h{i:04d}", 2, "vram", "m", i / 4, None if i % 9 == 0 else i / 3 * 1e-5,
                i % 7 == 0, "pending" if i % 7 == 0 else "ok", 1200.0, None if i % 2 else 10.0)
               for i in range(n)]
    states = [(f"h{i % 50:04d}", 2, "vram", "j1", "ok", float(i), 1200.0, None,
               None if i % 3 else "2026-01-01T00:00:00.000Z", f"text 'quoted' \"{i}\" é")
              for i in range(n)]  # each host's key twelve times over: the last one counts
    journal.record_cycle(samples, states)
    rows = journal.samples("j1")
    assert [(r["host"], r["t"], r["value"], r["breaching"], r["state"], r["baseline"])
            for r in rows] == [(h, t, v, int(b), st, bl)
                               for _, h, _, _, _, t, v, b, st, _, bl in samples]
    for h in (0, 7, 49):
        last = max(i for i in range(n) if i % 50 == h)
        (got,) = journal.trigger_states(f"h{h:04d}", 2)
        assert (got["value"], got["text"], got["breaching_since"]) == (
            float(last), f"text 'quoted' \"{last}\" é",
            None if last % 3 else "2026-01-01T00:00:00.000Z")
    # the next cycle replaces the states, as the one-row upsert does
    journal.record_cycle([], [(f"h{i:04d}", 2, "vram", "j1", "firing", -1.0, None, None, None,
                               "x") for i in range(n)])
    assert journal.trigger_states("h0007", 2)[0]["status"] == "firing"


def test_rows_json_cannot_carry_are_written_as_they_are(journal: Journal) -> None:
    samples = [("j2", f"h{i:04d}", 1, "t", "m", 0.0, math.nan if i == 3 else math.inf,
                False, "ok", None, None) for i in range(JSON_FROM)]
    journal.record_cycle(samples, [])
    values = [r["value"] for r in journal.samples("j2")]
    assert len(values) == JSON_FROM and math.isnan(values[3])
    assert values[:3] == [math.inf] * 3
