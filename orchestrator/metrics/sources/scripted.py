"""`scripted`: a timeline of values from phase start, for rehearsals and tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.config.yamlsource import YDict, YList
from orchestrator.core.durations import parse_duration
from orchestrator.core.model import Metric, MetricKind
from orchestrator.metrics.sources.base import Key, ReadContext, Reading, Report, SourceSpec


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


def _kind(body: Mapping[str, Any]) -> MetricKind:
    values = body.get("values") or []
    if any(isinstance(v, dict) and v.get("value") in ("pass", "fail") for v in values):
        return MetricKind.PASSFAIL
    return MetricKind.NUMBER


def _values(value: Any) -> str | None:
    if isinstance(value, list) and value:
        return None
    return "must be a non-empty list of {at, value}"


def _check_items(body: YDict, report: Report) -> None:
    """Each item is `{at: DURATION, value: number | pass | fail | null}`, checked at its
    own line."""
    values = body.get("values")
    if not isinstance(values, YList):
        return
    for i, item in enumerate(values):
        if not isinstance(item, YDict):
            report(values.line_of(i), "each value must be a mapping {at: 0s, value: 100}")
            continue
        for key in item:
            if key not in ("at", "value"):
                report(item.line_of(key), f"unknown key {key!r} in a scripted value")
        try:
            parse_duration(item.get("at"))
        except ValueError as exc:
            report(item.line_of("at"), f"at: {exc}")
        v = item.get("value")
        if v not in ("pass", "fail", None) and (isinstance(v, bool) or
                                                not isinstance(v, int | float)):
            report(item.line_of("value"), "value must be a number, pass, fail or null")


SPEC = SourceSpec(
    name="scripted",
    summary="a timeline of values from phase start, for rehearsals and tests",
    keys={"values": Key(_values, required=True,
                        doc="[{at: 0s, value: 100}, {at: 40s, value: pass}]")},
    kind=_kind,
    reader=ScriptedSource(),
    rules=_check_items,
)
