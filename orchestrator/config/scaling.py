"""Shorten a project's durations for a rehearsal, never its thresholds.

`for:`, `bake:`, `wait:`, baseline windows, `requires`' `observed:` durations, a canary
analysis `window` and the poll interval are multiplied by one factor that the rehearsal
prints; every threshold, percentage and count stays exactly as written, so a drill
proves the real limits.

`without_other_migrations` takes out the requirements on another migration (`{migration:
X, ...}`): a drill has its own journal, in which no other migration ever ran, so it prints
what such a requirement would check and counts it as met.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass, replace
from typing import Any

from orchestrator.core.model import Phase, Project

MIN_POLL = 0.25
MIN_CAPTURE = 1.0


def scaled(project: Project, factor: float) -> Project:
    if factor == 1:
        return project
    phases = {n: _scaled_phase(phase, factor) for n, phase in project.phases.items()}
    triggers = {n: replace(t, for_seconds=t.for_seconds * factor)
                for n, t in project.triggers.items()}
    return replace(project, phases=phases, triggers=triggers,
                   poll_interval=max(MIN_POLL, project.poll_interval * factor))


def _scaled_phase(phase: Phase, factor: float) -> Phase:
    steps = tuple(replace(s, wait_seconds=s.wait_seconds * factor,
                          capture_seconds=max(MIN_CAPTURE, s.capture_seconds * factor)
                          if s.capture_seconds else 0.0)
                  for s in phase.steps)
    changes: dict[str, Any] = {"bake": phase.bake * factor, "steps": steps,
                               "observed": {n: s * factor for n, s in phase.observed.items()}}
    for f in fields(phase):  # requirement objects (`{migration:, phase:, observed:}`)
        value = getattr(phase, f.name)
        if f.name != "steps" and isinstance(value, tuple) and any(_has_observed(v)
                                                                   for v in value):
            changes[f.name] = tuple(_scaled_requirement(v, factor) for v in value)
    if phase.analysis is not None:  # the window shortens like the bake it must fit in
        changes["analysis"] = phase.analysis.scaled(factor)
    return replace(phase, **changes)


def _has_observed(value: Any) -> bool:
    return is_dataclass(value) and not isinstance(value, type) and hasattr(value, "observed")


def _scaled_requirement(value: Any, factor: float) -> Any:
    if not _has_observed(value) or not isinstance(value.observed, int | float):
        return value
    return replace(value, observed=value.observed * factor)


def other_migrations(phase: Phase) -> list[Any]:
    """The phase's requirements on another migration (objects with a `migration`), when the
    project model has them."""
    out = []
    for f in fields(phase):
        value = getattr(phase, f.name)
        if isinstance(value, tuple):
            out += [v for v in value if is_dataclass(v) and getattr(v, "migration", None)]
    return out


def describe_requirement(req: Any) -> str:
    from orchestrator.core.durations import format_duration

    text = f"migration {req.migration} phase {getattr(req, 'phase', '?')}"
    host = getattr(req, "host", None)
    text += f" on {host}" if host else " on the same host"
    observed = getattr(req, "observed", None)
    if observed:
        text += f", observed for {format_duration(observed)} with nothing firing"
    return text + " completed" if not observed else text


def without_other_migrations(project: Project) -> tuple[Project, list[str]]:
    """The project with requirements on other migrations taken out, and one line for each:
    what it would check."""
    lines: list[str] = []
    phases = {}
    for n, phase in project.phases.items():
        others = other_migrations(phase)
        if not others:
            phases[n] = phase
            continue
        changes: dict[str, Any] = {}
        for f in fields(phase):
            value = getattr(phase, f.name)
            if isinstance(value, tuple) and any(v in others for v in value):
                changes[f.name] = tuple(v for v in value if v not in others)
        phases[n] = replace(phase, **changes)
        lines += [f"phase {n} requires {describe_requirement(r)}: a rehearsal would check "
                  "it in the shared journal; counted as met" for r in others]
    if not lines:
        return project, []
    return replace(project, phases=phases), lines
