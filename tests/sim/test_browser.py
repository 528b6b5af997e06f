"""Every kind of generated page, opened from file:// in headless Chromium (Playwright
drives Debian's).

Run report of the twin (hitrate and timing) and of the engine (``flexkv-run replay``),
comparison, hit-rate curve, sweep dashboard and calibration's validation page: each must
load plotly.js from the ``plotly.min.js`` of its own folder (``window.Plotly`` defined),
draw its plotly figures (an ``svg.main-svg`` inside every ``.js-plotly-plot``), log no
console or page error and request nothing but the page and that file. A page copied
without its folder says so. A screenshot of each is saved under the test's ``tmp_path``.
Never downloads a browser: ``executable_path`` is the system Chromium.
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
ENGINE_PAGES = ("report_engine", "validation")  # made with flexkv-run (torch)
TINY = (
    "model_config.num_layers=1",
    "model_config.num_kv_heads=1",
    "model_config.head_size=16",
    "model_config.dtype=float16",
)


def invoke(*args: str, cli=main) -> None:
    result = CliRunner().invoke(cli, list(args))
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
def engine_pages(tmp_path_factory) -> dict[str, Path]:
    """The engine's run report, and the validation page of the twin against that run."""
    pytest.importorskip("torch", reason="flexkv-run replay needs torch")
    from flexkv_engine.cli import main as run_main

    root = tmp_path_factory.mktemp("engine-pages")
    trace = root / "chat.jsonl"
    write_trace(trace, *generate("multiturn", requests=120, seed=5, rate=4.0))
    sets = [a for o in (*TINY, "cache_config.num_cpu_blocks=200") for a in ("--set", o)]
    run = root / "run"
    invoke(
        "replay",
        str(trace),
        "--device",
        "cpu",
        "--speed",
        "max",
        "--out",
        str(run),
        *sets,
        cli=run_main,
    )
    profile = root / "fitted.yaml"
    invoke("calibrate", str(run), "-o", str(profile))
    invoke(
        "validate", "--measured", str(run), "--profile", str(profile), "--out", str(root / "val")
    )
    return {"report_engine": run / "report.html", "validation": root / "val" / "validation.html"}


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


def open_page(browser, path: Path, shot: Path) -> dict:
    """Open ``path`` from file://, serving only files of its own folder; what it did."""
    url = path.resolve().as_uri()
    folder = path.resolve().parent.as_uri() + "/"
    page = browser.new_page()
    seen: dict = {"errors": [], "requests": [], "elsewhere": []}

    def route(r) -> None:
        seen["requests"].append(r.request.url)
        if r.request.url.startswith(folder):
            r.continue_()
        else:
            seen["elsewhere"].append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    try:
        page.goto(url, wait_until="load")
        seen["plotly"] = page.evaluate("() => typeof window.Plotly")
        seen["no_plotly_note"] = page.locator("#no-plotly:not([hidden])").count()
        if seen["plotly"] == "object":
            page.wait_for_function(
                "() => { const p = document.querySelectorAll('.js-plotly-plot');"
                " return p.length > 0 && [...p].every(e => e.querySelector('svg.main-svg')); }",
                timeout=30_000,
            )
        seen["divs"] = page.locator(".plotly-graph-div").count()
        seen["plots"] = page.locator(".js-plotly-plot").count()
        seen["drawn"] = page.locator(
            ".js-plotly-plot:has(.plot-container):has(svg.main-svg)"
        ).count()
        page.screenshot(path=str(shot), full_page=True)
    finally:
        page.close()
    seen["url"], seen["bundle"] = url, folder + "plotly.min.js"
    return seen


def assert_rendered(seen: dict, shot: Path) -> None:
    assert seen["plotly"] == "object"  # plotly.js loaded from the page's folder
    assert seen["no_plotly_note"] == 0
    assert seen["plots"] >= 1 and seen["drawn"] == seen["plots"] == seen["divs"]
    assert seen["errors"] == []
    assert seen["elsewhere"] == []
    assert seen["requests"] == [seen["url"], seen["bundle"]]
    assert shot.stat().st_size > 10_000


@pytest.mark.parametrize("kind", PAGES)
def test_page_renders_offline_without_errors(pages, browser, kind: str, tmp_path) -> None:
    shot = tmp_path / f"{kind}.png"
    assert_rendered(open_page(browser, pages[kind], shot), shot)


@pytest.mark.parametrize("kind", ENGINE_PAGES)
def test_engine_pages_render_offline_without_errors(
    engine_pages, browser, kind: str, tmp_path
) -> None:
    shot = tmp_path / f"{kind}.png"
    assert_rendered(open_page(browser, engine_pages[kind], shot), shot)


def test_reports_draw_the_capacity_curve_and_say_why(pages) -> None:
    for kind in ("report_hitrate", "report_timing"):
        text = pages[kind].read_text(encoding="utf-8")
        assert "<h2>Why this hit rate</h2>" in text
        assert "CPU tier hit rate by capacity" in text and "configured: 400 blocks" in text
        assert "the bound is " in text and "doctor: " in text


def test_a_page_copied_without_its_folder_says_so(pages, browser, tmp_path) -> None:
    alone = tmp_path / "alone" / "report.html"
    alone.parent.mkdir()
    shutil.copyfile(pages["report_hitrate"], alone)
    seen = open_page(browser, alone, tmp_path / "alone.png")
    assert seen["plotly"] == "undefined" and seen["no_plotly_note"] == 1
    assert seen["elsewhere"] == []
