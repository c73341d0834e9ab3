"""`report --format html` is one self-contained file that a real browser renders.

A real phase rolls back on a trigger; its HTML report (written to a file, only its
path printed) is opened in headless Chromium (Debian's `chromium`, which .ci/run
installs). Chromium's log shows no console message; the DOM after load says the title
and that every chart is an inline PNG decoded to a non-empty bitmap; a screenshot is
not blank (pixel variance). Under CI=true a missing chromium fails instead of skipping.
The report of a fire puts the fired trigger's chart first and draws every chart on the
timeline's UTC clock through the rollback to its re-check.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.reporting.page import Chart, Page, Table, render_html, render_markdown
from tests.support.projects import Proj
from tests.support.real_parts import require

# Reads, after the page's load event, the size each <img> decoded to.
PROBE = """<script>
window.addEventListener('load', () => {
  document.body.dataset.images = JSON.stringify(
    [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight,
                                   i.src.slice(0, 40)]));
});
</script>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    require(found is not None, "chromium is not installed (apt-get install chromium)")
    assert found is not None
    return found


def browse(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", "--virtual-time-budget=5000", *args],
                          capture_output=True, text=True, timeout=120)


def console_messages(stderr: str) -> list[str]:
    """The page's console messages (errors, uncaught exceptions) from chromium's log."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.integration
@pytest.mark.xdist_group("reporting-fired-run")
def test_html_report_renders_in_a_real_browser(tmp_path: Path,
                                               fired_run: tuple[Proj, str]) -> None:
    browser = chromium()
    proj, run_id = fired_run
    res = proj.migrate("report", run_id, "--format", "html")
    assert res.returncode == 0, res.stderr
    # html goes to a file (SPEC section 3's default) and only its path is printed
    report = proj.root / ".migrate" / "runs" / run_id / "report.html"
    assert res.stdout.strip() == str(report) and "<html" not in res.stdout + res.stderr
    html = report.read_text()
    # self-contained: every image is inline, nothing is fetched from beside the file
    assert 'src="data:image/png;base64,' in html
    assert not re.search(r"""src=['"](?!data:image/png;base64,)""", html)
    assert "<link" not in html and "http://" not in html and "https://" not in html
    # the fired trigger's chart first
    first = re.search(r'data-chart="([^"]+)"', html)
    assert first and first.group(1).startswith("vram_degradation-"), first
    lone = tmp_path / "elsewhere" / "report.html"  # the report alone, without its PNGs
    lone.parent.mkdir()
    lone.write_text(html.replace("</body>", PROBE + "</body>"))

    dom = browse(browser, "--enable-logging=stderr", "--v=0", "--dump-dom", lone.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_messages(dom.stderr) == [], dom.stderr[-2000:]
    assert f"<title>Run {run_id}: phase 1 on main, pc2</title>" in dom.stdout
    found = re.search(r'data-images="([^"]*)"', dom.stdout)
    assert found, dom.stdout[:2000]
    images = json.loads(found.group(1).replace("&quot;", '"'))
    assert len(images) == 4  # two triggers x two hosts
    for complete, width, height, src in images:
        assert complete and width >= 600 and height >= 300, images
        assert src.startswith("data:image/png;base64,")

    shot = tmp_path / "report.png"
    out = browse(browser, "--enable-logging=stderr", "--v=0", f"--screenshot={shot}",
                 "--window-size=1200,1600", report.as_uri())
    assert out.returncode == 0 and shot.is_file(), out.stderr[-2000:]
    assert console_messages(out.stderr) == [], out.stderr[-2000:]
    from PIL import Image, ImageStat

    with Image.open(shot) as img:
        assert img.size == (1200, 1600)
        rgb = img.convert("RGB")
        colours = rgb.getcolors(maxcolors=1_000_000) or []
        variance = ImageStat.Stat(rgb.convert("L")).var[0]
    assert len(colours) > 200  # text, badge and charts, not an empty page
    background = max(colours)[0] / (1200 * 1600)
    assert background < 0.9 and variance > 100, (background, variance)


@pytest.mark.integration
def test_the_console_check_sees_an_error(tmp_path: Path) -> None:
    """The console check above would see a broken page: a control with an error in it."""
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>console.error('report-broke');</script></body></html>")
    res = browse(chromium(), "--enable-logging=stderr", "--v=0", "--dump-dom", broken.as_uri())
    assert any("report-broke" in line for line in console_messages(res.stderr)), res.stderr


@pytest.mark.integration
@pytest.mark.xdist_group("reporting-fired-run")
def test_report_after_a_fire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             fired_run: tuple[Proj, str]) -> None:
    """Fired chart first, charts past the rollback to its re-check on the timeline's UTC
    clock, the fire and the rollback marked; md and json as before; --out."""
    from orchestrator.reporting import page as page_module
    from orchestrator.reporting.report import build_report, parse_stamp
    from orchestrator.state.journal import Journal

    proj, run_id = fired_run
    journal = Journal(proj.root / ".migrate" / "state.db")
    drawn: list[dict[str, Any]] = []
    real = page_module.trigger_chart

    def spy(title: str, points: Any, **kw: Any) -> bytes:
        drawn.append(dict(kw, title=title, points=list(points)))
        return real(title, points, **kw)

    monkeypatch.setattr(page_module, "trigger_chart", spy)
    doc = build_report(journal, run_id, tmp_path / "charts")
    journal.close()
    assert doc["triggers"][0]["fired"] and doc["triggers"][0]["trigger"] == "vram_degradation"
    assert drawn[0]["title"].startswith("vram_degradation on ")
    rollback = doc["rollback"]
    assert rollback and rollback["hosts"] == ["main", "pc2"]
    ended = parse_stamp(rollback["ended_at"])
    assert ended is not None
    for chart in drawn:
        xs = [x for x, _ in chart["points"]]
        assert all(isinstance(x, datetime) and x.tzinfo is not None for x in xs)  # UTC axis
        assert chart["until"] >= ended > max(xs)  # the axis reaches past the rollback's end
        labels = " ".join(m.label for m in chart["marks"])
        assert "fired" in labels and "rollback started" in labels and "rollback ended" in labels
        assert chart["xlabel"].startswith("time (UTC)")
    health = [c for c in drawn if c["title"].startswith("health_failure")]
    assert health and all(c["passfail"] for c in health)
    assert all("re-check: pass" in [d.label for d in c["dots"]] for c in health)
    assert next(t for t in doc["triggers"] if t["trigger"] == "health_failure")["kind"] == \
        "pass/fail"

    md = proj.migrate("report", run_id)  # md: printed, and written with its chart links
    assert md.returncode == 0, md.stderr
    md_file = proj.root / ".migrate" / "runs" / run_id / "report.md"
    assert md_file.read_text() == md.stdout.rstrip("\n") + "\n" or md.stdout.startswith("# Run")
    links = re.findall(r"\]\(([^)]+\.png)\)", md_file.read_text())
    assert links and all((md_file.parent / link).is_file() for link in links)
    assert links[0].endswith(("vram_degradation-main.png", "vram_degradation-pc2.png"))
    assert "| health_failure | main | agent_health |" in md.stdout
    assert "| pass |" in md.stdout and "| 1 |" not in md.stdout.split("## Timeline")[0]

    out = tmp_path / "where" / "r.html"
    res = proj.migrate("report", run_id, "--format", "html", "--out", str(out))
    assert res.returncode == 0 and res.stdout.strip() == str(out) and out.is_file()
    js = proj.migrate("report", run_id, "--format", "json")
    assert json.loads(js.stdout)["triggers"][0]["fired"]


@pytest.mark.integration
@pytest.mark.xdist_group("reporting-fired-run")
def test_each_hosts_chart_runs_to_the_whole_rollbacks_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fired_run: tuple[Proj, str]) -> None:
    """A host whose part of the rollback ended before another's still has its charts run to
    the rollback's end (the last host's). In the real run pc2's end is written a
    millisecond or so after main's; here, in a copy of its journal, a second after."""
    import sqlite3

    from orchestrator.reporting import page as page_module
    from orchestrator.reporting.report import build_report, parse_stamp
    from orchestrator.state.journal import Journal

    proj, run_id = fired_run
    db = tmp_path / "state.db"
    shutil.copy(proj.root / ".migrate" / "state.db", db)
    conn = sqlite3.connect(db)
    with conn:  # commits
        ((main_end,),) = conn.execute(
            "SELECT at FROM events WHERE run_id = ? AND host = 'main' "
            "AND kind = 'rollback_completed'", (run_id,)).fetchall()
        later = parse_stamp(main_end)
        assert later is not None
        later_text = (later.replace(microsecond=0) + timedelta(seconds=1)).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z")
        conn.execute("UPDATE events SET at = ? WHERE run_id = ? AND host = 'pc2' "
                     "AND kind = 'rollback_completed'", (later_text, run_id))
    conn.close()
    drawn: list[tuple[str, datetime]] = []
    real = page_module.trigger_chart

    def spy(title: str, points: Any, **kw: Any) -> bytes:
        drawn.append((title, kw["until"]))
        return real(title, points, **kw)

    monkeypatch.setattr(page_module, "trigger_chart", spy)
    journal = Journal(db)
    doc = build_report(journal, run_id, tmp_path / "charts")
    journal.close()
    assert doc["rollback"]["ended_at"] == later_text
    on_main = [(title, until) for title, until in drawn if title.endswith(" on main")]
    assert on_main
    for title, until in on_main:
        assert until >= parse_stamp(later_text), title


def test_one_page_look_for_run_and_observation_reports(tmp_path: Path) -> None:
    png = (tmp_path / "x.png")
    from orchestrator.reporting.page import trigger_chart

    png.write_bytes(trigger_chart("vram on main", [(0, 5000), (1, None), (2, 6500)],
                                  ylabel="vram_used_mib", threshold=6000, baseline=5000,
                                  fired_at=[2]))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = Page("Observation w1: checkpoint 1 after 6h", "nothing fired", "ok",
                [("watch run", "w1"), ("a | b", "x")],
                [Chart("vram on main", png.read_bytes(), "c1-vram-main.png", "0 fire(s)")],
                [Table("Per trigger", ("trigger", "fires"), [("vram", 0), ("x<y", 1.5)])])
    html = render_html(page)
    assert "<title>Observation w1: checkpoint 1 after 6h</title>" in html
    assert "data:image/png;base64," in html and "x&lt;y" in html
    md = render_markdown(page)
    assert "![vram on main](c1-vram-main.png)" in md and "a \\| b" in md
