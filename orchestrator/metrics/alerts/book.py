"""The alert book: which alerts are firing right now, as push and pull report them.

Push (Alertmanager's webhook) and pull (Alertmanager's API, or Prometheus's `ALERTS`)
each write their own *view*; triggers read the union. Keeping the views apart is
what lets each path do its job without trusting the other:

- a push is incremental: `firing` alerts are added, `resolved` ones removed;
- a pull is a full answer for its source, so it replaces that source's view;
- a successful Alertmanager pull is also the truth about pushes that came from that
  Alertmanager: a pushed alert received before the pull was sent and absent from its
  answer is dropped (its `resolved` push was lost, e.g. while migrate was restarting);
- a failed pull keeps the source's last view (a flaky API must not resolve a firing
  alert) and records the error, which triggers report as "no data".

Writers are the receiver's handler threads and the poll thread; readers are the
trigger monitor and status. `snapshot()` hands out an immutable copy, so a trigger
evaluation is a pure function of it. A change to the merged set of firing alerts
calls every subscriber synchronously in the writer's thread, after the lock is
released: that is the path by which a push fires a trigger in well under 100 ms.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from orchestrator.config.inventory import Host
from orchestrator.metrics.alerts.matching import alert_matches

#: Names of the book's views.
PUSH = "push"
ALERTMANAGER = "alertmanager"
PROMETHEUS = "prometheus"

LabelKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class FiringAlert:
    """One firing alert, identified by its full label set (as Alertmanager does)."""

    name: str
    labels: Mapping[str, str]  # every label, alertname included
    since: datetime | None  # startsAt (UTC); first seen, for Prometheus ALERTS
    source: str  # PUSH, ALERTMANAGER or PROMETHEUS: the view that reported it
    annotations: Mapping[str, str] = field(default_factory=dict)
    generator_url: str = ""
    received_at: float = 0.0  # monotonic time the book got it (push pruning)

    @property
    def key(self) -> LabelKey:
        return tuple(sorted(self.labels.items()))

    def label_text(self) -> str:
        """`{component=ModelManagerAgent, instance=main:9400, severity=critical}`."""
        shown = ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items())
                          if k != "alertname")
        return "{" + shown + "}"

    def since_text(self) -> str:
        if self.since is None:
            return "an unknown time"
        return self.since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class BookChange:
    """What one write did to the merged set of firing alerts."""

    source: str
    fired: tuple[FiringAlert, ...]  # now firing, were not before
    resolved: tuple[FiringAlert, ...]  # were firing, are not any more
    version: int


@dataclass(frozen=True)
class AlertSnapshot:
    """The merged firing alerts at one moment, plus each pull source's last error."""

    alerts: tuple[FiringAlert, ...] = ()
    errors: Mapping[str, str] = field(default_factory=dict)
    version: int = 0

    def matching(self, alert: str, match: Mapping[str, str], host_label: str,
                 host: Host) -> list[FiringAlert]:
        """Every firing alert of that name for the host, oldest first."""
        found = [a for a in self.alerts
                 if alert_matches(a.labels, alert, match, host_label, host)]
        far = datetime.max.replace(tzinfo=UTC)
        return sorted(found, key=lambda a: (a.since or far, a.key))

    def firing_for(self, alert: str, match: Mapping[str, str], host_label: str,
                   host: Host) -> FiringAlert | None:
        """The oldest matching firing alert for the host, or None."""
        found = self.matching(alert, match, host_label, host)
        return found[0] if found else None


Subscriber = Callable[[BookChange], None]


def _ignore(line: str) -> None:
    return None


class AlertBook:
    """Thread-safe store of firing alerts; see the module docstring for the rules."""

    def __init__(self, log: Callable[[str], None] = _ignore,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._log = log
        self._monotonic = monotonic
        self._wall = wall
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._views: dict[str, dict[LabelKey, FiringAlert]] = {PUSH: {}}
        self._errors: dict[str, str] = {}
        self._version = 0
        self._subscribers: list[Subscriber] = []
        self._merged: dict[LabelKey, FiringAlert] = {}

    # --- subscribers ------------------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(change)` after every change of the firing set; returns an
        unsubscribe function. Callbacks run in the writer's thread: keep them short
        (set an event, fold the alert triggers), never block on I/O."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)
        return unsubscribe

    # --- writers ----------------------------------------------------------------------
    def apply_push(self, updates: Iterable[tuple[str, FiringAlert]]) -> BookChange | None:
        """Fold one webhook: ("firing", alert) adds or refreshes, ("resolved", alert) removes."""
        now = self._monotonic()
        with self._lock:
            view = self._views[PUSH]
            for status, alert in updates:
                if status == "resolved":
                    view.pop(alert.key, None)
                else:
                    view[alert.key] = replace(alert, source=PUSH, received_at=now)
            change = self._commit(PUSH)
        self._notify(change)
        return change

    def replace_view(self, source: str, alerts: Sequence[FiringAlert],
                     requested_at: float | None = None,
                     scope: Collection[str] | None = None) -> BookChange | None:
        """A pull's full answer replaces that source's view. For Alertmanager pulls,
        `requested_at` (monotonic time the request was sent) also prunes stale pushes of
        the alert names in `scope` (all names when None)."""
        with self._lock:
            old = self._views.get(source, {})
            view: dict[LabelKey, FiringAlert] = {}
            for alert in alerts:
                since = alert.since
                if since is None:  # Prometheus ALERTS carry no start: first seen
                    before = old.get(alert.key)
                    since = before.since if before is not None else self._wall()
                view[alert.key] = replace(alert, source=source, since=since)
            self._views[source] = view
            self._errors.pop(source, None)
            if source == ALERTMANAGER and requested_at is not None:
                pushed = self._views[PUSH]
                for key in [k for k, a in pushed.items()
                            if k not in view and a.received_at < requested_at
                            and (scope is None or a.name in scope)]:
                    del pushed[key]
            change = self._commit(source)
        self._notify(change)
        return change

    def pull_failed(self, source: str, error: str) -> None:
        """Keep the source's last view; remember why it is stale."""
        with self._lock:
            self._errors[source] = error
            self._version += 1
            self._changed.notify_all()

    # --- readers ----------------------------------------------------------------------
    def snapshot(self) -> AlertSnapshot:
        with self._lock:
            return AlertSnapshot(tuple(self._merged.values()), dict(self._errors),
                                 self._version)

    def firing_for(self, alert: str, match: Mapping[str, str], host_label: str,
                   host: Host) -> FiringAlert | None:
        """The oldest firing alert of that name and labels for the host, or None."""
        return self.snapshot().firing_for(alert, match, host_label, host)

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def wait_changed(self, version: int, timeout: float) -> int:
        """Block until the book's version passes `version` (or timeout); return it."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._version <= version:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return self._version

    # --- internals (lock held) ----------------------------------------------------------
    def _commit(self, source: str) -> BookChange | None:
        merged: dict[LabelKey, FiringAlert] = {}
        known = (PUSH, ALERTMANAGER, PROMETHEUS)
        for name in (*known, *sorted(set(self._views) - set(known))):
            for key, alert in self._views.get(name, {}).items():
                seen = merged.get(key)
                if seen is None:
                    merged[key] = alert
                elif alert.since is not None and (seen.since is None or alert.since < seen.since):
                    merged[key] = replace(seen, since=alert.since)  # the earliest start wins
        fired = tuple(a for k, a in merged.items() if k not in self._merged)
        resolved = tuple(a for k, a in self._merged.items() if k not in merged)
        self._merged = merged
        self._version += 1
        self._changed.notify_all()
        if not fired and not resolved:
            return None
        return BookChange(source, fired, resolved, self._version)

    def _notify(self, change: BookChange | None) -> None:
        if change is None:
            return
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(change)
            except Exception as exc:  # a subscriber's bug must not refuse the push
                self._log(f"alerts: subscriber {callback!r} failed: "
                          f"{type(exc).__name__}: {exc}")
