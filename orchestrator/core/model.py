"""The migration project as typed, validated values: what `project.load_project` returns.

Nothing here reads files or checks anything; it only names the parts, so that the
engine, the planner and the views share one vocabulary.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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
class Requirement:
    """`requires: [{migration: NAME, phase: N, host: H, observed: 24h}]`: a phase of another
    migration in the same journal, completed (and quiet for `observed`) on `host` (by
    default the host the phase runs on) before this phase may start there."""

    migration: str
    phase: int
    host: str | None = None
    observed: float | None = None
    line: int = 0

    def describe(self) -> str:
        from orchestrator.core.durations import format_duration

        where = f" on {self.host}" if self.host else ""
        quiet = f", observed {format_duration(self.observed)}" if self.observed else ""
        return f"{self.migration} phase {self.phase}{where}{quiet}"


# --- canary analysis: a phase's `analysis:` (SPEC section 2, "Canary analysis") ----------
# Parsed and checked by config/analysis.py; judged by canary/ (whose judge takes only the
# samples and these numbers). Defaults are SPEC's: control not-migrated with waves, before
# without; window the whole bake; confidence 0.95; min_samples 10; nodata fail; pass 90;
# marginal 75 (or `pass` when lower); per metric fail_on either, allowed_change_pct 0,
# critical false, dry_run false, no spread check.

NOT_MIGRATED = "not-migrated"  # control: the run's hosts not yet in any wave
BEFORE = "before"  # control: the canary hosts themselves, before the first step
HOSTS = "hosts"  # control: a list of hosts and groups
#: what `fail_on:` may say: the direction of a change that fails the metric
FAIL_ON = ("increase", "decrease", "either")


@dataclass(frozen=True)
class AnalysisMetric:
    """One judged metric and its options."""

    name: str
    fail_on: str = "either"  # increase | decrease | either
    allowed_change_pct: float = 0.0
    critical: bool = False
    line: int = 0
    dry_run: bool = False  # judged and reported, never counted in the score
    #: `spread: {allowed_change_pct}`: also fail when the canary's interquartile range
    #: grew past 1 + this/100 times the control's (and Brown-Forsythe says they differ)
    spread_allowed_pct: float | None = None


@dataclass(frozen=True)
class AnalysisSpec:
    """A phase's canary analysis: the metrics, the control, and the verdict's thresholds."""

    metrics: tuple[AnalysisMetric, ...]
    control: str = NOT_MIGRATED  # not-migrated | before | hosts
    control_hosts: tuple[str, ...] = ()  # hosts and groups, when control is "hosts"
    window: float = 600.0  # seconds
    confidence: float = 0.95
    min_samples: int = 10
    nodata: str = "fail"  # fail | ignore
    pass_score: float = 90.0
    marginal: float = 75.0
    dry_run: bool = False
    line: int = 0

    def scaled(self, factor: float) -> AnalysisSpec:
        """The spec with its window shortened by a rehearsal's time scale (thresholds kept)."""
        return replace(self, window=self.window * factor)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)


def judged_waves(spec: AnalysisSpec, cumulative_wave_sizes: Sequence[int],
                 run_hosts: int) -> list[int]:
    """1-based waves judged at the end of their bake. With not-migrated, a wave that
    leaves no host unmigrated is not judged (its triggers still apply)."""
    waves = list(range(1, len(cumulative_wave_sizes) + 1))
    if spec.control != NOT_MIGRATED:
        return waves
    return [n for n, size in zip(waves, cumulative_wave_sizes, strict=True) if size < run_hosts]


def control_problem(spec: AnalysisSpec, cumulative_wave_sizes: Sequence[int],
                    run_hosts: int) -> str | None:
    """Why waves (from the command line) must be refused before anything runs, or None:
    `control: not-migrated` and no wave leaves a host unmigrated to compare with."""
    if spec.control != NOT_MIGRATED:
        return None
    if not cumulative_wave_sizes:
        return ("control: not-migrated needs waves, and this run has none: every host would "
                "be migrated at once and none is left to compare with")
    if not judged_waves(spec, cumulative_wave_sizes, run_hosts):
        return (f"the waves leave no host unmigrated to compare with (control: not-migrated): "
                f"the first wave already takes {cumulative_wave_sizes[0]} of the "
                f"{run_hosts} hosts; start with a smaller wave")
    return None


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
    analysis: AnalysisSpec | None = None  # `analysis:`: canary vs control at each bake's end
    #: cumulative shares of the run's hosts: ints are counts, "10%" shares; () = one wave
    waves: tuple[int | str, ...] = ()
    max_failed: int | str = 0  # failure budget: a count or a share ("2%") of the run's hosts
    on_fire: str = "wave"  # what an exhausted budget rolls back: "wave" or "run"
    #: phase -> seconds it must have been completed (and quiet) on the host: `observed:`
    observed: dict[int, float] = field(default_factory=dict)
    #: requirements on phases of other migrations of the same journal
    cross: tuple[Requirement, ...] = ()


class MetricKind(enum.Enum):
    NUMBER = "number"
    PASSFAIL = "pass/fail"


#: A pass/fail metric reads 1 (pass) or 0 (fail); a reading at or above this passes.
PASS_CUTOFF = 0.5


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
    ALERT = "alert"  # a Prometheus alert is firing for the host; the trigger has no metric


class TriggerAction(enum.Enum):
    ROLLBACK = "rollback"
    NOTIFY = "notify"
    PAUSE = "pause"


@dataclass(frozen=True)
class AlertSpec:
    """What an `alert:` trigger waits for: a firing alert of this name whose labels hold
    `match` and whose `host_label` names the host (inventory name or ansible_host, ":port"
    ignored). The rule's own `for:` decides when it fires, so migrate keeps no clock."""

    name: str
    match: tuple[tuple[str, str], ...] = ()  # sorted label equalities (hashable)
    host_label: str = "instance"

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.match)

    def describe(self) -> str:
        match = ", ".join(f'{k}="{v}"' for k, v in self.match)
        return (f"alert {self.name}" + (f"{{{match}}}" if match else "")
                + f" firing for the host (label {self.host_label})")


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
    alert: AlertSpec | None = None  # set exactly when condition is ALERT (metric is then "")

    def describe(self) -> str:
        if self.alert is not None:
            return f"{self.alert.describe()} -> {self.action.value}"
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
class AlertmanagerConfig:
    """`alertmanager:` in migration.yaml: the push receiver and the Alertmanager to poll."""

    listen: str | None  # "127.0.0.1:9095": POST /alerts receiver while a phase or watch runs
    token_env: str | None  # environment variable holding the Bearer token
    url: str | None  # Alertmanager base URL, polled at /api/v2/alerts every poll interval
    line: int = 0
    #: the Bearer token itself, for a drill's own receiver (migration.yaml never holds it:
    #: it names `token_env`); given, it is used instead of the environment's
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Notifier:
    url: str
    events: tuple[str, ...]


@dataclass(frozen=True)
class RunDefaults:
    """`defaults:` in migration.yaml: what a step or an undo gets when it says nothing."""

    step_timeout: float | None = 1800.0  # playbook and command steps, and undos (30m)
    undo_retries: int = 3  # further attempts of an undo whose host was unreachable
    undo_retry_delay: float = 10.0
    #: counted from the start of the rollback: no attempt on a lost host starts past it
    #: and one in flight then is cut (keepalive x count + this + a few s after the cut)
    undo_deadline: float = 30.0


@dataclass(frozen=True)
class SshSettings:
    """`ssh:` in migration.yaml: every SSH connection (Ansible's, fabric's, probes run
    `from:` a host) sends a keepalive every `keepalive` seconds and gives up on a peer
    that leaves `keepalive_count` of them unanswered."""

    keepalive: float = 5.0  # ServerAliveInterval
    keepalive_count: int = 3  # ServerAliveCountMax
    connect_timeout: float = 10.0  # ConnectTimeout

    @property
    def lost_after(self) -> float:
        """Seconds of silence after which a peer counts as lost."""
        return self.keepalive * self.keepalive_count


@dataclass(frozen=True)
class ExecutionNode:
    """`execution: {nodes: {NAME: {host, runner}}}` in migration.yaml: a machine that runs
    the playbook steps of the managed hosts whose `migrate_execution_node` names it, with
    ansible-runner's remote job protocol (runners/nodes.py)."""

    name: str
    host: str  # the inventory host reached over SSH
    runner: str = "ansible-runner"  # its path on the node; its directory goes first on PATH
    line: int = 0  # where migration.yaml defines it

    @property
    def runner_dir(self) -> str | None:
        """The directory put first on the node's PATH, None for a bare command name."""
        return self.runner.rsplit("/", 1)[0] or "/" if "/" in self.runner else None


#: the inventory variable that sends a managed host's playbook steps to a node
EXECUTION_NODE_VAR = "migrate_execution_node"


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
    alertmanager: AlertmanagerConfig | None = None  # `alertmanager:`; None when absent
    defaults: RunDefaults = field(default_factory=RunDefaults)  # `defaults:`
    ssh: SshSettings = field(default_factory=SshSettings)  # `ssh:`
    forks: int = 50  # `forks:`: Ansible's fan-out in one step, and ours
    #: `execution: {nodes: ...}`: where playbook steps run instead of here, by node name
    execution_nodes: dict[str, ExecutionNode] = field(default_factory=dict)
    #: `state:` (url, timeout): where the journal lives; a `state.open.StateSettings`
    state: Any = None
    #: `agent:`: the agent's source, taken from the project directory; `migrate analyze`
    #: without a PATH reads it
    agent: Path | None = None

    @property
    def state_dir(self) -> Path:
        return self.state_dir_override or self.root / ".migrate"
