"""BatchNorm on the GPU (batchnorm.cu): per-channel reductions in double, in a fixed order.

A channel of at most ``BN_CHUNK`` values is one block's work, statistics and normalization in one
launch; larger channels are split into chunks of ``BN_CHUNK`` values, reduced by many blocks, then
combined per channel and applied by one thread per value (three launches that fill the GPU).

Same equations as tinygan.kernels.reference.batchnorm, statistics over every axis but 1:
mean, biased var, inv_std = 1/sqrt(var + eps), xhat = (x - mean) * inv_std, y = gamma * xhat + beta;
backward dbeta = sum dy, dgamma = sum dy * xhat, dx = gamma * inv_std / M * (M dy - dbeta - xhat dgamma).
"""

from __future__ import annotations

import cupy
import numpy as np

from ._common import THREADS, CudaModule, device_array, idx, launch, same_dtype, scalar
from .layout import act_args, gate_for

_MOD = CudaModule(
    "batchnorm.cu",
    templates=("batchnorm_inference", "batchnorm_finish_stats", "batchnorm_finish_grads", "batchnorm_update_running"),
    indexed=(
        "batchnorm_forward",
        "batchnorm_backward",
        "batchnorm_partial_stats",
        "batchnorm_normalize",
        "batchnorm_partial_grads",
        "batchnorm_input_grad",
    ),
)

# Values of one channel one block reduces (16 per thread); channels with more are split.
BN_CHUNK = 16 * THREADS


def _parts(n: int, c: int, s: int) -> int:
    """How many chunks each channel splits into (1: the one-block-per-channel kernels)."""
    if c > 65535:  # the chunked kernels put channels on the grid's y axis
        return 1
    return max(1, -(-(n * s) // BN_CHUNK))


def _ncs(op: str, x: cupy.ndarray, **per_channel: cupy.ndarray) -> tuple[int, int, int]:
    if x.ndim < 2:
        raise ValueError(f"{op}: expected an (N, C, ...) array, received shape {tuple(x.shape)}")
    n, c = int(x.shape[0]), int(x.shape[1])
    s = 1
    for d in x.shape[2:]:
        s *= int(d)
    for name, arr in per_channel.items():
        if arr.size != c:
            raise ValueError(f"{op}: {name} has {arr.size} entries, expected one per channel ({c})")
    return n, c, s


def batchnorm_forward(
    x: cupy.ndarray, gamma: cupy.ndarray, beta: cupy.ndarray, eps: float, slope: float | None = None
) -> tuple[cupy.ndarray, cupy.ndarray, cupy.ndarray, cupy.ndarray, cupy.ndarray]:
    """Returns (y, mean, var, xhat, inv_std); the statistics have shape (C,), var is biased. With ``slope``, y is
    the fused activation's output (the fusion plan), applied in the pass that writes y."""
    op = "batchnorm_forward"
    x, gamma, beta = (device_array(a, name, op) for a, name in ((x, "x"), (gamma, "gamma"), (beta, "beta")))
    same_dtype(op, x, gamma=gamma, beta=beta)
    n, c, s = _ncs(op, x, gamma=gamma, beta=beta)
    if n * s == 0:
        raise ValueError(f"{op}: cannot normalize over an empty batch (shape {tuple(x.shape)})")
    y, xhat = cupy.empty_like(x), cupy.empty_like(x)
    mean, var, inv_std = (cupy.empty(c, dtype=x.dtype) for _ in range(3))
    act = act_args(x.dtype, slope)
    parts = _parts(n, c, s)
    if c == 0:
        return y, mean, var, xhat, inv_std
    if parts == 1:
        _MOD.get_for(op, x.dtype, x)(
            (c,),
            (THREADS,),
            (x, gamma, beta, y, xhat, mean, var, inv_std, idx(n), idx(c), idx(s), np.float64(eps), *act),
        )
    else:
        part_mean, part_m2 = cupy.empty((c, parts)), cupy.empty((c, parts))
        stats = cupy.empty(2 * c)  # mean, then inv_std, in double for the normalize pass
        _MOD.get_for("batchnorm_partial_stats", x.dtype, x)(
            (parts, c), (THREADS,), (x, part_mean, part_m2, idx(n), idx(c), idx(s), idx(BN_CHUNK))
        )
        sizes = (idx(c), idx(n * s), idx(BN_CHUNK), idx(parts))
        launch(
            _MOD.get("batchnorm_finish_stats", x.dtype),
            c,
            (part_mean, part_m2, stats, mean, var, inv_std, *sizes, np.float64(eps)),
        )
        launch(
            _MOD.get_for("batchnorm_normalize", x.dtype, x),
            x.size,
            (x, gamma, beta, stats, y, xhat, idx(c), idx(s), idx(x.size), *act),
        )
    return y, mean, var, xhat, inv_std


def batchnorm_backward(
    dy: cupy.ndarray,
    xhat: cupy.ndarray,
    inv_std: cupy.ndarray,
    gamma: cupy.ndarray,
    y: cupy.ndarray | None = None,
    slope: float | None = None,
) -> tuple[cupy.ndarray, cupy.ndarray, cupy.ndarray]:
    """Returns (dx, dgamma, dbeta). With ``slope``, dy is dL/d(activated output) and ``y`` the fused forward's
    output: dz = dy * act'(y) is formed wherever the kernels read dy, never stored."""
    op = "batchnorm_backward"
    dy, xhat, inv_std, gamma = (
        device_array(a, name, op) for a, name in ((dy, "dy"), (xhat, "xhat"), (inv_std, "inv_std"), (gamma, "gamma"))
    )
    same_dtype(op, dy, xhat=xhat, inv_std=inv_std, gamma=gamma)
    if dy.shape != xhat.shape:
        raise ValueError(f"{op}: dy of shape {tuple(dy.shape)} does not match xhat {tuple(xhat.shape)}")
    n, c, s = _ncs(op, dy, inv_std=inv_std, gamma=gamma)
    gate = (gate_for(op, dy, y, slope), *act_args(dy.dtype, slope))
    dx = cupy.empty_like(dy)
    dgamma, dbeta = cupy.empty(c, dtype=dy.dtype), cupy.empty(c, dtype=dy.dtype)
    parts = _parts(n, c, s)
    if c == 0:
        return dx, dgamma, dbeta
    if parts == 1:
        _MOD.get_for(op, dy.dtype, dy)(
            (c,), (THREADS,), (dy, xhat, *gate, inv_std, gamma, dx, dgamma, dbeta, idx(n), idx(c), idx(s))
        )
    else:
        part, sums = cupy.empty((2 * c, parts)), cupy.empty(2 * c)
        _MOD.get_for("batchnorm_partial_grads", dy.dtype, dy)(
            (parts, c), (THREADS,), (dy, xhat, *gate, part, idx(n), idx(c), idx(s), idx(BN_CHUNK))
        )
        launch(_MOD.get("batchnorm_finish_grads", dy.dtype), c, (part, sums, dgamma, dbeta, idx(c), idx(parts)))
        launch(
            _MOD.get_for("batchnorm_input_grad", dy.dtype, dy),
            dy.size,
            (dy, xhat, *gate, inv_std, gamma, sums, dx, idx(n * s), idx(c), idx(s), idx(dy.size)),
        )
    return dx, dgamma, dbeta


def batchnorm_inference(
    x: cupy.ndarray,
    gamma: cupy.ndarray,
    beta: cupy.ndarray,
    running_mean: cupy.ndarray,
    running_var: cupy.ndarray,
    eps: float,
) -> cupy.ndarray:
    op = "batchnorm_inference"
    arrays = ((x, "x"), (gamma, "gamma"), (beta, "beta"), (running_mean, "running_mean"), (running_var, "running_var"))
    x, gamma, beta, running_mean, running_var = (device_array(a, name, op) for a, name in arrays)
    same_dtype(op, x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    _, c, s = _ncs(op, x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    y = cupy.empty_like(x)
    launch(
        _MOD.get(op, x.dtype),
        x.size,
        (x, gamma, beta, running_mean, running_var, y, idx(c), idx(s), np.float64(eps), idx(x.size)),
    )
    return y


def batchnorm_update_running(
    running_mean: cupy.ndarray,
    running_var: cupy.ndarray,
    mean: cupy.ndarray,
    var: cupy.ndarray,
    m: int,
    momentum: float | None,
    num_batches_tracked: cupy.ndarray | None = None,
) -> None:
    """reference.batchnorm.batchnorm_update_running in one launch, in place (same rounding: see batchnorm.cu)."""
    op = "batchnorm_update_running"
    arrays = ((running_mean, "running_mean"), (running_var, "running_var"), (mean, "mean"), (var, "var"))
    for arr, name in arrays:
        device_array(arr, name, op)
        if not arr.flags.c_contiguous:
            raise ValueError(f"{op}: {name} must be C-contiguous (the running statistics are updated in place)")
    same_dtype(op, running_mean, running_var=running_var, mean=mean, var=var, num_batches_tracked=num_batches_tracked)
    c = running_mean.size
    for arr, name in arrays[1:]:
        if arr.size != c:
            raise ValueError(f"{op}: {name} has {arr.size} values, expected one per channel ({c})")
    cumulative = momentum is None
    if cumulative and (not isinstance(num_batches_tracked, cupy.ndarray) or num_batches_tracked.size != 1):
        raise ValueError(f"{op}: momentum None (a cumulative average) needs num_batches_tracked, a 1-value CuPy array")
    if c == 0:
        if cumulative:
            num_batches_tracked += 1
        return
    dtype = running_mean.dtype
    f = 0.0 if cumulative else float(momentum)
    f_var = 0.0 if cumulative else f * m / (m - 1)
    factors = (scalar(dtype, 1 - f), scalar(dtype, f), scalar(dtype, f_var), scalar(dtype, m), scalar(dtype, m - 1))
    _MOD.get(op, dtype)(
        (1,),
        (THREADS,),
        (
            running_mean,
            running_var,
            mean,
            var,
            num_batches_tracked if cumulative else running_mean,
            np.int32(cumulative),
            *factors,
            idx(c),
        ),
    )
