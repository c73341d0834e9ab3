"""Checksums of a phase's definitions, so resume and rollback know when they changed."""

from __future__ import annotations

import hashlib

from orchestrator.core.model import Phase, Project, StepAction, UndoKind


def file_checksums(project: Project, phase: Phase) -> dict[str, str]:
    """sha256 of the phase file and of every playbook the phase may run or undo with."""
    paths = [phase.path]
    for step in phase.steps:
        if step.action is StepAction.PLAYBOOK:
            paths.append(project.root / step.target)
        if step.undo and step.undo.kind is UndoKind.PLAYBOOK:
            paths.append(project.root / step.undo.target)
    out: dict[str, str] = {}
    for p in paths:
        rel = str(p.relative_to(project.root)) if p.is_relative_to(project.root) else str(p)
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else "missing"
    return out


def changed_files(then: dict[str, str], now: dict[str, str]) -> list[str]:
    return sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k))
