"""Self-contained HTML rendering of a bench report (schema v1).

One page with inline CSS and plots embedded as base64 PNG data URIs (matplotlib, Agg
backend): no scripts, no links, no fonts, images or other resources fetched from anywhere.
Header, table and notes are the same as in the Markdown report (see `report_md`).
"""

from __future__ import annotations

import base64
import io
from html import escape
from typing import TYPE_CHECKING

from ember.tools.bench.report_md import (
    FPGA_COLUMNS,
    FPGA_NOTE,
    GENERATION_COLUMNS,
    GENERATION_NOTE,
    HOW_TO_READ,
    TABLE_COLUMNS,
    TITLE,
    fmt_change,
    fpga_rows,
    frontier_text,
    generation_rows,
    header_items,
    table_cells,
)
from ember.tools.bench.schema import LayerOps, Report, Row
from ember.tools.table import human_count

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_LAYERS = 15

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em;
       color: #1a1a1a; background: #fff; max-width: 1600px; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .8em; }
th, td { border: 1px solid #ccc; padding: .25em .4em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } td.num { text-align: right; }
td.nw { white-space: nowrap; } td.text { overflow-wrap: anywhere; min-width: 4em; }
tr.regression td { background: #fdecec; }
td.bad { color: #b00020; font-weight: 700; } td.ok { color: #1b7f3b; }
ul.regressions li { color: #b00020; }
img.plot { max-width: 100%; height: auto; border: 1px solid #eee; }
"""

_NUMERIC = frozenset(range(3, 12))  # columns right-aligned: timings, counts, sizes, error
_SPEEDUP = TABLE_COLUMNS.index("speedup (IQR)")


def _mpl_text(text: str) -> str:
    """Text safe for matplotlib (a `$` would otherwise start mathtext)."""
    return text.replace("$", r"\$")


def _short(text: str, limit: int = 32) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _png(fig: Figure) -> str:
    """The figure as base64 PNG (without the software metadata chunk); closes the figure."""
    import matplotlib.pyplot as plt

    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight",
                    metadata={"Software": None})
    finally:
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _latency_plot(rows: list[Row]) -> str:
    """Median latency bars, candidate next to baseline, with whiskers up to p90."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows) + 2.0), 4.2))
    xs = list(range(len(rows)))
    width = 0.38
    for offset, name, lats in (
        (-width / 2, "candidate", [r.latency for r in rows]),
        (width / 2, "baseline", [r.baseline_latency for r in rows]),
    ):
        medians = [lat.median_ms for lat in lats]
        up = [max(0.0, lat.p90_ms - lat.median_ms) for lat in lats]
        ax.bar([x + offset for x in xs], medians, width, label=name,
               yerr=[[0.0] * len(lats), up], capsize=4)
    ax.set_xticks(xs, [_mpl_text(_short(r.label)) for r in rows], rotation=20, ha="right")
    medians = [x.median_ms for r in rows for x in (r.latency, r.baseline_latency)]
    log = bool(medians) and min(medians) > 0 and max(medians) / min(medians) > 50
    if log:  # rows spanning orders of magnitude: keep the fast ones visible
        ax.set_yscale("log")
    ax.set_ylabel("latency, ms" + (" (log)" if log else "") + " (bar: median, whisker: p90)")
    ax.set_title("Latency per artifact")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _scatter_points(rows: list[Row]) -> tuple[list[tuple[str, float, float]], str, bool]:
    """(label, speedup, y) points, the y-axis label, and whether y is on a log scale."""
    if any(r.quality is not None for r in rows):
        pts = [(r.label, r.speedup, r.quality.drop) for r in rows if r.quality is not None]
        return pts, "quality drop vs baseline (<= 0: no worse)", False
    pts = [(r.label, r.speedup, r.error.max_abs) for r in rows]
    positive = [y for _, _, y in pts if y > 0]
    floor = min(positive) / 10 if positive else 1e-12
    ylabel = "error vs baseline, max abs (log)"
    if len(positive) < len(pts):
        ylabel += f"; exact matches drawn at {floor:.1e}"
    return [(lbl, x, y if y > 0 else floor) for lbl, x, y in pts], ylabel, True


def _quality_guides(ax: Axes, report: Report) -> None:
    """Lines at zero drop and, when set, at the allowed quality drop."""
    ax.axhline(0.0, color="0.6", linestyle=":", linewidth=1)
    if report.settings.max_quality_drop is not None:
        ax.axhline(report.settings.max_quality_drop, color="C3", linestyle="--",
                   linewidth=1, label="max quality drop")


def _scatter_plot(report: Report) -> str:
    """Speedup against quality drop (or output error), frontier connected and labelled."""
    import matplotlib.pyplot as plt

    pts, ylabel, log = _scatter_points(report.rows)
    on_frontier = set(report.frontier)
    fig, ax = plt.subplots(figsize=(8.0, 5.0))
    others = [p for p in pts if p[0] not in on_frontier]
    front = sorted((p for p in pts if p[0] in on_frontier), key=lambda p: p[1])
    if others:
        ax.scatter([p[1] for p in others], [p[2] for p in others], color="0.55",
                   label="not on frontier")
    if front:
        ax.plot([p[1] for p in front], [p[2] for p in front], "-o", color="C3",
                label="frontier")
    for label, x, y in pts:
        bold = label in on_frontier
        ax.annotate(_mpl_text(_short(label)), (x, y), xytext=(5, 5),
                    textcoords="offset points", fontsize=9 if bold else 8,
                    fontweight="bold" if bold else "normal", color="k" if bold else "0.4")
    ax.axvline(1.0, color="0.6", linestyle=":", linewidth=1)
    if log:
        ax.set_yscale("log")
    else:
        _quality_guides(ax, report)
    ax.set_xlabel("speedup vs baseline (x, higher is better)")
    ax.set_ylabel(ylabel)
    missing = len(report.rows) - len(pts)
    note = f"\n({missing} row(s) without a quality measurement not shown)" if missing else ""
    ax.set_title("Speed vs quality (right and down is better)" + note)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def _changed_rows(rows: list[Row]) -> list[Row]:
    return [r for r in rows if any(lo.macs != lo.baseline_macs for lo in r.layers)]


def _layer_axes(ax: Axes, row: Row) -> None:
    """Baseline vs candidate MACs of the row's largest layers (by baseline MACs)."""
    from matplotlib.ticker import FuncFormatter

    top: list[LayerOps] = sorted(row.layers, key=lambda lo: lo.baseline_macs,
                                 reverse=True)[:MAX_LAYERS][::-1]
    ys = list(range(len(top)))
    height = 0.4
    ax.barh([y + height / 2 for y in ys], [lo.baseline_macs for lo in top], height,
            label="baseline", color="C0")
    ax.barh([y - height / 2 for y in ys], [lo.macs for lo in top], height,
            label="candidate", color="C2")
    ax.set_yticks(ys, [_mpl_text(_short(f"{lo.name} ({lo.op})", 40)) for lo in top],
                  fontsize=8)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: human_count(float(v))))
    old, new = row.baseline_ops.macs, row.ops.macs
    ax.set_title(_mpl_text(f"{_short(row.label, 48)}: MACs {human_count(old)} -> "
                           f"{human_count(new)} ({fmt_change(new, old)})"), fontsize=10)
    ax.set_xlabel("MACs")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)


def _layers_plot(rows: list[Row]) -> str | None:
    """Per-layer MAC reduction for every row whose layers differ; None when none does."""
    import matplotlib.pyplot as plt

    changed = _changed_rows(rows)
    if not changed:
        return None
    heights = [1.2 + 0.32 * min(len(r.layers), MAX_LAYERS) for r in changed]
    fig, axes = plt.subplots(len(changed), 1, figsize=(9.0, sum(heights) + 0.5),
                             squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, row in zip(axes[:, 0], changed, strict=True):
        _layer_axes(ax, row)
    fig.tight_layout()
    return _png(fig)


def _img(data: str, alt: str) -> str:
    return f'<img class="plot" alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _cell_class(index: int, row: Row) -> str:
    """CSS class of a table cell: numbers right-aligned, the status red or green."""
    if index == len(TABLE_COLUMNS) - 1:
        return "bad" if row.regressions else "ok"
    if index == _SPEEDUP:
        return "num nw"
    return "num" if index in _NUMERIC else "text"


def _table(report: Report) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in TABLE_COLUMNS)
    body = []
    for row in report.rows:
        tds = "".join(f'<td class="{_cell_class(i, row)}">{escape(c)}</td>'
                      for i, c in enumerate(table_cells(row)))
        body.append(f'<tr class="{"regression" if row.regressions else "ok"}">{tds}</tr>')
    if not report.rows:
        body.append(f'<tr><td colspan="{len(TABLE_COLUMNS)}">no rows</td></tr>')
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _fpga_table(report: Report) -> list[str]:
    return _extra_table("FPGA resource model", FPGA_NOTE, FPGA_COLUMNS, fpga_rows(report))


def _generation_table(report: Report) -> list[str]:
    return _extra_table("Generation", GENERATION_NOTE, GENERATION_COLUMNS,
                        generation_rows(report))


def _extra_table(title: str, note: str, columns: list[str], rows: list[list[str]]
                 ) -> list[str]:
    if not rows:
        return []
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"
                   for cells in rows)
    return [f"<h2>{escape(title)}</h2>", f"<p>{escape(note)}</p>",
            f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>"]


def _summary(report: Report) -> list[str]:
    """Header, table, notes, regressions and frontier, as HTML fragments."""
    meta = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in header_items(report))
    regs = "".join(f"<li>{escape(r)}</li>" for r in report.regressions)
    return [
        f"<h1>{escape(TITLE)}</h1>", f'<dl class="meta">{meta}</dl>',
        "<h2>Results</h2>", _table(report), *_fpga_table(report), *_generation_table(report),
        "<h2>How to read this</h2>", f"<p>{escape(HOW_TO_READ)}</p>",
        "<h2>Regressions</h2>",
        f'<ul class="regressions">{regs}</ul>' if regs else "<p>none</p>",
        "<p><strong>Frontier</strong> (speed vs quality, Pareto-optimal): "
        f"{escape(frontier_text(report))}</p>",
    ]


def _plots(report: Report) -> list[str]:
    """The three plot sections (or a sentence where a plot has nothing to show)."""
    if not report.rows:
        return ["<h2>Plots</h2>", "<p>No rows, nothing to plot.</p>"]
    layers = _layers_plot(report.rows)
    return [
        "<h2>Latency</h2>", _img(_latency_plot(report.rows), "latency per artifact"),
        "<h2>Speed vs quality</h2>", _img(_scatter_plot(report), "speed vs quality"),
        "<h2>Per-layer operation reduction</h2>",
        _img(layers, "per-layer MACs, baseline vs candidate") if layers else
        "<p>No artifact changes the per-layer operation counts of its baseline.</p>",
    ]


def render_html(report: Report) -> str:
    """The whole report as one self-contained HTML page (inline CSS, embedded PNG plots)."""
    import matplotlib

    matplotlib.use("Agg")
    parts: list[str] = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(TITLE)} {escape(report.created)}</title>",
        f"<style>{_CSS}</style>", "</head>", "<body>",
    ]
    parts += _summary(report) + _plots(report)
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"
