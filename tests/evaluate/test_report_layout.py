"""The HTML evaluation report fits the page: long model ids and unbroken answers wrap, tables never
push the page wider than the window. Checked in a real browser (headless Chromium), which lays the
page out and measures it; a screenshot is kept beside the page for a human look."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from ragtune.evaluate.metrics import compute_metrics
from ragtune.evaluate.report import render_report
from tests.conftest import unavailable
from tests.evaluate.helpers import ITEMS
from tests.evaluate.test_metrics_report import SETTINGS, WEAK, row

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
WIDTH = 1300
LONG_MODEL = "hf:" + "HuggingFaceTB/SmolLM2-135M-Instruct+adapter:" + "0123456789abcdef" * 6
LONG_NAME = "contender-with-a-rather-long-name-" + "x" * 40

# Runs after layout and writes what it measured into the DOM, which --dump-dom then prints.
MEASURE = """<script>
window.addEventListener('load', () => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('table')]
    .map((t, i) => ({i, right: t.getBoundingClientRect().right, parent: t.parentElement.getBoundingClientRect().right}))
    .filter(t => t.right > t.parent + 1);
  const out = document.createElement('pre');
  out.id = 'layout';
  out.textContent = JSON.stringify({width, page: document.documentElement.scrollWidth, wide});
  document.body.appendChild(out);
});
</script>"""


def _layout(html: str, folder: Path) -> dict[str, object]:
    assert CHROMIUM is not None
    page = folder / "report.html"
    page.write_text(html.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={WIDTH},2400"]
    done = subprocess.run(
        [*flags, "--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    subprocess.run(
        [*flags, f"--screenshot={folder / 'report.png'}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=False,
    )
    match = re.search(r'<pre id="layout">(.*?)</pre>', done.stdout)
    assert match, f"chromium printed no layout (rc {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&quot;", '"'))


def test_report_tables_fit_the_page_width_with_long_model_ids(tmp_path: Path) -> None:
    if CHROMIUM is None:
        unavailable("needs headless Chromium (apt-get install -y chromium)")
    rows = [
        row(0, "base", 4, model=LONG_MODEL),
        row(1, "base", 6, model=LONG_MODEL),
        row(0, "tuned", 9, model=LONG_MODEL + "-tuned", answer="unbroken" * 40),
        row(1, "tuned", 8, model=LONG_MODEL + "-tuned"),
        row(0, LONG_NAME, 7, model="openai:" + "very-long-endpoint-model-name-" * 4),
        row(1, LONG_NAME, 5, model="openai:" + "very-long-endpoint-model-name-" * 4),
    ]
    metrics = compute_metrics(
        rows, [], contender_names=["base", "tuned", LONG_NAME], judge=WEAK, settings=SETTINGS
    )
    layout = _layout(render_report(metrics, ITEMS, rows), tmp_path)
    assert (tmp_path / "report.png").stat().st_size > 0
    assert layout["wide"] == [], layout
    assert layout["page"] <= layout["width"], layout
