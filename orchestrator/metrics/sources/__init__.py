"""Metric sources: the registry of every `source:` a metric may name.

Each module declares its `SPEC` (keys, their types, its metric kind, its reader;
see `base.py`). `SOURCES` below is the explicit list that the monitor reads through,
and each spec is registered with the config layer (`config/schema.py`), which
validates `migration.yaml` against it without importing this package: a new
source is one module plus one line here. Importing this package is cheap (the
sources import their client libraries on first read), because every command that
loads the project imports it.
"""

from __future__ import annotations

from orchestrator.config.schema import register_source
from orchestrator.metrics.sources import (
    analyze,
    command,
    exporter,
    http,
    nvml,
    prometheus,
    scripted,
    tcp,
)
from orchestrator.metrics.sources.base import SourceSpec

SOURCES: dict[str, SourceSpec] = {spec.name: spec for spec in (
    prometheus.SPEC,
    exporter.SPEC,
    nvml.SPEC,
    http.SPEC,
    tcp.SPEC,
    command.SPEC,
    analyze.SPEC,
    scripted.SPEC,
)}

for _spec in SOURCES.values():
    register_source(_spec)
