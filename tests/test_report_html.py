"""`report --format html` is one self-contained file that a real browser renders.

A real phase rolls back on a trigger; its HTML report is opened in headless Chromium
(Debian's `chromium`, which .ci/run installs). The DOM after load says the title and
that every chart image decoded to a non-empty bitmap; a screenshot shows the page is
not blank. Under CI=true a missing chromium fails instead of skipping.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator.reporting.page import Chart, Page, Table, render_html, render_markdown
from tests.netns import require_or_skip
from tests.test_live_view_pty import live_project

# Reads, after the page's load event, the size each <img> decoded to.
PROBE = """<script>
window.addEventListener('load', () => {
  document.body.dataset.images = JSON.stringify(
    [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]));
});
</script>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    require_or_skip("chromium is not installed (apt-get install chromium)", found is not None)
    assert found is not None
    return found


def browse(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", "--virtual-time-budget=5000", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_html_report_renders_in_a_real_browser(tmp_path: Path) -> None:
    browser = chromium()
    proj = live_project(tmp_path)
    run = proj.migrate("--output", "json", "phase", "1", "--host", "all", timeout=180)
    assert run.returncode == 1, run.stderr
    run_id = json.loads(run.stdout)["run_id"]
    res = proj.migrate("report", run_id, "--format", "html")
    assert res.returncode == 0, res.stderr
    report = proj.root / ".migrate" / "runs" / run_id / "report" / "report.html"
    html = report.read_text()
    # self-contained: every image is inline, nothing is fetched from beside the file
    assert "src='data:image/png;base64," in html
    assert not re.search(r"""src=['"](?!data:)""", html)
    assert "<link" not in html and "http://" not in html and "https://" not in html
    lone = tmp_path / "elsewhere" / "report.html"  # the report alone, without its PNGs
    lone.parent.mkdir()
    lone.write_text(html.replace("</body>", PROBE + "</body>"))

    dom = browse(browser, "--dump-dom", lone.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert f"<title>Run {run_id}: phase 1 on main, pc2</title>" in dom.stdout
    found = re.search(r'data-images="([^"]*)"', dom.stdout)
    assert found, dom.stdout[:2000]
    images = json.loads(found.group(1).replace("&quot;", '"'))
    assert len(images) == 4  # two triggers x two hosts
    for complete, width, height in images:
        assert complete and width >= 600 and height >= 300, images

    shot = tmp_path / "report.png"
    out = browse(browser, f"--screenshot={shot}", "--window-size=1200,1600", report.as_uri())
    assert out.returncode == 0 and shot.is_file(), out.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1200, 1600)
        colours = img.convert("RGB").getcolors(maxcolors=1_000_000) or []
    assert len(colours) > 200  # text, badge and charts, not an empty page
    background = max(colours)[0] / (1200 * 1600)
    assert background < 0.9


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
