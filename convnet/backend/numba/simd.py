"""Sixteen float32 lanes as one value: the vector type the register-blocked
matrix products (gemm.py) are written in.

Numba's array code leaves the choice of vectors to LLVM's loop vectorizer, which
on this project's CPUs picks 256-bit vectors and keeps a product's partial sums
in memory. A matrix product runs at the machine's peak only when a tile of sums
(say 6 rows x 32 columns) stays in registers while the inner dimension streams
past, and each loaded value serves several multiply-adds. This module gives Numba
code a value that *is* a register: `F32x16` lowers to LLVM's <16 x float>, so
a kernel's local variables of this type are SSA values that LLVM keeps in
(512-bit, with AVX-512) vector registers. Five operations are all a product needs, a
sixth applies a ReLU, and three more do batch normalization's per-channel sums:

    vzero()             (0, ..., 0)
    vsplat(s)           (s, ..., s)                    one float32 in every lane
    vsplat_at(a, i)     (a[i], ..., a[i])              the same, read straight from a
    vload(a, i)         (a[i], ..., a[i + 15])         a: 1-D float32 array
    vstore(a, i, v)     a[i:i + 16] = v
    vfma(a, b, c)       a * b + c, lane by lane, one rounding (llvm.fma)
    vadd, vsub, vmul    a + b, a - b, a * b, lane by lane (each rounded as the
                        float32 scalar operation is)
    vrelu(v)            max(v, 0) lane by lane; a NaN stays NaN (as np.maximum)
    vmask(d, y)         d where y > 0, else 0, lane by lane (a ReLU's backward)

`F32x8`, eight lanes (LLVM's <8 x float>, one 256-bit register with AVX2 or
AVX-512), is the same idea for kernels whose vector is one output pixel's eight
filters (pixel_rows.py); its loads, stores and broadcasts are `vload8`, `vstore8`,
`vsplat8_at`, `vzero8`, and `vlane8(v, i)` reads lane i. vfma, vadd, vrelu and
vmask take either type (all arguments of one).

They do no bounds checks: a caller keeps i + 16 <= len(a) (i < len(a) for
vsplat_at). Nor do they wrap a negative index around, as a[i] does in Numba:
that test costs a compare and a conditional move per element read, three
instructions beside each multiply-add (measured: the 16-filter phases tile ran at
half speed with vsplat(a[i])). Where the CPU has no
512-bit vectors LLVM splits each value into narrower ones, which stays correct
but runs out of registers; gemm.py and phases_tiles.py use their kernels only
where `fits(...)`, except for kernels with few values in flight (phases_tiles.py's
narrow tiles, batchnorm.py's sums: `fits_narrow(...)`), which fit AVX2's 16
256-bit registers two halves to a value.
"""

import functools

import numpy as np
from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.core.datamodel import models
from numba.extending import intrinsic, register_model

LANES = 16
LANES8 = 8

_VECTOR = ir.VectorType(ir.FloatType(), LANES)
_VECTOR8 = ir.VectorType(ir.FloatType(), LANES8)


class F32x16(types.Type):
    """Numba's type of a <16 x float> value."""

    def __init__(self):
        super().__init__(name="F32x16")


f32x16 = F32x16()


@register_model(F32x16)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


class F32x8(types.Type):
    """Numba's type of a <8 x float> value."""

    def __init__(self):
        super().__init__(name="F32x8")


f32x8 = F32x8()


@register_model(F32x8)
class _F32x8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR8)


def _one_vector_type(*arguments):
    # the vector type all arguments share (F32x16 or F32x8), else None: Numba then
    # reports that no signature of the intrinsic matches
    first = arguments[0]
    if isinstance(first, (F32x16, F32x8)) and all(a == first for a in arguments):
        return first
    return None


@functools.lru_cache(maxsize=1)
def has_512bit_vectors():
    """Does this CPU have AVX-512 (32 registers of 16 float32 lanes)?"""
    return "+avx512f" in binding.get_host_cpu_features().flatten().split(",")


@functools.lru_cache(maxsize=1)
def has_256bit_fma():
    """Does this CPU have AVX2 and FMA (16 registers of 8 float32 lanes, where an
    F32x16 value takes two: phases_tiles.py's narrow tiles are sized for that)?"""
    features = binding.get_host_cpu_features().flatten().split(",")
    return "+avx2" in features and "+fma" in features


def fits(*arrays):
    """Can the kernels written in this type take these arrays? float32 and
    C-contiguous, on a CPU with 512-bit vectors."""
    return has_512bit_vectors() and all(a.dtype == np.float32 and a.flags.c_contiguous for a in arrays)


def fits_narrow(*arrays):
    """fits(), or the same arrays on a CPU with AVX2 and FMA, where each F32x16 value
    takes two registers: for kernels with few values in flight (batch norm's four
    sums, phases_tiles.py's narrow tiles)."""
    return ((has_512bit_vectors() or has_256bit_fma())
            and all(a.dtype == np.float32 and a.flags.c_contiguous for a in arrays))


def _lane_pointer(context, builder, array_type, array, index, vector=_VECTOR):
    # &a[index], seen as a pointer to 16 (or 8) floats (alignment 4: any element will do)
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), vector.as_pointer())


@intrinsic
def vload(typingctx, array, index):
    def codegen(context, builder, sig, args):
        value = builder.load(_lane_pointer(context, builder, sig.args[0], *args))
        value.align = 4
        return value
    return f32x16(array, index), codegen


@intrinsic
def vstore(typingctx, array, index, value):
    def codegen(context, builder, sig, args):
        store = builder.store(args[2], _lane_pointer(context, builder, sig.args[0], args[0], args[1]))
        store.align = 4
        return context.get_dummy_value()
    return types.none(array, index, value), codegen


def _broadcast(builder, scalar, vector=_VECTOR):
    # (scalar, ..., scalar): the scalar into lane 0, then lane 0 shuffled into every lane
    one_lane = builder.insert_element(ir.Constant(vector, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
    every_lane = ir.Constant(ir.VectorType(ir.IntType(32), vector.count), [0] * vector.count)
    return builder.shuffle_vector(one_lane, ir.Constant(vector, ir.Undefined), every_lane)


@intrinsic
def vsplat(typingctx, scalar):
    def codegen(context, builder, sig, args):
        return _broadcast(builder, args[0])
    return f32x16(types.float32), codegen


@intrinsic
def vsplat_at(typingctx, array, index):
    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        return _broadcast(builder, builder.load(builder.gep(data, [args[1]])))
    return f32x16(array, index), codegen


@intrinsic
def vzero(typingctx):
    def codegen(context, builder, sig, args):
        return ir.Constant(_VECTOR, [0.0] * LANES)
    return f32x16(), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    vector = _one_vector_type(a, b, c)
    if vector is None:
        return None

    def codegen(context, builder, sig, args):
        llvm_type = args[0].type
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(llvm_type, [llvm_type] * 3),
                                             f"llvm.fma.v{llvm_type.count}f32")
        return builder.call(fma, args)
    return vector(vector, vector, vector), codegen


@intrinsic
def vadd(typingctx, a, b):
    vector = _one_vector_type(a, b)
    if vector is None:
        return None

    def codegen(context, builder, sig, args):
        return builder.fadd(*args)
    return vector(vector, vector), codegen


@intrinsic
def vsub(typingctx, a, b):
    def codegen(context, builder, sig, args):
        return builder.fsub(*args)
    return f32x16(f32x16, f32x16), codegen


@intrinsic
def vmul(typingctx, a, b):
    def codegen(context, builder, sig, args):
        return builder.fmul(*args)
    return f32x16(f32x16, f32x16), codegen


@intrinsic
def vrelu(typingctx, v):
    vector = _one_vector_type(v)
    if vector is None:
        return None

    def codegen(context, builder, sig, args):
        # v < 0 is false for a NaN, which then passes through
        zero = ir.Constant(args[0].type, [0.0] * args[0].type.count)
        return builder.select(builder.fcmp_ordered("<", args[0], zero), zero, args[0])
    return vector(vector), codegen


@intrinsic
def vmask(typingctx, d, y):
    vector = _one_vector_type(d, y)
    if vector is None:
        return None

    def codegen(context, builder, sig, args):
        # y > 0 is false for a NaN in y: the gradient there is 0 (as phases._gather_block)
        zero = ir.Constant(args[0].type, [0.0] * args[0].type.count)
        return builder.select(builder.fcmp_ordered(">", args[1], zero), args[0], zero)
    return vector(vector, vector), codegen


@intrinsic
def vload8(typingctx, array, index):
    def codegen(context, builder, sig, args):
        value = builder.load(_lane_pointer(context, builder, sig.args[0], *args, vector=_VECTOR8))
        value.align = 4
        return value
    return f32x8(array, index), codegen


@intrinsic
def vstore8(typingctx, array, index, value):
    def codegen(context, builder, sig, args):
        store = builder.store(args[2], _lane_pointer(context, builder, sig.args[0], args[0], args[1],
                                                     vector=_VECTOR8))
        store.align = 4
        return context.get_dummy_value()
    return types.none(array, index, f32x8), codegen


@intrinsic
def vsplat8_at(typingctx, array, index):
    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        return _broadcast(builder, builder.load(builder.gep(data, [args[1]])), _VECTOR8)
    return f32x8(array, index), codegen


@intrinsic
def vzero8(typingctx):
    def codegen(context, builder, sig, args):
        return ir.Constant(_VECTOR8, [0.0] * LANES8)
    return f32x8(), codegen


@intrinsic
def vlane8(typingctx, v, i):
    def codegen(context, builder, sig, args):
        return builder.extract_element(args[0], args[1])
    return types.float32(f32x8, i), codegen
