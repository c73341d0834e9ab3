"""Supervised background work: a thread that dies is a failure of its run, never a traceback.

Every thread migrate starts for a run (the trigger monitor, the alert receiver and
poller, the NVML/Xid waiters, the lock heartbeat) is started with `spawn`, which
wraps its target: an exception that escapes it is handed, with the worker's name, to
the death sink of the run that started it, and nothing is printed. That sink is bound
by the run for its duration (`supervising(bus.worker_died)`) in a context variable,
and `spawn` runs each target in a copy of its spawner's context: a worker reports to
the run it was started for, whichever run is active elsewhere in the process, and
there is no process-wide sink. What the run does with a death is its business: a
phase rolls back as for a trigger (or stops with exit 3 when the journal cannot
record); `watch` ends with exit 3 and undoes nothing.

Threads that were not spawned here (a library's) carry no run's context; the
`Supervisor` the app owns routes their deaths, through `threading.excepthook`, to the
run it is running (innermost first), again as one line instead of a traceback.

A read that errors is not a death: sources turn their errors into "no data".
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from orchestrator._exceptions import MigrateError

DeathSink = Callable[[str, BaseException], None]


class RunChannel(Protocol):
    """What a run hears from outside its own threads (its bus)."""

    def worker_died(self, name: str, exc: BaseException) -> None: ...

    def journal_lost(self, reason: str) -> None: ...

#: the death sink of the run whose work this context is (bound by `supervising`)
_run_sink: contextvars.ContextVar[DeathSink | None] = contextvars.ContextVar(
    "migrate_run_sink", default=None)


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


def _orphan(name: str, exc: BaseException) -> None:
    """A death no run hears: one line on the process's stderr."""
    import sys

    stream = sys.__stderr__
    if stream is not None:
        stream.write(f"migrate: background worker {name!r} died: {describe(exc)}\n")


def _report(sink: DeathSink | None, name: str, exc: BaseException) -> None:
    if sink is None:
        _orphan(name, exc)
        return
    try:
        sink(name, exc)
    except Exception:  # a sink must never kill the thread that reports
        _orphan(name, exc)


@contextmanager
def supervising(sink: DeathSink) -> Iterator[None]:
    """For the block (and every thread `spawn`ed from it), deaths go to `sink`."""
    token = _run_sink.set(sink)
    try:
        yield
    finally:
        _run_sink.reset(token)


def spawn(name: str, target: Callable[..., Any], *args: Any,
          on_death: DeathSink | None = None, daemon: bool = True) -> threading.Thread:
    """Start `target(*args)` on a thread named `name`, supervised: an exception that escapes
    it goes to `on_death` (else to the sink of the run that spawned it; spawned where no
    run's context is, to the installed `threading.excepthook`, the Supervisor's), never
    to stderr as a traceback."""
    context = contextvars.copy_context()

    def body() -> None:
        try:
            context.run(target, *args)
        except BaseException as exc:  # noqa: BLE001 - a worker's death is reported, whatever it is
            sink = on_death or context.get(_run_sink)
            if sink is None and threading.excepthook is not threading.__excepthook__:
                # spawned from a thread of no run (a fan-out pool's): as an unspawned
                # thread's death, through the hook the app's Supervisor installed
                raise
            _report(sink, name, exc)

    thread = threading.Thread(target=body, name=name, daemon=daemon)
    thread.start()
    return thread


class Supervisor:
    """The app's registry of the runs it is running, for what reaches a run from outside
    its own threads: deaths of threads that carry no run's context (started by a
    library) and the journal's loss (the journal outlives runs). Both go to the
    innermost running run; with none running, a death is one line and a loss is only
    the journal's own state (every later write raises)."""

    def __init__(self) -> None:
        self._runs: list[RunChannel] = []
        self._lock = threading.Lock()

    @contextmanager
    def running(self, run: RunChannel) -> Iterator[None]:
        """A run of this app is running: its spawned threads, the unspawned ones and the
        journal report to `run` for the block."""
        with self._lock:
            self._runs.append(run)
        try:
            with supervising(run.worker_died):
                yield
        finally:
            with self._lock:
                if run in self._runs:
                    self._runs.remove(run)

    def _current(self) -> RunChannel | None:
        with self._lock:
            return self._runs[-1] if self._runs else None

    def report(self, name: str, exc: BaseException) -> None:
        run = self._current()
        _report(run.worker_died if run is not None else None, name, exc)

    def journal_lost(self, reason: str) -> None:
        """The journal's `on_unavailable`: the running run stops (exit 3)."""
        run = self._current()
        if run is not None:
            run.journal_lost(reason)

    def _hook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread is not None else "thread"
        self.report(name, args.exc_value)

    def install(self) -> None:
        """Route deaths of unsupervised threads to this supervisor, as one line, for the
        rest of the process (`threading.excepthook` is the process's one hook)."""
        threading.excepthook = self._hook

    @contextmanager
    def installed(self) -> Iterator[None]:
        """`install` for the block only: the process's hook before it comes back after
        (an app routes deaths to its runs while it is open, not after it closed)."""
        previous = threading.excepthook
        threading.excepthook = self._hook
        try:
            yield
        finally:
            if threading.excepthook == self._hook:  # nobody installed another meanwhile
                threading.excepthook = previous


def install_excepthook() -> None:
    """Before any app runs anything: an unsupervised thread that dies is one line."""
    Supervisor().install()
