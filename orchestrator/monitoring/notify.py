"""Webhook notifications, sent off the critical path.

`Notifications.send` only puts the message on a queue; one background thread
POSTs it (Slack-compatible JSON: a human `text` plus structured fields), retrying
with exponential backoff through tenacity. A dead webhook therefore never delays a
rollback. `close(timeout)` gives queued messages a bounded chance to leave before
the process exits.
"""

from __future__ import annotations

import json
import queue
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

from orchestrator.core.model import Notifier

Post = Callable[[str, dict[str, Any]], None]


def http_post(url: str, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - operator-set URL
        if resp.status >= 300:
            raise OSError(f"webhook answered {resp.status}")


class Notifications:
    def __init__(self, notifiers: tuple[Notifier, ...], project: str,
                 post: Post = http_post, attempts: int = 5, max_wait: float = 8.0,
                 log: Callable[[str], None] = lambda line: None) -> None:
        self.notifiers = notifiers
        self.project = project
        self.post = post
        self.attempts = attempts
        self.max_wait = max_wait
        self.log = log
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.failed: list[tuple[str, str]] = []

    def wants(self, event: str) -> bool:
        return any(event in n.events for n in self.notifiers)

    def send(self, event: str, text: str, **fields: Any) -> None:
        """Queue a message for every notifier subscribed to `event`; never blocks."""
        payload = {"text": f"[migrate {self.project}] {text}", "event": event,
                   "project": self.project, **fields}
        for n in self.notifiers:
            if event in n.events:
                self._ensure_thread()
                self._queue.put((n.url, payload))

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._worker, name="notify", daemon=True)
            self._thread.start()

    def _worker(self) -> None:
        import tenacity

        while True:
            item = self._queue.get()
            if item is None:
                return
            url, payload = item
            retrying = tenacity.Retrying(
                stop=tenacity.stop_after_attempt(self.attempts),
                wait=tenacity.wait_exponential(multiplier=0.2, max=self.max_wait),
                reraise=True)
            try:
                retrying(self.post, url, payload)
                self.sent.append((url, payload))
            except Exception as exc:  # a dead webhook is logged, never raised
                self.failed.append((url, str(exc)))
                self.log(f"notification to {url} failed after {self.attempts} attempts: {exc}")

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
