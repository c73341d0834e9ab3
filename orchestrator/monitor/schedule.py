"""When the trigger monitor polls: every poll interval on the monitor's clock, with
pushed alerts folded as they arrive in between."""

from __future__ import annotations

import threading
from collections.abc import Callable

from orchestrator.core.clock import Clock


def poll_every(interval: float, clock: Clock, stop: threading.Event, wake: threading.Event,
               cycle: Callable[[], None], woken: Callable[[], None]) -> None:
    """Call `cycle` every `interval` seconds until `stop` is set. When `wake` is set in
    between (a pushed alert, or the stop), call `woken` at once and wait on for the next
    cycle. A cycle that overran the interval is followed at once by the next, never by a
    burst of the ones it missed."""
    next_at = clock.monotonic()
    while not stop.is_set():
        cycle()
        next_at += interval
        delay = next_at - clock.monotonic()
        if delay < 0:  # a slow cycle: skip ahead rather than burst
            next_at, delay = clock.monotonic(), 0
        while wake.wait(delay):  # woken early: a pushed alert, or stop
            wake.clear()
            if stop.is_set():
                return
            woken()
            delay = next_at - clock.monotonic()
            if delay <= 0:
                break
