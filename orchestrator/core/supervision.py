"""Supervised background work: a thread that dies is a failure of its run, never a traceback.

Every thread migrate starts for a run (the trigger monitor, the alert receiver and
poller, the NVML/Xid waiters, the lock heartbeat) is started with `spawn`, which
wraps its target: an exception that escapes it is handed, with the worker's name, to
the death sink in force (`dying_to`), and nothing is printed. The sink is the run's
business: a phase rolls back as for a trigger (or stops with exit 3 when the journal
cannot record); `watch` ends with exit 3 and undoes nothing.

`install_excepthook` is the net under that: a thread started by a library, or one
that was not spawned here, that dies reaches the same sink through
`threading.excepthook`, again as one line instead of a traceback.

A read that errors is not a death: sources turn their errors into "no data".
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from orchestrator._exceptions import MigrateError

DeathSink = Callable[[str, BaseException], None]


class WorkerDied(MigrateError):
    """A background worker of the run died; the run stopped as a failure naming it (3)."""

    exit_code = 3

    def __init__(self, worker: str, cause: BaseException) -> None:
        self.worker = worker
        self.cause = cause
        super().__init__(f"background worker {worker!r} died: {describe(cause)}")


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


_sinks: list[DeathSink] = []
_sinks_lock = threading.Lock()


def _report(name: str, exc: BaseException) -> None:
    with _sinks_lock:
        sink = _sinks[-1] if _sinks else None
    if sink is None:
        import sys

        stream = sys.__stderr__
        if stream is not None:
            stream.write(f"migrate: background worker {name!r} died: {describe(exc)}\n")
        return
    try:
        sink(name, exc)
    except Exception:  # a sink must never kill the thread that reports
        pass


@contextmanager
def dying_to(sink: DeathSink) -> Iterator[None]:
    """For the block, deaths of supervised threads go to `sink` (innermost wins)."""
    with _sinks_lock:
        _sinks.append(sink)
    try:
        yield
    finally:
        with _sinks_lock:
            if sink in _sinks:
                _sinks.remove(sink)


def spawn(name: str, target: Callable[..., Any], *args: Any,
          on_death: DeathSink | None = None, daemon: bool = True) -> threading.Thread:
    """Start `target(*args)` on a thread named `name`, supervised: an exception that escapes
    it goes to `on_death` (else to the sink in force), never to stderr as a traceback."""

    def body() -> None:
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - a worker's death is reported, whatever it is
            if on_death is not None:
                try:
                    on_death(name, exc)
                except Exception:
                    _report(name, exc)
            else:
                _report(name, exc)

    thread = threading.Thread(target=body, name=name, daemon=daemon)
    thread.start()
    return thread


def install_excepthook() -> None:
    """Route deaths of unsupervised threads to the sink in force, as one line."""

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread is not None else "thread"
        _report(name, args.exc_value)

    threading.excepthook = hook
