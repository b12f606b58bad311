"""Markdown rendering of a bench report (schema v1), for a terminal or a pull request.

The number formatting, the header items and the table cells defined here are shared with
`report_html`, so both reports show the same values in the same words.
"""

from __future__ import annotations

from ember.tools.bench.schema import FpgaEstimate, GenerationTiming, Report, Row
from ember.tools.table import human_bytes, human_count, scaled, sig3

TITLE = "ember bench report"

TABLE_COLUMNS: tuple[str, ...] = (
    "label", "target", "passes", "median ms", "p90 ms", "baseline median ms", "speedup (IQR)",
    "throughput", "size (vs base)", "MACs (vs base)", "energy est. (vs base)", "err max abs",
    "quality (vs base)", "status",
)

HOW_TO_READ = (
    "Speedup is the median of pairwise baseline/candidate time ratios from interleaved runs "
    "(> 1 means the candidate is faster); the IQR in brackets is the 25th-75th percentile "
    "of those ratios. Latency columns are medians and 90th percentiles in milliseconds. "
    "Energy is an estimate from op counts and the 45 nm per-op energy table, not a "
    "measurement. Error is the largest absolute difference from the baseline's outputs. "
    "Timings are comparable only within one report (same machine, same run)."
)


def fmt_energy(uj: float) -> str:
    """An energy given in microjoules, in µJ, mJ or J."""
    return scaled(uj, 1000.0, ("µJ", "mJ", "J"), " ")


def fmt_change(new: float, old: float) -> str:
    """Relative change from `old` to `new` as a signed percentage."""
    if old == 0:
        return "+0.0%" if new == 0 else "new"
    return f"{(new / old - 1.0) * 100.0:+.1f}%"


def fmt_speedup(row: Row) -> str:
    """Speedup with its interquartile range, e.g. `1.52x (1.48-1.55)`."""
    low, high = row.speedup_iqr
    return f"{sig3(row.speedup)}x ({sig3(low)}-{sig3(high)})"


def fmt_quality(row: Row) -> str:
    """`metric value vs baseline_value`, or n/a without a quality measurement."""
    q = row.quality
    if q is None:
        return "n/a"
    return f"{q.metric} {sig3(q.value)} vs {sig3(q.baseline_value)}"


def row_status(row: Row) -> str:
    """`REGRESSION: reasons` for a flagged row, `ok` otherwise."""
    return "REGRESSION: " + "; ".join(row.regressions) if row.regressions else "ok"


def table_cells(row: Row) -> list[str]:
    """The table cells of one row, in the order of TABLE_COLUMNS (plain, unescaped text)."""
    ops, base = row.ops, row.baseline_ops
    return [
        row.label,
        row.target,
        ", ".join(row.passes) or "none",
        sig3(row.latency.median_ms),
        sig3(row.latency.p90_ms),
        sig3(row.baseline_latency.median_ms),
        fmt_speedup(row),
        f"{human_count(row.throughput)} {row.throughput_unit}",
        f"{human_bytes(row.size_bytes)} ({fmt_change(row.size_bytes, row.baseline_size_bytes)})",
        f"{human_count(ops.macs)} ({fmt_change(ops.macs, base.macs)})",
        f"{fmt_energy(ops.energy_uj)} ({fmt_change(ops.energy_uj, base.energy_uj)})",
        sig3(row.error.max_abs),
        fmt_quality(row),
        row_status(row),
    ]


def _fmt_opt(value: float | None, unit: str = "") -> str:
    return "off" if value is None else f"{value:g}{unit}"


def header_items(report: Report) -> list[tuple[str, str]]:
    """(name, value) pairs describing the machine, date, version and settings."""
    m, s = report.machine, report.settings
    threads = str(m.threads) if m.threads else "engine default"
    tools = ", ".join(f"{k} {v or 'not installed'}" for k, v in sorted(report.tools.items()))
    settings = (
        f"warmup {s.warmup}, repeat {'adaptive' if s.repeat is None else s.repeat}, "
        f"budget {s.budget_s:g} s, data {s.data or 'none'}, "
        f"max quality drop {_fmt_opt(s.max_quality_drop)}, "
        f"fail under speedup {_fmt_opt(s.fail_under_speedup, 'x')}"
    )
    return [
        ("Machine", f"{m.cpu} ({m.cores} cores, threads: {threads}; {m.system} {m.machine})"),
        ("Date", report.created),
        ("ember", report.ember_version),
        ("Settings", settings),
        ("Tools", tools or "none recorded"),
    ]


def frontier_text(report: Report) -> str:
    """The frontier labels, comma separated, or `none`."""
    return ", ".join(report.frontier) or "none"


def _md_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _md_table(report: Report) -> list[str]:
    lines = [
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|",
    ]
    for row in report.rows:
        lines.append("| " + " | ".join(_md_cell(c) for c in table_cells(row)) + " |")
    if not report.rows:
        lines.append("| " + " | ".join(["(no rows)"] + [""] * (len(TABLE_COLUMNS) - 1)) + " |")
    return lines


FPGA_COLUMNS = ["label", "device", "est. latency us (vs base)", "est. speedup", "interval cycles",
                "DSP (vs base)", "LUT (vs base)", "BRAM36", "URAM"]
FPGA_NOTE = ("fpga rows: the latency columns above are the measured C simulation on this "
             "machine; these are the resource model's estimates at the device clock, not "
             "synthesis results (fpga/resources.json in each artifact).")


def fpga_rows(report: Report) -> list[list[str]]:
    """One row of resource-model figures per fpga artifact (empty when there is none)."""
    return [_fpga_cells(row.label, row.fpga) for row in report.rows if row.fpga is not None]


def _fpga_cells(label: str, f: FpgaEstimate) -> list[str]:
    return [label, f"{f.device} @ {f.clock_mhz:g} MHz",
            f"{f.latency_us:.1f} ({f.baseline_latency_us:.1f})", f"{f.speedup:.2f}x",
            str(f.interval_cycles), f"{f.dsp} ({f.baseline_dsp})",
            f"{f.lut} ({f.baseline_lut})", str(f.bram36), str(f.uram)]


GENERATION_COLUMNS = ["label", "prompt tokens", "time to first token ms (vs base)",
                      "decode tokens/s (vs base)", "decode speedup", "peak RSS (vs base)",
                      "greedy tokens equal to base"]
GENERATION_NOTE = ("generation rows: the stored prompt's prefill (time to first token) and "
                   "greedy one-token decode steps, interleaved with the baseline, medians of "
                   "the rounds; peak RSS is a process that loads the artifact and generates "
                   "once.")


def generation_rows(report: Report) -> list[list[str]]:
    """One row of generation figures per generation artifact (empty when there is none)."""
    return [_generation_cells(row.label, row.generation) for row in report.rows
            if row.generation is not None]


def _generation_cells(label: str, g: GenerationTiming) -> list[str]:
    return [label, str(g.prompt_tokens), f"{g.ttft_ms:.1f} ({g.baseline_ttft_ms:.1f})",
            f"{g.decode_tokens_per_s:.1f} ({g.baseline_decode_tokens_per_s:.1f})",
            f"{g.decode_tokens_per_s / g.baseline_decode_tokens_per_s:.2f}x",
            f"{human_bytes(g.peak_rss_bytes)} ({human_bytes(g.baseline_peak_rss_bytes)})",
            f"{g.greedy_tokens_equal} of {g.new_tokens} ({g.greedy_agreement:.0%} of positions)"]


def _md_section(title: str, note: str, columns: list[str], rows: list[list[str]]
                ) -> list[str]:
    """A titled table of per-artifact figures, or nothing without rows."""
    if not rows:
        return []
    return ["", f"## {title}", "", note, "", "| " + " | ".join(columns) + " |",
            "|" + "---|" * len(columns),
            *["| " + " | ".join(_md_cell(c) for c in cells) + " |" for cells in rows]]


def render_markdown(report: Report) -> str:
    """The whole report as Markdown: header, results table, notes, regressions, frontier."""
    lines = [f"# {TITLE}", ""]
    lines += [f"- **{name}:** {_md_cell(value)}" for name, value in header_items(report)]
    lines += ["", "## Results", ""] + _md_table(report)
    lines += _md_section("FPGA resource model", FPGA_NOTE, FPGA_COLUMNS, fpga_rows(report))
    lines += _md_section("Generation", GENERATION_NOTE, GENERATION_COLUMNS,
                         generation_rows(report))
    lines += ["", "## How to read this", "", HOW_TO_READ, "", "## Regressions", ""]
    lines += [f"- {_md_cell(r)}" for r in report.regressions] or ["none"]
    lines += ["", f"**Frontier** (speed vs quality, Pareto-optimal): {frontier_text(report)}"]
    return "\n".join(lines) + "\n"
