"""Dense on the GPU: cuBLAS GEMMs with the bias, activation and bias gradient as our kernels (layout.cu).

Same equations as tinygan.kernels.reference.dense: y = act(x @ W + b), dz = dy * act'(y), dx = dz @ W.T,
dW = x.T @ dz, db = sum_n dz (``slope`` None: no activation, dz = dy).

The forward's epilogue (bias, then the fused activation) is one in-place pass over the GEMM's output
(``add_bias_``); ``dense_backward`` forms dz and the bias gradient in one pass over dy (``rows_grad_sum``,
which adds db into the layer's buffer) and writes dW with a beta = 1 GEMM straight into the weight gradient, on
a second stream while dx's GEMM runs (``streams.fork_join``).
"""

from __future__ import annotations

import cupy

from ._common import device_array, gemm, same_dtype
from .cublas import matmul_accumulate
from .layout import add_bias_, channel_sum, check_out, rows_grad_sum
from .streams import fork_join


def _check_product(op: str, a: cupy.ndarray, b: cupy.ndarray, a_name: str, b_name: str, axes: tuple[int, int]) -> None:
    if a.ndim != 2 or b.ndim != 2 or a.shape[axes[0]] != b.shape[axes[1]]:
        raise ValueError(f"{op}: {a_name} of shape {tuple(a.shape)} does not match {b_name} of shape {tuple(b.shape)}")


def dense_forward(x: cupy.ndarray, W: cupy.ndarray, b: cupy.ndarray, slope: float | None = None) -> cupy.ndarray:
    """y = act(x @ W + b): the GEMM, then bias and activation in one in-place pass."""
    x, W = device_array(x, "x", "dense_forward"), device_array(W, "W", "dense_forward")
    same_dtype("dense_forward", x, W=W, b=b)
    _check_product("dense_forward", x, W, "x", "W", (1, 0))
    y = gemm(x, W)
    if b is None and slope is None:
        return y
    return add_bias_(y, b, slope)


def dense_backward_data(dy: cupy.ndarray, W: cupy.ndarray) -> cupy.ndarray:
    dy, W = device_array(dy, "dy", "dense_backward_data"), device_array(W, "W", "dense_backward_data")
    same_dtype("dense_backward_data", dy, W=W)
    return gemm(dy, W, transb=True)


def dense_backward_weight(dy: cupy.ndarray, x: cupy.ndarray) -> tuple[cupy.ndarray, cupy.ndarray]:
    """Returns (dW, db)."""
    dy, x = device_array(dy, "dy", "dense_backward_weight"), device_array(x, "x", "dense_backward_weight")
    same_dtype("dense_backward_weight", dy, x=x)
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
    dz = rows_grad_sum(dy, y, slope, db)
    dx = None
    with fork_join() as side:  # the two products only read dz: side by side on two streams (streams.py)
        if dW is not None:
            with side:
                matmul_accumulate(dW, x, dz, transa=True, what=f"{op} (dW)")
        if input_grad:
            dx = gemm(dz, W, transb=True)
    return dx
