"""Durations as operators write them: `500ms`, `30s`, `5m`, `2h`, `1h30m`."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: object) -> float:
    """Return seconds; raise ValueError with a message fit for an operator.

    A bare number is refused on purpose: `for: 5` could mean seconds or minutes.
    """
    if isinstance(text, bool) or not isinstance(text, str):
        raise ValueError(f"malformed duration {text!r}: write it with a unit, like 30s or 5m")
    s = text.strip()
    pos = 0
    total = 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f"malformed duration {text!r}: expected forms like 500ms, 30s, 5m, 1h30m")
    return total


def format_duration(seconds: float) -> str:
    """The inverse, for display: 90 -> '1m30s', 0.5 -> '500ms'."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    whole = int(round(seconds))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    out = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s else "")
    return out or "0s"
