"""SIGINT and SIGTERM acted on by a thread of their own, never inside the signal handler.

Why: Python runs a signal handler in the main thread between two of its bytecodes,
wherever that thread is, including inside a lock it holds (a `CancelToken`'s, the
condition of a `threading.Event`, the console's). A handler that cancels a token or sets
an event then waits forever for a lock its own thread holds: CI saw `migrate rollback`
hang after SIGTERM with its undo never stopped and its 15 s last resort never started.
The handler here only writes the signal's number into a pipe, which takes no lock; a
thread reads the pipe and calls `on_signal` with each signal, in order, where taking
locks is safe.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

OPERATOR_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalRelay:
    """While entered, each of `signals` calls `on_signal(signum)` on the "signals" thread.
    On exit the handlers before it come back, or, with `ignore_after`, the signals are
    ignored from then on (a run that has ended and recorded how must not be killed by a
    late signal while it prints its outcome). A signal whose byte is still in the pipe
    when the relay exits is dropped, as if it had come after."""

    def __init__(self, on_signal: Callable[[int], None],
                 signals: tuple[signal.Signals, ...] = OPERATOR_SIGNALS,
                 ignore_after: bool = False) -> None:
        self.on_signal = on_signal
        self.signals = signals
        self.ignore_after = ignore_after
        self._saved: dict[int, Any] = {}
        self._open = False
        self._read = self._write = -1
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SignalRelay:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)  # a full pipe drops a signal, never blocks
        self._open = True
        self._thread = threading.Thread(target=self._relay, name="signals", daemon=True)
        self._thread.start()
        for sig in self.signals:
            self._saved[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        self._open = False
        for sig, before in self._saved.items():
            signal.signal(sig, signal.SIG_IGN if self.ignore_after else before)
        os.close(self._write)  # the relay reads the end of the pipe, closes it and ends

    def _note(self, signum: int, frame: FrameType | None) -> None:
        """The handler proper: one byte into the pipe."""
        try:
            os.write(self._write, bytes([signum]))
        except OSError:  # full (a storm of signals) or closed: that one is dropped
            pass

    def _relay(self) -> None:
        try:
            while True:
                got = os.read(self._read, 64)
                if not got:
                    return
                for signum in got:
                    if self._open:
                        self.on_signal(signum)
        finally:
            os.close(self._read)
