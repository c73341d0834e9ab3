"""core/timestamps.py: the one parser for the times we are handed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from orchestrator.core.timestamps import parse_time, parse_time_or_none
from orchestrator.state.records import utc_stamp


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-23T23:59:00.123Z", datetime(2026, 11, 23, 23, 59, 0, 123000, tzinfo=UTC)),
    ("2026-11-23T23:59:00Z", datetime(2026, 11, 23, 23, 59, tzinfo=UTC)),
    ("2026-11-23T23:58:00.123456789Z",  # Go's RFC 3339 with nanoseconds (Alertmanager)
     datetime(2026, 11, 23, 23, 58, 0, 123456, tzinfo=UTC)),
    ("2026-11-24T01:58:00+02:00", datetime(2026, 11, 23, 23, 58, tzinfo=UTC)),
    ("2026-11-23T23:59:00", datetime(2026, 11, 23, 23, 59, tzinfo=UTC)),  # ours: UTC
])
def test_parse_time_reads_every_form_we_are_handed(text: str, expected: datetime) -> None:
    got = parse_time(text)
    assert got == expected and got.tzinfo is not None


def test_the_journal_stamp_round_trips() -> None:
    moment = datetime(2026, 11, 23, 23, 59, 0, 123000, tzinfo=UTC)
    assert parse_time(utc_stamp(moment)) == moment


def test_a_zone_is_kept() -> None:
    got = parse_time("2026-11-24T01:58:00+02:00")
    assert got.utcoffset() == timedelta(hours=2)
    assert got.tzinfo == timezone(timedelta(hours=2))


def test_a_peer_time_without_zone_is_refused_when_asked() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        parse_time("2026-11-23T23:59:00", assume_utc=False)


@pytest.mark.parametrize("bad", ["", "yesterday", "2026-13-01T00:00:00Z", "12:00"])
def test_what_is_not_a_time_raises_or_is_none(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_time(bad)
    assert parse_time_or_none(bad) is None
    assert parse_time_or_none(None) is None
