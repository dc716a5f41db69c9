"""Numba kernels of the fused weight-layer ops: Dense's forward and backward, and the whole-backward ops of
Conv2d and ConvTranspose2d (``*_backward``: activation gradient, weight and bias gradients added into the
caller's buffers, input gradient). Equations in tinygan.kernels.reference.dense / conv2d / conv_transpose2d
and, for the epilogue, reference.activation.

Dense: the matrix products stay NumPy's BLAS; the bias and the activation are one parallel pass over y
(``_bias_act_rows``) instead of NumPy's ``+ b`` and a second activation pass.

Conv: the forward's epilogue is applied tile by tile in ``conv.py`` (as each tile is written to NCHW).

The backward ops form dz = dy * act'(y) with the activation's own jitted pass, then call the split ops
(``dense_backward_weight``, ``conv2d_backward_data``, ...) through the kernel namespace: a kernel swapped
there (the walkthrough's --break and --exercise) is then the one every layer uses, fused or not. The gain of
fusion on the CPU is in the forward; the backward's activation pass could run inside the tiles' dy copies
(``conv._nchw_to_cm``), left for when conv.py's rework has landed.
"""

from __future__ import annotations

import sys

import numpy as np
from numba import njit, prange

from ..reference import whole_backward
from .activation import _launch, act, activation_grad, epilogue

__all__ = [
    "dense_forward",
    "dense_backward_data",
    "dense_backward_weight",
    "dense_backward",
    "conv2d_backward",
    "conv_transpose2d_backward",
]


@njit(parallel=True, cache=True)
def _bias_act_rows(y, b, use, slope):  # pragma: no cover - compiled
    """In place: y[n, c] = act(y[n, c] + b[c]) for y (N, C)."""
    N, C = y.shape
    for n in prange(N):
        row = y[n]
        for c in range(C):
            row[c] = act(row[c] + b[c], use, slope)


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


def _namespace():
    """The Numba kernel set, looked up at call time: the whole-backward ops call the split ops through it, so a
    kernel swapped there (the walkthrough's --break and --exercise) reaches every layer."""
    return sys.modules[__package__]


def dense_backward(dy, x, W, y=None, slope=None, dW=None, db=None, input_grad=True):
    """dz = dy * act'(y) (one jitted pass); ``dW += x.T @ dz``, ``db += sum_n dz``; returns ``dz @ W.T`` (None
    when ``input_grad`` is False)."""
    dz = activation_grad(dy, y, slope, "dense_backward")
    return whole_backward.dense(_namespace(), dz, x, W, dW, db, input_grad)


def conv2d_backward(
    dy, cols, W, x_shape, stride, padding, y=None, slope=None, dW=None, db=None, input_grad=True
) -> np.ndarray | None:
    """dz = dy * act'(y) in one jitted pass, then conv.py's tiled weight and data gradients of dz."""
    dz = activation_grad(dy, y, slope, "conv2d_backward")
    return whole_backward.conv2d(_namespace(), dz, cols, W, x_shape, stride, padding, dW, db, input_grad)


def conv_transpose2d_backward(
    dy, x, W, stride, padding, y=None, slope=None, dW=None, db=None, input_grad=True
) -> np.ndarray | None:
    """dz = dy * act'(y) in one jitted pass, then conv.py's tiled data and weight gradients of dz."""
    dz = activation_grad(dy, y, slope, "conv_transpose2d_backward")
    return whole_backward.conv_transpose2d(_namespace(), dz, x, W, stride, padding, dW, db, input_grad)
