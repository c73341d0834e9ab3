"""The analysis for people: plain text (a rich table for a directory) and Markdown.

Both renderers take what `analyze_path` returns, for a file or a directory, and
show the same facts: per file, the size, syntax errors, BaseAgent status,
sockets by type with their operations, threads with target and name, critical
functions and the risk factors; for a directory, one row per file (highest score
first) and the totals under the table. ``rich`` is imported only when a table is
drawn, so that other commands do not pay for it.
"""

from __future__ import annotations

import io
import os
import shutil
from typing import Any

from orchestrator.analysis.scoring import RISK_MAX


def render_text(result: dict[str, Any], width: int | None = None,
                plain: bool = False) -> str:
    """A readable report: a file's details, or a table of a directory's files with totals.

    `plain`: the directory table as one line per file, never wrapped or cut (for a
    pipe: `grep` finds every row), instead of a rich table fitted to `width`.
    """
    if "changes" in result:
        return render_changes(result)
    if "worklist" in result and "reports" not in result and "file" not in result:
        return render_worklist(result)
    if "reports" in result:
        return _directory_text(result, width, plain)
    if "skipped" in result:
        return f"{result['file']}: skipped: {result['skipped']}"
    return "\n".join(_file_lines(result))


def render_markdown(result: dict[str, Any]) -> str:
    """The same report as Markdown (`migrate analyze --format md`)."""
    if "changes" in result:
        return "```\n" + render_changes(result) + "\n```\n"
    if "worklist" in result and "reports" not in result and "file" not in result:
        return _worklist_markdown(result)
    if "reports" in result:
        return _directory_markdown(result)
    if "skipped" in result:
        return f"# `{result['file']}`\n\nSkipped: {result['skipped']}\n"
    return _file_markdown(result)


# --------------------------------------------------------------------------- shared


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def _plural(count: int, word: str, words: str = "") -> str:
    return f"{count} {word if count == 1 else words or word + 's'}"


def _by_type(sockets: dict[str, Any]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sockets["by_type"].items())


def _operations(sockets: dict[str, Any]) -> str:
    ops = sockets["operations"]
    created, used = sockets["count"], sum(ops.values())
    listed = ", ".join(f"{op} {count}" for op, count in ops.items())
    return f"{listed}: {created} created + {used} operations = {sockets['patterns']} patterns"


def _thread_detail(thread: dict[str, Any]) -> str:
    parts = [f"target={thread['target']}"] if thread.get("target") else []
    if thread.get("name"):
        parts.append(f"name={thread['name']}")
    return " ".join(parts)


def _agent_cell(report: dict[str, Any]) -> str:
    ba = report["base_agent"]
    if ba["inherits"]:
        gaps = [gap for gap, ok in (("super", ba["super_init"]), ("health", ba["health_method"]))
                if not ok]
        return "yes" + (f" (no {', no '.join(gaps)})" if gaps else "")
    return "legacy" if ba["legacy_classes"] else "no"


def _totals_line(totals: dict[str, Any]) -> str:
    line = (f"{_plural(totals['files'], 'file')}, {totals['unparsable']} not parsing; "
            f"{_plural(totals['agent_classes'], 'agent class', 'agent classes')}: "
            f"{totals['base_agent_classes']} BaseAgent, {totals['legacy_agent_classes']} legacy")
    if totals.get("skipped"):
        line += f"; {totals['skipped']} skipped"
    return line


def _sums_line(totals: dict[str, Any]) -> str | None:
    if "sockets" not in totals:
        return None
    socks = totals["sockets"]
    return (f"{_plural(socks['count'], 'socket')} ({socks['zmq']} zmq, {socks['raw']} raw), "
            f"{_plural(totals['threads']['count'], 'thread')}, {totals['worklist']} worklist "
            f"sites; highest score {totals['risk']['score']}/{RISK_MAX}")


def _left_out_line(totals: dict[str, Any]) -> str | None:
    """How many files were left out and why, or None when none was."""
    left = {k: v for k, v in (totals.get("left_out") or {}).items()}
    if not left:
        return None
    count = sum(left.values())
    why = ", ".join(f"{n} {reason}" for reason, n in sorted(left.items(), key=lambda kv: -kv[1]))
    hint = " (--all-files keeps what the defaults leave out)" \
        if any(reason.startswith("default:") for reason in left) else ""
    return f"left out: {_plural(count, 'file')}: {why}{hint}"


def _common_root(files: list[str]) -> str:
    if not files:
        return ""
    if len(files) == 1:
        return os.path.dirname(files[0])
    try:
        return os.path.commonpath(files)
    except ValueError:  # absolute and relative paths mixed
        return ""


def _relative(file: str, root: str) -> str:
    return os.path.relpath(file, root) if root else file


# --------------------------------------------------------------------------- text


def _file_lines(doc: dict[str, Any]) -> list[str]:
    out = [doc["file"], "=" * len(doc["file"])]
    out.append(f"size        {doc['size_bytes']:,} bytes, {doc['total_lines']:,} lines "
               f"({doc['code_lines']:,} code)")
    errors = doc["syntax_errors"]
    if errors:
        unread = sum(b - a + 1 for a, b in doc.get("unparsed_lines", []))
        out.append(f"syntax      {_plural(len(errors), 'error')}: does not parse; figures "
                   f"cover what the tolerant parser read ({unread} code lines unread)")
        for error in errors:
            out.append(f"              line {error['line']:>5}  {error['message']}")
    ba = doc["base_agent"]
    out.append(f"BaseAgent   inherits {_yes(ba['inherits'])}, super().__init__ "
               f"{_yes(ba['super_init'])}, _get_health_status {_yes(ba['health_method'])}")
    for cls in ba["classes"]:
        out.append(f"              line {cls['line']:>5}  class {cls['name']}")
    for cls in ba["legacy_classes"]:
        out.append(f"              line {cls['line']:>5}  class {cls['name']}  "
                   f"(legacy: {cls['why']})")
    socks = doc["sockets"]
    types = f": {_by_type(socks)}" if socks["by_type"] else ""
    out.append(f"sockets     {socks['count']} ({socks['zmq']} zmq, {socks['raw']} raw){types}")
    for s in socks["locations"]:
        out.append(f"              line {s['line']:>5}  {s['kind']:<4} {s['type']:<7} "
                   f"{s['call']}  [{s['via']}]")
    out.append(f"socket ops  {_operations(socks)}")
    for op, lines in socks["operation_lines"].items():
        if lines:
            out.append(f"              {op:<8} line{'s' if len(lines) > 1 else ''} "
                       + ", ".join(str(n) for n in lines))
    threads = doc["threads"]
    out.append(f"threads     {threads['count']}")
    for t in threads["locations"]:
        detail = _thread_detail(t)
        out.append(f"              line {t['line']:>5}  {t['kind']}  ({t['call']})"
                   + (f"  {detail}" if detail else ""))
    out.append(f"GPU ops     {doc['gpu_operations']['count']}")
    cx = doc["complexity"]
    worst = cx["max_function"]
    worst_text = f", most complex {worst['name']} (line {worst['line']}): " \
        f"{worst['complexity']}" if worst else ""
    out.append(f"complexity  {cx['decision_points']} decision points in "
               f"{cx['functions']} functions{worst_text}")
    out.append(f"critical    {len(doc['critical_functions'])} functions")
    for f in doc["critical_functions"]:
        out.append(f"              line {f['line']:>5}  {f['name']}  "
                   f"({', '.join(f['touches'])})")
    risk = doc["risk"]
    out.append(f"risk        {risk['score']}/{risk['max']} {risk['level']}")
    for factor in risk["factors"]:
        out.append(f"              {factor['name']:<16} {factor['points']:>2}/{factor['max']}"
                   f"  {factor['reason']}")
    return out


def _row_cells(entry: dict[str, Any], report: dict[str, Any], root: str) -> list[str]:
    return [_relative(entry["file"], root), str(report["total_lines"]),
            str(report["sockets"]["count"]), str(report["threads"]["count"]),
            _agent_cell(report), str(entry["syntax_errors"]) if entry["syntax_errors"] else "",
            f"{entry['score']}/{RISK_MAX}", entry["level"]]


_HEADER = ["file", "lines", "sockets", "threads", "BaseAgent", "syntax errors", "score",
           "level"]
_RIGHT = {1, 2, 3, 5, 6}


def _plain_table(result: dict[str, Any], root: str) -> list[str]:
    """One line per file, columns padded to the widest cell, nothing wrapped or cut."""
    by_file = {r["file"]: r for r in result["reports"]}
    rows = [_row_cells(e, by_file[e["file"]], root) for e in result["summary"]]
    widths = [max(len(r[i]) for r in [_HEADER, *rows]) for i in range(len(_HEADER))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in _RIGHT else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [f"migration risk, files under {root or '.'}", line(_HEADER),
            *[line(r) for r in rows]]


def _directory_footer(result: dict[str, Any], width: int | None = None) -> list[str]:
    """Totals, what was left out and why, skipped files, copies and warnings; lines
    folded to `width` (with an indent) when one is given, else one line each."""
    lines = ["", f"totals: {_totals_line(result['totals'])}"]
    sums = _sums_line(result["totals"])
    if sums:
        lines.append(f"        {sums}")
    left = _left_out_line(result["totals"])
    if left:
        lines.append(left)
    if width is not None:  # the summary folds; a line naming a file never does
        import textwrap

        lines = [folded for line in lines
                 for folded in (textwrap.wrap(line, width, subsequent_indent="    ",
                                              break_on_hyphens=False) or [""])]
    for item in result.get("skipped", []):
        lines.append(f"skipped: {item['file']}: {item['reason']}")
    for item in result.get("duplicates", []):
        lines.append(f"duplicate: {item['file']}: same bytes as {item['duplicate_of']}")
    for item in result.get("warnings", []):
        lines.append(f"warning: {item['file']}: {item['warning']}")
    return lines


def _directory_text(result: dict[str, Any], width: int | None, plain: bool = False) -> str:
    if plain:
        root = _common_root([r["file"] for r in result["reports"]])
        return "\n".join(_plain_table(result, root) + _directory_footer(result))
    from rich import box
    from rich.console import Console
    from rich.table import Table

    by_file = {r["file"]: r for r in result["reports"]}
    root = _common_root(list(by_file))
    table = Table(box=box.SIMPLE_HEAD, title=f"migration risk, files under {root or '.'}",
                  title_justify="left", show_edge=False)
    table.add_column("file", overflow="fold")
    for name in ("lines", "sockets", "threads"):
        table.add_column(name, justify="right")
    table.add_column("BaseAgent")
    table.add_column("syntax errors", justify="right")
    table.add_column("score", justify="right")
    table.add_column("level")
    for entry in result["summary"]:
        report = by_file[entry["file"]]
        table.add_row(
            _relative(entry["file"], root), str(report["total_lines"]),
            str(report["sockets"]["count"]), str(report["threads"]["count"]),
            _agent_cell(report), str(entry["syntax_errors"]) if entry["syntax_errors"] else "",
            f"{entry['score']}/{RISK_MAX}", entry["level"],
        )
    if width is None:
        width = max(80, shutil.get_terminal_size((120, 24)).columns)
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False,
                      legacy_windows=False, highlight=False)
    console.print(table)
    lines = [row.rstrip() for row in buffer.getvalue().rstrip("\n").splitlines()]
    lines += _directory_footer(result, width)
    return "\n".join(lines)


# --------------------------------------------------------------------------- Markdown


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _code(value: Any) -> str:
    return f"`{_cell(value)}`" if value not in (None, "") else ""


def _table(header: list[str], rows: list[list[Any]], right: set[int] | None = None) -> list[str]:
    right = right or set()
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return out


def _file_markdown(doc: dict[str, Any]) -> str:
    risk = doc["risk"]
    out = [f"# Migration risk: `{doc['file']}`", "",
           f"**{risk['score']}/{risk['max']} {risk['level']}** - {doc['size_bytes']:,} bytes, "
           f"{doc['total_lines']:,} lines ({doc['code_lines']:,} code)", ""]
    errors = doc["syntax_errors"]
    if errors:
        unread = sum(b - a + 1 for a, b in doc.get("unparsed_lines", []))
        out += ["## Syntax errors", "",
                f"The file does not parse; the figures cover what the tolerant parser read "
                f"({unread} code lines unread).", ""]
        out += _table(["line", "message"], [[e["line"], e["message"]] for e in errors], {0})
        out.append("")
    ba = doc["base_agent"]
    out += ["## BaseAgent", "",
            f"Inherits: {_yes(ba['inherits'])}; super().__init__: {_yes(ba['super_init'])}; "
            f"_get_health_status: {_yes(ba['health_method'])}.", ""]
    rows = [[c["line"], _code(c["name"]), "BaseAgent", _yes(c["super_init"]),
             _yes(c["health_method"])] for c in ba["classes"]]
    rows += [[c["line"], _code(c["name"]), f"legacy: {c['why']}", "", ""]
             for c in ba["legacy_classes"]]
    if rows:
        out += _table(["line", "class", "kind", "super().__init__", "_get_health_status"],
                      sorted(rows, key=lambda r: r[0]), {0})
        out.append("")
    socks = doc["sockets"]
    out += ["## Sockets", "",
            f"{socks['count']} created ({socks['zmq']} ZMQ, {socks['raw']} raw)"
            + (f": {_by_type(socks)}" if socks["by_type"] else "") + ".",
            "", f"Operations: {_operations(socks)}.", ""]
    if socks["locations"]:
        out += _table(["line", "kind", "type", "call", "via"],
                      [[s["line"], s["kind"], s["type"], _code(s["call"]), s["via"]]
                       for s in socks["locations"]], {0})
        out.append("")
    ops = [[op, len(lines), ", ".join(str(n) for n in lines)]
           for op, lines in socks["operation_lines"].items() if lines]
    if ops:
        out += _table(["operation", "count", "lines"], ops, {1})
        out.append("")
    threads = doc["threads"]
    out += ["## Threads", "", f"{threads['count']} thread/process sites.", ""]
    if threads["locations"]:
        out += _table(["line", "kind", "call", "target", "name"],
                      [[t["line"], t["kind"], _code(t["call"]), _code(t["target"]),
                        _code(t["name"])] for t in threads["locations"]], {0})
        out.append("")
    out += ["## Critical functions", "",
            f"{len(doc['critical_functions'])} functions; "
            f"{doc['gpu_operations']['count']} GPU operation sites.", ""]
    if doc["critical_functions"]:
        out += _table(["line", "function", "touches"],
                      [[f["line"], _code(f["name"]), ", ".join(f["touches"])]
                       for f in doc["critical_functions"]], {0})
        out.append("")
    out += ["## Risk", ""]
    out += _table(["factor", "points", "reason"],
                  [[f["name"], f"{f['points']}/{f['max']}", f["reason"]]
                   for f in risk["factors"]], {1})
    out += ["", f"**Total: {risk['score']}/{risk['max']} {risk['level']}**", ""]
    return "\n".join(out)


def _directory_markdown(result: dict[str, Any]) -> str:
    by_file = {r["file"]: r for r in result["reports"]}
    root = _common_root(list(by_file))
    out = [f"# Migration risk: files under `{root or '.'}`", ""]
    rows = []
    for entry in result["summary"]:
        report = by_file[entry["file"]]
        rows.append([_code(_relative(entry["file"], root)), report["total_lines"],
                     report["sockets"]["count"], report["threads"]["count"],
                     _agent_cell(report), entry["syntax_errors"] or "",
                     f"{entry['score']}/{RISK_MAX}", entry["level"]])
    out += _table(["file", "lines", "sockets", "threads", "BaseAgent", "syntax errors",
                   "score", "level"], rows, {1, 2, 3, 5, 6})
    out += ["", f"**Totals:** {_totals_line(result['totals'])}.", ""]
    sums = _sums_line(result["totals"])
    if sums:
        out += [f"{sums[0].upper()}{sums[1:]}.", ""]
    left = _left_out_line(result["totals"])
    if left:
        out += [f"**Left out:** {_cell(left.split(': ', 1)[1])}.", ""]
    if result.get("duplicates"):
        out += ["## Duplicates", ""]
        out += [f"- {_code(d['file'])}: same bytes as {_code(d['duplicate_of'])}"
                for d in result["duplicates"]]
        out.append("")
    if result.get("skipped"):
        out += ["## Skipped", ""]
        out += [f"- {_code(item['file'])}: {_cell(item['reason'])}" for item in result["skipped"]]
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- worklist


def worklist_of(result: dict[str, Any]) -> dict[str, Any]:
    """``{"worklist": [{file, line, kind, what, target}]}`` of a file's or a tree's result."""
    docs = result["reports"] if "reports" in result else [result]
    sites = [{"file": doc["file"], **site} for doc in docs if "skipped" not in doc
             for site in doc.get("worklist", [])]
    sites.sort(key=lambda s: (s["file"], s["line"]))
    out: dict[str, Any] = {"worklist": sites}
    counts: dict[str, int] = {}
    for site in sites:
        counts[site["kind"]] = counts.get(site["kind"], 0) + 1
    out["counts"] = counts
    return out


def render_worklist(result: dict[str, Any]) -> str:
    """One line per site: ``FILE:LINE  KIND  WHAT  -> TARGET``, then the counts."""
    sites = result["worklist"]
    root = _common_root(sorted({s["file"] for s in sites})) if len(
        {s["file"] for s in sites}) > 1 else ""
    width = max((len(s["kind"]) for s in sites), default=0)
    lines = [f"{_relative(s['file'], root)}:{s['line']}  {s['kind']:<{width}}  {s['what']}  "
             f"-> {s['target']}" for s in sites]
    counts = result.get("counts") or {}
    lines.append(f"{_plural(len(sites), 'site')}"
                 + (": " + ", ".join(f"{n} {k}" for k, n in counts.items()) if counts else ""))
    return "\n".join(lines)


def _worklist_markdown(result: dict[str, Any]) -> str:
    rows = [[_code(f"{s['file']}:{s['line']}"), s["kind"], _code(s["what"]), s["target"]]
            for s in result["worklist"]]
    out = ["# Migration worklist", ""]
    out += _table(["site", "kind", "what", "target"], rows)
    out += ["", f"{_plural(len(rows), 'site')}.", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- --against


def render_changes(result: dict[str, Any]) -> str:
    """Per file with a difference: counts and score before -> after, sites removed and added."""
    lines: list[str] = []
    unchanged = 0
    for ch in result["changes"]:
        before, after = ch["before"], ch["after"]
        if ch["status"] == "unchanged":
            unchanged += 1
            continue
        if before and after:
            figures = ", ".join(
                f"{label} {before[key]} -> {after[key]}" for key, label in
                (("sockets", "sockets"), ("threads", "threads"),
                 ("syntax_errors", "syntax errors"), ("score", "score")))
        else:
            side = after or before
            figures = "" if side is None else (
                f"sockets {side['sockets']}, threads {side['threads']}, syntax errors "
                f"{side['syntax_errors']}, score {side['score']}")
        lines.append(f"{ch['file']} ({ch['status']}): {figures}".rstrip(": "))
        for side_name in ("before", "after"):
            if ch.get(f"{side_name}_skipped"):
                lines.append(f"  {side_name}: skipped: {ch[side_name + '_skipped']}")
        for site in ch["removed"]:
            lines.append(f"  - {site['line']:>5}  {site['kind']:<9}  {site['what']}")
        for site in ch["added"]:
            lines.append(f"  + {site['line']:>5}  {site['kind']:<9}  {site['what']}  "
                         f"-> {site['target']}")
    t = result["totals"]
    b, a = t["before"], t["after"]
    lines.append(f"{_plural(t['files'], 'file')}: {t['changed']} changed, {t['added']} added, "
                 f"{t['removed']} removed, {unchanged} unchanged; sockets {b['sockets']} -> "
                 f"{a['sockets']}, threads {b['threads']} -> {a['threads']}, syntax errors "
                 f"{b['syntax_errors']} -> {a['syntax_errors']}, highest score {b['score']} -> "
                 f"{a['score']}; {t['sites_removed']} sites removed, {t['sites_added']} added")
    return "\n".join(lines)
