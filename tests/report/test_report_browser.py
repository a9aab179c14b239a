"""Render the report in Debian's headless Chromium: every section there, no broken image, a real screenshot."""
from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumoscan.report.build import SECTION_IDS

CHROMIUM = Path("/usr/bin/chromium")
WIDTH = 1280
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium not installed (run: make browser)")]

# Appended to a copy of the report (the report itself has no scripts): writes what the browser saw into the DOM.
PROBE = """<script>
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const result = {
    images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    sections: Array.from(document.querySelectorAll('section[id]')).map(s => [s.id, !!s.querySelector('h2'), s.offsetHeight]),
    scrollWidth: document.documentElement.scrollWidth,
  };
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = 'PROBE' + JSON.stringify(result) + 'END';
  document.body.appendChild(out);
});
</script>"""


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
               f"--user-data-dir={tmp / 'profile'}", f"--window-size={WIDTH},4000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


def test_report_renders_in_chromium(val_report: Path, tmp_path: Path) -> None:
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(val_report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dumped = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe_page.as_uri())
    match = re.search(r'<pre id="probe">PROBE(.*?)END</pre>', dumped.stdout, re.S)
    assert match, f"chromium printed no probe result: {dumped.stderr[-2000:]}"
    seen = json.loads(html.unescape(match.group(1)))
    assert [s[0] for s in seen["sections"]] == list(SECTION_IDS)
    assert all(has_h2 and height > 50 for _, has_h2, height in seen["sections"])
    assert seen["images"] >= 8 and seen["broken"] == []
    assert seen["scrollWidth"] <= WIDTH, "the page scrolls sideways"

    shot = tmp_path / "report.png"
    result = chromium(tmp_path, f"--screenshot={shot}", val_report.as_uri())
    assert shot.is_file(), result.stderr[-2000:]
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("L"), dtype=np.float32)
    assert pixels.shape[1] == WIDTH and pixels.std() > 20  # drawn content, not a blank page
