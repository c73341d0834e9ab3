"""Webhook notifications, sent off the critical path.

`Notifications.send` only puts the message on a queue; one background thread
POSTs it (Slack-compatible JSON: a human `text` plus structured fields), retrying
with exponential backoff through tenacity. A dead webhook therefore never delays a
rollback. `close(timeout)` gives queued messages a bounded chance to leave before
the process exits.

One worker at most: `send` may be called from the engine and the monitor's threads at
once, so starting the worker is done under a lock (two racing first sends used to start
two workers, and `close()` stopped only one of them).

A webhook URL's path and query are its secret (Slack's `T000/B000/XXXX`, a `?token=`):
whatever this module writes (its log lines) names the webhook by `redact(url)`,
scheme and host only.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from orchestrator.core.http import HttpClient
from orchestrator.core.model import Notifier

Post = Callable[[str, dict[str, Any]], None]


def redact(url: str) -> str:
    """`https://hooks.example.org/…`: the URL without userinfo, path, query or fragment."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<webhook>"
    if not parts.scheme or not host:
        return "<webhook>"
    return f"{parts.scheme}://{host}{port}/…"


def _scrub(text: str, url: str) -> str:
    """`text` with the URL, and its path on its own, replaced by the redacted form."""
    from urllib.parse import urlsplit

    text = text.replace(url, redact(url))
    try:
        secret = urlsplit(url).path.strip("/")
    except ValueError:
        secret = ""
    return text.replace(secret, "…") if len(secret) > 3 else text


class PooledPost:
    """The webhook transport: POST the JSON through a pooled client, so a burst of
    notifications (a rollback on a fleet) reuses one kept-alive connection per webhook
    host. A non-2xx answer or no answer raises, for the worker's retries."""

    def __init__(self, client: HttpClient | None = None, timeout: float = 5.0) -> None:
        self.client = client if client is not None else HttpClient(per_host=2, hosts=8)
        self.timeout = timeout

    def __call__(self, url: str, payload: dict[str, Any]) -> None:
        answer = self.client.post_json(url, payload, self.timeout)  # HttpUnavailable
        if not answer.ok:
            raise OSError(f"webhook answered {answer.status}")

    def close(self) -> None:
        self.client.close()


class Notifications:
    def __init__(self, notifiers: tuple[Notifier, ...], project: str,
                 post: Post | None = None, attempts: int = 5, max_wait: float = 8.0,
                 log: Callable[[str], None] = lambda line: None) -> None:
        self.notifiers = notifiers
        self.project = project
        self._transport: PooledPost | None = None  # our own transport: closed with us
        if post is None:
            post = self._transport = PooledPost()
        self.post: Post = post
        self.attempts = attempts
        self.max_wait = max_wait
        self.log = log
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards _thread: one worker, whoever sends first
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
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                from orchestrator.core.supervision import spawn

                self._thread = spawn("notify", self._worker)

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
                why = _scrub(str(exc), url)
                self.failed.append((url, why))  # in memory only, never written
                self.log(f"notification to {redact(url)} failed after {self.attempts} "
                         f"attempts: {why}")

    def close(self, timeout: float = 5.0) -> None:
        """Let queued messages leave (up to `timeout`), then stop the worker."""
        with self._lock:
            thread = self._thread
            if thread is None:
                self._close_transport()
                return
            self._queue.put(None)
        thread.join(timeout)
        with self._lock:
            if self._thread is thread and not thread.is_alive():
                self._thread = None
                self._close_transport()

    def _close_transport(self) -> None:
        if self._transport is not None:
            self._transport.close()
