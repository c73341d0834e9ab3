"""Waves and the failure budget: how a run carries a change across many hosts.

`waves: [1, 10%, 50%, 100%]` are cumulative shares of the run's hosts in
inventory order: wave 1 is one canary host, wave 2 brings the total to 10%, and so
on. `plan_waves` turns such a list into lists of hosts; every host is in exactly
one wave and the last wave always ends at 100%.

`FailureBudget` decides, failure by failure, whether the run absorbs it (the host
is rolled back on its own and the run goes on) or the budget is exhausted (the
run stops and rolls back its wave or the whole run, by `on_fire`).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

from orchestrator._exceptions import ConfigError
from orchestrator.config.inventory import Host


def count_of(spec: int | str, total: int) -> int:
    """A count (`3`) or a share (`10%`) of `total`, a share rounded up to a whole host."""
    if isinstance(spec, int):
        return spec
    text = str(spec).strip()
    if text.endswith("%"):
        pct = float(text[:-1])
        return math.ceil(total * pct / 100.0 - 1e-9)
    return int(text)


def parse_spec(text: str) -> int | str:
    """One wave or budget as given on the command line or in YAML: `1`, `10%`."""
    t = text.strip()
    try:
        if t.endswith("%"):
            v = float(t[:-1])
            if not 0 <= v <= 100:
                raise ValueError
            return t
        n = int(t)
        if n < 0:
            raise ValueError
        return n
    except ValueError:
        raise ConfigError(f"--waves/--max-failed: {text!r} is not a count or a share "
                          "like 10%") from None


def plan_waves(specs: tuple[int | str, ...], hosts: list[Host]) -> list[list[Host]]:
    if not specs:
        return [hosts] if hosts else []
    total = len(hosts)
    waves: list[list[Host]] = []
    done = 0
    for spec in specs:
        upto = min(total, max(count_of(spec, total), done))
        if upto > done:
            waves.append(hosts[done:upto])
            done = upto
    if done < total:
        waves.append(hosts[done:])
    return waves


@dataclass
class FailureBudget:
    """At most `allowed` hosts may fail in a run before it stops."""

    allowed: int
    failed: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, spec: int | str, total: int) -> FailureBudget:
        return cls(count_of(spec, total))

    def absorbs(self, host: str) -> bool:
        """Count one more failed host; True while the run stays within the budget."""
        with self._lock:
            if host not in self.failed:
                self.failed.append(host)
            return len(self.failed) <= self.allowed

    def would_absorb(self, host: str) -> bool:
        with self._lock:
            return len(set(self.failed) | {host}) <= self.allowed
