"""Baselines: which triggers compare against one, and which are missing before a phase.

A trigger with `degrade_pct` or `increase` compares against a baseline: the median the
monitor samples at phase start (`phase-start`), or one captured by name (`migrate
baseline capture`, or a phase's `baseline:` step). A named one that was never captured
on a host is a configuration error before anything runs, unless a phase this one
requires captures it (`scheduled`).
"""

from __future__ import annotations

from collections.abc import Container

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
