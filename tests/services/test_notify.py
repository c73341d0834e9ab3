"""Webhooks: sent off the critical path, retried with backoff, never blocking."""

from __future__ import annotations

import threading
import time
from typing import Any

from orchestrator.core.model import Notifier
from orchestrator.notify.sender import Notifications


def test_a_dead_webhook_never_blocks_the_sender() -> None:
    release = threading.Event()
    calls: list[str] = []

    def hanging_post(url: str, payload: dict[str, Any]) -> None:
        calls.append(url)
        release.wait(10)
        raise OSError("connection refused")

    n = Notifications((Notifier("http://dead.invalid/hook", ("rollback_started",)),), "p",
                      post=hanging_post, attempts=2, max_wait=0.01)
    t0 = time.monotonic()
    for _ in range(20):
        n.send("rollback_started", "rolling back phase 3 on main")
    assert time.monotonic() - t0 < 0.1  # queued, not sent inline
    release.set()
    n.close(timeout=10)
    assert n.failed and n.failed[0][0] == "http://dead.invalid/hook"


def test_only_subscribed_events_are_sent_with_text_and_fields() -> None:
    got: list[dict[str, Any]] = []
    n = Notifications((Notifier("http://hook", ("trigger_fired",)),), "mma",
                      post=lambda url, payload: got.append(payload))
    n.send("phase_completed", "phase 1 completed")
    n.send("trigger_fired", "vram 1301 > 1200", host="main", phase=3)
    n.close()
    assert [p["event"] for p in got] == ["trigger_fired"]
    assert got[0]["text"] == "[migrate mma] vram 1301 > 1200"
    assert (got[0]["host"], got[0]["phase"]) == ("main", 3)
