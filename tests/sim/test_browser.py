"""Every kind of generated page, opened in headless Chromium (Playwright drives Debian's).

Run report (hitrate and timing), comparison, hit-rate curve and sweep dashboard: each
must draw its plotly figures (an ``svg.main-svg`` inside every ``.js-plotly-plot``), log
no console error and request nothing but the file itself. A screenshot of each is saved
under the test's ``tmp_path``. Never downloads a browser: ``executable_path`` is the
system Chromium.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from flexkv_sim.cli import main
from flexkv_sim.workloads import generate, write_trace

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = ("report_hitrate", "report_timing", "comparison", "curve", "sweep_dashboard")


def invoke(*args: str) -> None:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """One page of each kind, made through the command line."""
    root = tmp_path_factory.mktemp("pages")
    trace = root / "chat.jsonl"
    write_trace(trace, *generate("multiturn", requests=300, seed=4, rate=10.0))
    invoke(
        "replay", str(trace), "--set", "cache_config.num_cpu_blocks=400", "--out", str(root / "hit")
    )
    invoke(
        "replay",
        str(trace),
        "--set",
        "cache_config.num_cpu_blocks=400",
        "--mode",
        "timing",
        "--hardware",
        "ci-cpu",
        "--out",
        str(root / "timed"),
    )
    invoke(
        "compare",
        str(root / "hit"),
        str(root / "timed"),
        "--labels",
        "hit,timed",
        "-o",
        str(root / "comparison.html"),
    )
    invoke("curve", str(trace), "--out", str(root / "curve"))
    scenario = root / "scenario.yaml"
    scenario.write_text(f"schema_version: 1\ntrace: {trace}\nmode: hitrate\n")
    invoke(
        "sweep",
        str(scenario),
        "--grid",
        "cache_config.num_cpu_blocks=100,400",
        "--grid",
        "eviction_policy=lru,fifo",
        "--out",
        str(root / "sweep"),
    )
    return {
        "report_hitrate": root / "hit" / "report.html",
        "report_timing": root / "timed" / "report.html",
        "comparison": root / "comparison.html",
        "curve": root / "curve" / "curve.html",
        "sweep_dashboard": root / "sweep" / "dashboard.html",
    }


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")  # a new, empty user-data-dir
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()


@pytest.mark.parametrize("kind", PAGES)
def test_page_renders_offline_without_errors(pages, browser, kind: str, tmp_path) -> None:
    url = pages[kind].resolve().as_uri()
    page = browser.new_page()
    errors: list[str] = []
    requests: list[str] = []
    elsewhere: list[str] = []

    def route(r) -> None:
        requests.append(r.request.url)
        if r.request.url == url:
            r.continue_()
        else:
            elsewhere.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(url, wait_until="load")
        page.wait_for_function(
            "() => { const p = document.querySelectorAll('.js-plotly-plot');"
            " return p.length > 0 && [...p].every(e => e.querySelector('svg.main-svg')); }",
            timeout=30_000,
        )
        plots = page.locator(".js-plotly-plot").count()
        drawn = page.locator(".js-plotly-plot:has(svg.main-svg)").count()
        page.screenshot(path=str(tmp_path / f"{kind}.png"), full_page=True)
    finally:
        page.close()
    assert plots >= 1 and drawn == plots
    assert errors == []
    assert elsewhere == [] and requests == [url]
    assert (tmp_path / f"{kind}.png").stat().st_size > 10_000
