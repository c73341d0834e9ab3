"""Shorten a project's durations for a rehearsal, never its thresholds.

`for:`, `bake:`, `wait:`, baseline windows and the poll interval are multiplied
by one factor that the rehearsal prints; every threshold, percentage and count
stays exactly as written, so a drill proves the real limits.
"""

from __future__ import annotations

from dataclasses import replace

from orchestrator.core.model import Project

MIN_POLL = 0.25
MIN_CAPTURE = 1.0


def scaled(project: Project, factor: float) -> Project:
    if factor == 1:
        return project
    phases = {}
    for n, phase in project.phases.items():
        steps = tuple(replace(s, wait_seconds=s.wait_seconds * factor,
                              capture_seconds=max(MIN_CAPTURE, s.capture_seconds * factor)
                              if s.capture_seconds else 0.0)
                      for s in phase.steps)
        phases[n] = replace(phase, bake=phase.bake * factor, steps=steps)
    triggers = {n: replace(t, for_seconds=t.for_seconds * factor)
                for n, t in project.triggers.items()}
    return replace(project, phases=phases, triggers=triggers,
                   poll_interval=max(MIN_POLL, project.poll_interval * factor))
