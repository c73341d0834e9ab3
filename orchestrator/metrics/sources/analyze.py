"""`analyze`: the migration-risk analysis (`migrate analyze`) of agent source, as a metric.

::

    metrics:
      sockets_left: {source: analyze, path: /opt/agents/model_manager_agent.py,
                     from: main, max: {sockets.count: 0}}
      threads_left: {source: analyze, path: '{{ vars.agent_dir }}', field: threads.count}

``path`` (a template): a ``.py`` file or a directory. On this machine (a relative
path is taken from the project directory, wherever `migrate` was started), or on the
host ``from:`` names (a relative path is the host's: its login directory), read
over SSH through the command runner (its connection pool and keepalives). Then
exactly one of:

* ``field``: a number, the dotted path into the file's document or, for a
  directory, into its ``totals`` (``threads.count``, ``sockets.raw``,
  ``risk.score``, ``syntax_errors``, ``worklist``...); a list counts its items,
  a yes/no is 1/0, a count the document leaves out (``sockets.by_type.SUB`` of a
  file with no SUB socket) is 0;
* ``max: {threads.count: 0, sockets.raw: 0}``: pass/fail, passes when every named
  field is at most its number.

Optional ``exclude``: globs left out of a directory, as ``--exclude``.

A field the document cannot have is a ``validate`` error at its line. A file that
is missing or cannot be read, a host that cannot be reached, a field that only a
file has read on a directory (or the other way round): no data, with the reason
(so a precondition fails and says why).

Cost: documents are cached by content (`orchestrator.analysis.cache`), so an
unchanged file costs a ``stat`` per poll here, or one SSH command that lists the
digests on a host; only new content is analysed (or fetched).
"""

from __future__ import annotations

import base64
import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.config.templating import render
from orchestrator.core.clock import CancelToken
from orchestrator.core.model import Metric, MetricKind
from orchestrator.metrics.sources.base import (
    Key,
    ReadContext,
    Reading,
    Report,
    SourceSpec,
    mapping,
    text,
)
from orchestrator.metrics.sources.tcp import probe_dir
from orchestrator.runners.base import CommandRequest

if TYPE_CHECKING:
    from orchestrator.config.yamlsource import YDict

# Numeric fields of a file's document, and of a directory's totals (dotted paths).
FILE_FIELDS = frozenset({
    "size_bytes", "total_lines", "code_lines", "syntax_errors", "unparsed_lines",
    "sockets.count", "sockets.zmq", "sockets.raw", "sockets.patterns", "threads.count",
    "gpu_operations.count", "complexity.functions", "complexity.decision_points",
    "critical_functions", "risk.score", "risk.max", "worklist",
    "base_agent.inherits", "base_agent.super_init", "base_agent.health_method",
})
TOTALS_FIELDS = frozenset({
    "files", "unparsable", "agent_classes", "base_agent_classes", "legacy_agent_classes",
    "sockets.count", "sockets.zmq", "sockets.raw", "threads.count", "risk.score",
    "syntax_errors", "worklist", "skipped", "excluded", "duplicates", "warnings",
})
# Families of counts: any key under them is a field (absent means 0).
FILE_COUNTS = ("sockets.by_type.", "sockets.operations.")
TOTALS_COUNTS = ("sockets.by_type.",)
_ZERO_WHEN_ABSENT = ("sockets.by_type.", "sockets.operations.", "unparsed_lines")


def field_problem(name: Any) -> str | None:
    """Why `name` is not a field an analysis document has, or None."""
    if not isinstance(name, str) or not name.strip():
        return f"must be a dotted field name, not {name!r}"
    if name in FILE_FIELDS or name in TOTALS_FIELDS \
            or any(name.startswith(p) and len(name) > len(p) for p in FILE_COUNTS):
        return None
    import difflib

    fields = sorted(FILE_FIELDS | TOTALS_FIELDS)
    close = difflib.get_close_matches(name, fields, n=1)
    if close:
        return f"{name!r} is not a number of the analysis document; did you mean {close[0]!r}?"
    return (f"{name!r} is not a number of the analysis document: one of {', '.join(fields)}, "
            f"or sockets.by_type.TYPE, sockets.operations.OP")


def value_of(doc: dict[str, Any], name: str) -> float | str:
    """The number at `name` in a file's document or a directory's result (its totals);
    a string says why there is none."""
    directory = "reports" in doc
    if directory:
        allowed = name in TOTALS_FIELDS or any(name.startswith(p) for p in TOTALS_COUNTS)
        if not allowed:
            return f"{name} is a field of a file's document, and the path is a directory"
        doc = doc["totals"]
    elif not (name in FILE_FIELDS or any(name.startswith(p) for p in FILE_COUNTS)):
        return f"{name} is a field of a directory's totals, and the path is a file"
    value: Any = doc
    for part in name.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, dict) and name.startswith(_ZERO_WHEN_ABSENT):
            value = 0
            break
        else:
            return f"no field {name} in the analysis"
    if isinstance(value, list):
        return float(len(value))
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return f"{name} is {value!r}, not a number"


# --- reading the source: here, or on a host -------------------------------------------------

# On the host: list the .py files of PATH with their digests (the same blake2b as here).
# Names travel as hex of their bytes, so that a name that is not UTF-8 survives.
LIST = r"""
import hashlib, json, os, sys
root = sys.argv[1]
def digest(p):
    with open(p, 'rb') as f:
        data = f.read()
    return hashlib.blake2b(data, digest_size=16).hexdigest(), len(data)
out = {'files': [], 'errors': []}
if os.path.isdir(root):
    out['kind'] = 'dir'
    for d, dirs, names in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith('.'))
        for n in sorted(names):
            if n.endswith('.py'):
                p = os.path.join(d, n)
                rel = os.fsencode(os.path.relpath(p, root)).hex()
                try:
                    out['files'].append([rel] + list(digest(p)))
                except OSError as e:
                    out['errors'].append([rel, 'cannot read: %s' % (e.strerror or e)])
elif os.path.exists(root):
    out['kind'] = 'file'
    try:
        out['files'].append([''] + list(digest(root)))
    except OSError as e:
        out['kind'] = 'error'; out['error'] = 'cannot read %s: %s' % (root, e.strerror or e)
else:
    out['kind'] = 'error'; out['error'] = 'no such file or directory: %s' % root
print('@@analyze ' + json.dumps(out))
"""
FETCH = r"""
import base64, json, os, sys
root = sys.argv[1]
out = {}
for rel in sys.argv[2:]:
    p = os.path.join(root, os.fsdecode(bytes.fromhex(rel))) if rel else root
    try:
        with open(p, 'rb') as f:
            out[rel] = base64.b64encode(f.read()).decode()
    except OSError as e:
        out[rel] = None
print('@@analyze ' + json.dumps(out))
"""
_MARK = "@@analyze "


class RemoteError(Exception):
    """The host could not be read: the message is the reason (no data)."""


def _run(ctx: ReadContext, host: Any, script: str, args: list[str]) -> Any:
    assert ctx.commands is not None
    command = " ".join(["python3", "-c", shlex.quote(script), *map(shlex.quote, args)])
    result = ctx.commands.run_command(
        CommandRequest(host=host, command=command, artifacts_dir=probe_dir(),
                       timeout=max(ctx.timeout, 1.0) + 5), CancelToken())
    if not result.ok:
        raise RemoteError(f"on {host.name}: {result.detail}")
    for line in reversed((result.stdout or "").splitlines()):
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    raise RemoteError(f"on {host.name}: no answer from the listing command")


def read_remote(ctx: ReadContext, host: Any, path: str, exclude: tuple[str, ...]
                ) -> dict[str, Any]:
    from orchestrator.analysis.cache import shared_cache
    from orchestrator.analysis.directory import Exclusions, Tree, display_name, select

    cache = shared_cache()
    listing = _run(ctx, host, LIST, [path])
    if listing.get("kind") == "error":
        raise RemoteError(f"on {host.name}: {listing.get('error')}")
    if listing["kind"] == "dir" and not listing["files"] and not listing["errors"]:
        raise RemoteError(f"on {host.name}: {path}: no .py file in it")
    label = f"{host.name}:{path}"
    wanted: dict[str, str] = {}  # rel hex -> digest, for contents never analysed here
    for rel, digest, _size in listing["files"]:
        if cache.cached(digest) is None:
            wanted.setdefault(rel, digest)
    fetched: dict[str, bytes | None] = {}
    if wanted:
        got = _run(ctx, host, FETCH, [path, *wanted])
        fetched = {rel: base64.b64decode(b) if b is not None else None for rel, b in got.items()}

    def read(rel: str) -> bytes:
        data = fetched.get(rel)
        if data is None:
            raise OSError(f"could not be fetched from {host.name}")
        return data

    if listing["kind"] == "file":
        _, digest, _ = listing["files"][0]
        return cache.document(digest, label, lambda: read(""))
    root = Path(path)
    by_path = {root / os.fsdecode(bytes.fromhex(rel)): (rel, digest, size)
               for rel, digest, size in listing["files"]}

    def digest_of(p: Path) -> tuple[str, int]:
        return by_path[p][1], by_path[p][2]

    tree: Tree = select(root, Exclusions(exclude), digest_of, found=sorted(by_path))
    tree.skipped += [{"file": display_name(root / os.fsdecode(bytes.fromhex(rel))),
                      "reason": why} for rel, why in listing["errors"]]
    result = cache.assemble(tree, lambda p: read(by_path[p][0]))
    result["host"] = host.name  # the files were read there
    return result


def read_local(path: str, exclude: tuple[str, ...], root: Path | None = None
               ) -> dict[str, Any]:
    """The document of `path` on this machine; a relative path is taken from `root` (the
    project directory) when given."""
    from orchestrator.analysis.cache import shared_cache
    from orchestrator.analysis.directory import Exclusions

    cache = shared_cache()
    target = Path(path).expanduser()
    if root is not None and not target.is_absolute():
        target = root / target
    if target.is_dir():
        return cache.tree(target, Exclusions(exclude))
    return cache.file(target)


class AnalyzeSource:
    def read(self, metric: Metric, ctx: ReadContext) -> Reading:
        from orchestrator._exceptions import ConfigError

        config = metric.config
        passfail = "field" not in config
        path = render(str(config["path"]), ctx.template_context())
        exclude = tuple(str(g) for g in config.get("exclude") or ())
        origin_name = config.get("from")
        origin = ctx.origin(origin_name) if origin_name else None
        if origin_name and origin is None:
            return Reading(None, f"from: unknown host {origin_name!r}")
        try:
            if origin is None or origin.is_local:
                doc = read_local(path, exclude, ctx.root)
            elif ctx.commands is None:
                return Reading(None, "no command runner to read the source on the host")
            else:
                doc = read_remote(ctx, origin, path, exclude)
        except ConfigError as exc:  # missing, unreadable, no .py file
            return Reading(None, f"analyze {path}: {exc}")
        except OSError as exc:
            return Reading(None, f"analyze {path}: cannot read: {exc.strerror or exc}")
        except (RemoteError, ValueError, KeyError) as exc:
            return Reading(None, f"analyze {path} {exc}")
        if "reports" not in doc and "skipped" in doc:  # a file that is not text
            return Reading(None, f"analyze {path}: {doc['skipped']}")
        if not passfail:
            value = value_of(doc, str(config["field"]))
            return Reading(None, value) if isinstance(value, str) else Reading(value)
        over = []
        for name, limit in (config.get("max") or {}).items():
            value = value_of(doc, str(name))
            if isinstance(value, str):
                return Reading(None, value)
            if value > float(limit):
                over.append(f"{name} is {value:g}, at most {limit:g} allowed")
        return Reading.passed(not over, "; ".join(over) or None)


def _kind(body: Mapping[str, Any]) -> MetricKind:
    return MetricKind.NUMBER if "field" in body else MetricKind.PASSFAIL


def _globs(value: Any) -> str | None:
    if isinstance(value, list) and all(isinstance(g, str) and g.strip() for g in value):
        return None
    return f"must be a list of globs, not {value!r}"


def _rules(body: YDict, report: Report) -> None:
    if "field" not in body and "max" not in body:
        report(body.line, "source analyze needs 'field' (a number) or 'max' (pass/fail)")
    if "field" in body and isinstance(body["field"], str):
        why = field_problem(body["field"])
        if why:
            report(body.line_of("field"), f"field {why}")
    limits = body.get("max")
    if isinstance(limits, dict):
        if not limits:
            report(body.line_of("max"), "max needs at least one field: {threads.count: 0}")
        for name, limit in limits.items():
            line = limits.line_of(name) if hasattr(limits, "line_of") else body.line_of("max")
            why = field_problem(name)
            if why:
                report(line, f"max: {why}")
            if not isinstance(limit, int | float) or isinstance(limit, bool):
                report(line, f"max: {name} must be a number, not {limit!r}")


SPEC = SourceSpec(
    name="analyze",
    summary="the migration-risk analysis of agent source (a file or a directory, here or "
            "`from:` a host): a number at `field`, or pass/fail on `max`",
    keys={"path": Key(text, required=True, doc="a .py file or a directory (a template)"),
          "from": Key(text, doc="read it on this inventory host, over SSH"),
          "field": Key(text, doc="a number of the document (dotted path), or of a "
                                 "directory's totals"),
          "max": Key(mapping, doc="pass/fail: {field: highest allowed value, ...}"),
          "exclude": Key(_globs, doc="globs left out of a directory, as --exclude")},
    kind=_kind,
    reader=AnalyzeSource(),
    exclusive=(("field", "max"),),
    rules=_rules,
)
