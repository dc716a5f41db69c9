"""Numba activations: one fused pass per op (NumPy's sigmoid makes four temporaries).

Same names, signatures and equations as tinygan.kernels.reference.activation. The jitted cores
work on raveled contiguous arrays and write into an output allocated here with the input's
dtype; the scalar math runs in float64 and is rounded once on store.
"""

import numpy as np
from numba import njit, prange

__all__ = [
    "relu_forward",
    "relu_backward",
    "leaky_relu_forward",
    "leaky_relu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
]


@njit(parallel=True, cache=True)
def _relu_fwd(x, y):
    for i in prange(x.size):
        xi = x[i]
        # "not > 0" would map NaN to 0 and hide a diverged model; "< 0" lets NaN through as NumPy does.
        y[i] = 0.0 if xi < 0 else xi


@njit(parallel=True, cache=True)
def _relu_bwd(dy, y, dx):
    for i in prange(dy.size):
        dx[i] = dy[i] if y[i] > 0 else 0.0


@njit(parallel=True, cache=True)
def _leaky_fwd(x, slope, y):
    for i in prange(x.size):
        xi = x[i]
        y[i] = xi if xi > 0 else xi * slope


@njit(parallel=True, cache=True)
def _leaky_bwd(dy, x, slope, dx):
    for i in prange(dy.size):
        dx[i] = dy[i] if x[i] > 0 else dy[i] * slope


@njit(parallel=True, cache=True)
def _sigmoid_fwd(x, y):
    for i in prange(x.size):
        xi = np.float64(x[i])
        e = np.exp(-abs(xi))  # <= 1: no overflow for any x
        y[i] = 1.0 / (1.0 + e) if xi >= 0 else e / (1.0 + e)


@njit(parallel=True, cache=True)
def _sigmoid_bwd(dy, y, dx):
    for i in prange(dy.size):
        yi = np.float64(y[i])
        dx[i] = dy[i] * yi * (1.0 - yi)


@njit(parallel=True, cache=True)
def _tanh_fwd(x, y):
    for i in prange(x.size):
        y[i] = np.tanh(np.float64(x[i]))


@njit(parallel=True, cache=True)
def _tanh_bwd(dy, y, dx):
    for i in prange(dy.size):
        yi = np.float64(y[i])
        dx[i] = dy[i] * (1.0 - yi * yi)


def _flat(a):
    return np.ascontiguousarray(a).reshape(-1)


def _unary(core, x, *scalars):
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    core(x.reshape(-1), *scalars, out.reshape(-1))
    return out


def _binary(core, dy, other, *scalars):
    # Numba does not bounds-check: a shape mismatch must be caught before the loop runs.
    if dy.shape != other.shape:
        raise ValueError(f"shape mismatch: dy {dy.shape} vs cached tensor {other.shape}")
    dy = np.ascontiguousarray(dy)
    out = np.empty_like(dy)
    core(dy.reshape(-1), _flat(other), *scalars, out.reshape(-1))
    return out


def relu_forward(x):
    return _unary(_relu_fwd, x)


def relu_backward(dy, y):
    return _binary(_relu_bwd, dy, y)


def leaky_relu_forward(x, negative_slope):
    return _unary(_leaky_fwd, x, float(negative_slope))


def leaky_relu_backward(dy, x, negative_slope):
    return _binary(_leaky_bwd, dy, x, float(negative_slope))


def sigmoid_forward(x):
    return _unary(_sigmoid_fwd, x)


def sigmoid_backward(dy, y):
    return _binary(_sigmoid_bwd, dy, y)


def tanh_forward(x):
    return _unary(_tanh_fwd, x)


def tanh_backward(dy, y):
    return _binary(_tanh_bwd, dy, y)
