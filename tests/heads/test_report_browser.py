"""The HTML report as a person sees it: rendered by headless Chromium (Debian's ``chromium``,
installed by scripts/setup.sh), its visible text and images read back from the page."""

import html as html_lib
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                "(bash scripts/setup.sh installs it; apt-get install chromium)")

# added to a copy of the page: after load, what a reader sees, written into the DOM for --dump-dom
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const links = [...document.querySelectorAll("a[href^='#']")].map(a => a.getAttribute('href').slice(1));
  const probe = {
    text: document.body.innerText,
    images: imgs.map(i => ({src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth,
                            shown: i.getBoundingClientRect().width})),
    dangling: links.filter(id => !document.getElementById(id)),
    best: document.querySelectorAll('td.best').length,
    ci: document.querySelectorAll('td .ci').length,
  };
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(probe);
  document.body.appendChild(pre);
});
</script>"""


def chromium(*args, cwd):
    # a profile of its own per call; --no-sandbox because CI and this machine run tests as root
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--user-data-dir={cwd / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=cwd)


def test_report_in_headless_chromium(report_runs, tmp_path):
    from PIL import Image

    d, summary = report_runs
    page = tmp_path / "report"
    shutil.copytree(d / "report", page)
    html = (page / "report.html").read_text()
    (page / "probed.html").write_text(html.replace("</body>", PROBE + "</body>"))
    res = chromium("--virtual-time-budget=10000", "--dump-dom", (page / "probed.html").as_uri(), cwd=tmp_path)
    m = re.search(r'<pre id="probe">(.*?)</pre>', res.stdout, re.S)
    assert m, f"no probe in the rendered page (chromium rc {res.returncode}): {res.stderr[-2000:]}"
    probe = json.loads(html_lib.unescape(m.group(1)))
    text = probe["text"]

    # every plot loads and is shown
    assert sorted(i["src"] for i in probe["images"]) == sorted(summary["plots"])
    assert all(i["complete"] and i["width"] > 100 and i["shown"] > 100 for i in probe["images"]), probe["images"]
    # what the reader is told: arrows, marks and their legend, intervals, units, citations, provenance
    for seen in ("kl ↓", "top3_accuracy ↑", "map ↑", "★", "n train/val/test (videos)",
                 "n train/val/test (seconds)", "n counts segments", "Source: Mazeika et al. 2022",
                 "Source: Sun et al. 2021", "Provenance", summary["provenance"]["git commit"],
                 summary["provenance"]["config hash"], "bootstrap 95% interval", "Contents"):
        assert seen in text, seen
    vce = next(r for r in summary["runs"] if r["task"] == "vce" and r["head"] == "linear")
    lo, hi = vce["bootstrap"]["intervals"]["kl"]
    assert f"[{lo:.3f}, {hi:.3f}]" in text
    assert probe["ci"] == sum(len(r["bootstrap"]["intervals"]) for r in summary["runs"])
    assert probe["best"] >= 10 and probe["dangling"] == []
    assert ("⚑" in text) == ("⚑" in (d / "report" / "report.md").read_text())

    # and it paints: a full-page screenshot that is not blank, with the plots' colours in it
    shot = tmp_path / "shot.png"
    res = chromium("--window-size=1200,4000", f"--screenshot={shot}", (page / "report.html").as_uri(), cwd=tmp_path)
    assert shot.exists(), res.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    ink = (img.sum(2) < 600).mean()
    colours = len(np.unique(img.reshape(-1, 3)[::7], axis=0))
    assert ink > 0.02 and colours > 200, (ink, colours)
