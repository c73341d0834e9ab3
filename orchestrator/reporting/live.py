"""The operator's screen while a run runs: a rich Live view on a terminal, plain lines elsewhere.

`phase`, `resume`, `rollback`, `watch` and `rehearse` subscribe a `LiveView` to what
their runs publish on their bus (`App(hooks=[view], cycle_hooks=[view.on_cycle])`).
The view is a reducer of those messages into a `LiveModel`: every journaled event
(which host is on which step since when, each host's phase state and wave, the bake
or observation countdown, the outcome in one line) and every monitoring cycle (each
trigger's latest value against its limit and baseline), so values move although no
transition happened. A view of another process's run has no bus to hear: `attach`
gives it a poller of the journaled trigger states instead.

On a terminal the view is a rich `Live` region at the bottom of stderr, redrawn a
few times a second; the operator lines the engine says (`ok main: backup`, the
trigger that fired, the rollback) scroll above it. Past `FLEET` hosts the host grid
becomes counts per wave and state, so 200 hosts still fit one screen. Without a
terminal (a pipe, CI, `--output json`) nothing is redrawn: the view prints one
plain line per transition the engine does not already say (a trigger going pending
or back to ok, a wave completed, the failure budget exhausted), with no escape codes.

rich is imported only when a view is built, never on the `status`/`--help` path.
"""

from __future__ import annotations

import io
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from orchestrator.core.events import EventKind, RunEvent
from orchestrator.core.timestamps import parse_time
from orchestrator.reporting import show_value

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from orchestrator.core.bus import Cycle
    from orchestrator.state.journal import Journal

#: more hosts than this and the grid becomes counts per wave and state
FLEET = 20
#: trigger rows shown at most (firing first, then pending, no data, ok)
TRIGGER_ROWS = 8

_FINAL = ("completed", "rolled_back", "rollback_failed", "interrupted")
_PHASE_OF = {
    EventKind.RUN_STARTED: "running", EventKind.RUN_RESUMED: "running",
    EventKind.BAKE_STARTED: "baking", EventKind.PHASE_COMPLETED: "completed",
    EventKind.ROLLBACK_STARTED: "rolling_back", EventKind.ROLLBACK_COMPLETED: "rolled_back",
    EventKind.ROLLBACK_FAILED: "rollback_failed", EventKind.RUN_INTERRUPTED: "interrupted",
}
_STEP_OF = {
    EventKind.STEP_STARTED: "running", EventKind.STEP_SUCCEEDED: "succeeded",
    EventKind.STEP_FAILED: "failed", EventKind.STEP_SKIPPED: "skipped",
    EventKind.STEP_ROLLBACK_STARTED: "undoing", EventKind.STEP_ROLLED_BACK: "undone",
    EventKind.STEP_ROLLBACK_FAILED: "undo_failed",
}
_TRIGGER_OF = {
    EventKind.TRIGGER_PENDING: "pending", EventKind.TRIGGER_FIRED: "firing",
    EventKind.TRIGGER_RESOLVED: "ok", EventKind.TRIGGER_RESET: "ok",
}
# how a cell and a host state look: (symbol + word, rich style)
_CELL_LOOK = {
    "pending": ("·", "dim"), "running": ("▶", "bold yellow"), "succeeded": ("✓", "green"),
    "failed": ("✗ failed", "bold red"), "skipped": ("–", "dim"),
    "undoing": ("↺ undo", "magenta"), "undone": ("↩ undone", "cyan"),
    "undo_failed": ("‼ UNDO FAILED", "bold white on red"),
}
_HOST_LOOK = {
    "pending": "dim", "running": "yellow", "baking": "blue", "completed": "green",
    "rolling_back": "magenta", "rolled_back": "cyan", "rollback_failed": "bold white on red",
    "interrupted": "bold red", "watching": "blue",
}
_TRIGGER_LOOK = {"firing": "bold white on red", "pending": "bold yellow", "ok": "green"}


def wants_live(stream: TextIO, output: str = "text") -> bool:
    """A redrawn view only for a person at a terminal: not for pipes, CI or JSON output."""
    if output == "json" or os.environ.get("TERM") == "dumb":
        return False
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def seconds(value: float) -> str:
    """Compact elapsed time for a cell: 0.4s, 12s, 3m05s, 2h03m."""
    if value < 10:
        return f"{max(value, 0):.1f}s"
    whole = int(value)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float | int):
        return f"{value:g}"
    return str(value)


@dataclass
class Cell:
    state: str = "pending"
    started: float | None = None
    ended: float | None = None
    attempt: int = 1


@dataclass
class HostRow:
    state: str = "pending"
    wave: int | None = None
    since: float = 0.0
    reason: str | None = None


@dataclass
class TriggerRow:
    trigger: str
    host: str
    phase: int | None
    status: str = "ok"
    value: float | None = None
    threshold: float | None = None
    baseline: float | None = None
    breaching_since: float | None = None  # on the view's clock
    nodata: bool = False
    #: when the trigger stopped being watched (its host's rollback began, the phase ended):
    #: its breaching timer stops there instead of counting on
    stopped: float | None = None


@dataclass
class LiveModel:
    """Everything the view shows, folded from events; one lock guards it all."""

    clock: Callable[[], float] = time.monotonic
    run_id: str | None = None
    phase: int | None = None
    started: float | None = None
    hosts: dict[str, HostRow] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    wave: tuple[int, int] | None = None
    triggers: dict[tuple[int | None, str, str], TriggerRow] = field(default_factory=dict)
    countdown: tuple[str, float, float] | None = None  # label, ends at, total seconds
    checkpoint: tuple[int, float] | None = None  # checkpoints written, next one at
    alert: str | None = None  # the latest fire, no-data warning or exhausted budget
    outcome: str | None = None
    ended: float | None = None  # when the outcome came: the header's timer stops there
    watching: bool = False
    watch_phases: tuple[int, ...] = ()
    #: what a phase will do, when the caller knows it: steps, hosts, bake seconds
    expected: dict[int, tuple[tuple[str, ...], tuple[str, ...], float]] = \
        field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def reset(self, run_id: str | None, phase: int | None) -> None:
        self.run_id, self.phase, self.started = run_id, phase, self.clock()
        self.hosts, self.steps, self.cells = {}, [], {}
        self.wave = self.countdown = self.checkpoint = None
        self.triggers, self.alert, self.outcome, self.ended = {}, None, None, None
        steps, hosts, _ = self.expected.get(phase, ((), (), 0.0)) if phase is not None \
            else ((), (), 0.0)
        self.steps = list(steps)
        for name in hosts:
            self.hosts[name] = HostRow(since=self.started)

    def fold(self, e: RunEvent) -> None:
        now = self.clock()
        with self.lock:
            if e.kind in (EventKind.RUN_STARTED, EventKind.RUN_RESUMED,
                          EventKind.WATCH_STARTED) and e.run_id != self.run_id:
                self.reset(e.run_id, e.phase)
            elif self.run_id is None:
                self.reset(e.run_id, e.phase)  # `migrate rollback`: no run_started
            if e.phase is not None and not self.watching:
                self.phase = e.phase
            p = e.payload
            if e.kind is EventKind.WATCH_STARTED:
                self.watching = True
                if e.host:
                    self._host(e.host).state = "watching"
                if p.get("for_s"):
                    self.countdown = ("observation", now + float(p["for_s"]), float(p["for_s"]))
                if p.get("checkpoint_s"):
                    self.checkpoint = (0, now + float(p["checkpoint_s"]))
            elif e.kind is EventKind.OBSERVATION_CHECKPOINT and self.checkpoint is not None:
                done = int(p.get("checkpoint", self.checkpoint[0] + 1))
                every = (self.checkpoint[1] - (self.started or now)) / (self.checkpoint[0] + 1)
                self.checkpoint = (done, (self.started or now) + every * (done + 1))
            elif e.kind is EventKind.WAVE_STARTED:
                self.wave = (int(p.get("wave", 0)), int(p.get("waves", 0)))
                if self.countdown and self.countdown[0] == "bake":
                    self.countdown = None  # the last wave's bake is over
                for name in p.get("hosts", []):
                    self._host(name).wave = self.wave[0]
            elif e.kind is EventKind.BUDGET_EXHAUSTED:
                self.alert = e.detail
            elif e.kind in _PHASE_OF and e.host:
                row = self._host(e.host)
                row.state, row.since = _PHASE_OF[e.kind], now
                if p.get("wave") is not None:
                    row.wave = int(p["wave"])
                elif row.wave is None and self.wave is not None:
                    row.wave = self.wave[0]
                bake = float(p.get("bake_s") or self.expected.get(e.phase or -1,
                                                                  ((), (), 0.0))[2])
                if e.kind is EventKind.BAKE_STARTED and bake and (
                        self.countdown is None or self.countdown[0] != "bake"
                        or now - (self.countdown[1] - self.countdown[2]) > 1.0):
                    # the wave's hosts start baking together: one countdown per wave
                    self.countdown = ("bake", now + bake, bake)
                if e.kind is EventKind.PHASE_COMPLETED and self.countdown and \
                        self.countdown[0] == "bake" and self.countdown[1] <= now + 0.5:
                    self.countdown = None
                if e.kind in (EventKind.ROLLBACK_STARTED, EventKind.ROLLBACK_FAILED,
                              EventKind.RUN_INTERRUPTED):
                    row.reason = e.detail
                if e.kind in (EventKind.ROLLBACK_STARTED, EventKind.RUN_INTERRUPTED) and \
                        self.countdown and self.countdown[0] == "bake":
                    self.countdown = None
                if e.kind in (EventKind.ROLLBACK_STARTED, EventKind.ROLLBACK_COMPLETED,
                              EventKind.ROLLBACK_FAILED, EventKind.RUN_INTERRUPTED):
                    self._stop_timers(e.host, now)  # the monitor no longer watches this host
                self._conclude()
            elif e.kind in _STEP_OF and e.host and e.step:
                self._host(e.host)
                if e.step not in self.steps:
                    self.steps.append(e.step)
                cell = self.cells.setdefault((e.host, e.step), Cell())
                state = _STEP_OF[e.kind]
                if state in ("running", "undoing"):
                    cell.started, cell.ended = now, None
                    cell.attempt = int(p.get("attempt", cell.attempt if state == "undoing"
                                             else 1))
                elif cell.started is not None:
                    cell.ended = now
                cell.state = state
            elif e.kind is EventKind.STEP_RETRY and e.host and e.step:
                cell = self.cells.setdefault((e.host, e.step), Cell())
                cell.attempt = int(p.get("attempt", cell.attempt)) + 1
            elif e.kind in _TRIGGER_OF and e.host and p.get("trigger"):
                trow = self._trigger(e.phase, str(p["trigger"]), e.host)
                status = _TRIGGER_OF[e.kind]
                if trow.stopped is not None and status != "ok":  # watched again: a new breach
                    trow.stopped, trow.breaching_since = None, None
                if status != "ok" and trow.breaching_since is None:
                    trow.breaching_since = now
                if status == "ok":
                    trow.breaching_since = None
                trow.status = status
                trow.value = p.get("value", trow.value)
                trow.threshold = p.get("threshold", trow.threshold)
                trow.baseline = p.get("baseline", trow.baseline)
                if e.kind is EventKind.TRIGGER_FIRED:
                    self.alert = f"{e.detail} on {e.host}"
            elif e.kind is EventKind.METRIC_NODATA:
                self.alert = e.detail

    def _stop_timers(self, host: str, now: float) -> None:
        """A host's rollback began (or its run was interrupted): its triggers are no longer
        evaluated, so their breaching timers stop now."""
        for t in self.triggers.values():
            if t.host == host and t.stopped is None:
                t.stopped = now

    def _host(self, name: str) -> HostRow:
        if name not in self.hosts:
            self.hosts[name] = HostRow(wave=self.wave[0] if self.wave else None,
                                       since=self.clock())
        return self.hosts[name]

    def _trigger(self, phase: int | None, trigger: str, host: str) -> TriggerRow:
        key = (phase, trigger, host)
        if key not in self.triggers:
            self.triggers[key] = TriggerRow(trigger, host, phase)
        return self.triggers[key]

    def _conclude(self) -> None:
        """Once every host of the run is in a final state, say so (the CLI's `finish` line,
        from the run's report, replaces this when it comes)."""
        states = [h.state for h in self.hosts.values()]
        if not states or any(s not in _FINAL for s in states) or self.watching:
            return
        took = seconds(self.clock() - (self.started or self.clock()))
        what = f"phase {self.phase}" if self.phase is not None else "the run"
        counts = {s: states.count(s) for s in _FINAL if s in states}
        worst = next((h for h in self.hosts.values() if h.state != "completed" and h.reason),
                     None)
        text = f"{what}: " + ", ".join(f"{s.replace('_', ' ')} on {n}" for s, n
                                        in counts.items()) + f" host(s) in {took}"
        if worst is not None:
            text += f"; why: {worst.reason}"
        self.outcome = text
        self.ended = self.clock()

    def fold_cycle(self, cycle: Cycle) -> None:
        """A monitoring cycle of this process's run: every trigger's value now (moving
        between transitions). Rows of another run are stale and skipped; a row no longer
        watched keeps its place with its timer stopped."""
        now = self.clock()
        with self.lock:
            if self.run_id is None or cycle.run_id != self.run_id:
                return
            for v in cycle.values:
                t = self._trigger(v.phase, v.trigger, v.host)
                if t.stopped is not None:
                    continue
                t.status, t.value = v.status, v.value
                t.threshold, t.baseline = v.threshold, v.baseline
                t.nodata = v.value is None
                t.breaching_since = None if v.breaching_for is None else now - v.breaching_for

    def refresh_triggers(self, journal: Journal) -> None:
        """Overlay the values the monitor journaled at its last poll (moving between
        transitions); rows of other runs are stale and skipped."""
        with self.lock:
            hosts, phase, run_id = list(self.hosts), self.phase, self.run_id
            phases = sorted({k[0] for k in self.triggers if k[0] is not None} |
                            ({phase} if phase is not None else set()) |
                            (set(self.watch_phases) if self.watching else set()))
        if not phases or run_id is None:
            return
        now_utc, now = datetime.now(UTC), self.clock()
        rows = [(h, number, r) for h in hosts for number in phases
                for r in journal.trigger_states(h, number) if r["run_id"] == run_id]
        with self.lock:
            for host, number, r in rows:
                t = self._trigger(number, r["trigger"], host)
                if t.stopped is not None:
                    continue  # no longer watched: keep the row as it stood, timer stopped
                t.status, t.value = r["status"], r["value"]
                t.threshold, t.baseline = r["threshold"], r["baseline"]
                t.nodata = r["value"] is None
                since = r["breaching_since"]
                if since:
                    at = parse_time(since)
                    t.breaching_since = now - (now_utc - at).total_seconds()
                else:
                    t.breaching_since = None


class LiveView:
    """The subscriber that draws the live view (terminal) or prints transitions (no terminal).

    In-process it is a pure reducer of the run's bus: `__call__` folds each journaled
    event, `on_cycle` each monitoring cycle. `journal` is only for a view of another
    process's run (`status`-style): a poller re-reads the journaled trigger values each
    `trigger_every` (the callable is called lazily); `phases` are those `watch`
    evaluates there. `kinds`: trigger name -> how its value reads
    (`reporting.trigger_kinds`), called once, when a first trigger is drawn, so an
    `alert:` trigger reads `firing`/`not firing` rather than its stored 1/0.

    Build it with a `Console` so tests can drive it: `LiveView(Console(file=buf,
    force_terminal=True, width=100))`, call it with `RunEvent`s, and read
    `render()` or the console's output. `live=None` decides from the console
    (`Console.is_terminal`).
    """

    def __init__(self, console: Console | None = None, *, live: bool | None = None,
                 title: str = "migrate", plain: Callable[[str], None] | None = None,
                 refresh_per_second: float = 4.0, trigger_every: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 journal: Callable[[], Journal | None] | None = None,
                 phases: Sequence[int] = (),
                 kinds: Callable[[], Mapping[str, str]] | None = None) -> None:
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        self.console = console
        self.live = console.is_terminal if live is None else live
        self.title = title
        self.model = LiveModel(clock=clock, watch_phases=tuple(phases))
        self._plain = plain or (lambda line: print(line, file=sys.stderr, flush=True))
        self._refresh = refresh_per_second
        self._trigger_every = trigger_every
        self._journal = journal
        self._kinds_of = kinds
        self._kinds: dict[str, str] | None = None
        self._poller: threading.Thread | None = None
        self._halt = threading.Event()
        self._live: Live | None = None
        self._start_lock = threading.Lock()
        self._stopped = False
        self._paused = False
        self._machine = socket.gethostname()

    def kind(self, trigger: object) -> str | None:
        """How `trigger`'s value reads, None when not known (the project did not load)."""
        if self._kinds is None:
            try:
                self._kinds = dict(self._kinds_of()) if self._kinds_of is not None else {}
            except Exception:  # a project that does not load has its own error
                self._kinds = {}
        return self._kinds.get(str(trigger))

    def __enter__(self) -> LiveView:
        """The region is drawn from the first event on (`start`), so a command refused
        before anything ran leaves no empty frame behind."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        with self._start_lock:
            if not self.live or self._live is not None or self._stopped or self._paused:
                return
            from rich.live import Live

            live = Live(console=self.console, get_renderable=self.render,
                        refresh_per_second=self._refresh, transient=False,
                        redirect_stdout=True, redirect_stderr=True,
                        vertical_overflow="visible")
            live.start()
            self._live = live
            if self._journal is not None and self._poller is None:
                from orchestrator.core.supervision import spawn

                self._poller = spawn("live-view-triggers", self._poll)

    def stop(self) -> None:
        """Draw the last frame (with the outcome) and give the terminal back."""
        with self._start_lock:
            self._stopped = True
            live, self._live = self._live, None
        self._halt.set()
        if live is not None:
            live.refresh()
            live.stop()

    def _poll(self) -> None:
        """Re-read the journaled trigger values, in a thread of its own: a slow or
        unavailable journal stalls this thread, never the redraw nor the run's own output
        (which shares the console's lock with the redraw)."""
        while not self._halt.wait(self._trigger_every):
            self.read_triggers()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Give the terminal to a prompt, then draw again below it."""
        with self._start_lock:
            live, self._live = self._live, None
            self._paused = True  # events during the prompt must not draw over it
        if live is not None:
            live.stop()
        try:
            yield
        finally:
            with self._start_lock:
                self._paused = False
            if live is not None:
                self.start()

    @property
    def active(self) -> bool:
        return self._live is not None

    # --- input -------------------------------------------------------------------------------
    def __call__(self, event: RunEvent) -> None:
        """The event hook: fold the event; without a terminal, print its transition line."""
        self.model.fold(event)
        if self.live and self._live is None:
            self.start()
        if not self.live:
            line = plain_line(event, self.kind(event.payload.get("trigger")))
            if line is not None:
                self._plain(line)

    def on_cycle(self, cycle: Cycle) -> None:
        """The cycle subscriber: fold the trigger values of a monitoring cycle."""
        self.model.fold_cycle(cycle)

    def say(self, line: str) -> None:
        """An operator line: above the live region on a terminal, else as it is."""
        live = self._live
        if live is not None:
            from rich.text import Text

            live.console.print(Text(line), soft_wrap=True)
        else:
            self._plain(line)

    def finish(self, line: str) -> None:
        """The outcome, in one line: the last thing the live view shows."""
        with self.model.lock:
            self.model.outcome = line.splitlines()[0] if line else line
            self.model.countdown = None
            if self.model.ended is None:
                self.model.ended = self.model.clock()
            for t in self.model.triggers.values():  # nothing is watched any more
                if t.stopped is None:
                    t.stopped = self.model.ended

    def expect(self, phase: int, steps: Sequence[str], hosts: Sequence[str],
               bake_s: float = 0.0) -> None:
        """What phase `phase` will do, so the grid shows every step and host from the start
        (pending ones too) and the bake has a countdown. Optional: without it, steps and
        hosts appear as their events arrive."""
        with self.model.lock:
            self.model.expected[phase] = (tuple(steps), tuple(hosts), bake_s)

    def countdown(self, label: str, total: float) -> None:
        with self.model.lock:
            self.model.countdown = (label, self.model.clock() + total, total)

    # --- drawing -----------------------------------------------------------------------------
    def render(self) -> RenderableType:
        """The frame: header, hosts (grid or fleet counts), triggers, countdown, outcome."""
        from rich.console import Group
        from rich.text import Text

        m = self.model
        now = m.clock()
        with m.lock:
            parts: list[RenderableType] = [self._header(now)]
            if m.hosts and m.steps or m.hosts and not m.watching:
                parts.append(self._fleet(now) if len(m.hosts) > FLEET else self._grid(now))
            if m.triggers:
                parts.append(self._triggers(now))
            if m.countdown is not None:
                label, end, total = m.countdown
                left = max(end - now, 0.0)
                parts.append(Text.assemble((f"{label}: ", "bold"),
                                           f"{seconds(left)} left of {seconds(total)}"))
            if m.checkpoint is not None:
                done, at = m.checkpoint
                parts.append(Text(f"checkpoints written: {done}; next in "
                                  f"{seconds(max(at - now, 0.0))}"))
            if m.alert and not m.outcome:
                parts.append(_line(Text.assemble(("latest: ", "bold red"), m.alert)))
            if m.outcome:
                parts.append(_line(Text.assemble(("outcome: ", "bold"), m.outcome)))
        return Group(*parts)

    def read_triggers(self) -> None:
        """Overlay the trigger values the monitor journaled at its last poll."""
        if self._journal is None or self.model.run_id is None:
            return
        try:
            journal = self._journal()
            if journal is not None:
                self.model.refresh_triggers(journal)
        except Exception:  # a view must never stop a run; values come back next time
            return

    def _header(self, now: float) -> RenderableType:
        from rich.text import Text

        m = self.model
        text = Text.assemble((self.title, "bold"))
        if m.run_id:
            text.append(f" · run {m.run_id}")
        if m.phase is not None and not m.watching:
            text.append(f" · phase {m.phase}")
        if m.wave is not None and m.wave[1] > 1:
            text.append(f" · wave {m.wave[0]}/{m.wave[1]}", style="bold cyan")
        if m.started is not None:
            text.append(f" · {seconds((m.ended or now) - m.started)}")
        text.append(f" · on {self._machine}", style="dim")
        return text

    def _grid(self, now: float) -> RenderableType:
        from rich.table import Table
        from rich.text import Text

        m = self.model
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        table.add_column("host")
        table.add_column("state")
        if any(h.wave is not None for h in m.hosts.values()):
            table.add_column("wave")
        for step in m.steps:
            table.add_column(step, no_wrap=True)
        waves = len(table.columns) > 2 + len(m.steps)
        for name, h in m.hosts.items():
            row: list[RenderableType] = [name, Text(h.state.replace("_", " "),
                                                    style=_HOST_LOOK.get(h.state, ""))]
            if waves:
                row.append(str(h.wave or ""))
            for step in m.steps:
                row.append(self._cell(m.cells.get((name, step)), now))
            table.add_row(*row)
        return table

    @staticmethod
    def _cell(cell: Cell | None, now: float) -> RenderableType:
        from rich.text import Text

        if cell is None:
            return Text("·", style="dim")
        symbol, style = _CELL_LOOK.get(cell.state, ("?", ""))
        text = symbol
        if cell.started is not None and cell.state not in ("skipped",):
            text += " " + seconds((cell.ended or now) - cell.started)
        if cell.attempt > 1 and cell.state in ("running", "failed", "succeeded"):
            text += f" (try {cell.attempt})"
        return Text(text, style=style)

    def _fleet(self, now: float) -> RenderableType:
        """Past FLEET hosts: one row per wave with its hosts counted by state, and the step
        it is on, then the hosts that need attention by name."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        m = self.model
        by_wave: dict[int | None, list[str]] = {}
        for name, h in m.hosts.items():
            by_wave.setdefault(h.wave, []).append(name)
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        for col in ("wave", "hosts", "states", "step"):
            table.add_column(col)
        for wave, names in sorted(by_wave.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
            counts: dict[str, int] = {}
            for n in names:
                counts[m.hosts[n].state] = counts.get(m.hosts[n].state, 0) + 1
            states = Text()
            for state, count in counts.items():
                if len(states):
                    states.append("  ")
                states.append(f"{state.replace('_', ' ')} {count}",
                              style=_HOST_LOOK.get(state, ""))
            label = str(wave) if wave is not None else ("later" if len(by_wave) > 1 else "all")
            table.add_row(label, str(len(names)), states,
                          self._wave_step(names))
        attention = [(n, h) for n, h in m.hosts.items()
                     if h.state in ("rolling_back", "rolled_back", "rollback_failed",
                                    "interrupted")]
        parts: list[RenderableType] = [table]
        for n, h in attention[:5]:
            parts.append(Text.assemble((f"  {h.state.replace('_', ' ')} ", "bold red"), n,
                                       f": {h.reason}" if h.reason else ""))
        if len(attention) > 5:
            parts.append(Text(f"  ... and {len(attention) - 5} more"))
        return Group(*parts)

    def _wave_step(self, names: list[str]) -> str:
        """The latest step of these hosts and how its cells stand, e.g. 'deploy ▶12 ✓30 ✗1'."""
        m = self.model
        for step in reversed(m.steps):
            cells = [m.cells[(n, step)] for n in names if (n, step) in m.cells]
            if not cells:
                continue
            counts: dict[str, int] = {}
            for c in cells:
                counts[c.state] = counts.get(c.state, 0) + 1
            return step + " " + " ".join(f"{_CELL_LOOK[s][0].split()[0]}{n}"
                                         for s, n in counts.items())
        return ""

    def _triggers(self, now: float) -> RenderableType:
        """Trigger rows, worst first. Past FLEET hosts: one row per trigger with its worst
        host and the hosts counted by state, then the pending and firing hosts by name."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        m = self.model
        order = {"firing": 0, "pending": 1}

        def rank(t: TriggerRow) -> tuple[int, float, str, str]:
            ratio = (t.value / t.threshold) if t.value is not None and t.threshold else 0.0
            return (order.get(t.status, 3 if not t.nodata else 2), -ratio, t.trigger, t.host)

        rows = sorted(m.triggers.values(), key=rank)
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        for col in ("trigger", "host", "value", "limit", "baseline", "state", "breaching"):
            table.add_column(col, justify="right" if col in ("value", "limit", "baseline")
                             else "left")
        fleet = max(len(m.hosts), len({t.host for t in rows})) > FLEET
        if fleet:
            per: dict[str, list[TriggerRow]] = {}
            for t in rows:
                per.setdefault(t.trigger, []).append(t)
            for name, group in sorted(per.items()):
                counts: dict[str, int] = {}
                for t in group:
                    counts[t.status] = counts.get(t.status, 0) + 1
                worst = group[0]  # rows are sorted worst first
                state = Text()
                for status in ("firing", "pending", "ok"):
                    if counts.get(status):
                        state.append(("" if not len(state) else " · ")
                                     + f"{status if status == 'ok' else status.upper()} "
                                     f"{counts[status]}", style=_TRIGGER_LOOK.get(status, ""))
                table.add_row(name, f"worst {worst.host}", self._value(worst),
                              _num(worst.threshold), _num(worst.baseline), state,
                              self._breaching(worst, now))
            rows = [t for t in rows if t.status != "ok"]
        for t in rows[:TRIGGER_ROWS]:
            table.add_row(t.trigger, t.host, self._value(t), _num(t.threshold),
                          _num(t.baseline),
                          Text(t.status.upper() if t.status != "ok" else "ok",
                               style=_TRIGGER_LOOK.get(t.status, "")),
                          self._breaching(t, now))
        if len(rows) <= TRIGGER_ROWS:
            return table
        rest: dict[str, dict[str, int]] = {}
        for t in rows[TRIGGER_ROWS:]:
            c = rest.setdefault(t.trigger, {})
            c[t.status] = c.get(t.status, 0) + 1
        more = "; ".join(f"{name}: " + ", ".join(f"{n} {s}" for s, n in sorted(c.items()))
                         for name, c in sorted(rest.items()))
        return Group(table, Text(f"  + {len(rows) - TRIGGER_ROWS} more ({more})", style="dim"))

    def _value(self, t: TriggerRow) -> str:
        """The value as read: `pass`/`fail` for a pass/fail trigger, `firing`/`not firing`
        for an alert trigger, never 1/0."""
        if t.value is None:
            return "no data" if (t.nodata or t.status != "ok") else _num(t.value)
        return show_value(t.value, self.kind(t.trigger), t.threshold)

    @staticmethod
    def _breaching(t: TriggerRow, now: float) -> str:
        """How long it has been breaching; stopped where the trigger stopped being
        watched (a FIRING row does not count on after the rollback)."""
        if t.breaching_since is None:
            return ""
        return seconds(max((t.stopped or now) - t.breaching_since, 0.0))

    def text(self, width: int = 120) -> str:
        """The current frame as plain text (tests, screenshots), trigger values re-read."""
        from rich.console import Console

        self.read_triggers()

        console = Console(width=width, record=True, file=io.StringIO(), color_system=None,
                          force_terminal=False)
        console.print(self.render())
        return console.export_text()


def _line(text: Any) -> Any:
    """A long line (the outcome, the latest fire) wraps at the terminal's width, word by
    word, rather than being cut: its end (why, which host) is what the operator needs."""
    text.no_wrap = False
    text.overflow = "fold"
    return text


def plain_line(e: RunEvent, kind: str | None = None) -> str | None:
    """The line a transition gets without a terminal, or None when the engine already says
    it (steps, waves starting, bake, fires, rollbacks: see the engine's `say`)."""
    p = e.payload
    if e.kind in (EventKind.TRIGGER_PENDING, EventKind.TRIGGER_RESOLVED,
                  EventKind.TRIGGER_RESET):
        word = {EventKind.TRIGGER_PENDING: "pending", EventKind.TRIGGER_RESOLVED: "resolved",
                EventKind.TRIGGER_RESET: "back to ok"}[e.kind]
        facts = show_value(p.get("value"), kind, p.get("threshold"))
        if p.get("threshold") is not None:
            facts += f" vs limit {_num(p.get('threshold'))}"
        if p.get("baseline") is not None:
            facts += f" (baseline {_num(p.get('baseline'))})"
        return f"  trigger {p.get('trigger')} {word} on {e.host}: {facts}"
    if e.kind in (EventKind.WAVE_COMPLETED, EventKind.BUDGET_EXHAUSTED):
        return e.detail
    return None
