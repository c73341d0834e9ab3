"""`SignalRelay`: a signal is acted on by the relay's thread, so an action that takes a
lock the main thread holds at the moment the signal lands waits for it instead of
deadlocking the main thread inside its own handler (CI: `migrate rollback` hung after
SIGTERM)."""

from __future__ import annotations

import os
import signal
import threading
import time

from orchestrator.core.signals import SignalRelay


def test_an_action_needing_a_lock_the_main_thread_holds_runs_once_it_is_released() -> None:
    held = threading.Lock()
    got: list[tuple[int, bool, str]] = []
    done = threading.Event()

    def act(signum: int) -> None:
        took = held.acquire(timeout=3)  # in the handler itself: 3 s, then False
        if took:
            held.release()
        got.append((signum, took, threading.current_thread().name))
        done.set()

    before = signal.getsignal(signal.SIGTERM)
    with SignalRelay(act):
        with held:  # a CancelToken's lock, an Event's condition: whatever was held
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.3)  # the handler has run by now, between these bytecodes
        assert done.wait(5)
    assert got == [(signal.SIGTERM, True, "signals")]
    assert signal.getsignal(signal.SIGTERM) is before  # put back on exit


def test_signals_are_acted_on_in_order_and_ignored_after_when_asked() -> None:
    seen: list[int] = []
    two = threading.Event()

    def act(signum: int) -> None:
        seen.append(signum)
        if len(seen) == 2:
            two.set()

    before = signal.getsignal(signal.SIGINT)
    try:
        with SignalRelay(act, ignore_after=True) as relay:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            assert two.wait(5)
        assert seen == [signal.SIGINT, signal.SIGTERM]
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)  # ignored: neither acted on nor fatal
        time.sleep(0.2)
        assert seen == [signal.SIGINT, signal.SIGTERM]
        assert relay._thread is not None
        relay._thread.join(2)
        assert not relay._thread.is_alive()  # the relay ends with the pipe
    finally:
        signal.signal(signal.SIGINT, before)
