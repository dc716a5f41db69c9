"""Dense on the GPU: cuBLAS GEMMs or our own FP32 product kernels (dense_gemm.cu), with the forward's bias and
activation in the product's epilogue where the product is ours.

Same equations as tinygan.kernels.reference.dense: y = act(x @ W + b), dz = dy * act'(y), dx = dz @ W.T,
dW = x.T @ dz, db = sum_n dz (``slope`` None: no activation, dz = dy).

Which runs where: :func:`plan_product` picks, for float32 at precision "fp32" on a Hopper GPU (compute capability
9.0: where it was measured, and where dense_gemm can split a sum over a cluster), each product's kernel from what
``bench/dev/dense_gemm_versions.py`` measured on an H200 (``dense_gemm`` applies the forward's bias and
activation as it writes y and adds the weight gradient into dW). Everything else (tf32 and bf16 on cuBLAS's
tensor cores, float64, older GPUs, products the plan leaves to cuBLAS): the GEMM, then the bias and activation as
one in-place pass over its output (``add_bias_``). A layer with one output (the MNIST discriminator's logit) runs
its forward as a dot product per row and its input gradient as an outer product (dense_thin.py) at full
precision. The backward forms dz and the bias gradient in one pass over dy (``rows_grad_sum``, which adds db into
the layer's buffer), then dW's product into the weight gradient (dense_gemm's, or a beta = 1 cuBLAS GEMM) on a
second stream while dx's runs (``streams.fork_join``).
"""

from __future__ import annotations

from typing import Any

import cupy
import numpy as np

from ._common import device_array, gemm, same_dtype
from .cublas import matmul_accumulate
from .dense_gemm import CLUSTER_CC, dense_gemm, device_capability, fits
from .dense_thin import outer, row_dot
from .layout import add_bias_, channel_sum, check_out, rows_grad_sum
from .streams import fork_join


def plan_product(kind: str, m: int, n: int, k: int) -> dict[str, Any] | None:
    """How a float32 product at precision "fp32" runs: ``dense_gemm``'s keyword arguments, or None for cuBLAS.
    ``kind`` is "forward" (x @ W), "input" (dz @ W.T) or "weight" (x.T @ dz), the product op(a) (m x k) @ op(b)
    (k x n).

    From ``bench/dev/dense_gemm_versions.py`` on an H200 (bench/results/dense-gemm-2026-12-03.md, the twelfth
    session's last call; medians of graphs of 20 products), dense_gemm with its tiles by cp.async, split over a
    cluster by ``splits_for``, against cuBLAS with its separate bias pass:
    - forward: faster on every product with the batch side at 128 rows or fewer (G dense2 5.0 against 8.4 us,
      G dense4 13.6 against 14.9) and on the small ones at 250 rows (D dense3 7.1 against 10.9); cuBLAS's 64 x 64
      kernels win the two large ones at 250 rows (D dense1 18.9 against 23.8 us);
    - input gradient: the 64 x 64 tile wins up to 2^25 multiply-adds (G dense2 5.5 against 7.9 us), cuBLAS above;
    - weight gradient: cuBLAS everywhere (dense_gemm at ``splits_for``'s split ties or loses even on the smallest:
      G dense1 4.7 against 4.8 us, D dense4 4.3 against 4.1)."""
    size = m * n * k
    if kind == "forward" and (m <= 128 or size <= 2**25):
        return {"tile": "32x64", "pipeline": "async"}
    if kind == "input" and size <= 2**25:
        return {"tile": "64x64", "pipeline": "async"}
    return None


def _check_product(op: str, a: cupy.ndarray, b: cupy.ndarray, a_name: str, b_name: str, axes: tuple[int, int]) -> None:
    if a.ndim != 2 or b.ndim != 2 or a.shape[axes[0]] != b.shape[axes[1]]:
        raise ValueError(f"{op}: {a_name} of shape {tuple(a.shape)} does not match {b_name} of shape {tuple(b.shape)}")


def _plan(kind: str, m: int, n: int, k: int, *arrays: cupy.ndarray) -> dict[str, Any] | None:
    """:func:`plan_product`'s choice where dense_gemm may run at all (float32 at precision "fp32", within its
    index range, no empty side, a Hopper GPU or newer); None: cuBLAS."""
    from tinygan.backend import get_precision

    if arrays[0].dtype != np.float32 or get_precision() != "fp32" or min(m, n, k) == 0 or not fits(m, *arrays):
        return None
    # The plan was measured on Hopper with the sum split over clusters; without them (split 1) dense_gemm lost to
    # cuBLAS on every product but the smallest (G dense4's forward 39.2 against 14.9 us), and before compute
    # capability 8.0 its cp.async pipeline does not exist.
    if device_capability()[1] < CLUSTER_CC:
        return None
    return plan_product(kind, m, n, k)


def _thin(fout: int, dtype: Any) -> bool:
    """Whether a layer with ``fout`` outputs runs its forward and input-gradient products on dense_thin's kernels:
    one output, at full precision (float64, or float32 at precision "fp32"; tf32 and bf16 stay cuBLAS's)."""
    from tinygan.backend import get_precision

    return fout == 1 and (dtype == np.float64 or get_precision() == "fp32")


def dense_forward(x: cupy.ndarray, W: cupy.ndarray, b: cupy.ndarray, slope: float | None = None) -> cupy.ndarray:
    """y = act(x @ W + b): dense_gemm with the bias and activation in its epilogue where the plan says so, a dot
    product per row for one output at full precision, else the GEMM, then bias and activation in one in-place
    pass."""
    x, W = device_array(x, "x", "dense_forward"), device_array(W, "W", "dense_forward")
    same_dtype("dense_forward", x, W=W, b=b)
    _check_product("dense_forward", x, W, "x", "W", (1, 0))
    if _thin(W.shape[1], x.dtype):
        return row_dot(x, W, b, slope)
    plan = _plan("forward", x.shape[0], W.shape[1], x.shape[1], x, W)
    if plan is not None:
        return dense_gemm(x, W, bias=b, slope=slope, **plan)
    y = gemm(x, W)
    if b is None and slope is None:
        return y
    return add_bias_(y, b, slope)


def dense_backward_data(dy: cupy.ndarray, W: cupy.ndarray) -> cupy.ndarray:
    dy, W = device_array(dy, "dy", "dense_backward_data"), device_array(W, "W", "dense_backward_data")
    same_dtype("dense_backward_data", dy, W=W)
    _check_product("dense_backward_data", dy, W, "dy", "W", (1, 1))
    return _input_product(dy, W)


def _input_product(dz: cupy.ndarray, W: cupy.ndarray) -> cupy.ndarray:
    """dz @ W.T on the kernel the routing gives (arguments checked by the caller): an outer product for one
    output at full precision, dense_gemm where the plan says so, else cuBLAS."""
    if _thin(W.shape[1], dz.dtype):
        return outer(dz, W)
    plan = _plan("input", dz.shape[0], W.shape[0], dz.shape[1], dz, W)
    if plan is not None:
        return dense_gemm(dz, W, trans_b=True, **plan)
    return gemm(dz, W, transb=True)


def dense_backward_weight(dy: cupy.ndarray, x: cupy.ndarray) -> tuple[cupy.ndarray, cupy.ndarray]:
    """Returns (dW, db)."""
    dy, x = device_array(dy, "dy", "dense_backward_weight"), device_array(x, "x", "dense_backward_weight")
    same_dtype("dense_backward_weight", dy, x=x)
    _check_product("dense_backward_weight", x, dy, "x", "dy", (0, 0))
    plan = _plan("weight", x.shape[1], dy.shape[1], x.shape[0], x, dy)
    if plan is not None:
        dW = cupy.zeros((x.shape[1], dy.shape[1]), dtype=dy.dtype)
        return dense_gemm(x, dy, trans_a=True, out=dW, **plan), channel_sum(dy)
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
    batch, fin, fout = x.shape[0], x.shape[1], dy.shape[1]
    weight_plan = _plan("weight", fin, fout, batch, x, dy) if dW is not None else None
    dz = rows_grad_sum(dy, y, slope, db)
    dx = None
    with fork_join(keep=(x, dz)) as side:  # the two products only read dz: side by side on two streams (streams.py)
        if dW is not None:
            with side:
                if weight_plan is not None:
                    dense_gemm(x, dz, trans_a=True, out=dW, **weight_plan)
                else:
                    matmul_accumulate(dW, x, dz, transa=True, what=f"{op} (dW)")
        if input_grad:
            dx = _input_product(dz, W)
    return dx
