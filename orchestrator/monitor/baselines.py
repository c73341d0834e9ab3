"""Baselines: which triggers compare against one, and which are missing before a phase.

A trigger with `degrade_pct` or `increase` compares against a baseline: the median the
monitor samples at phase start (`phase-start`), or one captured by name (`migrate
baseline capture`, or a phase's `baseline:` step). A named one that was never captured
on a host is a configuration error before anything runs, unless a phase this one
requires captures it (`scheduled`).
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

from orchestrator._exceptions import ConfigError, Problem
from orchestrator.config.inventory import Host
from orchestrator.core.model import Condition, Phase, Project, Trigger
from orchestrator.runners.base import CommandRunner
from orchestrator.state.journal import Journal

PHASE_START = "phase-start"
BASELINE_SAMPLES = 3


def needs_baseline(trigger: Trigger) -> bool:
    return trigger.condition in (Condition.DEGRADE_PCT, Condition.INCREASE)


def missing_baselines(project: Project, phase: Phase, hosts: list[Host],
                      journal: Journal, scheduled: Container[tuple[str, str]] = ()
                      ) -> list[Problem]:
    """A trigger naming a baseline that was never captured on a host is a config error,
    unless it is `scheduled` (host, name): a required phase's baseline step captures it."""
    problems = []
    rel = str(phase.path.relative_to(project.root))
    for name in phase.triggers:
        t = project.triggers[name]
        if not needs_baseline(t) or t.baseline == PHASE_START:
            continue
        for host in hosts:
            if (host.name, t.baseline) in scheduled:
                continue
            if t.metric not in journal.baseline(host.name, t.baseline):
                problems.append(Problem(
                    "migration.yaml", t.line,
                    f"trigger {name!r} (used by {rel}) needs baseline {t.baseline!r} of "
                    f"{t.metric} on {host.name}; capture it first with `migrate baseline "
                    f"capture --host {host.name} --name {t.baseline}`"))
    return problems


def raise_missing_baselines(project: Project, phase: Phase, hosts: list[Host],
                            journal: Journal, commands: CommandRunner | None = None,
                            scheduled: Container[tuple[str, str]] = ()) -> None:
    """Config problems that need the hosts or the journal: missing baselines, no NVML.
    Checked before a run is recorded, so bad configuration never leaves a half-written
    run behind."""
    problems = missing_baselines(project, phase, hosts, journal, scheduled)
    from orchestrator.monitor.preflight import nvml_problems

    problems += nvml_problems(project, phase, hosts, commands)
    if problems:
        raise ConfigError(problems)


def phase_start_baselines(triggers: list[Trigger], hosts: list[Host],
                          given: dict[tuple[str, str], float], zero: Container[str],
                          medians: dict[tuple[str, str], float],
                          named: Callable[[str, str], dict[str, float]]
                          ) -> tuple[dict[tuple[str, str], float | None],
                                     dict[str, dict[str, float]]]:
    """Each (host, trigger)'s baseline at phase start: handed in (`given`: a watch's,
    from the phase's own run), 0 for the triggers in `zero` (Xid: counted from the
    waiter's start), the sampled median (`phase-start`), else the named baseline
    (`named(host, name)`). Also the phase-start medians per host, for the journal."""
    out: dict[tuple[str, str], float | None] = {}
    phase_start: dict[str, dict[str, float]] = {}
    for host in hosts:
        for t in triggers:
            key = (host.name, t.name)
            if not needs_baseline(t):
                out[key] = None
            elif key in given:
                out[key] = given[key]
            elif t.name in zero:
                out[key] = 0.0
            elif t.baseline == PHASE_START:
                out[key] = medians.get((host.name, t.metric))
                if out[key] is not None:
                    phase_start.setdefault(host.name, {})[t.metric] = medians[(host.name,
                                                                               t.metric)]
            else:
                out[key] = named(host.name, t.baseline).get(t.metric)
    return out, phase_start


def take_phase_start(poller: Any, journal: Journal, triggers: list[Trigger],
                     metrics: Container[str], hosts: list[Host],
                     given: dict[tuple[str, str], float], zero: Container[str], run_id: str,
                     dry_run: bool) -> dict[tuple[str, str], float | None]:
    """The baselines of every new host of a monitored run, at once: BASELINE_SAMPLES
    rounds of the cycle's batched reads (`poller.medians`), 0.2 s apart, the phase-start
    medians saved in one transaction (not in a dry run)."""
    wanted = sorted({t.metric for t in triggers
                     if needs_baseline(t) and t.baseline == PHASE_START and t.metric in metrics
                     and t.name not in zero and any((h.name, t.name) not in given
                                                    for h in hosts)})
    medians = poller.medians(wanted, hosts, BASELINE_SAMPLES if wanted else 0, 0.2)
    values, phase_start = phase_start_baselines(triggers, hosts, given, zero, medians,
                                                journal.baseline)
    if not dry_run and phase_start:
        with journal.batch():
            for host_name, got in phase_start.items():
                journal.save_baseline(host_name, f"{PHASE_START}:{run_id}", got, run_id)
    return values
