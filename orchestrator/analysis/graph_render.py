"""The program graph as text, Markdown, Graphviz DOT and Mermaid.

Text and Markdown: the order as a table (one row per agent, in program order), why each
step is where it is, then the drift, the unresolved endpoints and the unknown names.
DOT and Mermaid draw the graph: an arrow from the agent that needs to the agent needed;
declared edges solid, edges seen only in the code dashed, cross-machine edges bold and
labelled; agents grouped by machine (an agent on several machines stands outside).
"""

from __future__ import annotations

from typing import Any


def _agents_row(graph: dict[str, Any]) -> list[list[str]]:
    nodes = {n["name"]: n for n in graph["nodes"]}
    needs: dict[str, int] = {}
    needed: dict[str, int] = {}
    for edge in graph["edges"]:
        if edge["declared"] or graph["source"] == "code":
            needs[edge["from"]] = needs.get(edge["from"], 0) + 1
            needed[edge["to"]] = needed.get(edge["to"], 0) + 1
    rows = []
    for step in graph["order"]:
        together = {a: unit for unit in step["units"] for a in unit}
        for name in step["agents"]:
            node = nodes[name]
            notes = []
            if node["migrated"]:
                notes.append("migrated")
            if node["script_missing"]:
                notes.append("script missing" if node["script"] else "no script")
            if node["variants"]:
                notes.append(f"{len(node['variants'])} variant(s)")
            if name in together:
                notes.append("with " + ", ".join(a for a in together[name] if a != name))
            risk = f"{node['risk']['score']} {node['risk']['level']}" if node["risk"] else "-"
            rows.append([str(step["step"]), name, ",".join(node["machines"]) or "-",
                         str(node["port"]) if node["port"] is not None else "-", risk,
                         str(needs.get(name, 0)), str(needed.get(name, 0)),
                         "; ".join(notes)])
    return rows


_HEADER = ["STEP", "AGENT", "MACHINES", "PORT", "RISK", "NEEDS", "NEEDED BY", "NOTES"]


def _headline(graph: dict[str, Any]) -> str:
    t = graph["totals"]
    machines = ", ".join(graph["machines"]) or "no machine named"
    origin = "from the manifests" if graph["source"] == "manifests" \
        else "from the code alone (no --services)"
    return (f"{_count(t['nodes'], 'agent')} on {machines}, {origin}: "
            f"{_count(t['declared'], 'declared edge')}, {t['seen']} seen in code, "
            f"{t['undeclared']} undeclared, {t['unseen']} unseen; "
            f"{_count(t['unresolved'], 'unresolved endpoint')}, "
            f"{_count(t['unknown'], 'unknown name')}; {_count(t['steps'], 'step')}")


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def render_graph_text(graph: dict[str, Any]) -> str:
    rows = _agents_row(graph)
    widths = [max(len(r[i]) for r in [_HEADER, *rows]) for i in range(len(_HEADER))]
    lines = [_headline(graph), ""]
    for row in [_HEADER, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    lines += ["", "Why each step:"]
    lines += [f"  step {s['step']}: {s['why']}" for s in graph["order"]]
    lines += ["", *_drift_lines(graph, "  ")]
    return "\n".join(lines)


def _drift_lines(graph: dict[str, Any], indent: str) -> list[str]:
    drift = graph["drift"]
    lines = [f"Undeclared (seen in code, declared in no manifest): {len(drift['undeclared'])}"]
    for edge in drift["undeclared"]:
        cross = " [cross-machine]" if edge["cross_machine"] else ""
        lines.append(f"{indent}{edge['from']} -> {edge['to']}{cross}")
        for seen in edge["seen"]:
            lines.append(f"{indent}  {seen['file']}:{seen['line']}  {seen['how']}")
    no_code = sum(1 for e in drift["unseen"] if not e["code"])
    lines.append(f"Unseen (declared, nothing seen in code): {len(drift['unseen'])}"
                 + (f" ({no_code} from agents whose script was not found)" if no_code else ""))
    lines += [f"{indent}{e['from']} -> {e['to']}" + ("" if e["code"] else "  (no code)")
              for e in drift["unseen"]]
    lines.append(f"Unresolved endpoints: {len(graph['unresolved'])}")
    lines += [f"{indent}{u['file']}:{u['line']}  {u['agent']}: {u['endpoint']}  ({u['why']})"
              for u in graph["unresolved"]]
    lines.append(f"Unknown names: {len(graph['unknown'])}")
    lines += [f"{indent}{u['file']}:{u['line']}  {u['from']} needs {u['name']}  ({u['how']})"
              for u in graph["unknown"]]
    return lines


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_graph_markdown(graph: dict[str, Any]) -> str:
    lines = ["# The program", "", _headline(graph), "", "## Order", "",
             "| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in _agents_row(graph)]
    lines += ["", "## Why each step", ""]
    lines += [f"{s['step']}. {_md_cell(s['why'])}" for s in graph["order"]]
    lines += ["", "## Drift", ""]
    lines += [line if not line.startswith(" ") else f"- `{line.strip()}`"
              for line in _drift_lines(graph, "  ")]
    return "\n".join(lines)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _by_machine(graph: dict[str, Any]
                ) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """The agents on one machine each, by machine (drawn in a box per machine), and the
    agents on several (drawn outside every box), each in the graph's order."""
    by_machine: dict[str, list[dict[str, Any]]] = {}
    outside = []
    for node in graph["nodes"]:
        if len(node["machines"]) == 1:
            by_machine.setdefault(node["machines"][0], []).append(node)
        else:
            outside.append(node)
    return by_machine, outside


def render_graph_dot(graph: dict[str, Any]) -> str:
    """Graphviz: ``dot -Tsvg`` draws it."""
    lines = ["digraph program {", "  rankdir=LR;",
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontname=Helvetica];',
             "  edge [fontname=Helvetica, fontsize=10];"]
    by_machine, outside = _by_machine(graph)

    def node_line(node: dict[str, Any]) -> str:
        label = node["name"]
        if len(node["machines"]) > 1:
            label += "\\n(" + ", ".join(node["machines"]) + ")"
        attrs = [f"label={_quote(label)}"]
        if node["migrated"]:
            attrs.append("fillcolor=palegreen")
        elif node["script_missing"]:
            attrs.append('style="rounded,dashed"')
        return f"{_quote(node['name'])} [{', '.join(attrs)}];"

    for index, (machine, nodes) in enumerate(by_machine.items()):
        lines.append(f"  subgraph cluster_{index} {{")
        lines.append(f"    label={_quote(machine)}; style=rounded; color=gray50;")
        lines += [f"    {node_line(n)}" for n in nodes]
        lines.append("  }")
    lines += [f"  {node_line(n)}" for n in outside]
    for edge in graph["edges"]:
        attrs = []
        if not edge["declared"]:
            attrs += ["style=dashed", "color=firebrick"]
            if graph["source"] == "manifests":
                attrs.append('xlabel="undeclared"')
        if edge["cross_machine"]:
            attrs += ["penwidth=2.5", 'label="cross-machine"']
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"  {_quote(edge['from'])} -> {_quote(edge['to'])}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_graph_mermaid(graph: dict[str, Any]) -> str:
    """Mermaid flowchart, for Markdown."""
    ids = {n["name"]: f"n{i}" for i, n in enumerate(graph["nodes"])}

    def label(text: str) -> str:
        return text.replace('"', "#quot;")

    lines = ["flowchart LR"]
    by_machine, outside = _by_machine(graph)
    for index, (machine, nodes) in enumerate(by_machine.items()):
        lines.append(f'  subgraph m{index}["{label(machine)}"]')
        lines += [f'    {ids[n["name"]]}["{label(n["name"])}"]' for n in nodes]
        lines.append("  end")
    for node in outside:
        where = ", ".join(node["machines"])
        text = f"{node['name']} ({where})" if where else node["name"]
        lines.append(f'  {ids[node["name"]]}["{label(text)}"]')
    for edge in graph["edges"]:
        arrow = "-->" if edge["declared"] else "-.->"
        if edge["cross_machine"]:
            arrow = "==>" if edge["declared"] else "-. cross-machine .->"
        lines.append(f"  {ids[edge['from']]} {arrow} {ids[edge['to']]}")
    migrated = [ids[n["name"]] for n in graph["nodes"] if n["migrated"]]
    if migrated:
        lines.append("  classDef migrated fill:#cfc")
        lines.append(f"  class {','.join(migrated)} migrated")
    return "\n".join(lines) + "\n"


def render_graph(graph: dict[str, Any], fmt: str) -> str:
    return {"text": render_graph_text, "md": render_graph_markdown,
            "dot": render_graph_dot, "mermaid": render_graph_mermaid}[fmt](graph)
