"""Batch normalization (Ioffe & Szegedy, 2015, "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift", ICML).

x has shape (N, C) or (N, C, H, W); statistics run over every axis but the channel axis 1, so each
channel c pools M = N (or N*H*W) values. Training forward::

    mean_c  = (1/M) sum x                       var_c = (1/M) sum (x - mean_c)^2    (biased)
    inv_std = 1 / sqrt(var_c + eps)
    xhat    = (x - mean_c) * inv_std
    y       = gamma_c * xhat + beta_c

Backward, given dy (sums over the M positions of channel c)::

    dbeta_c  = sum dy
    dgamma_c = sum dy * xhat
    dx       = gamma_c * inv_std * (dy - dbeta_c / M - xhat * dgamma_c / M)

The last line is the chain rule through mean and var collapsed into one expression (the paper's
section 3 spells out the intermediate terms). Note that dx sums to zero per channel (it is orthogonal
to the constant 1), and is orthogonal to xhat only up to eps: sum(dx * xhat) is proportional to
1 - var / (var + eps). An upstream gradient that is constant per channel (the gradient of ``y.sum()``)
gives dx = 0 exactly, since xhat has mean zero: that is why gradient checks use a random upstream
gradient.

Inference uses the running statistics instead, so y is an affine function of x per channel::

    y = (x - running_mean) * gamma / sqrt(running_var + eps) + beta

The running statistics follow each training batch, as PyTorch's do (batchnorm_update_running, in place)::

    running_mean = (1 - f) running_mean + f mean
    running_var  = (1 - f) running_var  + f var * M / (M - 1)       (the unbiased estimate)

with f the layer's momentum, or f = 1/t at the t-th batch for a cumulative average.

Precision: every per-channel sum (mean, var, dbeta, dgamma) and the expressions built from them are
evaluated in float64 whatever x's dtype, and each result is rounded once to that dtype, as the Numba
and CUDA kernels do. In float32 a sum over M values loses about log2(M) bits, and with an offset
|mean| >> std (1e5 against 1) the error of a float32 mean is then ~1e-3 of the std: xhat would keep
only 3 digits. An empty batch has no statistics: batchnorm_forward refuses it.
"""

import numpy as np

from .activation import activate, activate_backward

__all__ = ["batchnorm_forward", "batchnorm_backward", "batchnorm_inference", "batchnorm_update_running"]


def _reduce_axes(x):
    return (0, *range(2, x.ndim))


def _per_channel(v, x):
    """View a (C,) vector so that it broadcasts along axis 1 of x."""
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def _check_not_empty(x):
    if x.size == 0:
        raise ValueError(f"batchnorm_forward: cannot normalize over an empty batch (shape {tuple(x.shape)})")


def batchnorm_forward(x, gamma, beta, eps, slope=None):
    """Returns (y, mean, var, xhat, inv_std); var is the biased (1/M) variance. With ``slope``, y is
    act(gamma xhat + beta), the fused ReLU (0) or LeakyReLU(slope) of the fusion plan (activation.py's
    ``activate``), applied to the rounded output, as the separate layer would."""
    _check_not_empty(x)
    axes = _reduce_axes(x)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes)
    centered = x64 - _per_channel(mean, x)
    # Two passes (mean, then the mean of squared deviations) rather than E[x^2] - E[x]^2,
    # which cancels catastrophically when |mean| >> std.
    var = (centered * centered).mean(axis=axes)
    inv_std = 1 / np.sqrt(var + eps)
    xhat = centered * _per_channel(inv_std, x)
    y = _per_channel(gamma, x) * xhat + _per_channel(beta, x)
    y, mean, var, xhat, inv_std = (a.astype(x.dtype) for a in (y, mean, var, xhat, inv_std))
    return activate(y, slope), mean, var, xhat, inv_std


def batchnorm_backward(dy, xhat, inv_std, gamma, y=None, slope=None):
    """Returns (dx, dgamma, dbeta). With ``slope`` (a fused activation), dy is dL/d(activated output) and
    ``y`` the fused forward's output: the gradient first passes the activation, dz = dy act'(y)."""
    dy = activate_backward(dy, y, slope, "batchnorm_backward")
    axes = _reduce_axes(dy)
    m = dy.size // dy.shape[1]
    dy64 = dy.astype(np.float64)
    dbeta = dy64.sum(axis=axes)
    dgamma = (dy64 * xhat).sum(axis=axes)
    scale = _per_channel(gamma * inv_std.astype(np.float64), dy)
    dx = scale * (dy64 - _per_channel(dbeta / m, dy) - xhat * _per_channel(dgamma / m, dy))
    return tuple(a.astype(dy.dtype) for a in (dx, dgamma, dbeta))


def batchnorm_inference(x, gamma, beta, running_mean, running_var, eps):
    scale = gamma / np.sqrt(running_var + eps)
    return (x - _per_channel(running_mean, x)) * _per_channel(scale, x) + _per_channel(beta, x)


def batchnorm_update_running(running_mean, running_var, mean, var, m, momentum, num_batches_tracked=None):
    """In place: ``running = (1 - f) running + f statistic`` for the batch's ``mean`` and ``var`` (biased, over
    ``m`` values a channel; it enters unbiased, var * m / (m - 1)). f is ``momentum``, or with ``momentum=None``
    f = 1/t, t the 0-d array ``num_batches_tracked`` after counting this batch (kept as an array so that on the
    GPU a captured CUDA graph advances it on every replay). Arithmetic in the buffers' dtype, as PyTorch's."""
    if momentum is None:
        num_batches_tracked += 1
        f = 1 / num_batches_tracked
    else:
        f = momentum
    running_mean *= 1 - f
    running_mean += f * mean
    running_var *= 1 - f
    running_var += (f * m / (m - 1)) * var
