"""Layout changes between NCHW and channel-major matrices, bias adds and per-channel sums.

Not part of the kernel contract: the building blocks that dense, conv2d and conv_transpose2d share.
"""

from __future__ import annotations

import cupy

from ._common import THREADS, CudaModule, idx, launch

_MOD = CudaModule(
    "layout.cu",
    templates=("channel_finish", "channel_sum_rows"),
    indexed=("cns_to_ncs", "ncs_to_cns", "add_bias", "channel_sum", "channel_partial"),
)

# Values of one channel that one block of channel_partial sums (16 per thread).
CHANNEL_CHUNK = 16 * THREADS


def _ncs(shape: tuple[int, ...]) -> tuple[int, int, int]:
    s = 1
    for d in shape[2:]:
        s *= int(d)
    return int(shape[0]), int(shape[1]), s


def cns_to_ncs(src: cupy.ndarray, shape: tuple[int, ...], bias: cupy.ndarray | None = None) -> cupy.ndarray:
    """A contiguous (C, N*S) matrix laid out as an array of ``shape`` = (N, C, ...), plus ``bias[c]``."""
    n, c, s = _ncs(shape)
    dst = cupy.empty(shape, dtype=src.dtype)
    has_bias = bias is not None
    # The kernel never reads the bias pointer when has_bias is 0, but it must still be a valid argument.
    b = cupy.ascontiguousarray(bias) if has_bias else src
    launch(
        _MOD.get_for("cns_to_ncs", src.dtype, src, dst),
        dst.size,
        (src, dst, b, cupy.int32(has_bias), idx(n), idx(c), idx(s)),
    )
    return dst


def ncs_to_cns(src: cupy.ndarray) -> cupy.ndarray:
    """An (N, C, ...) array as a contiguous (C, N*S) matrix."""
    n, c, s = _ncs(src.shape)
    dst = cupy.empty((c, n * s), dtype=src.dtype)
    launch(
        _MOD.get_for("ncs_to_cns", src.dtype, src, dst),
        dst.size,
        (src, dst, idx(n), idx(c), idx(s)),
    )
    return dst


def add_bias_(y: cupy.ndarray, bias: cupy.ndarray) -> cupy.ndarray:
    """In place: ``y[n, c, ...] += bias[c]``."""
    _, c, s = _ncs(y.shape)
    launch(
        _MOD.get_for("add_bias", y.dtype, y),
        y.size,
        (y, cupy.ascontiguousarray(bias), idx(c), idx(s), idx(y.size)),
    )
    return y


def channel_sum(x: cupy.ndarray) -> cupy.ndarray:
    """``x`` summed over every axis but 1 (the bias gradient), deterministically."""
    n, c, s = _ncs(x.shape)
    out = cupy.empty(c, dtype=x.dtype)
    if c == 0:
        return out
    if n * s <= CHANNEL_CHUNK or c > 65535:
        _MOD.get_for("channel_sum", x.dtype, x)((c,), (THREADS,), (x, out, idx(n), idx(c), idx(s)))
    elif s == 1:
        launch(_MOD.get("channel_sum_rows", x.dtype), c, (x, out, idx(n), idx(c)))
    else:
        parts = -(-(n * s) // CHANNEL_CHUNK)
        partial = cupy.empty((c, parts), dtype=cupy.float64)
        _MOD.get_for("channel_partial", x.dtype, x)(
            (parts, c), (THREADS,), (x, partial, idx(n), idx(c), idx(s), idx(CHANNEL_CHUNK))
        )
        _MOD.get("channel_finish", x.dtype)((c,), (THREADS,), (partial, out, idx(parts)))
    return out
