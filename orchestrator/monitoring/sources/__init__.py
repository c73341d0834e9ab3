"""Metric sources: the registry of every `source:` a metric may name.

Each module declares its `SPEC` (keys, their types, its metric kind, its reader;
see `base.py`). `SOURCES` below is the explicit list that `config/project.py`
validates `migration.yaml` against and that the monitor reads through: a new
source is one module plus one line here. Importing this package is cheap (the
sources import their client libraries on first read), because every command that
loads the project imports it.
"""

from __future__ import annotations

from orchestrator.monitoring.sources import (
    command,
    exporter,
    http,
    nvml,
    prometheus,
    scripted,
    tcp,
)
from orchestrator.monitoring.sources.base import SourceSpec

SOURCES: dict[str, SourceSpec] = {spec.name: spec for spec in (
    prometheus.SPEC,
    exporter.SPEC,
    nvml.SPEC,
    http.SPEC,
    tcp.SPEC,
    command.SPEC,
    scripted.SPEC,
)}
