"""Numba binary cross-entropy on logits: loss and gradient in one pass.

Same name, signature and equations as tinygan.kernels.reference.bce: per element
max(z, 0) - z t + log1p(exp(-|z|)), gradient (sigmoid(z) - t) / numel. The loss is summed in
float64 (a parallel reduction) and returned as a 0-d array of the logits' dtype.
"""

import numpy as np
from numba import njit, prange

from .activation import _launch

__all__ = ["bce_with_logits"]


@njit(parallel=True, cache=True)
def _bce(z, t, dz):
    n = z.size
    inv_n = 1.0 / n
    total = 0.0
    for i in prange(n):
        zi = np.float64(z[i])
        ti = np.float64(t[i])
        e = np.exp(-abs(zi))
        total += max(zi, 0.0) - zi * ti + np.log1p(e)
        p = 1.0 / (1.0 + e) if zi >= 0 else e / (1.0 + e)
        dz[i] = (p - ti) * inv_n
    return total * inv_n


def bce_with_logits(logits, targets):
    """Returns (loss, dlogits): the mean loss as a 0-d array of logits' dtype, and its gradient."""
    z = np.ascontiguousarray(logits)
    # broadcast_to raises on a mismatch, which matters: the jitted loop does not bounds-check.
    t = np.ascontiguousarray(np.broadcast_to(np.asarray(targets, dtype=z.dtype), z.shape))
    dz = np.empty_like(z)
    loss = _launch(_bce, z.size, "elementwise", z.reshape(-1), t.reshape(-1), dz.reshape(-1))
    return np.array(loss, dtype=z.dtype), dz
