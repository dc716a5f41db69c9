"""Numba Adam update, in place, same name, signature and equations as tinygan.kernels.reference.adam::

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
    param -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

One fused pass over the four arrays instead of NumPy's seven.
"""

import math

import numpy as np
from numba import njit, prange

from ..reference.adam import adam_update as _reference_adam_update
from .activation import _launch

__all__ = ["adam_update"]


@njit(parallel=True, cache=True)
def _adam(param, grad, m, v, beta1, beta2, eps, step_size, bc2_sqrt):
    for i in prange(param.size):
        g = np.float64(grad[i])
        # Store, then read back: the update then uses m and v rounded to the array dtype, as the
        # reference (which updates them in place first) does.
        m[i] = beta1 * m[i] + (1.0 - beta1) * g
        v[i] = beta2 * v[i] + (1.0 - beta2) * g * g
        param[i] -= step_size * m[i] / (np.sqrt(np.float64(v[i])) / bc2_sqrt + eps)


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, step):
    for name, a in (("grad", grad), ("m", m), ("v", v)):
        if a.shape != param.shape:
            raise ValueError(f"adam_update: {name} of shape {a.shape} does not match the parameter's {param.shape}")
    if not all(a.flags.c_contiguous for a in (param, m, v)):
        # A raveled view of a non-contiguous array is a copy, and the in-place update would be lost.
        _reference_adam_update(param, grad, m, v, lr, beta1, beta2, eps, step)
        return
    step_size = lr / (1.0 - beta1**step)
    bc2_sqrt = math.sqrt(1.0 - beta2**step)
    _launch(
        _adam,
        param.size,
        "adam",
        param.reshape(-1),
        np.ascontiguousarray(grad).reshape(-1),
        m.reshape(-1),
        v.reshape(-1),
        float(beta1),
        float(beta2),
        float(eps),
        float(step_size),
        float(bc2_sqrt),
    )
