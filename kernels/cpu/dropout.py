"""Numba inverted dropout: y = x * mask / (1 - p), dx = dy * mask / (1 - p).

Same names and signatures as tinygan.kernels.reference.dropout; the mask (bool or uint8, 1 = kept)
is drawn by the layer.
"""

import numpy as np
from numba import njit, prange

from . import recycle
from .activation import _launch

__all__ = ["dropout_forward", "dropout_backward"]


@njit(parallel=True, cache=True)
def _apply_mask(x, mask, scale, y):
    for i in prange(x.size):
        y[i] = x[i] * scale if mask[i] else 0.0


def _masked(x, mask, p):
    if x.shape != mask.shape:
        raise ValueError(f"dropout mask of shape {mask.shape} does not match the input's {x.shape}")
    x = np.ascontiguousarray(x)
    out = recycle.empty(x.shape, x.dtype)
    flat_mask = np.ascontiguousarray(mask).reshape(-1)
    _launch(_apply_mask, x.size, "elementwise", x.reshape(-1), flat_mask, 1.0 / (1.0 - p), out.reshape(-1))
    return out


def dropout_forward(x, mask, p):
    return _masked(x, mask, p)


def dropout_backward(dy, mask, p):
    return _masked(dy, mask, p)
