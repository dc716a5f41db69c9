"""Dense products with one output column: y = act(x @ w + b) as a dot product per row, and the input gradient
dz @ W.T as an outer product (dense_thin.cu). kernels/gpu/dense.py routes a layer with one output here at
precision "fp32" and in float64; the weight gradient x.T @ dz stays cuBLAS's matrix-vector product."""

from __future__ import annotations

import cupy
import numpy as np

from ._common import MAX_BLOCKS, THREADS, CudaModule, idx, launch
from .layout import act_args

_MOD = CudaModule("dense_thin.cu", templates=("dense_row_dot", "dense_outer"))


def row_dot(x: cupy.ndarray, w: cupy.ndarray, b: cupy.ndarray | None, slope: float | None) -> cupy.ndarray:
    """act(x @ w + b) for x (m, k), w (k, 1) and b (1,) or None: an (m, 1) array."""
    m, k = x.shape
    y = cupy.empty((m, 1), dtype=x.dtype)
    if m == 0:
        return y
    blocks = max(1, min(MAX_BLOCKS, -(-m * 32 // THREADS)))  # a warp per row
    _MOD.get("dense_row_dot", x.dtype)(
        (blocks,),
        (THREADS,),
        (x, w, y if b is None else b, np.int32(b is not None), y, idx(m), idx(k), *act_args(x.dtype, slope)),
    )
    return y


def outer(a: cupy.ndarray, b: cupy.ndarray) -> cupy.ndarray:
    """a @ b.T for a (m, 1) and b (n, 1): the (m, n) outer product."""
    m, n = a.shape[0], b.shape[0]
    out = cupy.empty((m, n), dtype=a.dtype)
    launch(_MOD.get("dense_outer", a.dtype), m * n, (a, b, out, idx(m), idx(n)))
    return out
