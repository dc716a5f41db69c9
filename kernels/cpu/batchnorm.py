"""Numba batch normalization, same names, signatures and equations as
tinygan.kernels.reference.batchnorm.

The statistics split over blocks of channels, one block per task, so the per-channel sums need
no cross-thread reduction. Two layouts get their own loops so that the innermost loop always
walks contiguous memory:

* (N, C): within a block, row by row, the inner loop running along the block's channels
  (a per-channel loop would stride by C through memory);
* (N, C, H, W), viewed as (N, C, S): the inner loop runs over the S pixels of one (n, c) plane.

Sums accumulate in float64 whatever the array dtype, which keeps the two-pass mean and variance
exact to float32 resolution even for large batches or large means. ``fastmath`` is limited to
reassociation and contraction on those float64 sums (it lets LLVM vectorize them; the reordering
is far below float32 resolution).
"""

import numba
import numpy as np
from numba import njit, prange

from ..reference.activation import check_gate
from . import recycle
from .activation import _launch, act, act_grad, epilogue

# batchnorm_update_running stays the reference's (C values a call: nothing to jit).
__all__ = ["batchnorm_forward", "batchnorm_backward", "batchnorm_inference"]

_SUMS = {"reassoc", "contract"}


def _block_size(c):
    """Channels per task: at most 64 (the inner loop's accumulators stay in L1), and at least
    two tasks per thread so that a small channel count still splits."""
    return max(1, min(64, c // (2 * numba.get_num_threads())))


# Inside the loops, rows and planes are taken as slices (x[n, c0:c1], x[n, c]) and indexed from 0:
# indexing x[n, c0 + j] directly keeps LLVM from vectorizing (measured 5x slower).


@njit(parallel=True, cache=True, fastmath=_SUMS)
def _forward_2d(x, gamma, beta, eps, use, slope, block, y, xhat, mean, var, inv_std):
    n_, c_ = x.shape
    for blk in prange((c_ + block - 1) // block):
        c0 = blk * block
        c1 = min(c_, c0 + block)
        k = c1 - c0
        mu = np.zeros(k)
        for n in range(n_):
            row = x[n, c0:c1]
            for j in range(k):
                mu[j] += row[j]
        mu /= n_
        sq = np.zeros(k)
        for n in range(n_):
            row = x[n, c0:c1]
            for j in range(k):
                d = row[j] - mu[j]
                sq[j] += d * d
        v = sq / n_
        inv = 1.0 / np.sqrt(v + eps)
        g = gamma[c0:c1].astype(np.float64)
        b = beta[c0:c1].astype(np.float64)
        for n in range(n_):
            row, hrow, yrow = x[n, c0:c1], xhat[n, c0:c1], y[n, c0:c1]
            for j in range(k):
                h = (row[j] - mu[j]) * inv[j]
                hrow[j] = h
                yrow[j] = g[j] * h + b[j]
                if use:  # the fused activation, on the rounded output as the separate layer sees it
                    yrow[j] = act(yrow[j], use, slope)
        mean[c0:c1] = mu
        var[c0:c1] = v
        inv_std[c0:c1] = inv


@njit(parallel=True, cache=True, fastmath=_SUMS)
def _forward_nd(x, gamma, beta, eps, use, slope, block, y, xhat, mean, var, inv_std):
    n_, c_, s_ = x.shape
    m = n_ * s_
    for blk in prange((c_ + block - 1) // block):
        c0 = blk * block
        c1 = min(c_, c0 + block)
        k = c1 - c0
        mu = np.zeros(k)
        for n in range(n_):
            for j in range(k):
                plane = x[n, c0 + j]
                acc = 0.0
                for s in range(s_):
                    acc += plane[s]
                mu[j] += acc
        mu /= m
        sq = np.zeros(k)
        for n in range(n_):
            for j in range(k):
                plane = x[n, c0 + j]
                mj = mu[j]
                acc = 0.0
                for s in range(s_):
                    d = plane[s] - mj
                    acc += d * d
                sq[j] += acc
        v = sq / m
        inv = 1.0 / np.sqrt(v + eps)
        for n in range(n_):
            for j in range(k):
                plane, hplane, yplane = x[n, c0 + j], xhat[n, c0 + j], y[n, c0 + j]
                mj, ij = mu[j], inv[j]
                g, b = np.float64(gamma[c0 + j]), np.float64(beta[c0 + j])
                for s in range(s_):
                    h = (plane[s] - mj) * ij
                    hplane[s] = h
                    yplane[s] = g * h + b
                    if use:
                        yplane[s] = act(yplane[s], use, slope)
        mean[c0:c1] = mu
        var[c0:c1] = v
        inv_std[c0:c1] = inv


@njit(parallel=True, cache=True, fastmath=_SUMS)
def _backward_2d(dy, xhat, y, use, slope, inv_std, gamma, block, dx, dgamma, dbeta):
    n_, c_ = dy.shape
    for blk in prange((c_ + block - 1) // block):
        c0 = blk * block
        c1 = min(c_, c0 + block)
        k = c1 - c0
        sdy = np.zeros(k)
        sdyx = np.zeros(k)
        for n in range(n_):
            drow, hrow, yrow = dy[n, c0:c1], xhat[n, c0:c1], y[n, c0:c1]
            for j in range(k):
                d = np.float64(act_grad(drow[j], yrow[j], slope) if use else drow[j])
                sdy[j] += d
                sdyx[j] += d * hrow[j]
        dbeta[c0:c1] = sdy
        dgamma[c0:c1] = sdyx
        scale = gamma[c0:c1].astype(np.float64) * inv_std[c0:c1]
        a = sdy / n_
        b = sdyx / n_
        for n in range(n_):
            drow, hrow, dxrow, yrow = dy[n, c0:c1], xhat[n, c0:c1], dx[n, c0:c1], y[n, c0:c1]
            for j in range(k):
                d = np.float64(act_grad(drow[j], yrow[j], slope) if use else drow[j])
                dxrow[j] = scale[j] * (d - a[j] - hrow[j] * b[j])


@njit(parallel=True, cache=True, fastmath=_SUMS)
def _backward_nd(dy, xhat, y, use, slope, inv_std, gamma, block, dx, dgamma, dbeta):
    n_, c_, s_ = dy.shape
    m = n_ * s_
    for blk in prange((c_ + block - 1) // block):
        c0 = blk * block
        c1 = min(c_, c0 + block)
        k = c1 - c0
        sdy = np.zeros(k)
        sdyx = np.zeros(k)
        for n in range(n_):
            for j in range(k):
                dplane, hplane, yplane = dy[n, c0 + j], xhat[n, c0 + j], y[n, c0 + j]
                acc, accx = 0.0, 0.0
                for s in range(s_):
                    d = np.float64(act_grad(dplane[s], yplane[s], slope) if use else dplane[s])
                    acc += d
                    accx += d * hplane[s]
                sdy[j] += acc
                sdyx[j] += accx
        dbeta[c0:c1] = sdy
        dgamma[c0:c1] = sdyx
        for n in range(n_):
            for j in range(k):
                dplane, hplane, dxplane, yplane = dy[n, c0 + j], xhat[n, c0 + j], dx[n, c0 + j], y[n, c0 + j]
                scale = np.float64(gamma[c0 + j]) * inv_std[c0 + j]
                a, b = sdy[j] / m, sdyx[j] / m
                for s in range(s_):
                    d = np.float64(act_grad(dplane[s], yplane[s], slope) if use else dplane[s])
                    dxplane[s] = scale * (d - a - hplane[s] * b)


@njit(parallel=True, cache=True)
def _inference_2d(x, mean, scale, beta, y):
    for n in prange(x.shape[0]):
        row, yrow = x[n], y[n]
        for c in range(x.shape[1]):
            yrow[c] = (row[c] - mean[c]) * scale[c] + beta[c]


@njit(parallel=True, cache=True)
def _inference_nd(x, mean, scale, beta, y):
    # Rows split across threads; the per-channel scale comes precomputed, so no sqrt per element.
    n_, c_, s_ = x.shape
    for n in prange(n_):
        for c in range(c_):
            plane, yplane = x[n, c], y[n, c]
            mu, sc, b = mean[c], scale[c], beta[c]
            for s in range(s_):
                yplane[s] = (plane[s] - mu) * sc + b


def _check(x, *per_channel):
    if x.ndim < 2:
        raise ValueError(f"batchnorm expects (N, C) or (N, C, H, W), received shape {x.shape}")
    c = x.shape[1]
    for name, v in per_channel:
        # Numba does not bounds-check: a mismatch must be caught before the loops run.
        if v.shape != (c,):
            raise ValueError(f"batchnorm: {name} of shape {v.shape} does not match {c} channels")
    return np.ascontiguousarray(x)


def _ncs(x):
    """(N, C, S) with S the product of the spatial sizes: reshape(N, C, -1) cannot infer S for an empty x."""
    return (x.shape[0], x.shape[1], int(np.prod(x.shape[2:])))


def batchnorm_forward(x, gamma, beta, eps, slope=None):
    """Returns (y, mean, var, xhat, inv_std); var is the biased (1/M) variance; with ``slope``, y is the fused
    activation's output (reference.batchnorm)."""
    x = _check(x, ("gamma", gamma), ("beta", beta))
    if x.size == 0:
        raise ValueError(f"batchnorm_forward: cannot normalize over an empty batch (shape {tuple(x.shape)})")
    c = x.shape[1]
    y, xhat = recycle.empty(x.shape, x.dtype), recycle.empty(x.shape, x.dtype)
    mean, var, inv_std = (np.empty(c, dtype=x.dtype) for _ in range(3))
    stats = (mean, var, inv_std)
    if x.ndim == 2:
        args = (x, gamma, beta, float(eps), *epilogue(slope), _block_size(c), y, xhat, *stats)
        _launch(_forward_2d, x.size, "batchnorm", *args)
    else:
        s3 = _ncs(x)
        head = (x.reshape(s3), gamma, beta, float(eps), *epilogue(slope), _block_size(c))
        args = (*head, y.reshape(s3), xhat.reshape(s3), *stats)
        _launch(_forward_nd, x.size, "batchnorm", *args)
    return y, mean, var, xhat, inv_std


def batchnorm_backward(dy, xhat, inv_std, gamma, y=None, slope=None):
    """Returns (dx, dgamma, dbeta); with ``slope``, dy is dL/d(activated output) and y the fused forward's output:
    the activation's gradient is formed as dy is read (reference.batchnorm)."""
    if dy.shape != xhat.shape:
        raise ValueError(f"batchnorm: dy of shape {dy.shape} does not match the cached {xhat.shape}")
    dy = _check(dy, ("inv_std", inv_std), ("gamma", gamma))
    xhat = np.ascontiguousarray(xhat)
    use, slope = epilogue(slope)
    if use:
        check_gate(dy, y, slope, "batchnorm_backward")
        y = np.ascontiguousarray(y)
    else:
        y = dy  # not read
    c = dy.shape[1]
    dx = recycle.empty(dy.shape, dy.dtype)
    dgamma, dbeta = np.empty(c, dtype=dy.dtype), np.empty(c, dtype=dy.dtype)
    if dy.ndim == 2:
        args = (dy, xhat, y, use, slope, inv_std, gamma, _block_size(c), dx, dgamma, dbeta)
        _launch(_backward_2d, dy.size, "batchnorm", *args)
    else:
        s3 = _ncs(dy)
        gated = (dy.reshape(s3), xhat.reshape(s3), y.reshape(s3), use, slope)
        args = (*gated, inv_std, gamma, _block_size(c), dx.reshape(s3), dgamma, dbeta)
        _launch(_backward_nd, dy.size, "batchnorm", *args)
    return dx, dgamma, dbeta


def batchnorm_inference(x, gamma, beta, running_mean, running_var, eps):
    per_channel = (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var))
    x = _check(x, *per_channel)
    scale = gamma.astype(np.float64) / np.sqrt(running_var.astype(np.float64) + eps)
    y = recycle.empty(x.shape, x.dtype)
    per_channel = (running_mean.astype(np.float64), scale, beta.astype(np.float64))
    if x.ndim == 2:
        _launch(_inference_2d, x.size, "batchnorm", x, *per_channel, y)
    else:
        s3 = _ncs(x)
        _launch(_inference_nd, x.size, "batchnorm", x.reshape(s3), *per_channel, y.reshape(s3))
    return y
