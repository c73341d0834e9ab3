"""`http`: GET a URL; `expect` makes it pass/fail, `field` reads a number by dotted path."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from orchestrator.config.templating import render
from orchestrator.core.model import Metric
from orchestrator.monitoring.sources.base import ReadContext, Reading, register

_MISSING = object()


def dotted(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return _MISSING
    return doc


def fetch(url: str, timeout: float) -> tuple[int, bytes]:
    """GET; return (status, body). Non-2xx answers are returned, not raised."""
    req = urllib.request.Request(url, headers={"Accept": "application/json, text/plain"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read() if exc.fp else b""


class HttpSource:
    def read(self, metric: Metric, ctx: ReadContext) -> Reading:
        url = render(str(metric.config["url"]), ctx.template_context())
        passfail = "field" not in metric.config
        try:
            status, body = fetch(url, ctx.timeout)
        except (OSError, ValueError) as exc:  # refused, timeout, DNS, bad URL
            why = f"GET {url}: {getattr(exc, 'reason', exc)}"
            return Reading.passed(False, why) if passfail else Reading(None, why)
        if not 200 <= status < 300:
            why = f"GET {url}: HTTP {status}"
            return Reading.passed(False, why) if passfail else Reading(None, why)
        try:
            doc = json.loads(body) if body.strip() else None
        except ValueError:
            doc = None
        if passfail:
            expect = metric.config.get("expect") or {}
            for key, want in expect.items():
                got = dotted(doc, str(key))
                if got is _MISSING or got != want:
                    shown = "missing" if got is _MISSING else repr(got)
                    return Reading.passed(False, f"{key} is {shown}, expected {want!r}")
            return Reading.passed(True)
        field = str(metric.config["field"])
        value = dotted(doc, field)
        if value is _MISSING or isinstance(value, bool):
            return Reading(None, f"GET {url}: no numeric field {field}")
        try:
            return Reading(float(value))
        except (TypeError, ValueError):
            return Reading(None, f"GET {url}: {field} is {value!r}, not a number")


register("http", HttpSource())
