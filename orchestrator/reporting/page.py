"""One look for every report migrate writes: run reports and observation reports.

A report is a `Page`: a title, an outcome badge, a summary table of facts, charts
(one per trigger and host, drawn by `trigger_chart`) and tables. `render_html`
renders it from the Jinja2 template shipped in the package (`templates/page.html.j2`,
autoescaped) as one self-contained file: the stylesheet is inline and every chart is a
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
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

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
    #: what decided the outcome when it is not a chart of its own (a canary judgement that
    #: rolled the run back): its tables and charts open the page, before `charts`
    lead_tables: Sequence[Table] = ()
    lead_charts: Sequence[Chart] = ()


@dataclass(frozen=True)
class Mark:
    """A vertical line on a chart at `x`: a fire, the start or the end of a rollback."""

    x: float | datetime
    label: str
    color: str = "black"
    style: str = "-"  # matplotlib line style
    width: float = 1.5


@dataclass(frozen=True)
class Dot:
    """A point drawn apart from the series (the re-check after a rollback)."""

    x: float | datetime
    y: float
    label: str
    color: str = "green"
    marker: str = "D"


@lru_cache(maxsize=1)
def _environment() -> Any:
    """The Jinja2 environment of the shipped templates (`reporting/templates`), autoescaped."""
    import jinja2  # heavy-ish: imported only when a page is rendered

    return jinja2.Environment(loader=jinja2.PackageLoader("orchestrator.reporting", "templates"),
                              autoescape=True, trim_blocks=True, lstrip_blocks=True,
                              undefined=jinja2.StrictUndefined)


def render_html(page: Page) -> str:
    """One self-contained HTML document: no file or network access is needed to view it.

    Rendered from the package's `templates/page.html.j2` with autoescape on: every text of
    the page is escaped; the charts are base64 `data:` URIs."""
    def charts_of(charts: Sequence[Chart]) -> list[dict[str, str]]:
        return [{"title": c.title, "caption": c.caption, "filename": c.filename,
                 "colour": VERDICTS.get(c.verdict, VERDICTS["info"]),
                 "data": base64.b64encode(c.png).decode("ascii")} for c in charts]

    def tables_of(tables: Sequence[Table]) -> list[dict[str, Any]]:
        return [{"title": t.title, "note": t.note, "headers": [str(h) for h in t.headers],
                 "rows": [[_cell(v) for v in row] for row in t.rows]} for t in tables]

    return str(_environment().get_template("page.html.j2").render(
        page=page, colour=VERDICTS.get(page.verdict, VERDICTS["info"]),
        charts=charts_of(page.charts), tables=tables_of(page.tables),
        lead_charts=charts_of(page.lead_charts), lead_tables=tables_of(page.lead_tables),
        verdict_bad=VERDICTS["bad"]))


def render_markdown(page: Page, charts_dir: str = "") -> str:
    """The same page in Markdown; charts are the PNG files named by `Chart.filename`, in
    `charts_dir` (relative to the markdown file; "" is beside it)."""
    lines = [f"# {page.title}", "", f"**{page.outcome}**", ""]
    if page.summary:
        lines += ["| | |", "|---|---|"]
        lines += [f"| {_md(k)} | {_md(v)} |" for k, v in page.summary]
        lines.append("")
    for n in page.notes:
        lines += [n, ""]

    def chart_lines(c: Chart, level: str) -> list[str]:
        out = [f"{level} {c.title}", ""]
        if c.caption:
            out += [c.caption, ""]
        link = f"{charts_dir.rstrip('/')}/{c.filename}" if charts_dir else c.filename
        return [*out, f"![{c.title}]({link})", ""]

    def table_lines(t: Table) -> list[str]:
        out = [f"## {t.title}", ""]
        if t.note:
            out += [t.note, ""]
        out.append("| " + " | ".join(_md(h) for h in t.headers) + " |")
        out.append("|" + "---|" * len(t.headers))
        out += ["| " + " | ".join(_md(_cell(v)) for v in row) + " |" for row in t.rows]
        return [*out, ""]

    for t in page.lead_tables:
        lines += table_lines(t)
    for c in page.lead_charts:
        lines += chart_lines(c, "##")
    if page.charts:
        lines += ["## Charts", ""]
        for c in page.charts:
            lines += chart_lines(c, "###")
    for t in page.tables:
        lines += table_lines(t)
    return "\n".join(lines).rstrip("\n") + "\n"


def write_page(page: Page, out_dir: Path, stem: str = "report",
               formats: Sequence[str] = ("md", "html")) -> dict[str, Path]:
    """Write the page in each format (and the chart PNGs the markdown links to)."""
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for c in [*page.lead_charts, *page.charts]:
        (out_dir / c.filename).write_bytes(c.png)
    written = {}
    for fmt in formats:
        text = render_html(page) if fmt == "html" else render_markdown(page)
        path = out_dir / f"{stem}.{fmt}"
        path.write_text(text, encoding="utf-8")
        written[fmt] = path
    return written


def trigger_chart(title: str, points: Sequence[tuple[float | datetime, float | None]], *,
                  ylabel: str, threshold: float | None = None, baseline: float | None = None,
                  fired_at: Sequence[float | datetime] = (),
                  xlabel: str = "seconds since phase start", marks: Sequence[Mark] = (),
                  dots: Sequence[Dot] = (), passfail: bool = False,
                  until: float | datetime | None = None,
                  levels: tuple[str, str] = ("fail", "pass")) -> bytes:
    """A metric over time with its limit, baseline, fires and marks, as PNG bytes.

    x is seconds (floats) or UTC `datetime`s; with datetimes the axis is a date axis in
    UTC (HH:MM:SS), the same clock as the run's timeline. `marks` are vertical lines
    (a fire, a rollback's start and end) and `dots` single points (a re-check); the axis
    reaches `until` (the end of the rollback) even where no sample was read. `passfail`
    labels the y axis with `levels` (0, 1) instead of 1/0: `fail`/`pass`, or `not firing`/
    `firing` for an alert trigger.

    No data is a gap in the line (NaN) with grey crosses, never a straight line drawn
    across it, so a chart never suggests values that were not read.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax: Any = fig.add_subplot()  # x may be datetimes: matplotlib's stubs say float
    xs = [t for t, _ in points]
    ys = [v if v is not None else float("nan") for _, v in points]
    ax.plot(xs, ys, marker="o" if len(xs) <= 120 else None, markersize=3, linewidth=1.5,
            label=ylabel, zorder=5,
            drawstyle="steps-post" if passfail else "default")
    if len(xs) > 120:  # no markers on a long series, but a lone reading must still show
        gap = [v != v for v in ys]  # NaN: no data
        lone = [i for i in range(len(ys)) if not gap[i] and (i == 0 or gap[i - 1])
                and (i == len(ys) - 1 or gap[i + 1])]
        if lone:
            ax.plot([xs[i] for i in lone], [ys[i] for i in lone], linestyle="none", marker="o",
                    markersize=6, color="C0", zorder=6)  # above the fire line drawn at it
    known = [v for _, v in points if v is not None]
    nodata = [t for t, v in points if v is None]
    if nodata:
        ax.scatter(nodata, [min(known) if known else 0] * len(nodata), marker="x",
                   color="grey", label="no data")
    if threshold is not None and not passfail:
        ax.axhline(threshold, color="red", linestyle="--", label=f"limit {threshold:g}")
    if baseline is not None and not passfail:
        ax.axhline(baseline, color="green", linestyle=":", label=f"baseline {baseline:g}")
    for i, t in enumerate(fired_at):
        label = None
        if i == 0:
            label = (f"fired at {t:%H:%M:%S}" if isinstance(t, datetime) else f"fired at {t:.1f}s")
        ax.axvline(t, color="black", linewidth=2, label=label)
    for m in marks:
        ax.axvline(m.x, color=m.color, linestyle=m.style, linewidth=m.width, label=m.label)
    for d in dots:
        ax.plot([d.x], [d.y], linestyle="none", marker=d.marker, markersize=8, color=d.color,
                label=d.label)
    if until is not None and xs:
        every: list[Any] = [*xs, until, *(m.x for m in marks), *(d.x for d in dots)]
        left, right = min(every), max(every)
        if right != left:
            pad = (right - left) * 0.03
            ax.set_xlim(left - pad, right + pad)
    if passfail:
        ax.set_yticks([0, 1], list(levels))
        ax.set_ylim(-0.2, 1.2)
    if xs and isinstance(xs[0], datetime):
        import matplotlib.dates as mdates

        locator = mdates.AutoDateLocator(tz=UTC, minticks=3, maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=UTC))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
    # a fixed layout (room on the right for the legend): tight_layout would draw the whole
    # figure once more only to measure it, doubling the time of a report's charts
    fig.subplots_adjust(left=0.1, right=0.66, top=0.9, bottom=0.16)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def analysis_chart(title: str, boxes: dict[str, dict[str, dict[str, float] | None]],
                   classes: dict[str, str] | None = None) -> bytes:
    """A canary analysis: per metric, the canary's and the control's distributions side by
    side as box plots (precomputed: whislo, q1, med, q3, whishi, mean), as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(boxes) or ["(no metric)"]
    fig = Figure(figsize=(max(3.2 * len(names), 4.5), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    for i, name in enumerate(names, 1):
        ax: Any = fig.add_subplot(1, len(names), i)
        sides = boxes.get(name, {})
        stats, labels = [], []
        for side in ("canary", "control"):
            b = sides.get(side)
            if b is not None:
                stats.append({**{k: b[k] for k in ("whislo", "q1", "med", "q3", "whishi",
                                                    "mean")}, "fliers": [],
                              "label": f"{side}\nn={int(b.get('n', 0))}"})
                labels.append(side)
        if stats:
            ax.bxp(stats, showmeans=True, patch_artist=True,
                   boxprops={"facecolor": "#ddf4ff"}, medianprops={"color": "black"})
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        cls = (classes or {}).get(name)
        ax.set_title(name + (f" ({cls})" if cls else ""), fontsize=9,
                     color="#cf222e" if (cls or "").split(",")[0] in ("high", "low", "spread",
                                                                    "nodata") else "black")
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.82, bottom=0.16, wspace=0.4)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
