"""Numba kernels of the fused weight-layer ops: Dense's forward and backward, and the whole-backward ops of
Conv2d and ConvTranspose2d (``*_backward``: activation gradient, weight and bias gradients added into the
caller's buffers, input gradient). Equations in tinygan.kernels.reference.dense / conv2d / conv_transpose2d
and, for the epilogue, reference.activation.

Dense: the matrix products stay NumPy's BLAS; the bias and the activation are one parallel pass over y
(``_bias_act_rows``) instead of NumPy's ``+ b`` and a second activation pass, and the backward forms
dz = act_grad(dy, y) and the bias gradient's column sums in one pass over dy (``_grad_colsums``).

Conv: the forward's epilogue is applied tile by tile in ``conv.py`` (as each tile is written to NCHW); the
backward forms dz in one parallel pass, then runs conv.py's tiled weight- and data-gradient passes on it.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .activation import _launch, act, act_grad, activation_grad, epilogue
from .conv import (
    conv2d_backward_data,
    conv2d_backward_weight,
    conv_transpose2d_backward_data,
    conv_transpose2d_backward_weight,
)

__all__ = [
    "dense_forward",
    "dense_backward_data",
    "dense_backward_weight",
    "dense_backward",
    "conv2d_backward",
    "conv_transpose2d_backward",
]

# Row chunks of the column sums: fixed, not the thread count, so db has the same bits on every machine.
COLSUM_CHUNKS = 16


@njit(parallel=True, cache=True)
def _bias_act_rows(y, b, use, slope):  # pragma: no cover - compiled
    """In place: y[n, c] = act(y[n, c] + b[c]) for y (N, C)."""
    N, C = y.shape
    for n in prange(N):
        row = y[n]
        for c in range(C):
            row[c] = act(row[c] + b[c], use, slope)


@njit(parallel=True, cache=True)
def _grad_colsums(dy, y, use, slope, dz, partial):  # pragma: no cover - compiled
    """dz = act_grad(dy, y) (written only when ``use``) and partial[k, c] = the sum of dz[n, c] over the
    rows n of chunk k (float64), for (N, C) arrays."""
    N, C = dy.shape
    K = partial.shape[0]
    for k in prange(K):
        acc = partial[k]
        for n in range(k * N // K, (k + 1) * N // K):
            for c in range(C):
                v = act_grad(dy[n, c], y[n, c], use, slope)
                if use:
                    dz[n, c] = v
                acc[c] += v


def _check_2d(op: str, **arrays) -> None:
    for name, a in arrays.items():
        if a.ndim != 2:
            raise ValueError(f"{op}: {name} must be 2-D, received shape {tuple(a.shape)}")


def dense_forward(x, W, b, slope=None):
    """y = act(x @ W + b): the product by BLAS, bias and activation in one parallel pass."""
    _check_2d("dense_forward", x=x, W=W)
    if x.shape[1] != W.shape[0]:
        raise ValueError(f"dense_forward: x of shape {tuple(x.shape)} does not match W of shape {tuple(W.shape)}")
    y = np.ascontiguousarray(x @ W)
    bias = np.zeros(W.shape[1], y.dtype) if b is None else np.ascontiguousarray(b, dtype=y.dtype)
    if bias.shape != (W.shape[1],):
        raise ValueError(f"dense_forward: b of shape {tuple(bias.shape)} does not match W of shape {tuple(W.shape)}")
    _launch(_bias_act_rows, y.size, "elementwise", y, bias, *epilogue(slope))
    return y


def dense_backward_data(dy, W):
    return dy @ W.T


def dense_backward_weight(dy, x):
    """Returns (dW, db)."""
    return x.T @ dy, dy.sum(axis=0)


def dense_backward(dy, x, W, y=None, slope=None, dW=None, db=None, input_grad=True):
    """dz = act_grad(dy, y) and the bias gradient in one pass; ``dW += x.T @ dz``, ``db += sum_n dz``;
    returns ``dz @ W.T`` (None when ``input_grad`` is False)."""
    op = "dense_backward"
    _check_2d(op, dy=dy)
    use, slope_f = epilogue(slope)
    if use and (y is None or tuple(y.shape) != tuple(dy.shape)):
        activation_grad(dy, y, slope, op)  # raises the error that names what is wrong
    dz = dy
    if use or db is not None:
        dy = np.ascontiguousarray(dy)
        dz = np.empty_like(dy) if use else dy
        partial = np.zeros((max(1, min(COLSUM_CHUNKS, dy.shape[0])), dy.shape[1]), np.float64)
        gate = np.ascontiguousarray(y) if use else dy
        _launch(_grad_colsums, dy.size, "elementwise", dy, gate, use, slope_f, dz, partial)
        if db is not None:
            db += partial.sum(axis=0).astype(db.dtype)
    if dW is not None:
        dW += x.T @ dz
    return dz @ W.T if input_grad else None


def conv2d_backward(
    dy, cols, W, x_shape, stride, padding, y=None, slope=None, dW=None, db=None, input_grad=True
) -> np.ndarray | None:
    """dz = act_grad(dy, y) in one parallel pass, then conv.py's tiled weight and data gradients of dz."""
    dz = activation_grad(dy, y, slope, "conv2d_backward")
    if dW is not None or db is not None:
        gW, gb = conv2d_backward_weight(dz, cols, W.shape)
        if dW is not None:
            dW += gW
        if db is not None:
            db += gb
    return conv2d_backward_data(dz, W, x_shape, stride, padding) if input_grad else None


def conv_transpose2d_backward(
    dy, x, W, stride, padding, y=None, slope=None, dW=None, db=None, input_grad=True
) -> np.ndarray | None:
    """dz = act_grad(dy, y) in one parallel pass, then conv.py's tiled data and weight gradients of dz."""
    dz = activation_grad(dy, y, slope, "conv_transpose2d_backward")
    dx = dz_cols = None
    if input_grad:
        dx, dz_cols = conv_transpose2d_backward_data(dz, W, stride, padding)
    if dW is not None or db is not None:
        gW, gb = conv_transpose2d_backward_weight(dz, x, W.shape, stride, padding, dy_cols=dz_cols)
        if dW is not None:
            dW += gW
        if db is not None:
            db += gb
    return dx
