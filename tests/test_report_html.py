"""The HTML report: self-contained in the file, and displayed in a real headless browser.

The browser test opens a copy of the report with a probe script appended (the report itself
has no script) that writes, for every img, svg and table, its rendered size and image state
into the DOM; ``chromium --dump-dom`` returns that DOM. It needs Debian's ``chromium`` (the
test set-up installs it) and is skipped, saying so, only where no chromium can be found.
"""

import base64
import html
import json
import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

import synthloop
from synthloop import compare, htmlreport
from synthloop.cli import app
from synthloop.sweep import sweep

PROBE = """<script>
window.addEventListener("load", () => {
  const out = [];
  for (const el of document.querySelectorAll("img, svg, table")) {
    const box = el.getBoundingClientRect(), style = getComputedStyle(el);
    out.push({tag: el.tagName.toLowerCase(), width: box.width, height: box.height,
              shown: style.display !== "none" && style.visibility !== "hidden",
              complete: el.complete === undefined ? null : el.complete,
              naturalWidth: el.naturalWidth === undefined ? null : el.naturalWidth,
              naturalHeight: el.naturalHeight === undefined ? null : el.naturalHeight});
  }
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The HTML report of a 2-cell Gaussian sweep (several metrics) and a regression run (theory)."""
    root = tmp_path_factory.mktemp("html")
    sweep("gaussian-workflows", ["task.T=20,40"], out=root / "sweep", overrides=["generations=3"], replicates=4)
    synthloop.run("regression-workflows", overrides=["generations=3", "task.d=3", "task.T=20"], replicates=4, out=root / "reg")
    out = root / "report.html"
    result = CliRunner().invoke(app, ["report", str(root / "sweep"), str(root / "reg"), "--html", str(out), "--figure", str(root / "r.png")])
    assert result.exit_code == 0, result.output
    comparison = compare.load_runs([root / "sweep", root / "reg"])
    return out, comparison


def test_report_holds_every_figure_and_table_in_the_file(report):
    path, comparison = report
    text = path.read_text()
    metrics = list(dict.fromkeys(comparison.metrics["metric"]))
    images = re.findall(r'<img src="([^"]*)"', text)
    assert len(images) == len(metrics) >= 7  # gaussian's six metrics and regression's excess risk
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # Nothing is fetched from elsewhere: no scripts, style sheets, fonts or remote URLs.
    assert not re.search(r"<script|<link|<iframe|@import|url\(|src=\"(?!data:)|href=", text, flags=re.IGNORECASE)
    for heading in ("Runs", "Figures", "Theory vs measured", "Configuration", "Shared by every run", "Differing between runs"):
        assert f">{heading}</h" in text
    assert text.count("<table>") >= 5
    # Per-run summary: every run and workflow, its status and its final value.
    for run, workflow in comparison.runs[["run", "workflow"]].itertuples(index=False):
        assert f"<td>{html.escape(run)}</td><td>{html.escape(workflow)}</td>" in text
    assert text.count('<span class="finished">finished</span>') == len(comparison.runs)
    reg = comparison.runs.query("run == 'reg' and workflow == 'replace'").iloc[0]
    assert f"{reg['final_mean']:.4g} ± {reg['final_ci95']:.2g}" in text and f"{reg['final_theory']:.4g}" in text


def test_render_is_a_function_of_the_comparison(report):
    _, comparison = report
    one = htmlreport.render(comparison, metrics=["excess_risk"], title="mine")
    assert one.count("<img ") == 1 and "<title>mine</title>" in one
    assert re.sub(r"generated [^.]*UTC", "", one) == re.sub(r"generated [^.]*UTC", "", htmlreport.render(comparison, metrics=["excess_risk"], title="mine"))


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_report_is_displayed_in_a_headless_browser(report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH: the test set-up installs it (apt-get install chromium); cannot render the report")
    path, comparison = report
    page = tmp_path / "probe.html"
    page.write_text(path.read_text().replace("</body>", PROBE + "</body>"))
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--user-data-dir=" + str(tmp_path / "profile"), "--window-size=1280,1024", "--virtual-time-budget=10000",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: anything the page tried to fetch would fail
        "--dump-dom", page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, flags=re.DOTALL)
    assert found, f"chromium exited {done.returncode} without the probe's output; stderr: {done.stderr[-2000:]}"
    elements = json.loads(html.unescape(found.group(1)))
    images = [e for e in elements if e["tag"] == "img"]
    tables = [e for e in elements if e["tag"] == "table"]
    assert len(images) == comparison.metrics["metric"].nunique()
    assert len(tables) == path.read_text().count("<table>")
    for element in elements:
        assert element["shown"] and element["width"] > 50 and element["height"] > 20, element
    for image in images:
        # Decoded and laid out: a broken data: URL has naturalWidth 0.
        assert image["complete"] and image["naturalWidth"] > 300 and image["naturalHeight"] > 200, image
