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
    """Set once when the work in flight must stop (a trigger fired, Ctrl-C, another host failed).

    A run has two: the forward token (`cancel`: stops the steps, and the phase rolls back)
    and the undo token (`undo()`: stops the rollback itself, and the phase is left
    `interrupted`). Cancelling the forward token never cuts an undo short; only the
    operator (a signal during an undo, or a second one) cancels the undo token. `child()`
    gives a token that is cancelled with its parent and may also be cancelled alone (an
    undo attempt cut at its deadline).
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str = ""
        self.by_operator = False
        self._children: list[CancelToken] = []
        self._undo: CancelToken | None = None
        self._lock = threading.Lock()

    def cancel(self, reason: str, by_operator: bool = False) -> None:
        """Cancel once; the first reason wins (it is what the journal and operator see)."""
        with self._lock:
            if self._event.is_set():
                return
            self.reason = reason
            self.by_operator = by_operator
            self._event.set()
            children = list(self._children)
        for child in children:
            child.cancel(reason, by_operator)

    def child(self) -> CancelToken:
        """A token cancelled whenever this one is (and which may be cancelled on its own)."""
        token = CancelToken()
        with self._lock:
            self._children.append(token)
            done = self._event.is_set()
        if done:
            token.cancel(self.reason, self.by_operator)
        return token

    def undo(self) -> CancelToken:
        """The token this run's rollback obeys (created on first use: `undoing` says so)."""
        with self._lock:
            if self._undo is None:
                self._undo = CancelToken()
            return self._undo

    @property
    def undoing(self) -> bool:
        """True once a rollback of this run has started (its undo token exists)."""
        return self._undo is not None

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
