"""Solution: BatchNorm's backward (docs/backprop.md, section 6), the long way: the forward's lines walked
from the bottom up, as the guide derives them before simplifying. The library's kernel
(tinygan.kernels.reference.batchnorm) uses the simplified one-line form; both give the same numbers."""

import numpy as np


def batchnorm_backward(dy, xhat, inv_std, gamma, y=None, slope=None):
    if slope is not None:  # a fused activation: its gradient first (y > 0 exactly where its input was)
        dy = np.where(y > 0, dy, dy * slope)
    axes = (0, *range(2, dy.ndim))  # every axis but the channel axis 1
    shape = (1, -1) + (1,) * (dy.ndim - 2)  # a (C,) vector along axis 1
    m = dy.size // dy.shape[1]
    inv_std_c = inv_std.reshape(shape)
    centered = xhat / inv_std_c  # xhat = centered * inv_std
    var_plus_eps = 1.0 / inv_std**2

    dbeta = dy.sum(axis=axes)  # y = gamma xhat + beta
    dgamma = (dy * xhat).sum(axis=axes)
    dxhat = gamma.reshape(shape) * dy
    dinv_std = (dxhat * centered).sum(axis=axes)  # xhat = centered * inv_std
    dvar = dinv_std * -0.5 * var_plus_eps**-1.5  # inv_std = (var + eps)^(-1/2)
    dcentered = dxhat * inv_std_c + dvar.reshape(shape) * 2 * centered / m  # used by xhat and by var
    dmean = -dcentered.sum(axis=axes)  # centered = x - mean
    dx = dcentered + dmean.reshape(shape) / m  # directly, and through mean
    return dx, dgamma, dbeta
