"""The whole backward pass of a weight layer, composed from the split ops of a kernel set: one formula for
every set that composes it (the reference and Numba; the GPU set fuses the steps in its own kernels).

Given dz = dL/dz of ``y = act(z)``, ``z = op(x; W) + b`` (the caller forms dz: the activation's backward),

    dW += dL/dW(dz)      db += sum of dz over everything but the channel      dx = dL/dx(dz)

each gradient added into the caller's buffer (skipped when that buffer is None, so a frozen network's
backward computes no weight gradients), dx only when ``input_grad``. ``K`` is the kernel set, looked up by
the caller at call time, so a kernel swapped on it (the walkthrough's --break and --exercise) is the one
every layer uses, fused or not.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def add_into(buffer: np.ndarray | None, value: Any) -> None:
    """buffer += value, unless buffer is None (that gradient is not wanted)."""
    if buffer is not None:
        buffer += value


def dense(K: ModuleType, dz, x, W, dW=None, db=None, input_grad: bool = True):
    if dW is not None or db is not None:
        gW, gb = K.dense_backward_weight(dz, x)
        add_into(dW, gW)
        add_into(db, gb)
    return K.dense_backward_data(dz, W) if input_grad else None


def conv2d(K: ModuleType, dz, cols, W, x_shape, stride, padding, dW=None, db=None, input_grad: bool = True):
    if dW is not None or db is not None:
        gW, gb = K.conv2d_backward_weight(dz, cols, W.shape)
        add_into(dW, gW)
        add_into(db, gb)
    return K.conv2d_backward_data(dz, W, x_shape, stride, padding) if input_grad else None


def conv_transpose2d(K: ModuleType, dz, x, W, stride, padding, dW=None, db=None, input_grad: bool = True):
    dx = dz_cols = None
    if input_grad:  # the data gradient's unfolded dz is the weight gradient's too
        dx, dz_cols = K.conv_transpose2d_backward_data(dz, W, stride, padding)
    if dW is not None or db is not None:
        gW, gb = K.conv_transpose2d_backward_weight(dz, x, W.shape, stride, padding, dy_cols=dz_cols)
        add_into(dW, gW)
        add_into(db, gb)
    return dx
