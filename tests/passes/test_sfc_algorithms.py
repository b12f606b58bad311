"""The fast-correlation matrices: exact on integer data, ternary transforms, the published
multiplication counts, the design's worked example, and Winograd's published A^T."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from ember.sfc_algorithms import ALGORITHMS, FORMS, algorithm, solve_output

SYMBOLIC_COUNTS = {"sfc6_6x6": 88, "sfc6_7x7": 132, "sfc4_4x4": 46}
INTEGRATED_COUNTS = {"sfc6_6x6": 100, "sfc6_7x7": 144, "sfc4_4x4": 49, "winograd_2x2": 16,
                     "winograd_4x4": 36}
CASES = [(n, f) for n in ALGORITHMS for f in FORMS if f == "integrated" or n in SYMBOLIC_COUNTS]


def _exact(array) -> np.ndarray:
    return np.array([[Fraction(int(v)) for v in row] for row in array], dtype=object)


def _fast_tile(alg, tile: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Equation (1) of sfc_algorithms.py, in exact arithmetic."""
    v = alg.slot_map.dot((alg.S.dot(tile).dot(alg.S.T)).reshape(-1))
    u = alg.slot_map.dot((alg.Sg.dot(weights).dot(alg.Sg.T)).reshape(-1))
    r = alg.S.shape[0]
    z = alg.unslot_map.dot(u * v).reshape(r, r)
    return alg.Lam.dot(z).dot(alg.Lam.T)


def _direct_tile(tile: np.ndarray, weights: np.ndarray, m: int) -> np.ndarray:
    return np.array([[sum(weights[a, b] * tile[i + a, j + b] for a in range(3) for b in range(3))
                      for j in range(m)] for i in range(m)], dtype=object)


@pytest.mark.parametrize(("name", "form"), CASES)
def test_exact_on_integer_tiles(name, form):
    alg = algorithm(name, form)
    rng = np.random.default_rng(hash((name, form)) % 2**32)
    for _ in range(3):
        tile = _exact(rng.integers(-128, 128, (alg.tile, alg.tile)))
        weights = _exact(rng.integers(-128, 128, (3, 3)))
        assert (_fast_tile(alg, tile, weights) == _direct_tile(tile, weights, alg.m)).all()


@pytest.mark.parametrize(("name", "form"), CASES)
def test_multiplication_counts(name, form):
    counts = SYMBOLIC_COUNTS if form == "symbolic" else INTEGRATED_COUNTS
    assert algorithm(name, form).slots == counts[name]


@pytest.mark.parametrize(("name", "form"), [c for c in CASES if c[0].startswith("sfc")])
def test_sfc_transforms_are_ternary_and_bounded(name, form):
    alg = algorithm(name, form)
    for matrix in (alg.S, alg.Sg, alg.slot_map):
        assert set(matrix.reshape(-1)) <= {-1, 0, 1}
    denominator = 4 if name.startswith("sfc4") else 6
    assert all(v.denominator == 1 for v in (alg.Lam * denominator).reshape(-1))
    # the whole input map (2-D transform then slot map) from the L*L pixels to the P slots
    pixels = alg.slot_map.dot(np.kron(alg.S, alg.S))
    assert set(pixels.reshape(-1)) <= {-1, 0, 1}
    growth = max(sum(abs(v) for v in row) for row in pixels)
    assert growth <= (16 if name.startswith("sfc4") else 36)


def test_sfc6_output_transform_matches_the_design():
    expected = [[1, 1, 2, -1, 1, -1, 6, 0], [1, 2, 1, 2, 1, 1, 0, 0],
                [1, 1, -1, -1, -2, -1, 0, 0], [1, -1, -2, -1, 1, 1, 0, 0],
                [1, -2, -1, 2, 1, -1, 0, 0], [1, -1, 1, -1, -2, 1, 0, 6]]
    assert ((algorithm("sfc6_6x6").Lam * 6) == _exact(expected)).all()


def test_winograd_output_transforms_match_the_published_ones():
    f2 = [[1, 1, 1, 0], [0, 1, -1, -1]]
    f4 = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
    assert (algorithm("winograd_2x2", "integrated").Lam == _exact(f2)).all()
    assert (algorithm("winograd_4x4", "integrated").Lam == _exact(f4)).all()


def test_worked_example_1d():
    """Design section 3.9: t = [3, -1, 4, 1, -5, 9, 2, -6], w = [2, 7, 1] -> [3, 27, 10, -24,
    55, 26], through the 1-D symbolic SFC-6(6,3) (the 2-D algorithm's row transforms)."""
    from ember.sfc_algorithms import _SYMBOLIC, _one_d_products

    alg = algorithm("sfc6_6x6")
    structure = _SYMBOLIC["sfc6_6x6"][3]
    t = _exact([[3, -1, 4, 1, -5, 9, 2, -6]])[0]
    w = _exact([[2, 7, 1]])[0]
    assert list(alg.S.dot(t)) == [10, -1, 6, -9, -10, 8, 1, -5]
    assert list(alg.Sg.dot(w)) == [10, 1, 8, -5, 6, -4, 2, 1]
    z = _one_d_products(structure, alg.S.dot(t), alg.Sg.dot(w))
    assert list(z) == [100, -49, 46, 105, -64, -32, 2, -5]
    assert list(alg.Lam.dot(z)) == [3, 27, 10, -24, 55, 26]


def test_solve_rejects_a_transform_pair_that_cannot_correlate():
    s = _exact(np.eye(4, dtype=int))
    with pytest.raises(ValueError):
        solve_output(2, lambda t, w: s.dot(t) * s[:, :3].dot(w))
