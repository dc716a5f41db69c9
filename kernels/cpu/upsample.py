"""Numba nearest-neighbour upsampling (equations in tinygan.kernels.reference.upsample): one parallel loop
over the (n, c) planes, each block written (forward) or summed (backward) in order, so results do not
depend on the thread count."""

import numpy as np
from numba import njit, prange

from ..reference.upsample import check_upsample_args, check_upsampled_grad
from . import recycle
from .activation import _launch

__all__ = ["upsample_nearest_forward", "upsample_nearest_backward"]


@njit(parallel=True, cache=True)
def _forward(x, s, y):
    planes, h, w = x.shape
    for p in prange(planes):
        for i in range(h * s):
            for j in range(w * s):
                y[p, i, j] = x[p, i // s, j // s]


@njit(parallel=True, cache=True)
def _backward(dy, s, dx):
    planes, h, w = dx.shape
    for p in prange(planes):
        for i in range(h):
            for j in range(w):
                acc = dy[p, i * s, j * s] * 0
                for a in range(s):
                    for b in range(s):
                        acc += dy[p, i * s + a, j * s + b]
                dx[p, i, j] = acc


def upsample_nearest_forward(x, scale):
    s = check_upsample_args("upsample_nearest_forward", x, scale)
    n, c, h, w = x.shape
    y = recycle.empty((n, c, h * s, w * s), x.dtype)
    planes = np.ascontiguousarray(x).reshape(n * c, h, w)
    _launch(_forward, y.size, "elementwise", planes, s, y.reshape(n * c, h * s, w * s))
    return y


def upsample_nearest_backward(dy, scale):
    s = check_upsampled_grad("upsample_nearest_backward", dy, scale)
    n, c, h, w = dy.shape
    dx = recycle.empty((n, c, h // s, w // s), dy.dtype)
    planes = np.ascontiguousarray(dy).reshape(n * c, h, w)
    _launch(_backward, dy.size, "elementwise", planes, s, dx.reshape(n * c, h // s, w // s))
    return dx
