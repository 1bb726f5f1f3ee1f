"""report.html in a real headless Chromium: the plotly projection renders offline and hovering shows tokens.

Needs ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (Debian: ``apt-get install chromium chromium-driver``)
and the ``selenium`` package; skipped (only) when the two binaries are missing.  Selenium Manager is never
used: the driver and the browser binary are given explicitly and ``SE_OFFLINE`` is set.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from defemb.analysis.analyze import Analysis, analyze_table
from defemb.analysis.report import write_report_files
from defemb.config import AnalyzeConfig
from defemb.frequency import Ranking

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
N_ROWS = 300
HIDDEN = 16
#: Readable tokens, some of which look like HTML to plotly's pseudo-HTML labels (they must show verbatim).
WORDS = ["hello", "world", "river", "café", "naïve", "42", "1999", "<s>", "<b>bold</b>", "AT&amp;T"]
#: Tokens whose rows are pushed far out (opposite ends of singular vector 1), so each is alone under the mouse.
OUTLIERS = {"<s>": 3.0, "AT&amp;T": -2.0}
BANDS = ("frequent", "medium", "rare")
#: Browser flags: headless, no sandbox (root in containers), and nothing that phones home.
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--window-size=1280,2400",
    # Belt and braces against any network access: a dead proxy and a resolver that resolves nothing.
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
)

# Screen centre of every drawn point, its trace (band) index and its index in that trace's data.
POINTS_JS = """
const out = [];
document.querySelectorAll('#projection .scatterlayer .trace').forEach((trace, t) => {
  trace.querySelectorAll('.points path.point').forEach((el) => {
    const r = el.getBoundingClientRect();
    out.push({trace: t, i: el.__data__.i, x: r.left + r.width / 2, y: r.top + r.height / 2});
  });
});
return out;
"""


def synthetic_report(out_dir: Path) -> tuple[Path, Analysis]:
    """report.html of a random 300 × 16 table whose tokens are tok0.. plus a few readable words."""
    rng = np.random.default_rng(0)
    E = rng.normal(size=(N_ROWS, HIDDEN)).astype(np.float32)
    E[:, 0] += 3.0  # a common direction, as in real (anisotropic) tables
    tokens = [f"tok{i}" for i in range(N_ROWS)]
    word_ids = rng.choice(np.arange(1, N_ROWS), size=len(WORDS), replace=False)
    for i, word in zip(word_ids, WORDS, strict=True):
        tokens[int(i)] = word
        E[i] *= OUTLIERS.get(word, 1.0)
    tokens[0] = "[PAD]"  # a special row: left out of the ranking, so never plotted
    ids = np.arange(1, N_ROWS, dtype=np.int64)
    ranking = Ranking("index", ids, -ids.astype(np.float64))
    config = AnalyzeConfig(model="synthetic", sample=4, k=3, plot_points=20_000)
    result = analyze_table(E, tokens, ranking, config, chosen=[int(word_ids[0])])
    result.summary = {
        "model": "synthetic",
        "architecture": "SyntheticTable",
        "kind": "encoder",
        "tokenizer_kind": "wordpiece",
        "table": "input",
        "shape": list(E.shape),
        "ranking": ranking.method,
        "tying": {"output_tied_to": None},
        **result.summary,
        "config": config.to_dict(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_report_files(result, out_dir)
    return out_dir / "report.html", result


def expected_traces(result: Analysis) -> list[tuple[list[int], list[str]]]:
    """Per band trace, in drawing order: the plotted ids and their tokens (as projection_figure builds them)."""
    point_bands = result.bands[result.plot_ids]
    traces = []
    for band in BANDS:
        ids = [int(i) for i in result.plot_ids[point_bands == band]]
        traces.append((ids, [result.tokens[i] for i in ids]))
    return traces


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.skip(f"headless browser test needs {' and '.join(missing)} (apt-get install chromium chromium-driver)")
    # Not importorskip: where the browser is installed (CI) a missing selenium must fail, not skip.
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download a driver or browser
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        # Refuse every network request at the DevTools level as well (file:// is unaffected).
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["http://*", "https://*", "ws://*", "wss://*"]})
        driver.set_page_load_timeout(15)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def hover_texts(driver) -> list[str]:
    """Text of the hover labels shown now (label text plus the band name in its <extra> box)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#projection .hoverlayer .hovertext')].map(e => e.textContent)"
    )


def locate(points: list[dict], traces: list[tuple[list[int], list[str]]], token: str) -> tuple[dict, int, float]:
    """The drawn point of ``token``, its id, and the screen distance (px) to the nearest other point."""
    (point,) = [p for p in points if traces[p["trace"]][1][p["i"]] == token]
    others = np.array([[p["x"], p["y"]] for p in points if p is not point])
    gap = float(np.sqrt(((others - [point["x"], point["y"]]) ** 2).sum(axis=1)).min())
    return point, traces[point["trace"]][0][point["i"]], gap


def test_report_renders_offline_and_hover_shows_token(tmp_path: Path, browser) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    report, result = synthetic_report(tmp_path / "report")
    traces = expected_traces(result)
    assert sum(len(ids) for ids, _ in traces) == len(result.plot_ids) > 200  # every plotted id is in a band trace

    source = report.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\ssrc\s*=\s*[\"']?(https?:)?//", source, re.IGNORECASE)  # plotly.js inlined

    browser.get(report.as_uri())
    wait = WebDriverWait(browser, 10)
    wait.until(lambda d: "js-plotly-plot" in (d.find_element(By.ID, "projection").get_attribute("class") or ""))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#projection svg.main-svg"))

    # The page loaded nothing but itself: no <script src=http...>, no resource fetched from the network.
    page = browser.page_source
    assert not browser.find_elements(By.CSS_SELECTOR, "script[src^='http'], link[href^='http'], img[src^='http']")
    assert not re.search(r"<script[^>]*\ssrc\s*=\s*[\"']?(https?:)?//", page, re.IGNORECASE)
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(not name.startswith(("http:", "https:", "ws:", "wss:")) for name in resources), resources
    assert browser.execute_script("return typeof Plotly") == "object"

    # The three tables (bands, numeric, neighbours) and the scatter: one drawn path per plotted id.
    assert "synthetic" in browser.title
    assert len(browser.find_elements(By.CSS_SELECTOR, "table")) == 3
    band_cells = [r.text.split()[0] for r in browser.find_elements(By.CSS_SELECTOR, "table:first-of-type tbody tr")]
    assert band_cells == [*BANDS, "all"]
    trace_elements = browser.find_elements(By.CSS_SELECTOR, "#projection .scatterlayer .trace")
    assert len(trace_elements) == len(BANDS)
    drawn = browser.find_elements(By.CSS_SELECTOR, "#projection .scatterlayer .trace .points path")
    assert len(drawn) == len(result.plot_ids)
    for element, (ids, _) in zip(trace_elements, traces, strict=True):
        assert len(element.find_elements(By.CSS_SELECTOR, ".points path")) == len(ids)

    # Hover with the real mouse (W3C pointer actions, dispatched by chromedriver as input events) over
    # points that stand alone on screen: the label shows the token verbatim and its id.
    browser.execute_script("document.getElementById('projection').scrollIntoView({block: 'center'})")
    time.sleep(0.2)
    points = browser.execute_script(POINTS_JS)
    assert len(points) == len(result.plot_ids)
    assert hover_texts(browser) == []
    for token in OUTLIERS:
        point, token_id, gap = locate(points, traces, token)
        assert gap > 8, f"{token!r} is only {gap:.1f} px from another point"
        x, y = round(point["x"]), round(point["y"])
        actions = ActionChains(browser, duration=50)
        actions.w3c_actions.pointer_action.move_to_location(5, 5)  # start away from the plot
        actions.w3c_actions.pointer_action.move_to_location(x - 3, y)
        actions.w3c_actions.pointer_action.move_to_location(x, y)
        actions.perform()
        # The label of that very point (its id), alone, then the token as written in the vocabulary.
        (text,) = wait.until(lambda d, i=token_id: [t for t in hover_texts(d) if re.search(rf"id {i}(?!\d)", t)])
        assert hover_texts(browser) == [text]
        assert token in text, f"hover label of {token!r} (id {token_id}) reads {text!r}"
    browser.save_screenshot(os.path.join(os.environ.get("DEFEMB_SCREENSHOT_DIR", str(tmp_path)), "report.png"))


def test_before_after_page_renders_both_projections_and_marks_replaced_rows(tmp_path: Path, browser) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from defemb.analysis.before_after import compare_tables, html_page

    rng = np.random.default_rng(0)
    before = rng.normal(size=(N_ROWS, HIDDEN)).astype(np.float32)
    before[:, 0] += 3.0
    after = before.copy()
    replaced = np.arange(250, 270)
    after[replaced] = rng.normal(size=(len(replaced), HIDDEN)) * 0.05  # the shrunken clump issue 9 describes
    after[260] = before[:, :].mean(axis=0) * -4.0  # one replaced row far from everything, to hover
    tokens = [f"tok{i}" for i in range(N_ROWS)]
    tokens[260] = "<b>rebuilt</b>"
    bands = {"frequent": np.arange(1, 90), "medium": np.arange(90, 240), "rare": np.arange(240, N_ROWS)}
    result = compare_tables(before, after, tokens, bands, replaced, chosen=[260], shown=4, k=3)
    summary = {"bands": {b: {"isotropy": 0.5, "isoscore": 0.2, "mean_cosine": 0.1} for b in (*bands, "all")},
               "numeric_max_difference": {"mean": 10.0, "median": 3.0}}
    page = tmp_path / "report.html"
    page.write_text(html_page(result, {"before": summary, "after": summary}, "synthetic repair"), encoding="utf-8")

    browser.get(page.as_uri())
    wait = WebDriverWait(browser, 10)
    for which in ("before", "after"):
        wait.until(lambda d, w=which: d.find_elements(By.CSS_SELECTOR, f"#projection-{w} svg.main-svg"))
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(not name.startswith(("http:", "https:", "ws:", "wss:")) for name in resources), resources
    assert len(browser.find_elements(By.CSS_SELECTOR, "table")) == 2  # measures, neighbours before → after
    neighbour_rows = browser.find_elements(By.CSS_SELECTOR, "table:last-of-type tbody tr")
    assert len(neighbour_rows) == 4 and neighbour_rows[0].text.startswith("<b>rebuilt</b>")
    for which in ("before", "after"):
        traces = browser.find_elements(By.CSS_SELECTOR, f"#projection-{which} .scatterlayer .trace")
        assert len(traces) == 4  # three bands of kept rows + the replaced rows
        assert len(traces[3].find_elements(By.CSS_SELECTOR, ".points path")) == len(replaced)
        drawn = browser.find_elements(By.CSS_SELECTOR, f"#projection-{which} .scatterlayer .trace .points path")
        assert len(drawn) == len(result.plot_ids)

    # Hover the far replaced row in the after picture: its label shows the token verbatim.
    browser.execute_script("document.getElementById('projection-after').scrollIntoView({block: 'center'})")
    time.sleep(0.2)
    points = browser.execute_script(POINTS_JS.replace("#projection ", "#projection-after "))
    (point,) = [p for p in points if p["trace"] == 3 and result.plot_ids[np.isin(result.plot_ids, replaced)][p["i"]]
                == 260]
    actions = ActionChains(browser, duration=50)
    actions.w3c_actions.pointer_action.move_to_location(5, 5)
    actions.w3c_actions.pointer_action.move_to_location(round(point["x"]) - 3, round(point["y"]))
    actions.w3c_actions.pointer_action.move_to_location(round(point["x"]), round(point["y"]))
    actions.perform()
    texts = wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#projection-after .hoverlayer .hovertext')].map(e => e.textContent)"))
    assert any("<b>rebuilt</b>" in t and "id 260" in t for t in texts), texts
