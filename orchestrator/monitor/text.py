"""Trigger values as a line of text, for a rehearsal's operator: a cycle subscriber.

`rehearse` prints every trigger's latest value against its limit this often
(`App(trigger_view_every=...)`), e.g.

    triggers: vram_degradation@main=5400/6000  health_failure@main=pass PENDING
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.core.bus import Cycle


class TriggerLines:
    """Says one line of trigger values per `every` seconds of the monitor's clock."""

    def __init__(self, say: Callable[[str], None], every: float) -> None:
        self.say = say
        self.every = every
        self._last = 0.0

    def __call__(self, cycle: Cycle) -> None:
        if not self.every or not cycle.values or cycle.at - self._last < self.every:
            return
        self._last = cycle.at
        parts = []
        for v in sorted(cycle.values, key=lambda v: (v.host, v.trigger)):
            value = "no data" if v.value is None else f"{v.value:g}"
            shown = value + (f"/{v.threshold:g}" if v.threshold is not None else "")
            mark = "" if v.status == "ok" else f" {v.status.upper()}"
            parts.append(f"{v.trigger}@{v.host}={shown}{mark}")
        self.say("    triggers: " + "  ".join(parts))
