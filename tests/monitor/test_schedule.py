"""The monitor's poll schedule (monitor/schedule.py) on a FakeClock: cycles that overrun
the interval are followed at once, never by a burst, and a wake in between folds the
pushed alerts without a cycle."""

from __future__ import annotations

import threading

from orchestrator.core.clock import FakeClock
from orchestrator.monitor.schedule import poll_every


def test_a_slow_cycle_is_followed_at_once_and_the_missed_ones_are_not_made_up() -> None:
    clock, stop, wake = FakeClock(), threading.Event(), threading.Event()
    started: list[float] = []

    def cycle() -> None:
        started.append(clock.monotonic())
        clock.advance(12.0 if len(started) == 2 else 0.0)  # the second cycle takes 12 s
        if len(started) == 4:
            stop.set()
        clock.advance(5.0)  # the interval passes (no real waiting: each delay is <= 0)

    poll_every(5.0, clock, stop, wake, cycle, lambda: None)
    # 1000, then 1005 (slow: 12 s), then at once at 1022, not three cycles at once
    assert started == [1000.0, 1005.0, 1022.0, 1027.0]


def test_a_wake_folds_alerts_between_cycles_and_a_stop_ends_the_wait() -> None:
    clock, stop, wake = FakeClock(), threading.Event(), threading.Event()
    cycles: list[float] = []
    woken: list[float] = []

    def cycle() -> None:
        cycles.append(clock.monotonic())
        wake.set()  # an alert arrives right after the cycle

    def on_wake() -> None:
        woken.append(clock.monotonic())
        stop.set()
        wake.set()  # the stop wakes the wait again: the loop ends, with no second cycle

    poll_every(60.0, clock, stop, wake, cycle, on_wake)
    assert cycles == [1000.0] and woken == [1000.0]

