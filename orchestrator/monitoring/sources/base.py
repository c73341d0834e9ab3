"""The metric-source interface: one method, `read(metric, ctx) -> Reading`.

A read that errors (refused, timeout, non-2xx, empty result) is *no data*: a
Reading with value None and the error text. Sources translate their library's
exceptions into that at the boundary; only `NvmlUnavailableError` (NVML missing
on a host) escapes, because it is a configuration problem, not a sample.

Pass/fail metrics read as 1.0 (pass) or 0.0 (fail); numeric ones as their value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.config.inventory import Host
from orchestrator.core.model import Metric
from orchestrator.runners.base import CommandRunner


@dataclass(frozen=True)
class Reading:
    value: float | None
    error: str | None = None

    @property
    def nodata(self) -> bool:
        return self.value is None

    @classmethod
    def passed(cls, ok: bool, error: str | None = None) -> Reading:
        return cls(1.0 if ok else 0.0, error)


@dataclass(frozen=True)
class ReadContext:
    """What a source may need to read one metric on one host."""

    host: Host
    hostvars: dict[str, dict[str, Any]]
    phase: int | None
    run_id: str | None
    elapsed: float  # seconds since the phase started (scripted timelines)
    timeout: float  # for this one read; shorter than the poll interval
    prometheus_url: str | None = None
    commands: CommandRunner | None = None  # `command` source and `from:` probes
    hosts: dict[str, Host] = field(default_factory=dict)  # by name, for `from:`

    def template_context(self) -> dict[str, Any]:
        from orchestrator.config.templating import context_for

        return context_for(self.host.name, self.hostvars, self.phase, self.run_id)


class Source(Protocol):
    def read(self, metric: Metric, ctx: ReadContext) -> Reading: ...


SOURCES: dict[str, Source] = {}


def register(name: str, source: Source) -> None:
    SOURCES[name] = source


def read_metric(metric: Metric, ctx: ReadContext) -> Reading:
    """Read one metric; any unexpected error is no data with the error's text, never a crash."""
    from orchestrator._exceptions import NvmlUnavailableError
    from orchestrator.monitoring.sources import load_all

    load_all()
    source = SOURCES[metric.source]
    try:
        return source.read(metric, ctx)
    except NvmlUnavailableError:
        raise
    except Exception as exc:  # a source bug must not stop the watch: report it as no data
        return Reading(None, f"{metric.source} source error: {type(exc).__name__}: {exc}")
