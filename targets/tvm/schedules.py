"""ember's zero-tuning CPU schedules for TVM Relax modules (applied after LegalizeOps/FuseTIR).

TVM 0.27 lowers `relax.matmul` and `relax.nn.conv2d` to plain loop nests and schedules
nothing on CPU (DLight's CPU rules cover GEMV and reductions only), so a build runs one
scalar thread. The rules here give every fused TIR function a real schedule:

Contraction (one reduction block: matmul, batched matmul, convolution). With the block's
spatial loops [..., u, v] (v innermost: contiguous in the output and, for ONNX-exported
weights laid out [K, N], in the weight too) and reduction loops R:

    for outer..., u0, v0 in parallel:                      # fused, one task per output tile
        acc[U, V] = 0                                      # "local": promoted to registers
        for r in R:                                        # K (and kh, kw for convs)
            for u1 in unroll(U): for v1 in vectorize(V):   # U x V register micro-kernel
                acc[u1, v1] += A[.., u, r] * B[.., r, v]
        out[u0*U:, v0*V:] = epilogue(acc)                  # bias, residual, activation

V is the widest multiple of the SIMD width (<= 4 vectors) that divides v's extent, U the
largest of (4, 2, 1) that divides u's (more, up to half the vector registers, when V is
one or two vectors: `_row_tile`), so no tile needs a bounds check; u is the innermost
spatial loop the weight operand does not index (`_row_loop`). Producers (reshapes) are
inlined where that is legal; padding is computed per tile into a small local buffer, so the
bounds checks run once per padded element instead of on every load of the micro-kernel;
fused epilogues are inlined into the write-back.

A function with fewer than PARALLEL_MIN_ITERATIONS loop iterations gets the same schedule on
one thread (no parallel loop, and DLight's rules, which parallelize, pass it by): a
thread-pool fork-join costs more than such a kernel, and when another process keeps a
worker's core busy, every parallel region waits a scheduler time slice for it.

Weight-only computations (layout transforms of conv kernels) are lifted out of `main` into
`main_transform_params`, which the runtime runs once when it loads the artifact.

Everything else (elementwise, reductions such as softmax and RMSNorm) gets its root-level
loop nests fused, the outer part parallelized and the innermost contiguous loop vectorized
where its extent allows; chains of elementwise steps are first inlined into one. The
schedules only reorder, tile, inline and annotate loops, so results equal an unscheduled
build up to floating-point summation order (and, with the `fast_math` front pass, exp's
7.7e-8 relative error: targets/tvm/fast_math.py).
"""

from __future__ import annotations

from typing import Any

SCHEDULE_VERSION = "ember-cpu-6"  # recorded in manifests; bump when the rules change
MAX_VECTORS_PER_TILE = 4
ROW_TILES = (4, 2, 1)
# vector registers a micro-kernel's accumulators may take: half the file (AVX-512 has 32,
# AVX2 and SSE 16), the rest holding the weight vectors and the broadcast input
ACCUMULATOR_SHARE = 2
#: a function of fewer loop iterations (summed over its blocks; multiply-adds for a product)
#: runs on one thread: a parallel region costs a fork-join of TVM's thread pool, which is
#: more than such a kernel takes when the cores are free, and a scheduler time slice when a
#: worker's core is busy with another process (see BENCHMARKS.md "Under load")
PARALLEL_MIN_ITERATIONS = 1 << 18


def schedule_rules(vector_bytes: int) -> list[Any]:
    """The DLight rules, in the order they are tried on each TIR function."""
    from tvm.s_tir import dlight

    return [Contraction(vector_bytes), Guarded(LargeOnly(dlight.cpu.GEMV())),
            Guarded(LargeOnly(RowsOnly(dlight.cpu.Reduction()))), Spatial(vector_bytes)]


def front_passes(target: Any, fast_math: bool = True, layout: bool = True) -> list[Any]:
    """TVM's CPU passes up to fused TIR functions, with NHWC convs (`layout`) and weight-only
    work lifted out (and vectorizable exp/sigmoid/softmax with `fast_math`,
    targets/tvm/fast_math.py); tuning (targets/tvm/tune.py) sees the module at this point."""
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    from ember.targets.tvm.fast_math import fast_math_pass

    convert = tvm.relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]})
    # computations on weights alone (the HWIO transforms) move to a separate
    # `main_transform_params` function, which the engine runs once at load
    lift = tvm.relax.transform.LiftTransformParams()
    fast = [fast_math_pass()] if fast_math else []
    return fast + cpu.library_dispatch_passes(target) + ([convert] if layout else []) + \
        [lift] + cpu.legalize_passes(target)


def back_pipeline(target: Any, vector_bytes: int) -> Any:
    """ember's schedules for every function not yet scheduled, then TVM's lowering."""
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline as cpu
    from tvm.s_tir import dlight

    @tvm.transform.module_pass(opt_level=0)
    def _pipeline(mod: Any, _ctx: Any) -> Any:
        with target:
            passes = ([dlight.ApplyDefaultSchedule(*schedule_rules(vector_bytes))]
                      + cpu.dataflow_lower_passes(target) + cpu.finalize_passes(target))
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline


class Guarded:
    """One of TVM's DLight rules that gives up instead of raising: on a function it cannot
    schedule (a reduction block that is also an output, say) the next rule is tried, and a
    function no rule takes keeps TVM's default lowering, instead of failing the build."""

    def __init__(self, rule: Any) -> None:
        self.rule = rule

    def apply(self, func: Any, target: Any, tunable: bool) -> Any:
        try:
            return self.rule.apply(func, target, tunable)
        except Exception:  # TVM's schedule primitives raise their own error kinds
            return None


class RowsOnly:
    """DLight's CPU reduction rule, kept off reductions of a single row.

    With one row (RMSNorm of one decode token: [1, 1, 576] -> [1, 1, 1]) it computes the
    reduction inside its consumer's parallel loop over the 576 outputs, so every output
    sums the whole row again (576x the work, 141 us instead of about 1 us per norm in
    SmolLM2's decode step). Such a function goes to the next rule (Spatial)."""

    def __init__(self, rule: Any) -> None:
        self.rule = rule

    def apply(self, func: Any, target: Any, tunable: bool) -> Any:
        from tvm import s_tir, tirx

        if not isinstance(func, tirx.PrimFunc):
            return None
        sch = s_tir.Schedule(func)
        reductions = [b for b in _root_blocks(sch) if "R" in _iter_kinds(sch, b)]
        if reductions and all(_rows(sch, b) == 1 for b in reductions):
            return None
        return self.rule.apply(func, target, tunable)


class LargeOnly:
    """A DLight rule (which parallelizes what it schedules) kept off functions too small to
    share (`_one_thread`): those go on to Spatial, which schedules them on one thread."""

    def __init__(self, rule: Any) -> None:
        self.rule = rule

    def apply(self, func: Any, target: Any, tunable: bool) -> Any:
        from tvm import s_tir, tirx

        if not isinstance(func, tirx.PrimFunc) or _one_thread(s_tir.Schedule(func)):
            return None
        return self.rule.apply(func, target, tunable)


def _one_thread(sch: Any) -> bool:
    """Whether the function's loop iterations, summed over its blocks, are fewer than
    PARALLEL_MIN_ITERATIONS (symbolic extents: sized at run time, never)."""
    total = 0
    for block in _root_blocks(sch):
        count = 1
        for loop in sch.get_loops(block):
            extent = _extent(sch, loop)
            if extent is None:
                return False
            count *= extent
        total += count
    return total < PARALLEL_MIN_ITERATIONS


def _rows(sch: Any, block: Any) -> int | None:
    """The number of outputs a reduction block computes (its spatial iteration space)."""
    from tvm import tirx

    rows = 1
    for iv in sch.get(block).iter_vars:
        if iv.iter_type == tirx.IterVar.DataPar:
            extent = iv.dom.extent
            if not isinstance(extent, tirx.IntImm):
                return None
            rows *= int(extent)
    return rows


class _Rule:
    def __init__(self, vector_bytes: int) -> None:
        self.vector_bytes = vector_bytes
        self.lanes = vector_bytes // 4  # fp32 lanes per vector

    def apply(self, func: Any, target: Any, tunable: bool) -> Any:
        from tvm import s_tir, tirx

        if not isinstance(func, tirx.PrimFunc):
            return None
        sch = s_tir.Schedule(func)
        try:
            return sch if self.schedule(sch) else None
        except Exception:  # a schedule primitive refused: leave the function to the next rule
            return None

    def schedule(self, sch: Any) -> bool:
        raise NotImplementedError


def _extent(sch: Any, loop: Any) -> int | None:
    from tvm import tirx

    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tirx.IntImm) else None


def _iter_kinds(sch: Any, block: Any) -> list[str]:
    from tvm.tirx import IterVar

    kinds = {IterVar.DataPar: "S", IterVar.CommReduce: "R"}
    return [kinds.get(iv.iter_type, "O") for iv in sch.get(block).iter_vars]


def _root_blocks(sch: Any) -> list[Any]:
    from tvm.s_tir.dlight.analysis import get_root_block

    return list(sch.get_child_blocks(get_root_block(sch)))


def _inline_spatial_neighbours(sch: Any, main: Any) -> list[Any]:
    """Inline producers into `main` and epilogues into their producer, where legal; returns
    the padding producers (they write more than they read), which stay for `_tile` to
    compute per output tile."""
    padding = []
    for block in _root_blocks(sch):
        if sch.get(block).same_as(sch.get(main)) or "R" in _iter_kinds(sch, block):
            continue
        if _elements(sch, block) > _largest_read(sch, block) > 0:
            padding.append(block)
            continue
        for inline in (sch.compute_inline, sch.reverse_compute_inline):
            try:
                inline(block)
                break
            except Exception:  # not inlinable this way
                continue
    return padding


class Contraction(_Rule):
    """One reduction block whose loops are spatial-then-reduction (matmul, conv)."""

    def schedule(self, sch: Any) -> bool:
        reductions = [b for b in _root_blocks(sch) if "R" in _iter_kinds(sch, b)]
        if len(reductions) != 1:
            return False
        main = reductions[0]
        kinds = _iter_kinds(sch, main)
        loops = sch.get_loops(main)
        n_spatial = kinds.index("R")
        if n_spatial < 2 or "S" in kinds[n_spatial:] or len(loops) != len(kinds):
            return False
        extents = [_extent(sch, loop) for loop in loops]
        if None in extents or not self._vector_width(extents[n_spatial - 1]):
            return False
        one_thread = _one_thread(sch)
        padding = _inline_spatial_neighbours(sch, main)
        self._tile(sch, main, n_spatial, padding, one_thread)
        Spatial(self.vector_bytes).schedule(sch)  # loop nests left outside the contraction
        return True

    def _tile(self, sch: Any, main: Any, n_spatial: int, padding: list[Any],
              one_thread: bool) -> None:
        loops = sch.get_loops(main)
        spatial, reduction = loops[:n_spatial], loops[n_spatial:]
        row = _row_loop(sch, main, n_spatial)
        u, v = spatial[row], spatial[-1]
        outer = [loop for i, loop in enumerate(spatial[:-1]) if i != row]
        v_tile = self._vector_tile(_extent(sch, v))
        registers = 32 if self.vector_bytes == 64 else 16
        u_tile = _row_tile(_extent(sch, u), -(-v_tile // self.lanes),
                           registers // ACCUMULATOR_SHARE)
        u0, u1 = sch.split(u, [None, u_tile])
        v0, v1 = sch.split(v, [None, v_tile])
        sch.reorder(*outer, u0, v0, *reduction, u1, v1)
        acc = sch.cache_write(main, 0, "local")
        sch.reverse_compute_at(acc, v0)
        for block in padding:  # the tile's padded input, bounds-checked once per element
            sch.compute_at(block, v0)
            sch.set_scope(block, 0, "local")  # compacted to the tile's region, per task
            *_, inner = sch.get_loops(block)
            if (_extent(sch, inner) or 1) % self.lanes == 0:
                sch.vectorize(inner)
        _inline_epilogues(sch, acc)
        # parallel and vectorize while `main` is still a whole reduction block: the
        # primitives refuse subtrees that hold a decomposed update block
        if not one_thread:
            sch.parallel(sch.fuse(*outer, u0, v0))
        self._vectorize(sch, v1)
        sch.unroll(u1)
        *_, write_inner = sch.get_loops(acc)
        self._vectorize(sch, write_inner)
        sch.decompose_reduction(main, reduction[0])

    def _vector_width(self, extent: int) -> bool:
        """Whole vectors, or a power-of-two part of one of at least 4 lanes (a pruned conv with
        8 output channels runs on half registers instead of not being scheduled at all)."""
        return extent >= self.lanes or (extent >= 4 and extent & (extent - 1) == 0)

    def _vectorize(self, sch: Any, loop: Any) -> None:
        """Vectorize a tile's column loop. A tile of 3 vectors (48 lanes: a pruned width such
        as 432 = 9 x 48) is split into an unrolled loop of one-register vectors: LLVM turns a
        <48 x float> into scalar code, 25x slower than three <16 x float> (measured)."""
        vectors = (_extent(sch, loop) or self.lanes) // self.lanes
        if vectors > 1 and vectors & (vectors - 1):
            each, lanes = sch.split(loop, [None, self.lanes])
            sch.unroll(each)
            loop = lanes
        sch.vectorize(loop)

    def _vector_tile(self, extent: int) -> int:
        for vectors in range(MAX_VECTORS_PER_TILE, 0, -1):
            if extent % (vectors * self.lanes) == 0:
                return vectors * self.lanes
        return extent if extent <= MAX_VECTORS_PER_TILE * self.lanes else self.lanes


def _row_tile(rows: int, vectors: int, accumulators: int) -> int:
    """Rows of the micro-kernel. A tile one or two vectors wide (convs with 16 or 32 output
    channels) takes the most rows that divide and fit `accumulators` registers: 4 x 1
    accumulators leave the FMA units waiting on their own latency. Wider tiles take 4 (or 2,
    1: what divides)."""
    if vectors <= 2:
        for tile in range(accumulators // vectors, 4, -1):
            if rows % tile == 0:
                return tile
    return next(t for t in ROW_TILES if rows % t == 0)


def _largest_read(sch: Any, block: Any) -> int:
    return max((_shape_elements(r.source.shape) for r in sch.get(block).reads), default=0)


def _elements(sch: Any, block: Any) -> int:
    """Elements of the buffer `block` writes (0 where a dim is not a constant)."""
    return _shape_elements(sch.get(block).writes[0].source.shape)


def _shape_elements(shape: Any) -> int:
    count = 1
    for dim in shape:
        if not hasattr(dim, "value"):
            return 0
        count *= int(dim.value)
    return count


def _row_loop(sch: Any, main: Any, n_spatial: int) -> int:
    """Which spatial loop the micro-kernel's rows run over: the innermost one (before v) that
    the operand read along v (the weight: B[k, v], HWIO, packed Wp[j, k, v]) does not use, so
    each weight vector loaded serves every row. For Wp[j, k, v] with the output laid out
    [i, j, v] that is i, not j: the rows are then the activations', the output is written
    in place, and no transpose of it is needed."""
    block = sch.get(main)
    variables = [iv.var for iv in block.iter_vars]
    v_var = variables[n_spatial - 1]
    weight_vars: list[Any] = []
    for region in block.reads:
        used = _vars_in(region)
        if any(var.same_as(v_var) for var in used) and not region.source.same_as(
                block.writes[0].source):
            weight_vars.extend(used)
    for index in range(n_spatial - 2, -1, -1):
        if not any(variables[index].same_as(var) for var in weight_vars):
            return index
    return n_spatial - 2


def _vars_in(region: Any) -> list[Any]:
    from tvm.tirx.analysis import undefined_vars

    return [var for axis in region.region for var in undefined_vars(axis.min)]


def _inline_epilogues(sch: Any, write_back: Any) -> None:
    """Fold elementwise consumers of the accumulator's write-back into it."""
    for consumer in list(sch.get_consumers(write_back)):
        try:
            sch.reverse_compute_inline(consumer)
        except Exception:  # e.g. a consumer that reads several output elements
            continue


class Spatial(_Rule):
    """Root-level loop nests: outer loops parallel, innermost vectorized when it divides.

    A function of elementwise and injective steps only (SiLU's reshape -> sigmoid -> multiply
    -> multiply) is first inlined into its last step, so it runs as one pass over memory
    instead of one parallel loop and one intermediate buffer per step. Steps smaller than the
    result stay (grouped-query attention's K after RoPE, broadcast to every query head, would
    otherwise be recomputed per head)."""

    def schedule(self, sch: Any) -> bool:
        blocks = _root_blocks(sch)
        if not any("R" in _iter_kinds(sch, block) for block in blocks):
            result = _elements(sch, blocks[-1])
            for block in blocks[:-1]:
                if _elements(sch, block) < result:
                    continue
                try:
                    sch.compute_inline(block)
                except Exception:  # e.g. a step whose output leaves the function: keep it
                    continue
        done, one_thread = False, _one_thread(sch)
        for block in _root_blocks(sch):
            loops = sch.get_loops(block)
            if not loops or any(sch.get(loop).kind != 0 for loop in loops):
                continue  # already scheduled (parallel / vectorized / unrolled)
            done |= self._one(sch, block, loops, one_thread)
        return done

    def _one(self, sch: Any, block: Any, loops: list[Any], one_thread: bool) -> bool:
        kinds = _iter_kinds(sch, block)
        n_spatial = kinds.index("R") if "R" in kinds else len(kinds)
        spatial = loops[:n_spatial]
        if not spatial or len(loops) != len(kinds):
            return False
        if n_spatial == len(loops):  # elementwise: vectorize the innermost stretch
            fused = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
            extent = _extent(sch, fused)
            if extent is not None and extent % self.lanes == 0 and extent > self.lanes:
                outer, inner = sch.split(fused, [None, self.lanes])
                sch.vectorize(inner)
                _parallel(sch, outer, one_thread)
                return True
            _parallel(sch, fused, one_thread)
            return True
        if len(spatial) > 0:  # a reduction: parallel over its output rows
            _parallel(sch, sch.fuse(*spatial) if len(spatial) > 1 else spatial[0], one_thread)
            return True
        return False


def _parallel(sch: Any, loop: Any, one_thread: bool) -> None:
    """Parallel unless the function is too small to share or the loop runs once (a
    thread-pool launch per call of a scalar step costs more than the step: decode graphs
    have dozens)."""
    if not one_thread and _extent(sch, loop) != 1:
        sch.parallel(loop)
