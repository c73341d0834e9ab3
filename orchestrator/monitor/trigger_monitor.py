"""Eyes of the engine: read metrics every poll interval, evaluate triggers, act on a fire.

`TriggerMonitor` runs in its own thread while a phase runs and bakes (and under
`migrate watch`). Each cycle reads every (host, metric) pair the phase's triggers
need concurrently, each read with a timeout shorter than the interval, folds the
samples into each trigger with the pure `triggers.evaluate`, and journals what
changed. A fire is handed to the run's `on_fire` callback (`PhaseRun.on_fire`),
which decides with the failure budget whether the host alone is rolled back or
the run stops: rollback is then the engine's ordinary failure edge.

Its neighbours: `checker` (check and baseline steps, the re-check), `baselines`
(which baselines a phase needs), `preflight` (what must hold before a phase starts);
reading is `orchestrator.metrics.reader`.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from orchestrator.config.inventory import Host, Inventory
from orchestrator.core.clock import Clock
from orchestrator.core.events import EventKind, FireSink, Firing
from orchestrator.core.http import HttpClient
from orchestrator.core.model import (
    Metric,
    Phase,
    Project,
    Trigger,
    TriggerAction,
)
from orchestrator.core.supervision import spawn
from orchestrator.metrics.reader import MetricReader
from orchestrator.metrics.sources.base import (
    CycleMemo,
    Reading,
    batched,
    read_hosts,
    read_metric,
)
from orchestrator.metrics.triggers import (
    TriggerState,
    TriggerStatus,
    Verdict,
    effective_threshold,
    evaluate,
)
from orchestrator.monitor.baselines import BASELINE_SAMPLES, PHASE_START, needs_baseline
from orchestrator.runners.base import CommandRunner
from orchestrator.state.journal import Journal, utc_stamp

if TYPE_CHECKING:
    from orchestrator.canary.samples import SampleBuffer
    from orchestrator.metrics.alerts.service import AlertService
    from orchestrator.state.recorder import Recorder


@dataclass
class _Live:
    state: TriggerState = field(default_factory=TriggerState)
    baseline: float | None = None


#: A journal row of `samples` / `trigger_states`, in `Journal.record_cycle`'s order.
SampleRow = tuple[str, str, int, str, str, float, float | None, bool, str, float | None,
                  float | None]
StateRow = tuple[str, int, str, str, str, float | None, float | None, float | None, str | None,
                 str]


@dataclass(frozen=True)
class _Folded:
    """One sample folded into one trigger: what to journal, then what to announce."""

    host: Host
    trigger: Trigger
    reading: Reading
    old: TriggerState
    verdict: Verdict
    baseline: float | None
    sample: SampleRow
    state: StateRow
    labels: dict[str, str] | None = None  # an alert trigger's alert labels
    since: str | None = None  # when that alert started firing


class TriggerMonitor:
    def __init__(self, project: Project, inventory: Inventory, journal: Journal, clock: Clock,
                 commands: CommandRunner | None, say: Any = lambda line: None,
                 http: HttpClient | None = None) -> None:
        self.project = project
        self.inventory = inventory
        self.journal = journal
        self.clock = clock
        self.say = say
        self.reader = MetricReader(project, inventory, commands, clock,
                                   http=http or HttpClient())
        self._firing: Firing | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: dict[tuple[str, str], _Live] = {}
        self._lock = threading.Lock()
        self.cycles = 0
        self.source_errors: dict[str, int] = {}
        self.fired: list[Firing] = []  # every fire, including notify/pause ones
        self.hosts: list[Host] = []
        self.triggers: list[Trigger] = []
        self.recorder: Recorder | None = None
        self.on_fire: FireSink | None = None
        self.phase: Phase | None = None
        self.dry_run = False
        self.phase_number = 0
        self.run_id = ""
        self.act = True  # watch --no-rollback turns acting off
        self._record_only = False  # the run is rolling back: sample, never act
        self.view_every = 0.0  # > 0: say a line of trigger values this often (rehearsals)
        self._last_view = 0.0
        #: called after each cycle of the monitor's own loop (the /metrics exporter)
        self.on_cycle: Callable[[TriggerMonitor], None] | None = None
        #: canary analysis: these metrics are read on the watched hosts and on
        #: `_sample_hosts` (the control) at each cycle, into `samples` (see `sample`)
        self.samples: SampleBuffer | None = None
        self._sample_metrics: list[str] = []
        self._sample_hosts: list[Host] = []
        #: the `alert:` triggers' source; built and owned by `start` for a phase, or handed
        #: in (shared by every monitor of a watch) before `prepare`
        self.alerts: AlertService | None = None
        self._owns_alerts = False
        self._unsubscribe: Callable[[], None] | None = None
        self._wake = threading.Event()  # a pushed alert: fold the alert triggers now
        #: Xid events as they happen (`nvml` metrics with `field: xid_errors`): one waiter
        #: per watched host, started as its wave joins; `nvml_module` is the pynvml seam
        self._xid_watches: list[Any] = []
        self._xid_on = False
        self.nvml_module: Any = None

    @property
    def firing(self) -> Firing | None:
        return self._firing

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, run_id: str, phase: Phase, hosts: list[Host], on_fire: FireSink,
              dry_run: bool, recorder: Recorder | None = None) -> None:
        """Take baselines, then watch in a background thread until `stop`; more hosts
        join with `watch_more` as their wave starts."""
        self.prepare(run_id, phase, hosts, on_fire, dry_run, recorder)
        if not self.triggers and not self._sample_metrics:
            return
        if self.alerts is None:
            from orchestrator.metrics.alerts.service import AlertService

            self.alerts = AlertService.for_triggers(self.project, self.triggers, log=self.say)
            if self.alerts is not None:
                self._owns_alerts = True
                self.alerts.start()
                for line in self.alerts.describe():
                    self.say(line)
        if self.alerts is not None:
            self._unsubscribe = self.alerts.on_change(lambda change: self._wake.set())
        if self._xid_triggers() and not self.dry_run:
            self._xid_on = True
            self._watch_xid(self.hosts)
        self._stop.clear()
        self._thread = spawn("trigger-monitor", self._loop)

    def prepare(self, run_id: str, phase: Phase, hosts: list[Host], on_fire: FireSink | None,
                dry_run: bool, recorder: Recorder | None = None,
                baselines: dict[tuple[str, str], float] | None = None) -> None:
        """Everything `start` does but the thread: `migrate watch` drives `cycle` itself."""
        self.run_id, self.phase_number, self.phase = run_id, phase.number, phase
        self.on_fire, self.dry_run, self.recorder = on_fire, dry_run, recorder
        self.triggers = [self.project.triggers[n] for n in phase.triggers]
        self.reader.t0 = self.clock.monotonic()
        self.reader.run_id, self.reader.phase = run_id, phase.number
        self.hosts = []
        self.watch_more(hosts, baselines)

    def watch_more(self, hosts: list[Host],
                   baselines: dict[tuple[str, str], float] | None = None) -> None:
        """Start watching `hosts` too (a new wave); their phase-start baselines are sampled
        for all of them at once."""
        new = [h for h in hosts if h.name not in {x.name for x in self.hosts}]
        if not new:
            return
        if self.triggers:
            self._prepare_baselines(new, baselines or {})
        with self._lock:
            self.hosts = [*self.hosts, *new]
        if self._xid_on:
            self._watch_xid(new)

    def forget(self, hosts: list[str]) -> None:
        """Stop watching hosts that left the run (rolled back on their own)."""
        with self._lock:
            self.hosts = [h for h in self.hosts if h.name not in hosts]
            self._sample_hosts = [h for h in self._sample_hosts if h.name not in hosts]

    def sample(self, buffer: SampleBuffer, metrics: list[str], hosts: list[Host]) -> None:
        """Canary analysis: from the next cycle on, also read `metrics` on the watched
        hosts and on `hosts` (the control, not watched for triggers), appending every
        reading to `buffer` at the monitor's clock. Call before `start`; `stop` ends it."""
        with self._lock:
            self.samples = buffer
            self._sample_metrics = [m for m in metrics if m in self.project.metrics]
            self._sample_hosts = list(hosts)

    def stop(self) -> None:
        self._record_only = False
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.project.poll_interval + 5)
        self._thread = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._owns_alerts and self.alerts is not None:
            self.alerts.close()
            self.alerts, self._owns_alerts = None, False
        for watch in self._xid_watches:
            watch.close()
        self._xid_watches, self._xid_on = [], False
        with self._lock:
            self.samples, self._sample_metrics, self._sample_hosts = None, [], []

    # --- Xid events ------------------------------------------------------------------------
    def _xid_triggers(self) -> list[Trigger]:
        out = []
        for t in self.triggers:
            metric = self.project.metrics.get(t.metric)
            if metric is not None and metric.source == "nvml" \
                    and metric.config.get("field") == "xid_errors":
                out.append(t)
        return out

    def _watch_xid(self, hosts: list[Host]) -> None:
        """Start an Xid waiter for these hosts (in-process for local ones, one long-lived
        SSH probe for remote ones); a host without NVML stays a clear error."""
        if not hosts:
            return
        from orchestrator.metrics.sources.nvml_events import XidWatch

        gpus = {h.name: sorted({int(self.project.metrics[t.metric].config.get("gpu", 0))
                                for t in self._xid_triggers()}) for h in hosts}
        watch = XidWatch(hosts, self._on_xid, gpus=gpus, commands=self.reader.commands,
                         module=self.nvml_module, log=self.say)
        watch.start()
        self._xid_watches.append(watch)

    def _on_xid(self, event: Any) -> None:
        """An Xid arrived (waiter thread): fold the Xid triggers of that host now, not at
        the next poll. The waiter counts events since it started, so the baseline is 0."""
        with self._lock:
            host = next((h for h in self.hosts if h.name == event.host), None)
        if host is None:
            return
        now = self.clock.monotonic()
        folded = []
        for t in self._xid_triggers():
            with self._lock:
                live = self._live.setdefault((host.name, t.name), _Live())
                if live.baseline is None:
                    live.baseline = 0.0
            folded.append(self._fold(host, t, Reading(float(event.count)), now))
        if not self.dry_run and folded:
            self.journal.record_cycle([f.sample for f in folded], [f.state for f in folded])
        for f in folded:
            self._announce(f)

    def _prepare_baselines(self, hosts: list[Host],
                           given: dict[tuple[str, str], float]) -> None:
        """Phase-start baselines of every new host at once: BASELINE_SAMPLES rounds of the
        cycle's batched reads (one query per metric for a fleet), 0.2 s apart, medians
        kept, all hosts' baselines saved in one transaction."""
        xid = {t.name for t in self._xid_triggers()}  # counted from 0 by their waiter
        wanted = sorted({t.metric for t in self.triggers
                         if needs_baseline(t) and t.baseline == PHASE_START
                         and t.metric in self.project.metrics and t.name not in xid
                         and any((h.name, t.name) not in given for h in hosts)})
        samples: dict[tuple[str, str], list[float]] = {}
        for i in range(BASELINE_SAMPLES if wanted else 0):
            if i:
                self.clock.sleep(0.2)
            for key, reading in self._read_all(wanted, hosts, None).items():
                if reading.value is not None:
                    samples.setdefault(key, []).append(reading.value)
        medians = {key: statistics.median(v) for key, v in samples.items() if v}
        phase_start: dict[str, dict[str, float]] = {}
        for host in hosts:
            for t in self.triggers:
                live = _Live()
                if needs_baseline(t):
                    if (host.name, t.name) in given:
                        live.baseline = given[(host.name, t.name)]
                    elif t.name in xid:
                        live.baseline = 0.0
                    elif t.baseline == PHASE_START:
                        live.baseline = medians.get((host.name, t.metric))
                        if live.baseline is not None:
                            phase_start.setdefault(host.name, {})[t.metric] = live.baseline
                    else:
                        live.baseline = self.journal.baseline(host.name, t.baseline).get(t.metric)
                with self._lock:
                    self._live[(host.name, t.name)] = live
        if not self.dry_run and phase_start:
            with self.journal.batch():
                for host_name, values in phase_start.items():
                    self.journal.save_baseline(host_name, f"{PHASE_START}:{self.run_id}",
                                               values, self.run_id)

    def sample_median(self, metric: Metric, host: Host, count: int, gap: float) -> float | None:
        values = []
        for i in range(count):
            if i:
                self.clock.sleep(gap)
            r = self.reader.read(metric, host)
            if r.value is not None:
                values.append(r.value)
        return statistics.median(values) if values else None

    def _loop(self) -> None:
        interval = self.project.poll_interval
        next_at = self.clock.monotonic()
        with ThreadPoolExecutor(max_workers=16, thread_name_prefix="metric") as pool:
            while not self._stop.is_set():
                self.cycle(pool)
                self._view()
                if self.on_cycle is not None:
                    self.on_cycle(self)
                next_at += interval
                delay = next_at - self.clock.monotonic()
                if delay < 0:  # a slow cycle: skip ahead rather than burst
                    next_at = self.clock.monotonic()
                    delay = 0
                while self._wake.wait(delay):  # woken early: a pushed alert, or stop
                    self._wake.clear()
                    if self._stop.is_set():
                        return
                    self.fold_alerts()
                    delay = next_at - self.clock.monotonic()
                    if delay <= 0:
                        break
                if self._stop.is_set():
                    return

    # --- one poll cycle --------------------------------------------------------------------
    def cycle(self, pool: ThreadPoolExecutor | None = None) -> None:
        """Read every metric the triggers need on every watched host, fold each sample
        into its trigger, journal the whole cycle in one transaction, then announce.

        A metric whose source reads many hosts at once (`prometheus`: one query for the
        fleet) is one job; any other is one job per host, all on `pool`. The cycle's
        reads share a `CycleMemo`, so an exporter or URL several hosts or metrics name
        is fetched once. Samples and trigger states go to the journal before any event
        or fire of the cycle, as before, but as one commit instead of two per (host,
        trigger): 1,200 commits per poll at 200 hosts x 3 triggers.
        """
        with self._lock:
            watched = list(self.hosts)
        # with the Xid waiter on, its event count is the Xid triggers' reading, not a poll
        events = {t.name for t in self._xid_triggers()} if self._xid_on else set()
        triggers = [t for t in self.triggers
                    if t.metric in self.project.metrics and t.name not in events]
        metrics = sorted({t.metric for t in triggers})
        readings = self._read_all(metrics, watched, pool)
        now = self.clock.monotonic()
        self.cycles += 1
        for (_, metric), reading in readings.items():
            if reading.error:
                self.source_errors[metric] = self.source_errors.get(metric, 0) + 1
        folded = [self._fold(host, t, readings[(host.name, t.metric)], now)
                  for host in watched for t in triggers]
        folded += self._fold_alert_triggers(watched, now)
        self._keep_samples(readings, watched, pool, now)
        if not self.dry_run and folded:
            self.journal.record_cycle([f.sample for f in folded], [f.state for f in folded])
        for f in folded:
            self._announce(f)

    def _keep_samples(self, readings: dict[tuple[str, str], Reading], watched: list[Host],
                      pool: ThreadPoolExecutor | None, now: float) -> None:
        """Append the analysis metrics' readings of this cycle to the sample buffer: those
        the triggers already read, and the rest (and every one on the control hosts) read
        now, all at once."""
        with self._lock:
            buffer, metrics = self.samples, list(self._sample_metrics)
            names = {h.name for h in watched}
            extra = [h for h in self._sample_hosts if h.name not in names]
        if buffer is None or not metrics:
            return
        more = self._read_all([m for m in metrics if not any(
            (h.name, m) in readings for h in watched[:1])], watched, pool)
        more.update(self._read_all(metrics, extra, pool))
        for (host, metric), reading in (*readings.items(), *more.items()):
            if metric in metrics:
                buffer.append(host, metric, now, reading.value)

    def _read_all(self, metrics: list[str], hosts: list[Host],
                  pool: ThreadPoolExecutor | None) -> dict[tuple[str, str], Reading]:
        """{(host, metric): reading} for the cycle, batched where the source can."""
        if not hosts or not metrics:
            return {}
        memo = CycleMemo()
        own = None
        if pool is None and len(hosts) > 1:  # one host (watch): its few reads in turn
            pool = own = ThreadPoolExecutor(max_workers=16, thread_name_prefix="metric")
        try:
            batches: list[tuple[str, Future[dict[str, Reading]]]] = []
            singles: list[tuple[str, str, Future[Reading]]] = []
            for name in metrics:
                metric = self.project.metrics[name]
                ctx = self.reader.context(metric, hosts[0], memo=memo)
                if batched(metric) or pool is None:
                    if pool is None:
                        done: Future[dict[str, Reading]] = Future()
                        done.set_result(read_hosts(metric, hosts, ctx))
                        batches.append((name, done))
                    else:
                        batches.append((name, pool.submit(read_hosts, metric, hosts, ctx)))
                    continue
                for host in hosts:
                    singles.append((host.name, name,
                                    pool.submit(read_metric, metric, ctx.for_host(host))))
            readings: dict[tuple[str, str], Reading] = {}
            for name, many in batches:
                for host_name, reading in many.result().items():
                    readings[(host_name, name)] = reading
            for host_name, name, one in singles:
                readings[(host_name, name)] = one.result()
            return readings
        finally:
            if own is not None:
                own.shutdown(wait=True)

    def fold_alerts(self) -> None:
        """Fold only the `alert:` triggers, now: the push path, within milliseconds."""
        with self._lock:
            watched = list(self.hosts)
        folded = self._fold_alert_triggers(watched, self.clock.monotonic())
        if not self.dry_run and folded:
            self.journal.record_cycle([f.sample for f in folded], [f.state for f in folded])
        for f in folded:
            self._announce(f)

    def _fold_alert_triggers(self, hosts: list[Host], now: float) -> list[_Folded]:
        """One snapshot of the alert book for every host and `alert:` trigger."""
        triggers = [t for t in self.triggers if t.alert is not None]
        if not triggers or self.alerts is None:
            return []
        from orchestrator.metrics.alerts.condition import fold_alert

        snap = self.alerts.snapshot()
        out = []
        for host in hosts:
            for t in triggers:
                r = self.alerts.reading(t, host, snap)
                with self._lock:
                    live = self._live.setdefault((host.name, t.name), _Live())
                    old = live.state
                    live.state, verdict = fold_alert(old, r, now)
                    state = live.state
                reading = Reading(r.value, r.error)
                metric = f"alert:{t.alert.name}" if t.alert else t.name
                sample: SampleRow = (self.run_id, host.name, self.phase_number, t.name, metric,
                                     now - self.reader.t0, r.value, verdict.breaching,
                                     state.status.value, None, None)
                row: StateRow = (host.name, self.phase_number, t.name, self.run_id,
                                 state.status.value, r.value, None, None,
                                 r.since if r.breaching else None, verdict.text)
                out.append(_Folded(host, t, reading, old, verdict, None, sample, row,
                                   r.labels, r.since))
        return out

    def _fold(self, host: Host, t: Trigger, reading: Reading, now: float) -> _Folded:
        """Fold one sample into the trigger's live state; nothing is written or said yet."""
        with self._lock:
            live = self._live.get((host.name, t.name))
            if live is None:  # not setdefault: that builds a _Live per fold, 6,000 a cycle
                live = self._live[(host.name, t.name)] = _Live()
            if live.baseline is None and needs_baseline(t) and t.baseline == PHASE_START \
                    and reading.value is not None:
                live.baseline = reading.value  # phase start had no data: first good sample
            old = live.state
            live.state, verdict = evaluate(t, self.project.metrics[t.metric], old, reading.value,
                                           now, live.baseline, reading.error)
            state, baseline = live.state, live.baseline
        since = None
        if state.breach_since is not None:
            held = timedelta(seconds=now - state.breach_since)
            since = utc_stamp(datetime.now(UTC) - held)
        sample: SampleRow = (self.run_id, host.name, self.phase_number, t.name, t.metric,
                             now - self.reader.t0, reading.value, verdict.breaching,
                             state.status.value, verdict.threshold, baseline)
        row: StateRow = (host.name, self.phase_number, t.name, self.run_id, state.status.value,
                         reading.value, verdict.threshold, baseline, since, verdict.text)
        return _Folded(host, t, reading, old, verdict, baseline, sample, row)

    def record_only(self) -> None:
        """Keep sampling (the journal's samples and trigger states, which the report's
        charts draw) but announce and act on nothing: the run has stopped and is rolling
        back, and the operator wants to see whether the metric recovered."""
        self._record_only = True

    def _announce(self, f: _Folded) -> None:
        """The events and the fire that a folded sample calls for, after it is journaled."""
        if self._record_only:
            return
        host, t, reading, verdict = f.host, f.trigger, f.reading, f.verdict
        metric = self.project.metrics.get(t.metric)
        if verdict.nodata_alert:
            limit = metric.nodata_alert if metric is not None else 120.0
            msg = (f"no data from {t.metric or 'the alert source'} on {host.name} for over "
                   f"{limit:g}s: {reading.error}")
            self._event(host, None, EventKind.METRIC_NODATA, msg, metric=t.metric,
                        error=reading.error)
            self.say(f"WARNING {msg}")
        if verdict.changed_to is None:
            return
        reason = f"trigger {t.name}: {verdict.text}"
        facts: dict[str, Any] = {"trigger": t.name, "metric": t.metric or None,
                                 "value": reading.value, "threshold": verdict.threshold,
                                 "baseline": f.baseline, "labels": f.labels, "since": f.since}
        if verdict.changed_to is TriggerStatus.PENDING:
            self._event(host, t, EventKind.TRIGGER_PENDING, reason, **facts)
        elif verdict.changed_to is TriggerStatus.OK:
            kind = EventKind.TRIGGER_RESOLVED if f.old.status is TriggerStatus.FIRING \
                else EventKind.TRIGGER_RESET
            self._event(host, t, kind, reason, **facts)
        elif verdict.fired:
            self._fire(host, t, reason, reading, verdict.threshold, f.baseline, f.labels,
                       f.since)

    def _fire(self, host: Host, t: Trigger, reason: str, reading: Reading,
              threshold: float | None, baseline: float | None,
              labels: dict[str, str] | None = None, since: str | None = None) -> None:
        firing = Firing(t.name, reason, host.name, t.action.value)
        self.fired.append(firing)
        prefix = "dry run: would fire: " if self.dry_run else ""
        self.say(f"{prefix}{reason} on {host.name} -> {t.action.value}")
        self._event(host, t, EventKind.TRIGGER_FIRED, reason, trigger=t.name,
                    metric=t.metric or None, value=reading.value, threshold=threshold,
                    baseline=baseline, action=t.action.value, labels=labels, since=since)
        if self.dry_run or not self.act:
            return
        if t.action is TriggerAction.ROLLBACK and self._firing is None:
            self._firing = firing
        if t.action in (TriggerAction.ROLLBACK, TriggerAction.PAUSE) and self.on_fire:
            self.on_fire(firing)

    def _event(self, host: Host, t: Trigger | None, kind: EventKind, detail: str,
               **payload: Any) -> None:
        if self.recorder is not None:
            self.recorder.event(kind, self.run_id, host.name, self.phase_number, None, detail,
                                **payload)

    def _view(self) -> None:
        """A live line of every trigger's latest value against its limit, for the operator."""
        now = self.clock.monotonic()
        if not self.view_every or now - self._last_view < self.view_every:
            return
        self._last_view = now
        parts = []
        for (host, name), (state, baseline) in sorted(self.snapshot().items()):
            value = "no data" if state.last_value is None else f"{state.last_value:g}"
            t = self.project.triggers[name]
            limit = effective_threshold(t, baseline)
            shown = f"{value}" + (f"/{limit:g}" if limit is not None else "")
            mark = "" if state.status is TriggerStatus.OK else f" {state.status.value.upper()}"
            parts.append(f"{name}@{host}={shown}{mark}")
        self.say("    triggers: " + "  ".join(parts))

    def snapshot(self) -> dict[tuple[str, str], tuple[TriggerState, float | None]]:
        with self._lock:
            return {k: (v.state, v.baseline) for k, v in self._live.items()}
