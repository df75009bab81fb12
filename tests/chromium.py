"""Headless Chromium for the tests that check how an HTML page lays out (the evaluation report, the audit).

A test appends a script to the page that runs after layout, measures what it needs and writes it
as JSON into ``<pre id="layout">``; Chromium's ``--dump-dom`` prints the page with it, and a
screenshot of the page as a reader gets it is kept beside, for a human look.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
# Skipped where Chromium is missing, except under CI=true: there a missing browser fails the test.
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI", "").lower() != "true",
    reason="needs headless Chromium (apt-get install -y chromium)",
)


def lay_out(page: Path, script: str, width: int = 1300) -> dict[str, Any]:
    """What ``script`` measured in ``page`` at ``width`` px; the page's screenshot goes to ``<page>.png``."""
    assert CHROMIUM is not None, "no chromium or chromium-browser on PATH (apt-get install -y chromium)"
    checked = page.with_name(page.stem + ".checked.html")
    checked.write_text(
        page.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8"
    )
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={width},2400"]
    done = subprocess.run(
        [*flags, "--virtual-time-budget=3000", "--dump-dom", checked.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    shot = page.with_suffix(".png")
    subprocess.run(
        [*flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=False
    )
    match = re.search(r'<pre id="layout">(.*?)</pre>', done.stdout, re.DOTALL)
    assert match, f"chromium printed no layout (rc {done.returncode}): {done.stderr[-2000:]}"
    measured: dict[str, Any] = json.loads(html.unescape(match.group(1)))
    return measured
