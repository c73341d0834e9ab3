"""`migrate watch`: the on-call watcher of completed phases.

Every poll interval it evaluates the triggers of every completed phase on the
watched hosts, each against that phase's own baseline (the phase-start baseline
its run recorded, or the named one). When a trigger with `action: rollback`
fires, it asks `RunLifecycle.watch_rollback` (the engine's one place a rollback
begins) to roll back the latest completed phase on that host, and stops with exit
1 (3 if the rollback failed). Notifications come from the run's event hooks. It
serves SPEC section 7's metrics (`telemetry.metrics.MigrateMetrics`) so that the watcher
is watched; the server is started and closed by its owner (`App`), never inside a
constructor.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.config.inventory import Host
from orchestrator.core.bus import Fire, RunBus, WorkerDied
from orchestrator.core.clock import CancelToken
from orchestrator.core.durations import format_duration
from orchestrator.core.events import EventKind, Firing
from orchestrator.core.http import PER_HOST
from orchestrator.core.model import Phase, Project
from orchestrator.core.outcomes import RunOutcome, RunReport
from orchestrator.core.states import PhaseState
from orchestrator.engine.context import EngineParts, new_run_id
from orchestrator.engine.lifecycle import RunLifecycle, journal_unavailable
from orchestrator.engine.rollback import Reason, RollbackCause
from orchestrator.monitor.baselines import PHASE_START, needs_baseline
from orchestrator.monitor.trigger_monitor import TriggerMonitor
from orchestrator.state.base import JournalUnavailableError
from orchestrator.state.recorder import JournalRecorder, Recorder

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from orchestrator.metrics.alerts.service import AlertService
    from orchestrator.telemetry.metrics import MigrateMetrics

@dataclass
class Watched:
    """One completed phase watched on every watched host where it is completed: one
    monitor for all of them, so a cycle reads the hosts concurrently and journals them
    in one transaction (one monitor per host was 200 commits and 400 serial reads a
    poll at 200 hosts)."""

    phase: Phase
    hosts: list[Host]
    monitor: TriggerMonitor

    def drop(self, host: str) -> None:
        """Stop watching a host whose fire is handled elsewhere."""
        self.monitor.forget([host])
        self.hosts = [h for h in self.hosts if h.name != host]


@dataclass
class WatchResult:
    fired: list[Firing] = field(default_factory=list)
    rollback: RunReport | None = None
    cycles: int = 0
    watched: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)  # report paths, in order
    died: str | None = None  # a supervised worker died: the watch ended (exit 3)


class Watcher:
    def __init__(self, lifecycle: RunLifecycle, hosts: list[Host], act: bool = True,
                 metrics: MigrateMetrics | None = None) -> None:
        self.lifecycle = lifecycle
        self.project: Project = lifecycle.project
        self.inventory = lifecycle.inventory
        self.parts: EngineParts = lifecycle.parts
        self.hosts = hosts
        self.act = act
        self.stop_event = threading.Event()
        self._wake = threading.Event()  # stop, or a pushed alert
        self.leadership: Any = None
        self.metrics = metrics
        self.run_id = new_run_id()
        #: the watch run's bus: its monitors' fires and cycles, its workers' deaths; a
        #: fire never cancels anything here (the watch acts on it between cycles)
        self.bus = RunBus(self.run_id, CancelToken(), self.parts.hooks)
        self._fires: list[Firing] = []  # rollback fires heard, not yet acted on
        self.recorder: Recorder = JournalRecorder(self.parts.journal, self.bus)
        #: the token a rollback started by this watch obeys (its undo: Ctrl-C, SIGTERM)
        self.cancel = CancelToken()
        self.died: str | None = None  # "background worker 'x' died: ..." (exit 3)

    def _completed(self) -> dict[int, list[tuple[Host, str]]]:
        """phase -> (host, the run that completed it there) for every completed phase."""
        journal = self.parts.journal
        completed: dict[int, list[tuple[Host, str]]] = {}
        for host in self.hosts:
            for number in sorted(self.project.phases):
                rec = journal.phase_record(host.name, number)
                if rec.state is PhaseState.COMPLETED and rec.run_id is not None:
                    completed.setdefault(number, []).append((host, rec.run_id))
        return completed

    def _watched(self, completed: dict[int, list[tuple[Host, str]]],
                 alerts: AlertService | None) -> list[Watched]:
        journal = self.parts.journal
        out = []
        for number, pairs in sorted(completed.items()):
            phase = self.project.phases[number]
            monitor = TriggerMonitor(self.project, self.inventory, journal,
                                     self.parts.clock, self.parts.commands, self.parts.say,
                                     self.parts.http, act=self.act, alerts=alerts)
            baselines = {}
            for host, run_id in pairs:  # each host against its own run's baseline
                for name in phase.triggers:
                    t = self.project.triggers[name]
                    if not needs_baseline(t):
                        continue
                    source = f"{PHASE_START}:{run_id}" if t.baseline == PHASE_START \
                        else t.baseline
                    value = journal.baseline(host.name, source).get(t.metric)
                    if value is not None:
                        baselines[(host.name, name)] = value
            hosts = [h for h, _ in pairs]
            monitor.prepare(self.bus, phase, hosts, False, self.recorder, baselines)
            out.append(Watched(phase, hosts, monitor))
        return out

    def run(self, duration: float | None, once: bool,
            checkpoint: float | None = None) -> WatchResult:
        """Watch until `duration`, `once`, a stop, a rollback, or a dead worker.

        Every way out ends the watch's run record. A worker that dies (an alert receiver,
        an Xid waiter, the monitor's reads raising) ends the watch naming it (exit 3) and
        undoes nothing: an hours-old completed phase is never rolled back because a
        poller died. Losing the leadership is not a death: the watcher stops acting at
        once, stands by, and acts again only after winning an election."""
        journal = self.parts.journal
        names = [h.name for h in self.hosts]
        if not self._lead(names):
            return WatchResult()  # stopped while standing by
        journal.create_run(self.run_id, None, names, "migrate watch", "watch", False, {})
        result = WatchResult()
        alerts: AlertService | None = None
        clock = self.parts.clock
        began = clock.monotonic()
        try:
            with self.parts.supervisor.running(self), \
                    self.bus.screening(lambda fire: False):
                for host in self.hosts:
                    self.recorder.event(EventKind.WATCH_STARTED, self.run_id, host.name, None,
                                        None, "migrate watch" + (
                                            f" for {format_duration(duration)}"
                                            if duration else ""),
                                        for_s=duration, checkpoint_s=checkpoint)
                completed = self._completed()
                alerts = self._alerts([self.project.phases[n] for n in completed])
                watched = self._watched(completed, alerts)
                result.watched = [f"{h.name}/phase {w.phase.number}"
                                  for h in self.hosts for w in watched if h in w.hosts]
                shown = ", ".join(result.watched[:8]) + (
                    f" and {len(result.watched) - 8} more" if len(result.watched) > 8 else "")
                self.parts.say(f"watching {shown or 'nothing (no completed phase)'}"
                               f" every {self.project.poll_interval:g}s")
                self._loop(watched, result, duration, once, checkpoint, began)
        finally:
            if self.leadership is not None:
                self.leadership.release()
            if alerts is not None:
                alerts.close()
            if self.died is not None:
                result.died = self.died
                self.parts.say(f"WATCH STOPPED: {self.died}; nothing was rolled back")
            if checkpoint:
                self._checkpoint(result, clock.monotonic() - began, duration, True)
            outcome = watch_exit_outcome(result).value if (result.rollback or result.died) \
                else "watched"
            if journal.unavailable is None:
                journal.end_run(self.run_id, outcome)
            else:  # the watch stopped unrecorded: a person must hear it (exit 3)
                self.bus.publish(journal_unavailable(self.run_id, None, names,
                                                     journal.unavailable, journal.location))
        return result

    def _loop(self, watched: list[Watched], result: WatchResult, duration: float | None,
              once: bool, checkpoint: float | None, began: float) -> None:
        from concurrent.futures import ThreadPoolExecutor

        # the reads of a cycle, every host's at once (the pooled client's per-host bound)
        with ThreadPoolExecutor(max_workers=PER_HOST, thread_name_prefix="metric") as pool:
            self._cycles(watched, result, duration, once, checkpoint, began, pool)

    def _cycles(self, watched: list[Watched], result: WatchResult, duration: float | None,
                once: bool, checkpoint: float | None, began: float,
                pool: ThreadPoolExecutor) -> None:
        clock = self.parts.clock
        deadline = began + duration if duration else None
        next_checkpoint = began + checkpoint if checkpoint else None
        while not self.stop_event.is_set():
            if not self._still_leading():
                continue
            try:
                for w in watched:
                    w.monitor.cycle(pool)
            except JournalUnavailableError:
                raise
            except Exception as exc:  # the monitor's reads, on this thread: a dead worker
                self.bus.worker_died("trigger-monitor", exc)
                self._hear(watched)
                return
            result.cycles += 1
            fire = self._hear(watched)
            for w in watched:
                result.fired.extend(f for f in w.monitor.fired if f not in result.fired)
            if fire is not None:
                result.rollback = self._roll_back(fire)
                if result.rollback is not None:
                    return
                fire[0].drop(fire[1].host)  # handled elsewhere
                watched = [w for w in watched if w.hosts]
                if not watched:
                    return
            if next_checkpoint is not None and clock.monotonic() >= next_checkpoint:
                self._checkpoint(result, clock.monotonic() - began, duration,
                                 False)
                next_checkpoint += checkpoint or 0
            if once or (deadline is not None and clock.monotonic() >= deadline):
                return
            fire = self._sleep_until_next_poll(watched)
            if fire is not None:
                result.fired.extend(f for w in watched for f in w.monitor.fired
                                    if f not in result.fired)
                result.rollback = self._roll_back(fire)
                if result.rollback is not None:
                    return
                fire[0].drop(fire[1].host)
                watched = [w for w in watched if w.hosts]
                if not watched:
                    return

    # --- what reaches the watch from outside its thread (the supervisor's channel) ---------
    def worker_died(self, name: str, exc: BaseException) -> None:
        self.bus.worker_died(name, exc)
        self._wake.set()

    def journal_lost(self, reason: str) -> None:
        """Nothing to do at once: the watch's next write raises (exit 3)."""
        self.bus.journal_lost(reason)

    def _hear(self, watched: list[Watched]) -> tuple[Watched, Firing] | None:
        """Drain the watch's bus: a dead worker ends the watch (exit 3, undo nothing); of
        the rollback fires heard (kept until acted on), the first on a host a group still
        watches is returned."""
        for msg in self.bus.drain():
            if isinstance(msg, WorkerDied) and self.died is None:
                self.died = msg.text
                self.stop()
            elif isinstance(msg, Fire) and msg.firing.action == "rollback":
                self._fires.append(msg.firing)
        for firing in self._fires:
            w = next((w for w in watched if firing.trigger in w.phase.triggers
                      and any(h.name == firing.host for h in w.hosts)), None)
            if w is not None:
                self._fires.remove(firing)
                return w, firing
        return None

    def _still_leading(self) -> bool:
        """Asked before every cycle: a watcher that lost its leadership stops acting at
        once and stands by until it wins an election again (False while it stood by, so
        the caller re-checks the stop flag)."""
        lead = self.leadership
        if lead is None or lead.is_leader:
            return True
        self._stand_by(lead.lost_reason or "the leadership was lost")
        return False

    def _stand_by(self, why: str) -> None:
        lead = self.leadership
        assert lead is not None
        self.parts.say(f"no longer the active watcher ({why}): standing by, not acting")
        if self.metrics is not None:
            self.metrics.set_watch_active(False)
        try:
            self.recorder.event(EventKind.WATCH_ROLE, self.run_id, None, None, None,
                                f"standby: {why}", role="standby")
        except JournalUnavailableError:
            pass
        lead.release()
        if lead.wait(self.stop_event, poll=1.0):
            self.parts.say("active again: won the election")
            if self.metrics is not None:
                self.metrics.set_watch_active(True)
            try:
                self.recorder.event(EventKind.WATCH_ROLE, self.run_id, None, None, None,
                                    "active", role="active")
            except JournalUnavailableError:
                pass

    def _lead(self, names: list[str]) -> bool:
        """HA: of the watchers of these hosts (on any machine sharing the journal) one is
        active; the others stand by and take over within seconds of it dying. False when
        stopped while standing by."""
        from orchestrator.state.leader import Leadership, watch_key

        lead = Leadership(self.parts.journal, watch_key(names), "migrate watch",
                          on_lost=lambda reason: self._wake.set())
        self.leadership = lead
        if self.metrics is not None:
            self.metrics.set_watch_active(False)
        if not lead.try_acquire():
            holder = lead.current()
            who = (f"{holder.process.machine} pid {holder.process.pid} since {holder.since}"
                   if holder is not None else "another watcher")
            self.parts.say(f"standing by: {who} is watching {', '.join(names)}")
            self.recorder.event(EventKind.WATCH_ROLE, self.run_id, None, None, None,
                                "standby", role="standby")
            if not lead.wait(self.stop_event, poll=1.0):
                return False
            self.parts.say("taking over: the active watcher is gone")
        if self.metrics is not None:
            self.metrics.set_watch_active(True)
        return True

    def stop(self) -> None:
        """Ask the watch to end after the cycle in flight."""
        self.stop_event.set()
        self._wake.set()

    def interrupt(self, why: str) -> None:
        """SIGINT/SIGTERM: end the watch, and stop a rollback in flight (its phase is left
        `interrupted` for `migrate rollback` to finish)."""
        self.cancel.undo().cancel(why, by_operator=True)
        self.cancel.cancel(why, by_operator=True)
        self.stop()

    def _alerts(self, phases: list[Phase]) -> AlertService | None:
        """One alert source for every watched phase's `alert:` triggers (one receiver port),
        shared by their monitors; a push wakes the watch at once."""
        triggers = [self.project.triggers[n] for p in phases for n in p.triggers]
        if not any(t.alert is not None for t in triggers):
            return None
        from orchestrator.metrics.alerts.service import AlertService

        alerts = AlertService.for_triggers(self.project, triggers, log=self.parts.say)
        if alerts is None:
            return None
        alerts.start()
        for line in alerts.describe():
            self.parts.say(line)
        alerts.on_change(lambda change: self._wake.set())
        return alerts

    def _sleep_until_next_poll(self, watched: list[Watched]) -> tuple[Watched, Firing] | None:
        """Wait one poll interval; a pushed alert wakes it to fold the alert triggers at
        once, and a rollback fire found then is returned without waiting any longer."""
        clock = self.parts.clock
        until = clock.monotonic() + self.project.poll_interval
        while not self.stop_event.is_set():
            left = until - clock.monotonic()
            if left <= 0 or not self._wake.wait(left):
                return None
            self._wake.clear()
            if self.stop_event.is_set():
                break
            for w in watched:
                w.monitor.fold_alerts()
            fire = self._hear(watched)
            if fire is not None or self.died is not None:
                return fire
        return None

    def _checkpoint(self, result: WatchResult, elapsed: float, window: float | None,
                    final: bool) -> None:
        from orchestrator.services.observation import write_checkpoint

        number = len(result.checkpoints) + 1
        out = self.project.state_dir / "runs" / self.run_id / "observation"
        wanted = {e for n in self.project.notify for e in n.events}
        paths = write_checkpoint(self.parts.journal, self.run_id, out, number, final, elapsed,
                                 window, self.project.poll_interval, wanted)
        result.checkpoints.append(str(paths[0]))
        self.recorder.event(EventKind.OBSERVATION_CHECKPOINT, self.run_id, None, None, None,
                            f"{'final report' if final else f'checkpoint {number}'} after "
                            f"{format_duration(elapsed)}: {paths[0]}", checkpoint=number,
                            final=final, elapsed_s=round(elapsed, 1),
                            report=str(paths[0]))
        self.parts.say(f"observation {'final report' if final else f'checkpoint {number}'}: "
                       f"{paths[0]}")

    def _roll_back(self, fire: tuple[Watched, Firing]) -> RunReport | None:
        w, firing = fire
        if self.leadership is not None and not self.leadership.confirm():
            self.parts.say(f"{firing.reason} on {firing.host}: not acting, this watcher is no "
                           "longer the active one")
            return None
        host = next(h for h in w.hosts if h.name == firing.host)
        report = self.lifecycle.watch_rollback(
            host, Reason(RollbackCause.WATCH, f"{firing.reason} (migrate watch)",
                         trigger=firing.trigger, host=host.name), self.run_id,
            w.phase.number, self.cancel)
        return report  # migrate_rollbacks_total counts it from the rollback_started event


def watch_exit_outcome(result: WatchResult) -> RunOutcome:
    if result.rollback is not None:
        return result.rollback.outcome
    if result.died is not None:
        return RunOutcome.WORKER_DIED
    return RunOutcome.COMPLETED
