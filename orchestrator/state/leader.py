"""HA `watch`: of the watchers of one host set, exactly one is active.

Leadership is a mutex that dies with its holder, nothing more: a PostgreSQL
session-level advisory lock under the team journal (released by the server when the
active watcher's process, machine or connection dies), or flock(2) on a file beside
the embedded journal. The standbys try to take it every `poll` seconds, so a standby
takes over within (server noticing the death: at once for a process, ~5 s for a
machine, thanks to the session's TCP keepalives) + `poll`, well inside 10 s.

Leadership is not what makes a trigger acted on once; the host lock is. A watcher
that rolls back first takes the host lock (`Journal.acquire`) and re-reads the
phase state under it, so even two watchers that both believed themselves active for
a moment (a partitioned leader not yet aware it lost its session) cannot both roll
the phase back. Leadership keeps the standbys from trying.

The row in `leaders` (machine, pid, since) is for people: `status` can say who is
watching. `role` is what `/metrics` exports.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from orchestrator.state.journal import Journal
from orchestrator.state.records import LeaderRecord

ACTIVE = "active"
STANDBY = "standby"


def watch_key(hosts: list[str]) -> str:
    """The leadership key of `migrate watch` on these hosts (order and repeats ignored)."""
    return "watch:" + ",".join(sorted(set(hosts)))


class Leadership:
    """`try_acquire()` -> bool, `is_leader`, `release()`; `wait()` is the standby loop."""

    def __init__(self, journal: Journal, key: str, command: str = "migrate watch",
                 on_lost: Callable[[str], None] | None = None) -> None:
        self.journal = journal
        self.key = key
        self.command = command
        self.lost_reason: str | None = None
        self._on_lost = on_lost
        self._lock = journal.leader_lock(key, self._lost)

    def _lost(self, reason: str) -> None:
        """The leader's session dropped (database restarted, network): we are a standby now."""
        self.lost_reason = reason
        if self._on_lost is not None:
            self._on_lost(reason)

    def try_acquire(self) -> bool:
        """Become the active one if nobody is; True if we are (already, or now)."""
        if self._lock.held:
            return True
        if not self._lock.try_lock():
            return False
        self.lost_reason = None
        try:
            self.journal.set_leader(self.key, self.command)
        except Exception:  # the lock is the truth; the row is only for display
            pass
        return True

    @property
    def is_leader(self) -> bool:
        return self._lock.held

    def confirm(self) -> bool:
        """Still the active one, asked of the database now (a round trip): what a watcher
        checks right before it acts, so that a deposed one never starts an undo."""
        if not self._lock.held:
            return False
        check = getattr(self._lock, "check", None)
        if check is not None:
            try:
                check()
            except Exception as exc:  # the session is gone: so is the leadership
                self._lost(f"the leader's session is gone ({exc})")
                return False
        return self._lock.held

    @property
    def role(self) -> str:
        return ACTIVE if self.is_leader else STANDBY

    def current(self) -> LeaderRecord | None:
        """Who is active (machine, pid, command, since), if anyone alive is."""
        return self.journal.leader(self.key)

    def wait(self, stop: threading.Event, poll: float = 1.0) -> bool:
        """Stand by until we are the active one (True) or `stop` is set (False)."""
        while not stop.is_set():
            try:
                if self.try_acquire():
                    return True
            except Exception:  # noqa: S112 - journal unreachable: keep standing by
                pass
            if stop.wait(poll):
                break
        return False

    def release(self) -> None:
        if self._lock.held:
            try:
                self.journal.clear_leader(self.key)
            except Exception:  # noqa: S110 - the lock going is what matters
                pass
        self._lock.unlock()
