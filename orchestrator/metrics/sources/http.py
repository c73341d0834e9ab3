"""`http`: GET a URL; `expect` makes it pass/fail, `field` reads a number by dotted path.
With `from: HOST` the GET is made on that host (over SSH, as tcp's probe is), so that a
health check is what that host sees.

Within one poll cycle a URL is fetched once, however many metrics read it (the
default project reads `agent_health` and `model_load_failures` from one `/health`).
Reads go through the reader's pooled client (`core.http`, `ctx.http`): keep-alive
connections reused from one poll to the next, a bounded number per host. A poll cycle
reads every host's URL in one batch (`read_many`, the client's `get_many`): all in
flight at once from one thread, not one thread hand-off per GET.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.config.inventory import Host
from orchestrator.config.templating import context_for, render
from orchestrator.core.http import HttpAnswer, HttpClient, HttpUnavailable
from orchestrator.core.model import Metric, MetricKind
from orchestrator.metrics.sources.base import (
    CycleMemo,
    Key,
    ReadContext,
    Reading,
    SourceSpec,
    mapping,
    text,
)

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


ACCEPT = {"Accept": "application/json, text/plain"}


def fetch(client: HttpClient, url: str, timeout: float) -> HttpAnswer:
    """GET through the pooled client; non-2xx answers are returned, HttpUnavailable
    raised when there is no answer."""
    return client.get(url, timeout, headers=ACCEPT)


#: a GET run on a `from:` host: prints the status, a newline, then the body
PROBE = ("import sys,urllib.request,urllib.error\n"
         "try:\n"
         " r=urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]))\n"
         " c,b=r.status,r.read()\n"
         "except urllib.error.HTTPError as e:\n"
         " c,b=e.code,e.read()\n"
         "except Exception as e:\n"
         " print(e); sys.exit(1)\n"
         "sys.stdout.write(str(c)+'\\n'+b.decode('utf-8','replace'))\n")


def fetch_from(origin: Any, url: str, ctx: ReadContext) -> HttpAnswer:
    """GET on the `from:` host through the command runner; OSError when it cannot."""
    import shlex

    from orchestrator.core.clock import CancelToken
    from orchestrator.metrics.sources.tcp import probe_dir
    from orchestrator.runners.base import CommandRequest

    if ctx.commands is None:
        raise OSError("no command runner for a remote probe")
    command = " ".join(["python3", "-c", shlex.quote(PROBE), shlex.quote(url),
                        f"{max(0.1, ctx.timeout * 0.7):.2f}"])
    result = ctx.commands.run_command(
        CommandRequest(host=origin, command=command, artifacts_dir=probe_dir(),
                       timeout=ctx.timeout + 5), CancelToken())
    status, _, body = (result.stdout or "").partition("\n")
    if not result.ok or not status.strip().isdigit():
        raise OSError(f"from {origin.name}: {(result.stdout or result.detail).strip()[-200:]}")
    return HttpAnswer(int(status), body.encode())


class HttpSource:
    def read(self, metric: Metric, ctx: ReadContext) -> Reading:
        url = render(str(metric.config["url"]), ctx.template_context())
        passfail = "field" not in metric.config
        origin_name = metric.config.get("from")
        origin = ctx.origin(origin_name) if origin_name else None
        if origin_name and origin is None:
            why = f"from: unknown host {origin_name!r}"
            return Reading.passed(False, why) if passfail else Reading(None, why)
        remote = origin.name if origin is not None and not origin.is_local else None
        try:
            answer = ctx.shared(("GET", url, remote),
                                lambda: fetch_from(origin, url, ctx) if remote
                                else fetch(ctx.http, url, ctx.timeout))
        except HttpUnavailable as exc:  # refused, timeout, DNS, bad URL
            return judge(metric, url, exc)
        except OSError as exc:  # the `from:` host's probe could not run
            why = f"GET {url}: {exc}"
            return Reading.passed(False, why) if passfail else Reading(None, why)
        return judge(metric, url, answer)

    def batches(self, metric: Metric) -> bool:
        """Read many hosts at once, unless each GET runs on a `from:` host (over SSH)."""
        return "from" not in metric.config

    def read_many(self, metric: Metric, hosts: Sequence[Host],
                  ctx: ReadContext) -> dict[str, Reading]:
        """Every host's URL rendered, the distinct ones fetched at once (one batch of the
        pooled client, shared through the cycle's memo with the other metrics that read
        the same URLs), then each host's reading from its answer."""
        template = str(metric.config["url"])
        urls: dict[str, str] = {}
        out: dict[str, Reading] = {}
        for host in hosts:
            try:
                urls[host.name] = render(template, context_for(host.name, ctx.hostvars,
                                                               ctx.phase, ctx.run_id))
            except Exception as exc:  # an undefined template variable on this host
                out[host.name] = Reading(None, f"http source error: {type(exc).__name__}: "
                                               f"{exc}")
        memo = ctx.memo if ctx.memo is not None else CycleMemo()
        http, timeout = ctx.http, ctx.timeout

        def fetch_all(keys: list[Any]) -> dict[Any, Any]:
            got = http.get_many([url for _, url, _ in keys], timeout, headers=ACCEPT)
            return {key: got[key[1]] for key in keys}

        answers = memo.get_many([("GET", url, None) for url in dict.fromkeys(urls.values())],
                                fetch_all)
        for name, url in urls.items():
            got = answers[("GET", url, None)]
            if isinstance(got, HttpAnswer | HttpUnavailable):
                out[name] = judge(metric, url, got)
            else:  # the batch itself failed: a source bug, no data for its hosts
                out[name] = Reading(None, f"http source error: {type(got).__name__}: {got}")
        return out


def judge(metric: Metric, url: str, answer: HttpAnswer | HttpUnavailable) -> Reading:
    """The reading an answer (or its absence) gives: pass/fail on 2xx and `expect`ed
    fields, or the number at `field`."""
    passfail = "field" not in metric.config
    if isinstance(answer, HttpUnavailable):  # refused, timeout, DNS, bad URL
        why = str(answer)
        return Reading.passed(False, why) if passfail else Reading(None, why)
    status, body = answer.status, answer.body
    if not answer.ok:
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


def _kind(body: Mapping[str, Any]) -> MetricKind:
    return MetricKind.NUMBER if "field" in body else MetricKind.PASSFAIL


SPEC = SourceSpec(
    name="http",
    summary="GET a URL: pass/fail on 2xx and `expect`ed JSON fields, or a number at `field`",
    keys={"url": Key(text, required=True, doc="the URL (a template)"),
          "expect": Key(mapping, doc="JSON fields (dotted paths) and the values they must have"),
          "field": Key(text, doc="a JSON field (dotted path) holding a number"),
          "from": Key(text, doc="GET it on this inventory host, over SSH")},
    kind=_kind,
    reader=HttpSource(),
    exclusive=(("expect", "field"),),
)
