"""`AlertService`: everything the `alert:` triggers of one phase run (or one watch) need,
with one owner and one lifetime.

It holds the `AlertBook`, the push `AlertReceiver` (when `alertmanager.listen` is set)
and an `AlertPuller` polled in its own thread every poll interval (Alertmanager's API
when `alertmanager.url` is set; Prometheus's `ALERTS` when there is no `alertmanager:`
at all). Triggers read it through `reading(trigger, host)`, a pure function of the
book's snapshot, and learn of changes through `on_change`, which push and pull both
reach: a push calls it from the receiver's thread before the HTTP 200 is sent.

Nothing listens or polls until `start()`; `close()` (or leaving the `with`) stops both.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping

from orchestrator._exceptions import ConfigError, Problem
from orchestrator.config.inventory import Host
from orchestrator.core.model import Project, Trigger
from orchestrator.core.supervision import spawn
from orchestrator.metrics.alerts.book import AlertBook, AlertSnapshot, Subscriber
from orchestrator.metrics.alerts.condition import AlertReading, alert_reading
from orchestrator.metrics.alerts.pull import AlertPuller
from orchestrator.metrics.alerts.receiver import AlertReceiver


def _ignore(line: str) -> None:
    return None


class AlertService:
    def __init__(self, book: AlertBook, *, receiver: AlertReceiver | None = None,
                 puller: AlertPuller | None = None, poll_interval: float = 5.0,
                 log: Callable[[str], None] = _ignore) -> None:
        self.book = book
        self.receiver = receiver
        self.puller = puller
        self.poll_interval = poll_interval
        self.log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    @classmethod
    def for_triggers(cls, project: Project, triggers: Iterable[Trigger],
                     log: Callable[[str], None] = _ignore,
                     environ: Mapping[str, str] = os.environ) -> AlertService | None:
        """The service for these triggers, or None when none of them is an `alert:` one.
        ConfigError when the receiver's token is not in the environment."""
        names = sorted({t.alert.name for t in triggers if t.alert is not None})
        if not names:
            return None
        am = project.alertmanager
        book = AlertBook(log=log)
        receiver = AlertReceiver.from_config(am, book, log, environ) \
            if am is not None and am.listen else None
        timeout = max(0.2, min(5.0, project.poll_interval * 0.8))
        puller = None
        if am is not None and am.url:
            puller = AlertPuller(book, names, alertmanager_url=am.url, timeout=timeout)
        elif am is None and project.prometheus_url:
            puller = AlertPuller(book, names, prometheus_url=project.prometheus_url,
                                 timeout=timeout)
        if receiver is None and puller is None:
            raise ConfigError([Problem(
                "migration.yaml", am.line if am is not None else 0,
                f"alert triggers ({', '.join(names)}) need a source: alertmanager.listen "
                "(push), alertmanager.url (pull) or prometheus.url (Prometheus ALERTS)")])
        return cls(book, receiver=receiver, puller=puller,
                   poll_interval=project.poll_interval, log=log)

    # --- lifetime ---------------------------------------------------------------------
    def start(self) -> None:
        """Listen (if configured), pull once now so the first evaluation sees the truth,
        then keep pulling every poll interval in a background thread."""
        if self.receiver is not None:
            self.receiver.start()
        if self.puller is not None and self._thread is None:
            self.refresh()
            self._stop.clear()
            self._thread = spawn("alert-pull", self._loop)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=(self.puller.timeout if self.puller else 0) + 5)
        self._thread = None
        if self.puller is not None:
            self.puller.close()
        if self.receiver is not None:
            self.receiver.close()

    def __enter__(self) -> AlertService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.refresh()
            except Exception as exc:  # never let the pull thread die silently
                self.log(f"alerts: pull failed unexpectedly: {type(exc).__name__}: {exc}")

    # --- reading ----------------------------------------------------------------------
    def refresh(self, timeout: float | None = None) -> str | None:
        """Pull once now (`watch --once` calls this); the error text, or None."""
        if self.puller is None:
            return None
        error = self.puller.poll(timeout)
        if error and not self._failing:
            self.log(f"alerts: cannot read {self.puller.describe()}: {error} "
                     "(keeping the last answer; pushes still count)")
        elif not error and self._failing:
            self.log(f"alerts: {self.puller.describe()} answers again")
        self._failing = error is not None
        return error

    def snapshot(self) -> AlertSnapshot:
        return self.book.snapshot()

    def reading(self, trigger: Trigger, host: Host,
                snapshot: AlertSnapshot | None = None) -> AlertReading:
        """The `alert:` trigger's reading on the host (pass one snapshot for a whole cycle)."""
        if trigger.alert is None:
            raise ValueError(f"trigger {trigger.name} is not an alert trigger")
        return alert_reading(trigger.alert, snapshot or self.book.snapshot(), host)

    def on_change(self, callback: Subscriber) -> Callable[[], None]:
        """Subscribe to changes of the firing set (push or pull); returns unsubscribe."""
        return self.book.subscribe(callback)

    def describe(self) -> list[str]:
        """One line per path, for the operator when a phase or watch starts."""
        lines = []
        if self.receiver is not None:
            auth = "Bearer token required" if self.receiver.requires_token else "no token"
            lines.append(f"alerts: receiving Alertmanager pushes at {self.receiver.url} "
                         f"({auth})")
        if self.puller is not None:
            lines.append(f"alerts: polling {self.puller.describe()} every "
                         f"{self.poll_interval:g}s")
        return lines
