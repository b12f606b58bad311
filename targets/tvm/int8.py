"""int8 x int8 -> int32 matrix products on x86 dot-product instructions (AVX-512 VNNI).

`vpdpbusd` multiplies 4 unsigned bytes of A with 4 signed bytes of each of 16 columns of W
and adds the 4 products into 16 int32 lanes. The kernel computes, for A [M, K] and a
constant W [K, N] (int8), with an optional scalar zero point z of A:

    C[m, n] = sum_k (A[m, k] - z) * W[k, n]
            = sum_k Au[m, k] * W[k, n]  -  (z + s) * colsum(W)[n]

where Au = A + s as uint8, with s = 128 for signed A (so Au = A XOR 0x80 is in 0..255) and
s = 0 for unsigned A. W is packed once, at compile time, into Wp[N/16, K/4, 16, 4]
(Wp[j, q, v, r] = W[4q + r, 16j + v]) so each `vpdpbusd` reads 64 contiguous bytes, and
colsum(W) is a constant too. All arithmetic is exact in int32 for K < 2^31 / (255 * 128).
"""

from __future__ import annotations

from typing import Any

LANES = 16  # int32 lanes of one 512-bit vector
DEPTH = 4  # bytes per lane per vpdpbusd
ROWS = 4  # rows of A that reuse each 64-byte load of packed W


def has_vnni(tvm: Any, target: Any) -> bool:
    with target:
        return bool(tvm.target.codegen.llvm_cpu_has_features(["avx512vnni"], target))


def supported(m: int, k: int, n: int) -> bool:
    """Shapes the kernel takes: N a whole number of vectors (K is padded to a multiple of 4
    with zero rows of W, which add nothing and leave colsum(W) as it is)."""
    return n % LANES == 0 and m >= 1 and k >= 1


def padded_depth(k: int) -> int:
    return -(-k // DEPTH) * DEPTH


def pack_weight(w: Any) -> Any:
    """numpy: W [K, N] int8 -> Wp [N/16, K/4, 16, 4] (see the module docstring)."""
    k, n = w.shape
    return w.reshape(k // DEPTH, DEPTH, n // LANES, LANES).transpose(2, 0, 3, 1).copy()


def column_sums(w: Any) -> Any:
    """numpy: colsum(W) as int32 [N]."""
    import numpy as np

    return w.astype(np.int32).sum(axis=0, dtype=np.int32)


def offset(a_dtype: str, zero_point: int = 0) -> int:
    """z + s: what multiplies colsum(W) in the correction (see the module docstring)."""
    return zero_point + (128 if a_dtype == "int8" else 0)


def matmul_func(m: int, k: int, n: int, a_dtype: str) -> Any:
    """PrimFunc main(A [M,K] a_dtype, Wp int8, colsum [N] int32, offset [1] int32, C [M,N]
    int32), scheduled for VNNI (`schedule`) and marked scheduled."""
    from tvm import te

    a = te.placeholder((m, k), a_dtype, name="A")
    wp = te.placeholder((n // LANES, k // DEPTH, LANES, DEPTH), "int8", name="Wp")
    colsum = te.placeholder((n,), "int32", name="colsum")
    shift = te.placeholder((1,), "int32", name="offset")
    au = te.compute((m, k), lambda i, r: _as_unsigned(a[i, r], a_dtype), name="Au")
    r = te.reduce_axis((0, k), name="r")
    acc = te.compute((m, n), lambda i, j: te.sum(
        au[i, r].astype("int32")
        * wp[j // LANES, r // DEPTH, j % LANES, r % DEPTH].astype("int32"), axis=r), name="acc")
    out = te.compute((m, n), lambda i, j: acc[i, j] - shift[0] * colsum[j], name="C")
    func = te.create_prim_func([a, wp, colsum, shift, out])
    return schedule(func, m).with_attr("tirx.is_scheduled", True)


def schedule(func: Any, m: int) -> Any:
    """Rows in tiles of ROWS, 16 columns a vector, K in steps of 4 tensorized to vpdpbusd:

        for i0, j0 in parallel:                    # ROWS x 16 output tile
            for r0 in K / 4:
                for i1 in unroll(ROWS):
                    acc[i, 16 j0 : +16] = vpdpbusd(acc, Au[i, 4 r0 : +4], Wp[j0, r0])
    """
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    acc = sch.get_sblock("acc")
    i, j, r = sch.get_loops(acc)
    rows = next(t for t in (ROWS, 2, 1) if m % t == 0)
    i0, i1 = sch.split(i, [None, rows])
    j0, j1 = sch.split(j, [None, LANES])
    r0, r1 = sch.split(r, [None, DEPTH])
    sch.reorder(i0, j0, r0, i1, j1, r1)
    # the intrinsic accumulates into a global-scope buffer: the tile of `acc` stays in L1
    # and the correction is applied to it right after its last update
    out = sch.get_sblock("C")
    sch.reverse_compute_at(out, j0)
    sch.vectorize(sch.get_loops(out)[-1])
    sch.parallel(sch.fuse(i0, j0))
    init = sch.decompose_reduction(acc, r0)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(j1, vnni_intrinsic())
    sch.unroll(i1)
    _schedule_shift(sch)
    return sch.mod["main"]


def _schedule_shift(sch: Any) -> None:
    """Au = A + s: one parallel, vectorized pass over A."""
    block = sch.get_sblock("Au")
    i, r = sch.get_loops(block)
    sch.parallel(i)
    sch.vectorize(r)


def _as_unsigned(value: Any, a_dtype: str) -> Any:
    if a_dtype == "uint8":
        return value
    return (value.astype("int32") + 128).astype("uint8")


_INTRINSIC = "ember_vnni_dot_16x4_u8i8i32"


def vnni_intrinsic() -> str:
    """Register (once) and name the 16x4 dot-product tensor intrinsic.

    TVM ships one (`dot_16x4_vnni`), but it passes the bytes as <16 x i32> vectors, which
    the LLVM it is built with rejects (`vpdpbusd.512` takes <64 x i8> operands since LLVM 20).
    """
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    if TensorIntrin.get(_INTRINSIC, allow_missing=True) is not None:
        return _INTRINSIC

    @T.prim_func(s_tir=True)
    def desc(a: T.Buffer((4,), "uint8", offset_factor=1),
             b: T.Buffer((16, 4), "int8", offset_factor=1),
             c: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            for i, k in T.grid(16, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    c[vi] = c[vi] + T.cast(a[vk], "int32") * T.cast(b[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(a: T.Buffer((4,), "uint8", offset_factor=1),
             b: T.Buffer((16, 4), "int8", offset_factor=1),
             c: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            a_word = T.reinterpret(a.vload([0], "uint8x4"), dtype="int32")
            a_bytes = T.reinterpret(T.broadcast(a_word, 16), dtype="int8x64")
            c[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                c.vload([0], dtype="int32x16"), a_bytes, b.vload([0, 0], dtype="int8x64"),
                dtype="int32x16")

    TensorIntrin.register(_INTRINSIC, desc, impl)
    return _INTRINSIC


def lower_int8_matmuls(mod: Any) -> tuple[Any, int]:
    """Route `matmul(astype(A), astype(W))` with int8/uint8 A, an int8 W [K, N] that is a
    constant or a weight parameter (packed by relax ops that LiftTransformParams then runs
    once at load) and int32 output (TVM's import of ONNX `MatMulInteger`, also with a scalar
    zero point of A subtracted) to the VNNI kernel. Returns the module and how many products
    were routed; shapes the kernel does not take (N % 16, dynamic shapes) keep TVM's generic
    int32 lowering."""
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    @mutator
    class _Lowering(PyExprMutator):
        def __init__(self, module: Any) -> None:
            super().__init__(module)
            self.routed = 0

        def visit_call_(self, call: Any) -> Any:
            call = super().visit_call_(call)
            match = _match(self, call)
            if match is None:
                return call
            self.routed += 1
            return _vnni_call(self.builder_, *match)

    lowering = _Lowering(mod)
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            lowering.builder_.update_func(gv, lowering.visit_expr(func))
    return lowering.builder_.get(), lowering.routed


def _match(mutator: Any, call: Any) -> tuple[Any, Any, Any, Any] | None:
    """(A, W as numpy or a parameter, zero point expr or None, out shape) when `call` is a
    routable product."""
    from tvm import ir, tirx

    if not _is_op(call, "relax.matmul") or str(call.attrs.out_dtype) != "int32":
        return None
    lhs, rhs = (_bound(mutator, arg) for arg in call.args)
    zero_point = None
    if _is_op(lhs, "relax.subtract"):
        lhs, zp = (_bound(mutator, arg) for arg in lhs.args)
        if not _is_op(zp, "relax.astype") or len(zp.args[0].ty.shape) != 0:
            return None
        zero_point = zp
    if not (_is_op(lhs, "relax.astype") and _is_op(rhs, "relax.astype")):
        return None
    a, w = lhs.args[0], _bound(mutator, rhs.args[0])
    weight_like = isinstance(w, ir.Constant) or _is_parameter(mutator, w)
    if str(a.ty.dtype) not in ("int8", "uint8") or not weight_like \
            or str(w.ty.dtype) != "int8" or len(w.ty.shape) != 2:
        return None
    if not all(isinstance(d, tirx.IntImm) for d in [*w.ty.shape, *a.ty.shape]):
        return None
    k, n = (int(d) for d in w.ty.shape)
    if not supported(1, k, n) or len(a.ty.shape) < 2:
        return None
    return a, w.value.numpy() if isinstance(w, ir.Constant) else w, zero_point, call.ty.shape


def _is_parameter(mutator: Any, expr: Any) -> bool:
    """A function parameter (a detached weight): a Var with no binding in the function."""
    from tvm import relax

    return isinstance(expr, relax.Var) and not isinstance(expr, relax.DataflowVar) \
        and mutator.lookup_binding(expr) is None


def _vnni_call(builder: Any, a: Any, w: Any, zero_point: Any, out_shape: Any) -> Any:
    """reshape A to [M, K] -> call_tir(VNNI kernel) -> reshape to the product's shape."""
    import numpy as np
    from tvm import relax

    k, n = (int(d) for d in (w.shape if isinstance(w, np.ndarray) else w.ty.shape))
    a_dtype = str(a.ty.dtype)
    m = int(np.prod([int(d) for d in list(a.ty.shape)[:-1]]))
    shift = relax.const(np.array([offset(a_dtype)], np.int32))
    if zero_point is not None:  # z is known only at run time (DynamicQuantizeLinear)
        shift = builder.emit(relax.op.add(relax.op.reshape(zero_point, [1]), shift))
    depth = padded_depth(k)
    func = matmul_func(m, depth, n, a_dtype).without_attr("global_symbol")  # module-private
    kernel = builder.add_func(func, "ember_vnni_matmul")
    rows = builder.emit(relax.op.reshape(a, [m, k]))
    if depth != k:
        zeros = relax.op.zeros(relax.ShapeExpr([m, depth - k]), a_dtype)
        rows = builder.emit(relax.op.concat([rows, zeros], axis=1))
    packed, sums = _packed_weight(builder, w, depth)
    product = builder.emit(relax.call_tir(
        kernel, [rows, packed, sums, shift], relax.TensorType([m, n], "int32")))
    return relax.op.reshape(product, out_shape)


def _packed_weight(builder: Any, w: Any, depth: int) -> tuple[Any, Any]:
    """(Wp, colsum(W)) with W padded to `depth` rows of zeros: numpy at compile time for a
    constant, relax ops on a parameter (the same layout as `pack_weight`; weight-only, so
    LiftTransformParams moves them out of the per-call function)."""
    import numpy as np
    from tvm import relax

    if isinstance(w, np.ndarray):
        padded = np.concatenate([w, np.zeros((depth - w.shape[0], w.shape[1]), w.dtype)])
        return relax.const(pack_weight(padded)), relax.const(column_sums(w))
    k, n = (int(d) for d in w.ty.shape)
    sums = builder.emit(relax.op.sum(relax.op.astype(w, "int32"), axis=[0]))
    if depth != k:
        zeros = relax.op.zeros(relax.ShapeExpr([depth - k, n]), "int8")
        w = builder.emit(relax.op.concat([w, zeros], axis=0))
    split = builder.emit(relax.op.reshape(w, [depth // DEPTH, DEPTH, n // LANES, LANES]))
    packed = builder.emit(relax.op.permute_dims(split, [2, 0, 3, 1]))
    return packed, sums


def _bound(mutator: Any, expr: Any) -> Any:
    """The value a dataflow variable is bound to (the expression itself otherwise)."""
    from tvm import relax

    if isinstance(expr, relax.Var):
        value = mutator.lookup_binding(expr)
        return value if value is not None else expr
    return expr


def _is_op(expr: Any, name: str) -> bool:
    from tvm import ir, relax

    return isinstance(expr, relax.Call) and isinstance(expr.op, ir.Op) and expr.op.name == name
