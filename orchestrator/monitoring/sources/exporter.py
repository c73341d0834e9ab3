"""`exporter`: scrape an exporter's text exposition directly (dcgm-exporter's :9400/metrics).

`series: 'NAME{label="v"}'` names the metric and exact label matches; labels not
named are ignored and several matching series are summed.
"""

from __future__ import annotations

import re

from orchestrator.config.templating import render
from orchestrator.core.model import Metric
from orchestrator.monitoring.sources.base import ReadContext, Reading, register
from orchestrator.monitoring.sources.http import fetch

_SERIES = re.compile(r"^\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{(.*)\})?\s*$")
_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_series(text: str) -> tuple[str, dict[str, str]]:
    m = _SERIES.match(text)
    if not m:
        raise ValueError(f"series {text!r} is not NAME or NAME{{label=\"value\"}}")
    labels: dict[str, str] = {}
    body = m.group(2) or ""
    pos = 0
    while pos < len(body.strip()):
        lm = _LABEL.match(body, pos)
        if not lm:
            raise ValueError(f"series {text!r}: cannot read labels")
        labels[lm.group(1)] = lm.group(2)
        pos = lm.end()
    return m.group(1), labels


class ExporterSource:
    def read(self, metric: Metric, ctx: ReadContext) -> Reading:
        from prometheus_client.parser import text_string_to_metric_families

        ctx_vars = ctx.template_context()
        url = render(str(metric.config["url"]), ctx_vars)
        try:
            name, want = parse_series(render(str(metric.config["series"]), ctx_vars))
        except ValueError as exc:
            return Reading(None, str(exc))
        try:
            status, body = fetch(url, ctx.timeout)
        except (OSError, ValueError) as exc:
            return Reading(None, f"GET {url}: {getattr(exc, 'reason', exc)}")
        if not 200 <= status < 300:
            return Reading(None, f"GET {url}: HTTP {status}")
        total = 0.0
        found = 0
        try:
            for family in text_string_to_metric_families(body.decode("utf-8", "replace")):
                for sample in family.samples:
                    if sample.name == name and all(sample.labels.get(k) == v
                                                   for k, v in want.items()):
                        total += float(sample.value)
                        found += 1
        except ValueError as exc:
            return Reading(None, f"{url}: unreadable exposition: {exc}")
        if not found:
            return Reading(None, f"{url}: no series {metric.config['series']}")
        return Reading(total)


register("exporter", ExporterSource())
