"""BatchNorm on the GPU (batchnorm.cu): one block per channel for the training passes.

Same equations as tinygan.kernels.reference.batchnorm, statistics over every axis but 1:
mean, biased var, inv_std = 1/sqrt(var + eps), xhat = (x - mean) * inv_std, y = gamma * xhat + beta;
backward dbeta = sum dy, dgamma = sum dy * xhat, dx = gamma * inv_std / M * (M dy - dbeta - xhat dgamma).
"""

from __future__ import annotations

import cupy
import numpy as np

from ._common import THREADS, CudaModule, device_array, idx, launch, same_dtype

_MOD = CudaModule(
    "batchnorm.cu", templates=("batchnorm_inference",), indexed=("batchnorm_forward", "batchnorm_backward")
)


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
    x: cupy.ndarray, gamma: cupy.ndarray, beta: cupy.ndarray, eps: float
) -> tuple[cupy.ndarray, cupy.ndarray, cupy.ndarray, cupy.ndarray, cupy.ndarray]:
    """Returns (y, mean, var, xhat, inv_std); the statistics have shape (C,), var is biased."""
    op = "batchnorm_forward"
    x, gamma, beta = (device_array(a, name, op) for a, name in ((x, "x"), (gamma, "gamma"), (beta, "beta")))
    same_dtype(op, x, gamma=gamma, beta=beta)
    n, c, s = _ncs(op, x, gamma=gamma, beta=beta)
    if n * s == 0:
        raise ValueError(f"{op}: cannot normalize over an empty batch (shape {tuple(x.shape)})")
    y, xhat = cupy.empty_like(x), cupy.empty_like(x)
    mean, var, inv_std = (cupy.empty(c, dtype=x.dtype) for _ in range(3))
    if c > 0:
        _MOD.get_for(op, x.dtype, x)(
            (c,),
            (THREADS,),
            (x, gamma, beta, y, xhat, mean, var, inv_std, idx(n), idx(c), idx(s), np.float64(eps)),
        )
    return y, mean, var, xhat, inv_std


def batchnorm_backward(
    dy: cupy.ndarray, xhat: cupy.ndarray, inv_std: cupy.ndarray, gamma: cupy.ndarray
) -> tuple[cupy.ndarray, cupy.ndarray, cupy.ndarray]:
    """Returns (dx, dgamma, dbeta)."""
    op = "batchnorm_backward"
    dy, xhat, inv_std, gamma = (
        device_array(a, name, op) for a, name in ((dy, "dy"), (xhat, "xhat"), (inv_std, "inv_std"), (gamma, "gamma"))
    )
    same_dtype(op, dy, xhat=xhat, inv_std=inv_std, gamma=gamma)
    if dy.shape != xhat.shape:
        raise ValueError(f"{op}: dy of shape {tuple(dy.shape)} does not match xhat {tuple(xhat.shape)}")
    n, c, s = _ncs(op, dy, inv_std=inv_std, gamma=gamma)
    dx = cupy.empty_like(dy)
    dgamma, dbeta = cupy.empty(c, dtype=dy.dtype), cupy.empty(c, dtype=dy.dtype)
    if c > 0:
        _MOD.get_for(op, dy.dtype, dy)(
            (c,), (THREADS,), (dy, xhat, inv_std, gamma, dx, dgamma, dbeta, idx(n), idx(c), idx(s))
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
