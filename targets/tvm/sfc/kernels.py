"""TIR kernels (TVMScript, generated) for SFC / Winograd convolutions.

An SFC layer (passes/sfc/conv.py) on the `tvm` target computes

    V[p, t, c]       = slots(S . X_t[c] . S^T)[p]              input transform
    M[p, j, t, v]    = sum_c V[p, t, c] * Up[p, j, c, v]        slot GEMMs
    Y[n, k, h, w]    = (Lam . unslots(M[:, t, k]) . Lam^T)[a, b] + bias[k]   output transform
                       with t = (n, h // m, w // m), a = h % m, b = w % m, k = j * kt + v

either as three kernels (`input_transform_source`, `products_source`,
`output_transform_source`) or as one (`fused_source`) that runs all three per block of tiles.

The transform matrices are constants with entries in {0, +-1} (SFC; Winograd's are small
integers), so the kernels are generated with every coefficient written out: a zero
coefficient emits nothing and +-1 an addition or subtraction, which is the "additions-only"
property of the method made literal. Each statement is vectorized over channels (input
transform) or output channels (output transform); the outer loop runs in parallel over
(tile, channel block) pairs. The intermediate tiles live in small local buffers (L1). The
slot GEMMs use a MICRO_ROWS x kt register micro-kernel.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ember.sfc_algorithms import Algorithm

CHANNEL_BLOCKS = (16, 8, 4, 2, 1)


def channel_block(channels: int, lanes: int) -> int:
    """The widest block (at most one SIMD vector of fp32 lanes) that divides `channels`."""
    return next(b for b in CHANNEL_BLOCKS if b <= lanes and channels % b == 0)


def tiles(out_h: int, out_w: int, m: int) -> tuple[int, int]:
    return -(-out_h // m), -(-out_w // m)


def input_transform_source(alg: Algorithm, shape: tuple[int, int, int, int],
                           pads: tuple[int, int], lanes: int) -> str:
    """TVMScript of `sfc_input(X: (N, C, H, W), V: (P, rows, C))`: rows = the N*th*tw tiles
    rounded up to MICRO_ROWS, the extra rows zero."""
    n, c, h, w = shape
    th, tw = tiles(h + 2 * pads[0] - 2, w + 2 * pads[1] - 2, alg.m)
    cb = channel_block(c, lanes)
    count = n * th * tw
    rows = padded_rows(count)
    signature = (f'sfc_input(X: T.Buffer(({n}, {c}, {h}, {w}), "float32"), '
                 f'V: T.Buffer(({alg.slots}, {rows}, {c}), "float32"))')
    prelude = [f"t = tc // {c // cb}", f"c0 = tc % {c // cb} * {cb}"]
    lines = [f"T.reads(X[0:{n}, 0:{c}, 0:{h}, 0:{w}])",
             f"T.writes(V[0:{alg.slots}, 0:{rows}, 0:{c}])",
             *_input_buffers(alg, cb),
             f"if t < {count}:",
             *_indent(_input_tile(alg, shape, pads, cb, "V[{p}, t, c0 + ci]"), 4),
             "else:",
             f"    for p, ci in T.grid({alg.slots}, {cb}):",
             "        V[p, t, c0 + ci] = T.float32(0)"]
    return _function(signature, f"tc in T.parallel({rows * (c // cb)})", prelude, lines)


def products_source(slots: int, rows: int, channels: int, outputs: int, kt: int) -> str:
    """TVMScript of `sfc_products(V: (P, rows, C), Up: (P, K/kt, C, kt), M: (P, K/kt, rows,
    kt))`: M[p, j, t, v] = sum_c V[p, t, c] * Up[p, j, c, v], the fused kernel's micro-kernel
    on every (slot, column tile, group of MICRO_ROWS rows) in parallel."""
    columns, groups = outputs // kt, rows // MICRO_ROWS
    signature = (f'sfc_products(V: T.Buffer(({slots}, {rows}, {channels}), "float32"), '
                 f'Up: T.Buffer(({slots}, {columns}, {channels}, {kt}), "float32"), '
                 f'M: T.Buffer(({slots}, {columns}, {rows}, {kt}), "float32"))')
    prelude = [f"p = i // {columns * groups}", f"kb = i // {groups} % {columns}",
               f"tg = i % {groups}"]
    lines = [f"T.reads(V[0:{slots}, 0:{rows}, 0:{channels}], "
             f"Up[0:{slots}, 0:{columns}, 0:{channels}, 0:{kt}])",
             f"T.writes(M[0:{slots}, 0:{columns}, 0:{rows}, 0:{kt}])",
             f'acc = T.alloc_buffer(({MICRO_ROWS}, {kt}), "float32", scope="local")',
             *_micro_kernel(channels, kt, "V[p, tg * {rows} + r, c]",
                            "M[p, kb, tg * {rows} + r, v]")]
    return _function(signature, f"i in T.parallel({slots * columns * groups})", prelude, lines)


def padded_rows(count: int) -> int:
    return -(-count // MICRO_ROWS) * MICRO_ROWS


def output_transform_source(alg: Algorithm, batch: int, channels: int, out_hw: tuple[int, int],
                            kt: int, bias: bool, lanes: int) -> str:
    """TVMScript of `sfc_output(M: (P, K/kt, rows, kt)[, B: (K,)], Y: (N, K, Ho, Wo))`, rows
    as in `input_transform_source`."""
    k, (out_h, out_w) = channels, out_hw
    th, tw = tiles(out_h, out_w, alg.m)
    cb = channel_block(kt, lanes)
    count = batch * th * tw
    rows = padded_rows(count)
    bias_arg = f'B: T.Buffer(({k},), "float32"), ' if bias else ""
    signature = (f'sfc_output(M: T.Buffer(({alg.slots}, {k // kt}, {rows}, {kt}), "float32"), '
                 f'{bias_arg}Y: T.Buffer(({batch}, {k}, {out_h}, {out_w}), "float32"))')
    prelude = [f"t = tk // {k // cb}", f"k0 = tk % {k // cb} * {cb}"]
    bias_read = f", B[0:{k}]" if bias else ""
    lines = [f"T.reads(M[0:{alg.slots}, 0:{k // kt}, 0:{rows}, 0:{kt}]{bias_read})",
             f"T.writes(Y[0:{batch}, 0:{k}, 0:{out_h}, 0:{out_w}])",
             *_output_buffers(alg, cb),
             *_output_tile(alg, (th, tw), out_hw, cb, f"M[p, k0 // {kt}, t, k0 % {kt} + ci]",
                           bias)]
    return _function(signature, f"tk in T.parallel({count * (k // cb)})", prelude, lines)


def fused_source(alg: Algorithm, shape: tuple[int, int, int, int], channels: int,
                 pads: tuple[int, int], kt: int, bias: bool, lanes: int, block: int,
                 split_columns: bool = False) -> str:
    """TVMScript of `sfc_conv(X: (N, C, H, W), Up: (P, K/kt, C, kt)[, B: (K,)], Y)`: the
    whole layer, one block of `block` tiles per parallel iteration.

    For each block: the input transform of its tiles into Vb (P, block, C); then per column
    tile kb of the packed weights, the slot GEMMs Mb[p] = Vb[p] @ Up[p, kb] (a 4-row x kt
    register micro-kernel) and the output transform of Mb into Y. Vb and Mb are the block's
    own workspaces, sized to stay in the core's L2, so the transform domain never goes to
    memory. With `split_columns`, each (block, column tile) pair is its own parallel
    iteration (the block's input transform is then repeated per column tile): for layers
    with fewer blocks than cores.
    """
    n, c, h, w = shape
    k, p_count = channels, alg.slots
    columns = k // kt
    out_hw = (h + 2 * pads[0] - 2, w + 2 * pads[1] - 2)
    th, tw = tiles(*out_hw, alg.m)
    count = n * th * tw
    cb, kb_lanes = channel_block(c, lanes), channel_block(kt, lanes)
    bias_arg = f'B: T.Buffer(({k},), "float32"), ' if bias else ""
    signature = (f'sfc_conv(X: T.Buffer(({n}, {c}, {h}, {w}), "float32"), '
                 f'Up: T.Buffer(({p_count}, {k // kt}, {c}, {kt}), "float32"), '
                 f'{bias_arg}Y: T.Buffer(({n}, {k}, {out_hw[0]}, {out_hw[1]}), "float32"))')
    bias_read = f", B[0:{k}]" if bias else ""
    lines = [f"T.reads(X[0:{n}, 0:{c}, 0:{h}, 0:{w}], "
             f"Up[0:{p_count}, 0:{k // kt}, 0:{c}, 0:{kt}]{bias_read})",
             f"T.writes(Y[0:{n}, 0:{k}, 0:{out_hw[0]}, 0:{out_hw[1]}])",
             f'vb = T.alloc_buffer(({p_count}, {block}, {c}), "float32")',
             f'mb = T.alloc_buffer(({p_count}, {block}, {kt}), "float32")',
             f'acc = T.alloc_buffer(({MICRO_ROWS}, {kt}), "float32", scope="local")',
             *_input_buffers(alg, cb), *_output_buffers(alg, kb_lanes),
             f"for tt in range({block}):",
             f"    t = tb * {block} + tt",
             f"    if t < {count}:",
             f"        for co in range({c // cb}):",
             f"            c0 = co * {cb}",
             *_indent(_input_tile(alg, shape, pads, cb, "vb[{p}, tt, c0 + ci]"), 12),
             "    else:",
             f"        for p, c in T.grid({p_count}, {c}):",
             "            vb[p, tt, c] = T.float32(0)",
             "for kb in range(kb0, kb0 + 1):" if split_columns else f"for kb in range({columns}):",
             *_indent(_gemm(p_count, c, kt, block), 4),
             f"    for tt in range({block}):",
             f"        t = tb * {block} + tt",
             f"        if t < {count}:",
             f"            for ko in range({kt // kb_lanes}):",
             f"                k0 = kb * {kt} + ko * {kb_lanes}",
             *_indent(_output_tile(alg, (th, tw), out_hw, kb_lanes,
                                   f"mb[p, tt, ko * {kb_lanes} + ci]", bias), 16)]
    blocks = -(-count // block)
    if split_columns:
        return _function(signature, f"tk in T.parallel({blocks * columns})",
                         [f"tb = tk // {columns}", f"kb0 = tk % {columns}"], lines)
    return _function(signature, f"tb in T.parallel({blocks})", [], lines)


MICRO_ROWS = 4  # tiles per GEMM micro-kernel: 4 x kt accumulators (kt <= 4 vectors)


def _gemm(slots: int, channels: int, kt: int, block: int) -> list[str]:
    """mb[p, tt, :] = sum_c vb[p, tt, c] * Up[p, kb, c, :], MICRO_ROWS tiles at a time."""
    return [f"for p, tg in T.grid({slots}, {block // MICRO_ROWS}):",
            *_indent(_micro_kernel(channels, kt, "vb[p, tg * {rows} + r, c]",
                                   "mb[p, tg * {rows} + r, v]"), 4)]


def _micro_kernel(channels: int, kt: int, row: str, store: str) -> list[str]:
    """MICRO_ROWS x kt accumulators (registers): acc[r, :] = sum_c row(r, c) * Up[p, kb, c, :],
    then stored; `row` and `store` are templates in {rows}, r, c and v."""
    rows = MICRO_ROWS
    row, store = row.format(rows=rows), store.format(rows=rows)
    return [f"for r in T.unroll({rows}):",
            f"    for v in T.vectorized({kt}):",
            "        acc[r, v] = T.float32(0)",
            f"for c in range({channels}):",
            f"    for r in T.unroll({rows}):",
            f"        for v in T.vectorized({kt}):",
            f"            acc[r, v] = acc[r, v] + {row} * Up[p, kb, c, v]",
            f"for r in T.unroll({rows}):",
            f"    for v in T.vectorized({kt}):",
            f"        {store} = acc[r, v]"]


def _input_buffers(alg: Algorithm, cb: int) -> list[str]:
    size, r = alg.tile, alg.S.shape[0]
    return [f'xt = T.alloc_buffer(({size}, {size}, {cb}), "float32", scope="local")',
            f'a1 = T.alloc_buffer(({r}, {size}, {cb}), "float32", scope="local")',
            f'z = T.alloc_buffer(({r}, {r}, {cb}), "float32", scope="local")']


def _input_tile(alg: Algorithm, shape: tuple[int, int, int, int], pads: tuple[int, int],
                cb: int, store: str) -> list[str]:
    """Tile `t`, channels c0 .. c0+cb: load (zero outside the image), S . X . S^T, slots."""
    _, _, h, w = shape
    m, size, r, s = alg.m, alg.tile, alg.S.shape[0], alg.S
    th, tw = tiles(h + 2 * pads[0] - 2, w + 2 * pads[1] - 2, m)
    lines = [f"y0 = t // {tw} % {th} * {m} - {pads[0]}",
             f"x0 = t % {tw} * {m} - {pads[1]}",
             f"for i, j in T.grid({size}, {size}):",
             f"    if y0 + i >= 0 and y0 + i < {h} and x0 + j >= 0 and x0 + j < {w}:",
             f"        for ci in T.vectorized({cb}):",
             f"            xt[i, j, ci] = X[t // {th * tw}, c0 + ci, y0 + i, x0 + j]",
             "    else:",
             f"        for ci in T.vectorized({cb}):",
             "            xt[i, j, ci] = T.float32(0)",
             f"for j in range({size}):",
             f"    for ci in T.vectorized({cb}):"]
    lines += [f"        a1[{a}, j, ci] = "
              f"{_combination(s[a], [f'xt[{i}, j, ci]' for i in range(size)])}" for a in range(r)]
    lines += [f"for a in range({r}):", f"    for ci in T.vectorized({cb}):"]
    lines += [f"        z[a, {b}, ci] = "
              f"{_combination(s[b], [f'a1[a, {j}, ci]' for j in range(size)])}" for b in range(r)]
    z_terms = [f"z[{q // r}, {q % r}, ci]" for q in range(r * r)]
    lines += [f"for ci in T.vectorized({cb}):"]
    lines += [f"    {store.format(p=p)} = {_combination(alg.slot_map[p], z_terms)}"
              for p in range(alg.slots)]
    return lines


def _output_buffers(alg: Algorithm, cb: int) -> list[str]:
    m, r = alg.m, alg.S.shape[0]
    return [f'mp = T.alloc_buffer(({alg.slots}, {cb}), "float32", scope="local")',
            f'zq = T.alloc_buffer(({r}, {r}, {cb}), "float32", scope="local")',
            f'o1 = T.alloc_buffer(({m}, {r}, {cb}), "float32", scope="local")']


def _output_tile(alg: Algorithm, grid: tuple[int, int], out_hw: tuple[int, int], cb: int,
                 load: str, bias: bool) -> list[str]:
    """Tile `t`, output channels k0 .. k0+cb: unslots, Lam . Z . Lam^T (+ bias), store the
    part inside the output."""
    m, r = alg.m, alg.S.shape[0]
    (th, tw), (out_h, out_w) = grid, out_hw
    lines = [f"y0 = t // {tw} % {th} * {m}", f"x0 = t % {tw} * {m}",
             f"for p in range({alg.slots}):", f"    for ci in T.vectorized({cb}):",
             f"        mp[p, ci] = {load}", f"for ci in T.vectorized({cb}):"]
    m_terms = [f"mp[{p}, ci]" for p in range(alg.slots)]
    lines += [f"    zq[{q // r}, {q % r}, ci] = {_combination(alg.unslot_map[q], m_terms)}"
              for q in range(r * r)]
    lines += [f"for v in range({r}):", f"    for ci in T.vectorized({cb}):"]
    lines += [f"        o1[{a}, v, ci] = "
              f"{_combination(alg.Lam[a], [f'zq[{u}, v, ci]' for u in range(r)])}"
              for a in range(m)]
    add_bias = " + B[k0 + ci]" if bias else ""
    lines += [f"for a in range({m}):", f"    if y0 + a < {out_h}:"]
    for b in range(m):
        value = _combination(alg.Lam[b], [f"o1[a, {v}, ci]" for v in range(r)])
        lines += [f"        if x0 + {b} < {out_w}:",
                  f"            for ci in T.vectorized({cb}):",
                  f"                Y[t // {th * tw}, k0 + ci, y0 + a, x0 + {b}] = "
                  f"{value}{add_bias}"]
    return lines


def _indent(lines: list[str], spaces: int) -> list[str]:
    return [" " * spaces + line for line in lines]


def _function(signature: str, parallel_loop: str, prelude: list[str], body: list[str]) -> str:
    """A PrimFunc whose body runs once per parallel iteration inside its own block, so the
    buffers it allocates are private to the iteration; the prelude's index bindings come
    before that block."""
    head = ["@T.prim_func(s_tir=True)", f"def {signature}:",
            '    T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})',
            '    with T.sblock("root"):', f"        for {parallel_loop}:",
            *[f"            {line}" for line in prelude], '            with T.sblock("tile"):']
    return "\n".join(head + _indent(body, 16)) + "\n"


def _combination(coefficients: np.ndarray, terms: list[str]) -> str:
    """sum_i coefficients[i] * terms[i] as TVMScript, skipping zeros and writing +-1 as +-."""
    parts = []
    for coefficient, term in zip(coefficients, terms, strict=True):
        value = Fraction(coefficient)
        if value == 0:
            continue
        sign = "-" if value < 0 else "+"
        factor = "" if abs(value) == 1 else f"T.float32({float(abs(value))!r}) * "
        parts.append(f"{sign} {factor}{term}")
    if not parts:
        return "T.float32(0)"
    text = " ".join(parts)
    return text[2:] if text.startswith("+ ") else f"T.float32(0) {text}"


def parse(source: str):
    """A PrimFunc from generated TVMScript."""
    import tvm
    from tvm.script import tirx

    return tvm.script.from_source(source, extra_vars={"T": tirx})
