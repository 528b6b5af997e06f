"""``flexkv_sim.report.html``: one plotly.min.js per folder, shared by its pages."""

from __future__ import annotations

import re

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from flexkv_sim.report.html import PLOTLY_FILE, Page, write_plotly_bundle


def page_with_figures(title: str, figures: int) -> Page:
    page = Page(title)
    for i in range(figures):
        page.section(f"figure {i}", page.figure(go.Figure(go.Scatter(x=[0, 1], y=[i, 1]))))
    return page


def test_pages_of_one_folder_share_one_bundle(tmp_path) -> None:
    first = page_with_figures("a", 3).write(tmp_path / "a.html")
    bundle = tmp_path / PLOTLY_FILE
    assert bundle.read_text(encoding="utf-8") == get_plotlyjs()
    stamp = bundle.stat().st_mtime_ns
    second = page_with_figures("b", 1).write(tmp_path / "b.html")
    assert bundle.stat().st_mtime_ns == stamp  # written once, not again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html", PLOTLY_FILE]
    for path in (first, second):
        text = path.read_text(encoding="utf-8")
        assert re.findall(r'<script[^>]*src="([^"]*)"', text) == [PLOTLY_FILE]
        assert len(text) < 100_000  # the library is not in the page
        assert 'id="no-plotly"' in text


def test_a_stale_bundle_is_replaced(tmp_path) -> None:
    (tmp_path / PLOTLY_FILE).write_text("/* an older plotly */")
    write_plotly_bundle(tmp_path)
    assert (tmp_path / PLOTLY_FILE).read_text(encoding="utf-8") == get_plotlyjs()
    assert [p.name for p in tmp_path.iterdir()] == [PLOTLY_FILE]  # no temporary file left


def test_a_page_without_figures_needs_no_bundle(tmp_path) -> None:
    page = Page("tables only")
    page.section("s", "<p>text</p>")
    path = page.write(tmp_path / "t.html")
    assert "<script" not in path.read_text(encoding="utf-8")
    assert not (tmp_path / PLOTLY_FILE).exists()
