"""Numba exponential moving average of parameters, in place: same name, signature and equations as
tinygan.kernels.reference.ema (``ema = d ema + (1 - d) param``, d warmed up by ``ema_decay``).

One fused pass per tensor, in float64, rounded once on store.
"""

import numpy as np
from numba import njit, prange

from ..reference.ema import check_ema_args, ema_decay
from ..reference.ema import ema_update_multi as _reference_ema_update_multi
from .activation import _launch

__all__ = ["ema_update_multi"]


@njit(parallel=True, cache=True)
def _ema(e, p, d, c):
    for i in prange(e.size):
        e[i] = d * np.float64(e[i]) + c * np.float64(p[i])


def ema_update_multi(ema_params, params, decay, num_updates=None, advance=True):  # advance: see the reference
    check_ema_args("ema_update_multi", ema_params, params)
    if not all(e.flags.c_contiguous for e in ema_params):
        # A raveled view of a non-contiguous array is a copy, and the in-place update would be lost.
        _reference_ema_update_multi(ema_params, params, decay, num_updates)
        return
    d = ema_decay(decay, num_updates)
    for e, p in zip(ema_params, params):
        _launch(_ema, e.size, "elementwise", e.reshape(-1), np.ascontiguousarray(p).reshape(-1), d, 1.0 - d)
