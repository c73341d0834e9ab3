"""`command`: run a command on the host; exit 0 passes, or `parse: number` reads stdout.

A command that did not finish (its read timed out, the host did not answer) is no data,
not a failed check: the poll's read timeout is a fraction of the poll interval, and on a
busy controller a healthy host's `test -e` can outlast it; a trigger's `for:` or its
no-data rule decides what a silence means."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from orchestrator.config.templating import render
from orchestrator.core.clock import CancelToken
from orchestrator.core.model import Metric, MetricKind
from orchestrator.metrics.sources.base import (
    Key,
    ReadContext,
    Reading,
    SourceSpec,
    one_of,
    text,
)
from orchestrator.metrics.sources.tcp import probe_dir
from orchestrator.runners.base import CommandRequest, FailureKind

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


class CommandSource:
    def read(self, metric: Metric, ctx: ReadContext) -> Reading:
        if ctx.commands is None:
            return Reading(None, "no command runner")
        origin = ctx.origin(metric.config["from"]) if "from" in metric.config else ctx.host
        if origin is None:
            return Reading(None, f"from: unknown host {metric.config['from']!r}")
        command = render(str(metric.config["command"]), ctx.template_context(), shell=True)
        result = ctx.commands.run_command(
            CommandRequest(host=origin, command=command, artifacts_dir=probe_dir(),
                           timeout=ctx.timeout), CancelToken())
        if not result.ok and result.failure is not FailureKind.EXIT:
            # it did not finish (timed out, host unreachable, cancelled): no data, as for
            # any source's read that errors; only the command's own exit status is a verdict
            return Reading(None, result.detail)
        if metric.config.get("parse") != "number":
            return Reading.passed(result.ok, None if result.ok else result.detail)
        if not result.ok:
            return Reading(None, result.detail)
        match = _NUMBER.search(result.stdout or "")
        if match is None:
            return Reading(None, f"no number in the output of {command!r}")
        return Reading(float(match.group(0)))


def _kind(body: Mapping[str, Any]) -> MetricKind:
    return MetricKind.NUMBER if body.get("parse") == "number" else MetricKind.PASSFAIL


SPEC = SourceSpec(
    name="command",
    summary="run a command on the host: exit 0 passes, or `parse: number` reads stdout",
    keys={"command": Key(text, required=True, doc="a shell command (a template, quoted)"),
          "parse": Key(one_of("number"), doc="number: the first number on stdout"),
          "from": Key(text, doc="run it on this inventory host instead")},
    kind=_kind,
    reader=CommandSource(),
)
