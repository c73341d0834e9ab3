"""One look for every report migrate writes: run reports and observation reports.

A report is a `Page`: a title, an outcome badge, a summary table of facts, charts
(one per trigger and host, drawn by `trigger_chart`) and tables. `render_html`
makes it one self-contained file: the stylesheet is inline and every chart is a
base64 `data:` URI, so the file can be mailed, attached to a ticket or opened from
an artifact store without the PNGs beside it. `render_markdown` gives the same
page for a repository or a chat, with the charts as PNG files next to it
(`write_page` writes both, and the PNGs).

Both the run report (`reporting.report`) and the observation checkpoints of
`migrate watch --for ... --checkpoint ...` build a `Page`, so an operator reads
them the same way. Nothing here reads the journal; matplotlib is imported only when
a chart is drawn.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: outcome badge colours: good, bad, needs attention, neutral
VERDICTS = {"ok": "#1a7f37", "bad": "#cf222e", "warn": "#9a6700", "info": "#57606a"}


@dataclass(frozen=True)
class Chart:
    """A PNG chart. `filename` is where the markdown page finds it next to itself."""

    title: str
    png: bytes
    filename: str
    caption: str = ""
    verdict: str = "info"  # colours the caption: "bad" for a trigger that fired


@dataclass(frozen=True)
class Table:
    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[object]]
    note: str = ""


@dataclass(frozen=True)
class Page:
    """What a report says; rendered by `render_html` and `render_markdown`."""

    title: str
    outcome: str  # the one line that answers "how did it go?"
    verdict: str = "info"  # key of VERDICTS
    summary: Sequence[tuple[str, str]] = ()  # label, value
    charts: Sequence[Chart] = ()
    tables: Sequence[Table] = ()
    notes: Sequence[str] = field(default_factory=tuple)  # paragraphs under the summary


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1f2328;
background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 8px}
h2{font-size:1.2em;margin:28px 0 10px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.badge{display:inline-block;color:#fff;border-radius:6px;padding:6px 12px;font-weight:600}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px;margin:12px 0}
table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}
th{background:#f6f8fa}
td:first-child{white-space:nowrap}
table.summary th{width:180px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:12px}
figure{margin:0;background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:8px}
figure img{width:100%;height:auto;display:block}
figcaption{font-size:.9em;margin-top:6px}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85em}
"""


def render_html(page: Page) -> str:
    """One self-contained HTML document: no file or network access is needed to view it."""
    esc = html.escape
    colour = VERDICTS.get(page.verdict, VERDICTS["info"])
    out = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
           "<meta name='viewport' content='width=device-width, initial-scale=1'>",
           f"<title>{esc(page.title)}</title><style>{_CSS}</style></head><body><main>",
           f"<h1>{esc(page.title)}</h1>",
           f"<p><span class='badge' id='outcome' style='background:{colour}'>"
           f"{esc(page.outcome)}</span></p>"]
    if page.summary:
        out.append("<div class='card'><table class='summary'>")
        out += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in page.summary]
        out.append("</table></div>")
    out += [f"<p>{esc(n)}</p>" for n in page.notes]
    if page.charts:
        out.append("<h2>Charts</h2><div class='charts'>")
        for c in page.charts:
            data = base64.b64encode(c.png).decode("ascii")
            cap_colour = VERDICTS.get(c.verdict, VERDICTS["info"])
            out.append(f"<figure data-chart='{esc(c.filename)}'>"
                       f"<img src='data:image/png;base64,{data}' alt='{esc(c.title)}'>"
                       f"<figcaption style='color:{cap_colour}'><b>{esc(c.title)}</b>"
                       + (f": {esc(c.caption)}" if c.caption else "")
                       + f" <span class='mono'>({esc(c.filename)})</span></figcaption></figure>")
        out.append("</div>")
    for t in page.tables:
        out.append(f"<h2>{esc(t.title)}</h2>")
        if t.note:
            out.append(f"<p>{esc(t.note)}</p>")
        out.append("<div class='card'><table><tr>"
                   + "".join(f"<th>{esc(h)}</th>" for h in t.headers) + "</tr>")
        for row in t.rows:
            out.append("<tr>" + "".join(f"<td>{esc(_cell(v))}</td>" for v in row) + "</tr>")
        out.append("</table></div>")
    out.append("</main></body></html>")
    return "\n".join(out)


def render_markdown(page: Page) -> str:
    """The same page in Markdown; charts are the PNG files named by `Chart.filename`."""
    lines = [f"# {page.title}", "", f"**{page.outcome}**", ""]
    if page.summary:
        lines += ["| | |", "|---|---|"]
        lines += [f"| {_md(k)} | {_md(v)} |" for k, v in page.summary]
        lines.append("")
    for n in page.notes:
        lines += [n, ""]
    if page.charts:
        lines += ["## Charts", ""]
        for c in page.charts:
            lines += [f"### {c.title}", ""]
            if c.caption:
                lines += [c.caption, ""]
            lines += [f"![{c.title}]({c.filename})", ""]
    for t in page.tables:
        lines += [f"## {t.title}", ""]
        if t.note:
            lines += [t.note, ""]
        lines.append("| " + " | ".join(_md(h) for h in t.headers) + " |")
        lines.append("|" + "---|" * len(t.headers))
        lines += ["| " + " | ".join(_md(_cell(v)) for v in row) + " |" for row in t.rows]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def write_page(page: Page, out_dir: Path, stem: str = "report",
               formats: Sequence[str] = ("md", "html")) -> dict[str, Path]:
    """Write the page in each format (and the chart PNGs the markdown links to)."""
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for c in page.charts:
        (out_dir / c.filename).write_bytes(c.png)
    written = {}
    for fmt in formats:
        text = render_html(page) if fmt == "html" else render_markdown(page)
        path = out_dir / f"{stem}.{fmt}"
        path.write_text(text, encoding="utf-8")
        written[fmt] = path
    return written


def trigger_chart(title: str, points: Sequence[tuple[float, float | None]], *,
                  ylabel: str, threshold: float | None = None, baseline: float | None = None,
                  fired_at: Sequence[float] = (), xlabel: str = "seconds since phase start",
                  ) -> bytes:
    """A metric over time with its limit, baseline and fires, as PNG bytes.

    No data is a gap in the line (NaN) with grey crosses, never a straight line drawn
    across it, so a chart never suggests values that were not read.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    xs = [t for t, _ in points]
    ys = [v if v is not None else float("nan") for _, v in points]
    ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.5, label=ylabel)
    known = [v for _, v in points if v is not None]
    nodata = [t for t, v in points if v is None]
    if nodata:
        ax.scatter(nodata, [min(known) if known else 0] * len(nodata), marker="x",
                   color="grey", label="no data")
    if threshold is not None:
        ax.axhline(threshold, color="red", linestyle="--", label=f"limit {threshold:g}")
    if baseline is not None:
        ax.axhline(baseline, color="green", linestyle=":", label=f"baseline {baseline:g}")
    for i, t in enumerate(fired_at):
        ax.axvline(t, color="black", linewidth=2, label=f"fired at {t:.1f}s" if i == 0 else None)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
