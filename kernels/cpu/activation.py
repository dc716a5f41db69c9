"""Numba activations: one fused pass per op (NumPy's LeakyReLU and sigmoid make several temporaries).

Same names, signatures and equations as tinygan.kernels.reference.activation. The jitted cores
work on raveled contiguous arrays and write into an output allocated here with the input's
dtype; the scalar math runs in float64 and is rounded once on store.

The one exception is ``tanh_forward``, which stays NumPy's: NumPy evaluates float32/float64 tanh
with SIMD code, while a jitted loop calls the scalar libm tanh, about 90 times slower (measured on
a (125, 1024) float32 batch: 21 us against 1.9 ms).

``_launch`` is shared by the other kernels/cpu modules of this family: below a size threshold a
parallel kernel runs on the calling thread only. Waking the thread pool costs more than these
memory-bound loops save on small arrays, and on a busy machine (BLAS threads or other processes
on the same cores) the OpenMP pool's barrier can cost milliseconds per call.

The fused epilogue's activation (``act``; equations in the reference's docstring) is written once here as an
inlined jitted function, which the fused weight ops (``fused.py``, ``conv.py``) call where they write their
output: y = act(z + b) in the pass that adds the bias. The fused backward's dz = dy * act'(y) is the
activation's own backward pass (the reference's ``activate_backward`` on this set), or ``act_grad`` inside
Conv2d's gated tiles.
"""

import numba
import numpy as np
from numba import njit, prange

from ..reference.activation import tanh_forward
from . import recycle

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


@njit(inline="always", cache=True)
def act(z, use, slope):  # pragma: no cover - compiled
    """The fused epilogue: z when not ``use``, else LeakyReLU(slope) (ReLU for slope 0)."""
    return z if (not use or z > 0) else z * slope


@njit(inline="always", cache=True)
def act_grad(dy, y, slope):  # pragma: no cover - compiled
    """dy * act'(y) for the fused epilogue's LeakyReLU(slope) (ReLU for slope 0), given its output y (which has
    its input's sign): the same values as relu_backward / leaky_relu_backward, NaN in y included."""
    if y > 0:
        return dy
    return 0.0 if slope == 0.0 else dy * slope


def epilogue(slope):
    """(use, slope) as the jitted epilogue takes them, for ``slope`` None (no activation) or a float."""
    return (False, 0.0) if slope is None else (True, float(slope))


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
def _tanh_bwd(dy, y, dx):
    for i in prange(dy.size):
        yi = np.float64(y[i])
        dx[i] = dy[i] * (1.0 - yi * yi)


# Elements below which a kernel family runs single-threaded; tune for a machine if need be.
# Activations and dropout are memory-bound (about 1 MiB of float32 before threads pay off); Adam
# does a sqrt and a division per element; batchnorm three float64 passes.
PARALLEL_MIN_SIZE = {"elementwise": 1 << 18, "adam": 1 << 16, "batchnorm": 1 << 14}


def _launch(core, size, family, *args):
    """Call ``core(*args)``, on one thread when ``size`` < ``PARALLEL_MIN_SIZE[family]``."""
    threads = numba.get_num_threads()
    if size >= PARALLEL_MIN_SIZE[family] or threads == 1:
        return core(*args)
    numba.set_num_threads(1)  # thread-local: other Python threads keep their setting
    try:
        return core(*args)
    finally:
        numba.set_num_threads(threads)


def _flat(a):
    return np.ascontiguousarray(a).reshape(-1)


def _unary(core, x, *scalars):
    x = np.ascontiguousarray(x)
    out = recycle.empty(x.shape, x.dtype)
    _launch(core, x.size, "elementwise", x.reshape(-1), *scalars, out.reshape(-1))
    return out


def _binary(core, dy, other, *scalars):
    # Numba does not bounds-check: a shape mismatch must be caught before the loop runs.
    if dy.shape != other.shape:
        raise ValueError(f"shape mismatch: dy {dy.shape} vs cached tensor {other.shape}")
    dy = np.ascontiguousarray(dy)
    out = recycle.empty(dy.shape, dy.dtype)
    _launch(core, dy.size, "elementwise", dy.reshape(-1), _flat(other), *scalars, out.reshape(-1))
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


def tanh_backward(dy, y):
    return _binary(_tanh_bwd, dy, y)
