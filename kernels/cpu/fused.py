"""Numba kernels of the fused weight-layer ops: Dense's forward and backward, and the whole-backward ops of
Conv2d and ConvTranspose2d (``*_backward``: activation gradient, weight and bias gradients added into the
caller's buffers, input gradient). Equations in tinygan.kernels.reference.dense / conv2d / conv_transpose2d
and, for the epilogue, reference.activation.

Dense: the matrix products stay NumPy's BLAS; the bias and the activation are one parallel pass over y
(``_bias_act_rows``) instead of NumPy's ``+ b`` and a second activation pass.

Conv: the forward's epilogue is applied tile by tile in ``conv.py`` (as each tile is written to NCHW).

Conv2d's backward with a fused activation forms dz = dy * act'(y) inside the tiles' channel-major copies of
dy (``conv.conv2d_backward_gated``), which both the data and the weight pass make anyway: no dz array is
written or read back (the discriminator's four convolutions: the DCGAN step 751 ms against 763 ms composed,
medians of alternating steps in one process on the 2-core machine).
The other backward ops form dz with the activation's own jitted pass, then call the split ops
(``dense_backward_weight``, ``conv_transpose2d_backward_data``, ...) through the kernel namespace. A kernel
swapped there (the walkthrough's --break and --exercise) is then the one every layer uses, fused or not:
Conv2d's gated pass runs only while the kernels it stands for are the set's own (``_own_kernels``).
"""

from __future__ import annotations

import sys

import numpy as np
from numba import njit, prange

from ..reference import whole_backward
from ..reference.activation import activate_backward
from . import activation, conv
from .activation import _launch, act, epilogue

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
    K = _namespace()
    dz = activate_backward(dy, y, slope, "dense_backward", K)
    return whole_backward.dense(K, dz, x, W, dW, db, input_grad)


def _own_kernels(K, slope: float, *ops: str) -> bool:
    """Whether the namespace's activation backward for ``slope`` and the split ops ``ops`` are this kernel set's
    own: only then may a gated pass stand for them (a kernel the walkthrough swapped in must be the one used)."""
    act_name = "relu_backward" if slope == 0 else "leaky_relu_backward"
    return getattr(K, act_name) is getattr(activation, act_name) and all(
        getattr(K, op) is getattr(conv, op) for op in ops
    )


def conv2d_backward(
    dy, cols, W, x_shape, stride, padding, y=None, slope=None, dW=None, db=None, input_grad=True
) -> np.ndarray | None:
    """With a fused activation, dz = dy * act'(y) is formed inside the tiled passes' copies of dy
    (``conv.conv2d_backward_gated``: no dz array); otherwise, or when a kernel it stands for was swapped on the
    namespace, dz by the activation's own pass, then the tiled weight and data gradients of dz."""
    K = _namespace()
    if (
        slope is not None
        and y is not None
        and isinstance(cols, conv.Unfolded)
        and _own_kernels(K, slope, "conv2d_backward_weight", "conv2d_backward_data")
    ):
        return conv.conv2d_backward_gated(dy, y, slope, cols, W, x_shape, stride, padding, dW, db, input_grad)
    dz = activate_backward(dy, y, slope, "conv2d_backward", K)
    return whole_backward.conv2d(K, dz, cols, W, x_shape, stride, padding, dW, db, input_grad)


def conv_transpose2d_backward(
    dy, x, W, stride, padding, y=None, slope=None, dW=None, db=None, input_grad=True
) -> np.ndarray | None:
    """dz = dy * act'(y) in one jitted pass, then conv.py's tiled data and weight gradients of dz."""
    K = _namespace()
    dz = activate_backward(dy, y, slope, "conv_transpose2d_backward", K)
    return whole_backward.conv_transpose2d(K, dz, x, W, stride, padding, dW, db, input_grad)
