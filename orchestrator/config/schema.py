"""The one validation layer: the keys every project file may hold, and how they are checked.

`migration.yaml`, the phase files, the rehearsal scenarios and every metric source
describe their keys here with the same few pieces:

- `Key(check, required, doc)`: one key; `check(value)` returns None when the value is
  fine, else what is wrong ("must be ...").
- `Schema({name: Key})`: the keys one mapping may hold. `FileChecker.keys(d, schema,
  what)` reports, each at its own FILE:LINE: duplicate keys, unknown keys (with "did
  you mean" when one is close), missing required keys and values their check refuses.
- `FileChecker`: collects the problems of one file; the typed readers (`string`,
  `duration`, `whole`, `share`, `names`) report once and return None on a bad value.
- `SourceSchema` and the source registry: a metric source (metrics/sources)
  declares its own keys, its metric kind and its cross-key rules as a `SourceSchema`
  and registers it with `register_source`; the project loader reads the registry and
  never imports a source. Whoever loads a project (the `App`) imports the sources
  package first, which registers them all.

One mistake, one error: an unknown key that looks like a known one ("did you mean")
stands in for that key, so the key it misspells is not also reported missing, and a
definition that is broken still counts as defined for the files that refer to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator._exceptions import Problem
from orchestrator.config.yamlsource import YDict, YList
from orchestrator.core.durations import parse_duration
from orchestrator.core.model import MetricKind

#: A key's check: None when the value is fine, else what is wrong, as "must be ...".
Check = Callable[[Any], str | None]
#: Where a cross-key rule reports a problem: (line, message).
Report = Callable[[int, str], None]


# --- checks ---------------------------------------------------------------------------------
def text(value: Any) -> str | None:
    """A non-empty string (templates are strings too)."""
    if isinstance(value, str) and value.strip():
        return None
    return f"must be a non-empty string, not {value!r}"


def mapping(value: Any) -> str | None:
    return None if isinstance(value, dict) else f"must be a mapping, not {value!r}"


def index(value: Any) -> str | None:
    """A whole number >= 0 (a GPU index)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return None
    return f"must be an index (0, 1, ...), not {value!r}"


_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def label_name(value: Any) -> str | None:
    if isinstance(value, str) and _LABEL.fullmatch(value):
        return None
    return f"must be a label name (like instance or Hostname), not {value!r}"


def one_of(*choices: Any) -> Check:
    def check(value: Any) -> str | None:
        if value in choices and not isinstance(value, bool):
            return None
        return f"must be one of {', '.join(map(str, choices))}, not {value!r}"
    return check


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, not {value!r}"


def duration(value: Any) -> str | None:
    try:
        parse_duration(value)
    except ValueError as exc:
        return str(exc)
    return None


def kind_is(kind: MetricKind) -> Callable[[Mapping[str, Any]], MetricKind]:
    return lambda body: kind


# --- schemas ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Key:
    """One key of a mapping: its check (None: the loader checks it by hand) and whether it
    must be there. `doc` is what docs/reference.md says of it."""

    check: Check | None = None
    required: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Schema:
    """The keys one mapping of a project file may hold."""

    keys: Mapping[str, Key]

    def names(self) -> set[str]:
        return set(self.keys)

    def __or__(self, other: Schema | Mapping[str, Key]) -> Schema:
        more = other.keys if isinstance(other, Schema) else other
        return Schema({**self.keys, **more})


def closest(word: str, options: Iterable[str]) -> str | None:
    """The known key a misspelt one most likely means, if any is close enough."""
    import difflib

    match = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.75)
    return match[0] if match else None


class FileChecker:
    """Collects the problems of one file, each as FILE:LINE: message."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems

    def add(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))

    def mapping(self, value: Any, line: int, what: str) -> YDict | None:
        """`value` as a mapping (its duplicate keys reported), or None after one problem."""
        if isinstance(value, YDict):
            for key, kline in value.duplicate_keys:
                self.add(kline, f"duplicate key {key!r} in {what}")
            return value
        self.add(line, f"{what} must be a mapping")
        return None

    def unknown_keys(self, d: YDict, allowed: Iterable[str], what: str) -> dict[str, str | None]:
        """Report every key of `d` not in `allowed`; return them with their likely meaning."""
        options = set(allowed)
        return {key: self.unknown_key(d, key, options, what) for key in d if key not in options}

    def unknown_key(self, d: YDict, key: str, options: set[str], what: str) -> str | None:
        """Report `key` of `d` as unknown; return the known key it most likely means."""
        hint = closest(key, options)
        self.add(d.line_of(key), f"unknown key {key!r} in {what}"
                 + (f" (did you mean {hint!r}?)" if hint else
                    f" (known: {', '.join(sorted(options))})" if len(options) <= 12 else ""))
        return hint

    def keys(self, d: YDict, schema: Schema, what: str, prefix: str | None = None) -> bool:
        """Check `d` against `schema`: unknown keys, required keys, each value's check.

        A required key is not reported missing when an unknown key looks like it (that
        typo is the one problem). Value problems read "{prefix}: KEY must be ..."
        (prefix defaults to `what`). Returns True when nothing was wrong."""
        before = len(self.problems)
        meant = {hint for hint in self.unknown_keys(d, schema.keys, what).values() if hint}
        for key, spec in schema.keys.items():
            if key not in d:
                if spec.required and key not in meant:
                    self.add(d.line, f"{what} needs {key!r}")
                continue
            if spec.check is not None:
                why = spec.check(d[key])
                if why is not None:
                    self.add(d.line_of(key), f"{prefix or what}: {key} {why}")
        return len(self.problems) == before

    # --- typed readers: report once, return None on a bad value -------------------------------
    def duration(self, d: YDict, key: str, default: float | None) -> float | None:
        if key not in d:
            return default
        try:
            return parse_duration(d[key])
        except ValueError as exc:
            self.add(d.line_of(key), f"{key}: {exc}")
            return default

    def string(self, d: YDict, key: str, what: str, required: bool = False) -> str | None:
        if key not in d:
            if required:
                self.add(d.line, f"{what} needs {key!r}")
            return None
        value = d[key]
        if not isinstance(value, str) or not value.strip():
            self.add(d.line_of(key), f"{key} in {what} must be a non-empty string")
            return None
        return value

    def number(self, d: YDict, key: str, what: str) -> float | None:
        value = d.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(d.line_of(key), f"{key} in {what} must be a number, not {value!r}")
            return None
        return float(value)

    def whole(self, value: Any, line: int, what: str, least: int = 0) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            self.add(line, f"{what} must be a whole number of at least {least}, not {value!r}")
            return None
        return value

    def names(self, d: YDict, key: str, what: str) -> list[tuple[Any, int]]:
        """The items of the list at `key` with their lines ([] when absent or no list)."""
        value = d.get(key)
        if value is None:
            return []
        if not isinstance(value, YList):
            self.add(d.line_of(key), f"{key} in {what} must be a list")
            return []
        return [(item, value.line_of(i)) for i, item in enumerate(value)]

    def share(self, value: Any, line: int, what: str, example: str = "10%") -> int | str | None:
        """A count of hosts (`3`) or a share of them (`10%`), as `waves:` and `max_failed:`
        take."""
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and _SHARE.match(value.strip()) \
                and float(value.strip()[:-1]) <= 100:
            return value.strip()
        self.add(line, f"{what}: {value!r} is not a count of hosts or a share like {example}")
        return None


_SHARE = re.compile(r"^\d+(\.\d+)?%$")


# --- metric sources -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceSchema:
    """What `migration.yaml` may say to one metric source.

    `keys`: the source's own keys (the common ones, `source`, `nodata`,
    `nodata_alert`, `timeout`, `description`, are the project loader's). `kind`: the
    metric kind for a body. `exclusive`: groups of keys of which at most one may be
    given. `rules`: cross-key checks that report (line, message) through `report`.
    `hosts`: keys whose value names one inventory host, checked against the inventory
    with the rest of the project (`from:`, wherever a source takes it).
    """

    name: str
    summary: str
    keys: Mapping[str, Key]
    kind: Callable[[Mapping[str, Any]], MetricKind]
    exclusive: tuple[tuple[str, ...], ...] = ()
    rules: Callable[[YDict, Report], None] | None = None
    hosts: tuple[str, ...] = ("from",)

    def validate(self, body: YDict, report: Report, meant: Collection[str] = ()) -> None:
        """Report every problem of `body` against this schema (unknown keys excepted:
        the loader knows the common keys too), each at the line of the key at fault.
        A required key in `meant` (what an unknown key most likely misspells) is not
        reported missing: the misspelling is the one problem."""
        for key in sorted(k for k, spec in self.keys.items()
                          if spec.required and k not in body and k not in meant):
            report(body.line, f"source {self.name} needs {key!r}")
        for key, spec in self.keys.items():
            if key in body and spec.check is not None:
                why = spec.check(body[key])
                if why is not None:
                    report(body.line_of(key), f"{key} {why}")
        for group in self.exclusive:
            given = [k for k in group if k in body]
            if len(given) > 1:
                report(body.line_of(given[1]), f"give only one of {', '.join(group)}")
        if self.rules is not None:
            self.rules(body, report)


_SOURCES: dict[str, SourceSchema] = {}

#: The package whose import registers the built-in sources (one `register_source` per
#: source). The composition root (`App`) imports it before loading a project; a caller
#: that loads a project without it (a test, a benchmark) gets it on the first lookup, by
#: name, as an entry-point registry would: config never imports a source module.
BUILTIN_SOURCES = "orchestrator.metrics.sources"


def register_source(schema: SourceSchema) -> None:
    """Make a source's keys known to the project loader (the sources package does this
    for each of its sources when it is imported)."""
    _SOURCES[schema.name] = schema


def source_schemas() -> Mapping[str, SourceSchema]:
    """Every registered source, by name."""
    if not _SOURCES:
        import importlib

        importlib.import_module(BUILTIN_SOURCES)
    return _SOURCES
