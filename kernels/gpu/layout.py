"""Layout changes between NCHW and channel-major matrices, bias adds and per-channel sums, with the fused
epilogue where they touch a weight op's output or upstream gradient.

Not part of the kernel contract: the building blocks that dense, conv2d and conv_transpose2d share. ``slope``
is the fused activation (None: none; 0: ReLU; s: LeakyReLU(s)), applied by ``epilogue_act`` /
``epilogue_grad`` in _common.cu (equations in kernels/reference/activation.py). A sum given ``out`` adds
into it (a gradient buffer, accumulated in place) instead of returning a new array.
"""

from __future__ import annotations

from typing import Any

import cupy
import numpy as np

from ..fastdiv import fast_div_args
from ._common import BF16, THREADS, CudaModule, idx, launch, scalar

_MOD = CudaModule(
    "layout.cu",
    templates=("channel_finish", "channel_sum_rows", "rows_grad_sum", "cast_bf16", "pad_rows"),
    indexed=(
        "cns_to_ncs",
        "ncs_to_cns",
        "ncs_to_cns_bf16",
        "ncs_to_cns_sum",
        "ncs_to_cns_sum_bf16",
        "add_bias",
        "channel_sum",
        "channel_partial",
    ),
)

# Values of one channel that one block of channel_partial sums (16 per thread).
CHANNEL_CHUNK = 16 * THREADS
# rows_grad_sum's block: 32 channels by ROWS_GRAD_Y rows (layout.cu).
ROWS_GRAD_Y = 16


def act_args(dtype, slope: float | None) -> tuple:
    """The (act, slope) kernel arguments of the fused epilogue for ``slope`` (None: no activation)."""
    return cupy.int32(slope is not None), scalar(dtype, 0.0 if slope is None else slope)


def check_out(out: cupy.ndarray, shape: tuple[int, ...], dtype, what: str) -> None:
    """A buffer a kernel accumulates into in place must be exactly that: no copy may stand in for it."""
    if not isinstance(out, cupy.ndarray) or tuple(out.shape) != tuple(shape) or out.dtype != dtype:
        got = f"{getattr(out, 'dtype', type(out).__name__)} {tuple(getattr(out, 'shape', ()))}"
        raise ValueError(f"{what}: the gradient buffer must be a {dtype} CuPy array of shape {tuple(shape)}, got {got}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{what}: the gradient buffer must be C-contiguous (it is accumulated in place)")


def gate_for(op: str, dy: cupy.ndarray, y: Any, slope: float | None) -> cupy.ndarray:
    """The gate a fused activation's backward kernel reads: y, the fused forward's output, checked against dy
    (a ValueError naming ``op`` otherwise) and contiguous; dy itself, never read, without an activation."""
    if slope is None:
        return dy
    if not isinstance(y, cupy.ndarray) or tuple(y.shape) != tuple(dy.shape) or y.dtype != dy.dtype:
        got = "none" if y is None else f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}"
        raise ValueError(f"{op}: slope={slope} needs y of dtype {dy.dtype} and shape {tuple(dy.shape)}, got {got}")
    return cupy.ascontiguousarray(y)


def _ncs(shape: tuple[int, ...]) -> tuple[int, int, int]:
    s = 1
    for d in shape[2:]:
        s *= int(d)
    return int(shape[0]), int(shape[1]), s


def _vec(s: int, dtype: Any, vec: int | None) -> int:
    """Values a thread of the layout changes moves as one vector (layout.cu): 4, 2 or 1, the largest dividing the
    plane size ``s``, for float32 (float64 keeps 1); ``vec`` forces it (bench/dev times vec=1 as the version before)."""
    if vec is not None:
        return vec
    if np.dtype(dtype) != np.float32:
        return 1
    return next(v for v in (4, 2, 1) if s % v == 0)


def cns_to_ncs(
    src: cupy.ndarray,
    shape: tuple[int, ...],
    bias: cupy.ndarray | None = None,
    slope: float | None = None,
    vec: int | None = None,
) -> cupy.ndarray:
    """A contiguous (C, N*S) matrix laid out as an array of ``shape`` = (N, C, ...), plus ``bias[c]``, through
    the fused activation ``slope``. ``vec``: values a thread (default: :func:`_vec`'s choice)."""
    n, c, s = _ncs(shape)
    dst = cupy.empty(shape, dtype=src.dtype)
    has_bias = bias is not None
    # The kernel never reads the bias pointer when has_bias is 0, but it must still be a valid argument.
    b = cupy.ascontiguousarray(bias) if has_bias else src
    vec = _vec(s, src.dtype, vec)
    launch(
        _MOD.get_for("cns_to_ncs", src.dtype, src, dst),
        dst.size // vec,
        (src, dst, b, cupy.int32(has_bias), *act_args(src.dtype, slope), idx(n), idx(c), idx(s))
        + (*fast_div_args(s, c), cupy.int32(vec)),
    )
    return dst


def as_bf16(x: cupy.ndarray) -> cupy.ndarray:
    """``x`` as bfloat16 bits (``_common.BF16``), rounded to nearest even; a bfloat16 array as it is."""
    if x.dtype == BF16:
        return x
    x = cupy.ascontiguousarray(x)
    out = cupy.empty(x.shape, dtype=BF16)
    cols = int(x.shape[-1]) if x.ndim else 1
    if cols:
        launch(_MOD.get("cast_bf16", x.dtype), x.size, (x, out, idx(x.size // cols), idx(cols), idx(cols)))
    return out


def weight_operand(w: cupy.ndarray, bf16: bool, width: int | None = None) -> cupy.ndarray:
    """A weight matrix (rows, cols) as a GEMM operand: as bfloat16 with ``bf16``, and widened to ``width`` columns
    with zeros (conv2d.gemm_rows: the extents cuBLAS's fast kernels need), in one pass; ``w`` itself when neither
    applies."""
    rows, cols = (int(d) for d in w.shape)
    width = cols if width is None else int(width)
    if width == cols:
        return as_bf16(w) if bf16 else w
    w = cupy.ascontiguousarray(w)
    out = cupy.empty((rows, width), dtype=BF16 if bf16 else w.dtype)
    kernel = _MOD.get("cast_bf16" if bf16 else "pad_rows", w.dtype)
    launch(kernel, out.size, (w, out, idx(rows), idx(cols), idx(width)))
    return out


def ncs_to_cns(
    src: cupy.ndarray,
    gate: cupy.ndarray | None = None,
    slope: float | None = None,
    out_sum: cupy.ndarray | None = None,
    bf16: bool = False,
    vec: int | None = None,
) -> cupy.ndarray:
    """An (N, C, ...) array as a contiguous (C, N*S) matrix. With ``slope``, ``src`` is an upstream gradient
    dy, ``gate`` the fused forward's output y (same shape), and the result dz = dy * act'(y), channel-major.
    With ``out_sum`` (a bias gradient), also ``out_sum[c] += sum of row c`` of the result, in the same pass: the
    same bits as ``channel_sum(result.reshape(1, C, -1), out=out_sum)``. With ``bf16`` the matrix is stored as
    bfloat16 (a GEMM operand at precision "bf16"); ``out_sum`` still sums the values before that rounding.
    ``vec``: values a thread of the plain layout change (default: :func:`_vec`'s choice)."""
    n, c, s = _ncs(src.shape)
    g = gate_for("ncs_to_cns", src, gate, slope)
    if out_sum is not None:
        check_out(out_sum, (c,), src.dtype, "ncs_to_cns (out_sum)")
    dst = cupy.empty((c, n * s), dtype=BF16 if bf16 else src.dtype)
    suffix = "_bf16" if bf16 else ""
    # The summing kernel puts the channels along the grid's y (at most 65535) and needs values to sum; otherwise
    # the plain layout change, then channel_sum over its result.
    if out_sum is not None and 0 < c <= 65535 and n * s > 0:
        parts = -(-(n * s) // CHANNEL_CHUNK)
        partial = cupy.empty((c, parts), dtype=cupy.float64)
        _MOD.get_for("ncs_to_cns_sum" + suffix, src.dtype, src, dst)(
            (parts, c),
            (THREADS,),
            (src, dst, g, *act_args(src.dtype, slope), partial, idx(n), idx(c), idx(s), idx(CHANNEL_CHUNK))
            + fast_div_args(s),
        )
        _MOD.get("channel_finish", src.dtype)((c,), (THREADS,), (partial, out_sum, idx(parts), cupy.int32(1)))
        return dst
    vec = _vec(s, src.dtype, vec)
    launch(
        _MOD.get_for("ncs_to_cns" + suffix, src.dtype, src, dst),
        dst.size // vec,
        (src, dst, g, *act_args(src.dtype, slope), idx(n), idx(c), idx(s), *fast_div_args(s, n), cupy.int32(vec)),
    )
    if out_sum is not None:
        if bf16:  # the sum of the unrounded values (rare: over 65535 channels or no values at all)
            channel_sum(ncs_to_cns(src, gate, slope).reshape(1, c, -1), out=out_sum)
        else:
            channel_sum(dst.reshape(1, c, -1), out=out_sum)
    return dst


def add_bias_(y: cupy.ndarray, bias: cupy.ndarray | None, slope: float | None = None) -> cupy.ndarray:
    """In place: ``y[n, c, ...] = act(y[n, c, ...] + bias[c])`` (no bias: act alone)."""
    _, c, s = _ncs(y.shape)
    b = cupy.zeros(c, dtype=y.dtype) if bias is None else cupy.ascontiguousarray(bias)
    launch(
        _MOD.get_for("add_bias", y.dtype, y),
        y.size,
        (y, b, *act_args(y.dtype, slope), idx(c), idx(s), idx(y.size)),
    )
    return y


def channel_sum(x: cupy.ndarray, out: cupy.ndarray | None = None) -> cupy.ndarray:
    """``x`` summed over every axis but 1 (the bias gradient), deterministically; added into ``out`` when
    given (``out += ...`` in the same kernel), else returned as a new array."""
    n, c, s = _ncs(x.shape)
    accumulate = out is not None
    if accumulate:
        check_out(out, (c,), x.dtype, "channel_sum")
    else:
        out = cupy.empty(c, dtype=x.dtype)
    if c == 0:
        return out
    acc = cupy.int32(accumulate)
    if n * s <= CHANNEL_CHUNK or c > 65535:
        _MOD.get_for("channel_sum", x.dtype, x)((c,), (THREADS,), (x, out, idx(n), idx(c), idx(s), acc))
    elif s == 1:
        launch(_MOD.get("channel_sum_rows", x.dtype), c, (x, out, idx(n), idx(c), acc))
    else:
        parts = -(-(n * s) // CHANNEL_CHUNK)
        partial = cupy.empty((c, parts), dtype=cupy.float64)
        _MOD.get_for("channel_partial", x.dtype, x)(
            (parts, c), (THREADS,), (x, partial, idx(n), idx(c), idx(s), idx(CHANNEL_CHUNK))
        )
        _MOD.get("channel_finish", x.dtype)((c,), (THREADS,), (partial, out, idx(parts), acc))
    return out


def rows_grad_sum(
    dy: cupy.ndarray, y: cupy.ndarray | None, slope: float | None, db: cupy.ndarray | None
) -> cupy.ndarray:
    """Dense's backward epilogue for (N, C) arrays in one pass: returns dz = dy * act'(y) (dy itself for slope
    None) and adds the bias gradient sum_n dz into ``db`` when given."""
    n, c = dy.shape
    gate = gate_for("dense_backward", dy, y, slope)
    if db is not None:
        check_out(db, (c,), dy.dtype, "dense_backward (db)")
    dz = cupy.empty_like(dy) if slope is not None else dy
    if c > 0 and (slope is not None or db is not None):
        _MOD.get("rows_grad_sum", dy.dtype)(
            (-(-c // 32),),
            (32, ROWS_GRAD_Y),
            (
                dy,
                gate,
                dz,
                db if db is not None else dy,  # never written without want_sum
                *act_args(dy.dtype, slope),
                cupy.int32(db is not None),
                cupy.int32(1),
                idx(n),
                idx(c),
            ),
        )
    return dz
