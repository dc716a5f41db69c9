"""Dense on the GPU: cuBLAS GEMMs (cupy.matmul) with the bias add and bias gradient as our kernels.

Same equations as tinygan.kernels.reference.dense: y = x @ W + b, dx = dy @ W.T, dW = x.T @ dy,
db = sum_n dy.
"""

from __future__ import annotations

import cupy

from ._common import device_array, gemm, same_dtype
from .layout import add_bias_, channel_sum


def dense_forward(x: cupy.ndarray, W: cupy.ndarray, b: cupy.ndarray) -> cupy.ndarray:
    x, W = device_array(x, "x", "dense_forward"), device_array(W, "W", "dense_forward")
    same_dtype("dense_forward", x, W=W, b=b)
    # cuBLAS has no bias epilogue through cupy.matmul, so the add is one in-place pass over y.
    y = gemm(x, W)
    return add_bias_(y, b) if b is not None else y


def dense_backward_data(dy: cupy.ndarray, W: cupy.ndarray) -> cupy.ndarray:
    dy, W = device_array(dy, "dy", "dense_backward_data"), device_array(W, "W", "dense_backward_data")
    same_dtype("dense_backward_data", dy, W=W)
    return gemm(dy, W, transb=True)


def dense_backward_weight(dy: cupy.ndarray, x: cupy.ndarray) -> tuple[cupy.ndarray, cupy.ndarray]:
    """Returns (dW, db)."""
    dy, x = device_array(dy, "dy", "dense_backward_weight"), device_array(x, "x", "dense_backward_weight")
    same_dtype("dense_backward_weight", dy, x=x)
    return gemm(x, dy, transa=True), channel_sum(dy)
