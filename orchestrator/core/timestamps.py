"""Reading a time written as text: the one parser for every timestamp we are handed.

The journal writes `2026-11-23T23:59:00.123Z` (state/records.py `utc_stamp`), a few
files write `2026-11-23T23:59:00Z`, and Alertmanager writes Go's RFC 3339 with
nanoseconds (`2026-11-23T23:58:00.123456789Z`). Python's `datetime.fromisoformat`
reads all of these since 3.11 (the `Z`, and fractions beyond microseconds, which it
truncates), so every reader goes through `parse_time` here rather than through its own
`strptime` format that breaks on the next variant.

    parse_time("2026-11-23T23:59:00.123Z")          -> aware datetime in UTC
    parse_time("2026-11-23T23:59:00")               -> read as UTC (assume_utc=True)
    parse_time("2026-11-23T23:59:00", assume_utc=False)  -> ValueError: no time zone
    parse_time_or_none(None) / ("junk")             -> None
"""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(text: str, *, assume_utc: bool = True) -> datetime:
    """An ISO 8601 / RFC 3339 time as an aware datetime.

    A time without a zone is UTC when `assume_utc` (our own files write UTC), else a
    ValueError saying so (a peer's time without a zone is ambiguous). A text that is
    not a time raises ValueError."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a time")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        if not assume_utc:
            raise ValueError(f"{text!r} has no time zone")
        moment = moment.replace(tzinfo=UTC)
    return moment


def parse_time_or_none(text: str | None) -> datetime | None:
    """`parse_time`, or None for no text or text that is not a time (for views that show
    what they can rather than fail)."""
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError:
        return None
