"""Eyes of the engine: read metrics every poll interval, evaluate triggers, tell the run.

`TriggerMonitor` runs in its own thread while a phase runs and bakes (`migrate watch`
drives it cycle by cycle). It wires: `poller` (a cycle's reads, as a `Poll`), `fold`
(pure: the poll and the triggers' state to journal rows and announcements), the
journal (the cycle's rows, one transaction, before any event or fire), `telling`
(the cycle as a `Cycle` on the run's bus, then events, lines and `Fire`s), `xid`
(Xid waiters) and `baselines` (phase-start baselines).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from orchestrator.config.inventory import Host, Inventory
from orchestrator.core.bus import Cycle, RunBus, SampleRequest
from orchestrator.core.clock import Clock
from orchestrator.core.http import HttpClient
from orchestrator.core.model import Phase, Project, Trigger
from orchestrator.core.supervision import spawn
from orchestrator.metrics.reader import MetricReader
from orchestrator.monitor.announce import announcements
from orchestrator.monitor.baselines import take_phase_start
from orchestrator.monitor.fold import (
    Folded,
    Frame,
    Live,
    Poll,
    fold_alerts_only,
    fold_events,
    fold_poll,
)
from orchestrator.monitor.heap import make_room
from orchestrator.monitor.poller import Poller
from orchestrator.monitor.schedule import poll_every
from orchestrator.monitor.telling import cycle_value, tell, while_writing
from orchestrator.monitor.xid import XidWaiters
from orchestrator.runners.base import CommandRunner
from orchestrator.state.journal import Journal

if TYPE_CHECKING:
    from orchestrator.metrics.alerts.service import AlertService
    from orchestrator.state.recorder import Recorder


class TriggerMonitor:
    def __init__(self, project: Project, inventory: Inventory, journal: Journal, clock: Clock,
                 commands: CommandRunner | None, say: Any = lambda line: None,
                 http: HttpClient | None = None, *, act: bool = True,
                 alerts: AlertService | None = None, nvml: Any = None) -> None:
        """`act=False` (watch --no-rollback): journal fires, tell nobody. `alerts`: a source
        the caller owns (a watch's, shared), else its own per run. `nvml`: pynvml's seam."""
        self.project, self.journal, self.clock, self.say = project, journal, clock, say
        self.inventory, self.commands, self.act, self.nvml = inventory, commands, act, nvml
        self.http = http or HttpClient()  # the pooled client of http/exporter reads
        self._given_alerts = alerts
        self._lock = threading.Lock()  # guards the book, the hosts and the fired list
        self._stop, self._wake = threading.Event(), threading.Event()
        self._reset(RunBus(""), None, [], False, None)

    def _reset(self, bus: RunBus, phase: Phase | None, triggers: list[Trigger], dry_run: bool,
               recorder: Recorder | None) -> None:
        """A new run's session: nothing of the last one is kept."""
        self.bus, self.phase, self.triggers = bus, phase, triggers
        self.reader = MetricReader(self.project, self.inventory, self.commands, self.clock,
                                   self.clock.monotonic(), bus.run_id,
                                   phase.number if phase else None, http=self.http)
        self.poller = Poller(self.project, self.reader)
        self.dry_run, self.recorder = dry_run, recorder
        self.book: dict[tuple[str, str], Live] = {}
        self.hosts: list[Host] = []
        self.cycles, self.source_errors = 0, dict[str, int]()
        self.fired: list[Any] = []  # every fire, notify/pause ones included
        self._record_only = False
        self._thread: threading.Thread | None = None
        self._samples: SampleRequest | None = None
        self._control: list[Host] = []
        self.alerts: AlertService | None = self._given_alerts
        self._owned = ExitStack()  # what `stop` closes: an alert service, Xid waiters
        self.xid = XidWaiters(self.project, triggers, self._on_xid, self.commands, self.nvml,
                              self.say)
        self._xid_on = False

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, bus: RunBus, phase: Phase, hosts: list[Host], dry_run: bool,
              recorder: Recorder | None = None, samples: SampleRequest | None = None) -> None:
        """Take baselines, then watch in a background thread until `stop`; more hosts
        join with `watch_more` as their wave starts."""
        self.prepare(bus, phase, hosts, dry_run, recorder, samples=samples)
        if not self.triggers and self._samples is None:
            return
        if self.alerts is None:
            from orchestrator.metrics.alerts.service import AlertService

            self.alerts = AlertService.for_triggers(self.project, self.triggers, log=self.say)
            if self.alerts is not None:
                self.alerts.start()
                self._owned.callback(self.alerts.close)
                for line in self.alerts.describe():
                    self.say(line)
        if self.alerts is not None:
            self._owned.callback(self.alerts.on_change(lambda c: self._wake.set()))
        if self.xid.triggers and not self.dry_run:
            self._xid_on = True
            self._owned.callback(self.xid.close)
            self.xid.watch(self.hosts)
        self._stop.clear()
        self._thread = spawn("trigger-monitor", self._loop)

    def prepare(self, bus: RunBus, phase: Phase, hosts: list[Host], dry_run: bool,
                recorder: Recorder | None = None,
                baselines: dict[tuple[str, str], float] | None = None,
                samples: SampleRequest | None = None) -> None:
        """Everything `start` does but the thread: `migrate watch` drives `cycle` itself."""
        self._reset(bus, phase, [self.project.triggers[n] for n in phase.triggers], dry_run,
                    recorder)
        if samples is not None and samples.metrics:
            self._samples = samples
            self._control = [self.inventory.hosts[n] for n in samples.hosts]
        self.watch_more(hosts, baselines)

    def watch_more(self, hosts: list[Host],
                   baselines: dict[tuple[str, str], float] | None = None) -> None:
        """Start watching `hosts` too (a new wave); their phase-start baselines are sampled
        for all of them at once."""
        new = [h for h in hosts if h.name not in {x.name for x in self.hosts}]
        if not new:
            return
        if self.triggers:
            got = take_phase_start(self.poller, self.journal, self.triggers,
                                   self.project.metrics, new, baselines or {}, self.xid.names,
                                   self.bus.run_id, self.dry_run)
            with self._lock:
                self.book.update({key: Live(baseline=value) for key, value in got.items()})
        with self._lock:
            self.hosts = [*self.hosts, *new]
        make_room(len(self.hosts) * len(self.triggers))
        if self._xid_on:
            self.xid.watch(new)

    def forget(self, hosts: list[str]) -> None:
        """Stop watching hosts that left the run (rolled back on their own)."""
        with self._lock:
            self.hosts = [h for h in self.hosts if h.name not in hosts]
            self._control = [h for h in self._control if h.name not in hosts]

    def record_only(self) -> None:
        """The run stopped: sample through its rollback (for the charts), tell nothing."""
        self._record_only = True

    def stop(self) -> None:
        self._record_only = False
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.project.poll_interval + 5)
        self._thread = None
        self._owned.close()
        self._xid_on, self.alerts = False, self._given_alerts
        with self._lock:
            self._samples, self._control = None, []

    def _loop(self) -> None:
        with ThreadPoolExecutor(max_workers=16, thread_name_prefix="metric") as pool:
            poll_every(self.project.poll_interval, self.clock, self._stop, self._wake,
                       lambda: self.cycle(pool), self.fold_alerts)

    # --- one cycle -------------------------------------------------------------------------
    def cycle(self, pool: ThreadPoolExecutor | None = None) -> None:
        """Poll, fold, journal the whole cycle in one transaction, publish it, announce."""
        with self._lock:
            watched, sampling, control = list(self.hosts), self._samples, list(self._control)
        skip = self.xid.names if self._xid_on else frozenset()
        poll = self.poller.poll(self.clock.monotonic(), watched, self.triggers, skip,
                                self.alerts, pool)
        self.cycles += 1
        for (_, metric), reading in poll.readings.items():
            if reading.error:
                self.source_errors[metric] = self.source_errors.get(metric, 0) + 1
        got = self.poller.samples(dict(poll.readings), watched, control,
                                  list(sampling.metrics), pool) if sampling is not None else {}
        samples = tuple((h, m, r.value) for (h, m), r in got.items())
        with self._lock:
            self.book, folded = fold_poll(poll, self.book, self._frame())
        self._settle(folded, poll.at, samples, pool)

    def fold_alerts(self) -> None:
        """Fold only the `alert:` triggers, now: the push path, within milliseconds."""
        with self._lock:
            watched = list(self.hosts)
        alerts = self.poller.alert_readings(watched, self.triggers, self.alerts)
        poll = Poll(self.clock.monotonic(), tuple(watched), {}, alerts)
        with self._lock:
            self.book, folded = fold_alerts_only(poll, self.book, self._frame())
        self._settle(folded, poll.at, ())

    def _on_xid(self, event: Any) -> None:
        """An Xid arrived (waiter thread): fold the Xid triggers of that host now, not at
        the next poll."""
        now = self.clock.monotonic()
        with self._lock:
            host = next((h for h in self.hosts if h.name == event.host), None)
            if host is None:
                return
            self.book, folded = fold_events(host, self.xid.triggers, self.book,
                                            float(event.count), now, self._frame())
        self._settle(folded, now, ())

    def _settle(self, folded: list[Folded], at: float,
                samples: tuple[tuple[str, str, float | None], ...],
                pool: ThreadPoolExecutor | None = None) -> None:
        """The cycle's rows to the journal, the cycle to the bus, then events and fires
        (with a pool, the cycle's value is built while the journal writes)."""
        number = self.phase.number if self.phase else 0
        write = None if self.dry_run or not folded else partial(
            self.journal.record_cycle, [f.sample for f in folded], [f.state for f in folded])
        cycle = while_writing(write, lambda: self._cycle(number, at, samples)
                              if folded or samples else None, pool)
        if cycle is not None:
            self.bus.publish(cycle)
        if self._record_only:
            return
        fired = tell(announcements(folded, self.project.metrics), self.bus, number,
                     self.recorder, self.say, self.dry_run, self.act)
        with self._lock:
            self.fired += fired

    def _cycle(self, number: int, at: float,
               samples: tuple[tuple[str, str, float | None], ...]) -> Cycle:
        with self._lock:
            book = dict(self.book)
        return cycle_value(self.bus.run_id, number, at, book, self.project.triggers, samples)

    def _frame(self) -> Frame:
        return Frame(self.bus.run_id, self.phase.number if self.phase else 0,
                     tuple(self.triggers), self.project.metrics, self.reader.t0, datetime.now(UTC))

    def snapshot(self) -> dict[tuple[str, str], tuple[Any, float | None]]:
        with self._lock:
            return {k: (v.state, v.baseline) for k, v in self.book.items()}
