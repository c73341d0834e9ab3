"""`prometheus`: instant PromQL queries, one per metric per poll cycle for all the hosts.

One host: the query, rendered for the host, must give one series (or aggregate to
one); zero series is no data and several is no data with a message saying to
aggregate, never a silent pick. A scalar result is read as it is.

Many hosts (a poll cycle, `read_many`): 2,000 hosts must not cost 2,000 queries per
metric against the operators' Prometheus. The rule, in order:

1. `host_label: LABEL` on the metric: the query names no host (it renders the same for
   every host), is sent once, and each series it returns belongs to the host whose
   inventory name, or else `ansible_host`, equals the series' LABEL value with any
   `:port` removed (`instance="10.0.0.7:9400"`). Hosts sharing an address (agent
   instances on one machine) share its series.
2. Otherwise the query is rendered for every host. When the renderings differ only in
   the values of equality label matchers (`Hostname="{{ host }}"`,
   `instance="{{ vars.ansible_host }}:9400"`), one query is sent in which each such
   matcher becomes a regex matcher of all the hosts' values (`Hostname=~"h1|h2|..."`,
   regex-escaped), every aggregation also groups `by` those labels (added to an
   existing `by (...)`, or to `on (...)` of a vector match), and each series returned
   goes back to the hosts whose values it carries.
3. When the renderings are all the same (the query names no host), it is sent once and
   its one series is every host's reading.
4. Anything else is read with one query per host, as for one host: a host-dependent
   part outside an equality matcher, a `!=`/`=~` matcher on a host value, `without`
   or `ignoring` of the host label, or a function that drops labels (`absent`,
   `scalar`, `vector`, `time`, `label_replace`, `label_join`), since grouping would
   change what such a query means. So is a batched query that Prometheus rejects
   while the same query for one host is accepted (that query is then never batched
   again in this process); when the one-host query is rejected too, the error is
   every host's, at the cost of two queries, not one per host.

A host with no series in a batched answer has no data; one with several has no
data and a message saying to aggregate by its label. Queries are POSTed (2,000 host
names do not fit every proxy's URL limit) without retries: the next poll is the
retry, and a read must end within its timeout.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from orchestrator.config.inventory import Host
from orchestrator.config.templating import render
from orchestrator.core.hostport import strip_port
from orchestrator.core.model import Metric, MetricKind
from orchestrator.metrics.promql import PromQL, Rejected
from orchestrator.metrics.sources.base import (
    Key,
    ReadContext,
    Reading,
    SourceSpec,
    kind_is,
    label_name,
    text,
)

NO_URL = ("no prometheus url: set prometheus.url in migration.yaml, the metric's url, "
          "or $MIGRATE_PROMETHEUS_URL")
#: Aggregation operators: each gets `by (host labels)` in a batched query.
AGGREGATIONS = frozenset({
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio"})
#: Functions whose result loses or rewrites labels: a query using one is never batched.
LABEL_DROPPING = frozenset({
    "absent", "absent_over_time", "scalar", "vector", "time", "label_replace", "label_join"})
#: Hosts read with one query each (rule 4) are read this many at a time.
PARALLEL_SINGLE = 16

_TOKEN = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:[A-Za-z]+\d*)*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|.)
""", re.VERBOSE | re.DOTALL)


@dataclass(frozen=True)
class Token:
    kind: str  # str, num, ident, op
    text: str
    start: int
    end: int
    in_braces: bool  # inside a selector's {...}


def tokens(query: str) -> list[Token]:
    """PromQL's tokens, enough to find label matchers, aggregations and vector matches."""
    out: list[Token] = []
    depth = 0
    for m in _TOKEN.finditer(query):
        kind = m.lastgroup or "op"
        if kind == "ws":
            continue
        if m.group() == "}":
            depth = max(0, depth - 1)
        out.append(Token(kind, m.group(), m.start(), m.end(), depth > 0))
        if m.group() == "{":
            depth += 1
    return out


def unquote(literal: str) -> str:
    """The value of a PromQL string literal (Go's quoting, as Prometheus reads it)."""
    if literal.startswith("`"):
        return literal[1:-1]
    body, out, i = literal[1:-1], [], 0
    escapes = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out.append(escapes.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def regex_escape(value: str) -> str:
    """Escape RE2's metacharacters only (Python's re.escape escapes more than RE2 takes)."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", value)


def _value(sample: Any) -> float:
    return float(sample["value"][1])


@dataclass
class Batch:
    """One query sent for several hosts, and how its series map back to them."""

    url: str
    query: str
    labels: tuple[str, ...]  # the labels naming a host; () when the query names none
    hosts: dict[tuple[str, ...], list[str]]  # label values -> hosts (regex batches)
    host_label: str | None = None  # rule 1: map by name, then address
    names: dict[str, list[str]] = field(default_factory=dict)
    addresses: dict[str, list[str]] = field(default_factory=dict)
    every: list[str] = field(default_factory=list)  # rule 3: every host shares the series

    @cached_property
    def members(self) -> list[str]:
        """Every host the batch reads, sorted: worked out once, as the plan is kept
        across cycles (10,000 names a metric at 10,000 hosts)."""
        return sorted({n for hs in self.hosts.values() for n in hs} | set(self.every)
                      | {n for hs in self.names.values() for n in hs}
                      | {n for hs in self.addresses.values() for n in hs})

    def owners(self, labels: dict[str, str]) -> list[str]:
        if self.host_label is not None:
            value = labels.get(self.host_label)
            if value is None:
                return []
            key = strip_port(value)
            return self.names.get(key) or self.addresses.get(key) or []
        return self.hosts.get(tuple(labels.get(name, "") for name in self.labels), [])


@dataclass
class Plan:
    batches: list[Batch]
    single: list[str]  # hosts read one query each
    errors: dict[str, str]  # hosts whose url or query did not render


class PrometheusSource:
    def __init__(self) -> None:
        # plans by what they depend on; kept with the hostvars they were rendered from,
        # and used only for that very object (the monitor keeps one for its lifetime)
        self._plans: dict[tuple[Any, ...], tuple[dict[str, Any], Plan]] = {}
        self._unbatchable: set[str] = set()  # query templates Prometheus refused batched
        self._lock = threading.Lock()
        self._client = PromQL()  # one pool per Prometheus URL, kept across polls
        self.queries = 0  # sent by this process (tests, bench)

    # --- one host ---------------------------------------------------------------------------
    def read(self, metric: Metric, ctx: ReadContext) -> Reading:
        ctx_vars = ctx.template_context()
        raw_url = metric.config.get("url") or ctx.prometheus_url
        if not raw_url:
            return Reading(None, NO_URL)
        url = render(str(raw_url), ctx_vars)
        query = render(str(metric.config["query"]), ctx_vars)
        try:
            kind, result = self._send(ctx, url, query)
        except Exception as exc:  # refused, timeout, rejected: no data
            return Reading(None, f"prometheus {url}: {type(exc).__name__}: {exc}"[:300])
        label = metric.config.get("host_label")
        if kind == "scalar" and label is None:
            return Reading(float(result[1]))
        if kind != "vector":
            return Reading(None, f"query {query!r} gave a {kind}, not an instant vector")
        if label is not None:
            batch = _label_batch(url, query, str(label), [ctx.host])
            result = [s for s in result if batch.owners(s.get("metric", {}))]
        if not result:
            return Reading(None, f"query {query!r} returned no series"
                           + (f" with {label} naming {ctx.host.name}" if label else ""))
        if len(result) > 1:
            return Reading(None, f"query {query!r} returned {len(result)} series; "
                                 "aggregate it (sum, max) to one")
        try:
            return Reading(_value(result[0]))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            return Reading(None, f"query {query!r}: unexpected answer {result[0]!r} ({exc})")

    def _send(self, ctx: ReadContext, url: str, query: str) -> tuple[str, Any]:
        def ask() -> tuple[str, Any]:
            with self._lock:
                self.queries += 1
            return self._client.instant(url, query, ctx.timeout)

        return ctx.shared(("promql", url, query), ask)

    # --- many hosts -------------------------------------------------------------------------
    def read_many(self, metric: Metric, hosts: Sequence[Host],
                  ctx: ReadContext) -> dict[str, Reading]:
        raw_url = metric.config.get("url") or ctx.prometheus_url
        if not raw_url:
            return {h.name: Reading(None, NO_URL) for h in hosts}
        template = str(metric.config["query"])
        key = (template, str(raw_url), metric.config.get("host_label"),
               tuple(h.name for h in hosts), ctx.phase, ctx.run_id,
               template in self._unbatchable)
        with self._lock:
            cached = self._plans.get(key)
        if cached is not None and cached[0] is ctx.hostvars:
            plan = cached[1]
        else:
            plan = self._plan(metric, hosts, ctx, str(raw_url))
            with self._lock:
                if len(self._plans) > 64:
                    self._plans.clear()
                self._plans[key] = (ctx.hostvars, plan)
        out = {name: Reading(None, why) for name, why in plan.errors.items()}
        by_name = {h.name: h for h in hosts}
        single = list(plan.single)
        for batch in plan.batches:
            got = self._read_batch(metric, batch, ctx, by_name)
            if got is None:  # rejected batched, accepted for one host: never batch it again
                with self._lock:
                    self._unbatchable.add(template)
                single += [n for hs in batch.hosts.values() for n in hs] + batch.every \
                    + sorted({n for hs in batch.names.values() for n in hs})
                continue
            out.update(got)
        single = [n for n in dict.fromkeys(single) if n not in out]
        if single:
            def one(name: str) -> Reading:
                try:
                    return self.read(metric, ctx.for_host(by_name[name]))
                except Exception as exc:  # one host's template: no data for it alone
                    return Reading(None, f"prometheus source error: {exc}")

            from concurrent.futures import ThreadPoolExecutor

            workers = max(1, min(PARALLEL_SINGLE, len(single)))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="promql") as pool:
                out.update(zip(single, pool.map(one, single), strict=True))
        return out

    def _plan(self, metric: Metric, hosts: Sequence[Host], ctx: ReadContext,
              raw_url: str) -> Plan:
        """Group the hosts by rendered URL and decide, per group, how to batch (rules)."""
        template = str(metric.config["query"])
        label = metric.config.get("host_label")
        errors: dict[str, str] = {}
        groups: dict[str, list[tuple[Host, str]]] = {}
        for host in hosts:
            try:
                tv = ctx.for_host(host).template_context()
                groups.setdefault(render(raw_url, tv), []).append(
                    (host, render(template, tv)))
            except Exception as exc:  # an undefined variable on this host
                errors[host.name] = f"prometheus query: {exc}"
        batches: list[Batch] = []
        single: list[str] = []
        for url, members in groups.items():
            if len(members) == 1 and label is None:
                single.append(members[0][0].name)
                continue
            queries = {q for _, q in members}
            group_hosts = [h for h, _ in members]
            if label is not None:
                if len(queries) == 1:
                    batches.append(_label_batch(url, members[0][1], str(label), group_hosts))
                else:  # the query names the host after all: each host picks its own series
                    single += [h.name for h in group_hosts]
            elif len(queries) == 1:
                batches.append(Batch(url, members[0][1], (), {},
                                     every=[h.name for h in group_hosts]))
            elif template in self._unbatchable:
                single += [h.name for h in group_hosts]
            else:
                batch = regex_batch(url, members)
                if batch is None:
                    single += [h.name for h in group_hosts]
                else:
                    batches.append(batch)
        return Plan(batches, single, errors)

    def _read_batch(self, metric: Metric, batch: Batch, ctx: ReadContext,
                    by_name: dict[str, Host]) -> dict[str, Reading] | None:
        """Each host's reading from one query; None when Prometheus refused the batched
        query but takes the same query for one host (so the hosts are read one by one)."""
        members = batch.members
        try:
            kind, result = self._send(ctx, batch.url, batch.query)
        except Rejected as exc:
            if batch.labels and not batch.every and batch.host_label is None:
                return None if self._accepted_alone(metric, ctx.for_host(by_name[members[0]])) \
                    else _all(members, f"prometheus {batch.url}: Rejected: {exc}")
            return _all(members, f"prometheus {batch.url}: Rejected: {exc}"[:300])
        except Exception as exc:
            return _all(members, f"prometheus {batch.url}: {type(exc).__name__}: {exc}"[:300])
        if kind == "scalar" and batch.every:
            return _all(members, None, float(result[1]))
        if kind != "vector":
            return _all(members, f"query {batch.query[:200]!r} gave a {kind}, "
                                 "not an instant vector")
        if batch.every:
            if len(result) == 1:
                try:
                    return _all(members, None, _value(result[0]))
                except (KeyError, IndexError, TypeError, ValueError) as exc:
                    return _all(members, f"unexpected answer {result[0]!r} ({exc})")
            why = "returned no series" if not result else \
                f"returned {len(result)} series; aggregate it (sum, max) to one"
            return _all(members, f"query {batch.query!r} {why}")
        # each host's one value; a host given more than one series, how many (10,000
        # series a metric at 10,000 hosts: no list per host)
        found: dict[str, float] = {}
        extra: dict[str, int] = {}
        owners = batch.owners
        for series in result:
            try:
                value = _value(series)
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            for name in owners(series.get("metric", {})):
                if name in found:
                    extra[name] = extra.get(name, 1) + 1
                else:
                    found[name] = value
        by = batch.labels if batch.host_label is None else (batch.host_label,)
        out: dict[str, Reading] = {}
        for name in members:
            if name in extra:
                out[name] = Reading(None, f"query {metric.config['query']!r} returned "
                                          f"{extra[name]} series for {name}; aggregate it "
                                          f"by ({', '.join(by)})")
            elif name in found:
                out[name] = Reading(found[name])
            else:
                out[name] = Reading(None, f"query {metric.config['query']!r} returned no "
                                          f"series for {name} (batched by {', '.join(by)})")
        return out

    def _accepted_alone(self, metric: Metric, ctx: ReadContext) -> bool:
        """Does Prometheus take the query as rendered for `ctx.host` alone?"""
        tv = ctx.template_context()
        url = render(str(metric.config.get("url") or ctx.prometheus_url), tv)
        try:
            self._send(ctx, url, render(str(metric.config["query"]), tv))
        except Rejected:
            return False
        except Exception:  # cannot tell: read them one by one, which reports it per host
            return True
        return True


def _all(names: Sequence[str], error: str | None, value: float | None = None
         ) -> dict[str, Reading]:
    return {n: Reading(value, error) for n in names}


def _label_batch(url: str, query: str, label: str, hosts: Sequence[Host]) -> Batch:
    names: dict[str, list[str]] = {h.name: [h.name] for h in hosts}
    addresses: dict[str, list[str]] = {}
    for h in hosts:
        addresses.setdefault(strip_port(h.address), []).append(h.name)
    return Batch(url, query, (), {}, host_label=label, names=names, addresses=addresses)


def regex_batch(url: str, members: Sequence[tuple[Host, str]]) -> Batch | None:
    """Rule 2: one query for hosts whose queries differ only in equality matcher values,
    or None when they differ in any other way (rule 4)."""
    rendered = [(h, tokens(q)) for h, q in members]
    first_query = members[0][1]
    first = rendered[0][1]
    if any(len(toks) != len(first) for _, toks in rendered):
        return None
    differing: dict[int, str] = {}  # token index -> label name
    for i, tok in enumerate(first):
        if all(toks[i].text == tok.text for _, toks in rendered):
            continue
        if tok.kind != "str" or not tok.in_braces or i < 2 or first[i - 1].text != "=" \
                or first[i - 2].kind != "ident" \
                or any(toks[i].kind != "str" for _, toks in rendered):
            return None
        differing[i] = first[i - 2].text
    labels = tuple(dict.fromkeys(differing.values()))
    index: dict[tuple[str, ...], list[str]] = {}
    for host, toks in rendered:
        values: dict[str, str] = {}
        for i, name in differing.items():
            value = unquote(toks[i].text)
            if values.setdefault(name, value) != value:
                return None  # one label with two values for one host: not a host's name
        index.setdefault(tuple(values[n] for n in labels), []).append(host.name)
    edits: list[tuple[int, int, str]] = []
    for i in differing:
        alternatives = sorted({unquote(toks[i].text) for _, toks in rendered})
        regex = "|".join(regex_escape(v) for v in alternatives)
        edits.append((first[i - 1].start, first[i].end, "=~" + quote(regex)))
    grouped = _group_by(first, labels)
    if grouped is None:
        return None
    edits += grouped
    query = first_query
    for start, end, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        query = query[:start] + new + query[end:]
    return Batch(url, query, labels, index)


def _group_by(toks: list[Token], labels: tuple[str, ...]) -> list[tuple[int, int, str]] | None:
    """Edits that make every aggregation keep `labels` (and every `on (...)` match on them),
    or None when the query drops them in a way grouping cannot undo."""
    edits: list[tuple[int, int, str]] = []
    n = len(toks)

    def closing(i: int) -> int | None:  # index of the ")" matching the "(" at i
        depth = 0
        for j in range(i, n):
            if toks[j].text == "(":
                depth += 1
            elif toks[j].text == ")":
                depth -= 1
                if depth == 0:
                    return j
        return None

    def extend(open_at: int) -> bool:  # add labels to the list "( a, b )" opening at open_at
        end = closing(open_at)
        if end is None:
            return False
        have = {t.text for t in toks[open_at + 1:end] if t.kind == "ident"}
        missing = [name for name in labels if name not in have]
        if missing:
            sep = ", " if have else ""
            edits.append((toks[end].start, toks[end].start, sep + ", ".join(missing)))
        return True

    def dropped(open_at: int) -> bool:  # does the list opening at open_at name a host label?
        end = closing(open_at)
        return end is None or any(t.text in labels for t in toks[open_at + 1:end])

    for i, tok in enumerate(toks):
        if tok.kind != "ident" or tok.in_braces:
            continue
        nxt = toks[i + 1].text if i + 1 < n else ""
        word = tok.text.lower()
        if word in LABEL_DROPPING and nxt == "(":
            return None
        if word == "ignoring" and nxt == "(" and dropped(i + 1):
            return None
        if word == "on" and nxt == "(" and not extend(i + 1):
            return None
        if word not in AGGREGATIONS or nxt not in ("(", "by", "without", "BY", "WITHOUT"):
            continue
        if nxt.lower() in ("by", "without"):  # sum by (a) (...)
            if i + 2 >= n or toks[i + 2].text != "(":
                return None
            if nxt.lower() == "by" and not extend(i + 2):
                return None
            if nxt.lower() == "without" and dropped(i + 2):
                return None
            continue
        end = closing(i + 1)  # sum (...) [by (a)]
        if end is None:
            return None
        after = toks[end + 1].text.lower() if end + 1 < n else ""
        if after in ("by", "without"):
            if end + 2 >= n or toks[end + 2].text != "(":
                return None
            if after == "by" and not extend(end + 2):
                return None
            if after == "without" and dropped(end + 2):
                return None
            continue
        edits.append((tok.end, tok.end, f" by ({', '.join(labels)}) "))
    return edits


SPEC = SourceSpec(
    name="prometheus",
    summary="an instant PromQL query; one query per metric per poll cycle for all hosts",
    keys={"query": Key(text, required=True, doc="PromQL (a template)"),
          "url": Key(text, doc="Prometheus' URL, if not prometheus.url"),
          "host_label": Key(label_name, doc="the label naming the host in the query's "
                                            "series: inventory name or ansible_host, "
                                            "':port' ignored")},
    kind=kind_is(MetricKind.NUMBER),
    reader=PrometheusSource(),
)
