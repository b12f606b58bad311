"""Constant matrix-vector products as straight-line C++ with shifts and additions only.

A row (c_0, ..., c_n) of small integers applied to named values becomes one expression in
which each |c_j| = sum of powers of two contributes one shifted term per set bit, e.g.
6 x -> ((x << 2) + (x << 1)) and -3 x -> -((x << 1) + x). The same decomposition counts the
additions the resource model charges (terms - 1 per output), so the report and the emitted
code cannot disagree.
"""

from __future__ import annotations

import numpy as np


def _terms(coefficient: int, name: str) -> list[str]:
    bits = [b for b in range(abs(coefficient).bit_length()) if abs(coefficient) >> b & 1]
    return [name if b == 0 else f"({name} << {b})" for b in reversed(bits)]


def row_expression(row: np.ndarray, names: list[str]) -> str:
    """sum_j row[j] * names[j] as adds/subs of shifted names ('0' for an all-zero row)."""
    parts: list[str] = []
    for c, name in zip(row.tolist(), names, strict=True):
        if c == 0:
            continue
        terms = _terms(int(c), name)
        group = terms[0] if len(terms) == 1 else "(" + " + ".join(terms) + ")"
        parts.append(("- " if c < 0 else "+ ") + group)
    if not parts:
        return "0"
    text = " ".join(parts)
    return text[2:] if text.startswith("+ ") else "-" + text[2:]


def row_additions(row: np.ndarray) -> int:
    """Additions/subtractions (shifts are wiring) of one row's expression."""
    terms = sum(bin(abs(int(c))).count("1") for c in row.tolist())
    return max(terms - 1, 0)


def matrix_additions(matrix: np.ndarray) -> int:
    return sum(row_additions(row) for row in matrix)


def assignments(target: str, matrix: np.ndarray, names: list[str], ctype: str) -> list[str]:
    """`ctype target_i = <row i>;` for every row of `matrix`."""
    return [f"{ctype} {target}{i} = {row_expression(row, names)};"
            for i, row in enumerate(matrix)]


def separable(prefix: str, matrix: np.ndarray, source: list[list[str]], ctype: str) -> list[str]:
    """`prefix{i*R+j}` = (M X M^T)[i][j] for the named R' x R' values X, in two stages
    (M X, then (M X) M^T): the form whose additions `separable_additions` counts."""
    rows, cols = matrix.shape
    stage1 = [f"const {ctype} {prefix}_h{i}_{b} = "
              f"{row_expression(matrix[i], [source[a][b] for a in range(cols)])};"
              for i in range(rows) for b in range(cols)]
    stage2 = [f"const {ctype} {prefix}{i * rows + j} = "
              f"{row_expression(matrix[j], [f'{prefix}_h{i}_{b}' for b in range(cols)])};"
              for i in range(rows) for j in range(rows)]
    return stage1 + stage2


def separable_additions(matrix: np.ndarray) -> int:
    rows, cols = matrix.shape
    return (cols + rows) * matrix_additions(matrix)
