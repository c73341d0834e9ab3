"""One file's document: every measure of the file, put together and scored.

The document is SPEC section 6's, flat (``r["risk"]["score"]``), with a few
fields more than the SPEC shows: ``gpu_operations``, ``complexity``,
``unparsed_lines`` (code line ranges the tolerant parser could not read, when
the file does not parse), ``sockets.operation_lines`` and ``sockets.patterns``,
``base_agent.legacy_classes``, and ``worklist``: the sites the migration must change
(see `sites`). A file that cannot be analysed gives
``{"file", "skipped": reason}`` instead.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from orchestrator.analysis.agents import agent_report
from orchestrator.analysis.endpoints import endpoint_report
from orchestrator.analysis.functions import function_report
from orchestrator.analysis.gpu import gpu_report
from orchestrator.analysis.names import Names
from orchestrator.analysis.parsing import parse_source, split_lines
from orchestrator.analysis.scoring import risk_score
from orchestrator.analysis.sites import worklist
from orchestrator.analysis.sockets import socket_report
from orchestrator.analysis.source import (
    NotText,
    decode_source,
    line_counts,
    path_error,
    read_source,
)
from orchestrator.analysis.threads import thread_report


def analyze_file(path: Path) -> dict[str, Any]:
    """The analysis document of one Python file (read as text, never imported or run).

    ConfigError if the file cannot be read; ``{"file", "skipped"}`` if it is not text.
    """
    path = Path(path)
    try:
        return analyze_readable(path)
    except OSError as exc:
        raise path_error(path, f"cannot read: {exc.strerror or exc}") from exc


def analyze_readable(path: Path) -> dict[str, Any]:
    """`analyze_file` that lets OSError through, for callers that skip unreadable files."""
    try:
        source = read_source(path)
    except NotText as exc:
        return skipped(path, str(exc))
    enabled = gc.isenabled()
    gc.disable()  # an AST is acyclic; the collector would only walk it again and again
    try:
        return _document(path, source.size_bytes, source.text)
    except (RecursionError, MemoryError) as exc:
        return skipped(path, f"too deeply nested to analyse ({type(exc).__name__})")
    finally:
        if enabled:
            gc.enable()


def analyze_bytes(name: str | Path, data: bytes) -> dict[str, Any]:
    """The document of a file's bytes, read elsewhere (a host, a cache); never raises."""
    try:
        source = decode_source(data)
    except NotText as exc:
        return skipped(name, str(exc))
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _document(name, source.size_bytes, source.text)
    except (RecursionError, MemoryError) as exc:
        return skipped(name, f"too deeply nested to analyse ({type(exc).__name__})")
    except Exception as exc:  # one bad file must not sink the report
        return skipped(name, f"analyser failed: {type(exc).__name__}: {exc}")
    finally:
        if enabled:
            gc.enable()


def skipped(path: str | Path, reason: str) -> dict[str, Any]:
    return {"file": str(path), "skipped": reason}


def _document(path: str | Path, size_bytes: int, text: str) -> dict[str, Any]:
    try:
        parsed = parse_source(text)
    except ValueError as exc:
        return skipped(path, f"not text: {exc}")
    names = Names(parsed.tree)
    total_lines, code_lines = line_counts(split_lines(text), names.string_spans)
    sockets = socket_report(names)
    threads = thread_report(names)
    gpu, gpu_calls = gpu_report(names)
    complexity, critical = function_report(names, gpu_calls)
    base_agent = agent_report(names)
    errors = [e.as_dict() for e in parsed.errors]
    unparsed = sum(last - first + 1 for first, last in parsed.unparsed)
    first_error = f"at line {parsed.errors[0].line}: {parsed.errors[0].message}" \
        if parsed.errors else ""
    worst = complexity["max_function"]
    risk = risk_score(
        size_bytes=size_bytes, code_lines=code_lines,
        max_function_complexity=worst["complexity"] if worst else 0,
        sockets=sockets["count"], threads=threads["count"], gpu_operations=gpu["count"],
        inherits=base_agent["inherits"], super_init=base_agent["super_init"],
        health_method=base_agent["health_method"], syntax_errors=len(errors),
        first_syntax_error=first_error, unparsed_lines=unparsed,
    )
    doc: dict[str, Any] = {
        "file": str(path),
        "size_bytes": size_bytes,
        "total_lines": total_lines,
        "code_lines": code_lines,
        "syntax_errors": errors,
    }
    if errors:
        doc["unparsed_lines"] = [list(r) for r in parsed.unparsed]
    doc.update({
        "base_agent": base_agent,
        "sockets": sockets,
        "threads": threads,
        "gpu_operations": gpu,
        "complexity": complexity,
        "critical_functions": critical,
        "risk": risk,
        "worklist": worklist(names, sockets, threads, base_agent),
        "endpoints": endpoint_report(names, sockets),
    })
    return doc
