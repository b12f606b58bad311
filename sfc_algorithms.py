"""Fast 3x3 correlation algorithms: SFC (symbolic Fourier) and Winograd, as exact matrices.

Every algorithm computes one m x m output tile from an L x L input tile (L = m + 2) as

    Y = Lam . unslots( slots(S T S^T) (.) slots(Sg W Sg^T) ) . Lam^T          (1)

with `(.)` the P slot-wise products, which summed over input channels become P GEMMs.

- Integrated forms (SFC and Winograd): S = B^T, Sg = G, Lam = A^T and the slot maps are the
  identity on the R x R transform domain (P = R^2).
- Symbolic SFC forms: S, Sg give the symbolic DFT's components (real ones: X0, X3 and the
  wrap corrections; complex ones: pairs (a0, a1) of a0 + a1 s in Z[s] or Z[j]); `slots`
  expands each 2-D block into the fewest products: 1 per real x real entry, 3 per
  real x complex pair (Karatsuba), 6 per complex x complex block (CRT into two ring
  products, each by Karatsuba), so P = R^2 + 6 R Cc + 6 Cc^2 (88 for SFC-6(6x6)).

Input and filter transforms are typed in from the design (ternary for SFC); the output
transform is *derived*: `solve_output` finds the unique Lam with Lam . z(t, w) equal to the
direct correlation for all t, w, in exact rational arithmetic. `tests/passes/test_sfc_*`
check every algorithm exactly on integer data.

The filter side is computed once per layer, in float64, by `transformed_weights`:
U = slots(Sg W Sg^T), the weights every engine of an SFC layer multiplies in the transform
domain (the pass's SFCConv2d, the tvm kernels, the gpu plan, the fpga golden model).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import numpy as np
import torch

KERNEL = 3


@dataclass(frozen=True)
class Algorithm:
    name: str
    m: int  # output tile
    S: np.ndarray  # (R, L) input transform rows, exact (object array of Fractions)
    Sg: np.ndarray  # (R, 3) filter transform rows
    Lam: np.ndarray  # (m, R) output transform (derived)
    slot_map: np.ndarray  # (P, R*R) the 2-D transform domain -> slots, entries in {-1, 0, 1}
    unslot_map: np.ndarray  # (R*R, P) products -> 2-D ring-domain result (exact)
    symbolic: bool

    @property
    def tile(self) -> int:  # L
        return self.m + KERNEL - 1

    @property
    def slots(self) -> int:  # P: multiplications per tile
        return self.slot_map.shape[0]

    def as_float(self, name: str) -> np.ndarray:
        return getattr(self, name).astype(np.float64)


def _frac(rows) -> np.ndarray:
    return np.array([[Fraction(v) for v in row] for row in rows], dtype=object)


# --- 1-D ring structure of the symbolic forms ------------------------------------------

@dataclass(frozen=True)
class Structure:
    real: tuple[int, ...]  # rows of S that are real components
    pairs: tuple[tuple[int, int], ...]  # (a0, a1) rows of complex components
    ring: str  # "eisenstein" (s^2 = s - 1) or "gaussian" (j^2 = -1)


def _ring_product(ring: str, a: tuple, b: tuple) -> tuple:
    """(a0 + a1 s)(b0 + b1 s) by Karatsuba: m1 = a0 b0, m2 = a1 b1, m3 = (a0+a1)(b0+b1)."""
    m1, m2, m3 = a[0] * b[0], a[1] * b[1], (a[0] + a[1]) * (b[0] + b[1])
    return _kara(ring, m1, m2, m3)


def _kara(ring: str, m1, m2, m3) -> tuple:
    if ring == "eisenstein":  # s^2 = s - 1
        return m1 - m2, m3 - m1
    return m1 - m2, m3 - m1 - m2  # j^2 = -1


def _one_d_products(structure: Structure, x: np.ndarray, f: np.ndarray) -> np.ndarray:
    """The 1-D ring-domain result z (one value per row of S) of transformed data x, f."""
    z = np.empty(len(x), dtype=object)
    for r in structure.real:
        z[r] = x[r] * f[r]
    for a0, a1 in structure.pairs:
        z[a0], z[a1] = _ring_product(structure.ring, (x[a0], x[a1]), (f[a0], f[a1]))
    return z


def solve_output(m: int, forward) -> np.ndarray:
    """The (m, R) matrix Lam with Lam . forward(t, w) = correlation(t, w)[0:m] for all t, w.

    `forward(t, w)` is bilinear, so it is determined by its values on basis pairs
    (e_n, e_i); the condition is the linear system sum_q Lam[o, q] z_q(e_n, e_i) =
    [n == o + i] for every (n, i), solved exactly over the rationals.
    """
    length = m + KERNEL - 1
    basis_t, basis_w = np.eye(length, dtype=int), np.eye(KERNEL, dtype=int)
    columns = [forward(_frac([basis_t[n]])[0], _frac([basis_w[i]])[0])
               for n in range(length) for i in range(KERNEL)]
    z = np.array(columns, dtype=object)  # (L*3, R): z[(n, i), q]
    lam = []
    for o in range(m):
        target = [Fraction(int(n == o + i)) for n in range(length) for i in range(KERNEL)]
        lam.append(_solve_exact(z, target))
    return np.array(lam, dtype=object)


def _solve_exact(a: np.ndarray, b: list[Fraction]) -> list[Fraction]:
    """x with a @ x == b (a: rows x cols, consistent, full column rank), by Gauss-Jordan."""
    rows, cols = a.shape
    aug = [list(a[r]) + [b[r]] for r in range(rows)]
    pivots, row = [], 0
    for col in range(cols):
        pivot = next((r for r in range(row, rows) if aug[r][col] != 0), None)
        if pivot is None:
            continue
        aug[row], aug[pivot] = aug[pivot], aug[row]
        aug[row] = [v / aug[row][col] for v in aug[row]]
        for r in range(rows):
            if r != row and aug[r][col] != 0:
                factor = aug[r][col]
                aug[r] = [v - factor * p for v, p in zip(aug[r], aug[row], strict=True)]
        pivots.append(col)
        row += 1
    if any(aug[r][cols] != 0 for r in range(row, rows)):
        raise ValueError("no output transform reproduces the correlation")
    if len(pivots) != cols:
        raise ValueError("the output transform is not unique")
    return [aug[i][cols] for i in range(cols)]


# --- 2-D slot maps ------------------------------------------------------------------------

def _crt_matrix(ring: str) -> np.ndarray:
    """(U0, U1, V0, V1) from (z00, z01, z10, z11): p (x) q -> (p(s) q(s), p(s) q(conj s))."""
    if ring == "eisenstein":  # conj(s) = 1 - s
        rows = [[1, 0, 0, -1], [0, 1, 1, 1], [1, 1, 0, 1], [0, -1, 1, 0]]
    else:  # conj(j) = -j
        rows = [[1, 0, 0, -1], [0, 1, 1, 0], [1, 0, 0, 1], [0, -1, 1, 0]]
    return _frac(rows)


def _inverse(matrix: np.ndarray) -> np.ndarray:
    n = matrix.shape[0]
    identity = np.eye(n, dtype=int)
    columns = [_solve_exact(matrix, [Fraction(int(v)) for v in identity[:, j]]) for j in range(n)]
    return np.array(columns, dtype=object).T


def _symbolic_slots(structure: Structure, z: np.ndarray) -> list:
    """(R, R) transform-domain block -> list of P slot values (signed sums of <= 3 entries)."""
    real, pairs, crt = structure.real, structure.pairs, _crt_matrix(structure.ring)
    out = [z[r, q] for r in real for q in real]
    for r in real:
        for c0, c1 in pairs:
            for u0, u1 in ((z[r, c0], z[r, c1]), (z[c0, r], z[c1, r])):
                out += [u0, u1, u0 + u1]
    for a0, a1 in pairs:
        for b0, b1 in pairs:
            u0, u1, v0, v1 = crt.dot([z[a0, b0], z[a0, b1], z[a1, b0], z[a1, b1]])
            out += [u0, u1, u0 + u1, v0, v1, v0 + v1]
    return out


def _symbolic_unslots(structure: Structure, m: np.ndarray, size: int) -> np.ndarray:
    """P products -> (R, R) ring-domain result: Karatsuba recombination, inverse CRT."""
    real, pairs, ring = structure.real, structure.pairs, structure.ring
    inverse_crt = _inverse(_crt_matrix(ring))
    z = np.zeros((size, size), dtype=object)
    values = iter(m)

    def product() -> tuple:
        return _kara(ring, next(values), next(values), next(values))

    for r in real:
        for q in real:
            z[r, q] = next(values)
    for r in real:
        for c0, c1 in pairs:
            z[r, c0], z[r, c1] = product()
            z[c0, r], z[c1, r] = product()
    for a0, a1 in pairs:
        for b0, b1 in pairs:
            (u0, u1), (v0, v1) = product(), product()
            z[a0, b0], z[a0, b1], z[a1, b0], z[a1, b1] = inverse_crt.dot([u0, u1, v0, v1])
    return z


def _linear_map(function, size_in: int) -> np.ndarray:
    """The matrix of a linear function of a flat vector, from its values on the basis."""
    basis = np.eye(size_in, dtype=int)
    return np.array([list(function(_frac([row])[0])) for row in basis], dtype=object).T


# --- the algorithms -------------------------------------------------------------------------

_B6 = [[0, 1, 1, 1, 1, 1, 1, 0], [0, 1, 1, 0, -1, -1, 0, 0], [0, 0, -1, -1, 0, 1, 1, 0],
       [0, 1, 0, -1, -1, 0, 1, 0], [0, 1, 0, -1, 1, 0, -1, 0], [0, 0, -1, 1, 0, -1, 1, 0],
       [0, 1, -1, 0, 1, -1, 0, 0], [0, 1, -1, 1, -1, 1, -1, 0], [1, 0, 0, 0, 0, 0, -1, 0],
       [0, -1, 0, 0, 0, 0, 0, 1]]
_G6 = [[1, 1, 1], [1, 0, -1], [0, 1, 1], [1, 1, 0], [1, -1, 0], [0, 1, -1], [1, 0, -1],
       [1, -1, 1], [1, 0, 0], [0, 0, 1]]
_B7 = [row + [0] for row in _B6[:8]] + [[1, 0, 0, 0, 0, 0, -1, 0, 0], [0, -1, 0, 0, 0, 0, 0, 1, 0],
                                       [0, -1, 0, 0, 0, 0, 0, 1, 0], [0, 0, -1, 0, 0, 0, 0, 0, 1]]
_G7 = _G6[:8] + [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]]
_B4 = [[0, 1, 1, 1, 1, 0], [0, 1, 0, -1, 0, 0], [0, 0, -1, 0, 1, 0], [0, 1, -1, -1, 1, 0],
       [0, 1, -1, 1, -1, 0], [1, 0, 0, 0, -1, 0], [0, -1, 0, 0, 0, 1]]
_G4 = [[1, 1, 1], [1, 0, -1], [0, 1, 0], [1, 1, -1], [1, -1, 1], [1, 0, 0], [0, 0, 1]]
_KARATSUBA_SUM_ROWS = (3, 6)  # SFC-6 integrated rows a0 + a1 of X1 and X2: not in S

_SYMBOLIC = {  # name: (m, S rows, Sg rows, structure)
    "sfc6_6x6": (6, [_B6[i] for i in (0, 1, 2, 4, 5, 7, 8, 9)],
                 [[1, 1, 1], [1, 0, -1], [0, 1, 1], [1, -1, 0], [0, 1, -1], [1, -1, 1],
                  [1, 0, 0], [0, 0, 1]],
                 Structure((0, 5, 6, 7), ((1, 2), (3, 4)), "eisenstein")),
    "sfc6_7x7": (7, [_B7[i] for i in (0, 1, 2, 4, 5, 7, 8, 9, 10, 11)],
                 [[1, 1, 1], [1, 0, -1], [0, 1, 1], [1, -1, 0], [0, 1, -1], [1, -1, 1],
                  [1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]],
                 Structure((0, 5, 6, 7, 8, 9), ((1, 2), (3, 4)), "eisenstein")),
    "sfc4_4x4": (4, [[0, 1, 1, 1, 1, 0], [0, 1, 0, -1, 0, 0], [0, 0, -1, 0, 1, 0],
                     [0, 1, -1, 1, -1, 0], [1, 0, 0, 0, -1, 0], [0, -1, 0, 0, 0, 1]],
                 [[1, 1, 1], [1, 0, -1], [0, 1, 0], [1, -1, 1], [1, 0, 0], [0, 0, 1]],
                 Structure((0, 3, 4, 5), ((1, 2),), "gaussian")),
}
_H = Fraction(1, 2)
_INTEGRATED = {  # name: (m, B^T rows, G rows)
    "sfc6_6x6": (6, _B6, _G6),
    "sfc6_7x7": (7, _B7, _G7),
    "sfc4_4x4": (4, _B4, _G4),
    "winograd_2x2": (2, [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
                     [[1, 0, 0], [_H, _H, _H], [_H, -_H, _H], [0, 0, 1]]),
    "winograd_4x4": (4, [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
                     [[Fraction(1, 4), 0, 0], [Fraction(-1, 6)] * 3,
                      [Fraction(-1, 6), Fraction(1, 6), Fraction(-1, 6)],
                      [Fraction(1, 24), Fraction(1, 12), Fraction(1, 6)],
                      [Fraction(1, 24), Fraction(-1, 12), Fraction(1, 6)], [0, 0, 1]]),
}
ALGORITHMS = ("sfc6_6x6", "sfc6_7x7", "sfc4_4x4", "winograd_2x2", "winograd_4x4")
FORMS = ("symbolic", "integrated")


@cache
def algorithm(name: str, form: str = "symbolic") -> Algorithm:
    """The exact matrices of `name` in `form` (Winograd has only the integrated form)."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r} (known: {', '.join(ALGORITHMS)})")
    if form == "symbolic" and name in _SYMBOLIC:
        return _symbolic(name)
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r} (known: {', '.join(FORMS)})")
    return _integrated(name)  # Winograd's only form


def _integrated(name: str) -> Algorithm:
    m, b_rows, g_rows = _INTEGRATED[name]
    s, sg = _frac(b_rows), _frac(g_rows)
    lam = solve_output(m, lambda t, w: s.dot(t) * sg.dot(w))
    size = s.shape[0] ** 2
    identity = _frac(np.eye(size, dtype=int))
    return Algorithm(name, m, s, sg, lam, identity, identity, symbolic=False)


def _symbolic(name: str) -> Algorithm:
    m, s_rows, sg_rows, structure = _SYMBOLIC[name]
    s, sg = _frac(s_rows), _frac(sg_rows)
    lam = solve_output(m, lambda t, w: _one_d_products(structure, s.dot(t), sg.dot(w)))
    r = s.shape[0]
    slot_map = _linear_map(lambda z: _symbolic_slots(structure, z.reshape(r, r)), r * r)
    count = slot_map.shape[0]
    unslot_map = _linear_map(lambda p: _symbolic_unslots(structure, p, r).reshape(-1), count)
    return Algorithm(name, m, s, sg, lam, slot_map, unslot_map, symbolic=True)


def transformed_weights(weight: torch.Tensor, alg: Algorithm) -> torch.Tensor:
    """U[p, c, k] (or [p, g, c, k] for groups) = slots(Sg W[k, c] Sg^T)[p], in float64."""
    sg = torch.from_numpy(alg.as_float("Sg"))
    w = weight.detach().to(torch.float64).cpu()
    f = sg @ w @ sg.T  # (K, C/G, R, R)
    slots = f.flatten(2) @ torch.from_numpy(alg.as_float("slot_map")).T  # (K, C/G, P)
    return slots.permute(2, 1, 0).contiguous()  # (P, C/G, K)


def group_weights(u: torch.Tensor, groups: int) -> torch.Tensor:
    """(P, C/G, K) -> (P, G, C/G, K/G): each group's weights against its own outputs
    (unchanged for groups == 1)."""
    if groups == 1:
        return u
    p, cg, k = u.shape
    return u.reshape(p, cg, groups, k // groups).permute(0, 2, 1, 3).contiguous()
