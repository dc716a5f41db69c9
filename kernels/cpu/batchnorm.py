"""Numba batch normalization, same names, signatures and equations as
tinygan.kernels.reference.batchnorm.

Inputs are viewed as (N, C, S) with S = H*W (S = 1 for (N, C)). The work splits over channels:
each thread owns whole channels, so the per-channel sums need no cross-thread reduction. Sums
accumulate in float64 whatever the array dtype, which is what lets float32 training use the
two-pass mean/variance without drift. ``fastmath`` is limited to reassociation on those float64
sums (it lets LLVM vectorize them; the reordering is far below float32 resolution).
"""

import numpy as np
from numba import njit, prange

__all__ = ["batchnorm_forward", "batchnorm_backward", "batchnorm_inference"]

_SUMS = {"reassoc", "contract"}


@njit(parallel=True, cache=True, fastmath=_SUMS)
def _forward(x, gamma, beta, eps, y, xhat, mean, var, inv_std):
    n_, c_, s_ = x.shape
    m = n_ * s_
    for c in prange(c_):
        total = 0.0
        for n in range(n_):
            for s in range(s_):
                total += x[n, c, s]
        mu = total / m
        sq = 0.0
        for n in range(n_):
            for s in range(s_):
                d = x[n, c, s] - mu
                sq += d * d
        v = sq / m
        inv = 1.0 / np.sqrt(v + eps)
        g = np.float64(gamma[c])
        b = np.float64(beta[c])
        for n in range(n_):
            for s in range(s_):
                h = (x[n, c, s] - mu) * inv
                xhat[n, c, s] = h
                y[n, c, s] = g * h + b
        mean[c] = mu
        var[c] = v
        inv_std[c] = inv


@njit(parallel=True, cache=True, fastmath=_SUMS)
def _backward(dy, xhat, inv_std, gamma, dx, dgamma, dbeta):
    n_, c_, s_ = dy.shape
    m = n_ * s_
    for c in prange(c_):
        sdy = 0.0
        sdyx = 0.0
        for n in range(n_):
            for s in range(s_):
                d = np.float64(dy[n, c, s])
                sdy += d
                sdyx += d * xhat[n, c, s]
        dbeta[c] = sdy
        dgamma[c] = sdyx
        scale = np.float64(gamma[c]) * inv_std[c]
        a = sdy / m
        b = sdyx / m
        for n in range(n_):
            for s in range(s_):
                dx[n, c, s] = scale * (dy[n, c, s] - a - xhat[n, c, s] * b)


@njit(parallel=True, cache=True)
def _inference(x, gamma, beta, running_mean, running_var, eps, y):
    n_, c_, s_ = x.shape
    # (n, c) rows are contiguous runs of S elements; splitting over all N*C rows keeps both
    # threads busy even for a small batch.
    for r in prange(n_ * c_):
        n = r // c_
        c = r % c_
        scale = np.float64(gamma[c]) / np.sqrt(np.float64(running_var[c]) + eps)
        mu = np.float64(running_mean[c])
        b = np.float64(beta[c])
        for s in range(s_):
            y[n, c, s] = (x[n, c, s] - mu) * scale + b


def _as3d(x):
    if x.ndim < 2:
        raise ValueError(f"batchnorm expects (N, C) or (N, C, H, W), received shape {x.shape}")
    x = np.ascontiguousarray(x)
    return x, x.reshape(x.shape[0], x.shape[1], -1)


def _check_channels(name, v, c):
    if v.shape != (c,):
        raise ValueError(f"batchnorm: {name} of shape {v.shape} does not match {c} channels")


def batchnorm_forward(x, gamma, beta, eps):
    """Returns (y, mean, var, xhat, inv_std); var is the biased (1/M) variance."""
    x, x3 = _as3d(x)
    c = x.shape[1]
    _check_channels("gamma", gamma, c)
    _check_channels("beta", beta, c)
    y, xhat = np.empty_like(x), np.empty_like(x)
    mean, var, inv_std = (np.empty(c, dtype=x.dtype) for _ in range(3))
    _forward(x3, gamma, beta, float(eps), y.reshape(x3.shape), xhat.reshape(x3.shape), mean, var, inv_std)
    return y, mean, var, xhat, inv_std


def batchnorm_backward(dy, xhat, inv_std, gamma):
    """Returns (dx, dgamma, dbeta)."""
    if dy.shape != xhat.shape:
        raise ValueError(f"batchnorm: dy of shape {dy.shape} does not match the cached {xhat.shape}")
    dy, dy3 = _as3d(dy)
    c = dy.shape[1]
    _check_channels("inv_std", inv_std, c)
    _check_channels("gamma", gamma, c)
    dx = np.empty_like(dy)
    dgamma, dbeta = np.empty(c, dtype=dy.dtype), np.empty(c, dtype=dy.dtype)
    _backward(dy3, _as3d(xhat)[1], inv_std, gamma, dx.reshape(dy3.shape), dgamma, dbeta)
    return dx, dgamma, dbeta


def batchnorm_inference(x, gamma, beta, running_mean, running_var, eps):
    x, x3 = _as3d(x)
    c = x.shape[1]
    for name, v in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        _check_channels(name, v, c)
    y = np.empty_like(x)
    _inference(x3, gamma, beta, running_mean, running_var, float(eps), y.reshape(x3.shape))
    return y
