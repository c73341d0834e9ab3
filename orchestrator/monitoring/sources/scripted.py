"""`scripted`: a timeline of values from phase start, for rehearsals and tests."""

from __future__ import annotations

from orchestrator.core.durations import parse_duration
from orchestrator.core.model import Metric
from orchestrator.monitoring.sources.base import ReadContext, Reading, register


class ScriptedSource:
    def read(self, metric: Metric, ctx: ReadContext) -> Reading:
        current: object = None
        started = False
        for item in sorted(metric.config["values"], key=lambda v: parse_duration(v["at"])):
            if parse_duration(item["at"]) <= ctx.elapsed:
                current, started = item.get("value"), True
        if not started or current is None:
            return Reading(None, "no scripted value yet" if not started else "scripted no data")
        if current in ("pass", "fail"):
            return Reading.passed(current == "pass")
        return Reading(float(current))  # type: ignore[arg-type]


register("scripted", ScriptedSource())
