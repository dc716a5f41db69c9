"""Dense on the GPU: our FP32 product kernels (dense_gemm.cu) at precision "fp32", cuBLAS GEMMs otherwise, with
the bias, activation and bias gradient as our kernels.

Same equations as tinygan.kernels.reference.dense: y = act(x @ W + b), dz = dy * act'(y), dx = dz @ W.T,
dW = x.T @ dz, db = sum_n dz (``slope`` None: no activation, dz = dy).

float32 at precision "fp32" (the default): every product is ``dense_gemm``, whose forward applies the bias and
the fused activation as it writes y and whose weight gradient adds into dW (bench/dev/dense_gemm_versions.py
measures it against cuBLAS on the seed networks' shapes). Otherwise (tf32 and bf16 on cuBLAS's tensor cores,
float64): the GEMM, then the bias and activation as one in-place pass over its output (``add_bias_``), and dW
as a beta = 1 GEMM into the weight gradient. Either way ``dense_backward`` forms dz and the bias gradient in one
pass over dy (``rows_grad_sum``, which adds db into the layer's buffer) and runs dW's product on a second stream
while dx's runs (``streams.fork_join``).
"""

from __future__ import annotations

import cupy
import numpy as np

from ._common import device_array, gemm, same_dtype
from .cublas import matmul_accumulate
from .dense_gemm import dense_gemm, fits
from .layout import add_bias_, channel_sum, check_out, gate_for, rows_grad_sum
from .streams import fork_join


def _check_product(op: str, a: cupy.ndarray, b: cupy.ndarray, a_name: str, b_name: str, axes: tuple[int, int]) -> None:
    if a.ndim != 2 or b.ndim != 2 or a.shape[axes[0]] != b.shape[axes[1]]:
        raise ValueError(f"{op}: {a_name} of shape {tuple(a.shape)} does not match {b_name} of shape {tuple(b.shape)}")


def own_product(rows: int, *arrays: cupy.ndarray) -> bool:
    """Whether a Dense product of ``rows`` output rows over ``arrays`` runs on dense_gemm: float32 at precision
    "fp32" within the kernel's index range."""
    from tinygan.backend import get_precision

    return arrays[0].dtype == np.float32 and get_precision() == "fp32" and fits(rows, *arrays)


def dense_forward(x: cupy.ndarray, W: cupy.ndarray, b: cupy.ndarray, slope: float | None = None) -> cupy.ndarray:
    """y = act(x @ W + b): the GEMM, then bias and activation in one in-place pass."""
    x, W = device_array(x, "x", "dense_forward"), device_array(W, "W", "dense_forward")
    same_dtype("dense_forward", x, W=W, b=b)
    _check_product("dense_forward", x, W, "x", "W", (1, 0))
    if own_product(x.shape[0], x, W):
        return dense_gemm(x, W, bias=b, slope=slope)
    y = gemm(x, W)
    if b is None and slope is None:
        return y
    return add_bias_(y, b, slope)


def dense_backward_data(dy: cupy.ndarray, W: cupy.ndarray) -> cupy.ndarray:
    dy, W = device_array(dy, "dy", "dense_backward_data"), device_array(W, "W", "dense_backward_data")
    same_dtype("dense_backward_data", dy, W=W)
    _check_product("dense_backward_data", dy, W, "dy", "W", (1, 1))
    if own_product(dy.shape[0], dy, W):
        return dense_gemm(dy, W, trans_b=True)
    return gemm(dy, W, transb=True)


def dense_backward_weight(dy: cupy.ndarray, x: cupy.ndarray) -> tuple[cupy.ndarray, cupy.ndarray]:
    """Returns (dW, db)."""
    dy, x = device_array(dy, "dy", "dense_backward_weight"), device_array(x, "x", "dense_backward_weight")
    same_dtype("dense_backward_weight", dy, x=x)
    _check_product("dense_backward_weight", x, dy, "x", "dy", (0, 0))
    if own_product(x.shape[1], x, dy):
        dW = cupy.zeros((x.shape[1], dy.shape[1]), dtype=dy.dtype)
        return dense_gemm(x, dy, trans_a=True, out=dW), channel_sum(dy)
    return gemm(x, dy, transa=True), channel_sum(dy)


def dense_backward(
    dy: cupy.ndarray,
    x: cupy.ndarray,
    W: cupy.ndarray,
    y: cupy.ndarray | None = None,
    slope: float | None = None,
    dW: cupy.ndarray | None = None,
    db: cupy.ndarray | None = None,
    input_grad: bool = True,
) -> cupy.ndarray | None:
    """The whole backward pass of y = act(x @ W + b): ``dW += x.T @ dz`` (a beta = 1 GEMM into the buffer),
    ``db += sum_n dz`` (each skipped when None); returns dz @ W.T (None when ``input_grad`` is False)."""
    op = "dense_backward"
    dy, x, W = device_array(dy, "dy", op), device_array(x, "x", op), device_array(W, "W", op)
    same_dtype(op, dy, x=x, W=W, y=y, dW=dW, db=db)
    _check_product(op, x, dy, "x", "dy", (0, 0))
    _check_product(op, dy, W, "dy", "W", (1, 1))
    if dW is not None:
        check_out(dW, W.shape, dy.dtype, f"{op} (dW)")
    own = own_product(max(x.shape[0], x.shape[1]), x, dy, W) and min(*x.shape, *dy.shape) > 0
    dx = None
    if own and (dW is not None or db is None):
        # dz is never stored: each product forms it from dy and y as it loads its tiles (the gate), and the
        # weight gradient's product sums db from the same tiles.
        gate = gate_for(op, dy, y, slope) if slope is not None else None
        with fork_join() as side:  # the two products only read dy and y: side by side on two streams
            if dW is not None:
                with side:
                    dense_gemm(x, dy, trans_a=True, out=dW, gate=gate, slope=slope, db=db)
            if input_grad:
                dx = dense_gemm(dy, W, trans_b=True, gate=gate, slope=slope)
        return dx
    dz = rows_grad_sum(dy, y, slope, db)
    with fork_join() as side:  # the two products only read dz: side by side on two streams (streams.py)
        if dW is not None:
            with side:
                if own:
                    dense_gemm(x, dz, trans_a=True, out=dW)
                else:
                    matmul_accumulate(dW, x, dz, transa=True, what=f"{op} (dW)")
        if input_grad:
            dx = dense_gemm(dz, W, trans_b=True) if own else gemm(dz, W, transb=True)
    return dx
    dz = rows_grad_sum(dy, y, slope, db)
    own = own_product(max(x.shape[0], x.shape[1]), x, dz, W)
    dx = None
    with fork_join() as side:  # the two products only read dz: side by side on two streams (streams.py)
        if dW is not None:
            with side:
                if own:
                    dense_gemm(x, dz, trans_a=True, out=dW)
                else:
                    matmul_accumulate(dW, x, dz, transa=True, what=f"{op} (dW)")
        if input_grad:
            dx = dense_gemm(dz, W, trans_b=True) if own else gemm(dz, W, transb=True)
    return dx
