"""Time as a parameter: the engine and trigger logic never call `time` directly.

`SystemClock` is the real one; `FakeClock` (shipped here, like httpx ships
MockTransport next to its transports) lets tests run a `for: 5m` trigger in
microseconds and check the exact moment it fires.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class CancelToken:
    """Set once when the work in flight must stop (a trigger fired, Ctrl-C, another host failed)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str = ""
        self.by_operator = False

    def cancel(self, reason: str, by_operator: bool = False) -> None:
        """Cancel once; the first reason wins (it is what the journal and operator see)."""
        if not self._event.is_set():
            self.reason = reason
            self.by_operator = by_operator
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if cancelled meanwhile."""
        return self._event.wait(max(0.0, seconds))


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float, cancel: CancelToken | None = None) -> bool:
        """Sleep; return True if `cancel` fired first."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float, cancel: CancelToken | None = None) -> bool:
        if cancel is not None:
            return cancel.wait(seconds)
        time.sleep(max(0.0, seconds))
        return False


class FakeClock:
    """A clock that moves only when slept on or advanced; sleeping never blocks."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def sleep(self, seconds: float, cancel: CancelToken | None = None) -> bool:
        if cancel is not None and cancel.cancelled:
            return True
        self.advance(max(0.0, seconds))
        return cancel.cancelled if cancel is not None else False
