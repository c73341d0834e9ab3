"""The migration project as typed, validated values: what `project.load_project` returns.

Nothing here reads files or checks anything; it only names the parts, so that the
engine, the planner and the views share one vocabulary.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class StepAction(enum.Enum):
    """A step does exactly one of these."""

    PLAYBOOK = "playbook"
    COMMAND = "command"
    CHECK = "check"
    WAIT = "wait"
    PAUSE = "pause"
    BASELINE = "baseline"  # capture a named baseline (issue 4: `pre-migration`)


class UndoKind(enum.Enum):
    PLAYBOOK = "playbook"
    COMMAND = "command"
    NONE = "none"  # the step changes nothing that needs undoing, said explicitly


@dataclass(frozen=True)
class Undo:
    kind: UndoKind
    target: str = ""  # playbook path (relative to the project) or command template

    def describe(self) -> str:
        if self.kind is UndoKind.NONE:
            return "none"
        return f"{self.kind.value}: {self.target}"


@dataclass(frozen=True)
class Step:
    id: str
    name: str
    action: StepAction
    target: str  # playbook path, command template, metric name, duration text or pause message
    undo: Undo | None  # None for actions that change nothing (check, wait, pause, baseline)
    timeout: float | None
    retries: int
    hosts: tuple[str, ...] | None  # None: every host of the run
    line: int
    wait_seconds: float = 0.0
    capture_seconds: float = 0.0

    def describe(self) -> str:
        return f"{self.action.value}: {self.target}"


@dataclass(frozen=True)
class Phase:
    number: int
    name: str
    path: Path
    requires: tuple[int, ...]
    triggers: tuple[str, ...]
    bake: float
    preconditions: tuple[str, ...]
    steps: tuple[Step, ...]
    serial: int = 0  # 0: all hosts step by step; 1: the whole phase on one host at a time

    @property
    def slug(self) -> str:
        return self.path.stem


class MetricKind(enum.Enum):
    NUMBER = "number"
    PASSFAIL = "pass/fail"


@dataclass(frozen=True)
class Metric:
    name: str
    source: str
    kind: MetricKind
    config: dict[str, Any]  # the source's own keys, templates unrendered
    nodata: str  # "skip" or "breach"
    nodata_alert: float
    timeout: float | None
    line: int


class Condition(enum.Enum):
    ABOVE = "above"
    BELOW = "below"
    DEGRADE_PCT = "degrade_pct"
    INCREASE = "increase"
    FAILING = "failing"


class TriggerAction(enum.Enum):
    ROLLBACK = "rollback"
    NOTIFY = "notify"
    PAUSE = "pause"


@dataclass(frozen=True)
class Trigger:
    name: str
    metric: str
    condition: Condition
    threshold: float  # X for above/below, P for degrade_pct, N for increase, 0 for failing
    direction: str  # "up" or "down", for degrade_pct
    for_seconds: float
    action: TriggerAction
    baseline: str  # "phase-start" or a captured baseline's name
    line: int

    def describe(self) -> str:
        cond = {
            Condition.ABOVE: f"> {self.threshold:g}",
            Condition.BELOW: f"< {self.threshold:g}",
            Condition.DEGRADE_PCT: (
                f"{'+' if self.direction == 'up' else '-'}{self.threshold:g}% vs baseline "
                f"{self.baseline}"
            ),
            Condition.INCREASE: f"rises by more than {self.threshold:g} since phase start",
            Condition.FAILING: "fails",
        }[self.condition]
        held = f" for {self.for_seconds:g}s" if self.for_seconds else ""
        return f"{self.metric} {cond}{held} -> {self.action.value}"


@dataclass(frozen=True)
class Notifier:
    url: str
    events: tuple[str, ...]


@dataclass
class Project:
    root: Path
    name: str
    inventory_path: Path
    poll_interval: float
    prometheus_url: str | None
    metrics: dict[str, Metric]
    triggers: dict[str, Trigger]
    notify: tuple[Notifier, ...]
    phases: dict[int, Phase] = field(default_factory=dict)
    #: where the journal and run artifacts live; rehearsals use their own
    state_dir_override: Path | None = None

    def phase(self, number: int) -> Phase:
        return self.phases[number]

    @property
    def state_dir(self) -> Path:
        return self.state_dir_override or self.root / ".migrate"
