"""Plain aligned text tables for terminal output."""

from __future__ import annotations

import math
from collections.abc import Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]],
                 right: Sequence[bool] | None = None) -> str:
    """Columns padded to their widest cell; `right[i]` right-aligns column i (numbers)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    right = right or [False] * len(headers)

    def line(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w)
                         for c, w, r in zip(row, widths, right, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def sig3(x: float) -> str:
    """`x` with 3 significant digits, without exponent unless it is tiny."""
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    rounded = float(f"{x:.3g}")
    magnitude = math.floor(math.log10(abs(rounded)))
    if magnitude < -3:
        return f"{x:.2e}"
    return f"{rounded:.{max(0, 2 - magnitude)}f}"


def scaled(x: float, step: float, units: tuple[str, ...], sep: str) -> str:
    i = 0
    while abs(float(f"{x:.3g}")) >= step and i < len(units) - 1:
        x /= step
        i += 1
    return f"{sig3(x)}{sep}{units[i]}"


def human_count(n: float) -> str:
    """A count with k/M/G suffixes: 950, 1.23k, 45.6M."""
    if isinstance(n, int) and abs(n) < 1000:
        return str(n)
    return scaled(float(n), 1000.0, ("", "k", "M", "G", "T"), "")


def human_bytes(n: float) -> str:
    """A size in B, KiB, MiB or GiB."""
    if abs(n) < 1024:
        return f"{n} B"
    return scaled(float(n), 1024.0, ("B", "KiB", "MiB", "GiB", "TiB"), " ")
