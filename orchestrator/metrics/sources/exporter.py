"""`exporter`: scrape an exporter's text exposition directly (dcgm-exporter's :9400/metrics).

`series: 'NAME{label="v"}'` names the metric and exact label matches; labels not
named are ignored and several matching series are summed.

A URL is scraped once per poll cycle, however many hosts and metrics read it: one
exporter serving every host's series (`series: 'X{Hostname="{{ host }}"}'` with a
fixed `url`) costs one scrape per cycle, not one per host, and an exporter's
different series (VRAM, utilization) share a scrape too. The exposition is parsed
once and indexed by the labels the series name, so 2,000 hosts' lookups stay cheap.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from orchestrator.config.inventory import Host
from orchestrator.config.templating import render
from orchestrator.config.yamlsource import YDict
from orchestrator.core.http import HttpAnswer, HttpClient, HttpUnavailable
from orchestrator.core.model import Metric, MetricKind
from orchestrator.metrics.sources.base import (
    CycleMemo,
    Key,
    ReadContext,
    Reading,
    Report,
    SourceSpec,
    kind_is,
    text,
)

_SERIES = re.compile(r"^\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{(.*)\})?\s*$")
_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
EXPOSITION = {"Accept": "text/plain;version=0.0.4;q=1,*/*;q=0.1"}


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


class Exposition:
    """One scrape, parsed: samples by name, with sums indexed by the labels asked for."""

    def __init__(self, body: str) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        self.samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                self.samples.setdefault(sample.name, []).append(
                    (sample.labels, float(sample.value)))
        self._index: dict[tuple[str, tuple[str, ...]],
                          dict[tuple[str | None, ...], tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def total(self, name: str, want: dict[str, str]) -> tuple[float, int]:
        """(sum, count) of the samples called `name` whose labels include `want`."""
        keys = tuple(sorted(want))
        with self._lock:
            index = self._index.get((name, keys))
            if index is None:
                index = {}
                for labels, value in self.samples.get(name, ()):
                    k = tuple(labels.get(label) for label in keys)
                    total, count = index.get(k, (0.0, 0))
                    index[k] = (total + value, count + 1)
                self._index[(name, keys)] = index
        return index.get(tuple(want[k] for k in keys), (0.0, 0))


def scrape(client: HttpClient, url: str, timeout: float) -> Exposition | str:
    """The parsed exposition at `url` (through the pooled client), or why there is none."""
    try:
        answer = client.get(url, timeout, headers=EXPOSITION)
    except HttpUnavailable as exc:
        return str(exc)
    return parsed(url, answer)


def parsed(url: str, answer: HttpAnswer | HttpUnavailable) -> Exposition | str:
    """The exposition an answer holds, or why there is none."""
    if isinstance(answer, HttpUnavailable):
        return str(answer)
    if not answer.ok:
        return f"GET {url}: HTTP {answer.status}"
    try:
        return Exposition(answer.body.decode("utf-8", "replace"))
    except ValueError as exc:
        return f"{url}: unreadable exposition: {exc}"


class ExporterSource:
    def read(self, metric: Metric, ctx: ReadContext) -> Reading:
        ctx_vars = ctx.template_context()
        url = render(str(metric.config["url"]), ctx_vars)
        try:
            name, want = parse_series(render(str(metric.config["series"]), ctx_vars))
        except ValueError as exc:
            return Reading(None, str(exc))
        got = ctx.shared(("scrape", url), lambda: scrape(ctx.http, url, ctx.timeout))
        if isinstance(got, str):
            return Reading(None, got)
        total, found = got.total(name, want)
        if not found:
            return Reading(None, f"{url}: no series {metric.config['series']}")
        return Reading(total)

    def read_many(self, metric: Metric, hosts: Sequence[Host],
                  ctx: ReadContext) -> dict[str, Reading]:
        """Every distinct URL scraped once (all at once: one batch of the pooled client),
        then each host's series looked up in its scrape."""
        if ctx.memo is None:
            ctx = replace(ctx, memo=CycleMemo())
        urls: dict[str, str] = {}
        out: dict[str, Reading] = {}
        for host in hosts:
            try:
                urls[host.name] = render(str(metric.config["url"]),
                                         ctx.for_host(host).template_context())
            except Exception as exc:  # an undefined template variable on this host
                out[host.name] = Reading(None, f"exporter url: {exc}")
        distinct = sorted(set(urls.values()))
        memo = ctx.memo
        assert memo is not None
        http, timeout = ctx.http, ctx.timeout

        def scrape_all(keys: list[Any]) -> dict[Any, Exposition | str]:
            got = http.get_many([url for _, url in keys], timeout, headers=EXPOSITION)
            return {key: parsed(key[1], got[key[1]]) for key in keys}

        if len(distinct) > 1:
            memo.get_many([("scrape", url) for url in distinct], scrape_all)
        for host in hosts:
            if host.name not in out:
                try:
                    out[host.name] = self.read(metric, ctx.for_host(host))
                except Exception as exc:  # one host's template, not the batch
                    out[host.name] = Reading(None, f"exporter source error: {exc}")
        return out


def _check_series(body: YDict, report: Report) -> None:
    """A series without templates is checked now, at its line, not at the first read."""
    series: Any = body.get("series")
    if isinstance(series, str) and "{{" not in series and "{%" not in series:
        try:
            parse_series(series)
        except ValueError as exc:
            report(body.line_of("series"), str(exc))


SPEC = SourceSpec(
    name="exporter",
    summary="scrape an exporter's text exposition; sum the series that match",
    keys={"url": Key(text, required=True, doc="the exporter's /metrics URL (a template)"),
          "series": Key(text, required=True,
                        doc="NAME or NAME{label=\"value\", ...}: exact label matches")},
    kind=kind_is(MetricKind.NUMBER),
    reader=ExporterSource(),
    rules=_check_series,
)
