"""What must hold before a phase starts, checked before its run is recorded: every NVML
metric it reads works on every host, and its `alert:` triggers have a source that can
be served. (Missing baselines: `monitor.baselines`.)"""

from __future__ import annotations

from orchestrator._exceptions import Problem
from orchestrator.config.inventory import Host
from orchestrator.core.model import Phase, Project
from orchestrator.runners.base import CommandRunner


def nvml_problems(project: Project, phase: Phase, hosts: list[Host],
                  commands: CommandRunner | None) -> list[Problem]:
    """Every nvml metric the phase reads must work on every host: a clear error up front,
    not a crash mid-phase."""
    from orchestrator.metrics.sources.nvml import nvml_available

    names = {project.triggers[t].metric for t in phase.triggers
             if project.triggers[t].metric} | set(phase.preconditions) | {
        s.target for s in phase.steps if s.action.value == "check"}
    problems = []
    for name in sorted(names):
        metric = project.metrics[name]
        if metric.source != "nvml":
            continue
        for host in hosts:
            why = nvml_available(host, commands)
            if why is not None:
                problems.append(Problem("migration.yaml", metric.line,
                                        f"metric {name!r} (nvml) cannot be read: {why}"))
    return problems


def raise_unusable_alert_sources(project: Project, phase: Phase) -> None:
    """A phase run whose `alert:` triggers could not be served (the receiver's token not
    in the environment, no source at all) is refused before it is recorded."""
    triggers = [project.triggers[n] for n in phase.triggers]
    if any(t.alert is not None for t in triggers):
        from orchestrator.metrics.alerts.service import AlertService

        AlertService.for_triggers(project, triggers)  # raises ConfigError; binds nothing
