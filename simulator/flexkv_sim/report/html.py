"""A page and its folder: inline CSS, plotly.js once per folder, no network needed.

Figures are rendered with ``include_plotlyjs=False``; the page loads the library from
``plotly.min.js`` beside it (:data:`PLOTLY_FILE`), which :meth:`Page.write` puts into the
page's folder once, from the installed plotly's own bundle (about 4.6 MB). Every page
written into one folder (a run's ``report.html``, a sweep's ``dashboard.html``, a
comparison, a curve, a validation page) shares that one copy, and the folder opens
offline as it is: the folder, not the single page, is the unit to copy or send.
"""

from __future__ import annotations

import functools
import html
import math
import re
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

# No logo link, no "edit in chart studio": nothing on the page points outside it.
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
PLOTLY_FILE = "plotly.min.js"
_NO_PLOTLY = (
    f"The figures need {PLOTLY_FILE} from this page's folder: copy or send the whole "
    "folder, not the page alone."
)


@functools.cache
def plotly_bundle() -> bytes:
    """The installed plotly's minified plotly.js."""
    return get_plotlyjs().encode("utf-8")


def write_plotly_bundle(folder: Path) -> Path:
    """``folder/plotly.min.js``, written only when missing or different."""
    path = Path(folder) / PLOTLY_FILE
    bundle = plotly_bundle()
    if not (path.is_file() and path.stat().st_size == len(bundle) and path.read_bytes() == bundle):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{PLOTLY_FILE}.tmp")
        tmp.write_bytes(bundle)
        tmp.replace(path)  # a page never sees half a bundle
    return path


def plotly_head() -> str:
    """The ``<head>`` lines that load plotly.js from the page's folder."""
    return (
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
        f'<script src="{PLOTLY_FILE}" charset="utf-8"></script>'
    )


def plotly_missing_note() -> str:
    """A note shown only when plotly.js did not load (the page was copied alone)."""
    return (
        f'<p id="no-plotly" class="note" hidden>{html.escape(_NO_PLOTLY)}</p>\n'
        "<script>if (!window.Plotly) "
        "{ document.getElementById('no-plotly').hidden = false; }</script>"
    )


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial,
       sans-serif; margin: 0; color: #1f2933; background: #f7f8fa; }
header { background: #1f2933; color: #f7f8fa; padding: 16px 28px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; }
header .sub { color: #c3cad3; font-size: 13px; }
nav { padding: 8px 28px; background: #e9ecf1; font-size: 13px; }
nav a { margin-right: 14px; color: #1f4e8c; text-decoration: none; }
main { padding: 8px 28px 40px 28px; max-width: 1280px; }
section { background: #fff; border: 1px solid #dde2e8; border-radius: 6px;
          margin: 16px 0; padding: 12px 18px; }
h2 { font-size: 18px; margin: 4px 0 10px 0; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 10px 0; }
th, td { border-bottom: 1px solid #e4e7eb; padding: 4px 10px; text-align: right; }
th { background: #f0f2f5; }
th:first-child, td:first-child { text-align: left; }
td.text { text-align: left; font-family: ui-monospace, Menlo, Consolas, monospace; }
p.note { color: #6b4f00; background: #fff8e1; border-left: 4px solid #f0b400;
         padding: 6px 10px; font-size: 13px; }
pre { font-size: 12px; background: #f5f6f8; padding: 8px; overflow-x: auto; }
.fig { margin: 6px 0 14px 0; }
ul.why { font-size: 14px; margin: 6px 0 10px 0; padding-left: 22px; }
ul.why li { margin: 3px 0; }
"""


class Page:
    """Sections of titled HTML parts, rendered into one page."""

    def __init__(self, title: str, subtitle: str = "") -> None:
        self.title = title
        self.subtitle = subtitle
        self._sections: list[tuple[str, str, str]] = []  # (anchor, title, body)
        self._figures = 0  # figure divs get stable ids: fig-1, fig-2, ...

    def section(self, title: str, *parts: str) -> None:
        anchor = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
        self._sections.append((anchor, title, "\n".join(p for p in parts if p)))

    def figure(self, fig: go.Figure) -> str:
        """The figure as an HTML fragment (the page's head loads the library)."""
        self._figures += 1
        body = fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            config=PLOTLY_CONFIG,
            div_id=f"fig-{self._figures}",
        )
        return f'<div class="fig">{body}</div>'

    def render(self) -> str:
        nav = " ".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in self._sections)
        sections = "\n".join(
            f'<section id="{a}"><h2>{html.escape(t)}</h2>\n{body}\n</section>'
            for a, t, body in self._sections
        )
        library = plotly_head() if self._figures else ""
        missing = plotly_missing_note() if self._figures else ""
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(self.title)}</title>\n<style>{_CSS}</style>\n{library}\n"
            "</head>\n<body>\n"
            f"<header><h1>{html.escape(self.title)}</h1>"
            f'<div class="sub">{html.escape(self.subtitle)}</div></header>\n'
            f"<nav>{nav}</nav>\n<main>\n{missing}\n{sections}\n</main>\n</body>\n</html>\n"
        )

    def write(self, out: Path) -> Path:
        """Write the page to ``out`` and, when it has figures, ``plotly.min.js`` beside it."""
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if self._figures:
            write_plotly_bundle(out.parent)
        out.write_text(self.render(), encoding="utf-8")
        return out


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], code_cols: Collection[int] = ()
) -> str:
    """An HTML table, cells escaped; columns in ``code_cols`` are left-aligned monospace."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="text"' if i in code_cols else ""
            cells.append(f"<td{cls}>{html.escape(str(cell))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def bullets(items: Iterable[str]) -> str:
    """A list of lines, escaped."""
    body = "".join(f"<li>{html.escape(str(i))}</li>" for i in items)
    return f'<ul class="why">{body}</ul>'


def details(summary: str, text: str) -> str:
    """A collapsed block of preformatted text (the resolved config)."""
    return (
        f"<details><summary>{html.escape(summary)}</summary>"
        f"<pre>{html.escape(text)}</pre></details>"
    )


# ---- formatting -------------------------------------------------------------------------
MISSING = "n/a"


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt_pct(value: Any, digits: int = 1) -> str:
    """A fraction as a percentage: 0.6321 -> '63.2%'."""
    v = _finite(value)
    return MISSING if v is None else f"{v * 100:.{digits}f}%"


def fmt_int(value: Any) -> str:
    v = _finite(value)
    return MISSING if v is None else f"{round(v):,}"


def fmt_num(value: Any, digits: int = 3) -> str:
    v = _finite(value)
    return MISSING if v is None else f"{v:.{digits}g}"


def fmt_seconds(value: Any) -> str:
    """A duration with a readable unit: 0.00123 -> '1.23 ms'."""
    v = _finite(value)
    if v is None:
        return MISSING
    a = abs(v)
    if a == 0:
        return "0 s"
    if a < 1e-3:
        return f"{v * 1e6:.3g} µs"
    if a < 1:
        return f"{v * 1e3:.3g} ms"
    return f"{v:.3g} s"


BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def byte_unit(largest: float) -> tuple[str, float]:
    """The binary unit that suits ``largest`` bytes and its size: (name, bytes per unit)."""
    size = 1.0
    for unit in BYTE_UNITS:
        if abs(largest) < size * 1024 or unit == BYTE_UNITS[-1]:
            return unit, size
        size *= 1024
    raise AssertionError("unreachable")


def fmt_bytes(value: Any) -> str:
    v = _finite(value)
    if v is None:
        return MISSING
    unit, size = byte_unit(v)
    return f"{v:,.0f} B" if unit == "B" else f"{v / size:.3g} {unit}"
