"""Nearest-neighbour upsampling on the GPU (upsample.cu); equations in tinygan.kernels.reference.upsample."""

from __future__ import annotations

import cupy

from ..reference.upsample import check_upsample_args, check_upsampled_grad
from ._common import CudaModule, device_array, idx, launch

__all__ = ["upsample_nearest_forward", "upsample_nearest_backward"]

_MOD = CudaModule("upsample.cu", templates=("upsample_nearest_forward", "upsample_nearest_backward"))


def upsample_nearest_forward(x: cupy.ndarray, scale: int) -> cupy.ndarray:
    x = device_array(x, "x", "upsample_nearest_forward")
    s = check_upsample_args("upsample_nearest_forward", x, scale)
    n, c, h, w = x.shape
    y = cupy.empty((n, c, h * s, w * s), dtype=x.dtype)
    launch(_MOD.get("upsample_nearest_forward", x.dtype), y.size, (x, y, idx(h), idx(w), idx(s), idx(y.size)))
    return y


def upsample_nearest_backward(dy: cupy.ndarray, scale: int) -> cupy.ndarray:
    dy = device_array(dy, "dy", "upsample_nearest_backward")
    s = check_upsampled_grad("upsample_nearest_backward", dy, scale)
    n, c, h, w = dy.shape
    dx = cupy.empty((n, c, h // s, w // s), dtype=dy.dtype)
    args = (dy, dx, idx(h // s), idx(w // s), idx(s), idx(dx.size))
    launch(_MOD.get("upsample_nearest_backward", dy.dtype), dx.size, args)
    return dx
