"""What a metric source is: a schema it declares, and a reader.

Each source module declares one `SourceSpec`: its `migration.yaml` keys (`Key`:
type, required or not), its metric kind (number or pass/fail, which may depend on
the keys: `http` with `expect` is pass/fail, with `field` a number), any rule that
spans keys, and its reader. `sources/__init__.py` lists the specs in `SOURCES` and
registers each one's schema with the config layer (`config.schema.register_source`),
which validates every metric against that registry without importing a source, so
adding a source is one new module plus one registry line. Declaring a spec must stay cheap:
`migrate status` loads the project (and so imports every source module), so a source
imports its client library inside its read, never at module level.

A reader has one method, `read(metric, ctx) -> Reading`, for one host. A reader that
can do better for many hosts at once also offers `read_many(metric, hosts, ctx)`
(`prometheus`: one query for all of them). `read_hosts` is the one entry point the
monitor uses for a poll cycle: it takes `read_many` when there is one and falls back
to one `read` per host otherwise. `CycleMemo` (`ctx.memo`) lets reads of one cycle
share work, so an exporter or a URL that several hosts or metrics name is fetched
once per cycle.

A read that errors (refused, timeout, non-2xx, empty result) is *no data*: a
Reading with value None and the error text. Sources translate their library's
exceptions into that at the boundary; only `NvmlUnavailableError` (NVML missing
on a host) escapes, because it is a configuration problem, not a sample.

Pass/fail metrics read as 1.0 (pass) or 0.0 (fail); numeric ones as their value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from orchestrator.config.inventory import Host
from orchestrator.config.schema import (  # noqa: F401 - re-exported for the source modules
    Check,
    Key,
    Report,
    SourceSchema,
    index,
    kind_is,
    label_name,
    mapping,
    one_of,
    source_schemas,
    text,
)
from orchestrator.core.http import HttpClient
from orchestrator.core.model import Metric
from orchestrator.runners.base import CommandRunner

if TYPE_CHECKING:
    from concurrent.futures import Executor

T = TypeVar("T")


class Reading(NamedTuple):
    """One metric read on one host: a value, or None and why (no data). A named tuple: a
    poll of 10,000 hosts makes 30,000."""

    value: float | None
    error: str | None = None

    @classmethod
    def passed(cls, ok: bool, error: str | None = None) -> Reading:
        return cls(1.0 if ok else 0.0, error)


class CycleMemo:
    """Work shared by the reads of one poll cycle, keyed by what was fetched.

    The first reader of a key computes it; readers that ask meanwhile (other hosts,
    other metrics, on other threads) wait for that one result instead of fetching
    again. A failure is shared the same way: one refused scrape is one refused
    scrape for every metric that needed it. A memo lives for one cycle only, so a
    value is never older than the cycle that reads it.
    """

    class _Entry:
        __slots__ = ("done", "value", "error")

        def __init__(self) -> None:
            self.done = False
            self.value: Any = None
            self.error: BaseException | None = None

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: one condition for every entry (an Event per key cost 400 a cycle at 200 hosts)
        self._finished = threading.Condition(self._lock)
        self._entries: dict[Hashable, CycleMemo._Entry] = {}

    def _finish(self, entries: Iterable[CycleMemo._Entry]) -> None:
        with self._finished:
            for entry in entries:
                entry.done = True
            self._finished.notify_all()

    def _wait(self, entry: CycleMemo._Entry) -> None:
        if not entry.done:
            with self._finished:
                self._finished.wait_for(lambda: entry.done)

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if entry is None:
                entry = self._entries[key] = CycleMemo._Entry()
        if owner:
            try:
                entry.value = compute()
            except BaseException as exc:  # handed to every waiter, and raised here too
                entry.error = exc
            finally:
                self._finish((entry,))
        else:
            self._wait(entry)
        if entry.error is not None:
            raise entry.error
        result: T = entry.value
        return result

    def get_many(self, keys: Sequence[Hashable],
                 compute: Callable[[list[Hashable]], Mapping[Hashable, Any]],
                 ) -> dict[Hashable, Any]:
        """Each key's value, the keys nobody asked for yet computed by one call of
        `compute(those keys)` (a batch: many GETs at once); keys another reader is
        computing are waited for. A value that is an exception is that key's failure
        (`get` raises it); here every key's value or exception is returned."""
        mine: list[Hashable] = []
        entries: dict[Hashable, CycleMemo._Entry] = {}
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is None:
                    entry = self._entries[key] = CycleMemo._Entry()
                    mine.append(key)
                entries[key] = entry
        if mine:
            got: Mapping[Hashable, Any] = {}
            try:
                got = compute(mine)
            except BaseException as exc:
                for key in mine:
                    entries[key].error = exc
                raise
            finally:
                for key in mine:
                    entry = entries[key]
                    if entry.error is None:
                        value = got.get(key, LookupError(f"{key!r}: not computed"))
                        if isinstance(value, BaseException):
                            entry.error = value
                        else:
                            entry.value = value
                self._finish(entries[key] for key in mine)
        out: dict[Hashable, Any] = {}
        for key, entry in entries.items():
            self._wait(entry)
            out[key] = entry.error if entry.error is not None else entry.value
        return out


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
    memo: CycleMemo | None = None  # shared by the reads of one poll cycle, if any
    groups: dict[str, list[str]] = field(default_factory=dict)  # inventory groups
    #: the project directory: a relative path on this machine is taken from it, wherever
    #: `migrate` was started (SPEC section 2); None reads from the current directory
    root: Path | None = None
    #: `http` and `exporter` reads: the reader's pooled client, so a poll reuses the
    #: connections the previous one opened (a context built alone gets its own)
    http: HttpClient = field(default_factory=HttpClient)

    def origin(self, name: object) -> Host | None:
        """The host a `from:` probe runs on. A host name is that host. A group (a fleet
        whose agent instances form the group `main`, say) is the host being read when it
        is a member, so each instance probes from its own machine; else its first
        member. None: no such host or group."""
        key = str(name)
        if key in self.hosts:
            return self.hosts[key]
        members = self.groups.get(key)
        if not members:
            return None
        if self.host.name in members:
            return self.host
        return self.hosts.get(members[0])

    def template_context(self) -> dict[str, Any]:
        from orchestrator.config.templating import context_for

        return context_for(self.host.name, self.hostvars, self.phase, self.run_id)

    def for_host(self, host: Host) -> ReadContext:
        return replace(self, host=host)

    def shared(self, key: Hashable, compute: Callable[[], T]) -> T:
        """`compute()` once per cycle for `key` when the read is part of a cycle."""
        return self.memo.get(key, compute) if self.memo is not None else compute()


class Source(Protocol):
    def read(self, metric: Metric, ctx: ReadContext) -> Reading: ...


class BatchSource(Source, Protocol):
    def read_many(self, metric: Metric, hosts: Sequence[Host],
                  ctx: ReadContext) -> dict[str, Reading]:
        """Readings of `metric` for every one of `hosts`, by host name. `ctx` holds what
        the hosts share; `ctx.for_host(h)` is h's own context."""
        ...


# --- the schema a source declares ---------------------------------------------------------
# The key checks and the schema itself live in the config layer (config/schema.py), which
# validates every metric against the registered schemas without importing a source; they
# are re-exported here for the source modules.

@dataclass(frozen=True, kw_only=True)
class SourceSpec(SourceSchema):
    """A source's schema (`SourceSchema`: keys, kind, rules) and its reader."""

    reader: Source


# --- reading -------------------------------------------------------------------------------

def _guarded(source: Source, metric: Metric, ctx: ReadContext) -> Reading:
    """One read; any unexpected error is no data with the error's text, never a crash."""
    from orchestrator._exceptions import NvmlUnavailableError

    try:
        return source.read(metric, ctx)
    except NvmlUnavailableError:
        raise
    except Exception as exc:  # a source bug must not stop the watch: report it as no data
        return Reading(None, f"{metric.source} source error: {type(exc).__name__}: {exc}")


def reader_of(metric: Metric) -> Source:
    """The reader of the metric's source, from the registry its package fills when it is
    imported (as importing this module imports it first), not by importing the package
    back: the sources package imports this module, never the reverse."""
    spec = source_schemas()[metric.source]
    assert isinstance(spec, SourceSpec), f"source {metric.source!r} has no reader"
    return spec.reader


def read_metric(metric: Metric, ctx: ReadContext) -> Reading:
    """Read one metric on `ctx.host`."""
    return _guarded(reader_of(metric), metric, ctx)


def batched(metric: Metric) -> bool:
    """Does the metric's source read many hosts in one go (`read_many`)? A source whose
    batching depends on the metric says so with `batches(metric)` (`http` with `from:`
    probes over SSH, one host at a time)."""
    source = reader_of(metric)
    if not hasattr(source, "read_many"):
        return False
    batches = getattr(source, "batches", None)
    return batches is None or bool(batches(metric))


def read_hosts(metric: Metric, hosts: Sequence[Host], ctx: ReadContext,
               pool: Executor | None = None) -> dict[str, Reading]:
    """Read `metric` on every one of `hosts`: through the source's `read_many` when it
    has one, else one `read` per host (on `pool` when given). Never raises but for
    `NvmlUnavailableError`; an error of the whole batch is no data for every host."""
    from orchestrator._exceptions import NvmlUnavailableError

    source = reader_of(metric)
    many = getattr(source, "read_many", None) if batched(metric) else None
    if many is not None and hosts:
        try:
            got: dict[str, Reading] = many(metric, hosts, ctx)
        except NvmlUnavailableError:
            raise
        except Exception as exc:  # a source bug must not stop the watch
            why = f"{metric.source} source error: {type(exc).__name__}: {exc}"
            return {h.name: Reading(None, why) for h in hosts}
        return {h.name: got.get(h.name, Reading(None, f"{metric.source}: no reading"))
                for h in hosts}
    if pool is None or len(hosts) < 2:
        return {h.name: _guarded(source, metric, ctx.for_host(h)) for h in hosts}
    futures = [(h.name, pool.submit(_guarded, source, metric, ctx.for_host(h))) for h in hosts]
    return {name: f.result() for name, f in futures}
